"""Load (query, response) pairs from a training mix in any common format, streaming.

Files: JSONL (`.jsonl`, `.ndjson`, also `.gz`), JSON (a list, or an object with a `data`/`rows`/`examples` list),
Parquet, CSV (a `messages` / `conversations` column holds JSON text), and Hugging Face datasets:
`hf:<name>[@<split>]` (streamed with `datasets.load_dataset(..., streaming=True)`; a local dataset folder works
offline) or a directory written by `Dataset.save_to_disk`.

Row schemas, detected per row:
- Tülu: `messages` = [{role, content}, ...] (`system` turns are skipped);
- ShareGPT: `conversations` = [{from: human|gpt|system, value}, ...] (or role/content);
- `prompt`/`response` (also `prompt`/`completion`, `query`/`response`, `question`/`answer`);
- Alpaca: `instruction` (+ optional `input`, appended after a blank line) / `output`.

A pair is a user turn followed directly by an assistant turn. `turns="first"` keeps the first pair of each
row (turn 0), `turns="all"` keeps every pair (turn = its index). Rows without a usable pair are counted by reason
(`LoadReport.skipped_reasons`) with their first row numbers, never fatal. `source` comes from `source_field`
(default `source`, then `dataset`), else the file's stem. `id` is the row's `id` field, else `<stem>:<row>`.
`limit` keeps the first N pairs; `sample` draws N pairs uniformly (reservoir, seeded) and keeps file order.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from chunky.errors import ConfigError, MissingExtraError

Turns = Literal["first", "all"]

USER_ROLES = {"user", "human", "prompter"}
ASSISTANT_ROLES = {"assistant", "gpt", "bot", "model", "chatbot"}
PAIR_FIELDS = [("prompt", "response"), ("prompt", "completion"), ("query", "response"), ("question", "answer")]
MAX_REPORTED_ROWS = 5


@dataclass
class Example:
    id: str
    source: str
    turn: int
    query: str
    response: str


@dataclass
class LoadReport:
    """What the loader read: rows, pairs, and skipped rows by reason (with their first row numbers)."""

    path: str
    rows_read: int = 0
    examples: int = 0
    rows_skipped: int = 0
    skipped_reasons: Counter = field(default_factory=Counter)
    skipped_rows: dict[str, list[int]] = field(default_factory=dict)

    def skip(self, reason: str, row: int) -> None:
        self.rows_skipped += 1
        self.skipped_reasons[reason] += 1
        rows = self.skipped_rows.setdefault(reason, [])
        if len(rows) < MAX_REPORTED_ROWS:
            rows.append(row)

    def describe_skips(self) -> str:
        parts = []
        for reason, n in self.skipped_reasons.most_common():
            rows = ", ".join(str(r) for r in self.skipped_rows.get(reason, []))
            parts.append(f"{n} {reason} (rows {rows}{', ...' if n > MAX_REPORTED_ROWS else ''})")
        return "; ".join(parts)


class RowSkipped(Exception):
    """A row without a usable pair; `reason` is a short machine-readable label."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ---- one row -> pairs --------------------------------------------------------------------------------


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, list):  # content given as parts: [{"type": "text", "text": ...}]
        return "\n".join(_text(p.get("text") if isinstance(p, dict) else p) for p in v)
    return str(v)


def _maybe_json(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            raise RowSkipped("invalid_messages_json") from None
    return v


def _turns_of(messages: Any) -> list[tuple[str, str]]:
    messages = _maybe_json(messages)
    if hasattr(messages, "tolist"):
        messages = messages.tolist()
    if not isinstance(messages, list):
        raise RowSkipped("messages_not_a_list")
    out = []
    for m in messages:
        if not isinstance(m, dict):
            raise RowSkipped("message_not_an_object")
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if role is None:
            raise RowSkipped("message_without_role")
        out.append((str(role).lower(), _text(content)))
    return out


def _pairs_from_turns(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = []
    for (r1, c1), (r2, c2) in zip(turns, turns[1:]):
        if r1 in USER_ROLES and r2 in ASSISTANT_ROLES:
            pairs.append((c1, c2))
    return pairs


def row_pairs(row: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (query, response) pair of a row, in order. Raises RowSkipped when there is none."""
    if "messages" in row and row["messages"] is not None:
        pairs = _pairs_from_turns(_turns_of(row["messages"]))
    elif "conversations" in row and row["conversations"] is not None:
        pairs = _pairs_from_turns(_turns_of(row["conversations"]))
    elif "instruction" in row and "output" in row:
        q = _text(row["instruction"])
        extra = _text(row.get("input"))
        if extra.strip():
            q = f"{q}\n\n{extra}"
        pairs = [(q, _text(row["output"]))]
    else:
        for qf, rf in PAIR_FIELDS:
            if qf in row and rf in row:
                pairs = [(_text(row[qf]), _text(row[rf]))]
                break
        else:
            raise RowSkipped("unknown_schema")
    if not pairs:
        raise RowSkipped("no_user_assistant_pair")
    pairs = [(q, r) for q, r in pairs if q.strip() and r.strip()]
    if not pairs:
        raise RowSkipped("empty_text")
    return pairs


def row_examples(
    row: dict[str, Any], rowno: int, stem: str, source_field: str | None, turns: Turns
) -> list[Example]:
    """The examples of one raw row (see the module docstring). Raises RowSkipped."""
    if not isinstance(row, dict):
        raise RowSkipped("row_not_an_object")
    pairs = row_pairs(row)
    if turns == "first":
        pairs = pairs[:1]
    rid, source = row_identity(row, rowno, stem, source_field)
    return [Example(rid, source, t, q, r) for t, (q, r) in enumerate(pairs)]


def row_identity(row: dict, rowno: int, stem: str, source_field: str | None) -> tuple[str, str]:
    """A row's (id, source): its `id` (else FILE-STEM:ROW) and its source field (else `source`,
    `dataset`, or the file's stem). Raises RowSkipped when --source-field names a missing field."""
    if source_field:
        if source_field not in row:
            raise RowSkipped(f"missing_source_field_{source_field}")
        source = str(row[source_field])
    else:
        source = str(row.get("source") or row.get("dataset") or stem)
    rid = row.get("id")
    rid = str(rid) if rid is not None and rid != "" else f"{stem}:{rowno}"
    return rid, source


# ---- raw rows from each format ---------------------------------------------------------------------


def file_stem(path: str) -> str:
    name = Path(path.rstrip("/")).name
    for suf in (".gz", ".jsonl", ".ndjson", ".json", ".parquet", ".csv"):
        if name.endswith(suf):
            name = name[: -len(suf)]
    return name or "data"


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


_BAD_JSON = object()


def _jsonl_rows(path: Path) -> Iterator[Any]:
    with _open_text(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield _BAD_JSON


def _json_rows(path: Path) -> Iterator[Any]:
    with _open_text(path) as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if isinstance(data, dict):
        for key in ("data", "rows", "examples", "train"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            raise ConfigError(f"{path}: a JSON file must hold a list of rows, or an object with a 'data' list")
    if not isinstance(data, list):
        raise ConfigError(f"{path}: a JSON file must hold a list of rows")
    yield from data


def _parquet_rows(path: Path) -> Iterator[Any]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError on a corrupt file
        raise ConfigError(f"{path}: not a readable Parquet file ({e})") from None
    for batch in pf.iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def _csv_rows(path: Path) -> Iterator[Any]:
    import csv

    with _open_text(path) as fh:
        yield from csv.DictReader(fh)


def _hf_rows(spec: str) -> Iterator[Any]:
    try:
        import datasets
    except ImportError:
        raise MissingExtraError("loading Hugging Face datasets", "hf", "datasets") from None
    p = Path(spec)
    if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "state.json").exists() or (p / "dataset_dict.json").exists()):
        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
        yield from ds
        return
    name = spec[3:] if spec.startswith("hf:") else spec
    name, _, split = name.partition("@")
    try:
        ds = datasets.load_dataset(name, split=split or "train", streaming=True)
    except Exception as e:  # network, missing dataset, bad split: one clear line
        raise ConfigError(f"hf:{name}: cannot load the Hugging Face dataset ({type(e).__name__}: {e})") from None
    yield from ds


def raw_rows(path: str | Path) -> Iterator[Any]:
    """The raw rows of a data file / dataset, in order (a malformed JSONL line yields a sentinel)."""
    s = str(path)
    if s.startswith("hf:"):
        yield from _hf_rows(s)
        return
    p = Path(s)
    if not p.exists():
        raise ConfigError(f"{p}: no such file or directory")
    if p.is_dir():
        yield from _hf_rows(s)
        return
    name = p.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        yield from _jsonl_rows(p)
    elif name.endswith((".json", ".json.gz")):
        # A .json file may also be JSON lines; sniff the first non-blank character after a list check.
        with _open_text(p) as fh:
            head = fh.read(4096).lstrip()
        if head.startswith("["):
            yield from _json_rows(p)
        elif head.startswith("{") and "\n{" in head:
            yield from _jsonl_rows(p)
        else:
            yield from _json_rows(p)
    elif name.endswith(".parquet"):
        yield from _parquet_rows(p)
    elif name.endswith((".csv", ".csv.gz")):
        yield from _csv_rows(p)
    else:
        raise ConfigError(f"{p}: unknown data format (use .jsonl[.gz], .json, .parquet, .csv, hf:<name>, or a dataset folder)")


# ---- checks before a build ------------------------------------------------------------------------------

PREFLIGHT_ROWS = 1000


def check_data(path: str | Path, *, source_field: str | None = None, rows: int = PREFLIGHT_ROWS) -> None:
    """Fail fast, before any work, on data that cannot give an index: a missing or empty file, a file with no
    rows, or a `--source-field` that none of its first `rows` rows has. Reads at most `rows` rows."""
    s = str(path)
    if s.startswith("hf:"):
        return  # streamed from the hub or a local dataset; its first rows are read by the load stage
    p = Path(s)
    if not p.exists():
        raise ConfigError(f"{p}: no such file or directory")
    if p.is_file() and p.stat().st_size == 0:
        raise ConfigError(f"{p}: the file is empty")
    seen = 0
    fields: set[str] = set()
    for row in raw_rows(p):
        seen += 1
        if isinstance(row, dict):
            if source_field is None or source_field in row:
                return
            fields.update(map(str, row))
        if seen >= rows:
            break
    if seen == 0:
        raise ConfigError(f"{p}: the file has no rows")
    if source_field is not None and fields:
        raise ConfigError(
            f"{p}: --source-field {source_field}: no such field in the first {seen} rows "
            f"(their fields: {', '.join(sorted(fields)[:12])})"
        )


def another_source(path: str | Path, source: str, *, source_field: str | None = None, rows: int = 300_000) -> str | None:
    """A source other than `source` named by one of the first `rows` rows of the data, or None (for the
    one-source warning of `--limit`: mixes are often sorted by source)."""
    s = str(path)
    if s.startswith("hf:") or not Path(s).exists():
        return None
    stem = file_stem(s)
    for rowno, row in enumerate(raw_rows(s), start=1):
        if rowno > rows:
            break
        if not isinstance(row, dict):
            continue
        try:
            _, src = row_identity(row, rowno, stem, source_field)
        except RowSkipped:
            continue
        if src != source:
            return src
    return None


# ---- the public iterator ------------------------------------------------------------------------------


def iter_examples(
    path: str | Path,
    *,
    source_field: str | None = None,
    turns: Turns = "first",
    report: LoadReport | None = None,
) -> Iterator[Example]:
    """Stream the examples of a data file; bad rows are counted into `report`."""
    if turns not in ("first", "all"):
        raise ConfigError(f"--turns must be 'first' or 'all', not {turns!r}")
    report = report if report is not None else LoadReport(str(path))
    stem = file_stem(str(path))
    for rowno, row in enumerate(raw_rows(path), start=1):
        report.rows_read += 1
        if row is _BAD_JSON:
            report.skip("invalid_json", rowno)
            continue
        try:
            exs = row_examples(row, rowno, stem, source_field, turns)
        except RowSkipped as e:
            report.skip(e.reason, rowno)
            continue
        report.examples += len(exs)
        yield from exs


def load_examples(
    path: str | Path,
    *,
    source_field: str | None = None,
    turns: Turns = "first",
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    report: LoadReport | None = None,
) -> list[Example]:
    """All examples (after `limit` / `sample`), in file order."""
    report = report if report is not None else LoadReport(str(path))
    it = iter_examples(path, source_field=source_field, turns=turns, report=report)
    if sample is not None:
        if sample < 1:
            raise ConfigError(f"--sample must be at least 1, not {sample}")
        out = reservoir(it, sample, seed, limit=limit)
    else:
        out = []
        if limit is None or limit > 0:
            for ex in it:
                out.append(ex)
                if limit is not None and len(out) >= limit:
                    break
    report.examples = len(out)
    return out


def reservoir(items: Iterable[Example], k: int, seed: int, limit: int | None = None) -> list[Example]:
    """A uniform sample of k items (Algorithm R), returned in their original order."""
    rng = random.Random(seed)
    res: list[tuple[int, Example]] = []
    for i, ex in enumerate(items):
        if limit is not None and i >= limit:
            break
        if len(res) < k:
            res.append((i, ex))
        else:
            j = rng.randint(0, i)
            if j < k:
                res[j] = (i, ex)
    res.sort(key=lambda t: t[0])
    return [ex for _, ex in res]
