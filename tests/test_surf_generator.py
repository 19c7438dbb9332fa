"""The query generator: structured output first, rescue of raw text, and what counts as unusable."""

from __future__ import annotations

import json

import pytest
from surf_helpers import scripted

from chunky.models import get_model
from chunky.surf.generator import QueryGenerator, clean_query, unusable_reason


async def test_mock_generator_writes_a_query_from_every_attribute():
    gen = QueryGenerator(get_model("mock", role="generator", use_cache=False))
    g = await gen.generate(["The query is in French.", "The query asks a yes-or-no question."])
    assert g.ok and "in French" in g.query and "yes-or-no" in g.query
    assert g.usage.calls == 1


async def test_the_prompt_lists_every_attribute_and_asks_for_json():
    model, provider = scripted(lambda r: json.dumps({"query": "Est-ce que Paris est la capitale ?"}), role="generator")
    g = await QueryGenerator(model).generate(["A", "B"], seed=42)
    req = provider.requests[0]
    assert "- A\n- B" in req.messages[-1].content and req.json_schema["required"] == ["query"]
    assert req.config.seed == 42 and req.hints == {"task": "generate_query", "attributes": ["A", "B"]}
    assert g.query == "Est-ce que Paris est la capitale ?"


@pytest.mark.parametrize(
    "raw, query",
    [
        ("<query>Is 5+8=13?</query>", "Is 5+8=13?"),
        ('Query: "How do tides work?"', "How do tides work?"),
        ("User's message: Can you help me plan a picnic?", "Can you help me plan a picnic?"),
    ],
)
async def test_raw_text_is_rescued_when_the_model_ignores_the_schema(raw, query):
    model, provider = scripted(lambda r: raw, role="generator")
    g = await QueryGenerator(model).generate(["A"])
    assert g.query == query and provider.calls == 2  # structured call + one repair, then the raw text


@pytest.mark.parametrize(
    "query, why",
    [
        ("", "empty query"),
        ("ok", "too short"),
        ("I'm sorry, but I can't write that.", "refused"),
        ('{"query": "x"', "leftover JSON"),
        ("Write one message. The message must have ALL of these attributes: ...", "echoed its instructions"),
        ("x" * 5000, "longer than"),
        ("<the user's message>", "placeholder"),
        ("How long do I boil an egg?", "copied the example"),
    ],
)
def test_unusable_queries_are_named(query, why):
    assert why in unusable_reason(clean_query(query), 4000)


def test_a_normal_query_is_usable():
    assert unusable_reason("Is it true that the Berlin Wall fell in 1989?", 4000) is None


async def test_a_json_object_cut_off_after_the_query_string_is_rescued():
    model, _ = scripted(lambda r: '{"query": "Is the \\"Mona Lisa\\" in the Louvre?", "no', role="generator")
    g = await QueryGenerator(model).generate(["A"])
    assert g.query == 'Is the "Mona Lisa" in the Louvre?'
    model, _ = scripted(lambda r: '{"query": "Is the Mona Lisa in the', role="generator")
    g = await QueryGenerator(model).generate(["A"])
    assert not g.ok and "leftover JSON" in g.error  # a query cut mid-sentence is not used
