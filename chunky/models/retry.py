"""The one retry layer: exponential backoff with full jitter, honouring Retry-After.

Callers pass the concurrency slot; it is released while sleeping so other calls can proceed.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TypeVar

from chunky.errors import ModelError
from chunky.models.base import ProviderError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    # Cap on a server's Retry-After we are willing to honour in one sleep.
    max_retry_after: float = 300.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """Defaults, overridable with CHUNKY_MAX_ATTEMPTS and CHUNKY_RETRY_BASE_DELAY."""
        import os

        return cls(
            max_attempts=int(os.environ.get("CHUNKY_MAX_ATTEMPTS", cls.max_attempts)),
            base_delay=float(os.environ.get("CHUNKY_RETRY_BASE_DELAY", cls.base_delay)),
        )

    def delay(self, attempt: int, error: ProviderError, rng: random.Random) -> float:
        """Seconds to sleep after failed attempt number `attempt` (1-based)."""
        if error.retry_after is not None and error.retry_after >= 0:
            return min(error.retry_after, self.max_retry_after)
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(cap / 2, cap)


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    slot: AbstractAsyncContextManager[object] | None,  # an asyncio.Semaphore or chunky.models.adaptive.AdaptiveLimit
    what: str,
    on_retry: Callable[[ProviderError, float], None] | None = None,
    rng: random.Random | None = None,
) -> tuple[T, int]:
    """Run `fn` inside `slot`, retrying retryable ProviderErrors. Returns (value, attempts)."""
    rng = rng or random.Random()
    failures: Counter[str] = Counter()
    last: ProviderError | None = None
    for attempt in range(1, policy.max_attempts + 1):
        try:
            if slot is not None:
                async with slot:
                    return await fn(), attempt
            return await fn(), attempt
        except ProviderError as e:
            last = e
            failures[e.kind if e.status is None else f"{e.kind} [{e.status}]"] += 1
            if not e.retryable or attempt == policy.max_attempts:
                break
            wait = policy.delay(attempt, e, rng)
            if on_retry:
                on_retry(e, wait)
            await asyncio.sleep(wait)  # slot released: we are outside `async with`
    summary = ", ".join(f"{n}× {k}" for k, n in failures.items())
    attempts = sum(failures.values())
    detail = str(last) if last else "unknown error"
    if last is not None and not last.retryable:
        raise ModelError(f"{what} failed ({last.kind}): {detail}") from last
    raise ModelError(f"{what} failed after {attempts} attempts ({summary}); last error: {detail}") from last
