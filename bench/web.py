"""Explorer benchmark: page latency and report size on a paper-scale SURF run.

Writes a run through the real RunStore (default: the paper's 15 runs × 20 iterations × 360 candidates =
108,000 candidates, ~600-character responses), then times the pages the explorer serves (Starlette in
process, the store opened read-only per request, as `chunky serve` does) and `chunky report`.

    python bench/web.py [--runs 15 --iterations 20 --candidates 360]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def build(path: Path, runs: int, iterations: int, candidates: int, buffer: int = 5) -> int:
    from chunky.store.records import SCORED
    from chunky.store.runstore import RunStore

    rng = np.random.default_rng(0)
    pool = [f"The query has property number {i} of the pool, described in a full sentence." for i in range(400)]
    st = RunStore.create(path)
    st.set_meta_many(
        {
            "config": {"iterations": iterations, "runs": runs, "candidates": candidates, "buffer": buffer},
            "rubric": {"name": "rebut"},
            "models": {"target": "bench", "judge": "bench", "generator": "bench"},
            "status": "done",
            "created_at": time.time(),
            "usage": {"target": {"calls": runs * iterations * candidates, "cost_usd": 1.23, "cost_known": True}},
        }
    )
    text = "lorem ipsum dolor sit amet " * 22  # ~600 characters
    for run_id in range(runs):
        for it in range(iterations):
            chosen = rng.choice(len(pool), size=40, replace=False)
            st.start_iteration(run_id, it, "d", {pool[i]: float(rng.integers(1, 100)) for i in chosen} if it else {})
            scores = np.clip(rng.normal(20 + 2.5 * it, 20, size=candidates), 0, 100).round()
            rows = []
            for slot in range(candidates):
                attrs = [pool[i] for i in rng.choice(len(pool), size=4, replace=False)]
                rows.append(dict(
                    run_id=run_id, iteration=it, slot=slot, attempt=0, attributes=attrs, weighted=attrs[:2],
                    explore=attrs[2:], query=f"query {run_id}/{it}/{slot} " + text[:200], response=text,
                    score=float(scores[slot]), reasoning="reasoning " + text[:300], error=None, gate=None,
                    usage={"target": {"calls": 1, "cost_usd": 0.00001}}, judge_samples=[float(scores[slot])],
                    status=SCORED, created_at=time.time(),
                ))
            ids = st.add_candidates(rows)  # one group commit per iteration
            best = list(zip(ids, (float(x) for x in scores)))
            best = sorted(best, key=lambda x: -x[1])[:buffer]
            st.finish_iteration(run_id, it, best)
        st.set_run(run_id, "done")
    n = st.status().candidates
    st.close()
    return n


def timed(fn, repeat: int = 5) -> tuple[float, float]:
    """(first request, median of the repeats). The first computes the run's aggregates; the explorer keeps
    them until the run's files change, so repeats (and other users of a finished run) get the cached ones."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--candidates", type=int, default=360)
    args = ap.parse_args()

    from starlette.testclient import TestClient

    from chunky.store.runstore import RunStore
    from chunky.web.app import create_app
    from chunky.web.report import build_report
    from chunky.web.runs import MEMO

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = root / "bench-run"
        t0 = time.perf_counter()
        n = build(run, args.runs, args.iterations, args.candidates)
        build_s = time.perf_counter() - t0
        db_mb = (run / "run.sqlite").stat().st_size / 1e6
        with RunStore.open(run) as st:
            top_id = st.top(1)[0].id
        c = TestClient(create_app([run]))

        def get(url: str):
            def f():
                r = c.get(url)
                assert r.status_code == 200, (url, r.status_code)
                return r

            return f

        print(f"run: {args.runs} runs × {args.iterations} iterations × {args.candidates} = {n:,} candidates, "
              f"run.sqlite {db_mb:.0f} MB (written in {build_s:.1f} s)")
        rows = [
            ("runs list (/)", "/"),
            ("run page, best 50", "/run/bench-run"),
            ("run page, text search", "/run/bench-run?q=query+7%2F3%2F1"),
            ("run page, violations of iteration 19", "/run/bench-run?status=violation&iteration=19"),
            ("run page, page 100 by iteration", "/run/bench-run?sort=iteration&offset=5000"),
            ("run page, one per query", "/run/bench-run?distinct=1"),
            ("finding page", f"/run/bench-run/-/finding/{top_id}"),
        ]
        print(f"{'page':<40} {'first':>9} {'repeat':>9} {'size':>9}")
        for label, url in rows:
            first, again = timed(get(url))
            size = len(get(url)().content)
            print(f"{label:<40} {1000 * first:>6.0f} ms {1000 * again:>6.0f} ms {size / 1024:>6.0f} KB")
        t0 = time.perf_counter()
        lines = len(get("/run/bench-run/-/export.jsonl?status=violation")().text.splitlines())
        print(f"{'export violations as JSONL':<40} {1000 * (time.perf_counter() - t0):>6.0f} ms {'':>9} {lines:>6} rows")
        MEMO.data.clear()
        t0 = time.perf_counter()
        html = build_report(run, top=30)
        print(f"{'report (top 30), cold':<40} {1000 * (time.perf_counter() - t0):>6.0f} ms {'':>9} {len(html) / 1024:>6.0f} KB")


if __name__ == "__main__":
    main()
