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

    def merged(self, other: "GenerateConfig | None" = None, **overrides: Any) -> "GenerateConfig":
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
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


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
        d = asdict(self)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChatResult":
        usage = Usage(**d.get("usage", {}))
        lps = d.get("logprobs")
        logprobs = (
            [TokenLogprob(t["token"], t["logprob"], [tuple(x) for x in t.get("top", [])]) for t in lps]
            if lps
            else None
        )
        return cls(
            text=d["text"],
            model=d["model"],
            provider=d["provider"],
            finish_reason=d.get("finish_reason"),
            usage=usage,
            cached=d.get("cached", False),
            latency_s=d.get("latency_s", 0.0),
            parsed=d.get("parsed"),
            logprobs=logprobs,
            attempts=d.get("attempts", 1),
        )
