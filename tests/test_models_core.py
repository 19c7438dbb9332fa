"""The model layer on the deterministic mock: spec parsing, mock roles, cache, accounting, structured output."""

from __future__ import annotations

import json
import multiprocessing as mp
import threading

import pytest

from chunky.errors import ConfigError, MissingExtraError, StructuredOutputError
from chunky.models import CallCache, GenerateConfig, UsageTracker, get_model, parse_spec
from chunky.models.accounting import cost_of, price_for
from chunky.models.providers.mock import stable_score
from chunky.models.structured import extract_json

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"reasoning": {"type": "string"}, "score": {"type": "integer", "minimum": 0, "maximum": 100}},
    "required": ["reasoning", "score"],
}


class TestSpecs:
    def test_authors_url_syntax_splits_base_url_and_model(self):
        s = parse_spec("http://127.0.0.1:8080/v1:smollm2")
        assert (s.provider, s.base_url, s.model) == ("http", "http://127.0.0.1:8080/v1", "smollm2")

    def test_model_names_may_contain_colons(self):
        s = parse_spec("https://host.example:443/v1:llama3:8b")
        assert (s.base_url, s.model) == ("https://host.example:443/v1", "llama3:8b")

    def test_named_providers(self, monkeypatch):
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        assert parse_spec("openai:gpt-4o-mini").base_url == "http://127.0.0.1:9/v1"
        assert parse_spec("ollama:llama3").base_url == "http://127.0.0.1:11434/v1"
        assert parse_spec("openrouter:anthropic/claude-haiku-4-5").model == "anthropic/claude-haiku-4-5"
        assert parse_spec("local").model == "" and parse_spec("local:/x.gguf").model == "/x.gguf"

    @pytest.mark.parametrize("bad", ["", "nosuch:model", "openai:", "http://host:1/v1"])
    def test_bad_specs_say_the_syntax(self, bad):
        with pytest.raises(ConfigError):
            parse_spec(bad)

    def test_missing_key_is_a_clear_error(self):
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            get_model("openai:gpt-4o-mini")

    def test_missing_extra_names_the_pip_command(self, monkeypatch):
        import chunky.models.registry as reg

        real = reg.importlib.util.find_spec
        monkeypatch.setattr(reg.importlib.util, "find_spec", lambda n: None if n == "anthropic" else real(n))
        with pytest.raises(MissingExtraError, match=r"pip install 'chunky\[anthropic\]'"):
            reg.create_provider(parse_spec("anthropic:claude-haiku-4-5"))


class TestMock:
    async def test_as_a_target_it_echoes_the_query(self, mock_model):
        assert (await mock_model.generate("Is 5+8=13?")).text == "Echo: Is 5+8=13?"

    async def test_as_a_generator_it_joins_the_attributes(self, mock_model):
        res = await mock_model.generate("write a query", hints={"task": "generate_query", "attributes": ["Formal.", "About cars"]})
        assert res.text == "Formal; About cars?"

    async def test_as_a_judge_it_returns_a_valid_stable_judgment(self, mock_model):
        hints = {"task": "judge", "query": "q", "response": "r"}
        res = await mock_model.generate("judge", json_schema=JUDGE_SCHEMA, hints=hints)
        assert res.parsed["score"] == stable_score("q", "r")
        assert 0 <= res.parsed["score"] <= 100
        again = await mock_model.generate("judge", json_schema=JUDGE_SCHEMA, hints=hints)
        assert again.parsed == res.parsed

    async def test_fixed_text(self):
        m = get_model("mock:text=Sure, here is code", use_cache=False)
        assert (await m.generate("anything")).text == "Sure, here is code"


class TestCache:
    async def test_second_identical_call_is_a_hit_and_costs_nothing(self):
        usage = UsageTracker()
        m = get_model("mock", role="target", usage=usage)
        a = await m.generate("hello", temperature=0.5, seed=1)
        b = await m.generate("hello", temperature=0.5, seed=1)
        assert not a.cached and b.cached and a.text == b.text
        assert usage.roles["target"].calls == 2 and usage.roles["target"].cached_calls == 1

    @pytest.mark.parametrize(
        "change",
        [{"temperature": 0.7}, {"seed": 2}, {"sample_index": 1}, {"system": "be brief"}, {"max_tokens": 5}],
    )
    async def test_anything_in_the_request_changes_the_key(self, change):
        m = get_model("mock")
        await m.generate("hello", temperature=0.5, seed=1)
        args = {"temperature": 0.5, "seed": 1} | change
        assert not (await m.generate("hello", **args)).cached

    async def test_no_cache_neither_reads_nor_writes(self):
        m = get_model("mock")
        await m.generate("x")
        assert not (await m.generate("x", use_cache=False)).cached
        m2 = get_model("mock", use_cache=False)
        await m2.generate("fresh")
        assert not (await m.generate("fresh")).cached

    def test_concurrent_writers_in_threads_and_processes(self, tmp_path):
        path = tmp_path / "c.sqlite"
        CallCache(path)
        procs = [mp.get_context("spawn").Process(target=_write_many, args=(str(path), p, 150)) for p in range(3)]
        for p in procs:
            p.start()
        threads = [threading.Thread(target=_write_many, args=(str(path), 10 + t, 150)) for t in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        cache = CallCache(path)
        assert cache.stats().entries == 6 * 150
        assert cache.get("w3-7") is None and cache.get("w10-7").text == "10:7"


def _write_many(path: str, writer: int, n: int) -> None:
    from chunky.models.cache import CallCache
    from chunky.models.types import ChatResult

    c = CallCache(path)
    for i in range(n):
        c.put(f"w{writer}-{i}", ChatResult(text=f"{writer}:{i}", model="m", provider="mock"))


class TestStructured:
    def test_json_is_found_in_fences_and_prose(self):
        assert extract_json('```json\n{"a": 1}\n```') == {"a": 1}
        assert extract_json('Sure! {"score": 80, "reasoning": "x"} hope that helps') == {"score": 80, "reasoning": "x"}
        with pytest.raises(ValueError):
            extract_json("no json here")

    async def test_invalid_output_gets_one_repair_then_a_clear_error(self):
        usage = UsageTracker()
        m = get_model("mock:text=not json at all", role="judge", use_cache=False, usage=usage)
        with pytest.raises(StructuredOutputError, match="after one repair") as e:
            await m.generate("judge this", json_schema=JUDGE_SCHEMA)
        assert e.value.raw_text == "not json at all"
        assert usage.roles["judge"].calls == 2  # the call and its repair

    async def test_schema_violations_are_caught(self):
        m = get_model('mock:text={"score": 500, "reasoning": "x"}', use_cache=False)
        with pytest.raises(StructuredOutputError, match="score"):
            await m.generate("judge", json_schema=JUDGE_SCHEMA)


class TestAccounting:
    def test_prices_for_well_known_models_and_dated_variants(self):
        assert price_for("anthropic", "claude-haiku-4-5-20251001") == (1.0, 5.0)
        assert price_for("openrouter", "openai/gpt-4o-mini") == (0.15, 0.60)
        assert price_for("http", "my-finetune") is None
        assert cost_of("openai", "gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)

    async def test_tokens_are_counted_per_role(self):
        usage = UsageTracker()
        gen = get_model("mock", role="generator", usage=usage, use_cache=False)
        tgt = get_model("mock", role="target", usage=usage, use_cache=False)
        await gen.generate("one two three")
        await tgt.generate("four five")
        await tgt.generate("six")
        assert usage.roles["generator"].calls == 1 and usage.roles["target"].calls == 2
        assert usage.total().input_tokens == 3 + 2 + 1

    def test_role_defaults_merge_with_call_overrides(self):
        cfg = GenerateConfig(temperature=0.0, max_tokens=300)
        merged = cfg.merged(GenerateConfig(max_tokens=50), seed=3)
        assert (merged.temperature, merged.max_tokens, merged.seed) == (0.0, 50, 3)


def test_cache_stats_and_clear_through_the_cli(chunky_home):
    from helpers import run_cli

    r = run_cli("ask", "mock", "hello", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["text"] == "Echo: hello"
    r2 = run_cli("ask", "mock", "hello", "--json")
    assert json.loads(r2.stdout)["cached"] is True
    stats = json.loads(run_cli("cache", "stats", "--json").stdout)
    assert stats["entries"] == 1
    assert run_cli("cache", "clear").returncode == 0
    assert json.loads(run_cli("cache", "stats", "--json").stdout)["entries"] == 0


def test_cli_errors_are_one_line(chunky_home):
    from helpers import run_cli

    r = run_cli("ask", "nosuch:thing", "hi")
    assert r.returncode == 1
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown provider 'nosuch'" in lines[0]
    assert "Traceback" not in r.stderr
