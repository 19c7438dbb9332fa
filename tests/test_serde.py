"""One (de)serialiser, one YAML/JSON mapping reader, one usage tally, one provider table."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from chunky import serde
from chunky.config import read_mapping
from chunky.errors import ConfigError
from chunky.models.accounting import RoleUsage, UsageTracker
from chunky.models.types import ChatResult, TokenLogprob, Usage


@dataclass
class Inner:
    n: int
    tags: tuple[str, ...] = ()


@dataclass
class Outer:
    name: str
    inner: Inner | None = None
    items: list[Inner] = field(default_factory=list)


def test_a_record_round_trips_and_unknown_keys_from_other_versions_are_ignored():
    rec = Outer("a", Inner(1, ("x",)), [Inner(2)])
    d = serde.to_dict(rec)
    assert d == {"name": "a", "inner": {"n": 1, "tags": ("x",)}, "items": [{"n": 2, "tags": ()}]}
    newer = {**d, "added_later": 1, "inner": {"n": 1, "tags": ["x"], "also_new": True}}
    assert serde.from_dict(Outer, newer) == rec


def test_bad_input_names_the_record_type_and_the_field():
    with pytest.raises(ConfigError, match=r"^f.json: bad Outer: field 'items\[0\]\.n': Input should be a valid integer"):
        serde.from_dict(Outer, {"name": "a", "items": [{"n": "many"}]}, where="f.json")
    with pytest.raises(ConfigError, match=r"bad Outer: field 'name': missing"):
        serde.from_dict(Outer, {})


def test_a_cached_chat_result_reads_back_whole():
    res = ChatResult("hi", "m", "mock", usage=Usage(3, 4, None), logprobs=[TokenLogprob("hi", -0.1, [("hi", -0.1)])])
    assert serde.from_dict(ChatResult, serde.to_dict(res)) == res


def test_read_mapping_names_the_file_and_the_line(tmp_path):
    good, bad, listy, js = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml", tmp_path / "d.json"
    good.write_text("a: 1\n")
    bad.write_text("a: [1\nb: 2\n")
    listy.write_text("- 1\n")
    js.write_text('{"a": 1,\n}')
    assert read_mapping(good, "a spec") == {"a": 1}
    with pytest.raises(ConfigError, match=r"b.yaml: not valid YAML \(line 2\)"):
        read_mapping(bad, "a spec")
    with pytest.raises(ConfigError, match=r"c.yaml: a spec is a YAML mapping \(got list\)"):
        read_mapping(listy, "a spec")
    with pytest.raises(ConfigError, match=r"d.json: not valid JSON \(line 2\)"):
        read_mapping(js, "a spec")


def test_one_tally_counts_calls_cache_hits_and_unknown_prices():
    t = UsageTracker()
    t.record("judge", ChatResult("x", "m", "http", usage=Usage(10, 5, None)))
    t.record("judge", ChatResult("x", "m", "http", usage=Usage(10, 5, 0.5), cached=True))
    t.role("target").add_failed()
    judge = t.roles["judge"]
    assert (judge.calls, judge.cached_calls, judge.uncached_calls, judge.total_tokens) == (2, 1, 1, 15)
    assert judge.cost_known is False  # the answered call had no price: the cost is a lower bound
    assert t.total().calls == 3
    assert t.to_rows()["judge"] == {"calls": 2, "cached": 1, "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.0}
    assert RoleUsage.from_row(t.to_rows()["judge"]).cached_calls == 1
    before = t.total()
    t.record("judge", ChatResult("x", "m", "mock", usage=Usage(1, 2, 0.0)))
    assert t.total().minus(before).total_tokens == 3


def test_every_provider_variable_comes_from_the_table(monkeypatch):
    from chunky.models.registry import PROVIDER_ENV_VARS, PROVIDERS, parse_spec
    from chunky.turf.ray_build import ENV_PASSED_TO_WORKERS

    declared = {v for p in PROVIDERS.values() for v in (p.key_env, p.url_env) if v}
    assert set(PROVIDER_ENV_VARS) == declared and declared <= set(ENV_PASSED_TO_WORKERS)
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:1234")
    assert parse_spec("ollama:llama3").base_url == "http://10.0.0.5:1234/v1"


def test_the_embedder_reads_an_endpoint_as_host_port_and_path_with_the_model_last(monkeypatch):
    import chunky.models.embeddings as emb

    made = {}
    # Record what the HTTP embedder would be built with (building one calls the server).
    monkeypatch.setattr(emb, "HTTPEmbedder", lambda spec, base_url, model, **kw: made.update(url=base_url, model=model, **kw))
    emb.get_embedder("http://127.0.0.1:8080/v1:nomic-embed:v1.5")
    assert (made["url"], made["model"], made["api_key"]) == ("http://127.0.0.1:8080/v1", "nomic-embed:v1.5", None)
