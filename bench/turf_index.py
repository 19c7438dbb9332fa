"""Benchmark of the TURF offline index (`python bench/turf_index.py [--quick] [--only NAME]`).

1. full: the lexical + embedding index of the shared 89,262-example mix with the default settings (embedder
   `minilm-static`, response texts cut to 128 tokens): seconds per stage and peak RSS (target: < 3 min on 2 cores).
2. kmeans: FAISS spherical k-means vs scikit-learn KMeans on the same L2-normalised vectors (the response-text
   embeddings of the full index, else random vectors): time ratio and inertia ratio.
3. synthetic: builds of a synthetic 1,000,000-example mix (and 100k, 300k) to show how time and memory grow
   with N: `--synthetic-embedder hash:8` measures the lexical channel alone; `default` (the default) is the
   whole build with the default settings (target at 1M: < 30 min, < 8 GB). With `--keep`, the largest index is
   kept in --work and `trace` (lexical), `grep`, `cooccur` and `mine` are timed on it (targets at 1M: < 1 s warm,
   < 2 s, < 2 s, < 30 s).

Each build runs in its own subprocess so its peak RSS is its own. `--quick` shrinks every size ~10x.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIX = ROOT.parent / "shared" / "data" / "sft_mix.jsonl.gz"


def _child_build(args: argparse.Namespace) -> None:
    """Run one build in this process and print its figures as JSON."""
    sys.path.insert(0, str(ROOT))
    from chunky.turf.build import BuildOptions, IndexBuilder

    kw = {} if args.embedder in (None, "default") else {"embedder": args.embedder}
    opts = BuildOptions(data=args.data, out=Path(args.out), extractor="lexical", limit=args.limit, force=True, **kw)
    t0 = time.perf_counter()
    summary = IndexBuilder(opts).run()
    total = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Embedding worker processes (joined by now): the largest one's peak.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_mb = children.ru_maxrss / 1024
    worker_cpu = children.ru_utime + children.ru_stime
    meta = summary.meta
    print(
        json.dumps(
            {
                "seconds": {k: round(v, 1) for k, v in summary.seconds.items()},
                "cpu_seconds": {k: round(v, 1) for k, v in summary.cpu_seconds.items()},
                "total_s": round(total, 1),
                "peak_rss_mb": round(rss_mb),
                "peak_worker_rss_mb": round(worker_mb),
                "worker_cpu_s": round(worker_cpu, 1),
                "workers": opts.embed_workers or __import__("chunky.turf.build", fromlist=["x"]).default_embed_workers(),
                "examples": meta.counts.examples,
                "embedder": meta.embedder.spec,
                "features": meta.counts.features,
                "feature_rows": __import__("pyarrow.parquet", fromlist=["x"]).ParquetFile(Path(args.out) / "features.parquet").metadata.num_rows,
            }
        )
    )


def run_build(data: str, out: Path, embedder: str, limit: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--data", data, "--out", str(out), "--embedder", embedder]
    load_before = os.getloadavg()
    if limit:
        cmd += ["--limit", str(limit)]
    env = dict(os.environ)
    env.setdefault("CHUNKY_HOME", str(Path(tempfile.gettempdir()) / "chunky-bench-home"))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"build failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["load_avg_before"] = [round(x, 2) for x in load_before]
    res["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    return res


def bench_full(work: Path, quick: bool) -> dict | None:
    if not MIX.exists():
        print(f"full: {MIX} is absent; skipped")
        return None
    limit = 9000 if quick else None
    res = run_build(str(MIX), work / "full", "default", limit)
    print(
        f"full index ({res['examples']} examples, lexical + {res['embedder']} response-text embeddings): total {res['total_s']} s "
        f"({res['total_s'] / 60:.1f} min), peak RSS {res['peak_rss_mb']} MB (+ {res['workers']} embedding workers of at most "
        f"{res['peak_worker_rss_mb']} MB each); stages {res['seconds']}; "
        f"CPU seconds per stage in the main process {res['cpu_seconds']} + {res['worker_cpu_s']} in embedding workers; "
        f"{res['features']} distinct features, {res['feature_rows']} feature rows; load average "
        f"{res['load_avg_before']} before, {res['load_avg_after']} after"
    )
    return res


def bench_kmeans(work: Path, quick: bool) -> dict:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from sklearn.cluster import KMeans

    from chunky.turf.cluster import kmeans

    emb_file = work / "full" / "emb" / "response_text.npy"
    n = 5000 if quick else 20000
    k = 50 if quick else 200
    if emb_file.exists():
        x = np.load(emb_file)
        rng = np.random.default_rng(0)
        x = x[rng.choice(len(x), size=min(n, len(x)), replace=False)].astype(np.float32)
        what = f"{len(x)} MiniLM response-text vectors"
    else:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(n, 384)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        what = f"{n} random unit vectors (d=384)"

    def inertia(centroids: np.ndarray, assign: np.ndarray) -> float:
        return float(((x - centroids[assign]) ** 2).sum())

    t = time.perf_counter()
    res = kmeans(x, k, niter=20, seed=0)
    t_faiss = time.perf_counter() - t
    # FAISS's centroids are renormalised (spherical); score both with the unnormalised mean of each cluster too.
    means = np.zeros_like(res.centroids)
    np.add.at(means, res.assignment, x)
    counts = np.bincount(res.assignment, minlength=k)[:, None]
    means = means / np.maximum(counts, 1)
    faiss_inertia = inertia(means, res.assignment)
    t = time.perf_counter()
    km = KMeans(n_clusters=k, n_init=1, max_iter=20, random_state=0).fit(x)
    t_sk = time.perf_counter() - t
    sk_inertia = float(km.inertia_)
    out = {
        "vectors": what,
        "k": k,
        "faiss_s": round(t_faiss, 2),
        "sklearn_s": round(t_sk, 2),
        "time_ratio_sklearn_over_faiss": round(t_sk / t_faiss, 1),
        "inertia_ratio_faiss_over_sklearn": round(faiss_inertia / sk_inertia, 3),
    }
    print(
        f"k-means on {what}, K={k}, 20 iterations: FAISS {out['faiss_s']} s vs scikit-learn {out['sklearn_s']} s "
        f"(sklearn/FAISS time {out['time_ratio_sklearn_over_faiss']}x), inertia FAISS/sklearn {out['inertia_ratio_faiss_over_sklearn']}"
    )
    return out


TOPICS = ["python", "algebra", "poetry", "history", "chemistry", "football", "cooking", "finance", "biology", "music"]
STYLES = [
    "Explain {t} concept {i} step by step.",
    "You will be shown a passage about {t}. Answer: is claim {i} true?",
    "Is {a}+{b}={c}? This is about {t}.",
    "Elucidate the idea of {t} number {i} in detail, with examples.",
    "Как объяснить {t} {i}?",
]
ANSWERS = [
    "Sure! Here is how {t} works:\n1. First, the basics.\n2. Then, item {i}.",
    "```python\ndef f_{i}():\n    return '{t}'\n```",
    "No, {a}+{b} equals {s}. I hope it is correct.",
    "The answer is {s}. $x = {s}$",
    "Ответ: {t} {i}.",
]


def write_synthetic(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    vocab = [f"w{j}" for j in range(50_000)]
    with open(path, "w") as fh:
        for i in range(n):
            t = TOPICS[i % len(TOPICS)]
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            q = rng.choice(STYLES).format(t=t, i=i % 1000, a=a, b=b, c=a + b + rng.choice([0, 1]))
            q += " " + " ".join(rng.choices(vocab, k=rng.randint(5, 40)))
            r = rng.choice(ANSWERS).format(t=t, i=i % 1000, a=a, b=b, s=a + b)
            r += " " + " ".join(rng.choices(vocab, k=rng.randint(5, 60)))
            fh.write(json.dumps({"id": f"syn{i}", "source": t, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": r}]}) + "\n")


def bench_synthetic(work: Path, quick: bool, sizes: list[int] | None = None, embedder: str = "default",
                    keep: bool = False) -> list[dict]:
    sizes = sizes or ([10_000, 30_000, 100_000] if quick else [100_000, 300_000, 1_000_000])
    data = work / "synthetic.jsonl"
    if not data.exists() or sum(1 for _ in open(data)) < max(sizes):
        write_synthetic(data, max(sizes))
    rows = []
    for n in sizes:
        res = run_build(str(data), work / f"syn{n}", embedder, limit=n)
        rows.append({"n": n, **res})
        print(
            f"synthetic build ({res['embedder']}), N={n:,}: {res['total_s']} s; stages {res['seconds']}; CPU s "
            f"{res['cpu_seconds']} + {res['worker_cpu_s']} in workers; "
            f"peak RSS {res['peak_rss_mb']} MB (workers {res['peak_worker_rss_mb']} MB), {res['feature_rows']:,} "
            f"feature rows; load average {res['load_avg_before']} before, {res['load_avg_after']} after", flush=True
        )
        if keep and n == max(sizes):
            rows[-1]["speed"] = bench_speed(work / f"syn{n}")
        else:
            shutil.rmtree(work / f"syn{n}", ignore_errors=True)
    return rows


def bench_speed(idx_dir: Path) -> list[str]:
    """trace (lexical), grep, cooccur and mine on a built index (bench/attribution.py's timings)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from attribution import speed

    from chunky.turf.index import TurfIndex

    idx = TurfIndex.open(idx_dir)
    lines = speed(idx, f"Speed, synthetic index built by `chunky index` ({idx.meta.embedder.spec})",
                  "Explain python concept 17 step by step. w1 w2 w17", "Sure! Here is how python works:\n1. First, the basics.",
                  [("step by step", {}), ("I hope it is correct", {"side": "response"}), (r"w1\d\d\b", {"regex": True})],
                  [("step by step", "Sure! Here is how"), ("re:Is \\d+\\+\\d+", "I hope it is correct")])
    lines.append(f"(load average {[round(x, 2) for x in os.getloadavg()]})")
    print("\n".join(lines), flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data")
    ap.add_argument("--out")
    ap.add_argument("--embedder", default="default")
    ap.add_argument("--synthetic-embedder", default="default", help="default (the default build) or e.g. hash:8 (lexical only)")
    ap.add_argument("--keep", action="store_true", help="keep the largest synthetic index and time the analyses on it")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--quick", action="store_true", help="~10x smaller sizes")
    ap.add_argument("--only", choices=["full", "kmeans", "synthetic"])
    ap.add_argument("--work", help="keep outputs here (default: a temporary directory)")
    ap.add_argument("--sizes", help="synthetic sizes, comma-separated (default 100000,300000,1000000)")
    args, _ = ap.parse_known_args()
    if args.child:
        _child_build(args)
        return
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="chunky-bench-turf-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    try:
        if args.only in (None, "full"):
            results["full"] = bench_full(work, args.quick)
        if args.only in (None, "kmeans"):
            results["kmeans"] = bench_kmeans(work, args.quick)
        if args.only in (None, "synthetic"):
            sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else None
            results["synthetic"] = bench_synthetic(work, args.quick, sizes, args.synthetic_embedder, args.keep)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
