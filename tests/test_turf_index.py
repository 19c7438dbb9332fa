"""Building and reading a TURF index: format, both channels, clustering, resume, --force, info, export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from chunky.errors import ConfigError
from chunky.turf.build import BuildOptions, IndexBuilder
from chunky.turf.cluster import default_k, kmeans
from chunky.turf.index import TurfIndex, write_index_tables

from helpers import run_cli

DATA = Path(__file__).parent / "fixtures" / "data"


def build(tmp_path: Path, name: str = "idx", **kw) -> TurfIndex:
    opts = BuildOptions(data=str(kw.pop("data", DATA / "tulu.jsonl")), out=tmp_path / name, **kw)
    IndexBuilder(opts).run()
    return TurfIndex.open(tmp_path / name)


def test_lexical_and_mock_llm_index_has_every_table_aligned(tmp_path):
    idx = build(tmp_path, extractor="both", extract_model="mock", embedder="hash:64", clusters=4)
    m = idx.meta
    assert idx.has_lexical and idx.has_llm
    assert m.counts.examples == 22 and m.data.rows_read == 26 and m.data.rows_skipped == 4
    assert m.data.skipped_reasons["invalid_json"] == 1
    assert m.sources["codeset"] == 6 and m.sources["mathset"] == 6
    assert m.embedder.spec == "hash:64" and m.embedder.dim == 64
    assert set(m.files) >= {"examples.parquet", "features.parquet", "emb/query_attr.npy", "emb/centroids.npy"}
    ex = idx.examples()
    assert ex["example_id"].to_pylist() == list(range(22))
    attrs = idx.attributes()
    sides = attrs["side"].to_pylist()
    # Query attributes first, then response attributes; attr_id is the row number.
    assert attrs["attr_id"].to_pylist() == list(range(attrs.num_rows))
    assert sides == sorted(sides, key=lambda s: s != "query")
    assert idx.query_attr_emb().shape == (m.counts.query_attributes, 64)
    assert idx.response_attr_emb().shape == (m.counts.response_attributes, 64)
    assert idx.response_text_emb().shape == (22, 64)
    assert np.allclose(np.linalg.norm(idx.response_text_emb(), axis=1), 1.0, atol=1e-5)
    # Every query attribute has a cluster; response attributes have -1.
    qc = idx.query_attr_clusters()
    assert len(qc) == m.counts.query_attributes and qc.min() >= 0 and qc.max() < 4
    assert set(attrs.filter(pc.equal(attrs["side"], "response"))["cluster"].to_pylist()) == {-1}
    cl = idx.clusters()
    assert cl.num_rows == 4 and sum(cl["size"].to_pylist()) == m.counts.query_attributes
    texts = attrs["text"].to_pylist()
    for summary, central in zip(cl["summary"].to_pylist(), cl["central_attr_id"].to_pylist()):
        assert summary == texts[central]  # no summary model: the most central attribute
    # The mock extractor describes the query's words.
    assert "The query mentions 'elucidate'." in [t for t, e in zip(texts, attrs["example_id"].to_pylist()) if e == 0]
    assert idx.attr_example_ids("response").shape == (m.counts.response_attributes,)
    con = idx.duckdb()
    n = con.execute("SELECT count(DISTINCT example_id) FROM features WHERE feature = 'word:elucidate'").fetchall()[0][0]
    assert n == 6
    per_source = con.sql(
        "SELECT e.source, count(*) FROM features f JOIN examples e USING (example_id) "
        "WHERE f.side = 'response' AND f.feature = 'closing:i hope it is correct' GROUP BY 1"
    ).fetchall()
    assert per_source == [("mathset", 6)]


def test_llm_summaries_from_a_summary_model(tmp_path):
    idx = build(tmp_path, extractor="llm", extract_model="mock", embedder="hash:32", clusters=2, summary_model="mock")
    assert not idx.has_lexical
    assert idx.features().num_rows == 0 and idx.response_text_emb().shape == (0, 32)
    assert all(s.startswith("The query mentions") for s in idx.clusters()["summary"].to_pylist())


def test_default_k_is_the_papers_ratio_and_clamps_with_a_warning():
    assert default_k(940_000) == 25_000
    assert default_k(10) == 1 and default_k(0) == 1
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with pytest.warns(UserWarning, match="7 clusters requested for 5 points: using K = 5"):
        res = kmeans(x, 7)
    assert res.k == 5 and sorted(res.assignment.tolist()) == [0, 1, 2, 3, 4]
    one = kmeans(x, 1)
    assert one.k == 1 and set(one.assignment.tolist()) == {0}
    assert np.allclose(np.linalg.norm(one.centroids, axis=1), 1.0, atol=1e-5)
    # Identical points: every one assigned, nothing crashes.
    same = np.repeat(x[:1], 20, axis=0)
    res = kmeans(same, 3)
    assert len(res.assignment) == 20 and np.allclose(res.similarity, 1.0, atol=1e-4)
    empty = kmeans(np.zeros((0, 8), np.float32), 3)
    assert empty.k == 0 and empty.centroids.shape == (0, 8)


def test_two_well_separated_groups_are_recovered():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 16)) * 0.05 + np.eye(16)[0]
    b = rng.normal(size=(50, 16)) * 0.05 + np.eye(16)[1]
    x = np.vstack([a, b]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    res = kmeans(x, 2, seed=3)
    assert len(set(res.assignment[:50])) == 1 and len(set(res.assignment[50:])) == 1
    assert res.assignment[0] != res.assignment[50]


def test_rerun_skips_finished_work_and_refuses_other_parameters_without_force(tmp_path):
    build(tmp_path, embedder="hash:32")
    opts = BuildOptions(data=str(DATA / "tulu.jsonl"), out=tmp_path / "idx", embedder="hash:32")
    assert IndexBuilder(opts).run().nothing_to_do
    with pytest.raises(ConfigError, match=r"different parameters \(limit\).*--force"):
        IndexBuilder(BuildOptions(data=str(DATA / "tulu.jsonl"), out=tmp_path / "idx", embedder="hash:32", limit=5)).run()
    before = json.loads((tmp_path / "idx" / "index.json").read_text())
    forced = IndexBuilder(
        BuildOptions(data=str(DATA / "tulu.jsonl"), out=tmp_path / "idx", embedder="hash:32", limit=5, force=True)
    ).run()
    assert not forced.nothing_to_do and "load" in forced.stages_run
    idx = TurfIndex.open(tmp_path / "idx")
    assert idx.meta.counts.examples == 5 and before["counts"]["examples"] == 22


def test_out_dir_that_is_not_an_index_is_never_overwritten(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="is not a chunky index"):
        IndexBuilder(BuildOptions(data=str(DATA / "tulu.jsonl"), out=tmp_path / "mine", embedder="hash:8", force=True)).run()
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_file_without_any_pair_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl: no \(query, response\) pair found in 2 rows: 1 unknown_schema \(rows 1\); 1 invalid_json \(rows 2\)"):
        IndexBuilder(BuildOptions(data=str(bad), out=tmp_path / "idx", embedder="hash:8")).run()


def test_open_refuses_an_unfinished_or_foreign_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a chunky index"):
        TurfIndex.open(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "chunky-index", "version": 1, "stages": {"load": "done"}}))
    with pytest.raises(ConfigError, match="did not finish"):
        TurfIndex.open(tmp_path)


def test_write_index_tables_makes_a_readable_index_for_tools(tmp_path):
    ex = [dict(example_id=i, id=f"r{i}", source="s", turn=0, query=f"q{i}", response=f"r{i}") for i in range(3)]
    feats = [dict(example_id=0, side="query", feature="word:x"), dict(example_id=2, side="query", feature="word:x")]
    idx = write_index_tables(tmp_path / "t", examples=ex, embedder_spec="hash:8", dim=8, features=feats,
                             response_text_emb=np.eye(3, 8, dtype=np.float32))
    assert idx.has_lexical and not idx.has_llm
    assert idx.feature_stats().to_pylist() == [{"side": "query", "feature": "word:x", "kind": "word", "df": 2}]
    assert idx.query_attr_emb().shape == (0, 8)
    assert idx.embedder().embed(["hello"]).shape == (1, 8)


def test_cli_index_info_export_and_dry_run(tmp_path):
    out = tmp_path / "cli-idx"
    r = run_cli("index", str(DATA / "tulu.jsonl"), "--out", str(out), "--extractor", "both", "--extract-model", "mock",
                "--embedder", "hash:32", "--clusters", "3")
    assert r.returncode == 0, r.stderr
    assert "22 examples" in r.stdout and "3 clusters" in r.stdout
    assert "skipped 1 no_user_assistant_pair" in r.stderr
    r = run_cli("index", "info", str(out))
    assert r.returncode == 0, r.stderr
    assert "codeset" in r.stdout and "format:code_fence" in r.stdout and "hash:32" in r.stdout
    r = run_cli("index", "info", str(out), "--json")
    meta = json.loads(r.stdout)
    assert meta["counts"]["examples"] == 22 and meta["stages"]["finalize"] == "done"
    r = run_cli("index", "export", str(out), "--out", str(tmp_path / "pseudo_sae_attributes.jsonl"))
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in (tmp_path / "pseudo_sae_attributes.jsonl").read_text().splitlines()]
    assert len(recs) == 22
    assert recs[0]["prompt"].startswith("Elucidate") and recs[0]["source"] == "codeset"
    assert len(recs[0]["attributes"]) == len(recs[0]["sae_attributes"]) == len(recs[0]["normalized_weights"])
    assert all(0.0 <= w <= 1.0 for r_ in recs for w in r_["normalized_weights"])
    r = run_cli("index", str(DATA / "tulu.jsonl"), "--out", str(tmp_path / "dry"), "--extractor", "llm",
                "--extract-model", "openai:gpt-4o-mini", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "22 examples → 44 calls" in r.stdout
    assert re.search(r"estimated cost \$0\.00\d\d", r.stdout)
    assert not (tmp_path / "dry" / "index.json").exists()
    r = run_cli("index", "info", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "not a chunky index" in r.stderr
