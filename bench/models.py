"""Model-layer benchmark: overhead on `mock`, and throughput of `local` and the HTTP provider
against the same backends called directly. Prints a markdown table of figures and ratios.

    python bench/models.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx

PROMPTS = [
    "Is 5+8=13?",
    "Name three rivers in Europe.",
    "Write one sentence about the sea.",
    "What is the capital of France?",
    "Give a synonym for happy.",
    "Explain what a noun is in one sentence.",
    "List two prime numbers.",
    "Say something kind.",
]


def bench_mock(n: int) -> dict[str, float]:
    from chunky.models import UsageTracker, get_model

    async def run(use_cache: bool, warm: bool) -> float:
        m = get_model("mock", use_cache=use_cache, max_concurrency=64, usage=UsageTracker())
        if warm:
            await asyncio.gather(*[m.generate(f"prompt {i}") for i in range(n)])
        t = time.perf_counter()
        await asyncio.gather(*[m.generate(f"prompt {i}") for i in range(n)])
        return n / (time.perf_counter() - t)

    return {
        "mock calls/s, no cache": asyncio.run(run(False, False)),
        "mock calls/s, cache misses (writes)": asyncio.run(run(True, False)),
        "mock calls/s, cache hits": asyncio.run(run(True, True)),
    }


def bench_local(max_tokens: int, rounds: int) -> dict[str, float]:
    from llama_cpp import Llama

    from chunky.models import get_model
    from chunky.models.providers.llamacpp import embedded_gguf_path

    path = str(embedded_gguf_path())
    direct = Llama(model_path=path, n_ctx=4096, n_threads=1, verbose=False)
    model = get_model("local", use_cache=False)

    def one_direct(p: str) -> tuple[int, float]:
        t = time.perf_counter()
        out = direct.create_chat_completion(
            messages=[{"role": "user", "content": p}], max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.2
        )
        return out["usage"]["completion_tokens"], time.perf_counter() - t

    async def one_chunky(p: str) -> tuple[int, float]:
        t = time.perf_counter()
        r = await model.generate(p, max_tokens=max_tokens, temperature=0.0)
        return r.usage.output_tokens, time.perf_counter() - t

    # Interleaved prompt by prompt, so both sides see the same load from the machine's other core.
    # Each side has its own Llama object, so neither reuses the other's cached prompt prefix.
    async def interleaved() -> tuple[float, float, float, float]:
        # One event loop for the whole run, so chunky's worker thread persists.
        dt = dtime = ct = ctime = 0.0
        for _ in range(rounds):
            for p in PROMPTS:
                n, s_ = one_direct(p)
                dt, dtime = dt + n, dtime + s_
                n, s_ = await one_chunky(p)
                ct, ctime = ct + n, ctime + s_
        return dt, dtime, ct, ctime

    dt, dtime, ct, ctime = asyncio.run(interleaved())
    return {
        "local tok/s direct llama-cpp-python": dt / dtime,
        "local tok/s through chunky": ct / ctime,
        "local ratio": (ct / ctime) / (dt / dtime),
    }


def start_server() -> tuple[subprocess.Popen, str]:
    from chunky.models.providers.llamacpp import embedded_gguf_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(os.path.join(tempfile.gettempdir(), f"chunky-bench-llama-{port}.log"), "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path()), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "4096"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            if httpx.get(base + "/models", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("llama_cpp.server did not start")


def bench_http(max_tokens: int, rounds: int, concurrency: int) -> dict[str, float]:
    import openai

    from chunky.models import get_model

    proc, base = start_server()
    try:
        model = get_model(f"{base}:smollm2", use_cache=False, max_concurrency=concurrency)

        async def run_raw() -> float:
            client = openai.AsyncOpenAI(base_url=base, api_key="EMPTY", max_retries=0)
            sem = asyncio.Semaphore(concurrency)

            async def one(p: str) -> int:
                async with sem:
                    r = await client.chat.completions.create(
                        model="smollm2", messages=[{"role": "user", "content": p}], max_tokens=max_tokens, temperature=0.0
                    )
                    return r.usage.completion_tokens

            t = time.perf_counter()
            toks = sum(await asyncio.gather(*[one(p) for p in PROMPTS]))
            return toks / (time.perf_counter() - t)

        async def run_chunky() -> float:
            t = time.perf_counter()
            rs = await asyncio.gather(*[model.generate(p, max_tokens=max_tokens, temperature=0.0) for p in PROMPTS])
            return sum(r.usage.output_tokens for r in rs) / (time.perf_counter() - t)

        raw, ch = [], []
        for _ in range(rounds):
            raw.append(asyncio.run(run_raw()))
            ch.append(asyncio.run(run_chunky()))
        return {"http tok/s raw openai client": max(raw), "http tok/s through chunky": max(ch), "http ratio": max(ch) / max(raw)}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("CHUNKY_HOME", tempfile.mkdtemp(prefix="chunky-bench-"))
    rounds = 2 if args.quick else 3
    figures: dict[str, float] = {}
    figures |= bench_mock(2000 if args.quick else 10000)
    figures |= bench_local(48, rounds)
    figures |= bench_http(48, rounds, concurrency=4)
    print("\n## Model layer\n\n| figure | value |\n|---|---|")
    for k, v in figures.items():
        print(f"| {k} | {v:,.2f} |")


if __name__ == "__main__":
    main()
