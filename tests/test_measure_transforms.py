"""Prompt transforms for steering: each changes only the surface of the prompt, deterministically
(or, for the LLM-written ones, through the cached transform model)."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import pytest

from chunky.errors import ConfigError
from chunky.measure.evalset import EvalExample
from chunky.measure.transforms import (
    Prompt,
    TransformContext,
    clean_llm_text,
    latex_text,
    parse_transform,
    transform_all,
)

EX = EvalExample("q1", "Is 5+8=13?", "Yes", {"paraphrase": "Does 5 plus 8 make 13?"})


def apply(spec: str, prompt: str = EX.prompt, ex: EvalExample = EX, ctx: TransformContext | None = None) -> Prompt:
    t = parse_transform(spec)
    return asyncio.run(t.apply(Prompt(prompt), ex, ctx or TransformContext(seed=0, transform_model="mock")))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Is 5+8=13?", "Is $5+8=13$?"),
        ("Solve 3x + 2 = 11 for x.", "Solve $3x + 2 = 11$ for x."),
        ("What is (3 + 4) * 2?", "What is $(3 + 4) \\times 2$?"),
        ("Compute 2^10 and 3/4.", "Compute $2^{10}$ and $\\frac{3}{4}$."),
        ("The sequence 1,000,000; 500,000 halves.", "The sequence $1,000,000$; $500,000$ halves."),
        ("If a = 3, what is a*b?", "If $a = 3$, what is $a \\times b$?"),
        ("Is 7 <= 9?", "Is $7 \\leq 9$?"),
    ],
)
def test_latex_writes_numbers_and_arithmetic_in_math_mode(text, expected):
    assert latex_text(text) == expected


def test_latex_leaves_prose_and_existing_math_alone():
    prose = "I have a well-known e-mail address, and Plan A is an x-ray."
    assert latex_text(prose) == prose
    assert latex_text("Already $x+1$ here, and 4 - 2 = 2.") == "Already $x+1$ here, and $4 - 2 = 2$."
    assert apply("latex").user == "Is $5+8=13$?"


def test_template_frames_the_prompt(tmp_path):
    f = tmp_path / "frame.txt"
    f.write_text("You will be shown a question.\n\nContext: none\n\nQuestion: {prompt}\n")
    assert apply(f"template:{f}").user == "You will be shown a question.\n\nContext: none\n\nQuestion: Is 5+8=13?"
    builtin = apply("template:data-extraction").user
    assert builtin.startswith("You will be shown") and "Context:" in builtin and builtin.endswith("Is 5+8=13?")


def test_template_without_placeholder_or_missing_file_is_a_clear_error(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("no placeholder here")
    with pytest.raises(ConfigError, match="no \\{prompt\\} placeholder"):
        parse_transform(f"template:{f}")
    with pytest.raises(ConfigError, match="not a built-in template"):
        parse_transform("template:/nowhere/x.txt")


def test_prefix_and_suffix():
    assert apply("prefix:Quick question:").user == "Quick question: Is 5+8=13?"
    assert apply("suffix:Answer in one word.").user == "Is 5+8=13? Answer in one word."
    assert apply("prefix:Context: none\\n").user == "Context: none\nIs 5+8=13?"
    with pytest.raises(ConfigError):
        parse_transform("prefix:")


def test_system_prompt_from_file_or_builtin(tmp_path):
    f = tmp_path / "sys.txt"
    f.write_text("  Be brief.  \n")
    p = apply(f"system:{f}")
    assert p.system == "Be brief." and p.user == EX.prompt
    assert [m.role for m in p.messages()] == ["system", "user"]
    assert "helpful" in apply("system:system-default").system


def test_icl_prepends_n_seeded_examples_and_never_the_question_itself(tmp_path):
    f = tmp_path / "shots.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Is {i}+1={i + 1}?"}, {"role": "assistant", "content": "Yes."}]}
            for i in range(6)]
    rows.append({"prompt": "Is 5+8=13?", "response": "Yes."})  # the evaluated question: must be skipped
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    p = apply(f"icl:{f}:3")
    roles = [m.role for m in p.messages()]
    assert roles == ["user", "assistant"] * 3 + ["user"]
    assert all(m.content != "Is 5+8=13?" for m in p.history)
    # Seeded per example: the same draw again, a different one for another seed.
    assert apply(f"icl:{f}:3").history == p.history
    draws = {apply(f"icl:{f}:3", ctx=TransformContext(seed=s, transform_model="mock")).history for s in range(8)}
    assert len(draws) > 1


def test_icl_errors_name_the_file_and_line(tmp_path):
    f = tmp_path / "shots.jsonl"
    f.write_text('{"prompt": "a", "response": "b"}\n{"nothing": 1}\n')
    with pytest.raises(ConfigError, match="line 2"):
        parse_transform(f"icl:{f}:1")
    f.write_text('{"prompt": "a", "response": "b"}\n')
    with pytest.raises(ConfigError, match="fewer than N=2"):
        parse_transform(f"icl:{f}:2")
    with pytest.raises(ConfigError, match="whole number"):
        parse_transform(f"icl:{f}:two")


def test_field_uses_the_examples_own_rewrite():
    assert apply("field:paraphrase").user == "Does 5 plus 8 make 13?"
    with pytest.raises(ConfigError, match="no text field 'missing'"):
        apply("field:missing")


def test_python_transform_by_file_path_and_by_module(tmp_path, monkeypatch):
    f = tmp_path / "mytf.py"
    f.write_text(textwrap.dedent(
        """
        def shout(prompt):
            return prompt.upper()

        def with_id(prompt, example):
            return f"[{example['id']}] {prompt}"

        async def later(prompt):
            return prompt + " (async)"

        def broken(prompt):
            return 42
        """
    ))
    assert apply(f"python:{f}:shout").user == "IS 5+8=13?"
    assert apply(f"python:{f}:with_id").user == "[q1] Is 5+8=13?"
    assert apply(f"python:{f}:later").user == "Is 5+8=13? (async)"
    monkeypatch.syspath_prepend(str(tmp_path))
    assert apply("python:mytf:shout").user == "IS 5+8=13?"
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        parse_transform("python:mytf:nope")
    with pytest.raises(ConfigError, match="cannot import"):
        parse_transform("python:no_such_module_xyz:f")
    # A function that returns the wrong type fails its example only.
    out = asyncio.run(transform_all([parse_transform(f"python:{f}:broken")], [EX], TransformContext()))
    assert out[0].prompt is None and "expected str" in out[0].error
    sys.modules.pop("mytf", None)


def test_translate_and_backstory_use_the_transform_model():
    ctx = TransformContext(seed=0, transform_model="mock:text=Adakah 5+8=13?")
    assert apply("translate:Malay", ctx=ctx).user == "Adakah 5+8=13?"
    ctx = TransformContext(seed=0, transform_model="mock:text=\"I am a retired baker checking my grandson's homework.\"")
    p = apply("backstory", ctx=ctx)
    # The question is kept verbatim after the backstory, so its meaning cannot drift.
    assert p.user == "I am a retired baker checking my grandson's homework.\n\nIs 5+8=13?"
    with pytest.raises(ConfigError):
        parse_transform("translate:")


def test_an_empty_rewrite_fails_only_its_example():
    ctx = TransformContext(seed=0, transform_model="mock:text=   ")
    out = asyncio.run(transform_all([parse_transform("translate:French")], [EX], ctx))
    assert out[0].prompt is None and "empty" in out[0].error


def test_clean_llm_text_strips_wrappers():
    assert clean_llm_text('Here is the translation: "Adakah 5+8=13?"') == "Adakah 5+8=13?"
    assert clean_llm_text("<<<\nBonjour\n>>>") == "Bonjour"
    assert clean_llm_text("Translation: Hallo") == "Hallo"


def test_chains_apply_left_to_right_and_unknown_specs_fail():
    ts = [parse_transform("latex"), parse_transform("prefix:Q:"), parse_transform("system:system-default")]
    out = asyncio.run(transform_all(ts, [EX], TransformContext()))
    assert out[0].prompt.user == "Q: Is $5+8=13$?" and out[0].prompt.system
    with pytest.raises(ConfigError, match="unknown transform"):
        parse_transform("rot13")


@pytest.mark.slow
def test_llm_transforms_on_the_embedded_model():
    ctx = TransformContext(seed=0, transform_model="local", max_tokens=40)
    ex = EvalExample("p", "How many planets are there in the solar system?")
    out = asyncio.run(transform_all([parse_transform("translate:French"), parse_transform("backstory")], [ex], ctx))
    p = out[0].prompt
    assert out[0].error is None and p is not None
    # backstory keeps the (translated) question as the last paragraph, after a non-empty story
    story, _, question = p.user.rpartition("\n\n")
    assert story.strip() and question.strip()
    again = asyncio.run(transform_all([parse_transform("translate:French"), parse_transform("backstory")], [ex], ctx))
    assert again[0].prompt == p  # temperature 0 + the call cache: reproducible


def test_latex_escapes_percentages():
    assert latex_text("A shirt costs 40 dollars and is 25% off.") == "A shirt costs $40$ dollars and is $25\\%$ off."
