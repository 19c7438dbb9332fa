"""Structured output: pull JSON out of model text and validate it against a JSON schema."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """The first JSON value in `text` (bare, fenced, or embedded in prose). Raises ValueError."""
    t = (text or "").strip()
    if not t:
        raise ValueError("empty output")
    try:
        return json.loads(t)
    except json.JSONDecodeError:
        pass
    for m in _FENCE.finditer(t):
        try:
            return json.loads(m.group(1).strip())
        except json.JSONDecodeError:
            continue
    dec = json.JSONDecoder()
    for i, ch in enumerate(t):
        if ch in "{[":
            try:
                value, _ = dec.raw_decode(t[i:])
                return value
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON value found in the output")


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    # jsonschema.validate() re-checks the schema on every call, which dominated fast (mock) runs.
    import jsonschema

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(value: Any, schema: dict[str, Any]) -> str | None:
    """None if `value` matches `schema`, else a one-line description of the first problem."""
    import jsonschema

    # Same error choice as jsonschema.validate (best_match), without re-checking the schema each call.
    e = jsonschema.exceptions.best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value))
    if e is not None:
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        return f"{where}: {e.message}"
    return None


def parse_structured(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """(value, None) when `text` holds JSON valid against `schema`, else (None, problem)."""
    try:
        value = extract_json(text)
    except ValueError as e:
        return None, str(e)
    problem = validate(value, schema)
    return (value, None) if problem is None else (None, problem)


def repair_prompt(problem: str, schema: dict[str, Any]) -> str:
    return (
        f"Your previous answer was not valid: {problem}. Reply again with only a JSON object that "
        f"matches this JSON schema, and nothing else:\n{json.dumps(schema)}"
    )


def schema_instruction(schema: dict[str, Any]) -> str:
    """Appended to the prompt for providers with no native constrained decoding."""
    return "Reply with only a JSON object matching this JSON schema, and nothing else:\n" + json.dumps(schema)
