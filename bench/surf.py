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


# ------------------------------------------------------------------- one slow self-hosted server

AUTHORS_RELEASE = {"wall_s": 612, "requests": 115, "scored_per_min": 0.59}  # issue 15's measurement; not re-run here


class RecordingProxy:
    """An HTTP proxy in front of llama_cpp.server that records, per chat request, when it arrived, when the
    server's answer came back and its status. llama_cpp.server computes one request at a time, in order, so a
    request's compute time is `done - max(arrived, previous done)` and the server is busy for their sum."""

    def __init__(self, upstream: str, client_timeout: float):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import httpx

        self.records: list[dict] = []
        self.lock = threading.Lock()
        self.inflight = 0
        self.peak = 0
        proxy = self
        client = httpx.Client(timeout=None)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _relay(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
                t0 = time.monotonic()
                with proxy.lock:
                    proxy.inflight += 1
                    proxy.peak = max(proxy.peak, proxy.inflight)
                try:
                    r = client.request(method, upstream + self.path.removeprefix("/v1"), content=body,
                                       headers={"content-type": "application/json"})
                    status, data = r.status_code, r.content
                except httpx.HTTPError as e:
                    status, data = 502, json.dumps({"error": {"message": str(e)}}).encode()
                t1 = time.monotonic()
                with proxy.lock:
                    proxy.inflight -= 1
                    if method == "POST":
                        fmt = (json.loads(body or b"{}").get("response_format") or {}).get("type")
                        proxy.records.append({"t0": t0, "t1": t1, "status": status, "format": fmt,
                                              "kept": status == 200 and t1 - t0 < client_timeout})
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def do_POST(self):
                self._relay("POST")

            def do_GET(self):
                self._relay("GET")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def busy(self) -> tuple[float, float]:
        """(server busy seconds, busy seconds spent on requests whose answer the client got in time)."""
        busy = kept = 0.0
        prev = 0.0
        for r in sorted(self.records, key=lambda r: r["t1"]):
            compute = max(0.0, r["t1"] - max(r["t0"], prev))
            prev = r["t1"]
            busy += compute
            kept += compute if r["kept"] else 0.0
        return busy, kept


def slow_server(minutes: float, runs: int = 2, iterations: int = 3, candidates: int = 20, extra: list[str] | None = None) -> dict:
    """`chunky surf --rubric rebut --gate none` with all three roles on one llama_cpp.server (SmolLM2, one
    request at a time, 1 thread), the budget of issue 15's side by side, stopped after `minutes` if unfinished."""
    import signal
    import socket
    import subprocess

    import httpx

    from chunky.models.providers.llamacpp import embedded_gguf_path
    from chunky.store import SCORED

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    work = Path(tempfile.mkdtemp(prefix="surf-server-"))
    log = open(work / "server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path()), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "4096", "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        upstream = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(upstream + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError(f"llama_cpp.server did not start: {(work / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        proxy = RecordingProxy(upstream, client_timeout=120.0)
        spec = f"{proxy.base_url}:smollm2"
        out = work / "run"
        cmd = [str(Path(sys.executable).parent / "chunky"), "surf", "--rubric", "rebut", "--gate", "none",
               "--target", spec, "--generator", spec, "--judge", spec, "--runs", str(runs), "--iterations",
               str(iterations), "--candidates", str(candidates), "--buffer", "5", "--no-cache", "--quiet",
               "--top", "0", "--out", str(out), *(extra or [])]
        start = time.monotonic()
        surf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(work / "surf.log", "w"))
        try:
            rc = surf.wait(timeout=minutes * 60)
        except subprocess.TimeoutExpired:
            surf.send_signal(signal.SIGINT)  # saved and resumable; exits 130
            rc = surf.wait(timeout=300)
        wall = time.monotonic() - start
        with RunStore.open(out) as st:
            scored = len(st.candidates(status=SCORED))
            finished = st.status()
        busy, kept = proxy.busy()
        recs = proxy.records
        return {
            "wall_s": round(wall, 1),
            "exit_code": rc,
            "finished": rc == 0,
            "requests": len(recs),
            "peak_in_flight": proxy.peak,
            "http_500": sum(r["status"] == 500 for r in recs),
            "json_schema_requests": sum(r["format"] == "json_schema" for r in recs),
            "late_or_failed": sum(not r["kept"] for r in recs),
            "scored": scored,
            "errors": finished.errors,
            "scored_per_min": round(scored / (wall / 60), 2),
            "server_busy_s": round(busy, 1),
            "busy_share_kept": round(kept / busy, 3) if busy else None,
            "last_line": (work / "surf.log").read_text().strip().splitlines()[-1:],
            "load_average": os.getloadavg()[0],
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # still computing queued requests
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a smaller sweep (3 × 5 × 100)")
    ap.add_argument("--embedded", action="store_true",
                    help="also run SmolLM2 in every role, 2 runs × 3 iterations × 20 candidates (slow: tens of minutes)")
    ap.add_argument("--server", action="store_true",
                    help="the slow-server side by side of issue 15 on a real llama_cpp.server (slow: --server-minutes)")
    ap.add_argument("--server-minutes", type=float, default=10.0, help="stop the --server run after this long")
    ap.add_argument("--fixed", type=int, default=None,
                    help="with --server: a fixed per-role concurrency instead of the adaptive one (the old default: 16)")
    args, _ = ap.parse_known_args()
    os.environ.setdefault("CHUNKY_HOME", tempfile.mkdtemp(prefix="surf-bench-home-"))
    if args.server:
        extra = [] if args.fixed is None else [f"--{r}-concurrency={args.fixed}" for r in ("target", "generator", "judge")]
        r = slow_server(args.server_minutes, extra=extra)
        a = AUTHORS_RELEASE
        print("## SURF on one slow llama_cpp.server (SmolLM2, 1 thread), 2 runs × 3 iterations × 20, buffer 5")
        print(f"chunky ({'fixed ' + str(args.fixed) if args.fixed else 'adaptive'}): {r['scored']} scored in "
              f"{r['wall_s']} s = {r['scored_per_min']} scored/min ({r['scored_per_min'] / a['scored_per_min']:.1f}× the "
              f"authors' {a['scored_per_min']}, measured in issue 15, not re-run); {r['requests']} requests, peak "
              f"{r['peak_in_flight']} in flight, {r['late_or_failed']} late or failed, {r['http_500']} HTTP 500; "
              f"{100 * (r['busy_share_kept'] or 0):.1f}% of {r['server_busy_s']} s server busy time on kept results; "
              f"load average {r['load_average']:.1f}")
        print(json.dumps({"slow_server": r}))
        return
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
