"""Token and cost accounting: one tally record (`RoleUsage`) and the per-role tracker that aggregates it
(`UsageTracker`). Prices are USD per million tokens (input, output).

A `Model` records every call in its tracker (per run, or GLOBAL_USAGE); the SURF loop keeps one tracker per
candidate (generator, target, judge) and stores it with the candidate. One call's own reading, as the provider
reports it, is `chunky.models.types.Usage` on the ChatResult; `RoleUsage.add` adds readings up.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from chunky import serde

if TYPE_CHECKING:  # pragma: no cover
    from chunky.models.types import ChatResult

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
    """What one role's calls used. `calls` counts calls made (answered, cached or failed for good); a Model's own
    tracker counts a call that fails for good in `errors` only (it never answered)."""

    calls: int = 0
    cached_calls: int = 0
    errors: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0  # the calls with a known price; see cost_known
    cost_known: bool = True  # False: some call's price is unknown, so cost_usd is a lower bound

    @property
    def uncached_calls(self) -> int:
        return self.calls - self.cached_calls

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, result: ChatResult) -> None:
        """One answered call."""
        self.calls += 1
        if result.cached:
            self.cached_calls += 1
            return  # a cache hit costs nothing now
        self.input_tokens += result.usage.input_tokens
        self.output_tokens += result.usage.output_tokens
        if result.usage.cost_usd is None:
            self.cost_known = False
        else:
            self.cost_usd += result.usage.cost_usd

    def add_failed(self) -> None:
        """A call that failed for good: it was made (it counts against the budget) but used nothing we know of."""
        self.calls += 1

    def merge(self, other: RoleUsage) -> None:
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        self.errors += other.errors
        self.retries += other.retries
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd
        self.cost_known = self.cost_known and other.cost_known

    def minus(self, before: RoleUsage) -> RoleUsage:
        """What was used since `before` (an earlier copy of this tally, e.g. `tracker.total()`)."""
        return RoleUsage(
            calls=self.calls - before.calls,
            cached_calls=self.cached_calls - before.cached_calls,
            errors=self.errors - before.errors,
            retries=self.retries - before.retries,
            input_tokens=self.input_tokens - before.input_tokens,
            output_tokens=self.output_tokens - before.output_tokens,
            cost_usd=self.cost_usd - before.cost_usd,
            cost_known=self.cost_known,
        )

    def to_dict(self) -> dict[str, Any]:
        """The full form (run.sqlite meta `usage`, per role)."""
        return asdict(self)

    # A candidate's row stores the short form, written once per candidate (100k in a large sweep): hand-written
    # (asdict shows up in profiles) and with the key names candidate rows have always had.
    def to_row(self) -> dict[str, Any]:
        """The short form stored with each candidate: calls, cached, input_tokens, output_tokens, cost_usd."""
        return {
            "calls": self.calls,
            "cached": self.cached_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any], *, where: str = "") -> RoleUsage:
        """Read the short form back (the renamed key `cached` is the only work; the rest is serde)."""
        d = dict(row)
        if "cached" in d:
            d["cached_calls"] = d.pop("cached")
        return serde.from_dict(cls, d, where=where)


@dataclass
class UsageTracker:
    """Tallies per role. Thread-safe; shared by every Model created for the same run (or one per candidate)."""

    roles: dict[str, RoleUsage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def role(self, name: str) -> RoleUsage:
        """The tally of one role (created empty); add to it from one task at a time, or use record*."""
        with self._lock:
            return self._role(name)

    def _role(self, role: str) -> RoleUsage:
        if role not in self.roles:
            self.roles[role] = RoleUsage()
        return self.roles[role]

    def record(self, role: str, result: ChatResult) -> None:
        with self._lock:
            self._role(role).add(result)

    def record_error(self, role: str) -> None:
        with self._lock:
            self._role(role).errors += 1

    def record_retry(self, role: str) -> None:
        with self._lock:
            self._role(role).retries += 1

    def merge(self, other: UsageTracker) -> None:
        for name, tally in other.snapshot().items():
            with self._lock:
                self._role(name).merge(tally)

    def snapshot(self) -> dict[str, RoleUsage]:
        """A copy of every role's tally."""
        with self._lock:
            return {k: RoleUsage(**asdict(v)) for k, v in self.roles.items()}

    def total(self) -> RoleUsage:
        t = RoleUsage()
        for r in self.snapshot().values():
            t.merge(r)
        return t

    def to_dict(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: v.to_dict() for k, v in self.roles.items()}

    def to_rows(self) -> dict[str, dict[str, Any]]:
        """Every role in the short form (`RoleUsage.to_row`): what a candidate row stores."""
        with self._lock:
            return {k: v.to_row() for k, v in self.roles.items()}


GLOBAL_USAGE = UsageTracker()
