"""Evaluation sets for steering: load prompts (and optional reference answers) from JSONL, JSON,
Parquet, CSV, a saved Hugging Face dataset, a hub dataset, or one of chunky's built-in sets; and
generate the built-in "Is a+b=c?" sets of the worked example.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chunky import serde
from chunky.errors import ChunkyError, ConfigError, MissingExtraError

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "data" / "eval"

PROMPT_FIELDS = ("prompt", "query", "question", "input", "instruction", "problem", "text", "messages")
REFERENCE_FIELDS = ("reference", "answer", "target", "label", "gold", "solution")


@dataclass(frozen=True)
class EvalExample:
    """One evaluation prompt. `meta` keeps the row's other scalar fields (e.g. the grid's a, b)."""

    id: str
    prompt: str
    reference: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, "reference": self.reference, "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalExample:
        # Real work: eval files may number their ids (1, 2, ...); chunky's ids are text.
        return serde.from_dict(cls, {**d, "id": str(d["id"])} if "id" in d else d)


def builtin_sets() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.jsonl"))


def _first_user(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    return None


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def examples_from_rows(
    rows: Iterable[dict[str, Any]],
    *,
    where: str,
    prompt_field: str | None = None,
    reference_field: str | None = None,
    limit: int | None = None,
) -> list[EvalExample]:
    """Turn raw records into EvalExamples. `where` names the source in error messages."""
    out: list[EvalExample] = []
    seen: set[str] = set()
    pf_used: str | None = prompt_field
    for i, row in enumerate(rows):
        if limit is not None and len(out) >= limit:
            break
        row_no = i + 1
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: row {row_no} is not an object")
        if pf_used is None:
            pf_used = next((f for f in PROMPT_FIELDS if f in row), None)
            if pf_used is None:
                raise ConfigError(
                    f"{where}: row {row_no} has no prompt field (looked for {', '.join(PROMPT_FIELDS)}; "
                    f"use --prompt-field)"
                )
        raw = row.get(pf_used)
        prompt = _first_user(raw) if pf_used == "messages" or isinstance(raw, list) else raw
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"{where}: row {row_no}: field '{pf_used}' is missing or not a non-empty string")
        rf = reference_field or next((f for f in REFERENCE_FIELDS if f in row), None)
        if reference_field and reference_field not in row:
            raise ConfigError(f"{where}: row {row_no} has no field '{reference_field}'")
        ref = row.get(rf) if rf else None
        ref_s = None if ref is None else str(ref)
        ex_id = str(row["id"]) if row.get("id") not in (None, "") else str(i)
        if ex_id in seen:
            raise ConfigError(f"{where}: row {row_no}: duplicate id '{ex_id}'")
        seen.add(ex_id)
        meta = {
            k: v for k, v in row.items() if k not in (pf_used, rf, "id", "messages") and _scalar(v)
        }
        out.append(EvalExample(ex_id, prompt, ref_s, meta))
    if not out:
        raise ConfigError(f"{where}: no examples")
    return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
    return rows


def load_rows(source: str) -> tuple[list[dict[str, Any]], str]:
    """Raw records of an evaluation source, and its display name."""
    if source.startswith("hf:"):
        name, _, split = source[3:].partition(":")
        try:
            import datasets
        except ImportError:
            raise MissingExtraError("loading a Hugging Face dataset", "hf", "datasets") from None
        try:
            ds = datasets.load_dataset(name, split=split or "test")
        except Exception as e:  # hub errors come in many types; the message is what the user needs
            raise ChunkyError(f"{source}: cannot load the dataset: {e}") from None
        return [dict(r) for r in ds], source
    path = Path(source).expanduser()
    if not path.exists():
        builtin = BUILTIN_DIR / f"{source}.jsonl"
        if builtin.exists():
            return _read_jsonl(builtin), f"builtin:{source}"
        raise ConfigError(
            f"{source}: no such file, and not a built-in evaluation set (built-in: {', '.join(builtin_sets())})"
        )
    if path.is_dir():
        if not ((path / "dataset_info.json").exists() or (path / "state.json").exists()):
            raise ConfigError(f"{path}: a directory, but not a dataset saved with datasets' save_to_disk")
        try:
            import datasets
        except ImportError:
            raise MissingExtraError("loading a saved Hugging Face dataset", "hf", "datasets") from None
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            split = "test" if "test" in ds else next(iter(ds))
            ds = ds[split]
        return [dict(r) for r in ds], str(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path), str(path)
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a JSON list of records")
        return data, str(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist(), str(path)
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path).to_pylist(), str(path)
    raise ConfigError(f"{path}: unknown format '{suffix}' (use .jsonl, .json, .parquet, .csv or a saved dataset)")


def load_eval(
    source: str,
    *,
    prompt_field: str | None = None,
    reference_field: str | None = None,
    limit: int | None = None,
) -> tuple[list[EvalExample], str]:
    rows, name = load_rows(source)
    return (
        examples_from_rows(rows, where=name, prompt_field=prompt_field, reference_field=reference_field, limit=limit),
        name,
    )


# --- built-in sets of the worked example (paper App. B.4) ---------------------------------------


def sums_grid(lo: int = 1, hi: int = 9) -> list[dict[str, Any]]:
    """Every true sum "Is a+b=c?" for a, b in [lo, hi] (the paper's Figure 25 grid). `false_prompt` is the
    same question with a wrong sum (c+1): `--transform field:false_prompt` is the control that tells a
    "No" habit from knowing the answer."""
    return [
        {"id": f"sum-{a}-{b}", "prompt": f"Is {a}+{b}={a + b}?", "reference": "Yes", "a": a, "b": b,
         "false_prompt": f"Is {a}+{b}={a + b + 1}?"}
        for a in range(lo, hi + 1)
        for b in range(lo, hi + 1)
    ]


# Rewrites of one true sum (the paper's Table 2 style): punctuation, spacing, wording, framing.
SUM_REWRITES: tuple[str, ...] = (
    "Is 2+5=7?",
    "is 2+5=7?",
    "Is 2 + 5 = 7?",
    "Is 2+5=7",
    "Is 2+5=7.",
    "Is 2+5=7!",
    "Is 2+5=7??",
    "Is 2+5==7?",
    "2+5=7?",
    "Is it true that 2+5=7?",
    "Is it correct that 2+5=7?",
    "Is 2+5 equal to 7?",
    "Does 2+5 equal 7?",
    "Does 2 plus 5 make 7?",
    "Is two plus five equal to seven?",
    "Is 2+5=7 true?",
    "Is 2+5=7 correct?",
    "Is the statement 2+5=7 true?",
    "Is 2+5=7? Answer yes or no.",
    "Is 2+5=7? Please confirm.",
    "Quick check: is 2+5=7?",
    "Can you verify that 2+5=7?",
    "Am I right that 2+5=7?",
    "I think 2+5=7. Is that right?",
    "My teacher says 2+5=7. Is she right?",
    "Is (2+5)=7?",
    "Is 2.0+5=7?",
    "Isn't 2+5=7?",
    "Would you say 2+5=7?",
    "True or false: 2+5=7.",
)


def sum_rewrites() -> list[dict[str, Any]]:
    return [{"id": f"rewrite-{i:02d}", "prompt": p, "reference": "Yes"} for i, p in enumerate(SUM_REWRITES)]


def write_builtin_sets(directory: Path = BUILTIN_DIR) -> list[Path]:
    """(Re)write the built-in JSONL files from their generators."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, rows in (("sums-grid", sums_grid()), ("sums-rewrites", sum_rewrites())):
        p = directory / f"{name}.jsonl"
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        out.append(p)
    return out
