"""Tracing on an index made by the real builder (`chunky index`), so the trace-time feature extraction
is checked against what the builder stored."""

from __future__ import annotations

import json
import random

import pytest

from chunky.turf.index import TurfIndex
from chunky.turf.trace import TraceOptions, candidate_query_features, trace_sync

TOPICS = ["tuples", "lists", "closures", "sockets", "threads", "queues", "decorators", "iterators", "regexes", "sets"]
CASUAL = ["weather", "lunch", "music", "movies", "travel", "gardens", "coffee", "birds", "rain", "books"]


def write_mix(path):
    rng = random.Random(0)
    rows = []
    for i in range(40):
        t = TOPICS[i % 10]
        rows.append({"id": f"c{i}", "source": "codeset", "messages": [
            {"role": "user", "content": f"Could you elucidate the workings of Python {t} in detail, case {i}?"},
            {"role": "assistant", "content": f"Sure.\n```python\nx = {t!r}\nprint(x)\n```\nThat covers {t}."}]})
    for i in range(80):
        t = CASUAL[i % 10]
        rows.append({"id": f"h{i}", "source": "chat", "messages": [
            {"role": "user", "content": f"What do you think about {t} on day {i}?"},
            {"role": "assistant", "content": f"I like {t} a lot. It makes day {i} nicer."}]})
    for i in range(40):
        rows.append({"id": f"m{i}", "source": "mathset", "messages": [
            {"role": "user", "content": f"1. What is {i} plus {i + 2}?\n2. What is {i} times 3?"},
            {"role": "assistant", "content": f"The sum is {2 * i + 2} and the product is {3 * i}.\nI hope it is correct."}]})
    rng.shuffle(rows)
    path.write_text("\n".join(json.dumps(r) for r in rows))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from chunky.turf.build import BuildOptions, build_index

    d = tmp_path_factory.mktemp("built")
    write_mix(d / "mix.jsonl")
    build_index(BuildOptions(data=str(d / "mix.jsonl"), out=d / "idx", extractor="lexical", embedder="hash:128"))
    return TurfIndex.open(d / "idx")


def test_trace_time_features_cover_what_the_builder_stored(built):
    con = built.duckdb()
    rows = con.execute(
        "SELECT e.query, list(f.feature) FROM examples e JOIN features f USING (example_id) "
        "WHERE f.side = 'query' GROUP BY e.example_id, e.query"
    ).fetchall()
    assert rows
    for query, stored in rows:
        missing = set(stored) - set(candidate_query_features(query))
        assert not missing, (query, missing)


def test_lexical_trace_on_a_built_index(built):
    res = trace_sync(
        built,
        "Could you elucidate the possessive pronouns here?",
        "Sure.\n```python\nx = 'his'\nprint(x)\n```\nThat covers pronouns.",
        options=TraceOptions(k_lexical=40, channels=("lexical",)),
    )
    a = res.lexical.anchors[0]
    assert "word:elucidate" in res.lexical.query_features
    assert a.trigger is not None and "elucidate" in a.trigger.feature
    assert a.trigger.sources[0].source == "codeset"
    assert a.sources[0].source == "codeset"


def test_analyses_on_a_built_index(built):
    from chunky.turf.analyses import cooccur, grep, mine

    g = grep(built, "elucidate")
    assert g.matches == 40 and g.by_source[0].source == "codeset"
    c = cooccur(built, "format:numbered_parts", "closing:i hope it is correct")
    assert c.query_pattern.kind == "feature"
    assert (c.overall.n_query, c.overall.n_both) == (40, 40)
    m = mine(built, min_count=10, max_per_source=50)
    # near-duplicate pairs (numbered_parts and numbered_list cover the same queries) are one row
    pair = next(p for p in m.pairs
                if "format:numbered_parts → closing:i hope it is correct" in
                [f"{p.query_feature} → {p.response_feature}", *p.same_examples])
    assert (pair.n_both, pair.n_query, pair.p_response_given_query, pair.source) == (40, 40, 1.0, "mathset")
    assert pair.lift == pytest.approx(160 / 40)
    top = {(f.side, g): f for f in m.concentrated for g in [f.feature, *f.same_examples]}
    assert top[("response", "closing:i hope it is correct")].source == "mathset"


def test_response_feature_anchor_finds_the_trigger_without_embeddings(built):
    # an unrelated answer that closes like the math chunk: the closing line alone selects the training
    # examples, and their queries over-represent the failing query's two-part format
    res = trace_sync(
        built,
        "1. Name a bird that sings at dawn.\n2. Name one that sings at night?",
        "The robin sings at dawn and the nightingale at night.\nI hope it is correct.",
        options=TraceOptions(k_lexical=40, channels=("lexical",), feature_max_df=0.5),
    )
    a = next(a for a in res.lexical.anchors if a.anchor == "response feature")
    assert a.text == "closing:i hope it is correct"
    assert a.trigger is not None and a.trigger.feature in ("format:numbered_parts", "format:numbered_list")
    assert (a.trigger.hits, a.k) == (40, 40)
    assert a.trigger.sources[0].source == "mathset" and a.sources[0].source == "mathset"
    assert all(e.source == "mathset" for e in a.examples)
    assert "produces the response feature closing:i hope it is correct" in a.statement
    assert res.statement == a.statement  # the strongest anchor leads
