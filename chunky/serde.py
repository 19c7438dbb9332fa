"""One way to turn chunky's dataclass records into plain dicts (for JSON) and back.

`to_dict(record)` is `dataclasses.asdict`: the field names and order are the file format, so every file chunky
wrote before keeps its bytes. `from_dict(Record, data)` validates with pydantic against the record's type hints
(nested records, lists, tuples, `X | None`, dicts), so a hand-written field copy is never needed:

- keys the record does not know are ignored, so files from older and newer versions still load;
- a missing required field or a value of the wrong type raises one `ConfigError` naming the record type and the
  field (`where` adds the file / line in front);
- values are coerced the lax pydantic way (a JSON list becomes a tuple field, an int a float field).

A record whose file needs real work before that (a renamed legacy key, a default that depends on the version)
keeps a small `from_dict` classmethod that does only that work and then calls `serde.from_dict`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import pydantic

from chunky.errors import ConfigError

T = TypeVar("T")


def to_dict(record: object) -> dict[str, Any]:
    """The record as nested plain dicts/lists, field order kept (what the record's JSON file holds)."""
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"to_dict needs a dataclass instance, not {type(record).__name__}")
    return dataclasses.asdict(record)


def from_dict(cls: type[T], data: object, *, where: str = "") -> T:
    """Build `cls` (a dataclass) from `data` (its `to_dict` form, maybe from an older/newer file).

    `where` (e.g. "runs/x/suite.json" or "cases.jsonl line 4") starts the error message.
    """
    try:
        return _adapter(cls).validate_python(data)
    except pydantic.ValidationError as e:
        raise ConfigError(_message(cls, e, where)) from None


# Building the validator walks every nested type once; records are loaded by the thousand (cases, samples),
# so keep one per class. Pydantic's default for dataclasses already ignores unknown keys.
_ADAPTERS: dict[type, pydantic.TypeAdapter] = {}


def _adapter(cls: type[T]) -> pydantic.TypeAdapter[T]:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    return adapter


def _message(cls: type, error: pydantic.ValidationError, where: str) -> str:
    """One line: `<where>: bad <Record>: field 'a.b[0]': <reason>` for the first problem (and how many more)."""
    first = error.errors(include_url=False)[0]
    path = _field_path(first["loc"])
    problem = "missing" if first["type"] == "missing" else f"{first['msg']} (got {_short(first.get('input'))})"
    text = f"bad {cls.__name__}: " + (f"field '{path}': " if path else "") + problem
    more = error.error_count() - 1
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return f"{where}: {text}" if where else text


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
