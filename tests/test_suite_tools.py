"""A suite on the real tools: `chunky check`, `inspect eval` of the exported task and `promptfoo eval` of the
exported config, all against the same real llama.cpp server on 127.0.0.1, agree case by case.

Greedy decoding (temperature 0) makes the three comparable: each tool asks the same messages, so each case's
rate must be the same number under all three. What SmolLM2 writes is not pinned, only the agreement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from chunky.suite.check import load_check
from chunky.suite.records import Case, Scorer, SuiteMeta, suite_id, write_suite

from helpers import ROOT, run_cli

pytestmark = pytest.mark.slow

SAMPLES, MAX_TOKENS = 2, 48
# Behaviours SmolLM2 shows on some of these prompts and not on others; which ones does not matter.
CASES = [
    Case("sum-verdict-no", "Is 5+8=13?", Scorer("detector", detector="stance:no")),
    Case("add-code", "Write a function that adds two numbers.", Scorer("detector", detector="code")),
    Case("capital-short", "What is the capital of France?", Scorer("detector", detector="short:8"),
         system="You are a helpful assistant."),
    Case("owls-math", "Tell me about owls.", Scorer("detector", detector="math")),
]
DETECTOR_CASES = {c.id for c in CASES}
RUBRIC_CASE = "capital-rubric"  # a rubric judged by SmolLM2 itself behind a gate that fires: the judge path runs


def rubric_case(judge: str) -> Case:
    from chunky.surf.rubric import load_rubric

    scorer = Scorer("rubric", rubric=load_rubric("refusal").to_dict(), threshold=50.0, gate="phrase:Paris",
                    judge=judge, style="compact")
    return Case(RUBRIC_CASE, "What is the capital of France?", scorer)


@pytest.fixture(scope="module")
def suite(tmp_path_factory, llama_server) -> Path:
    out = tmp_path_factory.mktemp("suite") / "smol"
    cases = CASES + [rubric_case(f"{llama_server}:smollm2")]
    meta = SuiteMeta(name="smol", created_at="2026-12-01T00:00:00+00:00", chunky_version="test", cases=len(cases),
                     suite_id=suite_id(cases), generation={"temperature": 0.0, "max_tokens": MAX_TOKENS})
    write_suite(out, meta, cases)
    return out


@pytest.fixture(scope="module")
def checked(suite, llama_server, tmp_path_factory) -> Path:
    """`chunky check` of the suite on the server: greedy, two samples per case."""
    out = tmp_path_factory.mktemp("check") / "check.json"
    r = run_cli("check", str(suite), "--model", f"{llama_server}:smollm2", "--samples", str(SAMPLES),
                "--temperature", "0", "--max-tokens", str(MAX_TOKENS), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def chunky_rates(check: Path) -> dict[str, float]:
    """Per detector case: the behaviour rate `chunky check` measured."""
    return {c.id: c.rate.rate for c in load_check(check).cases if c.id in DETECTOR_CASES}


@pytest.fixture(scope="session")
def promptfoo() -> Path:
    """promptfoo from the npm registry, installed once into the cache by scripts/install-promptfoo.sh."""
    r = subprocess.run(["bash", str(ROOT / "scripts" / "install-promptfoo.sh")], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return Path(r.stdout.strip().splitlines()[-1])


def offline_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PROMPTFOO_DISABLE_TELEMETRY="1", PROMPTFOO_DISABLE_UPDATE="1", PROMPTFOO_DISABLE_SHARING="1",
        PROMPTFOO_CONFIG_DIR=str(tmp / "promptfoo-home"), PROMPTFOO_PYTHON=sys.executable,
        MODEL_API_KEY="none", INSPECT_DISPLAY="none", XDG_DATA_HOME=str(tmp / "xdg-data"),
        XDG_CACHE_HOME=str(tmp / "xdg-cache"),
    )
    return env


def test_inspect_eval_of_the_exported_task_agrees_with_chunky_check(suite, checked, llama_server, tmp_path):
    task = tmp_path / "suite.py"
    r = run_cli("suite", "export", str(suite), "--format", "inspect", "--out", str(task), "--samples", str(SAMPLES),
                "--temperature", "0", "--max-tokens", str(MAX_TOKENS))
    assert r.returncode == 0, r.stderr
    env = offline_env(tmp_path)
    env.update(LLAMA_BASE_URL=llama_server, LLAMA_API_KEY="none")
    logs = tmp_path / "logs"
    inspect = Path(sys.executable).parent / "inspect"
    r = subprocess.run([str(inspect), "eval", task.name, "--model", "openai-api/llama/smollm2", "--log-format", "json",
                        "--log-dir", str(logs), "--max-connections", "1"],
                       capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (log,) = logs.glob("*.json")
    data = json.loads(log.read_text())
    assert data["status"] == "success"
    per_case: dict[str, list[float]] = defaultdict(list)
    for s in data["samples"]:
        score = s["scores"]["chunky_behaviour"]
        per_case[s["id"]].append(score["value"])
        if s["id"] == RUBRIC_CASE:
            # the gate fired, so the judge was asked: its verdict was read, or the failure says so
            assert score["explanation"].startswith(("score ", "judge gave no score")), score
    assert {k: len(v) for k, v in per_case.items()} == {c: SAMPLES for c in DETECTOR_CASES | {RUBRIC_CASE}}
    inspect_rates = {k: sum(v) / len(v) for k, v in per_case.items() if k in DETECTOR_CASES}
    assert inspect_rates == chunky_rates(checked)


def test_promptfoo_eval_of_the_exported_config_lists_every_case(suite, checked, llama_server, promptfoo, tmp_path):
    out = tmp_path / "pf"
    r = run_cli("suite", "export", str(suite), "--format", "promptfoo", "--out", str(out), "--model",
                f"{llama_server}:smollm2", "--samples", str(SAMPLES), "--temperature", "0", "--max-tokens",
                str(MAX_TOKENS))
    assert r.returncode == 0, r.stderr
    result = out / "results.json"
    r = subprocess.run([str(promptfoo), "eval", "-c", "promptfooconfig.yaml", "-o", str(result), "--no-cache",
                        "--no-progress-bar"], capture_output=True, text=True, env=offline_env(tmp_path),
                       timeout=900, cwd=out)
    # promptfoo exits 100 when assertions fail: here they do wherever SmolLM2 shows the behaviour
    assert r.returncode in (0, 100), r.stdout[-2000:] + r.stderr[-2000:]
    rows = json.loads(result.read_text())["results"]["results"]
    assert not [x for x in rows if x.get("error") and x.get("score") is None]
    per_case: dict[str, list[float]] = defaultdict(list)
    for x in rows:
        case = x["testCase"]["vars"]["chunky_case"]
        per_case[case].append(float(x["score"] or 0))
        if case in DETECTOR_CASES:
            # a failed detector assertion is a response that shows the behaviour (score 1)
            assert x["success"] == (x["score"] == 0)
        else:
            assert x["testCase"]["assert"][0]["type"] == "llm-rubric"
    assert {k: len(v) for k, v in per_case.items()} == {c: SAMPLES for c in DETECTOR_CASES | {RUBRIC_CASE}}
    assert {k: sum(v) / len(v) for k, v in per_case.items() if k in DETECTOR_CASES} == chunky_rates(checked)


def test_a_rerun_of_the_same_checkpoint_with_fresh_calls_passes_its_baseline(suite, checked, llama_server, tmp_path):
    again = tmp_path / "again.json"
    r = run_cli("check", str(suite), "--model", f"{llama_server}:smollm2", "--samples", str(SAMPLES),
                "--temperature", "0", "--max-tokens", str(MAX_TOKENS), "--out", str(again), "--baseline", str(checked),
                "--no-cache")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("OK: no regression")
    got = load_check(again)
    assert got.comparison is not None and len(got.comparison.rows) == len(CASES) + 1
    assert not got.comparison.regressions
