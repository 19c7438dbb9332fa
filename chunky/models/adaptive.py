"""Adaptive concurrency for a self-hosted server: as many calls in flight as the server sustains, not more.

A fixed limit of 16 per role overruns a server that computes one request at a time: requests wait in its
queue until the client's timeout fires, are retried at the back of the queue, and the server's work on them
is thrown away. One `AdaptiveLimit` per server (shared by every role and model that uses it) starts at one
call in flight and
- grows by one while the calls' latency holds (the server still has idle capacity),
- shrinks by one when latency grows (calls now wait in the server's queue: more in flight only adds delay),
- halves on a timeout, a 429 or a 5xx (the server is overloaded).
Latency is compared per role as seconds per generated token, against the best seen for that role, so long
judge prompts and short target answers on the same server do not confuse each other.

Waiting calls are served by priority, then in arrival order: a caller that started work (a SURF candidate
whose query is written) finishes it before new work starts, so results arrive steadily instead of every
candidate's first call being served before any second one (`priority`: lower first; by role in ROLE_PRIORITY).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

GROW_BELOW = 1.5  # median latency / best latency under which one more call in flight is tried
SHRINK_ABOVE = 2.0  # ... above which calls are queueing in the server: one fewer
MIN_TOKENS = 4  # shorter answers say little about the server's speed
# A SURF candidate is generator → target → judge: serve its later calls first so candidates finish.
ROLE_PRIORITY = {"judge": 0, "target": 1, "generator": 2}


@dataclass
class AdaptiveLimit:
    """An asyncio semaphore whose size follows the server (use `async with limit:`)."""

    name: str
    limit: int = 1
    low: int = 1
    high: int = 32
    in_use: int = 0
    best: dict[str, float] = field(default_factory=dict)  # role -> best seconds per token seen
    window: list[float] = field(default_factory=list)
    changes: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, new limit), for benchmarks
    _waiters: list[tuple[int, int, asyncio.Future[None]]] = field(default_factory=list)  # heap
    _seq: itertools.count = field(default_factory=itertools.count)

    async def __aenter__(self) -> None:
        await self.acquire(1)

    async def __aexit__(self, *exc: Any) -> None:
        self._release()

    def slot(self, priority: int) -> PrioritySlot:
        """`async with limit.slot(p):` waits behind calls of a lower `p` only."""
        return PrioritySlot(self, priority)

    async def acquire(self, priority: int) -> None:
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # granted, then cancelled before it could run: give the slot back
            else:
                fut.cancel()  # stays in the heap; _wake skips it
            raise

    def _release(self) -> None:
        self.in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < self.limit:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                self.in_use += 1
                fut.set_result(None)

    def _set(self, limit: int) -> None:
        limit = max(self.low, min(self.high, limit))
        if limit != self.limit:
            self.limit = limit
            self.changes.append((time.monotonic(), limit))
            self._wake()

    def observe(self, role: str, seconds: float, output_tokens: int) -> None:
        """A call answered after `seconds` in its slot with `output_tokens` generated."""
        if output_tokens < MIN_TOKENS or seconds <= 0:
            return
        per_token = seconds / output_tokens
        best = self.best.get(role)
        if best is None or per_token < best:
            self.best[role] = best = per_token
        self.window.append(per_token / best)
        if len(self.window) < max(4, self.limit):
            return
        ratio = statistics.median(self.window)
        self.window.clear()
        if ratio <= GROW_BELOW:
            self._set(self.limit + 1)
        elif ratio > SHRINK_ABOVE:
            self._set(self.limit - 1)

    def overloaded(self) -> None:
        """A timeout, 429 or 5xx: the server cannot take this many calls."""
        self.window.clear()
        self._set(self.limit // 2)


@dataclass
class PrioritySlot:
    limit: AdaptiveLimit
    priority: int

    async def __aenter__(self) -> None:
        await self.limit.acquire(self.priority)

    async def __aexit__(self, *exc: Any) -> None:
        self.limit._release()


_LIMITS: dict[tuple[str, int], AdaptiveLimit] = {}
_LOCK = threading.Lock()


def server_limit(server: str, high: int = 64) -> AdaptiveLimit:
    """The adaptive limit of one server in the running event loop (an asyncio future belongs to one loop)."""
    key = (server, id(asyncio.get_running_loop()))
    with _LOCK:
        limit = _LIMITS.get(key)
        if limit is None:
            limit = _LIMITS[key] = AdaptiveLimit(server, high=high)
        return limit
