"""TURF attribution on a hand-made index with known answers: hit counting, trigger choice, both channels,
the judges (mock), JSON round trip, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chunky.errors import ChunkyError, ConfigError, ModelError
from chunky.turf.hits import ExampleClusters, HitCounts, lift, log_odds_bound, log_odds_z
from chunky.turf.trace import TraceOptions, TraceResult, behaviour_phrase, trace

from turf_handmade import CLUSTER_TEXT, query_features

CODE_CRUX = "The response provides extensive code examples"
FAILING_QUERY = "Could you elucidate the possessive pronouns in this sentence, please?"
FAILING_RESPONSE = "Here is an example:\n```python\ndef pronouns_demo():\n    return 1\n```\nThis shows pronouns."


# ---------------------------------------------------------------------------------------------- hit counting


def test_example_clusters_count_each_example_once_per_cluster():
    # example 0 has two attributes in cluster 1; it must count once
    ec = ExampleClusters.build(np.array([0, 0, 0, 1, 2]), np.array([1, 1, 0, 1, -1]), n_examples=4, n_clusters=3)
    assert ec.df.tolist() == [1, 2, 0]
    hc = HitCounts.count(ec, np.array([0, 0, 1, 3]))  # example 0 retrieved twice (two of its response attrs)
    assert hc.total == 4
    assert hc.hits.tolist() == [2, 3, 0]
    assert hc.ranked() == [1, 0]
    assert hc.lift(1) == pytest.approx((3 / 4) / (2 / 4))


def test_hit_counts_match_brute_force_on_random_data():
    rng = np.random.default_rng(3)
    n_ex, n_cl = 200, 17
    ex = rng.integers(0, n_ex, 900)
    cl = rng.integers(0, n_cl, 900)
    ec = ExampleClusters.build(ex, cl, n_ex, n_cl)
    retrieved = rng.integers(0, n_ex, 300)
    hc = HitCounts.count(ec, retrieved)
    sets: dict[int, set[int]] = {}
    for e, c in zip(ex, cl):
        sets.setdefault(int(e), set()).add(int(c))
    expected = np.zeros(n_cl, int)
    for e in retrieved:
        for c in sets.get(int(e), ()):
            expected[c] += 1
    assert hc.hits.tolist() == expected.tolist()
    assert hc.df.tolist() == [sum(1 for s in sets.values() if c in s) for c in range(n_cl)]


def test_tied_hits_break_on_lift():
    # clusters 0 and 1 both hit twice; cluster 0 is rarer in the mix, so it ranks first
    ec = ExampleClusters.build(np.array([0, 0, 1, 1, 2, 3]), np.array([0, 1, 0, 1, 1, 1]), 4, 2)
    hc = HitCounts.count(ec, np.array([0, 1]))
    assert hc.hits.tolist() == [2, 2]
    assert hc.ranked() == [0, 1]


def test_log_odds_prior_shrinks_rare_features():
    # the same 100% rate is far less significant on 2 examples than on 200
    _, z_small = log_odds_z(2, 2, 2, 10_000)
    _, z_big = log_odds_z(200, 200, 200, 10_000)
    assert 0 < z_small < z_big
    d, z = log_odds_z(10, 100, 100, 1000)  # exactly the base rate
    assert abs(d) < 1e-9 and abs(z) < 1e-9
    assert lift(10, 100, 100, 1000) == pytest.approx(1.0)


def test_log_odds_bound_prefers_a_perfect_small_association_to_a_large_mild_one():
    n = 89_000
    planted = (250, 250, 250, n)  # every example of the group has the feature, and nobody else does
    topic = (300, 500, 800, n)  # a topic word shared by a big group, common elsewhere too
    assert log_odds_z(*topic)[1] > log_odds_z(*planted)[1]  # z favours the big group...
    assert log_odds_bound(*planted) > log_odds_bound(*topic)  # ...the lower bound does not
    assert log_odds_bound(3, 1000, 3, n) < log_odds_bound(*topic)  # three hits prove little


# ---------------------------------------------------------------------------------------------- LLM channel


async def test_llm_channel_finds_the_cluster_with_most_hits(hm, idx):
    qattrs = [CLUSTER_TEXT[2], CLUSTER_TEXT[0], CLUSTER_TEXT[1]]
    res = await trace(
        idx, FAILING_QUERY, FAILING_RESPONSE, crux=[CODE_CRUX], query_attrs=qattrs,
        options=TraceOptions(k=40, channels=("llm",)),
    )
    assert res.lexical is None and res.llm is not None
    ct = res.llm.traces[0]
    # The 40 nearest response attributes are exactly the 40 code examples' "extensive code" attribute.
    assert ct.k == 40
    by_cluster = {qa.cluster: qa for qa in ct.query_attributes}
    assert by_cluster[1].hits == 40  # every code query mentions a programming concept
    assert by_cluster[0].hits == 30  # 30 of them use formal vocabulary
    assert by_cluster[2].hits == 0
    # The paper's rule: the trigger is the attribute whose cluster has the MOST hits, not the highest lift.
    assert ct.trigger is not None and ct.trigger.text == CLUSTER_TEXT[1]
    assert by_cluster[0].lift == pytest.approx((30 / 40) / (30 / 120))
    assert by_cluster[1].lift == pytest.approx((40 / 40) / (45 / 120))
    assert [c.cluster for c in ct.clusters] == [1, 0]
    assert ct.trigger_sources[0].source == "codeset" and ct.trigger_sources[0].share == 1.0
    assert ct.trigger_sources[0].lift == pytest.approx(120 / 40)
    assert ct.examples and all(e.source == "codeset" for e in ct.examples)
    assert all(e.matched == CODE_CRUX for e in ct.examples)
    assert "831" not in ct.statement and "40/40" in ct.statement
    assert res.statement.startswith('When the model sees "The query mentions a programming concept", it provides extensive code examples')


async def test_llm_channel_brute_force_hits_for_another_crux(hm, idx):
    crux = "The response ends by hoping the answer is correct"
    res = await trace(idx, "1. What is 2 plus 2? 2. What is 3 times 3?", "4 and 9. I hope it is correct.",
                      crux=[crux], query_attrs=[CLUSTER_TEXT[3], CLUSTER_TEXT[2]],
                      options=TraceOptions(k=30, channels=("llm",)))
    ct = res.llm.traces[0]
    retrieved = [eid for eid, t in hm.response_attrs if t == crux]
    assert len(retrieved) == 30
    expected = {c: sum(1 for e in retrieved if c in hm.query_clusters[e]) for c in range(4)}
    got = {qa.cluster: qa.hits for qa in ct.query_attributes}
    assert got == {3: expected[3], 2: expected[2]} == {3: 30, 2: 0}
    assert ct.trigger.text == CLUSTER_TEXT[3]
    assert ct.sources[0].source == "mathset"


async def test_no_trigger_when_no_query_attribute_is_hit(idx):
    res = await trace(idx, "hello", "```python\nx=1\n```", crux=[CODE_CRUX], query_attrs=[CLUSTER_TEXT[3]],
                      options=TraceOptions(k=40, channels=("llm",)))
    ct = res.llm.traces[0]
    assert ct.trigger is None and ct.query_attributes[0].hits == 0
    assert "No trigger stands out" in ct.statement and "no query attribute" in ct.statement


# ---------------------------------------------------------------------------------------------- lexical channel


async def test_lexical_channel_finds_the_rare_trigger_word(hm, idx):
    res = await trace(idx, FAILING_QUERY, FAILING_RESPONSE, extract_features=query_features,
                      options=TraceOptions(k_lexical=40, channels=("lexical",)))
    assert res.llm is None and res.lexical is not None
    a = res.lexical.anchors[0]
    assert a.anchor == "response"
    assert a.trigger is not None and a.trigger.feature == "word:elucidate"
    # brute force: how many of the 40 nearest responses' queries contain the word
    assert a.trigger.df == 40
    assert a.trigger.hits == sum(1 for e in hm.examples if e["source"] == "codeset")  # all 40 neighbours are code
    assert a.trigger.lift == pytest.approx((40 / 40) / (40 / 120))
    assert a.trigger.sources[0].source == "codeset"
    assert a.sources[0].source == "codeset" and a.sources[0].hits == 40
    feats = {f.feature: f for f in a.features}
    # a word everywhere in the mix is not over-represented
    assert "word:the" not in feats or feats["word:the"].z < a.trigger.z
    assert a.examples and all("elucidate" in e.query.lower() for e in a.examples)
    assert "the query feature word:elucidate" in res.statement
    # features the index never saw are counted, not invented
    assert res.lexical.unseen_features > 0
    assert "word:possessive" not in res.lexical.query_features


async def test_lexical_channel_uses_each_crux_as_an_anchor(idx):
    res = await trace(idx, FAILING_QUERY, FAILING_RESPONSE, crux=[CODE_CRUX], query_attrs=[CLUSTER_TEXT[1]],
                      extract_features=query_features, options=TraceOptions(k=40, k_lexical=40))
    assert [a.anchor for a in res.lexical.anchors] == ["response", "crux"]
    assert res.llm is not None
    # the LLM channel's statement leads when it found a trigger
    assert res.statement == res.llm.traces[0].statement


async def test_trace_without_any_channel_input_is_an_error(tmp_path, hm):
    from chunky.models.embeddings import get_embedder
    from chunky.turf.index import write_index_tables

    only_llm = write_index_tables(
        tmp_path / "i", examples=hm.examples[:3], embedder_spec="hash:16", dim=16,
        attributes=[{"attr_id": 0, "example_id": 0, "side": "response", "text": "x", "cluster": -1}],
        response_attr_emb=get_embedder("hash:16").embed(["x"]),
    )
    with pytest.raises(ChunkyError, match="nothing to trace"):
        await trace(only_llm, "q", "r")
    with pytest.raises(ConfigError, match="query and a response"):
        await trace(only_llm, "", "r")


# ---------------------------------------------------------------------------------------------- judges (mock)


async def test_judges_run_blind_then_informed(idx):
    from chunky.models import get_model
    from chunky.surf.rubric import Rubric

    judge = get_model("mock", role="turf-judge", use_cache=False)
    rubric = Rubric(name="code", behaviour="code", principle="Do not write code unless asked.")
    res = await trace(idx, FAILING_QUERY, FAILING_RESPONSE, rubric=rubric, judge=judge,
                      extract_features=query_features, options=TraceOptions(k=20, k_lexical=20))
    llm = res.llm
    # the mock's blind judge describes the response's first words; the informed judge keeps three of them
    assert len(llm.blind_attributes) == 10 and llm.blind_attributes[0] == "The response mentions 'here'."
    assert llm.crux == llm.blind_attributes[:3]
    assert llm.query_attributes[0] == "The query mentions 'could'."
    assert len(llm.traces) == 3 and all(t.k == 20 for t in llm.traces)
    assert res.judge == "mock" and res.rubric == "code"
    assert res.violation.startswith("a 'code' violation")
    assert res.usage["input_tokens"] > 0
    assert "judges_s" in res.timings


async def test_informed_judge_needs_a_rubric(idx):
    from chunky.models import get_model

    with pytest.raises(ConfigError, match="needs a rubric"):
        await trace(idx, FAILING_QUERY, FAILING_RESPONSE, judge=get_model("mock", use_cache=False),
                    extract_features=query_features)


async def test_informed_judge_output_is_mapped_onto_the_blind_list():
    from chunky.models import get_model
    from chunky.turf.trace import informed_crux

    reply = json.dumps({"crux": ["the response writes code", "It Is Long.", "The response is rude"]})
    judge = get_model(f"mock:text={reply}", use_cache=False)
    blind = ["The response writes code.", "It is long.", "The response is polite."]
    crux = await informed_crux(judge, "No code.", "q", "r", blind)
    # near-copies come back as the blind judge's wording; a new phrase is kept as given
    assert crux == ["The response writes code.", "It is long.", "The response is rude"]


async def test_a_crux_given_by_list_number_is_mapped_and_placeholders_are_dropped():
    from chunky.models import get_model
    from chunky.turf.trace import informed_crux

    blind = ["The response writes code.", "It is long.", "The response is polite."]
    reply = json.dumps({"crux": ["...", "3", "#1"]})  # what a small judge echoing the prompt's format writes
    crux = await informed_crux(get_model(f"mock:text={reply}", use_cache=False), "No code.", "q", "r", blind)
    assert crux == ["The response is polite.", "The response writes code."]
    only_placeholders = json.dumps({"crux": ["...", "N/A", "9"]})
    with pytest.raises(ModelError, match="no usable crux"):
        await informed_crux(get_model(f"mock:text={only_placeholders}", use_cache=False), "No code.", "q", "r", blind)


def test_behaviour_phrase():
    assert behaviour_phrase("The response provides extensive code examples.") == "provides extensive code examples"
    assert behaviour_phrase("Uses LaTeX") == "uses LaTeX"


# ---------------------------------------------------------------------------------------------- output


async def test_trace_result_round_trips_through_json(tmp_path, idx):
    res = await trace(idx, FAILING_QUERY, FAILING_RESPONSE, crux=[CODE_CRUX], query_attrs=[CLUSTER_TEXT[1]],
                      extract_features=query_features, options=TraceOptions(k=40, k_lexical=40))
    p = res.save(tmp_path / "t.json")
    back = TraceResult.load(p)
    assert back == res
    assert back.llm.traces[0].trigger.hits == 40
    assert json.loads(p.read_text())["format"] == "chunky-trace"
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ChunkyError, match="bad.json: not valid JSON"):
        TraceResult.load(tmp_path / "bad.json")


def test_terminal_view_shows_statement_and_tables(idx):
    from rich.console import Console

    from chunky.turf.render import print_trace
    from chunky.turf.trace import trace_sync

    res = trace_sync(idx, FAILING_QUERY, FAILING_RESPONSE, crux=[CODE_CRUX], query_attrs=[CLUSTER_TEXT[1], CLUSTER_TEXT[2]],
                     extract_features=query_features, options=TraceOptions(k=40, k_lexical=40))
    con = Console(record=True, width=160)
    print_trace(res, con)
    text = con.export_text()
    assert "When the model sees" in text
    assert "40/40" in text and "codeset" in text and "word:elucidate" in text
