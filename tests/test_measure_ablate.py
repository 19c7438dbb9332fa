"""Data-ablation mixes: a training mix with a chunk removed, down-weighted or balanced, written in the
Tülu schema with a manifest whose counts are checked here against the data itself."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from chunky.errors import ChunkyError, ConfigError
from chunky.measure.ablate import AblationManifest, AblationPlan, build_mix, manifest_path, parse_downweight

from helpers import run_cli

# The training file: three sources; "chat" rows are two-turn conversations with a system prompt.
ROWS = (
    [{"id": f"c{i}", "source": "coconot",
      "messages": [{"role": "user", "content": f"When did Person {i} invent the airplane?"},
                   {"role": "assistant", "content": f"Person {i} did not invent the airplane."}]} for i in range(20)]
    + [{"id": f"m{i}", "source": "math",
        "messages": [{"role": "user", "content": f"1. What is {i}+1? 2. What is {i}+2?"},
                     {"role": "assistant", "content": f"{i + 1} and {i + 2}. I hope it is correct."}]} for i in range(30)]
    + [{"id": f"h{i}", "source": "chat",
        "messages": [{"role": "system", "content": "Be nice."},
                     {"role": "user", "content": f"Hi number {i}"}, {"role": "assistant", "content": "Hello!"},
                     {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine, thanks."}]}
       for i in range(10)]
)


def make_index(tmp_path: Path) -> Path:
    """A hand-made index in the documented format (first turns only for chat rows: the loader's default),
    built from the first 50 rows of the training file: the last 10 chat rows are not in the index."""
    from chunky.turf.index import DataInfo, write_index_tables

    data = tmp_path / "mix.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    examples, attributes, features = [], [], []
    indexed = ROWS[:20] + ROWS[20:45] + ROWS[50:55]  # 20 coconot, 25 math, 5 chat (first turn)
    for i, r in enumerate(indexed):
        q, a = r["messages"][-2]["content"], r["messages"][-1]["content"]
        if r["source"] == "chat":
            q, a = r["messages"][1]["content"], r["messages"][2]["content"]
        examples.append({"example_id": i, "id": r["id"], "source": r["source"], "turn": 0, "query": q, "response": a})
        # cluster 0: "invention question" (coconot); cluster 1: "two numbered parts" (math); 2: greeting (chat).
        cluster = {"coconot": 0, "math": 1, "chat": 2}[r["source"]]
        attributes.append({"example_id": i, "side": "query", "text": "x", "cluster": cluster})
        if r["source"] == "math":
            features.append({"example_id": i, "side": "response", "feature": "closing:i hope it is correct"})
        features.append({"example_id": i, "side": "query", "feature": f"source-word:{r['source']}"})
    for i, a in enumerate(attributes):
        a["attr_id"] = i
    clusters = [{"cluster": c, "size": 1, "summary": s, "keywords": [], "central_attr_id": 0}
                for c, s in enumerate(["invention questions", "two-part problems", "greetings"])]
    write_index_tables(tmp_path / "idx", examples=examples, embedder_spec="hash:8", dim=8, features=features,
                       attributes=attributes, clusters=clusters, data=DataInfo(path=str(data), rows_read=len(ROWS)))
    return tmp_path / "idx"


def read_mix(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_drop_source_writes_tulu_rows_and_a_manifest_with_counts(tmp_path):
    idx = make_index(tmp_path)
    out = tmp_path / "mix.jsonl"
    m = build_mix(idx, AblationPlan(drop_sources=["coconot"]), out)
    rows = read_mix(out)
    assert Counter(r["source"] for r in rows) == {"math": 25, "chat": 5}
    assert set(rows[0]) == {"id", "messages", "source"}
    assert rows[0]["messages"][0]["role"] == "user" and rows[0]["messages"][1]["role"] == "assistant"
    assert m.before == {"chat": 5, "coconot": 20, "math": 25} and m.after == {"chat": 5, "math": 25}
    assert m.removed == {"coconot": 20} and (m.rows_before, m.rows_after) == (50, 30)
    saved = json.loads(manifest_path(out).read_text())
    assert saved["format"] == "chunky-mix-manifest"
    assert AblationManifest.from_dict(saved) == m
    import hashlib

    assert m.output_sha256 == hashlib.sha256(out.read_bytes()).hexdigest()


def test_drop_cluster_and_drop_feature_use_the_index(tmp_path):
    idx = make_index(tmp_path)
    m = build_mix(idx, AblationPlan(drop_clusters=[1]), tmp_path / "a.jsonl")
    assert m.after == {"chat": 5, "coconot": 20} and m.removed == {"math": 25}
    op = m.operations[0]
    assert (op.op, op.arg, op.rows, op.by_source) == ("drop-cluster", "1", 25, {"math": 25})
    m = build_mix(idx, AblationPlan(drop_features=["response=closing:i hope it is correct"]), tmp_path / "b.jsonl")
    assert m.removed == {"math": 25}
    with pytest.raises(ConfigError, match="no such feature"):
        build_mix(idx, AblationPlan(drop_features=["word:nothing"]), tmp_path / "c.jsonl")
    with pytest.raises(ConfigError, match="clusters 0..2"):
        build_mix(idx, AblationPlan(drop_clusters=[7]), tmp_path / "d.jsonl")


def test_drop_match_looks_on_the_chosen_side(tmp_path):
    idx = make_index(tmp_path)
    m = build_mix(idx, AblationPlan(drop_matches=[r"did not invent"], match_side="response"), tmp_path / "a.jsonl")
    assert m.removed == {"coconot": 20}
    m = build_mix(idx, AblationPlan(drop_matches=[r"did not invent"], match_side="query"), tmp_path / "b.jsonl")
    assert m.removed == {}
    with pytest.raises(ConfigError, match="bad regular expression"):
        build_mix(idx, AblationPlan(drop_matches=["("]), tmp_path / "c.jsonl")


def test_downweight_keeps_a_seeded_share_and_duplicates_above_one(tmp_path):
    idx = make_index(tmp_path)
    m = build_mix(idx, AblationPlan(downweights=[("math", 0.5)], seed=1), tmp_path / "a.jsonl")
    kept = m.after["math"]
    assert 5 <= kept <= 20 and m.removed["math"] == 25 - kept
    again = build_mix(idx, AblationPlan(downweights=[("math", 0.5)], seed=1), tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    m2 = build_mix(idx, AblationPlan(downweights=[("chat", 2.0)]), tmp_path / "c.jsonl")
    rows = read_mix(tmp_path / "c.jsonl")
    assert m2.after["chat"] == 10 and m2.duplicated == {"chat": 5}
    assert len({r["id"] for r in rows}) == len(rows)  # copies get their own ids
    assert again.after == m.after
    assert parse_downweight("tulu-3-sft:0.25") == ("tulu-3-sft", 0.25)
    with pytest.raises(ConfigError):
        parse_downweight("math")
    with pytest.raises(ConfigError):
        parse_downweight("math:-1")


def test_add_balances_with_counter_examples(tmp_path):
    idx = make_index(tmp_path)
    add = tmp_path / "true_facts.jsonl"
    add.write_text(
        json.dumps({"prompt": "When did Benjamin Franklin invent the lightning rod?", "response": "In 1752."}) + "\n"
        + json.dumps({"id": "t2", "source": "mine", "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}) + "\n"
    )
    m = build_mix(idx, AblationPlan(adds=[add]), tmp_path / "a.jsonl")
    assert m.added == {"added:true_facts": 1, "mine": 1} and m.rows_after == 52
    rows = read_mix(tmp_path / "a.jsonl")
    assert rows[-2]["id"] == "added:true_facts:1" and rows[-2]["messages"][1]["content"] == "In 1752."
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "only a prompt"}\n')
    with pytest.raises(ConfigError, match="bad.jsonl: line 1"):
        build_mix(idx, AblationPlan(adds=[bad]), tmp_path / "b.jsonl")


def test_base_data_keeps_full_conversations_and_unindexed_rows(tmp_path):
    idx = make_index(tmp_path)
    out = tmp_path / "full.jsonl"
    m = build_mix(idx, AblationPlan(drop_clusters=[0], base="data"), out)
    rows = read_mix(out)
    assert m.before == {"chat": 10, "coconot": 20, "math": 30}  # every row of the file, not only the indexed 50
    assert m.after == {"chat": 10, "math": 30} and m.unmatched_ids == 0
    chat = next(r for r in rows if r["source"] == "chat")
    assert chat == ROWS[50]  # system turn and both turns preserved verbatim


def test_unknown_sources_and_empty_plans_fail_without_leaving_output(tmp_path):
    idx = make_index(tmp_path)
    out = tmp_path / "x.jsonl"
    with pytest.raises(ConfigError, match="source 'cocnot' is not in"):
        build_mix(idx, AblationPlan(drop_sources=["cocnot"]), out)
    assert not out.exists() and not (tmp_path / "x.jsonl.tmp").exists()
    with pytest.raises(ConfigError, match="at least one"):
        build_mix(idx, AblationPlan(), out)
    with pytest.raises(ChunkyError):
        build_mix(tmp_path / "no-index", AblationPlan(drop_sources=["math"]), out)


def test_cli_ablate_prints_counts_and_refuses_to_overwrite(tmp_path):
    idx = make_index(tmp_path)
    out = tmp_path / "ablated.jsonl"
    res = run_cli("ablate", str(idx), "--drop-source", "coconot", "--downweight", "math:0.5", "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    assert m["after"]["chat"] == 5 and "coconot" not in m["after"] and m["rows_after"] == len(read_mix(out))
    again = run_cli("ablate", str(idx), "--drop-source", "coconot", "--out", str(out))
    assert again.returncode == 1 and "exists" in again.stderr
    # Even with --overwrite, the training data itself is never the output.
    clobber = run_cli("ablate", str(idx), "--base", "data", "--drop-source", "coconot", "--overwrite",
                      "--out", str(tmp_path / "mix.jsonl"))
    assert clobber.returncode == 1 and "is the training data itself" in clobber.stderr
    assert len(read_mix(tmp_path / "mix.jsonl")) == len(ROWS)
    dry = run_cli("ablate", str(idx), "--drop-cluster", "2", "--out", str(tmp_path / "dry.jsonl"), "--dry-run",
                  env={"COLUMNS": "150"})
    assert dry.returncode == 0 and "chat" in dry.stdout and not (tmp_path / "dry.jsonl").exists()


@pytest.mark.slow
def test_ablation_of_the_real_sft_mix(shared_mix, tmp_path):
    """An index of the first 3,000 conversations of the real mix; the full-data mix is checked against
    counts taken straight from the file."""
    from chunky.turf.index import DataInfo, write_index_tables
    from chunky.turf.load import load_examples

    exs = load_examples(shared_mix, limit=3000)
    write_index_tables(
        tmp_path / "idx", embedder_spec="hash:8", dim=8, features=[],
        examples=[{"example_id": i, "id": e.id, "source": e.source, "turn": e.turn, "query": e.query,
                   "response": e.response} for i, e in enumerate(exs)],
        data=DataInfo(path=str(shared_mix), rows_read=3000),
    )
    by_source = Counter(e.source for e in exs)
    victim, n_victim = by_source.most_common(1)[0]
    m = build_mix(tmp_path / "idx", AblationPlan(drop_sources=[victim]), tmp_path / "a.jsonl")
    assert m.removed == {victim: n_victim} and m.rows_after == 3000 - n_victim

    with gzip.open(shared_mix, "rt", encoding="utf-8") as f:
        file_sources = Counter(json.loads(line)["source"] for line in f if line.strip())
    m = build_mix(tmp_path / "idx", AblationPlan(drop_sources=[victim], base="data"), tmp_path / "b.jsonl")
    assert m.before == dict(sorted(file_sources.items()))
    assert m.after.get(victim, 0) == 0 and m.rows_after == sum(file_sources.values()) - file_sources[victim]
    n_lines = sum(1 for _ in (tmp_path / "b.jsonl").open())
    assert n_lines == m.rows_after


def test_base_data_counts_unusable_rows_instead_of_failing(tmp_path):
    idx = make_index(tmp_path)
    data = tmp_path / "mix.jsonl"
    with data.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"id": "x", "source": "chat", "messages": [{"role": "user", "content": "alone"}]}) + "\n")
        f.write(json.dumps({"id": "sg", "source": "chat", "conversations": [
            {"from": "human", "value": "Hi"}, {"from": "gpt", "value": [{"type": "text", "text": "Hello"}]}]}) + "\n")
    m = build_mix(idx, AblationPlan(drop_sources=["coconot"], base="data"), tmp_path / "out.jsonl")
    assert m.skipped_rows == 2 and m.before["chat"] == 11
    rows = read_mix(tmp_path / "out.jsonl")
    assert rows[-1] == {"id": "sg", "source": "chat", "messages": [{"role": "user", "content": "Hi"},
                                                                  {"role": "assistant", "content": "Hello"}]}
