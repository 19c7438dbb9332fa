"""A slow self-hosted server is used fully, not overrun: calls to it adapt their concurrency (shared by every
role on that server), a capability probe runs once before concurrent calls, and no prompt holds a placeholder
a small model can copy as its answer. Real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from faultserver import completion

from chunky.models import get_model
from chunky.models.adaptive import server_limit

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


class SlotServer:
    """An OpenAI-compatible server with `slots` compute slots (llama_cpp.server has one): a request waits in
    its queue for a slot, then takes `seconds`. It counts requests in the server at once, and can reject
    `response_format: json_schema` with a 500 as llama_cpp.server does."""

    def __init__(self, slots: int, seconds: float = 0.05, reject_json_schema: bool = False):
        self.sem = threading.Semaphore(slots)
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0
        self.formats: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                fmt = (body.get("response_format") or {}).get("type")
                with server.lock:
                    server.formats.append(fmt)
                    server.inside += 1
                    server.peak = max(server.peak, server.inside)
                try:
                    if fmt == "json_schema" and reject_json_schema:
                        return self._send(500, json.dumps({"error": {"message": "unsupported response_format"}}))
                    with server.sem:
                        time.sleep(seconds)
                    reply = completion('{"ok": true}' if fmt else "word " * 10)
                    reply["usage"] = {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15}
                    self._send(200, json.dumps(reply))
                finally:
                    with server.lock:
                        server.inside -= 1

            def _send(self, status, text):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


async def _calls(base: str, n: int, roles=("target", "judge"), **kw):
    # two models on one server (e.g. vLLM serving both): they share its limit and its probe
    models = [get_model(f"{base}:m{i}", role=r, use_cache=False) for i, r in enumerate(roles)]
    results = await asyncio.gather(*(models[i % len(models)].generate(f"q{i}", seed=i, **kw) for i in range(n)))
    return results, server_limit(base)


# Service times well above the client's own overhead (which grows on a busy machine), so latency measures the server.
SERVICE = 0.2


def test_a_one_slot_server_is_not_flooded_and_every_call_succeeds():
    with SlotServer(slots=1, seconds=2.5 * SERVICE) as srv:
        results, limit = asyncio.run(_calls(srv.base_url, 20))
    assert len(results) == 20 and all(r.text for r in results)
    # 20 calls from two roles, but the server never holds more than a few at once (a fixed limit had 2 × 16).
    # A few, not one: while the client's own per-call time is not small next to the server's, a second or third
    # call in flight hides it; beyond that, latency grows and the limit comes down.
    assert srv.peak <= 8, srv.peak
    assert limit.limit <= 6, limit


def test_a_server_with_spare_capacity_gets_more_calls_in_flight():
    with SlotServer(slots=16, seconds=1.5 * SERVICE) as srv:
        results, limit = asyncio.run(_calls(srv.base_url, 60))
    assert len(results) == 60
    assert limit.limit >= 4 and srv.peak >= 4, (limit.limit, srv.peak)


def test_roles_on_one_server_share_one_limit():
    with SlotServer(slots=1) as srv:

        async def go():
            a = get_model(f"{srv.base_url}:a", role="target", use_cache=False)
            b = get_model(f"{srv.base_url}:b", role="judge", use_cache=False)
            await asyncio.gather(a.generate("x"), b.generate("y"))
            return a._slot().limit is b._slot().limit

        assert asyncio.run(go())


def test_an_explicit_concurrency_is_a_fixed_limit():
    with SlotServer(slots=8) as srv:

        async def go():
            m = get_model(f"{srv.base_url}:m", use_cache=False, max_concurrency=3)
            await asyncio.gather(*(m.generate(f"q{i}") for i in range(12)))

        asyncio.run(go())
    assert srv.peak == 3


def test_the_schema_capability_is_probed_once_before_concurrent_calls():
    # llama_cpp.server answers `response_format: json_schema` with a 500: only the probe finds that out.
    with SlotServer(slots=1, reject_json_schema=True) as srv:
        results, _ = asyncio.run(_calls(srv.base_url, 12, json_schema=SCHEMA))
    assert all(r.parsed == {"ok": True} for r in results)
    assert srv.formats.count("json_schema") == 1  # the probe, not each concurrent first call
    assert srv.formats[1] == "json_object" and srv.formats.count("json_object") == 1 + 12


# ---- prompts

PLACEHOLDER = re.compile(r"<[^<>/]*\s[^<>]*>")  # <two or three sentences>, <integer 0-100>, <the rewritten message>


def prompts() -> dict[str, str]:
    from chunky.surf import generator, judge, robust

    return {
        "judge (full)": judge.JUDGE_PROMPT + judge.JSON_TAIL,
        "judge (compact)": judge.COMPACT_PROMPT + judge.JSON_TAIL,
        "judge (tags retry)": judge.JUDGE_PROMPT + judge.TAGS_TAIL,
        "generator": generator.GENERATOR_PROMPT + generator.JSON_TAIL,
        "perturber": robust.PERTURB_PROMPT,
    }


@pytest.mark.parametrize("name", list(prompts()))
def test_no_prompt_holds_a_placeholder_a_model_can_copy(name):
    text = prompts()[name]
    assert not PLACEHOLDER.search(text), PLACEHOLDER.search(text)
    assert "<response>" not in text and "<query>" not in text and "<message>" not in text


@pytest.mark.parametrize(
    "reply", ['{"reasoning": "<two or three sentences>", "score": 80}', '{"reasoning": "<response>", "score": 80}']
)
async def test_a_judgment_that_copies_a_placeholder_is_not_a_score(reply):
    from surf_helpers import scripted

    from chunky.surf.judge import RubricJudge
    from chunky.surf.rubric import load_rubric

    model, _ = scripted(lambda r: reply)
    j = await RubricJudge(model, load_rubric("code"), gate="none").judge("q", "r")
    assert j.score is None and "copied" in (j.error or "")


async def test_later_stages_of_a_candidate_are_served_first():
    from chunky.models.adaptive import ROLE_PRIORITY, AdaptiveLimit

    limit = AdaptiveLimit("s")  # one call at a time
    order: list[str] = []
    await limit.acquire(0)  # the server is busy

    async def call(role: str) -> None:
        async with limit.slot(ROLE_PRIORITY[role]):
            order.append(role)

    waiting = [asyncio.create_task(call(r)) for r in ("generator", "generator", "target", "judge")]
    await asyncio.sleep(0)
    limit._release()
    await asyncio.gather(*waiting)
    assert order == ["judge", "target", "generator", "generator"]
    assert limit.in_use == 0
