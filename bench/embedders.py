"""Embedding options side by side: attribution quality on planted triggers and embedding speed, same texts for each.

    python bench/embedders.py [--n 10000] [--options minilm,minilm-onnx,...] [--workdir DIR]

The planted mix of bench/attribution.py (its five scenarios: rare words, a format, an opening template planted in
one source each), cut to a subsample of --n examples that keeps every planted example, is indexed with the real
builder (lexical channel + response-text embeddings) once per option. For each option: the embed_text stage's
wall and CPU seconds (main process + embedding workers), texts per second, peak RSS; then the held-out failing
examples are traced (lexical channel, no LLM calls) and top-1 / top-3 trigger and top-source recovery are counted
per anchor, exactly as bench/attribution.py does. k (neighbours of the "response" anchor) is scaled to the same
share of the index as k = 1000 of the 89k mix.

An option is an embedder spec, optionally with `@TOKENS` for the response-text token budget (default 128), e.g.
`minilm@64`. Each build runs in its own process so that its peak memory and CPU time are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEFAULT_OPTIONS = "hash:384,minilm-static,minilm-static@64,minilm-onnx-int8,minilm-onnx-int8@64,minilm-onnx,minilm,minilm@64"
FULL_MIX = 89_262


def parse_option(opt: str) -> tuple[str, int]:
    spec, _, tokens = opt.partition("@")
    return spec, int(tokens) if tokens else 128


def child(args: argparse.Namespace) -> None:
    """One build + accuracy run in this process; prints a JSON line."""
    from attribution import SCENARIOS, accuracy  # noqa: F401  (bench/attribution.py)

    from chunky.turf.build import BuildOptions, IndexBuilder
    from chunky.turf.index import TurfIndex

    spec, tokens = parse_option(args.option)
    failing = [tuple(x) for x in json.loads(Path(args.failing).read_text())]
    out = Path(args.out)
    t0 = time.perf_counter()
    summary = IndexBuilder(BuildOptions(data=args.data, out=out, embedder=spec, text_tokens=tokens, force=True)).run()
    total = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    idx = TurfIndex.open(out)
    distinct = len(set(idx.examples(["response"])["response"].to_pylist()))
    from attribution import Failing

    fails = [Failing(*f) for f in failing]
    k = max(10, round(1000 * idx.meta.counts.examples / FULL_MIX))
    t = time.perf_counter()
    acc = accuracy(idx, fails, k)
    trace_s = time.perf_counter() - t
    per_anchor: dict[str, dict[str, float]] = {}
    for r in acc["rows"]:
        a = per_anchor.setdefault(r["anchor"], {"n": 0, "top1": 0, "top3": 0, "source": 0})
        a["n"] += 1
        a["top1"] += r["top1"]
        a["top3"] += r["top3"]
        a["source"] += r["source"]
    print(json.dumps({
        "option": args.option, "spec": spec, "text_tokens": tokens, "dim": idx.meta.embedder.dim,
        "examples": idx.meta.counts.examples, "distinct_texts": distinct, "k": k,
        "embed_wall_s": round(summary.seconds.get("embed_text", 0.0), 2),
        "embed_cpu_main_s": round(summary.cpu_seconds.get("embed_text", 0.0), 2),
        "embed_cpu_workers_s": round(children.ru_utime + children.ru_stime, 2),
        "build_total_s": round(total, 1), "lexical_s": round(summary.seconds.get("lexical", 0.0), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_worker_rss_mb": round(children.ru_maxrss / 1024),
        "trace_s": round(trace_s, 1), "anchors": per_anchor,
    }))


def prepare(wd: Path, n: int, n_fail: int) -> tuple[Path, Path]:
    from attribution import SCENARIOS, plant, read_mix, user_assistant, write_mix

    data, failing_f = wd / f"planted_sub{n}.jsonl.gz", wd / f"failing_sub{n}.json"
    if data.exists() and failing_f.exists():
        return data, failing_f
    planted, failing = plant(read_mix(), n_fail)
    marks = [sc.behaviour for sc in SCENARIOS]
    hit = [r for r in planted if (p := user_assistant(r)) and any(m in p[1] for m in marks)]
    rest = [r for r in planted if not ((p := user_assistant(r)) and any(m in p[1] for m in marks))]
    rng = random.Random(0)
    rows = hit + rng.sample(rest, max(0, n - len(hit)))
    rng.shuffle(rows)
    write_mix(rows, data)
    failing_f.write_text(json.dumps([[f.scenario, f.query, f.response, f.held_out_id] for f in failing]))
    return data, failing_f


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--option")
    ap.add_argument("--data")
    ap.add_argument("--out")
    ap.add_argument("--failing")
    ap.add_argument("--n", type=int, default=10_000, help="examples in the subsample (all planted ones kept)")
    ap.add_argument("--n-fail", type=int, default=10, help="failing examples traced per scenario")
    ap.add_argument("--options", default=DEFAULT_OPTIONS)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "chunky-bench-embedders")
    args, _ = ap.parse_known_args()  # scripts/bench.sh passes every benchmark the same flags
    if args.child:
        child(args)
        return
    from attribution import MIX

    if not MIX.exists():
        print(f"{MIX} is missing: nothing to benchmark")
        return
    wd: Path = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    data, failing = prepare(wd, args.n, args.n_fail)
    env = dict(os.environ)
    env.setdefault("CHUNKY_HOME", str(wd / "home"))
    results = []
    for opt in args.options.split(","):
        # Warm the derived model (ONNX export, distillation) outside the timed build: made once per machine.
        spec, tokens = parse_option(opt)
        subprocess.run([sys.executable, "-c", f"from chunky.models.embeddings import get_embedder; get_embedder({spec!r}).embed(['x'])"],
                       env=env, cwd=ROOT, check=True, capture_output=True)
        load = os.getloadavg()[0]
        r = subprocess.run([sys.executable, __file__, "--child", "--option", opt, "--data", str(data),
                            "--out", str(wd / f"idx_{opt.replace(':', '').replace('@', '_')}"), "--failing", str(failing)],
                           env=env, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{opt}: failed\n{r.stderr[-2000:]}", flush=True)
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["load_avg_1m_before"] = round(load, 2)
        res["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
        results.append(res)
        cpu = res["embed_cpu_main_s"] + res["embed_cpu_workers_s"]
        print(f"{opt}: embed_text {res['embed_wall_s']} s wall, {cpu:.1f} CPU s for {res['distinct_texts']} texts "
              f"({res['distinct_texts'] / max(cpu, 1e-9):.0f} texts per CPU s); "
              + "; ".join(f"{a}: top-1 {v['top1']}/{v['n']}, top-3 {v['top3']}/{v['n']}, source {v['source']}/{v['n']}"
                          for a, v in res["anchors"].items())
              + f" (load {res['load_avg_1m_before']}→{res['load_avg_1m_after']})", flush=True)
        (wd / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
