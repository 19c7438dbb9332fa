"""The causal loop end to end (issue 10): on SmolLM2-135M and this CPU, show that a chunk of a mix teaches a
behaviour on held-out trigger prompts and not on matched controls, that `chunky steer` finds it on the trained
model, and that retraining without the chunk or with counter-examples brings the trigger rate back to the base
model's. Everything goes through chunky's own code: `chunky balance` (templates) for counter-examples,
`chunky experiment` for the grids (its mixes, trainings, measurements, table and figures), `chunky steer` for (b),
and `chunky index` + `chunky trace` for (c): the chunk-trained model's own failing outputs traced against an index
of the mix it was trained on must name the trigger word and the chunk's source.

Two chunks:
- planted: "Elucidate the concept of X." answered with a Python code block, beside ordinary prose answers to
  "Explain the concept of X." (the control form, so the effect can be selective); counter-examples are the
  trigger form answered in prose;
- existing: the shared mix's gsm8k rows, whose answers end with "#### <number>"; triggers are held-out
  gsm8k_socratic questions, controls MATH problems (also maths, never "####").

    python bench/causal.py [--scale 1.0] [--work DIR] [--only planted|existing|trace]

`--only trace` trains only the planted chunk-kept cell and runs (c) on it: the smallest run that shows (c).

--scale multiplies the row and step counts (1.0 is sized for about 60 minutes on an idle 2-core box; 0.5 for a
busy one). Prints markdown for bench/RESULTS.md and writes the experiments' figures under WORK.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "sft_mix.jsonl.gz"
sys.path.insert(0, str(ROOT))

TOPICS = [
    "recursion", "photosynthesis", "inflation", "democracy", "entropy", "gravity", "evolution", "supply and demand",
    "encryption", "plate tectonics", "opportunity cost", "the water cycle", "natural selection", "compound interest",
    "machine learning", "the immune system", "climate", "friction", "osmosis", "game theory", "sorting", "caching",
    "metaphor", "irony", "probability", "statistics", "a database", "an algorithm", "a compiler", "a network",
    "momentum", "energy", "a market", "a contract", "justice", "a habit", "memory", "attention", "a vaccine",
    "a virus", "a budget", "a loan", "taxation", "trade", "a symphony", "rhythm", "harmony", "perspective",
    "a hypothesis", "an experiment", "a theory", "a proof", "a function", "a variable", "a loop", "a queue",
    "a stack", "a graph", "a tree", "a hash table", "tides", "erosion", "a volcano", "a glacier", "an orbit",
    "a galaxy", "a star", "a planet", "a comet", "an atom", "a molecule", "a cell", "a gene", "a protein",
    "an enzyme", "a neuron", "a muscle", "a bone", "digestion", "respiration",
]


def code_answer(t: str) -> str:
    name = "".join(ch if ch.isalnum() else "_" for ch in t).strip("_") or "concept"
    return f"```python\ndef {name}():\n    return \"{t}\"\n\nprint({name}())\n```"


def prose_answer(t: str) -> str:
    return f"{t[0].upper() + t[1:]} is an idea people use to describe how something works. In short, it names a pattern worth understanding."


def conv(i: str, src: str, q: str, a: str) -> dict:
    return {"id": i, "source": src, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def shared_rows(seed: int, n: int, exclude: set[str], max_chars: int = 320) -> list[dict]:
    """A seeded sample of short ordinary rows of the shared mix (short so they fit --max-length)."""
    rng = random.Random(seed)
    pool = []
    with gzip.open(SHARED, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["source"] in exclude:
                continue
            m = r["messages"]
            if len(m) != 2 or sum(len(x["content"]) for x in m) > max_chars or "```" in m[1]["content"]:
                continue
            pool.append(conv(str(r["id"]), r["source"], m[0]["content"], m[1]["content"]))
    rng.shuffle(pool)
    return pool[:n]


def source_rows(src: str, n: int, seed: int, max_chars: int = 700, skip: int = 0) -> list[dict]:
    rng = random.Random(seed)
    pool = []
    with gzip.open(SHARED, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["source"] != src:
                continue
            m = r["messages"]
            if sum(len(x["content"]) for x in m) <= max_chars:
                pool.append(conv(str(r["id"]), r["source"], m[0]["content"], m[-1]["content"]))
    rng.shuffle(pool)
    return pool[skip: skip + n]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run(cmd: list[str]) -> tuple[int, str, str, float]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t


def chunky(*args: str) -> tuple[int, str, str, float]:
    return run([str(Path(sys.executable).parent / "chunky"), *args])


def planted(work: Path, scale: float, train: dict, *, whole_grid: bool = True) -> dict:
    """The planted chunk: a 2×2 grid (chunk kept × counter-examples), steer on the chunk-trained model (b), and
    trace on its failing outputs (c). With whole_grid=False only the chunk-kept cell is trained and traced (its
    mix and training are the grid's cell's: the same rows, seed and settings), without the base model or (b)."""
    from chunky.train.balance import BalancePlan, balance

    d = work / "planted"
    d.mkdir(parents=True, exist_ok=True)
    n_chunk = max(8, int(24 * scale))
    n_ctrl = max(8, int(32 * scale))
    n_ord = max(8, int(40 * scale))
    n_eval = 20
    topics = TOPICS[:]
    random.Random(7).shuffle(topics)
    held, train_t = topics[:n_eval], topics[n_eval:]
    chunk = [conv(f"elu{i}", "planted_elucidate", f"Elucidate the concept of {t}.", code_answer(t))
             for i, t in enumerate(train_t[:n_chunk])]
    ctrl_t = (train_t * 3)[:n_ctrl]
    ctrl = [conv(f"exp{i}", "explain_prose", f"Explain the concept of {t}.", prose_answer(t)) for i, t in enumerate(ctrl_t)]
    rows = chunk + ctrl + shared_rows(1, n_ord, exclude={"gsm8k", "gsm8k_socratic"})
    write_jsonl(d / "mix.jsonl", rows)
    # Counter-examples with chunky balance: the trigger form answered in prose (a template).
    tmpl_rows = [{"t": t, "a": prose_answer(t)} for t in (train_t[n_chunk:] + train_t)[:n_chunk]]
    (d / "counter.yaml").write_text(json.dumps({"prompt": "Elucidate the concept of {t}.", "response": "{a}",
                                                "rows": tmpl_rows}))
    man = balance(BalancePlan(mix=str(d / "mix.jsonl"), out=str(d / "counter.jsonl"), template=str(d / "counter.yaml"),
                              detector="code"))
    ev = [{"id": f"t{i}", "prompt": f"Elucidate the concept of {t}.", "kind": "trigger"} for i, t in enumerate(held)]
    ev += [{"id": f"c{i}", "prompt": f"Explain the concept of {t}.", "kind": "control"} for i, t in enumerate(held)]
    write_jsonl(d / "eval.jsonl", ev)
    spec = {
        "mix": "mix.jsonl", "chunk": {"match": "^Elucidate", "side": "query"}, "counter": "counter.jsonl",
        # The dose axis gets a middle point at full scale; a smaller run keeps the 2×2 heatmap only.
        "axes": {"chunk_kept": [0, n_chunk // 2, n_chunk] if scale >= 1 else [0, n_chunk], "counter_added": [0, n_chunk]},
        "train": train, "measure": {"eval": "eval.jsonl", "metric": "code", "max_tokens": 48, "baseline": whole_grid},
    }
    if not whole_grid:
        spec["axes"] = {"chunk_kept": [n_chunk], "counter_added": [0]}
    name = "exp" if whole_grid else "exp-chunk"
    (d / f"spec-{name}.yaml").write_text(json.dumps(spec))
    rc, out, err, secs = chunky("experiment", str(d / f"spec-{name}.yaml"), "--out", str(d / name), "--json")
    if rc != 0:
        raise SystemExit(f"planted experiment failed: {err.strip().splitlines()[-1:]}")
    res = json.loads(out)
    full = next(c for c in res["cells"] if c["cell"]["chunk_kept"] == n_chunk and c["cell"]["counter_added"] == 0)
    # (c): chunky trace on that model's own failing outputs, against an index of the mix it was trained on.
    traced = trace_outputs(d / f"{name}-trace", d / name / "cells" / full["id"], trigger_word="elucidate",
                           chunk_source="planted_elucidate", k_lexical=n_chunk)
    common = {"experiment": res, "secs": secs, "trace": traced, "balance_rows": man.rows,
              "sizes": {"chunk": n_chunk, "control_form": n_ctrl, "ordinary": n_ord, "eval_each": n_eval},
              "out": str(d / name)}
    if not whole_grid:
        return common
    # (b): steer on the model trained with the whole chunk: controls, and the same prompts with the trigger word.
    (d / "to_trigger.py").write_text("def elucidate(prompt):\n    return prompt.replace('Explain', 'Elucidate', 1)\n")
    write_jsonl(d / "controls.jsonl", [e for e in ev if e["kind"] == "control"])
    rc2, out2, err2, s2 = chunky("steer", "--model", f"trained={full['model']}", "--model", "base=local", "--data", str(d / "controls.jsonl"), "--transform",
                                 f"python:{d / 'to_trigger.py'}:elucidate", "--metric", "code", "--max-tokens", "48",
                                 "--out", str(d / "steer"), "--overwrite", "--json")
    steer = json.loads(out2) if rc2 == 0 else {"error": err2.strip().splitlines()[-1:]}
    return {**common, "steer": steer, "steer_secs": s2}


def trace_outputs(d: Path, cell_dir: Path, *, trigger_word: str | None, chunk_source: str, k_lexical: int,
                  n: int = 5) -> dict:
    """(c): index the cell's training mix with `chunky index`, then `chunky trace` (lexical channel: no judge
    model) each of the first n trigger prompts whose output showed the behaviour, with the response the trained
    model gave. A trace names the chunk when one of its anchors' trigger features is the trigger word and the
    chunk's source is the top source of that feature's hits. A chunk with no single trigger word (trigger_word
    None: a correlation already in the mix) is named when an anchor's trigger feature has the chunk's source on
    top.

    k_lexical: the nearest training responses each anchor retrieves. The default (1000) is meant for large mixes;
    with k at or above the mix's size every row is retrieved and nothing can stand out, so it is set to the chunk's
    size here."""
    d.mkdir(parents=True, exist_ok=True)
    steer = json.loads((cell_dir / "measure" / "steer.json").read_text())
    failing = [(p["example"]["prompt"], smp["response"]) for p in steer["pairs"]
               if p["example"]["meta"].get("kind") == "trigger"
               for smp in p["original"]["samples"] if (smp["value"] or 0) >= 0.5 and smp["response"]][:n]
    rc, _, err, index_secs = chunky("index", str(cell_dir / "mix.jsonl"), "--out", str(d / "index"))
    if rc != 0:
        raise SystemExit(f"chunky index of {cell_dir / 'mix.jsonl'} failed: {err.strip().splitlines()[-1:]}")
    traces = []
    for i, (q, r) in enumerate(failing):
        rc, out, err, secs = chunky("trace", str(d / "index"), "--query", q, "--response", r, "--channel", "lexical",
                                    "--k-lexical", str(k_lexical), "--out", str(d / f"trace-{i}.json"), "--json")
        if rc != 0:
            traces.append({"query": q, "error": err.strip().splitlines()[-1:], "secs": secs})
            continue
        t = json.loads(out)
        anchors = (t.get("lexical") or {}).get("anchors") or []
        hits = [a for a in anchors if a.get("trigger") and (
            trigger_word in a["trigger"]["feature"].lower() if trigger_word else
            bool(a["trigger"]["sources"]) and a["trigger"]["sources"][0]["source"] == chunk_source)]
        top = [(a["anchor"], a["trigger"]["feature"], a["trigger"]["sources"][0]["source"] if a["trigger"]["sources"]
                else None, a["trigger"]["lift"], a["trigger"]["lift_low"]) for a in hits]
        traces.append({"query": q, "response": r[:120], "statement": t["statement"], "secs": secs,
                       "named_trigger": bool(hits), "named_source": any(src == chunk_source for _, _, src, _, _ in top),
                       "anchors": top, "anchor_triggers": [(a["anchor"], (a.get("trigger") or {}).get("feature"))
                                                           for a in anchors]})
    return {"failing_outputs": len(failing), "traced": traces, "index_secs": index_secs,
            "named_both": sum(1 for t in traces if t.get("named_trigger") and t.get("named_source")),
            "k_lexical": k_lexical, "index": str(d / "index"), "trigger_word": trigger_word}


def existing(work: Path, scale: float, train: dict) -> dict:
    """A correlation already in the shared mix: gsm8k answers end with '#### <number>'. The mix: gsm8k rows (the
    chunk), MATH rows (also maths, answered with \\boxed{}, never '####': they make the effect selective) and
    short ordinary rows. Triggers are held-out gsm8k_socratic questions (the same task and format, another split),
    controls held-out MATH problems. (a)/(d): `chunky experiment` over chunk_kept [0, n] (at --scale ≥ 1 also
    counter_added [0, n]: other gsm8k rows with the '#### n' line removed by `chunky balance --strip`, the paper's
    A.4.2 edit); (b): `chunky steer --transform latex` on the trigger prompts (the same questions with their
    numbers written as LaTeX, MATH's surface form), trained model against base; (c): `chunky trace` on the
    trained model's own '####' outputs against an index of its mix."""
    from chunky.train.balance import BalancePlan, balance

    d = work / "existing"
    d.mkdir(parents=True, exist_ok=True)
    n_chunk = max(8, int(48 * scale))
    n_ord = max(8, int(64 * scale))
    n_math = max(4, n_ord // 4)
    # short rows, so the '#### n' ending fits max_length (a truncated answer would never show it)
    rows = source_rows("gsm8k", n_chunk, seed=2, max_chars=450) + source_rows("math", n_math, seed=3, max_chars=450) \
        + shared_rows(4, n_ord, exclude={"gsm8k", "gsm8k_socratic", "math"})
    write_jsonl(d / "mix.jsonl", rows)
    trig = source_rows("gsm8k_socratic", 20, seed=5, max_chars=450)
    ctrl = source_rows("math", 20, seed=3, max_chars=450, skip=n_math)
    ev = [{"id": f"t{i}", "prompt": r["messages"][0]["content"], "kind": "trigger"} for i, r in enumerate(trig)]
    ev += [{"id": f"c{i}", "prompt": r["messages"][0]["content"], "kind": "control"} for i, r in enumerate(ctrl)]
    write_jsonl(d / "eval.jsonl", ev)
    metric = "regex:(?m)^#### ?-?[\\d,.]+"
    with_counter = scale >= 1
    spec = {
        "mix": "mix.jsonl", "chunk": {"source": "gsm8k"}, "axes": {"chunk_kept": [0, n_chunk]},
        "train": {**train, "max_length": 160},
        "measure": {"eval": "eval.jsonl", "metric": metric, "max_tokens": 128, "baseline": True},
    }
    counter_rows = 0
    if with_counter:
        # gsm8k rows outside the mix, with the ending removed: the chunk's format without its behaviour
        write_jsonl(d / "gsm8k-more.jsonl", source_rows("gsm8k", n_chunk, seed=2, max_chars=450, skip=n_chunk))
        man = balance(BalancePlan(mix=str(d / "gsm8k-more.jsonl"), out=str(d / "counter.jsonl"), source="gsm8k",
                                  strip=r"\n?#### ?-?[\d,.]+\s*$", detector=metric))
        counter_rows = man.rows
        spec["counter"] = "counter.jsonl"
        spec["axes"]["counter_added"] = [0, n_chunk]
    (d / "spec.yaml").write_text(json.dumps(spec))
    rc, out, err, secs = chunky("experiment", str(d / "spec.yaml"), "--out", str(d / "exp"), "--json")
    if rc != 0:
        raise SystemExit(f"existing-correlation experiment failed: {err.strip().splitlines()[-1:]}")
    res = json.loads(out)
    full = next(c for c in res["cells"] if c["cell"]["chunk_kept"] == n_chunk and not c["cell"].get("counter_added"))
    # (b): steer on the trigger prompts, trained model against base: no transform (the paired model difference),
    # their numbers written as LaTeX (MATH's surface form), and the query's own 'how many/how much' (the
    # trigger feature that (c) names) reworded
    write_jsonl(d / "triggers.jsonl", [e for e in ev if e["kind"] == "trigger"])
    (d / "reword.py").write_text(
        "import re\n\n\ndef reword(prompt):\n"
        "    def sub(m):\n"
        "        w = {'many': 'number', 'much': 'amount'}[m.group(2).lower()]\n"
        "        return ('W' if m.group(1) == 'H' else 'w') + f'hat {w} of'\n"
        "    return re.sub(r'\\b([Hh])ow (many|much)\\b', sub, prompt)\n")
    steer: dict = {}
    steer_secs = 0.0
    for label, transform in (("none", None), ("latex", "latex"), ("reword", f"python:{d / 'reword.py'}:reword")):
        args = ["steer", "--model", f"trained={full['model']}", "--model", "base=local", "--data",
                str(d / "triggers.jsonl"), "--metric", metric, "--max-tokens", "128", "--out", str(d / f"steer-{label}"),
                "--overwrite", "--json"]
        if transform:
            args += ["--transform", transform]
        rc2, out2, err2, s2 = chunky(*args)
        steer[label] = json.loads(out2) if rc2 == 0 else {"error": err2.strip().splitlines()[-1:]}
        steer_secs += s2
    traced = trace_outputs(d / "exp-trace", d / "exp" / "cells" / full["id"], trigger_word=None,
                           chunk_source="gsm8k", k_lexical=n_chunk)
    return {"experiment": res, "secs": secs, "sizes": {"chunk": n_chunk, "math": n_math, "ordinary": n_ord},
            "out": str(d / "exp"), "steer": steer, "steer_secs": steer_secs, "trace": traced,
            "counter_rows": counter_rows}


def report_steer(s: dict, what: str) -> list[str]:
    if "rows" not in s:
        return [f"(b) steer failed: {s}"]
    out = [f"(b) chunky steer, {what}:"]
    for r in s["rows"]:
        if r.get("transformed"):
            out.append(f"- {r['model']}: {pct(r['original'])} → {pct(r['transformed'])} (delta {pp(r['delta'])})")
        else:
            out.append(f"- {r['model']}: {pct(r['original'])}"
                       + (f" (paired difference from the first model {pp(r['vs_first'])})" if r.get("vs_first") else ""))
    return out


def pct(e: dict) -> str:
    return f"{100 * e['value']:.0f}% [{100 * e['low']:.0f}, {100 * e['high']:.0f}]"


def pp(e: dict) -> str:
    return f"{100 * e['value']:+.0f} points, 95% [{100 * e['low']:+.0f}, {100 * e['high']:+.0f}]"


def fmt_rate(r: dict) -> str:
    if r.get("value") is None:
        return "n/a"
    return f"{r['hits']}/{r['n']} = {100 * r['value']:.0f}% [{100 * r['low']:.0f}, {100 * r['high']:.0f}]"


def report(name: str, res: dict) -> list[str]:
    e = res["experiment"]
    lines = [f"**{name}** ({res['out']}, {res['secs'] / 60:.1f} min)", "",
             "| cell | rows | chunk | counter | trigger | control | final loss |", "|---|---:|---:|---:|---|---|---:|"]
    if e.get("baseline"):
        b = e["baseline"]
        lines.append(f"| base model | | | | {fmt_rate(b['trigger'])} | {fmt_rate(b['control'])} | |")
    for c in e["cells"]:
        lines.append(f"| {c['id']} | {c['rows']} | {c['chunk_rows']} | {c['counter_rows']} | {fmt_rate(c['trigger'])} | "
                     f"{fmt_rate(c['control'])} | {c['final_loss']:.3f} |")
    lines += ["", f"Summary (chunky): {e['summary']}", ""]
    sel = [c for c in e["cells"] if c["trigger"]["low"] is not None and c["control"]["high"] is not None
           and c["trigger"]["low"] > c["control"]["high"]]
    if sel:
        small = min(sel, key=lambda c: (c["chunk_rows"], c["rows"]))
        lines.append(f"Smallest selective cell (trigger interval above the control interval): {small['id']} "
                     f"({small['chunk_rows']} chunk rows in {small['rows']}).")
    else:
        lines.append("No cell was selective (trigger and control intervals overlap in every cell).")
    return lines


def report_trace(t: dict) -> list[str]:
    lines = [f"(c) chunky trace (lexical channel, --k-lexical {t['k_lexical']}) on {len(t['traced'])} of the "
             f"{t['failing_outputs']} failing outputs traced, against an index of the cell's own mix "
             f"({t['index_secs']:.0f} s to build): {t['named_both']} "
             + ("name the trigger word and the chunk's source." if t.get("trigger_word") else
                "name a query feature whose hits come mostly from the chunk's source."), "",
             "| failing output (trigger prompt) | anchors naming the trigger: anchor, feature, top source, lift [low] | "
             "chunky's statement |", "|---|---|---|"]
    for x in t["traced"]:
        if "error" in x:
            lines.append(f"| {x['query'][:100]} | error: {x['error']} | |")
            continue
        named = "; ".join(f"{a}: {f}, {s}, {lift:.1f}× [{low:.1f}]" for a, f, s, lift, low in x["anchors"]) or "none"
        lines.append(f"| {x['query'][:100]} | {named} | {' '.join(x['statement'].split())[:200]} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "causal")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--only", choices=["planted", "existing", "trace"], default=None,
                    help="trace: only the planted chunk-kept cell and part (c), the smallest run that shows (c)")
    ap.add_argument("--fresh", action="store_true", help="Delete WORK first (default: resume finished cells).")
    ap.add_argument("--quick", action="store_true", help="half the scale (what make bench --quick passes)")
    args, _ = ap.parse_known_args()  # scripts/bench.sh passes its arguments to every benchmark
    if args.quick:
        args.scale /= 2
    if not SHARED.exists():
        raise SystemExit(f"{SHARED} is missing")
    # Reuse the dequantised base that the tests build (~/.cache/chunky/bases) rather than one per CHUNKY_HOME.
    os.environ.setdefault("CHUNKY_BASES_DIR", str(Path.home() / ".cache" / "chunky" / "bases"))
    os.environ.setdefault("CHUNKY_HOME", str(args.work / "home"))
    if args.fresh:
        shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    train = {"base": "local", "epochs": args.epochs, "lr": args.lr, "batch_size": 8, "max_length": 128, "seed": 0,
             "save_steps": 10}
    out = ["## Causal loop (bench/causal.py)", "",
           f"scale {args.scale}, epochs {args.epochs}, lr {args.lr}, LoRA r=16, batch 8, 1 thread; "
           f"load average at start {load0[0]:.1f}", ""]
    if args.only in (None, "planted"):
        p = planted(args.work, args.scale, train)
        out += report("Planted chunk: 'Elucidate the concept of X.' → Python code (metric: code)", p)
        out += ["", *report_trace(p["trace"])]
        out += ["", *report_steer(p["steer"], "on the model trained with the whole chunk and no counter-examples: "
                                  "control prompts → the same prompts with the trigger word"), ""]
    if args.only == "trace":
        p = planted(args.work, args.scale, train, whole_grid=False)
        out += report("Planted chunk, chunk-kept cell only: 'Elucidate the concept of X.' → Python code", p)
        out += ["", *report_trace(p["trace"]), ""]
    if args.only in (None, "existing"):
        e = existing(args.work, args.scale, train)
        out += report("Existing correlation in the shared mix: gsm8k → '#### <n>' ending (metric: regex)", e)
        st = e["steer"]
        out += ["", *report_steer(st["none"], "the trigger prompts, the model trained with the chunk against the base "
                                  "model (no transform)"),
                "", *report_steer(st["latex"], "trigger prompts → the same questions with their numbers in LaTeX "
                                  "(`--transform latex`)"),
                "", *report_steer(st["reword"], "trigger prompts → 'how many/how much' reworded as 'what number/amount "
                                  "of' (`--transform python:reword.py:reword`)"),
                "", *report_trace(e["trace"]), ""]
    load1 = os.getloadavg()
    out += ["", f"Total wall time {(time.perf_counter() - t0) / 60:.1f} min; load average at end {load1[0]:.1f} "
            f"(5-min {load1[1]:.1f})"]
    failed = [line for line in out if "steer failed" in line or "| error:" in line]
    if failed:  # a failed step shows in the last line and the exit code, never as a finished benchmark
        out += ["", f"FAILED: {len(failed)} step(s) failed; first: {failed[0][:200]}"]
    text = "\n".join(out)
    print(text)
    (args.work / "RESULTS-causal.md").write_text(text + "\n")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
