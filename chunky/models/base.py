"""The one small interface every provider implements, and the errors the retry layer reads."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass

from chunky.models.types import ChatRequest, ChatResult


class ProviderError(Exception):
    """A failed call. `retryable` tells the retry layer whether another attempt can help."""

    retryable: bool = False
    kind: str = "error"

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class RateLimited(ProviderError):
    retryable = True
    kind = "rate limit (429)"


class ServerError(ProviderError):
    retryable = True
    kind = "server error (5xx)"


class CallTimeout(ProviderError):
    retryable = True
    kind = "timeout"


class ConnectionFailed(ProviderError):
    retryable = True
    kind = "connection error"


class MalformedResponse(ProviderError):
    """The server answered, but not with a well-formed completion (garbage, truncated JSON)."""

    retryable = True
    kind = "malformed response"


class BadRequest(ProviderError):
    retryable = False
    kind = "bad request"


class AuthError(ProviderError):
    retryable = False
    kind = "authentication error"


def error_for_status(status: int, message: str, retry_after: float | None = None) -> ProviderError:
    """The retry layer's reading of an HTTP error status (shared by every HTTP provider)."""
    if status == 429:
        return RateLimited(message, retry_after=retry_after, status=status)
    if status in (408, 425):
        return CallTimeout(message, status=status)
    if status >= 500:  # includes Anthropic's 529 "overloaded"
        return ServerError(message, retry_after=retry_after, status=status)
    if status in (401, 403):
        return AuthError(message, status=status)
    return BadRequest(message, status=status)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec string such as `openai:gpt-4o-mini` or `http://127.0.0.1:8080/v1:smollm2`."""

    provider: str
    model: str
    base_url: str | None = None
    raw: str = ""

    def __str__(self) -> str:
        return self.raw or f"{self.provider}:{self.model}"


class Provider(ABC):
    """A backend that turns one request into one result. No caching or retries here."""

    name: str = "provider"
    # Providers whose calls are local and cheap report no cost.
    supports_logprobs: bool = False
    # Default max concurrent calls for this backend (the in-process llama is single-stream).
    default_concurrency: int = 8

    @property
    def adaptive_key(self) -> str | None:
        """The server whose capacity calls share, when its concurrency should adapt (self-hosted servers);
        None for a fixed limit."""
        return None

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        # Set once `probe` has succeeded: one probe per backend per process, before concurrent calls.
        self.probed = False
        self._probe_locks: dict[int, asyncio.Lock] = {}

    def probe_lock(self) -> asyncio.Lock:
        # An asyncio.Lock belongs to one event loop; keep one per loop.
        key = id(asyncio.get_running_loop())
        lock = self._probe_locks.get(key)
        if lock is None:
            lock = self._probe_locks[key] = asyncio.Lock()
        return lock

    async def probe(self, timeout: float) -> None:
        """A cheap call that fails (with a ProviderError) when the backend cannot serve requests, and learns
        its capabilities. In-process backends have nothing to check."""
        return None

    @property
    def endpoint(self) -> str:
        """Part of the cache key that identifies the backend instance (never a secret)."""
        return self.spec.base_url or ""

    @abstractmethod
    async def generate(self, request: ChatRequest, timeout: float) -> ChatResult:
        """Run one request. Raise a ProviderError subclass on failure."""

    async def aclose(self) -> None:  # pragma: no cover - default no-op
        return None
