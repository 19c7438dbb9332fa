"""Token and cost accounting per role. Prices are USD per million tokens (input, output)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field

# Public list prices of well-known models (USD / 1M tokens). Unknown models: tokens only.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5.1": (1.25, 10.00),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}


def price_for(provider: str, model: str) -> tuple[float, float] | None:
    """Price of a model, matching dated variants (claude-haiku-4-5-20251001) to their family."""
    if provider in ("local", "mock"):
        return (0.0, 0.0)
    name = model.split("/")[-1].lower()
    best = None
    for key, price in PRICES.items():
        if name == key or name.startswith(key + "-"):
            if best is None or len(key) > len(best[0]):
                best = (key, price)
    return best[1] if best else None


def cost_of(provider: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
    p = price_for(provider, model)
    if p is None:
        return None
    return (input_tokens * p[0] + output_tokens * p[1]) / 1e6


@dataclass
class RoleUsage:
    calls: int = 0
    cached_calls: int = 0
    errors: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UsageTracker:
    """Counts per role. Thread-safe; shared by every Model created for the same run."""

    roles: dict[str, RoleUsage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def _role(self, role: str) -> RoleUsage:
        if role not in self.roles:
            self.roles[role] = RoleUsage()
        return self.roles[role]

    def record(self, role: str, *, input_tokens: int, output_tokens: int, cost: float | None, cached: bool) -> None:
        with self._lock:
            r = self._role(role)
            r.calls += 1
            if cached:
                r.cached_calls += 1
                return  # a cache hit costs nothing now
            r.input_tokens += input_tokens
            r.output_tokens += output_tokens
            if cost is None:
                r.cost_known = False
            else:
                r.cost_usd += cost

    def record_error(self, role: str) -> None:
        with self._lock:
            self._role(role).errors += 1

    def record_retry(self, role: str) -> None:
        with self._lock:
            self._role(role).retries += 1

    def total(self) -> RoleUsage:
        with self._lock:
            t = RoleUsage()
            for r in self.roles.values():
                t.calls += r.calls
                t.cached_calls += r.cached_calls
                t.errors += r.errors
                t.retries += r.retries
                t.input_tokens += r.input_tokens
                t.output_tokens += r.output_tokens
                t.cost_usd += r.cost_usd
                t.cost_known = t.cost_known and r.cost_known
            return t

    def to_dict(self) -> dict:
        with self._lock:
            return {k: v.to_dict() for k, v in self.roles.items()}


GLOBAL_USAGE = UsageTracker()
