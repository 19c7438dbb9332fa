"""SURF benchmarks.

1. Orchestration: a paper-sized sweep (15 runs × 20 iterations × 360 candidates = 108,000 candidates,
   each a generator, a target and a judge call) on the deterministic `mock` model, written to a real run
   store. Reports wall time, candidates/s and peak RSS. Target: the whole sweep in under 60 s.
2. Search efficiency: weighted attribute search (SURF) vs uniform attribute sampling on the same budget
   of target calls, against a deterministic target/judge pair whose failures depend on the prompt's
   attributes (a few "trigger" attributes of the pool raise the judge's score). Reports violations
   (score > 50) per 1,000 target calls and the ratio.

Run: .venv/bin/python bench/surf.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chunky.models import Model, UsageTracker, get_model  # noqa: E402
from chunky.models.base import ModelSpec, Provider  # noqa: E402
from chunky.models.types import ChatRequest, ChatResult, Usage  # noqa: E402
from chunky.store import RunStore  # noqa: E402
from chunky.surf.loop import Sweep, build_config  # noqa: E402
from chunky.surf.pools import default_pool  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def orchestration(runs: int, iterations: int, candidates: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix="surf-bench-")) / "run"
    cfg = build_config(
        rubric="code",
        target="mock",
        generator="mock",
        judge="mock",
        overrides=dict(
            runs=runs, iterations=iterations, candidates=candidates, buffer=5, patience=0, gate="none",
            use_cache=False, max_inflight=512,
        ),
    )
    start, cpu0 = time.perf_counter(), time.process_time()
    res = asyncio.run(Sweep(cfg, out).run())
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    with RunStore.open(out) as st:
        n = st.status().candidates
        db_mb = (out / "run.sqlite").stat().st_size / 1e6
    calls = sum(v["calls"] for v in res.usage.values())
    return {
        "runs": runs,
        "iterations": iterations,
        "candidates_per_iteration": candidates,
        "candidates": n,
        "model_calls": calls,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "candidates_per_s": round(n / wall, 1),
        "candidates_per_cpu_s": round(n / cpu, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "store_mb": round(db_mb, 1),
        "status": res.status,
    }


# ---------------------------------------------------------------------------------------- efficiency


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


class TriggerTarget(Provider):
    """A target whose answer reveals how many trigger attributes the (mock-generated) query carries."""

    name = "mock"
    default_concurrency = 64

    def __init__(self, triggers: list[str]):
        super().__init__(ModelSpec("mock", "trigger-target", raw="mock:trigger-target"))
        self.triggers = [t.rstrip(".") for t in triggers]

    async def generate(self, request: ChatRequest, timeout: float) -> ChatResult:
        q = request.messages[-1].content
        n = sum(t in q for t in self.triggers)
        return ChatResult(text=f"[{n}] answer to: {q[:40]}", model="trigger-target", provider="mock",
                          usage=Usage(10, 10, 0.0))


class TriggerJudge(Provider):
    """Score = 25 per trigger the response shows, plus 0-29 of query-dependent noise: one trigger
    rarely violates (> 50), two almost always do."""

    name = "mock"
    default_concurrency = 64

    def __init__(self):
        super().__init__(ModelSpec("mock", "trigger-judge", raw="mock:trigger-judge"))

    async def generate(self, request: ChatRequest, timeout: float) -> ChatResult:
        hints = request.hints or {}
        resp = str(hints.get("response", ""))
        n = int(resp[1 : resp.index("]")]) if resp.startswith("[") else 0
        score = min(100, 25 * n + _h(str(hints.get("query", ""))) % 30)
        text = json.dumps({"reasoning": f"{n} trigger(s)", "score": score})
        return ChatResult(text=text, model="trigger-judge", provider="mock", usage=Usage(10, 10, 0.0))


def efficiency(sampling: str, seed: int, triggers: list[str], runs: int, iterations: int, candidates: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"surf-eff-{sampling}-")) / "run"
    cfg = build_config(
        rubric="code", target="mock", generator="mock", judge="mock",
        overrides=dict(runs=runs, iterations=iterations, candidates=candidates, buffer=5, patience=0, gate="none",
                       use_cache=False, sampling=sampling, seed=seed),
    )
    usage = UsageTracker()
    models = {
        "generator": get_model("mock", role="generator", use_cache=False, usage=usage),
        "target": Model(spec="mock", role="target", provider=TriggerTarget(triggers), use_cache=False, usage=usage),
        "judge": Model(spec="mock", role="judge", provider=TriggerJudge(), use_cache=False, usage=usage),
    }
    sweep = Sweep(cfg, out, models=models)
    asyncio.run(sweep.run())
    with RunStore.open(out) as st:
        cands = st.candidates()
    target_calls = usage.roles["target"].calls
    violations = sum(1 for c in cands if c.score is not None and c.score > 50)
    return {"target_calls": target_calls, "violations": violations, "per_1000": 1000 * violations / target_calls}


def embedded(runs: int, iterations: int, candidates: int) -> dict:
    """The authors' failure case: SmolLM2 in every role, no gate, so every response goes to the LLM judge.
    Counts what happens to generations, slots and judgments."""
    from collections import Counter

    from chunky.store import REJECTED, SCORED

    out = Path(tempfile.mkdtemp(prefix="surf-embedded-")) / "run"
    cfg = build_config(
        rubric="rebut", target="local", generator="local", judge="local",
        overrides=dict(runs=runs, iterations=iterations, candidates=candidates, buffer=5, patience=0, gate="none"),
    )
    start = time.perf_counter()
    asyncio.run(Sweep(cfg, out).run())
    wall = time.perf_counter() - start
    with RunStore.open(out) as st:
        cands = st.candidates()
    finals = [c for c in cands if c.status != REJECTED]
    reasons = Counter((c.error or "").split(":")[0].split("(")[0].strip() for c in cands if c.status == REJECTED)
    judged = [c for c in finals if c.status in (SCORED, "judge_error")]
    return {
        "slots": runs * iterations * candidates,
        "slots_finished": len(finals),
        "generations": len(cands),
        "generations_rejected": len(cands) - len(finals),
        "rejection_reasons": dict(reasons),
        "scored": sum(c.status == SCORED for c in finals),
        "judge_errors": sum(c.status == "judge_error" for c in finals),
        "judged": len(judged),
        "distinct_scores": sorted({c.score for c in finals if c.score is not None}),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a smaller sweep (3 × 5 × 100)")
    ap.add_argument("--embedded", action="store_true",
                    help="also run SmolLM2 in every role, 2 runs × 3 iterations × 20 candidates (slow: tens of minutes)")
    args, _ = ap.parse_known_args()
    os.environ.setdefault("CHUNKY_HOME", tempfile.mkdtemp(prefix="surf-bench-home-"))
    if args.embedded:
        e = embedded(2, 3, 20)
        print("## SURF with SmolLM2 as generator, target and judge (no gate)")
        print(f"{e['slots_finished']}/{e['slots']} slots finished; {e['generations']} generations, "
              f"{e['generations_rejected']} rejected and redrawn ({e['rejection_reasons']}); "
              f"{e['scored']} scored, {e['judge_errors']} judge errors; {e['wall_s']} s")
        print(json.dumps({"embedded": e}))

    size = (3, 5, 100) if args.quick else (15, 20, 360)
    o = orchestration(*size)
    print("## SURF orchestration on mock")
    print(f"{o['runs']} runs × {o['iterations']} iterations × {o['candidates_per_iteration']} candidates: "
          f"{o['candidates']:,} candidates ({o['model_calls']:,} model calls) in {o['wall_s']} s "
          f"= {o['candidates_per_s']:,} candidates/s (CPU {o['cpu_s']} s, {o['candidates_per_cpu_s']:,} candidates per CPU-second); "
          f"peak RSS {o['peak_rss_mb']} MB; store {o['store_mb']} MB; load average {os.getloadavg()[0]:.1f}")
    print(json.dumps({"orchestration": o}))

    pool = default_pool()
    rows = []
    eff_size = (4, 8, 60)
    for seed in (1, 2, 3):
        # 10 trigger attributes out of the pool, different per seed
        order = sorted(pool.attributes, key=lambda a: _h(f"{seed}:{a}"))
        triggers = order[:10]
        w = efficiency("weighted", seed, triggers, *eff_size)
        u = efficiency("uniform", seed, triggers, *eff_size)
        rows.append((seed, w, u))
    print("\n## SURF search efficiency: weighted vs uniform attribute sampling")
    print(f"budget per method: {eff_size[0]} runs × {eff_size[1]} iterations × {eff_size[2]} candidates "
          f"= {rows[0][1]['target_calls']:,} target calls; 10 trigger attributes in a pool of {len(pool)}")
    print("| seed | weighted violations / 1k calls | uniform violations / 1k calls | ratio |")
    print("|---:|---:|---:|---:|")
    ratios = []
    for seed, w, u in rows:
        ratio = w["per_1000"] / u["per_1000"] if u["per_1000"] else float("inf")
        ratios.append(ratio)
        print(f"| {seed} | {w['per_1000']:.1f} | {u['per_1000']:.1f} | {ratio:.1f}× |")
    wm = statistics.fmean(r[1]["per_1000"] for r in rows)
    um = statistics.fmean(r[2]["per_1000"] for r in rows)
    print(f"| mean | {wm:.1f} | {um:.1f} | {wm / um if um else float('inf'):.1f}× |")
    print(json.dumps({"efficiency": [{"seed": s, "weighted": w, "uniform": u} for s, w, u in rows]}))


if __name__ == "__main__":
    main()
