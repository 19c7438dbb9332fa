"""Typed records of the model layer: messages, sampling settings, requests and results."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def as_messages(
    prompt: str | list[Message] | list[dict[str, str]], system: str | None = None
) -> list[Message]:
    """Normalise a prompt string or a message list, prepending `system` when given."""
    if isinstance(prompt, str):
        msgs = [Message("user", prompt)]
    else:
        msgs = [m if isinstance(m, Message) else Message(m["role"], m["content"]) for m in prompt]  # type: ignore[arg-type]
    if system:
        msgs = [Message("system", system)] + [m for m in msgs if m.role != "system"]
    return msgs


@dataclass(frozen=True)
class GenerateConfig:
    """Sampling settings. `None` means the provider's default."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    # llama.cpp only; the embedded SmolLM2 loops on long answers without ~1.2.
    repeat_penalty: float | None = None

    def merged(self, other: GenerateConfig | None = None, **overrides: Any) -> GenerateConfig:
        """`self` with every non-default field of `other` and every non-None override applied."""
        out = self
        if other is not None:
            vals = {k: v for k, v in asdict(other).items() if v is not None and v is not False}
            out = replace(out, **vals)
        vals = {k: v for k, v in overrides.items() if v is not None}
        if "stop" in vals and vals["stop"] is not None:
            vals["stop"] = tuple(vals["stop"])
        return replace(out, **vals) if vals else out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["stop"] is not None:
            d["stop"] = list(d["stop"])
        return d


@dataclass
class ChatRequest:
    """One call: everything that determines the answer, and so everything in the cache key."""

    messages: list[Message]
    config: GenerateConfig = field(default_factory=GenerateConfig)
    json_schema: dict[str, Any] | None = None
    # Distinguishes repeated samples of the same prompt (robustness, judge sampling).
    sample_index: int = 0
    # Structured hints about the task (e.g. {"task": "judge", "query": ..., "response": ...}).
    # Real providers ignore them; the deterministic mock uses them. They are derived from the
    # messages, but are part of the key so the mock's outputs are cached faithfully.
    hints: dict[str, Any] | None = None

    def cache_key(self, provider: str, model: str, endpoint: str = "") -> str:
        payload = {
            "provider": provider,
            "model": model,
            "endpoint": endpoint,
            "messages": [m.to_dict() for m in self.messages],
            "config": self.config.to_dict(),
            "json_schema": self.json_schema,
            "sample_index": self.sample_index,
            "hints": self.hints,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Usage:
    """One call's reading, as the provider reports it (and the call cache stores it). Tallies of many calls are
    `chunky.models.accounting.RoleUsage`."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None  # None: no known price

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def plus(self, other: Usage) -> Usage:
        """Two calls answered as one (a structured call and its repair); the cost is unknown if either's is."""
        cost = None if self.cost_usd is None or other.cost_usd is None else self.cost_usd + other.cost_usd
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens, cost)


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class ChatResult:
    text: str
    model: str
    provider: str
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    latency_s: float = 0.0
    parsed: Any = None
    logprobs: list[TokenLogprob] | None = None
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
