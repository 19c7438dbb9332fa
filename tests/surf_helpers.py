"""Test providers for the SURF tests: deterministic stand-ins with a behaviour to observe."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from chunky.models import Model, UsageTracker
from chunky.models.base import ModelSpec, Provider
from chunky.models.types import ChatRequest, ChatResult, Usage


class ScriptedProvider(Provider):
    """Answers with `reply(request) -> text`; counts calls and the peak number in flight."""

    name = "mock"
    default_concurrency = 64

    def __init__(self, reply: Callable[[ChatRequest], str], delay: float = 0.0):
        super().__init__(ModelSpec("mock", "scripted", raw="mock:scripted"))
        self.reply = reply
        self.delay = delay
        self.calls = 0
        self.in_flight = 0
        self.peak = 0
        self.requests: list[ChatRequest] = []

    async def generate(self, request: ChatRequest, timeout: float) -> ChatResult:
        self.calls += 1
        self.requests.append(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            text = self.reply(request)
        finally:
            self.in_flight -= 1
        return ChatResult(text=text, model="scripted", provider="mock", finish_reason="stop",
                          usage=Usage(input_tokens=10, output_tokens=5, cost_usd=0.0))


def scripted(reply: Callable[[ChatRequest], str], *, role: str = "judge", delay: float = 0.0,
             max_concurrency: int | None = None, usage: UsageTracker | None = None) -> tuple[Model, ScriptedProvider]:
    p = ScriptedProvider(reply, delay)
    m = Model(spec="mock", role=role, provider=p, use_cache=False, max_concurrency=max_concurrency,
              usage=usage or UsageTracker())
    return m, p


def judge_json(score: float, reasoning: str = "ok") -> str:
    return json.dumps({"reasoning": reasoning, "score": score})
