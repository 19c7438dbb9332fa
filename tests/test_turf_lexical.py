"""The lexical channel: readable feature names, document-frequency bounds, and a resumable corpus build."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from chunky.turf.lexical import LexicalBuilder, LexicalParams, analyse_texts, build_lexical, regex_features, tokenize
from chunky.turf.load import load_examples

DATA = Path(__file__).parent / "fixtures" / "data"


def test_format_features_of_code_math_and_lists():
    code = "Sure! Here is an example:\n\n```python\ndef f(x):\n    return x + 1\nprint(f(2))\n```"
    f = regex_features(code, "response")
    assert {"format:code_fence", "format:code", "opening:sure", "opening:sure here", "template:here is"} <= set(f)
    math = "We compute $\\frac{1}{2} + 3 = 3.5$ and $2 + 3 = 5$.\n\nFinal Answer: The final answer is $5$. I hope it is correct."
    f = regex_features(math, "response")
    assert {"format:latex", "format:arithmetic", "closing:i hope it is correct", "template:the final answer is",
            "template:final answer:"} <= set(f)
    # Two paragraphs are not "multi_paragraph" (three or more).
    assert "format:multi_paragraph" not in f
    lst = "Two steps:\n1. Mix the flour.\n2. Bake it.\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    f = regex_features(lst, "query")
    assert {"format:numbered_list", "format:numbered_parts", "format:table"} <= set(f)
    assert "format:code_fence" not in f and "format:latex" not in f


def test_question_forms_templates_length_script_and_language():
    f = regex_features("Is 5+8=13?", "query")
    assert {"question:yes_no", "question:question_mark", "format:arithmetic", "format:equation", "length:query:tiny"} <= set(f)
    f = regex_features("You will be shown a paragraph.\nAnswer:", "query")
    assert {"template:you will be shown", "template:answer:"} <= set(f)
    f = regex_features("Explain how to bake bread in simple terms, please, for a beginner who has never baked.", "query")
    assert {"question:imperative", "question:how_to", "language:english", "script:latin", "length:query:short"} <= set(f)
    f = regex_features("Как приготовить борщ? Я хочу знать рецепт.", "query")
    assert "script:cyrillic" in f and "script:latin" not in f
    f = regex_features("Le chat est sur la table et il dort dans le salon avec les enfants.", "response")
    assert "language:french" in f
    long_text = " ".join(["word"] * 600)
    assert "length:response:very_long" in regex_features(long_text, "response")


def test_tokenize_keeps_sentence_boundaries_and_apostrophes():
    assert tokenize("It's step by step. Done!") == ["it's", "step", "by", "step", ".", "done", "!"]


def test_corpus_build_names_words_and_ngrams_within_df_bounds(tmp_path):
    exs = load_examples(DATA / "tulu.jsonl")
    n = len(exs)
    batches = [(list(range(n)), [e.query for e in exs], [e.response for e in exs])]
    build_lexical(batches, tmp_path / "work", tmp_path, n, LexicalParams())
    feats = pq.read_table(tmp_path / "features.parquet").to_pylist()
    stats = {(r["side"], r["feature"]): r for r in pq.read_table(tmp_path / "feature_stats.parquet").to_pylist()}
    # Six code questions say "elucidate": a word within bounds (min_df 2 for a small corpus, max_df 0.5 * 22).
    assert stats[("query", "word:elucidate")]["df"] == 6
    assert stats[("query", "word:elucidate")]["kind"] == "word"
    assert stats[("query", "ngram:step by step")]["df"] == 6
    assert stats[("response", "closing:i hope it is correct")]["df"] == 6
    assert stats[("response", "format:code_fence")]["df"] == 6
    assert stats[("query", "template:you will be shown")]["df"] == 3
    # Stop words alone are never features; a word seen once is below min_df.
    assert ("query", "word:the") not in stats
    assert ("query", "word:borscht") not in stats and ("query", "word:haiku") not in stats
    # A word in more than half the examples is above max_df.
    assert all(r["df"] <= n * 0.5 for k, r in stats.items() if r["kind"] in ("word", "ngram"))
    elucidate_rows = {r["example_id"] for r in feats if r["side"] == "query" and r["feature"] == "word:elucidate"}
    assert elucidate_rows == set(range(6))
    # Every stored feature has its stats row, with a df equal to its number of examples.
    from collections import Counter

    df = Counter((r["side"], r["feature"]) for r in feats)
    assert all(stats[k]["df"] == v for k, v in df.items())
    assert set(df) == set(stats)


def test_builder_resumes_after_the_last_finished_batch(tmp_path):
    exs = load_examples(DATA / "tulu.jsonl")
    n = len(exs)

    def analysed(lo, hi):
        tq, rq = analyse_texts([e.query for e in exs[lo:hi]], "query")
        tr, rr = analyse_texts([e.response for e in exs[lo:hi]], "response")
        return list(range(lo, hi)), {"query": tq, "response": tr}, {"query": rq, "response": rr}

    # One process stops after the first batch (as a kill would leave it) ...
    b1 = LexicalBuilder(tmp_path / "w")
    b1.add_batch(*analysed(0, 10))
    del b1
    # ... a new one continues from example 10.
    b2 = LexicalBuilder(tmp_path / "w")
    assert b2.done_examples == 10 and b2.batches == 1
    b2.add_batch(*analysed(10, n))
    (tmp_path / "resumed").mkdir()
    b2.finish(n, tmp_path / "resumed")
    # The same corpus in one go gives the same features.
    (tmp_path / "once").mkdir()
    build_lexical([(list(range(n)), [e.query for e in exs], [e.response for e in exs])], tmp_path / "w2", tmp_path / "once", n)

    def rows(d):
        t = pq.read_table(d / "features.parquet")
        return sorted(zip(t["example_id"].to_pylist(), t["side"].to_pylist(), t["feature"].to_pylist()))

    assert rows(tmp_path / "resumed") == rows(tmp_path / "once")


# ---- formats named for what they are (issue 14): grep, cooccur, mine and trace all read these names


def test_gsm8k_final_answer_line_is_its_own_format_not_a_heading():
    gsm8k = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether she sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    f = set(regex_features(gsm8k, "response"))
    assert {"format:final_answer_line", "format:calculator_annotation"} <= f
    assert "format:heading" not in f
    for line in ("#### 1,000", "####-3", "#### $5", "#### 7/2"):
        assert "format:final_answer_line" in regex_features("So:\n" + line, "response"), line
    # a real markdown heading, even one that starts with a number or uses four #, stays a heading
    for md in ("## Installation\nRun it.", "#### 3 ways to cook rice\nBoil.", "# 2024 review"):
        f = set(regex_features(md, "response"))
        assert "format:heading" in f and "format:final_answer_line" not in f, md
    assert "format:calculator_annotation" not in regex_features("x << 2 and y >> 3; a == b", "response")


def test_a_tool_call_in_prose_is_a_tool_call_and_a_call_in_code_is_not():
    for text in ("The formula is wolfram('area of a circle formula')",
                 "Let me look it up: wikipedia(\"Eiffel Tower\")\nIt is in Paris.",
                 "search('weather in Oslo tomorrow')"):
        assert "format:tool_call" in regex_features(text, "response"), text
    for code in ("```python\nprint('hello')\n```",
                 "def f():\n    print('hello')\n    return 1",
                 "print('hello')\nreturn x",
                 "Use obj.method('x') here",  # a method, not a tool
                 "no call here"):
        assert "format:tool_call" not in regex_features(code, "response"), code


def test_the_named_formats_are_stored_by_a_real_corpus_build(tmp_path):
    qs = [f"How many apples, case {i}?" for i in range(6)]
    rs = [f"She had 3+{i} = <<3+{i}={3 + i}>>{3 + i} apples.\n#### {3 + i}" for i in range(6)]
    files = build_lexical([(list(range(6)), qs, rs)], tmp_path / "work", tmp_path, 6)
    assert files
    t = pq.read_table(tmp_path / "feature_stats.parquet").to_pylist()
    df = {(r["side"], r["feature"]): r["df"] for r in t}
    assert df[("response", "format:final_answer_line")] == 6
    assert df[("response", "format:calculator_annotation")] == 6
    assert ("response", "format:heading") not in df


def test_a_response_feature_echoes_a_query_word_or_a_format_the_query_names():
    from chunky.turf.lexical import echoes, format_name_stems

    assert echoes("word:weigh", "word:weighs")  # the topic repeated
    assert echoes("word:html", "format:html") and echoes("ngram:an html page", "format:html")
    assert echoes("ngram:a short", "length:response:short") and echoes("word:code", "format:code_fence")
    assert format_name_stems("format:code_fence") == {"code", "fence"}
    assert format_name_stems("length:response:very_long") == {"very", "long"}
    assert format_name_stems("opening:sure") == frozenset()
    # a trigger that does not name the format is no echo: a language → fenced code, "tersely" → short answers
    assert not echoes("word:haskell", "format:code_fence")
    assert not echoes("ngram:answer tersely", "length:response:short")
    assert not echoes("format:latex", "format:boxed")
