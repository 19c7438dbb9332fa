"""The LLM channel: n short attribute sentences per side of each pair, via structured output.

Calls go through `Model.generate` (cache, retries, concurrency limit, accounting all live there). Progress is
kept per example in a small SQLite table (`done`): a rerun after a kill skips finished examples, and an example
whose extraction failed is recorded in `errors` and retried on the next run (never stored half-done).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chunky.errors import ModelError
from chunky.models import Model
from chunky.models.accounting import cost_of
from chunky.models.registry import parse_spec

DEFAULT_N = 10
# Texts are cut before prompting: the attributes describe style and content, which the first few
# thousand characters show; it also bounds the cost of a pathological row.
MAX_TEXT_CHARS = 4000
# Output budget per call: ~15 tokens per sentence plus JSON overhead.
TOKENS_PER_ATTRIBUTE = 20

SYSTEM = (
    "You describe texts for a dataset analysis. You list short, specific, self-contained attributes of a text, "
    "each one sentence. Cover its topic, task, format, style, tone, language, length and structure."
)
PROMPTS = {
    "query": (
        "Here is a user query sent to an AI assistant.\n\n<query>\n{text}\n</query>\n\n"
        "List exactly {n} attributes of this query. Each is one short sentence that starts with \"The query\", "
        "for example \"The query uses highly formal vocabulary.\" or \"The query asks for a yes/no answer.\". "
        "Answer as JSON: {{\"attributes\": [...]}}."
    ),
    "response": (
        "Here is a response written by an AI assistant.\n\n<response>\n{text}\n</response>\n\n"
        "List exactly {n} attributes of this response. Each is one short sentence that starts with "
        "\"The response\", for example \"The response provides a Python code example.\" or "
        "\"The response ends with 'I hope it is correct'.\". Answer as JSON: {{\"attributes\": [...]}}."
    ),
}


def attribute_schema(n: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "attributes": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": n}
        },
        "required": ["attributes"],
    }


def build_prompt(side: str, text: str, n: int) -> str:
    return PROMPTS[side].format(text=text[:MAX_TEXT_CHARS], n=n)


def clean_attributes(items: Sequence[object], n: int) -> list[str]:
    """Strip, collapse whitespace, drop empty and duplicate sentences, keep at most n."""
    out: list[str] = []
    seen: set[str] = set()
    for it in items:
        s = " ".join(str(it).split()).strip(" -*•\"'")
        s = re.sub(r"^\d+[.)]\s*", "", s)
        if not s or len(s) > 300:
            continue
        key = s.lower().rstrip(".")
        if key in seen:
            continue
        seen.add(key)
        out.append(s)
        if len(out) >= n:
            break
    return out


async def extract_side(model: Model, side: str, text: str, n: int = DEFAULT_N) -> list[str]:
    """The attributes of one text. Raises ModelError when the model returns none usable."""
    res = await model.generate(
        build_prompt(side, text, n),
        system=SYSTEM,
        json_schema=attribute_schema(n),
        hints={"task": "extract_attributes", "side": side, "text": text[:MAX_TEXT_CHARS], "n": n},
        temperature=0.0,
        max_tokens=n * TOKENS_PER_ATTRIBUTE + 40,
    )
    attrs = clean_attributes((res.parsed or {}).get("attributes", []), n)
    if not attrs:
        raise ModelError(f"extractor {model.name} returned no usable {side} attributes")
    return attrs


@dataclass
class ExtractedExample:
    example_id: int
    query: list[str]
    response: list[str]


class ExtractionStore:
    """SQLite (WAL) record of finished and failed examples; safe against SIGKILL between commits."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(self.path)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS done (example_id INTEGER PRIMARY KEY, query TEXT NOT NULL, response TEXT NOT NULL)"
        )
        self.con.execute("CREATE TABLE IF NOT EXISTS errors (example_id INTEGER PRIMARY KEY, error TEXT NOT NULL)")
        self.con.commit()

    def done_ids(self) -> set[int]:
        return {r[0] for r in self.con.execute("SELECT example_id FROM done")}

    def save(self, results: Iterable[ExtractedExample], errors: dict[int, str]) -> None:
        with self.con:
            for r in results:
                self.con.execute(
                    "INSERT OR REPLACE INTO done VALUES (?, ?, ?)",
                    (r.example_id, json.dumps(r.query, ensure_ascii=False), json.dumps(r.response, ensure_ascii=False)),
                )
                self.con.execute("DELETE FROM errors WHERE example_id = ?", (r.example_id,))
            for eid, err in errors.items():
                self.con.execute("INSERT OR REPLACE INTO errors VALUES (?, ?)", (eid, err[:500]))

    def errors(self) -> dict[int, str]:
        return {r[0]: r[1] for r in self.con.execute("SELECT example_id, error FROM errors ORDER BY example_id")}

    def all_done(self) -> list[ExtractedExample]:
        return [
            ExtractedExample(eid, json.loads(q), json.loads(r))
            for eid, q, r in self.con.execute("SELECT example_id, query, response FROM done ORDER BY example_id")
        ]

    def close(self) -> None:
        self.con.close()


async def extract_examples(
    model: Model,
    examples: Sequence[tuple[int, str, str]],
    store: ExtractionStore,
    *,
    n: int = DEFAULT_N,
    commit_every: int = 32,
    on_done: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Extract both sides of each (example_id, query, response) not yet done; returns (done, failed).

    All calls are issued at once and throttled by the model's concurrency limit; finished examples are
    committed every `commit_every`, so a kill loses at most that many.
    """
    todo_ids = store.done_ids()
    todo = [e for e in examples if e[0] not in todo_ids]
    pending: list[ExtractedExample] = []
    errors: dict[int, str] = {}
    done = failed = 0

    async def one(eid: int, q: str, r: str) -> tuple[int, ExtractedExample | None, str | None]:
        try:
            qa, ra = await asyncio.gather(extract_side(model, "query", q, n), extract_side(model, "response", r, n))
            return eid, ExtractedExample(eid, qa, ra), None
        except ModelError as e:
            return eid, None, str(e)

    # Bounded window of in-flight examples keeps memory flat on million-row mixes.
    window = max(4, 4 * int(model.max_concurrency or 1))
    it = iter(todo)
    running: set[asyncio.Task] = set()

    def refill() -> None:
        while len(running) < window:
            nxt = next(it, None)
            if nxt is None:
                return
            running.add(asyncio.ensure_future(one(*nxt)))

    refill()
    try:
        while running:
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in finished:
                running.discard(t)
                eid, res, err = t.result()
                if res is not None:
                    pending.append(res)
                    done += 1
                else:
                    errors[eid] = err or "unknown error"
                    failed += 1
                if on_done:
                    on_done(1)
            if len(pending) + len(errors) >= commit_every:
                store.save(pending, errors)
                pending, errors = [], {}
            refill()
    finally:
        for t in running:
            t.cancel()
        store.save(pending, errors)
    return done, failed


@dataclass
class DryRunEstimate:
    examples: int
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    model: str

    def describe(self) -> str:
        if self.cost_usd is None:
            cost = "unknown (no list price for this model)"
        else:
            cost = f"${self.cost_usd:.4f}" if self.cost_usd < 1 else f"${self.cost_usd:,.2f}"
        return (
            f"LLM extraction with {self.model}: {self.examples} examples → {self.calls} calls, "
            f"~{self.input_tokens:,} input + ~{self.output_tokens:,} output tokens, estimated cost {cost}"
        )


def estimate(model_spec: str, examples: Sequence[tuple[int, str, str]], n: int = DEFAULT_N) -> DryRunEstimate:
    """Calls, tokens (≈ 4 characters per token) and list-price cost of extracting `examples`."""
    spec = parse_spec(model_spec)
    overhead = (len(SYSTEM) + len(PROMPTS["query"])) // 4
    inp = 0
    for _, q, r in examples:
        inp += 2 * overhead + (min(len(q), MAX_TEXT_CHARS) + min(len(r), MAX_TEXT_CHARS)) // 4
    out = len(examples) * 2 * (n * 15 + 10)
    return DryRunEstimate(
        examples=len(examples),
        calls=2 * len(examples),
        input_tokens=inp,
        output_tokens=out,
        cost_usd=cost_of(spec.provider, spec.model, inp, out),
        model=str(spec),
    )
