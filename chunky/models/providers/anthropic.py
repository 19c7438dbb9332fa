"""`anthropic:<model>`: the Anthropic Messages API. Structured output goes through a forced tool call.

The SDK's own retries are off: chunky's retry layer is the only one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from chunky.models.base import (
    BadRequest,
    CallTimeout,
    ConnectionFailed,
    MalformedResponse,
    ModelSpec,
    Provider,
    ProviderError,
    error_for_status,
)
from chunky.models.providers.openai_compat import retry_after_seconds
from chunky.models.registry import PROVIDERS, api_key
from chunky.models.types import ChatRequest, ChatResult, Usage

DEFAULT_MAX_TOKENS = 1024
TOOL_NAME = "respond"


def map_anthropic_error(e: Exception) -> ProviderError:
    import anthropic

    if isinstance(e, anthropic.APITimeoutError):
        return CallTimeout(f"no answer within the timeout ({e})")
    if isinstance(e, anthropic.APIConnectionError):
        return ConnectionFailed(f"could not connect: {e}")
    if isinstance(e, anthropic.APIStatusError):
        headers = getattr(e.response, "headers", None)
        return error_for_status(e.status_code, f"HTTP {e.status_code}: {str(e)[:300]}", retry_after_seconds(headers))
    if isinstance(e, TypeError):  # our request does not fit this SDK: retrying cannot help
        return BadRequest(f"the anthropic SDK rejected the request: {e}")
    if isinstance(e, (json.JSONDecodeError, ValueError, KeyError, AttributeError)):
        return MalformedResponse(f"unreadable response: {type(e).__name__}: {e}")
    return ProviderError(f"{type(e).__name__}: {e}")


class AnthropicProvider(Provider):
    name = "anthropic"
    default_concurrency = 8

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self._key = api_key(PROVIDERS["anthropic"], f"model '{spec}'")
        self.base_url = spec.base_url
        self._clients: dict[int, Any] = {}

    @property
    def endpoint(self) -> str:
        return self.base_url or ""

    def _client(self, timeout: float) -> Any:
        import anthropic

        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            kwargs: dict[str, Any] = {"api_key": self._key, "max_retries": 0, "timeout": timeout}
            if self.base_url:
                kwargs["base_url"] = self.base_url
            client = anthropic.AsyncAnthropic(**kwargs)
            self._clients = {loop_id: client}
        return client

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        cfg = request.config
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": self.spec.model,
            "messages": [m.to_dict() for m in request.messages if m.role != "system"],
            "max_tokens": cfg.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if system:
            body["system"] = system
        # Recent SDKs dropped these keyword arguments; the API still takes them in the body.
        sampling = {k: v for k, v in (("temperature", cfg.temperature), ("top_p", cfg.top_p)) if v is not None}
        if sampling:
            body["extra_body"] = sampling
        if cfg.stop:
            body["stop_sequences"] = list(cfg.stop)
        if request.json_schema is not None:
            body["tools"] = [
                {
                    "name": TOOL_NAME,
                    "description": "Give the answer in this structure.",
                    "input_schema": request.json_schema,
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return body

    async def generate(self, request: ChatRequest, timeout: float) -> ChatResult:
        client = self._client(timeout)
        try:
            resp = await client.messages.create(**self.payload(request))
        except Exception as e:
            raise map_anthropic_error(e) from None
        try:
            parts, parsed = [], None
            for block in resp.content:
                if block.type == "text":
                    parts.append(block.text)
                elif block.type == "tool_use" and block.name == TOOL_NAME:
                    parsed = block.input
            text = json.dumps(parsed) if parsed is not None else "".join(parts)
            return ChatResult(
                text=text,
                model=str(self.spec),
                provider=self.name,
                finish_reason=resp.stop_reason,
                usage=Usage(input_tokens=resp.usage.input_tokens, output_tokens=resp.usage.output_tokens),
                parsed=parsed,
            )
        except (AttributeError, TypeError) as e:
            raise MalformedResponse(f"the API's message is missing fields: {e}") from None


def create(spec: ModelSpec) -> AnthropicProvider:
    return AnthropicProvider(spec)
