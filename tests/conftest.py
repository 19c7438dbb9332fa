"""Shared fixtures: an isolated CHUNKY_HOME per test, one llama.cpp server per session, the hand-made TURF index and
the training base. Plain helper functions are in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chunky.models.registry import PROVIDER_ENV_VARS

from helpers import SHARED_DATA, TEST_OUTPUT, embedded_gguf, free_port, llama_server_cmd, serving


@pytest.fixture(autouse=True)
def chunky_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own CHUNKY_HOME (cache, extracted models) and no API keys."""
    home = tmp_path_factory.mktemp("chunky-home")
    monkeypatch.setenv("CHUNKY_HOME", str(home))
    # The extracted MiniLM is large to re-extract per test; share one copy across the session.
    monkeypatch.setenv("CHUNKY_MODELS_DIR", str(_shared_models_dir(tmp_path_factory)))
    for var in PROVIDER_ENV_VARS:  # every key and endpoint variable a provider reads
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


# ---- `make test-fast` (pytest -m "not slow") leaves out what needs a real model, server, training or the 89k mix

# Fixtures that make a test slow wherever it is used: a real llama.cpp server, a training base, the shared mix.
SLOW_FIXTURES = frozenset({"llama_server", "train_base", "shared_mix"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
