"""grep, cooccur and mine over a TURF index: counts match a brute-force count over the examples."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from chunky.errors import ChunkyError
from chunky.turf.analyses import cooccur, grep, mine
from chunky.turf.hits import wilson


def brute(examples, side, pred):
    out = {}
    for e in examples:
        texts = [e["query"], e["response"]] if side == "both" else [e[side]]
        if any(pred(t) for t in texts):
            out[e["source"]] = out.get(e["source"], 0) + 1
    return out


@pytest.mark.parametrize(
    "pattern,regex,side,case",
    [
        ("elucidate", False, "both", False),
        ("ELUCIDATE", False, "query", False),
        ("ELUCIDATE", False, "query", True),
        ("python", False, "response", False),
        ("Python", False, "both", True),
        (r"\d+ plus \d+", True, "query", False),
        ("100%_x", False, "both", False),  # LIKE wildcards are taken literally
        ("correct.", False, "response", False),  # regex metacharacters too
        ("demo():\n    return", False, "response", False),
        ("a(b", False, "both", False),
        ("thanks|correct", True, "response", False),
        (r"\bhope it is correct\.", True, "response", False),
        (r"colou?r|elucidat", True, "both", False),
        (r"[Hh]ere is an? example", True, "response", True),
        (r"Elucidat(e|ion)", True, "query", True),  # pre-filtered on "Elucidat", then the regex decides the case
        (r"\bdemo\(\):", True, "response", False),
    ],
)
def test_grep_counts_match_brute_force(hm, idx, pattern, regex, side, case):
    res = grep(idx, pattern, regex=regex, side=side, case_sensitive=case)
    flags = 0 if case else re.IGNORECASE
    rx = re.compile(pattern if regex else re.escape(pattern), flags)
    expected = brute(hm.examples, side, lambda t: bool(rx.search(t)))
    assert {s.source: s.matches for s in res.by_source} == expected
    assert res.matches == sum(expected.values())
    n = len(hm.examples)
    for s in res.by_source:
        size = sum(1 for e in hm.examples if e["source"] == s.source)
        assert s.n_source == size
        assert s.share == pytest.approx(s.matches / res.matches)
        assert s.lift == pytest.approx((s.matches / res.matches) / (size / n))
    for ex in res.examples:
        e = hm.examples[ex.example_id]
        if ex.matched in ("query", "both"):
            assert rx.search(e["query"])
        if ex.matched in ("response", "both"):
            assert rx.search(e["response"])


@pytest.mark.parametrize(
    "pattern,literal",
    [
        (r"\bstep by step\b", "step by step"),  # zero-width assertions keep the letters around them adjacent
        (r"colou?r scheme", "r scheme"),  # an optional character splits the run
        (r"foo.*barbaz", "barbaz"),
        (r"a|bcdef", None),  # alternatives share no required text
        (r"ab\d", None),  # too short to be worth a pass
        (r"[[:alpha:]]abc", None),  # RE2 syntax Python misreads: no pre-filter rather than a wrong one
        (r"\pLabcd", None),
        (r"plain words", None),  # the regex is its own literal: nothing to gain
    ],
)
def test_a_regex_is_prefiltered_by_a_literal_every_match_contains(pattern, literal):
    from chunky.turf.analyses import required_literal

    assert required_literal(pattern) == literal


def test_grep_reports_concentration_in_one_source(idx):
    res = grep(idx, "elucidate")
    assert [s.source for s in res.by_source] == ["codeset"]
    top = res.by_source[0]
    assert (top.matches, top.n_source, top.share, top.rate) == (40, 40, 1.0, 1.0)
    assert top.lift == pytest.approx(120 / 40)
    assert res.examples and "elucidate" in res.examples[0].query.lower()
    json.dumps(res.to_dict())


def test_grep_examples_are_spread_over_sources(idx):
    res = grep(idx, "re:.", examples=9, per_source_examples=3)
    assert {e.source for e in res.examples} == {"codeset", "chat", "mathset"}
    assert len(res.examples) == 9


@pytest.mark.parametrize("bad", ["re:a(", "re:[z-a]"])
def test_bad_regex_is_a_one_line_error(idx, bad):
    with pytest.raises(ChunkyError, match="invalid regular expression"):
        grep(idx, bad)
    with pytest.raises(ChunkyError, match="--query: invalid regular expression"):
        cooccur(idx, bad, "x")


def test_empty_pattern_and_bad_side_are_errors(idx):
    with pytest.raises(ChunkyError, match="empty pattern"):
        grep(idx, "")
    with pytest.raises(ChunkyError, match="--side"):
        grep(idx, "x", side="title")


def test_unknown_feature_name_is_an_error_with_hint(idx):
    with pytest.raises(ChunkyError, match="no query-side feature"):
        cooccur(idx, "format:numbered_lst", "closing:i hope it is correct")
    # lit: forces a literal search for text that looks like a feature
    res = cooccur(idx, "lit:format:numbered_lst", "x")
    assert res.query_pattern.kind == "literal" and res.overall.n_query == 0


def test_cooccur_with_feature_names_matches_brute_force(hm, idx):
    from turf_handmade import features_of

    res = cooccur(idx, "format:numbered_list", "closing:i hope it is correct")
    assert res.query_pattern.kind == "feature" and res.response_pattern.kind == "feature"
    qa = [("format:numbered_list" in features_of(e["query"], "query")) for e in hm.examples]
    rb = [("closing:i hope it is correct" in features_of(e["response"], "response")) for e in hm.examples]
    nq = sum(qa)
    nqr = sum(a and b for a, b in zip(qa, rb))
    nr_not = sum((not a) and b for a, b in zip(qa, rb))
    o = res.overall
    assert (o.n, o.n_query, o.n_both) == (len(hm.examples), nq, nqr)
    assert o.p_response_given_query == pytest.approx(nqr / nq) == 1.0
    assert o.p_response_given_not_query == pytest.approx(nr_not / (len(hm.examples) - nq)) == 0.0
    assert o.ci_given_query == pytest.approx(wilson(nqr, nq))
    assert {c.source: c.n_query for c in res.by_source if c.n_query} == {"mathset": 30}


def test_cooccur_literal_and_regex_per_source(hm, idx):
    res = cooccur(idx, "re:1\\..*2\\.", "I hope it is correct")
    assert res.query_pattern.kind == "regex" and res.response_pattern.kind == "literal"
    qrx = re.compile(r"1\..*2\.", re.I | re.S)
    for c in res.by_source:
        exs = [e for e in hm.examples if e["source"] == c.source]
        q = [bool(qrx.search(e["query"])) for e in exs]
        r = ["i hope it is correct" in e["response"].lower() for e in exs]
        assert c.n == len(exs)
        assert c.n_query == sum(q)
        assert c.n_response == sum(r)
        assert c.n_both == sum(a and b for a, b in zip(q, r))
    assert res.overall.n_both == 30
    json.dumps(res.to_dict())


def test_wilson_interval_known_values():
    lo, hi = wilson(93, 100)
    assert lo == pytest.approx(0.8625, abs=1e-3) and hi == pytest.approx(0.9657, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35


def test_mine_finds_concentrated_features_and_pairs(hm, idx):
    res = mine(idx, min_count=10, top=50, max_per_source=50)
    conc = {(f.side, f.feature): f for f in res.concentrated}
    # word:elucidate covers exactly the examples of word:please: it is folded into that row
    row = conc[("query", "word:please")]
    assert "word:elucidate" in row.same_examples
    assert (row.source, row.count, row.df, row.share) == ("codeset", 40, 40, 1.0)
    assert row.lift == pytest.approx(3.0)
    assert conc[("response", "closing:i hope it is correct")].source == "mathset"
    pairs = {(p.query_feature, p.response_feature): p for p in res.pairs}
    p = pairs[("format:numbered_list", "closing:i hope it is correct")]
    assert (p.n_query, p.n_both, p.p_response_given_query) == (30, 30, 1.0)
    assert p.lift == pytest.approx(1 / (30 / 120))
    assert p.source == "mathset" and p.source_share == 1.0
    # a feature paired with itself on the other side is not a finding
    assert all(p.query_feature != p.response_feature for p in res.pairs)
    json.dumps(res.to_dict())
    # by default each source shows at most three concentrated features, so every chunk gets a row
    capped = mine(idx, min_count=10, top=50)
    per = {}
    for f in capped.concentrated:
        per[f.source] = per.get(f.source, 0) + 1
    assert max(per.values()) <= 3 and set(per) == {"codeset", "chat", "mathset"}


def test_cli_grep_cooccur_mine_json(hm):
    from chunky.cli import app

    r = CliRunner().invoke(app, ["grep", str(hm.path), "elucidate", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["matches"] == 40 and d["by_source"][0]["source"] == "codeset"
    r = CliRunner().invoke(
        app, ["cooccur", str(hm.path), "--query", "format:numbered_list", "--response", "re:hope it is correct", "--json"]
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["overall"]["n_both"] == 30
    r = CliRunner().invoke(app, ["mine", str(hm.path), "--min-count", "10", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["concentrated"]
    for args in (["grep", str(hm.path), "elucidate"], ["cooccur", str(hm.path), "--query", "1.", "--response", "hope"],
                 ["mine", str(hm.path), "--min-count", "10"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        assert r.output.strip()


def test_feature_lookup_matches_the_features_table(hm, idx):
    import duckdb

    from chunky.turf.analyses import feature_lookup

    cooccur(idx, "format:numbered_list", "closing:i hope it is correct")
    dirs = list((hm.path / "cache").glob("feature_lookup.*"))
    assert len(dirs) == 1
    mtime = (dirs[0] / "example_ids.npy").stat().st_mtime_ns
    lk = feature_lookup(idx)
    rows = duckdb.sql(
        f"SELECT side, feature, list(DISTINCT example_id ORDER BY example_id) FROM read_parquet('{hm.path / 'features.parquet'}') "
        "GROUP BY side, feature"
    ).fetchall()
    for side, feat, ids in rows:
        assert lk.examples_of(side, [feat])[feat].tolist() == ids
    assert lk.examples_of("query", ["word:nope"])["word:nope"].tolist() == []
    cooccur(idx, "word:elucidate", "format:code_fence")
    assert (dirs[0] / "example_ids.npy").stat().st_mtime_ns == mtime  # built once, then reused


def test_feature_lookup_streamed_in_small_batches_is_the_same_lookup(hm, tmp_path, monkeypatch):
    import numpy as np
    import pyarrow.parquet as pq

    from chunky.turf import analyses

    analyses._build_lookup(hm.path / "features.parquet", tmp_path / "whole")
    monkeypatch.setattr(analyses, "_LOOKUP_BATCH", 7)  # many batches, each with its own dictionary
    analyses._build_lookup(hm.path / "features.parquet", tmp_path / "batched")
    assert pq.read_table(tmp_path / "batched" / "names.parquet").equals(pq.read_table(tmp_path / "whole" / "names.parquet"))
    ids = np.load(tmp_path / "whole" / "example_ids.npy")
    assert len(ids) > 7
    assert np.array_equal(np.load(tmp_path / "batched" / "example_ids.npy"), ids)


def test_grep_accepts_feature_names_as_cooccur_does(hm, idx):
    """`chunky grep IDX format:latex` counts the examples having the lexical feature (issue 15), on each
    searched side; the text of the name itself is searched with lit:."""
    fenced = {e["example_id"] for e in hm.examples if "```" in e["response"]}
    res = grep(idx, "format:code_fence")
    assert res.pattern.kind == "feature"
    assert res.matches == len(fenced) == 40 and res.response_matches == 40 and res.query_matches == 0
    assert [(s.source, s.matches) for s in res.by_source] == [("codeset", 40)]
    assert {e.example_id for e in res.examples} <= fenced
    closing = grep(idx, "closing:i hope it is correct", side="response")
    assert closing.matches == 30 and closing.by_source[0].source == "mathset"
    with pytest.raises(ChunkyError, match="no query-side feature"):
        grep(idx, "closing:i hope it is correct", side="query")
    with pytest.raises(ChunkyError, match="lit:format:nothing"):
        grep(idx, "format:nothing")
    assert grep(idx, "lit:format:code_fence").matches == 0  # the literal text appears nowhere
    from chunky.cli import app

    r = CliRunner().invoke(app, ["grep", str(hm.path), "format:code_fence", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["matches"] == 40


def test_lift_means_one_thing_in_grep_cooccur_and_mine_and_every_header_says_which(hm, idx):
    """lift = P(B | A) / P(B) everywhere (issue 15); cooccur's P(r|q)/P(r|not q) is the risk ratio."""
    from rich.console import Console

    from chunky.turf.render import print_cooccur, print_grep, print_mine

    c = cooccur(idx, "word:elucidate", "format:code_fence")
    o = c.overall  # 40 queries with it, all 40 fenced; 40 fenced in all; 120 examples
    assert o.lift == pytest.approx((40 / 40) / (40 / 120))
    assert o.risk_ratio is None  # P(r | not q) = 0: no finite ratio
    c = cooccur(idx, "word:hey", "word:think")  # chat: 50 of 50; word:think only in chat responses
    assert c.overall.lift == pytest.approx(1.0 / (50 / 120))
    m = mine(idx, min_count=10)
    pair = next(p for p in m.pairs if p.source == "mathset")
    assert pair.lift == pytest.approx(pair.p_response_given_query / pair.p_response)
    con = Console(record=True, width=250, emoji=False)
    print_cooccur(cooccur(idx, "format:numbered_list", "re:hope"), con)
    print_grep(grep(idx, "elucidate"), con)
    print_mine(m, con)
    text = con.export_text()
    for header in ("lift P(r|q)/P(r)", "risk ratio P(r|q)/P(r|¬q)", "lift P(src|match)/P(src)", "lift P(src|f)/P(src)"):
        assert header in text, header
