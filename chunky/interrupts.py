"""What a long command does on Ctrl-C or SIGTERM: stop at once, and say in its last line what it saved and how to
go on. Shared by the commands that resume (`chunky train`, `chunky experiment`; `surf` and `index` say the same
thing in their own words)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt inside the block. SIGINT is installed explicitly: a process
    started in the background inherits an ignored SIGINT, and Ctrl-C (or `kill -INT`) would otherwise do nothing."""

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupted_line(where: str, saved: str, *, resumable: bool = True) -> str:
    """The last line of an interrupted command: "interrupted WHERE: SAVED; rerun the same command to resume".
    With nothing saved yet, a rerun starts again, and the line says so instead."""
    then = "rerun the same command to resume" if resumable else "rerun the same command to start again"
    return f"interrupted {where}: {saved}; {then}"
