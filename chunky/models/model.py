"""`Model`: a provider wrapped with the cache, the retry layer, a concurrency limit, accounting and
structured-output validation. This is what the rest of chunky calls."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from chunky.errors import ModelError, StructuredOutputError
from chunky.models.accounting import GLOBAL_USAGE, UsageTracker, cost_of
from chunky.models.adaptive import ROLE_PRIORITY, PrioritySlot, server_limit
from chunky.models.base import CallTimeout, Provider, RateLimited, ServerError
from chunky.models.cache import CallCache, default_cache
from chunky.models.registry import create_provider, parse_spec
from chunky.models.retry import RetryPolicy, call_with_retries
from chunky.models.structured import parse_structured, repair_prompt
from chunky.models.types import ChatRequest, ChatResult, GenerateConfig, Message, as_messages

# One provider object per spec per process, so e.g. the in-process llama model loads once even
# when the generator, target and judge are all `local`.
_PROVIDERS: dict[str, Provider] = {}
_PROVIDERS_LOCK = threading.Lock()


def shared_provider(spec_str: str) -> Provider:
    spec = parse_spec(spec_str)
    key = f"{spec.provider}|{spec.base_url}|{spec.model}"
    with _PROVIDERS_LOCK:
        if key not in _PROVIDERS:
            _PROVIDERS[key] = create_provider(spec)
        return _PROVIDERS[key]


class CallObserver(Protocol):
    """Sees every uncached provider call of a Model: a sweep uses it to hold its budget (`before_call` may
    raise to refuse a call that has not started) and to notice a role that fails for good."""

    def before_call(self, model: Model) -> None: ...

    def after_call(self, model: Model, error: ModelError | None) -> None: ...


@dataclass
class Model:
    """A model in a role (generator, target, judge, extractor...) with its own settings."""

    spec: str
    role: str = "default"
    config: GenerateConfig = field(default_factory=GenerateConfig)
    max_concurrency: int | None = None
    timeout: float = 120.0
    retry: RetryPolicy = field(default_factory=RetryPolicy.from_env)
    cache: CallCache | None = None
    use_cache: bool = True
    usage: UsageTracker = field(default_factory=lambda: GLOBAL_USAGE)
    provider: Provider | None = None
    observer: CallObserver | None = None

    def __post_init__(self) -> None:
        if self.provider is None:
            self.provider = shared_provider(self.spec)
        if self.use_cache and self.cache is None:
            self.cache = default_cache()
        # No explicit limit and a self-hosted server: adapt to what the server sustains (chunky.models.adaptive).
        self._adaptive = self.max_concurrency is None and self.provider.adaptive_key is not None
        limit = self.max_concurrency or self.provider.default_concurrency
        self.max_concurrency = limit
        self._slots: dict[int, asyncio.Semaphore] = {}
        self._rng = random.Random()

    @property
    def name(self) -> str:
        assert self.provider is not None  # set in __post_init__
        return str(self.provider.spec)

    def _slot(self) -> Any:
        if self._adaptive:
            assert self.provider is not None and self.provider.adaptive_key is not None
            return server_limit(self.provider.adaptive_key, high=64).slot(ROLE_PRIORITY.get(self.role, 1))
        # A semaphore belongs to one event loop; keep one per loop.
        loop = asyncio.get_running_loop()
        key = id(loop)
        sem = self._slots.get(key)
        if sem is None:
            sem = self._slots[key] = asyncio.Semaphore(self.max_concurrency or 1)
        return sem

    async def generate(
        self,
        prompt: str | list[Message] | list[dict[str, str]],
        *,
        system: str | None = None,
        config: GenerateConfig | None = None,
        json_schema: dict[str, Any] | None = None,
        sample_index: int = 0,
        hints: dict[str, Any] | None = None,
        use_cache: bool | None = None,
        **overrides: Any,
    ) -> ChatResult:
        """Call the model. `overrides` are GenerateConfig fields (temperature=0, max_tokens=64...)."""
        cfg = self.config.merged(config, **overrides)
        request = ChatRequest(
            messages=as_messages(prompt, system),
            config=cfg,
            json_schema=json_schema,
            sample_index=sample_index,
            hints=hints,
        )
        return await self.run(request, use_cache=use_cache)

    async def run(self, request: ChatRequest, *, use_cache: bool | None = None) -> ChatResult:
        provider = self.provider
        assert provider is not None
        cache = self.cache if (self.use_cache if use_cache is None else use_cache) else None
        # The key hashes the whole request; only pay for it when the cache is in use.
        key = request.cache_key(provider.name, provider.spec.model, provider.endpoint) if cache else ""
        if cache is not None:
            hit = await asyncio.to_thread(cache.get, key) if self._threaded_cache else cache.get(key)
            if hit is not None:
                self.usage.record(self.role, hit)
                return hit
        result = await self._call(request)
        if request.json_schema is not None:
            result = await self._ensure_structured(request, result)
        if cache is not None:
            if self._threaded_cache:
                await asyncio.to_thread(cache.put, key, result)
            else:
                cache.put(key, result)
        return result

    # Remote calls take long enough that a thread hop for SQLite is free; for the in-process mock
    # it would dominate, so do those inline.
    @property
    def _threaded_cache(self) -> bool:
        return self.provider is not None and self.provider.name != "mock"

    async def _call(self, request: ChatRequest) -> ChatResult:
        provider = self.provider
        assert provider is not None
        start = time.perf_counter()

        def on_retry(err: Exception, wait: float) -> None:
            self.usage.record_retry(self.role)

        observer = self.observer
        started = False
        slot = self._slot()
        adaptive = slot.limit if isinstance(slot, PrioritySlot) else None

        async def attempt() -> ChatResult:
            # The observer hears of a call once, when it has its concurrency slot: a call refused then
            # (budget spent, role down) never reaches the server.
            nonlocal started
            if observer is not None and not started:
                observer.before_call(self)
            started = True
            if adaptive is None:
                return await provider.generate(request, self.timeout)
            t0 = time.perf_counter()
            try:
                res = await provider.generate(request, self.timeout)
            except (RateLimited, CallTimeout, ServerError):
                adaptive.overloaded()
                raise
            adaptive.observe(self.role, time.perf_counter() - t0, res.usage.output_tokens)
            return res

        try:
            result, attempts = await call_with_retries(
                attempt,
                policy=self.retry,
                slot=slot,
                what=f"{self.role} call to {self.name}",
                on_retry=on_retry,
                rng=self._rng,
            )
        except ModelError as e:
            self.usage.record_error(self.role)
            if observer is not None and started:
                observer.after_call(self, e)
            raise
        if observer is not None:
            observer.after_call(self, None)
        result.attempts = attempts
        result.latency_s = time.perf_counter() - start
        result.cached = False
        if result.usage.cost_usd is None:
            result.usage.cost_usd = cost_of(
                provider.name, provider.spec.model, result.usage.input_tokens, result.usage.output_tokens
            )
        self.usage.record(self.role, result)
        return result

    async def preflight(self) -> None:
        """Check once, before concurrent calls, that the backend answers, and learn what it supports
        (e.g. whether it accepts a JSON schema). Raises ModelError naming the role and the model."""
        provider = self.provider
        assert provider is not None
        if provider.probed:
            return
        async with provider.probe_lock():
            if provider.probed:
                return
            await call_with_retries(
                lambda: provider.probe(self.timeout),
                policy=self.retry,
                slot=None,
                what="its probe call",
                rng=self._rng,
            )
            provider.probed = True

    async def _ensure_structured(self, request: ChatRequest, result: ChatResult) -> ChatResult:
        """Validate structured output; on failure make one repair call with the problem stated."""
        schema = request.json_schema
        assert schema is not None
        value, problem = parse_structured(result.text, schema)
        if problem is None:
            result.parsed = value
            return result
        repair = ChatRequest(
            messages=request.messages
            + [Message("assistant", result.text or "(empty)"), Message("user", repair_prompt(problem, schema))],
            config=request.config,
            json_schema=schema,
            sample_index=request.sample_index,
            hints=request.hints,
        )
        second = await self._call(repair)
        value, problem2 = parse_structured(second.text, schema)
        if problem2 is not None:
            self.usage.record_error(self.role)
            raise StructuredOutputError(
                f"{self.role} call to {self.name} returned no valid JSON after one repair: {problem2}",
                raw_text=second.text,
            )
        second.parsed = value
        second.usage = second.usage.plus(result.usage)
        second.latency_s += result.latency_s
        second.attempts += result.attempts
        return second

    def generate_sync(self, prompt: Any, **kwargs: Any) -> ChatResult:
        """Blocking convenience wrapper (for scripts and the CLI)."""
        return asyncio.run(self.generate(prompt, **kwargs))


def get_model(
    spec: str,
    role: str = "default",
    *,
    config: GenerateConfig | None = None,
    max_concurrency: int | None = None,
    timeout: float = 120.0,
    use_cache: bool = True,
    cache: CallCache | None = None,
    usage: UsageTracker | None = None,
    retry: RetryPolicy | None = None,
) -> Model:
    """Build a Model for a spec string (see `chunky models` for the syntax)."""
    return Model(
        spec=spec,
        role=role,
        config=config or GenerateConfig(),
        max_concurrency=max_concurrency,
        timeout=timeout,
        retry=retry or RetryPolicy.from_env(),
        cache=cache,
        use_cache=use_cache,
        usage=usage or GLOBAL_USAGE,
    )
