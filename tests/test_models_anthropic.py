"""The Anthropic provider against a local server speaking the Messages API on 127.0.0.1: system prompt
placement, structured output through a forced tool call, usage, and error mapping for the retry layer."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chunky.errors import ModelError
from chunky.models import RetryPolicy, get_model


class MessagesServer:
    def __init__(self, script: list[str]):
        self.script = list(script)
        self.bodies: list[dict] = []
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                srv.bodies.append(body)
                action = srv.script.pop(0) if srv.script else "text"
                if action == "529":
                    return self._send(529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
                if action == "429":
                    return self._send(429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}, {"retry-after": "0"})
                content = (
                    [{"type": "tool_use", "id": "t1", "name": "respond", "input": {"score": 81, "reasoning": "rebuts a true sum"}}]
                    if body.get("tools")
                    else [{"type": "text", "text": "No, 5 + 8 = 13 is incorrect."}]
                )
                self._send(200, {
                    "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"], "content": content,
                    "stop_reason": "tool_use" if body.get("tools") else "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 9},
                })

            def _send(self, status, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def messages_server(monkeypatch):
    servers = []

    def make(script):
        s = MessagesServer(script)
        servers.append(s)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", s.url)
        return s

    yield make
    for s in servers:
        s.close()


SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}, "reasoning": {"type": "string"}}, "required": ["score", "reasoning"]}


async def test_text_reply_with_system_prompt_and_priced_usage(messages_server):
    srv = messages_server([])
    m = get_model("anthropic:claude-haiku-4-5", role="target", use_cache=False)
    res = await m.generate("Is 5+8=13?", system="Be brief.", temperature=0.0, max_tokens=50)
    assert res.text.startswith("No, 5 + 8")
    body = srv.bodies[0]
    assert body["system"] == "Be brief." and all(msg["role"] != "system" for msg in body["messages"])
    assert body["max_tokens"] == 50 and body["temperature"] == 0.0 and body["model"] == "claude-haiku-4-5"
    assert res.usage.cost_usd == pytest.approx((12 * 1.0 + 9 * 5.0) / 1e6)


async def test_structured_output_is_a_forced_tool_call(messages_server):
    srv = messages_server([])
    m = get_model("anthropic:claude-haiku-4-5", role="judge", use_cache=False)
    res = await m.generate("judge", json_schema=SCHEMA)
    assert res.parsed == {"score": 81, "reasoning": "rebuts a true sum"}
    assert srv.bodies[0]["tool_choice"] == {"type": "tool", "name": "respond"}
    assert srv.bodies[0]["tools"][0]["input_schema"] == SCHEMA


async def test_overload_and_rate_limits_are_retried(messages_server):
    srv = messages_server(["529", "429"])
    m = get_model("anthropic:claude-haiku-4-5", use_cache=False, retry=RetryPolicy(max_attempts=3, base_delay=0.01))
    res = await m.generate("hi")
    assert res.attempts == 3 and len(srv.bodies) == 3


async def test_persistent_overload_is_a_model_error(messages_server):
    messages_server(["529"] * 5)
    m = get_model("anthropic:claude-haiku-4-5", use_cache=False, retry=RetryPolicy(max_attempts=2, base_delay=0.01))
    with pytest.raises(ModelError, match=r"2× server error \(5xx\) \[529\]"):
        await m.generate("hi")
