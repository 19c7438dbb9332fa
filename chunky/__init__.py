"""chunky: find and explain chunky post-training failures in language models.

SURF searches a model black-box for rubric violations; TURF traces a failure back to the
training examples and source datasets that taught it.
"""

__version__ = "0.1.0"
