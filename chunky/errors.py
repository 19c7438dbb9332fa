"""User-facing errors. The CLI prints them as one line, never a traceback."""

from __future__ import annotations


class ChunkyError(Exception):
    """An error whose message is complete and meant for the user (names the file/row/field)."""


class ConfigError(ChunkyError):
    """Bad user input: a spec, a rubric, a file, a flag."""


class MissingExtraError(ChunkyError):
    """An optional dependency is not installed."""

    def __init__(self, what: str, extra: str, module: str):
        super().__init__(
            f"{what} needs the optional dependency '{module}': pip install 'chunky[{extra}]'"
        )
        self.extra = extra
        self.module = module


class ModelError(ChunkyError):
    """A model call failed for good (after retries, or not retryable)."""


class StructuredOutputError(ModelError):
    """The model did not return JSON matching the requested schema, even after one repair."""

    def __init__(self, message: str, raw_text: str = ""):
        super().__init__(message)
        self.raw_text = raw_text
