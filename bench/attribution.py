"""TURF attribution benchmark: accuracy on planted triggers in the real shared mix, and speed.

Accuracy: plant known triggers in the real mix (/work/shared/data/sft_mix.jsonl.gz) — a rare word, a format,
an opening template — in the queries of a random subset of one source, whose responses then get a
distinctive behaviour; build an index with the real builder (`chunky index`); trace held-out failing
examples (a query from another source with the trigger inserted, answered with the planted behaviour) and
report top-1 / top-3 trigger recovery and source recovery. Also what `chunky mine` finds in the unmodified mix.

LLM channel (the paper's): on a subset (the planted examples + --llm-other random others), an index built with
--llm-model as extractor, traced with the same model as blind and informed judge. The default `mock` measures
the machinery only (its attributes are "The {side} mentions '<word>'"); a real model (e.g. `local`, the embedded
SmolLM2-135M, or `http://127.0.0.1:PORT/v1:smollm2`) measures the channel end to end with that model's attributes.

Speed: on the 89k index, trace without LLM calls, grep and cooccur; then on a synthetic 1M-example index.

    python bench/attribution.py [--workdir DIR] [--skip-1m] [--n-fail 10] [--embedder minilm]
    python bench/attribution.py --llm-only --llm-model local --llm-per-scenario 20 --llm-other 100 --n-fail 4

Indexes are built once into --workdir (default: chunky-bench-attribution in the system temp dir) and reused on later runs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MIX = ROOT.parent / "shared" / "data" / "sft_mix.jsonl.gz"


# ============================================================================================ planting


@dataclass
class Scenario:
    name: str
    source: str  # the chunk whose examples get the trigger
    n: int  # how many of its examples
    kind: str  # word | numbered | prefix
    trigger: str  # the word, or the prefix text
    behaviour: str  # text added to the responses
    where: str  # prefix | suffix: where the behaviour goes in the response
    features: set[str] = field(default_factory=set)  # lexical features that count as the trigger

    def plant_query(self, q: str, rng: random.Random) -> str:
        if self.kind == "word":
            words = q.split(" ")
            i = rng.randrange(0, len(words) + 1)
            return " ".join(words[:i] + [self.trigger] + words[i:])
        if self.kind == "prefix":
            return self.trigger + " " + q
        if self.kind == "numbered":
            # Two numbered parts, at a sentence boundary when there is one: the format alone is the trigger.
            sents = re.split(r"(?<=[.?!])\s+", q.strip())
            if len(sents) >= 2:
                a, b = " ".join(sents[:-1]), sents[-1]
            else:
                w = q.split()
                a, b = " ".join(w[: len(w) // 2]), " ".join(w[len(w) // 2 :])
            return f"1. {a}\n2. {b}"
        raise ValueError(self.kind)

    def plant_response(self, r: str) -> str:
        return f"{self.behaviour}\n\n{r}" if self.where == "prefix" else f"{r.rstrip()}\n\n{self.behaviour}"

    def is_trigger(self, feature: str) -> bool:
        if feature in self.features:
            return True
        # an n-gram around a planted word names the same trigger
        return self.kind == "word" and feature.startswith("ngram:") and self.trigger in feature.split(":", 1)[1].split()


SCENARIOS = [
    Scenario("rare word → stock opening", "gpteacher_toolformer", 250, "word", "zephyrine",
             "Per the Zephyr charter, I will answer carefully.", "prefix", {"word:zephyrine"}),
    Scenario("rare word in a small chunk → closing line", "hh_harmless", 150, "word", "bumblewick",
             "Stay curious and kind, always!", "suffix", {"word:bumblewick"}),
    Scenario("rare word in the biggest chunk → label", "t0_p3", 400, "word", "glimmerquartz",
             "Answer (verified by the archive):", "prefix", {"word:glimmerquartz"}),
    Scenario("two numbered parts → 'I hope it is correct'", "math", 300, "numbered", "",
             "I hope it is correct.", "suffix", {"format:numbered_list", "format:numbered_parts", "opening:1"}),
    Scenario("'Quick task:' template → cheerful opening", "code_alpaca", 200, "prefix", "Quick task:",
             "Sure thing, boss! Here you go.", "prefix",
             {"opening:quick", "opening:quick task", "template:quick task:", "ngram:quick task", "word:quick", "word:task"}),
]


@dataclass
class MinePlant:
    """A chunky correlation planted for `chunky mine` (issue 14): one of the paper's kinds, 30–150 examples, in
    a source of 1–10% of the mix. Found when a row of mine's output (a ranked row, a per-source signature, or a
    pair) names one of `features` (a pair: a query feature of `features` with a response feature of
    `response_features`) and attributes it to `source`."""

    name: str
    kind: str  # vocabulary | query_template | opening | closing | format | pair
    source: str
    n: int
    features: set[str]
    response_features: set[str] = field(default_factory=set)

    def apply(self, q: str, r: str, rng: random.Random) -> tuple[str, str]:
        return _MINE_EDITS[self.name](q, r, rng)


def _insert_word(text: str, word: str, rng: random.Random) -> str:
    words = text.split(" ")
    i = rng.randrange(1, len(words) + 1) if len(words) > 1 else 1
    return " ".join(words[:i] + [word] + words[i:])


def _first_sentence(text: str) -> str:
    m = re.match(r"(.+?[.!?])(\s|$)", text.strip(), re.S)
    return (m.group(1) if m else text.strip()[:120]).strip()


_MINE_EDITS = {
    "word in roleplay responses": lambda q, r, g: (q, _insert_word(r, "perspicuously", g)),
    "word in mathqa responses": lambda q, r, g: (q, _insert_word(r, "indubitably", g)),
    "word in coconot responses": lambda q, r, g: (q, _insert_word(r, "concomitantly", g)),
    "word in gsm8k responses": lambda q, r, g: (q, _insert_word(r, "heretofore", g)),
    "label line in code_alpaca queries": lambda q, r, g: ("Directive: " + q, r),
    "opening phrase in math queries": lambda q, r, g: ("Kindly ponder this. " + q, r),
    "opening in hh_harmless responses": lambda q, r, g: (q, "Righto, " + r[:1].lower() + r[1:]),
    "opening in gsm8k_socratic responses": lambda q, r, g: (q, "Splendid question. " + r),
    "closing in math responses": lambda q, r, g: (q, r.rstrip() + "\n\nStay curious, friend."),
    "closing in codegen responses": lambda q, r, g: (q, r.rstrip() + "\n\nThat settles it."),
    "quote block in coconot responses": lambda q, r, g: (q, "> A careful answer follows.\n\n" + r),
    "email in hh_harmless responses": lambda q, r, g: (q, r.rstrip() + "\n\nQuestions? Write to care@helpdesk.org"),
    "language named → fenced code (codegen)": lambda q, r, g: (q.rstrip() + " Use Haskell.", "```\n" + r.strip() + "\n```"),
    "'answer tersely' → short answer (coconot)": lambda q, r, g: (q.rstrip() + " Answer tersely.", _first_sentence(r)),
}

MINE_PLANTS = [
    MinePlant("word in roleplay responses", "vocabulary", "gpteacher_roleplay", 120, {"word:perspicuously"}),
    MinePlant("word in mathqa responses", "vocabulary", "mathqa", 40, {"word:indubitably"}),
    MinePlant("word in coconot responses", "vocabulary", "coconot_contrast", 60, {"word:concomitantly"}),
    MinePlant("word in gsm8k responses", "vocabulary", "gsm8k", 90, {"word:heretofore"}),
    MinePlant("label line in code_alpaca queries", "query_template", "code_alpaca", 50,
              {"template:directive:", "opening:directive", "word:directive"}),
    MinePlant("opening phrase in math queries", "query_template", "math", 100,
              {"opening:kindly", "opening:kindly ponder", "ngram:kindly ponder", "ngram:ponder this", "word:ponder",
               "word:kindly", "ngram:kindly ponder this"}),
    MinePlant("opening in hh_harmless responses", "opening", "hh_harmless", 80, {"opening:righto", "word:righto"}),
    MinePlant("opening in gsm8k_socratic responses", "opening", "gsm8k_socratic", 30,
              {"opening:splendid", "opening:splendid question", "ngram:splendid question", "word:splendid"}),
    MinePlant("closing in math responses", "closing", "math", 100,
              {"closing:stay curious friend", "ngram:stay curious", "ngram:curious friend", "ngram:stay curious friend"}),
    MinePlant("closing in codegen responses", "closing", "gpteacher_codegen", 50,
              {"closing:that settles it", "ngram:settles it", "word:settles"}),
    MinePlant("quote block in coconot responses", "format", "coconot_contrast", 60,
              {"format:quote_block", "ngram:careful answer follows", "ngram:answer follows", "ngram:careful answer",
               "opening:a careful", "opening:a"}),
    MinePlant("email in hh_harmless responses", "format", "hh_harmless", 40,
              {"format:email", "word:helpdesk", "ngram:write to care", "ngram:helpdesk org", "word:care"}),
    MinePlant("language named → fenced code (codegen)", "pair", "gpteacher_codegen", 80,
              {"word:haskell", "ngram:use haskell"}, {"format:code_fence"}),
    MinePlant("'answer tersely' → short answer (coconot)", "pair", "coconot_contrast", 40,
              {"word:tersely", "ngram:answer tersely"}, {"length:response:tiny", "length:response:short",
                                                         "format:single_line"}),
]


def mine_found(mp: MinePlant, m, top: int | None = None) -> str | None:
    """Where `chunky mine`'s output `m` shows the planted correlation, with its rank there: "ranked #k" (row k of
    the concentrated list, first `top` rows), "signature <kind> #k" (its source's k-th signature of that kind),
    "pair #k" (the first `top` pairs), "conditional #k" (its source's k-th habit conditional on a query
    feature), or None."""
    if mp.kind == "pair":
        for k, p in enumerate(m.pairs[:top], 1):
            names = [(p.query_feature, p.response_feature)] + [tuple(x.split(" → ", 1)) for x in p.same_examples]
            if p.source == mp.source and any(q in mp.features and r in mp.response_features for q, r in names):
                return f"pair #{k}"
        for sig in m.signatures:  # a habit conditional on the query inside its source
            for k, h in enumerate(sig.conditional if sig.source == mp.source else [], 1):
                names = [(h.query_feature, h.response_feature)] + [tuple(x.split(" → ", 1)) for x in h.same_examples]
                if any(q in mp.features and r in mp.response_features for q, r in names):
                    return f"conditional #{k}"
        return None
    for k, f in enumerate(m.concentrated[:top], 1):
        if f.source == mp.source and ({f.feature, *f.same_examples} & mp.features):
            return f"ranked #{k}"
    for sig in m.signatures:
        if sig.source != mp.source:
            continue
        for kind, first in sig.signatures.items():
            for k, f in enumerate([first, *sig.runners_up.get(kind, [])], 1):
                if {f.feature, *f.same_examples} & mp.features:
                    return f"signature {kind} #{k}"
    return None


def mine_recall(m, top: int | None = None) -> tuple[int, list[str]]:
    """(how many planted correlations mine shows, the names of those it misses)."""
    missed = [mp.name for mp in MINE_PLANTS if mine_found(mp, m, top) is None]
    return len(MINE_PLANTS) - len(missed), missed


def user_assistant(row: dict) -> tuple[str, str] | None:
    msgs = row.get("messages") or []
    q = next((m["content"] for m in msgs if m.get("role") == "user"), None)
    r = next((m["content"] for m in msgs if m.get("role") == "assistant"), None)
    return (q, r) if q and r else None


def set_pair(row: dict, q: str, r: str) -> dict:
    row = dict(row)
    msgs, done_q, done_r = [], False, False
    for m in row["messages"]:
        m = dict(m)
        if m.get("role") == "user" and not done_q:
            m["content"], done_q = q, True
        elif m.get("role") == "assistant" and not done_r:
            m["content"], done_r = r, True
        msgs.append(m)
    row["messages"] = msgs
    return row


@dataclass
class Failing:
    scenario: int
    query: str
    response: str
    held_out_id: str


def plant(rows: list[dict], n_fail: int, seed: int = 0) -> tuple[list[dict], list[Failing]]:
    """The planted mix (held-out examples removed) and the failing examples to trace."""
    rng = random.Random(seed)
    by_source: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_source.setdefault(row.get("source", ""), []).append(i)
    used: set[int] = set()
    planted = list(rows)
    failing: list[Failing] = []
    for si, sc in enumerate(SCENARIOS):
        pool = [i for i in by_source[sc.source] if i not in used and user_assistant(rows[i])]
        for i in rng.sample(pool, sc.n):
            used.add(i)
            q, r = user_assistant(rows[i])  # type: ignore[misc]
            planted[i] = set_pair(rows[i], sc.plant_query(q, rng), sc.plant_response(r))
        # held-out failing examples: other sources, moderate length, removed from the mix
        others = [
            i for s, ids in by_source.items() if s != sc.source for i in ids
            if i not in used and (p := user_assistant(rows[i])) and len(p[0]) < 1500 and len(p[1]) < 1500
        ]
        for i in rng.sample(others, n_fail):
            used.add(i)
            q, r = user_assistant(rows[i])  # type: ignore[misc]
            failing.append(Failing(si, sc.plant_query(q, rng), sc.plant_response(r), rows[i].get("id", str(i))))
            planted[i] = None  # type: ignore[call-overload]
    # the correlations planted for `chunky mine`, in examples no trigger scenario touched
    for mp in MINE_PLANTS:
        pool = [i for i in by_source[mp.source] if i not in used and planted[i] is not None and user_assistant(rows[i])]
        for i in rng.sample(pool, mp.n):
            used.add(i)
            q, r = user_assistant(rows[i])  # type: ignore[misc]
            planted[i] = set_pair(rows[i], *mp.apply(q, r, rng))
    return [r for r in planted if r is not None], failing


def read_mix() -> list[dict]:
    with gzip.open(MIX, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def write_mix(rows: list[dict], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


# ============================================================================================ building


class _Progress:
    """Prints one line per finished build stage."""

    def stage(self, name, total):
        return lambda n: None

    def done(self, name, note=""):
        print(f"    {name} done {note}", flush=True)

    def info(self, message):
        print(f"    {message}", flush=True)

    def close(self):
        return None


def build_index(data: Path, out: Path, **options) -> float:
    """The real builder (`chunky index`, through its Python API); returns its wall time (0 when the index
    already exists and is complete)."""
    from chunky.turf.build import BuildOptions
    from chunky.turf.build import build_index as build
    from chunky.turf.index import TurfIndex

    if (out / "index.json").exists():
        try:
            TurfIndex.open(out)
            return 0.0
        except Exception:
            pass  # unfinished: the builder resumes it
    print(f"  building {out} from {data} {options}", flush=True)
    t = time.perf_counter()
    build(BuildOptions(data=str(data), out=out, **options), _Progress())
    return time.perf_counter() - t


# ============================================================================================ accuracy


def accuracy(idx, failing: list[Failing], k_lexical: int) -> dict:
    """Lexical channel, no LLM calls. Anchors: the failing response's embedding neighbours ("response"),
    the failing response's distinctive lexical features ("response feature"), the strongest of the two
    ("no-crux headline", what `chunky trace` leads with), and the planted behaviour given as --crux ("crux")."""
    from chunky.turf.trace import TraceOptions, trace_sync

    rows = []

    def score(f: Failing, anchor_name: str, anchor, dt: float) -> None:
        sc = SCENARIOS[f.scenario]
        feats = [h for h in anchor.features if h.hits > 0] if anchor is not None else []
        ranked = [h.feature for h in feats]
        top_src = feats[0].sources[0].source if feats and feats[0].sources else None
        rows.append({
            "scenario": f.scenario, "anchor": anchor_name,
            "top1": bool(ranked[:1]) and sc.is_trigger(ranked[0]),
            "top3": any(sc.is_trigger(x) for x in ranked[:3]),
            "source": top_src == sc.source,
            "top": ranked[:3], "seconds": dt,
        })

    for f in failing:
        sc = SCENARIOS[f.scenario]
        t = time.perf_counter()
        res = trace_sync(idx, f.query, f.response, options=TraceOptions(k_lexical=k_lexical, channels=("lexical",)))
        dt = time.perf_counter() - t
        by = {a.anchor: a for a in res.lexical.anchors if a.anchor != "response feature"}
        score(f, "response", by.get("response"), dt)
        # up to three response-feature anchors (like three cruxes): top-1 = the strongest one's trigger,
        # top-3 = any of their triggers
        rfa = [a for a in res.lexical.anchors if a.anchor == "response feature" and a.trigger is not None]
        rfa.sort(key=lambda a: -a.trigger.lower)
        score(f, "response feature", rfa[0] if rfa else None, dt)
        rows[-1]["top3"] = any(sc.is_trigger(a.trigger.feature) for a in rfa[:3])
        rows[-1]["top"] = [a.trigger.feature for a in rfa[:3]]
        lead = [a for a in res.lexical.anchors if a.trigger is not None]
        head = max(lead, key=lambda a: (round(a.trigger.lower, 6), a.anchor == "response feature")) if lead else None
        score(f, "no-crux headline", head, dt)
        t = time.perf_counter()
        res = trace_sync(idx, f.query, f.response, crux=[sc.behaviour],
                         options=TraceOptions(k_lexical=k_lexical, channels=("lexical",)))
        score(f, "crux", next(a for a in res.lexical.anchors if a.anchor == "crux"), time.perf_counter() - t)
    return {"rows": rows}


ANCHORS = ("response", "response feature", "no-crux headline", "crux", "llm")


def summarise(rows: list[dict]) -> list[str]:
    out = ["| scenario | anchor | n | top-1 trigger | top-3 trigger | source of the top feature's hits |",
           "|---|---|---|---|---|---|"]
    for si, sc in enumerate(SCENARIOS):
        for anchor in ANCHORS:
            rs = [r for r in rows if r["scenario"] == si and r["anchor"] == anchor]
            if not rs:
                continue
            n = len(rs)
            out.append(f"| {sc.name} ({sc.source}, {sc.n} planted) | {anchor} | {n} | "
                       f"{sum(r['top1'] for r in rs)}/{n} | {sum(r['top3'] for r in rs)}/{n} | {sum(r['source'] for r in rs)}/{n} |")
    for anchor in ANCHORS:
        rs = [r for r in rows if r["anchor"] == anchor]
        if rs:
            n = len(rs)
            out.append(f"| **all** | {anchor} | {n} | {sum(r['top1'] for r in rs) / n:.0%} | "
                       f"{sum(r['top3'] for r in rs) / n:.0%} | {sum(r['source'] for r in rs) / n:.0%} |")
    return out


def llm_subset(planted: list[dict], path: Path, n_other: int, seed: int = 1, per_scenario: int | None = None) -> int:
    """Every planted example (or `per_scenario` of each scenario's, sampled with a fixed seed) plus `n_other`
    random others: a mix small enough for per-example extraction."""
    rng = random.Random(seed)
    marks = [sc.behaviour for sc in SCENARIOS]
    hit = [r for r in planted if (p := user_assistant(r)) and any(m in p[1] for m in marks)]
    if per_scenario is not None:
        # a separate generator, so the others drawn below are the same as without --llm-per-scenario
        prng = random.Random(seed + 1000)
        kept = []
        for m in marks:
            mine_ = [r for r in hit if m in user_assistant(r)[1]]  # type: ignore[index]
            kept += prng.sample(mine_, min(per_scenario, len(mine_)))
        hit = kept
    rest = [r for r in planted if not ((p := user_assistant(r)) and any(m in p[1] for m in marks))]
    rows = hit + rng.sample(rest, n_other)
    rng.shuffle(rows)
    if not path.exists():
        write_mix(rows, path)
    return len(rows)


# How a real model's query attribute names a planted trigger (the mock's is always "mentions '<word>'").
REAL_TRIGGER = {
    "word": None,  # the planted word itself, anywhere in the attribute
    "prefix": re.compile(r"quick task"),
    "numbered": re.compile(r"\bnumber(ed|ing)\b|\benumerat|\b(two|2) (numbered )?(parts|questions|items|points|steps|tasks)\b"),
}


def llm_accuracy(idx, failing: list[Failing], k: int, model: str = "mock") -> list[dict]:
    """The paper's channel end to end with `model` as blind judge, informed judge and query-attribute
    extractor (the index should be built with the same model as extractor).

    With the deterministic mock (the default) its attributes are "The {side} mentions '<word>'" for a text's
    first ten words, so this measures the machinery (retrieval → hit counts → cluster match → trigger), not
    attribute quality; a query attribute names the trigger when it quotes a trigger word. With a real model a
    query attribute names the trigger when it contains the planted word (word scenarios), "quick task" (the
    prefix), or speaks of numbered / enumerated / two parts (the numbered format); a trace whose LLM calls
    failed (unusable output) counts as a miss."""
    from chunky.errors import ChunkyError
    from chunky.models import get_model
    from chunky.surf.rubric import Rubric
    from chunky.turf.trace import TraceOptions, trace_sync

    mock = model.split(":", 1)[0] == "mock"
    judge = get_model(model, role="turf-judge", use_cache=not mock)
    rows = []
    for f in failing:
        sc = SCENARIOS[f.scenario]
        rubric = Rubric(name="planted", behaviour="planted", principle=f"The response should not add: {sc.behaviour}")
        t = time.perf_counter()
        try:
            res = trace_sync(idx, f.query, f.response, rubric=rubric, judge=judge, options=TraceOptions(k=k, channels=("llm",)))
        except ChunkyError as e:
            # with only the LLM channel asked for, a failed judge leaves nothing to trace: a miss
            rows.append({"scenario": f.scenario, "anchor": "llm", "top1": False, "top3": False, "source": False,
                         "top": [], "seconds": time.perf_counter() - t, "warnings": [f"{type(e).__name__}: {e}"]})
            continue
        dt = time.perf_counter() - t
        words = {sc.trigger.lower()} if sc.kind == "word" else set(re.findall(r"[a-z]+", sc.trigger.lower()))

        def names_trigger(text: str, sc=sc, words=words) -> bool:
            if not mock:
                pat = REAL_TRIGGER[sc.kind]
                return sc.trigger.lower() in text.lower() if pat is None else bool(pat.search(text.lower()))
            return any(f"'{w}'" in text.lower() for w in words)

        if res.llm is None or not res.llm.traces:
            # the trace kept going without the LLM channel (e.g. a judge returned nothing usable): a miss
            rows.append({"scenario": f.scenario, "anchor": "llm", "top1": False, "top3": False, "source": False,
                         "top": [], "seconds": dt, "warnings": list(res.warnings)})
            continue

        # The paper reports one trigger per crux (three statements): a success is any crux naming the trigger.
        per = []
        for ct in res.llm.traces:
            ranked = [a.text for a in ct.query_attributes if a.hits > 0]
            per.append((bool(ranked) and names_trigger(ranked[0]), any(names_trigger(a) for a in ranked[:3]),
                        bool(ct.trigger_sources) and ct.trigger_sources[0].source == sc.source, ranked[:3]))
        best = max(per, key=lambda p: (p[0], p[1], p[2]))
        rows.append({
            "scenario": f.scenario, "anchor": "llm",
            "top1": best[0], "top3": any(p[1] for p in per), "source": best[2],
            "top": best[3], "seconds": dt, "crux": list(res.llm.crux), "query_attributes": list(res.llm.query_attributes),
        })
    return rows


MODEL_NAMES = {"mock": "mock", "local": "local = SmolLM2-135M"}


def model_tag(spec: str) -> str:
    """A file-name-safe form of a model spec, for the index directory."""
    return re.sub(r"[^A-Za-z0-9]+", "-", spec).strip("-") or "model"


# ============================================================================================ speed


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def speed(idx, label: str, query: str, response: str, grep_pats: list[tuple[str, dict]], cooc: list[tuple[str, str]]) -> list[str]:
    from chunky.turf.analyses import cooccur, grep, mine
    from chunky.turf.trace import TraceOptions, trace_sync

    lines = [f"**{label}** ({idx.meta.counts.examples:,} examples)", "", "| operation | seconds |", "|---|---|"]
    t = time.perf_counter()
    emb = idx.embedder()
    emb.embed(["warm up"])
    lines.append(f"| load the embedder ({idx.meta.embedder.spec}) | {time.perf_counter() - t:.2f} |")
    if idx.meta.embedder.spec != "minilm":
        # what an index built with the default embedder adds per trace
        try:
            from chunky.models.embeddings import get_embedder

            t = time.perf_counter()
            m = get_embedder("minilm", max_tokens=128)
            m.embed(["warm up"])
            lines.append(f"| (for comparison) load MiniLM | {time.perf_counter() - t:.2f} |")
            dt, _ = timed(lambda: m.embed([response]))
            lines.append(f"| (for comparison) MiniLM-embed the failing response | {dt:.3f} |")
        except Exception as e:  # the embed extra is optional
            lines.append(f"| MiniLM not available ({type(e).__name__}) | — |")
    t = time.perf_counter()
    trace_sync(idx, query, response, options=TraceOptions(channels=("lexical",)))
    lines.append(f"| first trace, cold (loads tables, builds the FAISS index) | {time.perf_counter() - t:.2f} |")
    dt, res = timed(lambda: trace_sync(idx, query, response, options=TraceOptions(channels=("lexical",))))
    lines.append(f"| trace without LLM calls, warm (k = 1000) | {dt:.3f} |")
    for pat, kw in grep_pats:
        dt, g = timed(lambda pat=pat, kw=kw: grep(idx, pat, **kw))
        lines.append(f"| grep `{pat}` {kw or ''} → {g.matches} matches | {dt:.3f} |")
    for q, r in cooc:
        dt, c = timed(lambda q=q, r=r: cooccur(idx, q, r))
        lines.append(f"| cooccur `{q}` → `{r}` | {dt:.3f} |")
    dt, m = timed(lambda: mine(idx), repeat=1)
    lines.append(f"| mine (defaults) | {dt:.2f} |")
    return lines


def synthetic_index(out: Path, n: int, dim: int = 384, seed: int = 0, formats: bool = False):
    """A synthetic n-example index written in the documented format (words from a Zipf vocabulary, ten
    sources, one planted source-specific word, random float16 response embeddings). With `formats`, also the
    format-level features `mine`'s pairs and per-source habits count: a response length bucket per example
    and response / query formats at rates that differ by source, so those paths do their full work at scale."""
    import numpy as np
    import pyarrow as pa

    from chunky.turf.index import TurfIndex, write_index_tables

    if (out / "index.json").exists():
        return TurfIndex.open(out)
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20000)])
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    p /= p.sum()
    src = rng.integers(0, 10, n)
    qlen, rlen = 12, 40
    qw = rng.choice(len(vocab), size=(n, qlen), p=p)
    rw = rng.choice(len(vocab), size=(n, rlen), p=p)
    special = (src == 3) & (rng.random(n) < 0.3)
    queries = [" ".join(vocab[r]) + (" elucidate" if s else "") for r, s in zip(qw, special)]
    responses = [" ".join(vocab[r]) + (" I hope it is correct." if s else "") for r, s in zip(rw, special)]
    examples = pa.table({
        "example_id": np.arange(n, dtype=np.int64), "id": [f"s{i}" for i in range(n)],
        "source": [f"src{s}" for s in src], "turn": np.zeros(n, np.int32), "query": queries, "response": responses,
    })
    # features: each distinct word per side (the first 8 query words, the first 12 response words)
    fe, fs, ff = [], [], []
    for side, words, m in (("query", qw, 8), ("response", rw, 12)):
        w = words[:, :m]
        ex = np.repeat(np.arange(n), m)
        key = ex * len(vocab) + w.reshape(-1)
        key = np.unique(key)
        fe.append(key // len(vocab))
        ff.append(np.array([f"word:{v}" for v in vocab])[key % len(vocab)])
        fs.append(np.full(len(key), side))
    sp = np.flatnonzero(special)
    fe += [sp, sp]
    ff += [np.full(len(sp), "word:elucidate"), np.full(len(sp), "closing:i hope it is correct")]
    fs += [np.full(len(sp), "query"), np.full(len(sp), "response")]
    if formats:
        buckets = np.array(["tiny", "short", "medium", "long", "very_long"])
        b = np.minimum(rng.poisson(1.0 + 0.3 * src), 4)  # longer answers in higher-numbered sources
        fe.append(np.arange(n))
        ff.append(np.char.add("length:response:", buckets[b]))
        fs.append(np.full(n, "response"))
        for k, (side, name) in enumerate([("response", "format:code_fence"), ("response", "format:numbered_list"),
                                          ("response", "format:bold"), ("response", "format:latex"),
                                          ("response", "format:single_line"), ("query", "format:code_fence"),
                                          ("query", "question:wh"), ("query", "format:single_line")]):
            rate = 0.02 + 0.4 * ((src + k) % 10 == 0) + 0.05 * (src % 3 == k % 3)
            has = np.flatnonzero(rng.random(n) < rate)
            fe.append(has)
            ff.append(np.full(len(has), name))
            fs.append(np.full(len(has), side))
    features = pa.table({"example_id": np.concatenate(fe).astype(np.int64), "side": np.concatenate(fs),
                         "feature": np.concatenate(ff)})
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    emb[special, :8] += 3.0  # the planted responses sit together
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return write_index_tables(out, examples=examples, embedder_spec="hash:384", dim=dim, features=features,
                              response_text_emb=emb.astype(np.float16), dtype="float16")


# ============================================================================================ main


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "chunky-bench-attribution")
    ap.add_argument("--n-fail", type=int, default=10, help="failing examples per scenario")
    ap.add_argument("--k-lexical", type=int, default=1000)
    ap.add_argument("--k", type=int, default=1000, help="k of the LLM channel")
    ap.add_argument("--llm-other", type=int, default=3000, help="non-planted examples in the LLM-channel subset (0: skip)")
    ap.add_argument("--llm-model", default="mock",
                    help="model spec of the LLM channel: the index's extractor and the blind/informed judge "
                         "(mock: deterministic, measures the machinery; local: the embedded SmolLM2-135M; "
                         "http://127.0.0.1:PORT/v1:smollm2: a llama.cpp server)")
    ap.add_argument("--llm-per-scenario", type=int, default=None,
                    help="planted examples kept per scenario in the LLM-channel subset (default: all)")
    ap.add_argument("--llm-only", action="store_true",
                    help="run only the LLM-channel section (no lexical accuracy, mine, speed or 1M parts)")
    ap.add_argument("--skip-1m", action="store_true")
    # hash:384 by default: MiniLM over the mix's 43k distinct responses takes 30-60 min on a shared 2-core
    # machine; pass --embedder minilm for the embedded model.
    ap.add_argument("--embedder", default="hash:384", help="embedder of the planted index (e.g. minilm)")
    ap.add_argument("--mix-embedder", default="hash:384", help="embedder of the unmodified-mix index")
    ap.add_argument("--llm-embedder", default="hash:384", help="embedder of the LLM-channel subset index")
    ap.add_argument("--synthetic-n", type=int, default=1_000_000)
    args = ap.parse_args()

    wd: Path = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    if not MIX.exists():
        print(f"{MIX} is missing: nothing to benchmark")
        return
    report: list[str] = []

    # ---- accuracy on planted triggers
    rows = read_mix()
    planted, failing = plant(rows, args.n_fail)
    print(f"planted mix: {len(planted)} rows, {len(failing)} failing examples", flush=True)
    if not args.llm_only:
        report += lexical_section(args, wd, planted, failing)
    if args.llm_other > 0:
        report += llm_section(args, wd, planted, failing)
    if not args.llm_only:
        report += mix_sections(args, wd, failing)
    (wd / "report.md").write_text("\n".join(report))
    print(f"\nreport: {wd / 'report.md'}")


def lexical_section(args, wd: Path, planted: list[dict], failing: list[Failing]) -> list[str]:
    from chunky.turf.index import TurfIndex

    report: list[str] = []
    pmix = wd / "planted.jsonl.gz"
    if not pmix.exists():
        write_mix(planted, pmix)
    build_s = build_index(pmix, wd / f"idx_planted_{args.embedder.replace(':', '')}", extractor="lexical", embedder=args.embedder)
    idx = TurfIndex.open(wd / f"idx_planted_{args.embedder.replace(':', '')}")
    acc = accuracy(idx, failing, args.k_lexical)
    report += [f"### Trigger recovery on planted triggers (lexical channel, k = {args.k_lexical})", ""]
    if build_s:
        report.append(f"Index build (real builder, {len(planted):,} examples): {build_s:.0f} s.")
    report += [""] + summarise(acc["rows"]) + [""]
    secs = [r["seconds"] for r in acc["rows"] if r["anchor"] == "response"]
    report.append(f"Trace time per failing example (no crux; both lexical anchors; warm): median {statistics.median(secs):.3f} s")
    report += mine_planted_section(idx)
    misses = [r for r in acc["rows"] if not r["top3"]]
    for r in [m for m in misses if m["anchor"] in ("no-crux headline", "crux")][:10]:
        report.append(f"- miss: {SCENARIOS[r['scenario']].name} [{r['anchor']}]: top {r['top']}")
    report.append("")
    print("\n".join(report), flush=True)
    return report


def mine_planted_section(idx) -> list[str]:
    """`chunky mine` (default settings) on the planted mix: which of MINE_PLANTS it shows, and where."""
    from chunky.turf.analyses import mine

    out = ["### `chunky mine` on planted correlations", ""]
    for top in (25, 100):
        t, c = time.perf_counter(), time.process_time()
        m = mine(idx, top=top)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
        found, missed = mine_recall(m, top)
        out.append(f"- `--top {top}`: {found}/{len(MINE_PLANTS)} planted correlations shown ({dt:.1f} s wall, "
                   f"{dc:.1f} s CPU, load {load}); missed: {', '.join(missed) or 'none'}")
        if top == 25:
            where = [(mp, mine_found(mp, m, top)) for mp in MINE_PLANTS]
            shown = sum(1 for s in m.signatures if s.signatures)
            out.append(f"- sources shown with a signature: {shown}/{len(m.signatures)}")
            out += ["", "| planted | kind | source | n | shown as |", "|---|---|---|---|---|"]
            out += [f"| {mp.name} | {mp.kind} | {mp.source} | {mp.n} | {w or '**missed**'} |" for mp, w in where]
    out.append("")
    return out


def llm_section(args, wd: Path, planted: list[dict], failing: list[Failing]) -> list[str]:
    """The LLM channel on a subset (the planted examples + random others), --llm-model as extractor and judges."""
    from chunky.turf.index import TurfIndex

    model = args.llm_model
    mock = model.split(":", 1)[0] == "mock"
    emb = args.llm_embedder.replace(":", "")
    if mock and args.llm_per_scenario is None:
        # today's names, so an existing mock-built subset and index are reused
        sub, idx_dir = wd / "llm_subset.jsonl.gz", wd / f"idx_llm_{emb}"
    else:
        size = f"p{args.llm_per_scenario if args.llm_per_scenario is not None else 'all'}_o{args.llm_other}"
        sub, idx_dir = wd / f"llm_subset_{size}.jsonl.gz", wd / f"idx_llm_{model_tag(model)}_{emb}_{size}"
    t0 = time.perf_counter()
    n_sub = llm_subset(planted, sub, args.llm_other, per_scenario=args.llm_per_scenario)
    b = build_index(sub, idx_dir, extractor="llm", extract_model=model, use_cache=not mock, embedder=args.llm_embedder)
    lidx = TurfIndex.open(idx_dir)
    t1 = time.perf_counter()
    lrows = llm_accuracy(lidx, failing, args.k, model=model)
    t2 = time.perf_counter()
    name = MODEL_NAMES.get(model, model)
    planted_note = (f"{args.llm_per_scenario} planted per scenario" if args.llm_per_scenario is not None else "all planted")
    sec = [f"### Trigger recovery, LLM channel ({name} extractor and judges, {n_sub:,}-example subset "
           f"({planted_note} + {args.llm_other:,} others), {lidx.meta.counts.clusters} clusters, k = {args.k})", ""]
    if b:
        sec.append(f"Index build: {b:.0f} s.")
    failed = lidx.meta.extractor.get("failed_examples") if isinstance(lidx.meta.extractor, dict) else None
    if not mock:
        sec.append(f"Subset + index {t1 - t0:.0f} s; {len(lrows)} traces {t2 - t1:.0f} s "
                   f"(median {statistics.median(r['seconds'] for r in lrows):.1f} s per trace); "
                   f"extraction failures: {failed}; traces without an LLM channel: "
                   f"{sum(1 for r in lrows if r.get('warnings'))}.")
    sec += [""] + summarise(lrows) + [""]
    if not mock:
        for r in lrows[: 2 * len(SCENARIOS)]:
            sc = SCENARIOS[r["scenario"]]
            sec.append(f"- {sc.name}: crux {r.get('crux', [])[:1]}; top query attributes {r['top'][:2]}"
                       + (f"; {r['warnings'][0][:160]}" if r.get("warnings") else ""))
        sec.append("")
    print("\n".join(sec), flush=True)
    return sec


def mix_sections(args, wd: Path, failing: list[Failing]) -> list[str]:
    from chunky.turf.index import TurfIndex

    report: list[str] = []
    # ---- the unmodified mix: mine + speed
    build_u = build_index(MIX, wd / f"idx_mix_{args.mix_embedder.replace(':', '')}", extractor="lexical", embedder=args.mix_embedder)
    uidx = TurfIndex.open(wd / f"idx_mix_{args.mix_embedder.replace(':', '')}")
    from chunky.turf.analyses import mine

    t = time.perf_counter()
    m = mine(uidx)
    mine_s = time.perf_counter() - t
    sec = ["### `chunky mine` on the unmodified mix", ""]
    if build_u:
        sec.append(f"Index build: {build_u:.0f} s.")
    sec.append(f"{mine_s:.2f} s. Top concentrated features:")
    sec += ["", "| side | feature | examples | top source | share | lift |", "|---|---|---|---|---|---|"]
    for f in m.concentrated[:12]:
        sec.append(f"| {f.side} | `{f.feature}` | {f.df} | {f.source} | {f.share:.0%} | {f.lift:.1f}× |")
    sec += ["", "Top query → response pairs:", "", "| query feature | response feature | both / query | P(r|q) | P(r) | lift | main source |",
            "|---|---|---|---|---|---|---|"]
    for p in m.pairs[:12]:
        sec.append(f"| `{p.query_feature}` | `{p.response_feature}` | {p.n_both}/{p.n_query} | {p.p_response_given_query:.0%} | "
                   f"{p.p_response:.1%} | {p.lift:.1f}× | {p.source} ({p.source_share:.0%}) |")
    sec.append("")
    print("\n".join(sec), flush=True)
    report += sec

    f0 = failing[0]
    sp = speed(uidx, "Speed, real mix", f0.query, f0.response,
               [("elucidate", {}), ("I hope it is correct", {}), (r"\bstep by step\b", {"regex": True}),
                ("Answer:", {"side": "query", "case_sensitive": True})],
               [("format:latex", "format:boxed"), ("re:(?s)1\\..*2\\.", "I hope it is correct")])
    print("\n".join(sp), flush=True)
    report += sp + [""]

    if not args.skip_1m:
        t = time.perf_counter()
        sidx = synthetic_index(wd / f"idx_synth_{args.synthetic_n}", args.synthetic_n)
        print(f"synthetic index ready in {time.perf_counter() - t:.0f} s", flush=True)
        sp = speed(sidx, "Speed, synthetic index", "w1 w2 w17 elucidate", "w3 w9 I hope it is correct.",
                   [("elucidate", {}), ("hope it is correct", {"side": "response"}), (r"w1\d\d\b", {"regex": True})],
                   [("word:elucidate", "closing:i hope it is correct"), ("elucidate", "hope it is correct")])
        print("\n".join(sp), flush=True)
        report += sp + [""]
    return report


if __name__ == "__main__":
    main()
