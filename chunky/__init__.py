"""chunky: find and explain chunky post-training failures in language models.

SURF searches a model black-box for rubric violations; TURF traces a failure back to the
training examples and source datasets that taught it.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

# One source of the version: pyproject.toml, read back from the installed package's metadata.
try:
    __version__ = _version("chunky")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
