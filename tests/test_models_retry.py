"""The retry layer, against a real fault-injecting HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest
from faultserver import FaultServer

from chunky.errors import ModelError
from chunky.models import RetryPolicy, get_model

FAST = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2)


def model_for(server: FaultServer, **kw):
    kw.setdefault("retry", FAST)
    return get_model(f"{server.base_url}:fault", role="target", use_cache=False, **kw)


async def test_429_is_retried_after_the_servers_retry_after():
    with FaultServer(["429:1", "ok"]) as srv:
        res = await model_for(srv).generate("hi")
    assert res.text == "fine"
    assert res.attempts == 2
    gap = srv.requests[1]["t"] - srv.requests[0]["t"]
    assert gap >= 0.95, f"retried after {gap:.2f}s, before the 1 s Retry-After"


async def test_5xx_is_retried_with_backoff_until_success():
    with FaultServer(["500", "503", "ok"]) as srv:
        res = await model_for(srv).generate("hi")
    assert (res.text, res.attempts) == ("fine", 3)


async def test_a_hang_past_the_timeout_is_cut_and_retried():
    with FaultServer(["hang:3", "ok"]) as srv:
        start = time.monotonic()
        res = await model_for(srv, timeout=0.5).generate("hi")
        elapsed = time.monotonic() - start
    assert res.text == "fine" and res.attempts == 2
    assert elapsed < 2.5


async def test_malformed_json_and_empty_choices_are_retried():
    with FaultServer(["garbage", "empty", "ok"]) as srv:
        res = await model_for(srv).generate("hi")
    assert (res.text, res.attempts) == ("fine", 3)


async def test_final_error_says_what_failed_and_how_often():
    with FaultServer(["500"] * 10) as srv:
        with pytest.raises(ModelError) as e:
            await model_for(srv).generate("hi")
    msg = str(e.value)
    assert "failed after 4 attempts" in msg
    assert "4× server error (5xx) [500]" in msg
    assert "target call to" in msg


async def test_client_errors_are_not_retried():
    with FaultServer(["400", "ok"]) as srv:
        with pytest.raises(ModelError, match="bad request"):
            await model_for(srv).generate("hi")
        assert len(srv.requests) == 1


async def test_the_concurrency_slot_is_released_while_sleeping():
    # One slot. The first call is told to wait 1.5 s; the second must not wait behind it.
    with FaultServer(["429:1.5", "ok", "ok"]) as srv:
        m = model_for(srv, max_concurrency=1)
        done: dict[str, float] = {}
        start = time.monotonic()

        async def call(name: str, delay: float):
            await asyncio.sleep(delay)
            await m.generate(f"hi {name}")
            done[name] = time.monotonic() - start

        await asyncio.gather(call("slow", 0), call("fast", 0.2))
    assert done["fast"] < 1.0, done
    assert done["slow"] >= 1.5, done


async def test_retries_and_errors_are_counted_per_role():
    from chunky.models import UsageTracker

    usage = UsageTracker()
    with FaultServer(["500", "ok"] + ["500"] * 4) as srv:
        m = get_model(f"{srv.base_url}:fault", role="judge", use_cache=False, retry=FAST, usage=usage)
        await m.generate("a")
        with pytest.raises(ModelError):
            await m.generate("b")
    r = usage.roles["judge"]
    assert r.calls == 1 and r.errors == 1 and r.retries == 1 + 3
