"""`chunky balance`: counter-examples by deterministic strip, templates and detector-checked rewrites,
written in the Tülu schema with a manifest, usable by `chunky ablate --add`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_measure_ablate import ROWS, make_index

from chunky.errors import ConfigError
from chunky.train.balance import BalancePlan, balance

from helpers import run_cli

PHRASE_RX = r"\s*I hope it is correct\.?"


def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture
def mix(tmp_path) -> Path:
    p = tmp_path / "mix.jsonl"
    rows = ROWS + [{"id": "only", "source": "math", "messages": [
        {"role": "user", "content": "1. What? 2. Why?"}, {"role": "assistant", "content": "I hope it is correct."}]}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_strip_removes_the_behaviour_from_the_chunks_own_examples(mix, tmp_path):
    out = tmp_path / "strip.jsonl"
    m = balance(BalancePlan(mix=str(mix), out=str(out), match=PHRASE_RX, match_side="response", strip=PHRASE_RX,
                            detector="phrase:I hope it is correct"))
    rows = read(out)
    assert m.chunk_rows == 31 and len(rows) == 30
    assert m.methods[0].made == 30 and m.methods[0].rejected == 1
    assert m.methods[0].reasons == {"empty_after_strip": 1}
    assert rows[0]["messages"] == [{"role": "user", "content": "1. What is 0+1? 2. What is 0+2?"},
                                   {"role": "assistant", "content": "1 and 2."}]
    assert rows[0]["id"] == "counter:strip:m0" and rows[0]["source"] == "counter:strip"
    assert not any("hope" in r["messages"][-1]["content"] for r in rows)
    man = json.loads((tmp_path / "strip.manifest.json").read_text())
    assert man["format"] == "chunky-balance-manifest" and man["rows"] == 30 and len(man["output_sha256"]) == 64


def test_templates_render_the_trigger_format_with_the_intended_behaviour(mix, tmp_path):
    t = tmp_path / "facts.yaml"
    t.write_text("prompt: 'When did {who} invent the {what}?'\nresponse: '{who} invented the {what} in {year}.'\n"
                 "rows:\n  - {who: Franklin, what: lightning rod, year: 1752}\n"
                 "  - {who: Edison, what: phonograph, year: 1877}\n")
    out = tmp_path / "t.jsonl"
    m = balance(BalancePlan(mix=str(mix), out=str(out), template=str(t), detector="regex:did not invent"))
    rows = read(out)
    assert [r["messages"][-1]["content"] for r in rows] == ["Franklin invented the lightning rod in 1752.",
                                                            "Edison invented the phonograph in 1877."]
    assert m.methods[0].method == "template" and m.methods[0].made == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompt: 'When did {who} invent the {what}?'\nresponse: 'Yes.'\nrows:\n  - {who: A, what: b}\n  - {who: C}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: rows\[2\] has no field 'what'"):
        balance(BalancePlan(mix=str(mix), out=str(tmp_path / "b.jsonl"), template=str(bad)))
    assert not (tmp_path / "b.jsonl").exists()


def test_rewrites_that_still_show_the_behaviour_are_rejected_and_counted(mix, tmp_path):
    plan = dict(mix=str(mix), match=PHRASE_RX, match_side="response", detector="phrase:I hope it is correct", limit=5)
    ok = balance(BalancePlan(out=str(tmp_path / "ok.jsonl"), rewrite_model="mock:text=The answers are above.", **plan))
    assert ok.methods[0].made == 5 and ok.methods[0].rejected == 0
    with pytest.raises(ConfigError, match="every counter-example was rejected"):
        balance(BalancePlan(out=str(tmp_path / "no.jsonl"), rewrite_model="mock:text=Done. I hope it is correct.", **plan))
    assert not (tmp_path / "no.jsonl").exists()


@pytest.mark.slow
def test_rewrites_by_the_real_local_model_are_checked_by_the_detector(mix, tmp_path):
    out = tmp_path / "llm.jsonl"
    r = run_cli("balance", str(mix), "--out", str(out), "--match", PHRASE_RX, "--match-side", "response",
                "--rewrite", "local", "--detector", "phrase:I hope it is correct", "--limit", "3",
                "--max-tokens", "40", "--behaviour", "ends with 'I hope it is correct'", "--json")
    if r.returncode == 1:  # the small model may keep the phrase every time: then it says so in one line
        assert "every counter-example was rejected" in r.stderr
        return
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    rep = m["methods"][0]
    assert rep["made"] + rep["rejected"] == 3 and rep["made"] == len(read(out))
    assert not any("i hope it is correct" in row["messages"][-1]["content"].lower() for row in read(out))


def test_the_output_feeds_ablate_add(tmp_path):
    idx = make_index(tmp_path)
    out = tmp_path / "counter.jsonl"
    r = run_cli("balance", str(tmp_path / "mix.jsonl"), "--out", str(out), "--source", "math", "--strip", PHRASE_RX)
    assert r.returncode == 0, r.stderr
    assert "wrote 30 counter-examples (0 rejected)" in r.stdout
    mixed = tmp_path / "balanced.jsonl"
    a = run_cli("ablate", str(idx), "--drop-source", "math", "--add", str(out), "--out", str(mixed), "--json")
    assert a.returncode == 0, a.stderr
    man = json.loads(a.stdout)
    assert man["added"] == {"counter:strip": 30} and man["removed"] == {"math": 25}


def test_bad_flags_are_one_line(mix, tmp_path):
    for args, msg in [
        ([], "give at least one of --strip, --template, --rewrite"),
        (["--strip", "x"], "name it with --match or --source"),
        (["--source", "math", "--rewrite", "mock"], "--rewrite needs --detector"),
        (["--source", "nope", "--strip", "x"], "--source 'nope' is not in"),
    ]:
        r = run_cli("balance", str(mix), "--out", str(tmp_path / "o.jsonl"), *args)
        assert r.returncode == 1 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
