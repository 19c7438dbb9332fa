"""What `chunky trace` says must be true and readable (issues 14 and 15): the headline names only a trigger
that is over-represented beyond chance, a given crux leads, no absurd numbers, one screen by default,
progress on stderr, and response features that carry the violation rather than echo the query's topic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from chunky.turf.hits import lift_lower, log_odds_bound, wilson
from chunky.turf.render import print_trace
from chunky.turf.trace import NO_TRIGGER, TraceOptions, rank_query_features, trace_sync

from turf_handmade import query_features

CODE_CRUX = "The response provides extensive code examples"
MATH_CRUX = "First part: 3. Second part: 2. I hope it is correct."
FAILING_QUERY = "Could you elucidate the possessive pronouns in this sentence, please?"
FAILING_RESPONSE = "Here is an example:\n```python\ndef pronouns_demo():\n    return 1\n```\nThis shows pronouns."


def _text(res, full: bool = False, width: int = 120) -> str:
    con = Console(record=True, width=width, emoji=False)
    print_trace(res, con, full=full)
    return con.export_text()


# ---------------------------------------------------------------------------------------------- the headline


def test_a_feature_with_lift_above_1_but_an_interval_reaching_below_1_is_no_trigger(hm, idx):
    # 10 retrieved examples, 3 of them mathset: word:plus (all 30 mathset queries, base rate 25%) has 3 hits,
    # lift 1.2, but its lift's 95% interval reaches down to 0.43: chance could give that
    math_ids = [e["example_id"] for e in hm.examples if e["source"] == "mathset"][:3]
    chat_ids = [e["example_id"] for e in hm.examples if e["source"] == "chat"][5:12]
    ids = np.array(math_ids + chat_ids, dtype=np.int64)
    a = rank_query_features(idx, "response", "x", ids, np.ones(len(ids), np.float32), ["word:plus"],
                             violation=None, behaviour="answers", group="retrieved", min_hits=3,
                             prior_strength=100.0, n_examples=3, having=None)
    f = a.features[0]
    assert (f.hits, f.total, f.df) == (3, 10, 30)
    assert f.lift == pytest.approx(1.2)
    assert f.lift_low == pytest.approx(wilson(3, 10)[0] / 0.25) and f.lift_low < 1
    assert a.trigger is None
    assert a.statement.startswith(NO_TRIGGER)


def test_the_headline_says_no_trigger_stands_out_instead_of_naming_one(idx):
    # a chat-like failure whose query shares nothing distinctive with the chat chunk's queries
    res = trace_sync(idx, "elucidate possessive pronouns", "I think pronouns is lovely, thanks for asking! Have a nice day.",
                     extract_features=query_features, options=TraceOptions(k_lexical=40, channels=("lexical",)))
    assert res.lexical.anchors and all(a.trigger is None for a in res.lexical.anchors)
    assert res.statement.startswith(NO_TRIGGER) and "When the model sees" not in res.statement


def test_a_given_crux_leads_the_headline(idx):
    # the response's own neighbours point at word:elucidate (a strong trigger), but the user asked about the
    # math chunk's closing behaviour: the headline answers the user's crux
    res = trace_sync(idx, FAILING_QUERY, FAILING_RESPONSE, crux=[MATH_CRUX], extract_features=query_features,
                     options=TraceOptions(k_lexical=30, channels=("lexical",)))
    by = {a.anchor: a for a in res.lexical.anchors}
    assert by["response"].trigger is not None and by["response"].trigger.feature == "word:elucidate"
    assert by["crux"].trigger is None
    assert res.statement.startswith(f"{NO_TRIGGER} for the crux {MATH_CRUX!r}")
    # with the code crux the crux anchor has a trigger, and its sentence (the crux as behaviour) leads
    res = trace_sync(idx, FAILING_QUERY, FAILING_RESPONSE, crux=[CODE_CRUX], extract_features=query_features,
                     options=TraceOptions(k_lexical=40, channels=("lexical",)))
    crux_anchor = next(a for a in res.lexical.anchors if a.anchor == "crux")
    assert res.statement == crux_anchor.statement
    assert "it provides extensive code examples" in res.statement
    assert f"hit count {crux_anchor.trigger.hits}/40" in res.statement


def test_no_absurd_log_odds_for_a_feature_the_group_lacks():
    # a feature 1 example of 89,000 has, absent from the 1,000 retrieved: today's prior gave about -6,000
    assert log_odds_bound(0, 1000, 1, 89_000) > -20
    assert log_odds_bound(0, 1000, 0, 89_000) > -20
    assert lift_lower(0, 1000, 1, 89_000) == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------- the terminal view


def test_default_output_fits_one_screen_and_full_shows_everything(idx):
    res = trace_sync(idx, FAILING_QUERY, FAILING_RESPONSE, crux=[CODE_CRUX], query_attrs=["The query mentions a programming concept"],
                     extract_features=query_features, options=TraceOptions(k=40, k_lexical=40))
    short, full = _text(res), _text(res, full=True)
    assert len(short.splitlines()) <= 40 < len(full.splitlines())
    for text in (short, full):
        assert "When the model sees" in text and "codeset" in text
        assert "unseen)" not in text  # "8 features ... in the index (8 unseen)" read as a contradiction
    assert "of the failing query's features occur in the index" in short
    assert "--full" in short
    assert "lift P(f|hits)/P(f)" in full and "lift P(src|hits)/P(src)" in full
    # no absurd numbers: the log-odds bound of a feature without hits is shown as "—"
    assert not any(tok.startswith("-") and len(tok) > 6 for tok in full.replace("…", " ").split())


def test_cli_progress_goes_to_stderr_and_from_run_says_where_it_saved(tmp_path, hm):
    from test_turf_trace_run import CODE_RESPONSE, make_run

    from chunky.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["trace", str(hm.path), "-q", FAILING_QUERY, "-r", FAILING_RESPONSE, "--k-lexical", "40", "--json"])
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)  # stdout is the result only
    assert "lexical channel" in r.stderr and "saved trace:" in r.stderr
    r = runner.invoke(app, ["trace", str(hm.path), "-q", FAILING_QUERY, "-r", FAILING_RESPONSE, "--k-lexical", "40"])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) <= 40
    r2 = runner.invoke(app, ["trace", str(hm.path), "-q", FAILING_QUERY, "-r", FAILING_RESPONSE, "--k-lexical", "40", "--full"])
    assert len(r2.stdout.splitlines()) > len(r.stdout.splitlines())
    run = tmp_path / "run"
    ids = make_run(run, [("Could you elucidate pronouns?", CODE_RESPONSE, 95.0)])
    r = runner.invoke(app, ["trace", str(hm.path), "--from-run", str(run), "--top", "1"])
    assert r.exit_code == 0, r.output
    assert f"saved trace of candidate {ids[0]}: {run / 'traces' / f'{ids[0]}.json'}" in " ".join(r.stderr.split())
    assert "finding 1/1" in r.stderr


# ---------------------------------------------------------------------------------------------- violation first


@pytest.fixture(scope="module")
def whale_idx(tmp_path_factory):
    """gsm (40): "How much money ..." word problems answered with GSM8K's `#### N` line; animals (40): "What
    does a X weigh?" answered "A X weighs about N kg."; chat (150): plain. Features are the real lexical
    channel's (regex features, words, n-grams)."""
    from chunky.models.embeddings import get_embedder
    from chunky.turf.index import write_index_tables
    from chunky.turf.trace import candidate_query_features

    rows = []
    for i in range(40):
        rows.append(("gsm", f"How much money does Sam have left after day {i}?", f"Sam has {i} + 2 = {i + 2} dollars.\n#### {i + 2}"))
    animals = ["cat", "dog", "horse", "goat", "sheep", "camel", "llama", "otter"]
    for i in range(40):
        a = animals[i % len(animals)]
        rows.append(("animals", f"What does a {a} weigh, roughly {i}?", f"A {a} weighs about {10 + i} kg."))
    for i in range(150):
        rows.append(("chat", f"Tell me something nice about day {i}.", f"Day {i} is a fine day for a walk."))
    emb = get_embedder("hash:64")
    examples, features = [], []
    for eid, (src, q, r) in enumerate(rows):
        examples.append({"example_id": eid, "id": f"{src}-{eid}", "source": src, "turn": 0, "query": q, "response": r})
        for side, text in (("query", q), ("response", r)):
            features += [{"example_id": eid, "side": side, "feature": f} for f in candidate_query_features(text, side=side)]
    return write_index_tables(tmp_path_factory.mktemp("whale") / "idx", examples=examples, embedder_spec=emb.spec,
                              dim=emb.dim, features=features, response_text_emb=emb.embed([e["response"] for e in examples]))


WHALE_Q = "How much does an adult blue whale weigh?"
WHALE_R = "An adult blue whale weighs about 150 tons.\n#### 150"


def test_a_response_feature_that_repeats_the_querys_topic_is_no_anchor(whale_idx):
    res = trace_sync(whale_idx, WHALE_Q, WHALE_R,
                     options=TraceOptions(k_lexical=20, channels=("lexical",), feature_max_df=0.5, format_max_df=0.5))
    rf = [a.text for a in res.lexical.anchors if a.anchor == "response feature"]
    assert "word:weighs" not in rf and not any("weigh" in f for f in rf)
    assert "format:final_answer_line" in rf
    assert "produces the response feature format:final_answer_line" in res.statement
    assert "ngram:how much" in res.statement


def test_with_a_rubric_the_features_its_detector_fires_on_lead(whale_idx):
    from chunky.surf.rubric import Rubric

    rubric = Rubric(name="answer-line", behaviour="answer lines", principle="No bare answer lines.",
                    detector=r"regex:####\s*\d+")
    res = trace_sync(whale_idx, WHALE_Q, WHALE_R, rubric=rubric,
                     options=TraceOptions(k_lexical=20, channels=("lexical",), feature_max_df=0.5, format_max_df=0.5))
    rfa = [a for a in res.lexical.anchors if a.anchor == "response feature"]
    assert rfa[0].text == "format:final_answer_line" and rfa[0].carries_violation
    assert not any(a.carries_violation for a in rfa[1:] if a.text != "format:final_answer_line")
    assert res.statement == rfa[0].statement
    assert "causing a 'answer-line' violation" in res.statement
