"""The rubric judge: structured output, tag fallback, retries, errors that are never 0, gates, sampling."""

from __future__ import annotations

import pytest
from surf_helpers import judge_json, scripted

from chunky.models import get_model
from chunky.models.providers.mock import stable_score
from chunky.surf.judge import RubricJudge, parse_judgment_text
from chunky.surf.rubric import load_rubric

REBUT = load_rubric("rebut")
CODE = load_rubric("code")


async def test_structured_judgment_on_mock():
    judge = RubricJudge(get_model("mock", role="judge", use_cache=False), CODE, gate="none")
    j = await judge.judge("What is a haiku?", "A short poem.")
    assert j.score == stable_score("What is a haiku?", "A short poem.")
    assert j.error is None and j.reasoning and j.gate is None
    assert j.usage.calls == 1


@pytest.mark.parametrize(
    "text, score, calls",
    [
        ("<reasoning>It writes code for a poem.</reasoning><score>73</score>", 73.0, 2),
        ("The reply is fine.\nScore: 12/100", 12.0, 2),
        ("Thinking... final score = 88", 88.0, 2),
        # JSON inside prose already satisfies the model layer's structured parser
        ('Here you go: {"reasoning": "bad", "score": 64}', 64.0, 1),
    ],
)
async def test_tag_parsing_rescues_a_judge_that_ignores_the_schema(text, score, calls):
    model, provider = scripted(lambda r: text)
    j = await RubricJudge(model, CODE, gate="none").judge("q", "r")
    assert j.score == score and j.error is None
    # the structured call and the model layer's one repair; no judge retry needed
    assert provider.calls == calls


async def test_an_unparseable_judgment_is_retried_then_stored_as_an_error_never_zero():
    model, provider = scripted(lambda r: "I would rather not say.")
    j = await RubricJudge(model, CODE, gate="none").judge("q", "r")
    assert j.score is None and not j.ok
    assert "unparseable" in j.error
    assert provider.calls == 3  # structured + repair, then one plain-text retry with tags
    assert "<score>" in provider.requests[-1].messages[-1].content


async def test_the_retry_uses_a_different_form_and_can_succeed():
    model, provider = scripted(lambda r: "<score>81</score>" if r.json_schema is None else "no idea")
    j = await RubricJudge(model, CODE, gate="none").judge("q", "r")
    assert j.score == 81.0 and provider.calls == 3


async def test_out_of_range_scores_are_not_accepted():
    model, _ = scripted(lambda r: "Score: 150")
    j = await RubricJudge(model, CODE, gate="none").judge("q", "r")
    assert j.score is None
    assert parse_judgment_text("score: 7/10 then <score>-3</score>") is None


async def test_a_failing_judge_model_is_an_error():
    from chunky.models.base import BadRequest

    def fail(r):
        raise BadRequest("context length exceeded", status=400)

    model, provider = scripted(fail)
    j = await RubricJudge(model, CODE, gate="none").judge("q", "r")
    assert j.score is None and "judge call failed" in j.error and "context length exceeded" in j.error
    assert provider.calls == 1  # not retried: the model layer already decided it cannot succeed


async def test_the_rubric_detector_gates_the_llm_judge():
    model, provider = scripted(lambda r: judge_json(90, "rebuts a true sum"))
    judge = RubricJudge(model, REBUT)  # gate=None: the rubric's own detector (rebuttal)
    assert judge.gate_spec == "rebuttal"
    miss = await judge.judge("Is 5+8=13?", "Yes, 5+8 is 13.")
    assert (miss.score, miss.reasoning) == (0.0, "gate: no rebuttal")
    assert provider.calls == 0  # no model call for a response without the behaviour
    hit = await judge.judge("Is 5+8=13?", "The answer is no, 5+8 equals 13.")
    assert hit.score == 90.0 and hit.gate.hit and provider.calls == 1
    assert hit.gate.evidence.lower().startswith("the answer is no")
    # an explicit "none" turns the rubric's gate off
    assert RubricJudge(model, REBUT, gate="none").gate_spec is None


async def test_a_detector_alone_is_a_judge():
    judge = RubricJudge(None, CODE, gate="code")
    assert (await judge.judge("q", "```python\nprint(1)\n```")).score == 100.0
    assert (await judge.judge("q", "Plain words.")).score == 0.0
    with pytest.raises(Exception, match="needs a model or a detector"):
        RubricJudge(None, load_rubric("math"))


@pytest.mark.parametrize("aggregate, expected", [("mean", 30.0), ("median", 20.0)])
async def test_judge_sampling_aggregates_k_judgments(aggregate, expected):
    scores = {0: 10, 1: 20, 2: 60}
    model, provider = scripted(lambda r: judge_json(scores[r.sample_index]))
    j = await RubricJudge(model, CODE, samples=3, aggregate=aggregate, gate="none").judge("q", "r")
    assert j.score == expected and sorted(j.samples) == [10, 20, 60]
    assert {r.config.temperature for r in provider.requests} == {1.0}  # sampled, not greedy


async def test_partly_failed_sampling_keeps_the_good_samples_and_says_so():
    model, _ = scripted(lambda r: judge_json(40) if r.sample_index != 1 else "garbage")
    j = await RubricJudge(model, CODE, samples=3, gate="none").judge("q", "r")
    assert j.score == 40.0 and j.error == "1 of 3 judge samples failed"


async def test_compact_style_sends_only_behaviour_and_principle():
    model, provider = scripted(lambda r: judge_json(55))
    await RubricJudge(model, REBUT, gate="none", style="compact").judge("q", "r")
    prompt = provider.requests[0].messages[-1].content
    assert REBUT.principle in prompt and "SCORING GUIDELINES" not in prompt
