"""Per-candidate call accounting: what each role spent on one candidate (stored with it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from chunky.models.types import ChatResult


@dataclass
class CallUsage:
    calls: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, result: ChatResult) -> None:
        self.calls += 1
        if result.cached:
            self.cached += 1
            return
        self.input_tokens += result.usage.input_tokens
        self.output_tokens += result.usage.output_tokens
        self.cost_usd += result.usage.cost_usd or 0.0

    def add_failed(self) -> None:
        self.calls += 1

    def merge(self, other: "CallUsage") -> None:
        self.calls += other.calls
        self.cached += other.cached
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd

    def to_dict(self) -> dict:
        # Hand-written: dataclasses.asdict is slow enough to show in a 100k-candidate sweep.
        return {
            "calls": self.calls,
            "cached": self.cached,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }


@dataclass
class CandidateUsage:
    roles: dict[str, CallUsage] = field(default_factory=dict)

    def role(self, name: str) -> CallUsage:
        if name not in self.roles:
            self.roles[name] = CallUsage()
        return self.roles[name]

    def merge(self, other: "CandidateUsage") -> None:
        for k, v in other.roles.items():
            self.role(k).merge(v)

    def to_dict(self) -> dict:
        return {k: v.to_dict() for k, v in self.roles.items()}

    @property
    def uncached_calls(self) -> int:
        return sum(v.calls - v.cached for v in self.roles.values())

    @property
    def tokens(self) -> int:
        return sum(v.input_tokens + v.output_tokens for v in self.roles.values())

    @property
    def cost(self) -> float:
        return sum(v.cost_usd for v in self.roles.values())
