"""`chunky mine`'s per-source view on a hand-made index with known answers: a small query template is not
crowded out by the source's topical words, near-exclusive chunks show beyond the first three of a kind, and a
response format conditional on a query phrase inside one source (a short-answer instruction, where short
answers are common elsewhere) is a habit of that source, while a format the query names is not."""

from __future__ import annotations

import pytest
from test_turf_mine import _write

from chunky.turf.analyses import EXCLUSIVE_SHARE, mine, wilson_lower
from chunky.turf.hits import wilson

CODE_CLOSINGS = [70, 65, 60, 55, 50, 45, 40]  # seven closings of `code`, each in its own examples, only there
CHAT_CLOSINGS = 4  # four closings of `chat`, 50 there and 8 in `qa` each: strong, but not near-exclusive


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    """2,000 examples in three sources.

    `qa` (1,200): every response is short (length:response:short), so short answers are 64% of the mix.
    `chat` (400): 40 queries say "Answer tersely." (word:tersely, ngram:answer tersely) and get short answers;
    of the other 360, 40 are short and 320 long, so P(short | chat) = 80/400 = 0.2 and the instruction's lift
    inside chat is 5, while over the mix it is 1/0.64 = 1.6 (under mine's min_lift of 2: no mix-wide pair).
    30 other chat queries name Python (word:python) and get fenced code; 30 ask for HTML (word:html) and get
    format:html, a format the query names. Four chat closings (50 chat + 8 qa examples each).
    `code` (400): seven near-exclusive closings (70 … 40 examples); five topical words in 200 queries each
    (overlapping, Jaccard 0.6) and a 40-example query opening `opening:kindly` ("Kindly ponder this.")."""
    rows = []
    for i in range(1200):
        rf = ["length:response:short"] + [f"closing:chat{c}" for c in range(CHAT_CLOSINGS) if 8 * c <= i < 8 * c + 8]
        rows.append(("qa", ["template:question:"], rf))
    for i in range(400):
        qf, rf = [], []
        if i < 40:
            qf, rf = ["word:tersely", "ngram:answer tersely"], ["length:response:short"]
        else:
            rf = ["length:response:short"] if i < 80 else ["length:response:long"]
            if 80 <= i < 110:
                qf, rf = ["word:python"], rf + ["format:code_fence"]
            elif 110 <= i < 140:
                qf, rf = ["word:html"], rf + ["format:html"]
        rf += [f"closing:chat{c}" for c in range(CHAT_CLOSINGS) if 200 + 50 * c <= i < 250 + 50 * c]
        rows.append(("chat", qf, rf))
    starts = [sum(CODE_CLOSINGS[:k]) for k in range(len(CODE_CLOSINGS))]
    for i in range(400):
        qf = [f"word:topic{w}" for w in range(5) if (i - 50 * w) % 400 < 200] + (["opening:kindly"] if i < 40 else [])
        rf = ["length:response:long"] + [f"closing:code{k}" for k, (a, c) in enumerate(zip(starts, CODE_CLOSINGS))
                                         if a <= i < a + c]
        rows.append(("code", qf, rf))
    return _write(tmp_path_factory.mktemp("sig") / "idx", rows)


def _shown(sig, kind):
    return [f.feature for f in [sig.signatures[kind], *sig.runners_up.get(kind, [])]] if kind in sig.signatures else []


def test_a_small_query_template_is_not_crowded_out_by_topical_words(mix):
    sig = {s.source: s for s in mine(mix).signatures}["code"]
    # five words of 200 examples each outrank a 40-example opening on the lift's lower bound; they are the
    # query's vocabulary, the opening is how it is asked
    assert _shown(sig, "query") == ["opening:kindly"]
    assert set(_shown(sig, "query_vocabulary")) == {f"word:topic{w}" for w in range(5)}


def test_near_exclusive_chunks_show_beyond_three_of_a_kind(mix):
    assert wilson_lower(40, 40) >= EXCLUSIVE_SHARE  # the smallest code closing is near-exclusive at 95%
    res = mine(mix)
    sig = {s.source: s for s in res.signatures}
    # strongest first, up to max_signatures_per_kind (6) when near-exclusive: the seventh is left out
    assert _shown(sig["code"], "closing") == [f"closing:code{k}" for k in range(6)]
    # chat's closings are strong (lift 50/58 / 0.2 = 4.3) but 14% of each is in qa: three, as for any kind
    assert wilson_lower(50, 58) < EXCLUSIVE_SHARE
    assert len(_shown(sig["chat"], "closing")) == 3
    assert len(_shown({s.source: s for s in mine(mix, max_signatures_per_kind=3).signatures}["code"], "closing")) == 3


def test_a_format_habit_conditional_on_a_query_phrase_inside_one_source(mix):
    res = mine(mix)
    habits = {s.source: s for s in res.signatures}["chat"].conditional
    by_pair = {(h.query_feature, h.response_feature): h for h in habits}
    h = by_pair[("ngram:answer tersely", "length:response:short")]
    assert (h.source, h.n_source, h.n_query, h.n_response, h.n_both) == ("chat", 400, 40, 80, 40)
    assert h.p_response_given_query == 1.0 and h.p_response == pytest.approx(0.2)
    assert h.lift == pytest.approx(5.0)
    assert h.lift_low == pytest.approx(wilson(40, 40)[0] / 0.2)
    assert h.same_examples == ["word:tersely → length:response:short"]  # the same 40 examples: one row
    # the mix-wide pair is under min_lift (P(short) = 64%): only the within-source view shows it
    assert all(p.query_feature not in ("word:tersely", "ngram:answer tersely") for p in res.pairs)
    # a language named in the query → fenced code is a habit (lift 400/30 inside chat), the strongest first
    assert (habits[0].query_feature, habits[0].response_feature) == ("word:python", "format:code_fence")
    # asking for HTML and getting HTML is instruction following, not a habit
    assert ("word:html", "format:html") not in by_pair
    # the qa template is in every qa query: it is qa's signature, never a habit conditional on qa's queries
    assert all(h.query_feature != "template:question:" for s in res.signatures for h in s.conditional)


def test_intersect_sorted_agrees_with_numpy_on_every_small_case():
    import numpy as np

    from chunky.turf.analyses import intersect_sorted

    rng = np.random.default_rng(0)
    for _ in range(500):
        a = np.unique(rng.integers(0, 60, rng.integers(0, 30)))
        b = np.unique(rng.integers(0, 60, rng.integers(0, 60)))
        assert np.array_equal(intersect_sorted(a, b), np.intersect1d(a, b))
        assert np.array_equal(intersect_sorted(b, a), np.intersect1d(a, b))


def test_the_explorers_index_page_lists_each_sources_conditional_habits(mix):
    import re
    from html import unescape
    from urllib.parse import quote

    from starlette.testclient import TestClient

    from chunky.web.app import create_app

    root = mix.path.parent
    page = TestClient(create_app([root])).get(
        f"/index/{quote(root.name)}/{mix.path.name}", params={"mine": "1", "min_count": "2"}
    ).text
    table = page.split('class="mine-habits"')[1].split("<tbody>")[1].split("</table>")[0]
    rows = [unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", tr))).split() for tr in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
    # chat's strongest habit first: a language named in the query → fenced code, 30 of 30, lift 400/30 inside chat
    assert rows[0][:5] == ["chat", "word:python", "format:code_fence", "30", "/"] and rows[0][5] == "30"
    assert "lift P(r|q,src)/P(r|src)" in page
    assert not any("word:html" in r for r in rows)  # asking for HTML and getting HTML is no habit
