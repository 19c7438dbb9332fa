"""`mock`: a deterministic in-process model for tests and orchestration benchmarks.

It reads the request's `hints` (set by chunky's own prompt builders) to play each role:
- query generator (`task=generate_query`): the sampled attributes joined into one query;
- judge (`task=judge`): a valid judgment whose score is a stable hash of (query, response) mod 101;
- attribute extractor (`task=extract_attributes`): ten attribute sentences derived from the text;
- anything else (a target): "Echo: " + the last user message.
`mock:text=...` always returns that fixed text (or, with a JSON schema, that text parsed as JSON).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from chunky.models.base import ModelSpec, Provider
from chunky.models.types import ChatRequest, ChatResult, Usage


def stable_score(query: str, response: str) -> int:
    """The mock judge's score: a stable hash of (query, response) modulo 101."""
    h = hashlib.sha256(f"{query}\x00{response}".encode()).digest()
    return int.from_bytes(h[:8], "big") % 101


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class MockProvider(Provider):
    name = "mock"
    default_concurrency = 64

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.fixed_text: str | None = None
        if spec.model.startswith("text="):
            self.fixed_text = spec.model[len("text=") :]

    def _answer(self, request: ChatRequest) -> tuple[str, Any]:
        hints = request.hints or {}
        task = hints.get("task")
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        if self.fixed_text is not None:
            parsed = None
            if request.json_schema is not None:
                try:
                    parsed = json.loads(self.fixed_text)
                except json.JSONDecodeError:
                    parsed = None
            return self.fixed_text, parsed
        if task == "generate_query":
            attrs = [str(a).strip().rstrip(".") for a in hints.get("attributes", [])]
            query = "; ".join(attrs) + "?" if attrs else last_user
            if request.sample_index:
                query += f" (variant {request.sample_index})"
            return self._maybe_json(request, {"query": query}, query)
        if task == "judge":
            q, r = str(hints.get("query", "")), str(hints.get("response", ""))
            score = stable_score(q, r)
            reasoning = f"mock judgment of a {len(r)}-character response"
            return self._maybe_json(
                request,
                {"reasoning": reasoning, "score": score},
                f"<reasoning>{reasoning}</reasoning><score>{score}</score>",
            )
        if task == "extract_attributes":
            side = hints.get("side", "query")
            n = int(hints.get("n", 10))
            text = str(hints.get("text", last_user))
            words = [w.strip(".,!?;:\"'()").lower() for w in text.split()]
            words = [w for w in words if w]
            attrs = []
            for i in range(n):
                w = words[i % len(words)] if words else "nothing"
                attrs.append(f"The {side} mentions '{w}'.")
            return self._maybe_json(request, {"attributes": attrs}, "\n".join(attrs))
        if task == "json" and request.json_schema is not None:
            payload = hints.get("payload", {})
            return json.dumps(payload), payload
        text = "Echo: " + last_user
        if request.json_schema is not None:
            return self._maybe_json(request, {"text": text}, text)
        return text, None

    @staticmethod
    def _maybe_json(request: ChatRequest, payload: dict[str, Any], text: str) -> tuple[str, Any]:
        if request.json_schema is not None:
            return json.dumps(payload), payload
        return text, None

    async def generate(self, request: ChatRequest, timeout: float) -> ChatResult:
        text, parsed = self._answer(request)
        max_tokens = request.config.max_tokens
        finish = "stop"
        if max_tokens is not None and request.json_schema is None and _tokens(text) > max_tokens:
            text = " ".join(text.split()[:max_tokens])
            finish = "length"
        prompt_tokens = sum(_tokens(m.content) for m in request.messages)
        return ChatResult(
            text=text,
            model=str(self.spec),
            provider=self.name,
            finish_reason=finish,
            usage=Usage(input_tokens=prompt_tokens, output_tokens=_tokens(text), cost_usd=0.0),
            parsed=parsed,
        )


def create(spec: ModelSpec) -> MockProvider:
    return MockProvider(spec)
