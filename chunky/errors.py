"""User-facing errors. The CLI prints them as one line, never a traceback."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes of every chunky command, in one table."""

    OK = 0
    FAILED = 1  # a ChunkyError, or a command that ran but failed: a SURF role failed for good, nothing could be
    # measured (robust, steer, a case of `chunky check`), or `chunky check` found a regression
    USAGE = 2  # a bad flag or argument (click's own code for a usage error)
    BUDGET = 3  # `chunky surf` stopped at --max-calls / --max-cost; rerun with a larger budget to continue
    INTERRUPTED = 130  # SIGINT (the shell's code for it) or SIGTERM; rerun the same command to resume


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
