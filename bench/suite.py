"""`chunky check` overhead: the same calls made raw through the model layer vs through `run_check` (journal,
scoring, intervals), on the embedded model in-process and on the deterministic mock. Prints a markdown table.

    python bench/suite.py [--quick] [--rounds R] [--max-tokens N]

Ratio = raw throughput / check throughput's inverse, i.e. raw seconds / check seconds (target ≥ 0.95).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "Is 5+8=13?",
    "Name three rivers in Europe.",
    "Write one sentence about the sea.",
    "What is the capital of France?",
    "Write a function that adds two numbers.",
    "Explain what a noun is in one sentence.",
    "List two prime numbers.",
    "Tell me about owls.",
]
DETECTORS = ["stance:no", "short:8", "code", "math"]


def make_suite(tmp: Path, n_cases: int):
    from chunky.suite.records import Case, Scorer, SuiteMeta, load_suite, suite_id, write_suite

    cases = [Case(f"c{i}", PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" (variant {i})"),
                  Scorer("detector", detector=DETECTORS[i % len(DETECTORS)])) for i in range(n_cases)]
    write_suite(tmp, SuiteMeta(name="bench", created_at="", chunky_version="bench", cases=n_cases,
                               suite_id=suite_id(cases)), cases)
    return load_suite(tmp)


async def raw_calls(model, suite, samples: int, temperature: float, max_tokens: int, seed: int) -> float:
    """What `chunky check` must do at the least: every case × sample through the model layer."""
    from chunky.suite.check import sample_seed

    t = time.perf_counter()
    await asyncio.gather(*(
        model.generate(c.prompt, system=c.system, sample_index=s, seed=sample_seed(seed, c.id, s),
                       temperature=temperature, max_tokens=max_tokens)
        for c in suite.cases for s in range(samples)
    ))
    return time.perf_counter() - t


async def check_calls(model, suite, samples: int, temperature: float, max_tokens: int, seed: int, out: Path) -> float:
    from chunky.suite.check import CheckConfig, finish, run_check

    cfg = CheckConfig(model=model.spec, samples=samples, seed=seed, temperature=temperature, max_tokens=max_tokens,
                      use_cache=False)
    t = time.perf_counter()
    result = await run_check(suite, cfg, out=out, target=model)
    finish(result, out)
    return time.perf_counter() - t


def bench(spec: str, n_cases: int, samples: int, rounds: int, max_tokens: int, tmp: Path) -> dict[str, float]:
    from chunky.models import GenerateConfig, UsageTracker, get_model

    suite = make_suite(tmp / f"suite-{spec.split(':')[0]}", n_cases)
    model = get_model(spec, role="target", config=GenerateConfig(max_tokens=max_tokens), use_cache=False,
                      usage=UsageTracker(), max_concurrency=64 if spec == "mock" else None)
    raw = chk = 0.0

    async def run() -> tuple[float, float]:
        r = c = 0.0
        # Warm up (the in-process model loads on its first call), then interleave with the side that goes first
        # alternating, so both make the same calls under the same load and neither always follows the other.
        await model.generate("Hello", max_tokens=4, temperature=0.0)
        for i in range(rounds):
            if i % 2 == 0:
                r += await raw_calls(model, suite, samples, 0.0, max_tokens, seed=i)
                c += await check_calls(model, suite, samples, 0.0, max_tokens, seed=i, out=tmp / f"check-{i}.json")
            else:
                c += await check_calls(model, suite, samples, 0.0, max_tokens, seed=i, out=tmp / f"check-{i}.json")
                r += await raw_calls(model, suite, samples, 0.0, max_tokens, seed=i)
        return r, c

    raw, chk = asyncio.run(run())
    calls = rounds * n_cases * samples
    return {"calls": calls, "raw_s": raw, "check_s": chk, "ratio": raw / chk}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 4)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["CHUNKY_HOME"] = str(tmp / "home")
        load = os.getloadavg()
        mock = bench("mock", 200, 5, rounds, args.max_tokens, tmp)
        local = bench("local", 8, 2, rounds, args.max_tokens, tmp)
        load_after = os.getloadavg()
    print(f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after {load_after[0]:.2f} "
          f"{load_after[1]:.2f} {load_after[2]:.2f}")
    print("| figure | value |\n|---|---:|")
    print(f"| mock: raw model-layer calls/s ({mock['calls']:.0f} calls) | {mock['calls'] / mock['raw_s']:,.0f} |")
    print(f"| mock: calls/s through `chunky check` (journal, detectors, intervals) | {mock['calls'] / mock['check_s']:,.0f} |")
    print(f"| mock ratio (pure overhead, no model work) | {mock['ratio']:.2f} |")
    print(f"| `local`: raw model-layer seconds ({local['calls']:.0f} calls, greedy, {args.max_tokens} tokens) | {local['raw_s']:.1f} |")
    print(f"| `local`: seconds through `chunky check`, same calls | {local['check_s']:.1f} |")
    print(f"| **`local` ratio** (target ≥ 0.95) | **{local['ratio']:.2f}** |")


if __name__ == "__main__":
    main()
