"""`chunky mine` on hand-made indexes with known answers: significance-aware ranking, near-duplicate rows
folded into one, each source's strongest signature of each kind, and no topical echoes among the pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chunky.turf.analyses import jaccard, mine
from chunky.turf.hits import wilson


def _write(path, rows):
    """rows: (source, query features, response features); texts are placeholders, features are the truth."""
    from chunky.models.embeddings import get_embedder
    from chunky.turf.index import write_index_tables

    emb = get_embedder("hash:32")
    examples, features = [], []
    for eid, (src, qf, rf) in enumerate(rows):
        examples.append({"example_id": eid, "id": f"{src}-{eid}", "source": src, "turn": 0,
                         "query": f"q {eid}", "response": f"r {eid}"})
        features += [{"example_id": eid, "side": "query", "feature": f} for f in qf]
        features += [{"example_id": eid, "side": "response", "feature": f} for f in rf]
    return write_index_tables(path, examples=examples, embedder_spec=emb.spec, dim=emb.dim, features=features,
                              response_text_emb=emb.embed([e["response"] for e in examples]))


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    """2,000 examples. `big` (1,000): every query has template:task: and every response opening:answer — a
    large template at 100%. `small` (40, 2% of the mix): 30 responses say word:elucidate, which also appears
    in 2 responses of `big` (94% in a 2% source: lift 47). `other` (960): plain. In `small`, word:python in
    the query makes the response fenced (format:code_fence) 30 of 30 times; its queries asking how much
    something weighs get responses that repeat word:weighs (a topical echo, not a finding)."""
    rows = []
    for i in range(1000):
        rf = ["opening:answer", "format:bold"] + (["word:elucidate"] if i < 2 else [])
        rows.append(("big", ["template:task:", "word:task"], rf))
    for i in range(40):
        qf = ["word:python"] if i < 30 else ["word:weigh"]
        rf = (["word:elucidate", "format:code_fence"] if i < 30 else ["word:weighs", "format:final_answer_line"])
        rows.append(("small", qf, rf))
    for i in range(960):
        rows.append(("other", ["word:hello"] if i % 2 else [], ["format:bold"] if i % 3 == 0 else []))
    return _write(tmp_path_factory.mktemp("mix") / "idx", rows)


def test_a_small_extreme_chunk_ranks_above_a_large_template(mix):
    res = mine(mix, min_count=10, max_per_source=10)
    rows = [(f.side, f.feature) for f in res.concentrated]
    # word:elucidate's row (format:code_fence covers nearly the same examples, see below)
    small = next(i for i, f in enumerate(res.concentrated) if "word:elucidate" in [f.feature, *f.same_examples])
    big = rows.index(("query", "template:task:"))
    assert small < big  # count · ln(lift) ranked it the other way: 30 · ln 47 = 116 < 1000 · ln 2 = 693
    el = {s.source: s for s in res.signatures}["small"].signatures["vocabulary"]
    assert el.feature == "word:elucidate"
    assert (el.source, el.count, el.df) == ("small", 30, 32)
    assert el.lift == pytest.approx((30 / 32) / (40 / 2000))
    assert el.lift_low == pytest.approx(wilson(30, 32)[0] / (40 / 2000))
    assert el.score == pytest.approx(math.log(el.lift_low))


def test_features_covering_nearly_the_same_examples_are_one_row(mix):
    res = mine(mix, min_count=10, max_per_source=10)
    rows = {(f.side, f.feature): f for f in res.concentrated}
    # template:task: and word:task cover the same 1,000 queries: one row, the format-level name first
    assert ("query", "template:task:") in rows and ("query", "word:task") not in rows
    assert rows[("query", "template:task:")].same_examples == ["word:task"]
    # word:elucidate (32 examples) and format:code_fence (30) overlap with Jaccard 30/32 = 0.94: one row
    assert jaccard(np.arange(32), np.arange(30)) == pytest.approx(30 / 32)
    assert ("response", "format:code_fence") in rows and ("response", "word:elucidate") not in rows
    assert rows[("response", "format:code_fence")].same_examples == ["word:elucidate"]
    # a query feature and a response feature are never folded together, even on the same examples: the
    # query template and the response style it brings are two findings
    assert ("response", "opening:answer") in rows
    # format:bold is in all of big and a third of other (1,320 examples, Jaccard 0.76 with opening:answer):
    # a separate finding, not a member of opening:answer's row
    assert "format:bold" not in rows[("response", "opening:answer")].same_examples


def test_each_source_shows_its_strongest_signature_of_each_kind(mix):
    res = mine(mix, min_count=10)
    sig = {s.source: s for s in res.signatures}
    assert set(sig) == {"big", "small", "other"}
    assert sig["big"].signatures["query"].feature == "template:task:"
    assert sig["big"].signatures["opening"].feature == "opening:answer"
    assert sig["small"].signatures["format"].feature == "format:code_fence"
    assert sig["small"].signatures["vocabulary"].feature == "word:elucidate"
    # a query's words are its vocabulary; the query kind is how it is asked (template:task:)
    assert sig["small"].signatures["query_vocabulary"].feature == "word:python"
    assert sig["other"].signatures["query_vocabulary"].feature == "word:hello"
    assert "query" not in sig["small"].signatures and "query" not in sig["other"].signatures
    assert "opening" not in sig["small"].signatures  # nothing of that kind in it
    # a source's rows in the ranked list are capped, its signatures are not
    capped = mine(mix, min_count=10, max_per_source=1)
    assert sum(1 for f in capped.concentrated if f.source == "big") == 1
    assert {"query", "opening"} <= set({s.source: s for s in capped.signatures}["big"].signatures)


def test_pairs_skip_topical_echoes_and_keep_conditional_formats(mix):
    res = mine(mix, min_count=10, min_lift=2.0)
    pairs = {(p.query_feature, p.response_feature): p for p in res.pairs}
    p = pairs.get(("word:python", "format:code_fence"))
    assert p is not None and (p.n_both, p.n_query) == (30, 30)
    assert p.lift == pytest.approx(1.0 / (30 / 2000))
    assert p.lift_low == pytest.approx(wilson(30, 30)[0] / (30 / 2000))
    # word:weigh → word:weighs only repeats the query's word
    assert all(not (q == "word:weigh" and r == "word:weighs") for q, r in pairs)
    # near-duplicate pairs (python → elucidate covers the same 30 examples) are folded into one row
    assert "word:python → word:elucidate" in p.same_examples


def test_the_query_index_lists_each_examples_query_features_in_order(tmp_path):
    """mine's example → query-feature CSR is the transpose of the lookup's feature → example CSR: example e's
    entries are exactly its query features (df ≤ max_df), in ascending feature-row order; response features
    and features above max_df are left out."""
    from chunky.turf.analyses import _feature_table, _query_index, _source_codes, feature_lookup

    rng = np.random.default_rng(3)
    vocab = [f"word:w{i}" for i in range(12)]
    rows = []
    for eid in range(300):
        qf = sorted({vocab[j] for j in rng.integers(0, 12, size=rng.integers(0, 5))})
        rows.append((f"s{eid % 3}", qf + ["format:everywhere"], ["word:w1", "format:bold"]))
    idx = _write(tmp_path / "idx", rows)
    codes, names, _ = _source_codes(idx)
    lk = feature_lookup(idx)
    ft = _feature_table(lk, codes, len(names), 1)
    qx = _query_index(ft, lk.example_ids, 300, max_df=0.5 * 300)
    kept = [ft.names[r] for r in qx.rows]
    assert "format:everywhere" not in kept  # in every query: df above max_df
    assert not any(ft.is_resp[r] for r in qx.rows)
    for eid, (_, qf, _) in enumerate(rows):
        got = [kept[j] for j in qx.q_of[qx.offsets[eid]: qx.offsets[eid + 1]]]
        assert got == sorted([f for f in qf if f in kept], key=kept.index)
        assert list(qx.q_of[qx.offsets[eid]: qx.offsets[eid + 1]]) == sorted(qx.q_of[qx.offsets[eid]: qx.offsets[eid + 1]])
