"""OpenAI-compatible chat endpoints: OpenAI, OpenRouter, Ollama, and any server given as
`http(s)://host:port/v1:<model>` (vLLM, SGLang, llama.cpp server, Together...).

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
    ServerError,
    error_for_status,
)
from chunky.models.registry import PROVIDERS, api_key
from chunky.models.structured import schema_instruction
from chunky.models.types import ChatRequest, ChatResult, GenerateConfig, Message, TokenLogprob, Usage

# How a server accepts a JSON schema, tried in this order for servers of unknown flavour:
# OpenAI's json_schema; llama.cpp's json_object + schema; else the schema stated in the prompt.
SCHEMA_MODES = ("json_schema", "json_object", "prompt")
# What each self-hosted server's probe found (base URL -> index into SCHEMA_MODES): one probe per server.
_SERVER_SCHEMA_MODE: dict[str, int] = {}
PROBE_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


def retry_after_seconds(headers: Any) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return float(ra)
    except ValueError:
        import time
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(ra).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def map_openai_error(e: Exception) -> ProviderError:
    """Translate an openai SDK exception into the retry layer's vocabulary."""
    import openai

    if isinstance(e, openai.APITimeoutError):
        return CallTimeout(f"no answer within the timeout ({e})")
    if isinstance(e, openai.APIConnectionError):
        return ConnectionFailed(f"could not connect: {e}")
    if isinstance(e, openai.APIStatusError):
        headers = getattr(e.response, "headers", None)
        return error_for_status(e.status_code, f"HTTP {e.status_code}: {_short(e)}", retry_after_seconds(headers))
    if isinstance(e, TypeError):  # our request does not fit this SDK: retrying cannot help
        return BadRequest(f"the openai SDK rejected the request: {e}")
    if isinstance(e, (json.JSONDecodeError, ValueError, KeyError, AttributeError)):
        return MalformedResponse(f"unreadable response: {type(e).__name__}: {e}")
    return ProviderError(f"{type(e).__name__}: {e}")


def _short(e: Exception, n: int = 300) -> str:
    s = str(getattr(e, "message", None) or e)
    return s if len(s) <= n else s[:n] + "…"


class OpenAICompatProvider(Provider):
    supports_logprobs = True
    default_concurrency = 16

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.name = spec.provider
        # Hosted APIs refuse to start without their key; self-hosted servers get the table's stand-in key.
        self.info = PROVIDERS[spec.provider]
        self.api_key = api_key(self.info, f"model '{spec}'")
        self.schema_mode = 0 if spec.provider in ("openai", "openrouter", "http", "ollama") else 2
        self._clients: dict[int, Any] = {}

    @property
    def adaptive_key(self) -> str | None:
        # A self-hosted server (vLLM, llama.cpp, Ollama...) has the capacity it has; hosted APIs keep a fixed limit.
        return self.spec.base_url if self.info.self_hosted else None

    def _client(self, timeout: float) -> Any:
        import openai

        # An AsyncOpenAI client (its httpx pool) is bound to the event loop it first ran on.
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = openai.AsyncOpenAI(
                base_url=self.spec.base_url, api_key=self.api_key, max_retries=0, timeout=timeout
            )
            self._clients = {loop_id: client}
        return client

    def _payload(self, request: ChatRequest, mode: str | None) -> dict[str, Any]:
        cfg = request.config
        messages = list(request.messages)
        if request.json_schema is not None and mode == "prompt":
            last = messages[-1]
            messages[-1] = Message(last.role, last.content + "\n\n" + schema_instruction(request.json_schema))
        body: dict[str, Any] = {"model": self.spec.model, "messages": [m.to_dict() for m in messages]}
        if cfg.temperature is not None:
            body["temperature"] = cfg.temperature
        if cfg.max_tokens is not None:
            body["max_tokens"] = cfg.max_tokens
        if cfg.top_p is not None:
            body["top_p"] = cfg.top_p
        if cfg.seed is not None:
            body["seed"] = cfg.seed
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if cfg.logprobs:
            body["logprobs"] = True
            if cfg.top_logprobs:
                body["top_logprobs"] = cfg.top_logprobs
        extra: dict[str, Any] = {}
        if cfg.repeat_penalty is not None and self.info.self_hosted:
            extra["repeat_penalty"] = cfg.repeat_penalty
        if request.json_schema is not None:
            if mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": request.json_schema},
                }
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object", "schema": request.json_schema}
        if extra:
            body["extra_body"] = extra
        return body

    async def probe(self, timeout: float) -> None:
        """One tiny structured call (1 token): fails when the server cannot be reached, and settles how this
        server takes a JSON schema, so concurrent first calls do not each find out with a rejected request."""
        # Hosted APIs take json_schema (and some reject a 1-token request); probe self-hosted servers only.
        if not self.info.self_hosted or self.schema_mode >= len(SCHEMA_MODES) - 1:
            return
        server = str(self.spec.base_url)
        if server in _SERVER_SCHEMA_MODE:  # another model on the same server was probed already
            self.schema_mode = _SERVER_SCHEMA_MODE[server]
            return
        request = ChatRequest(
            messages=[Message("user", 'Reply with {"ok": true}.')],
            config=GenerateConfig(temperature=0.0, max_tokens=1),
            json_schema=PROBE_SCHEMA,
        )
        while self.schema_mode < len(SCHEMA_MODES) - 1:
            try:
                await self._generate(request, timeout, SCHEMA_MODES[self.schema_mode])
                break
            except BadRequest as e:
                if e.status not in (400, 422, 500):
                    raise
                self.schema_mode += 1
            except MalformedResponse:
                break  # it answered; one token of JSON need not parse
        _SERVER_SCHEMA_MODE[server] = self.schema_mode

    async def generate(self, request: ChatRequest, timeout: float) -> ChatResult:
        if request.json_schema is not None and not self.probed:
            async with self.probe_lock():
                if not self.probed:
                    await self.probe(timeout)
                    self.probed = True
        while True:
            mode = SCHEMA_MODES[self.schema_mode] if request.json_schema is not None else None
            try:
                return await self._generate(request, timeout, mode)
            except BadRequest as e:
                # A server that rejects this way of passing a schema: try the next way, remember it.
                if mode is not None and self.schema_mode < len(SCHEMA_MODES) - 1 and e.status in (400, 422, 500):
                    self.schema_mode += 1
                    continue
                raise

    async def _generate(self, request: ChatRequest, timeout: float, mode: str | None) -> ChatResult:
        client = self._client(timeout)
        body = self._payload(request, mode)
        try:
            resp = await client.chat.completions.create(**body, timeout=timeout)
        except ProviderError:
            raise
        except Exception as e:  # the SDK's errors, and garbage bodies it failed to parse
            err = map_openai_error(e)
            # llama.cpp answers an unsupported response_format with a 500; count that as a schema
            # rejection (BadRequest) only while probing schema modes.
            if isinstance(err, ServerError) and mode == "json_schema" and self.schema_mode == 0:
                raise BadRequest(str(err), status=err.status) from None
            raise err from None
        try:
            if isinstance(resp, str):
                raise MalformedResponse(f"the server returned text, not a completion: {resp[:120]!r}")
            choice = resp.choices[0]
            text = choice.message.content or ""
            usage = resp.usage
            logprobs = None
            if request.config.logprobs and getattr(choice, "logprobs", None) and choice.logprobs.content:
                logprobs = [
                    TokenLogprob(t.token, float(t.logprob), [(x.token, float(x.logprob)) for x in (t.top_logprobs or [])])
                    for t in choice.logprobs.content
                ]
            return ChatResult(
                text=text,
                model=str(self.spec),
                provider=self.name,
                finish_reason=choice.finish_reason,
                usage=Usage(
                    input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                    output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                ),
                logprobs=logprobs,
            )
        except ProviderError:
            raise
        except (AttributeError, IndexError, TypeError, ValueError) as e:
            raise MalformedResponse(f"the server's completion is missing fields: {type(e).__name__}: {e}") from None


def create(spec: ModelSpec) -> OpenAICompatProvider:
    return OpenAICompatProvider(spec)
