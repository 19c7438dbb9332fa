"""The embedded `local` model in-process, and the OpenAI-compatible provider against a real
llama_cpp.server on 127.0.0.1 serving the same GGUF."""

from __future__ import annotations

import json
import time

import pytest

from chunky.models import get_model

from helpers import embedded_gguf, run_cli

pytestmark = pytest.mark.slow

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}, "confidence": {"type": "integer"}},
    "required": ["answer", "confidence"],
}


async def test_local_answers_and_the_same_call_is_then_a_cache_hit():
    m = get_model("local", role="target")
    start = time.monotonic()
    first = await m.generate("Is 5+8=13?", temperature=0.0, max_tokens=40)
    assert time.monotonic() - start < 10
    assert first.text.strip() and not first.cached
    assert first.usage.input_tokens > 5 and first.usage.output_tokens > 0
    second = await m.generate("Is 5+8=13?", temperature=0.0, max_tokens=40)
    assert second.cached and second.text == first.text


async def test_local_structured_output_is_constrained_to_the_schema():
    m = get_model("local", use_cache=False)
    res = await m.generate("Is 5+8=13? Answer yes or no.", json_schema=SCHEMA, temperature=0.0, max_tokens=40)
    assert res.parsed["answer"] in ("yes", "no") and isinstance(res.parsed["confidence"], int)


async def test_local_seeded_samples_reproduce_whatever_ran_before():
    m = get_model("local", use_cache=False)
    args = dict(temperature=1.0, seed=1234, max_tokens=24)
    a = await m.generate("Name a colour and a fruit.", **args)
    await m.generate("Something else entirely: count to five.", temperature=0.7, seed=9, max_tokens=16)
    b = await m.generate("Name a colour and a fruit.", **args)
    assert a.text == b.text


async def test_local_logprobs():
    m = get_model("local", use_cache=False)
    res = await m.generate("Say yes.", temperature=0.0, max_tokens=4, logprobs=True, top_logprobs=3)
    assert res.logprobs and all(lp.logprob <= 0 for lp in res.logprobs)
    assert len(res.logprobs[0].top) == 3


async def test_local_with_an_explicit_gguf_path():
    m = get_model(f"local:{embedded_gguf()}", use_cache=False)
    res = await m.generate("Hi", temperature=0.0, max_tokens=8)
    assert res.text.strip()


def test_cli_ask_local_then_a_cache_hit():
    r1 = run_cli("ask", "local", "Is 5+8=13?", "--json", "--temperature", "0", "--max-tokens", "40")
    assert r1.returncode == 0, r1.stderr
    out1 = json.loads(r1.stdout)
    assert out1["cached"] is False and out1["text"] and out1["latency_s"] < 10
    r2 = run_cli("ask", "local", "Is 5+8=13?", "--json", "--temperature", "0", "--max-tokens", "40")
    out2 = json.loads(r2.stdout)
    assert out2["cached"] is True and out2["text"] == out1["text"]
    assert set(out2) >= {"text", "cached", "usage", "model", "latency_s"}


class TestHttpProviderOnLlamaServer:
    async def test_chat_completion(self, llama_server):
        m = get_model(f"{llama_server}:smollm2", role="target", use_cache=False)
        res = await m.generate("Is 5+8=13?", temperature=0.0, max_tokens=32)
        assert res.text.strip() and res.provider == "http"
        assert res.usage.input_tokens > 5 and res.usage.output_tokens > 0
        assert res.usage.cost_usd is None  # unknown model: tokens only

    async def test_structured_output_falls_back_to_what_the_server_accepts(self, llama_server):
        m = get_model(f"{llama_server}:smollm2", role="judge", use_cache=False)
        res = await m.generate("Is 5+8=13? Answer yes or no.", json_schema=SCHEMA, temperature=0.0, max_tokens=40)
        assert res.parsed["answer"] in ("yes", "no")

    async def test_concurrent_calls(self, llama_server):
        import asyncio

        m = get_model(f"{llama_server}:smollm2", use_cache=False, max_concurrency=4)
        results = await asyncio.gather(*[m.generate(f"Say the number {i}.", temperature=0.0, max_tokens=8) for i in range(4)])
        assert all(r.text.strip() for r in results)

    def test_cli_ask_against_the_server(self, llama_server):
        r = run_cli("ask", f"{llama_server}:smollm2", "Is 5+8=13?", "--max-tokens", "32", "--temperature", "0")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip()


def test_models_command_works_offline_without_keys():
    r = run_cli("models", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    names = {p["provider"]: p for p in out["providers"]}
    assert names["local"]["installed"] and names["mock"]["installed"]
    assert out["embedded_model"].endswith(".gguf")
    assert not any(out["keys_set"].values())
    human = run_cli("models")
    assert "Embedded model" in human.stdout and "present" in human.stdout


def test_two_local_models_loading_side_by_side_leave_stdout_alone(tmp_path):
    """Each llama.cpp load silences fds 1 and 2 for a moment; two models loading in two threads used to leave
    the process's stdout pointing at /dev/null, so `steer --json` with two uncached local models printed
    nothing and exited 0."""
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"What is {i} plus {i}?"}) + "\n" for i in range(3)))
    res = run_cli("steer", "--model", "a=local", "--model", f"b=local:{embedded_gguf()}", "--data", str(data),
                  "--metric", "length", "--max-tokens", "4", "--out", str(tmp_path / "out"), "--json",
                  env={"CHUNKY_HOME": str(tmp_path / "home")})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [r["model"] for r in out["rows"]] == ["a", "b"]
