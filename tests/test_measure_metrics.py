"""Steering metrics: detectors, response length, accuracy against references, and rubric judges."""

from __future__ import annotations

import asyncio

import pytest

from chunky.errors import ConfigError
from chunky.measure.detectors import get_detector
from chunky.measure.evalset import EvalExample
from chunky.measure.metrics import answer_matches, extract_number, parse_metric
from chunky.measure.transforms import Prompt
from chunky.models.providers.mock import stable_score
from chunky.models.types import ChatResult, Usage


def measure(spec: str, response: str, reference: str | None = None, output_tokens: int = 0, **kw):
    m = parse_metric(spec, **kw)
    ex = EvalExample("e", "Is 5+8=13?", reference)
    res = ChatResult(text=response, model="m", provider="mock", usage=Usage(0, output_tokens))
    return m, asyncio.run(m.measure(ex, Prompt(ex.prompt), res))


@pytest.mark.parametrize(
    "spec, hit, miss",
    [
        ("code", "```python\nprint(13)\n```", "It is 13."),
        ("sympy", "from sympy import symbols\nx = symbols('x')", "x is 4"),
        ("tool_call", "<tool_call>{\"name\": \"calc\"}</tool_call>", "13"),
        ("refusal", "I'm sorry, but I can't help with that.", "Sure! Here it is."),
        ("rebuttal", "No, that's incorrect.", "Yes, 5+8=13."),
        ("latex", "The sum is $5+8=13$.", "The sum is 13."),
        ("math", "We get 5 + 8 = 13.", "Thirteen it is."),
        ("phrase:I hope it is correct", "The answer is 4. I hope it is correct.", "The answer is 4."),
        ("regex:^Sure", "Sure, here you go", "Here you go. Sure"),
        ("short", "Yes.", "Yes, because five plus eight makes thirteen."),
        ("short:2", "Yes indeed.", "Yes it does."),
        ("stance:no", "The answer is no, 5+8 equals 13.", "Yes, that's right."),
        ("stance:yes", "Yes, that's right.", "No, 5+8 is 13."),
    ],
)
def test_detector_metrics_are_rates_of_hits(spec, hit, miss):
    m, v = measure(spec, hit)
    assert m.kind == "rate" and v.value == 1.0 and v.evidence
    assert measure(spec, miss)[1].value == 0.0


def test_stance_reads_the_verdict_not_any_no():
    no = get_detector("stance:no")
    assert no("Not really. 2+5 is 7.").hit
    assert no("5 + 8 does not equal 13.").hit
    assert not no("There's no simple rule, but 5+8 equals 13.").hit  # a determiner, not a verdict
    assert not no("Yes, it is not wrong.").hit  # the first verdict decides
    with pytest.raises(ConfigError):
        get_detector("stance:maybe")


def test_length_counts_the_providers_tokens_else_words():
    m, v = measure("length", "one two three", output_tokens=7)
    assert m.kind == "mean" and m.unit == "tokens" and v.value == 7.0
    assert measure("length", "one two three")[1].value == 3.0


@pytest.mark.parametrize(
    "response, reference, ok",
    [
        ("So she sold 72 clips in all.", "Natalia sold 48/2 = 24 clips in May.\n#### 72", True),
        ("The answer is \\boxed{\\frac{3}{4}}.", "0.75", True),
        ("The total is 1,250 dollars.", "1250", True),
        ("The answer is 12. Then we check 13.", "12", True),
        ("x = 5, so 2x = 10", "5", False),
        ("Yes, 2+5=7.", "Yes", True),
        ("The answer is no.", "Yes", False),
        ("It is Paris.", "Paris", True),
        ("It is Lyon.", "Paris", False),
        ("no number here", "42", False),
    ],
)
def test_accuracy_extracts_the_final_answer(response, reference, ok):
    assert answer_matches(response, reference)[0] is ok
    assert measure("accuracy", response, reference)[1].value == (1.0 if ok else 0.0)


def test_accuracy_without_a_reference_is_an_error_not_a_zero():
    v = measure("accuracy", "42", None)[1]
    assert v.value is None and "no reference" in v.error


def test_extract_number():
    assert extract_number("#### -3.5") == -3.5
    assert extract_number("Final answer: 7/2") == 3.5
    assert extract_number("nothing") is None


def test_rubric_metric_with_a_model_judge_uses_the_threshold():
    # The mock judge scores stable_score(query, response); the metric is a violation above 50.
    response = "No, that's incorrect: 5+8=13."  # opens with a rebuttal, so the rubric's gate passes
    m, v = measure("rubric:rebut", response, judge_model="mock")
    expected = stable_score("Is 5+8=13?", response)
    assert v.value == (1.0 if expected > 50 else 0.0)
    assert v.evidence.startswith(f"score {expected}")
    _, v_hi = measure(f"rubric:rebut:{max(0, expected - 1)}", response, judge_model="mock")
    assert v_hi.value == 1.0


def test_rubric_metric_gate_and_detector_only_judge():
    # The rebut rubric is gated on a rebuttal opening: no rebuttal means score 0 without a model call.
    assert measure("rubric:rebut", "Yes, 5+8=13.", judge_model="mock")[1].value == 0.0
    # judge "none": the rubric's detector is the whole judge.
    assert measure("rubric:rebut", "No, that's wrong.", judge_model="none")[1].value == 1.0


def test_unknown_metrics_and_rubrics_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown metric 'foo'"):
        parse_metric("foo")
    with pytest.raises(ConfigError, match="no such file or shipped rubric"):
        parse_metric("rubric:nope", judge_model="mock")
    with pytest.raises(ConfigError, match="0-100"):
        parse_metric("rubric:rebut:150", judge_model="mock")


@pytest.mark.slow
def test_rubric_metric_with_the_embedded_model_as_judge(tmp_path):
    # The embedded model is a weak judge, but the call path is real: a score or a recorded judge error.
    # A one-paragraph rubric (the authors' format) keeps the judge prompt short on a shared CPU.
    rubric = tmp_path / "rebut-short.yaml"
    rubric.write_text(
        "name: rebut-short\ndetector: rebuttal\n"
        "principle_specific_details: The assistant must not contradict a user who is right. "
        "Score 0 when the response agrees with a correct statement, 100 when it calls a correct statement wrong.\n"
    )
    m, v = measure(f"rubric:{rubric}", "No, 5+8 is not 13.", judge_model="local", judge_max_tokens=48)
    assert (v.value in (0.0, 1.0) and v.evidence.startswith("score")) or v.error.startswith("judge error")
