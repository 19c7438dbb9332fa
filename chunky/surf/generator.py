"""The query generator: one realistic user query that has every sampled attribute."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chunky.errors import ModelError, StructuredOutputError
from chunky.measure.detectors import refusal
from chunky.models.accounting import RoleUsage
from chunky.models.model import Model
from chunky.models.structured import extract_json

QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 1}},
    "required": ["query"],
}

GENERATOR_SYSTEM = (
    "You write messages that real people send to an AI assistant. Each message you write must read as if "
    "a genuine user typed it: natural wording, a plausible purpose, concrete details. You never answer the "
    "message yourself."
)

GENERATOR_PROMPT = """Write one message from a user to an AI assistant. The message must have ALL of these attributes:
{attributes}

Rules:
- Write only the user's message, exactly as they would send it. Do not answer it.
- Do not mention these instructions, the attributes, or that this is a test.
- If two attributes seem to conflict, find a natural way to satisfy both.
- Keep it realistic: something a real person would plausibly ask."""

JSON_TAIL = '\n\nReply with only a JSON object whose "query" field holds the message.'
# Two worked examples, given as earlier turns of the conversation: small models copy a placeholder
# or an inline example, but follow demonstrated exchanges. They differ in form so neither dominates.
EXAMPLES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("The query is about cooking or a specific recipe.", "The query is very short, fewer than ten words."),
        "How long do I boil an egg?",
    ),
    (
        (
            "The query asks a yes-or-no question.",
            "The query is about geography, countries or capitals.",
            "The query uses highly formal and elaborate vocabulary.",
        ),
        "Would you kindly confirm whether Canberra is indeed the capital city of Australia?",
    ),
)

# A JSON object whose string value closed but whose object did not (the model stopped early).
_QUERY_FIELD = re.compile(r'"query"\s*:\s*"((?:[^"\\]|\\.)*)"', re.S)
_TAG = re.compile(r"<query(?:_1)?>\s*(.*?)\s*(?:</query(?:_1)?>|$)", re.S | re.I)
_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:user(?:'s)? (?:message|query)|query|message|prompt)\s*(?:\*\*)?\s*:\s*", re.I)
_LEAK = re.compile(
    r"(must have all of these attributes|do not mention these instructions|reply with (?:only )?a json object|"
    r"the user's message|write a message)",
    re.I,
)
_PLACEHOLDER = re.compile(r"^\s*<[^<>]{0,80}>\s*$")


@dataclass
class GeneratedQuery:
    query: str | None
    error: str | None = None
    raw: str = ""
    usage: RoleUsage = field(default_factory=RoleUsage)

    @property
    def ok(self) -> bool:
        return self.query is not None


def clean_query(text: str) -> str:
    """Strip wrappers models put around a message: tags, a 'Query:' label, surrounding quotes."""
    t = (text or "").strip()
    m = _TAG.search(t)
    if m and m.group(1).strip():
        t = m.group(1).strip()
    t = _PREFIX.sub("", t).strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'`":
        t = t[1:-1].strip()
    return t


def unusable_reason(query: str, max_chars: int) -> str | None:
    """Why a generated query cannot be used, or None when it can."""
    q = query.strip()
    if len(q) < 4:
        return "empty query" if not q else f"query too short: {q!r}"
    if len(q) > max_chars:
        return f"query longer than {max_chars} characters"
    if _PLACEHOLDER.match(q):
        return f"a placeholder instead of a message: {q!r}"
    if any(q.lower().rstrip("?!. ") == ex.lower().rstrip("?") for _, ex in EXAMPLES):
        return "the generator copied the example"
    if _LEAK.search(q):
        return "the generator echoed its instructions"
    if q.lstrip().startswith("{") or '"query"' in q:
        return "leftover JSON instead of a message"
    det = refusal(q)
    if det.hit:
        return f"the generator refused ({det.evidence!r})"
    return None


class QueryGenerator:
    def __init__(self, model: Model, max_query_chars: int = 4000):
        self.model = model
        self.max_query_chars = max_query_chars

    async def generate(self, attributes: Sequence[str], *, seed: int | None = None, sample_index: int = 0) -> GeneratedQuery:
        usage = RoleUsage()
        listing = "\n".join(f"- {a}" for a in attributes)
        prompt: list[dict[str, str]] = []
        for attrs, query in EXAMPLES:
            shown = GENERATOR_PROMPT.format(attributes="\n".join(f"- {a}" for a in attrs)) + JSON_TAIL
            prompt += [{"role": "user", "content": shown}, {"role": "assistant", "content": json.dumps({"query": query})}]
        prompt.append({"role": "user", "content": GENERATOR_PROMPT.format(attributes=listing) + JSON_TAIL})
        hints = {"task": "generate_query", "attributes": list(attributes)}
        try:
            res = await self.model.generate(
                prompt, system=GENERATOR_SYSTEM, json_schema=QUERY_SCHEMA, hints=hints, seed=seed, sample_index=sample_index
            )
            usage.add(res)
            raw = res.text
            value = res.parsed["query"] if isinstance(res.parsed, dict) else None
        except StructuredOutputError as e:
            usage.add_failed()
            raw = e.raw_text
            value = None
            # Fall back to the raw text: a plain message, or a JSON fragment, or <query> tags.
            try:
                obj = extract_json(raw)
                if isinstance(obj, dict) and isinstance(obj.get("query"), str):
                    value = obj["query"]
            except ValueError:
                pass
            if value is None:
                m = _QUERY_FIELD.search(raw or "")
                if m:
                    try:
                        value = json.loads(f'"{m.group(1)}"')
                    except json.JSONDecodeError:
                        value = None
            if value is None:
                value = raw
        except ModelError as e:
            usage.add_failed()
            return GeneratedQuery(None, f"generator call failed: {e}", "", usage)
        query = clean_query(str(value or ""))
        why = unusable_reason(query, self.max_query_chars)
        if why:
            return GeneratedQuery(None, why, raw, usage)
        return GeneratedQuery(query, None, raw, usage)
