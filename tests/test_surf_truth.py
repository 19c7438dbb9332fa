"""`chunky surf` tells the truth: a role that fails for good stops the sweep with one line and a non-zero
exit; an interrupt exits 130 and says how to resume; the call budget holds; a run without a violation
says so. Real console script, real run store, a closed port and a real fault-injecting HTTP server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from faultserver import FaultServer

from chunky.store import RunStore

from helpers import ROOT, free_port, run_cli

MOCK = ["--generator", "mock", "--judge", "mock"]
FAST = {"CHUNKY_RETRY_BASE_DELAY": "0.01"}


def surf(out: Path, *extra: str, target: str = "mock", env: dict | None = None):
    return run_cli(
        "surf", "--rubric", "code", "--target", target, *MOCK, "--runs", "2", "--iterations", "2",
        "--candidates", "6", "--buffer", "3", "--out", str(out), "--quiet", *extra, env=(env or {}) | FAST,
    )


def last_line(r: subprocess.CompletedProcess) -> str:
    return r.stderr.strip().splitlines()[-1]


def test_an_unreachable_target_stops_the_sweep_with_one_line_and_a_failed_status(tmp_path):
    model = f"http://127.0.0.1:{free_port()}/v1:x"  # nothing listens there
    out = tmp_path / "run"
    r = surf(out, "--gate", "none", target=model)
    assert r.returncode == 1, r.stderr
    line = last_line(r)
    assert line.startswith("failed: the target model " + model) and "connect" in line, line
    assert "done" not in r.stderr
    with RunStore.open(out) as st:
        assert st.get_meta("status") == "failed"
        failure = st.get_meta("failure")
        assert failure["role"] == "target" and failure["model"] == model and "connect" in failure["error"]
        assert st.candidates() == []  # no error rows pretending to be results

    # the explorer and the report show the failure, not a green "done"
    from starlette.testclient import TestClient

    from chunky.web.app import create_app
    from chunky.web.report import build_report

    page = TestClient(create_app([out])).get("/").text
    assert "badge failed" in page and "badge done" not in page
    report = build_report(out)
    assert "badge failed" in report and "fails for good" in report and model in report


def test_a_role_whose_first_calls_all_fail_stops_the_sweep(tmp_path):
    # The server answers the probe, then rejects every chat call: the target is unusable, not unlucky.
    with FaultServer(["ok"] + ["400"] * 200) as srv:
        model = f"{srv.base_url}:fault"
        r = surf(tmp_path / "run", "--gate", "none", "--target-concurrency", "1", target=model)
        calls = len(srv.requests)
    assert r.returncode == 1, r.stderr
    assert last_line(r).startswith(f"failed: the target model {model} fails for good") and "400" in last_line(r)
    assert calls == 1 + 3  # the probe, then three failures in a row: no call after that
    with RunStore.open(tmp_path / "run") as st:
        assert st.get_meta("status") == "failed" and st.get_meta("failure")["role"] == "target"


def test_a_sweep_where_some_calls_failed_says_how_many_in_its_final_line(tmp_path):
    # probe ok, then one target call fails for good (a 500 with no retries allowed), every other call succeeds
    with FaultServer(["ok", "500"]) as srv:
        r = surf(tmp_path / "run", "--gate", "none", "--no-cache", target=f"{srv.base_url}:fault",
                 env={"CHUNKY_MAX_ATTEMPTS": "1"})
    assert r.returncode == 0, r.stderr
    line = last_line(r)
    assert line.startswith("done: 23 scored") and "1 candidate with errors" in line, line
    assert "1 failed call (target 1)" in line, line
    with RunStore.open(tmp_path / "run") as st:
        assert st.get_meta("failed_calls") == {"target": 1}


def _start(out: Path, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "chunky"
    args = [str(exe), "surf", "--rubric", "code", "--target", "mock", *MOCK, "--runs", "2", "--iterations", "500",
            "--candidates", "50", "--patience", "0", "--no-cache", "--out", str(out), "--top", "0"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"), cwd=ROOT, env=dict(os.environ))


def _interrupt_after_progress(proc: subprocess.Popen, out: Path, sig: int, more_than: int) -> int:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait for real progress of this session, however slow the machine
        if (out / "run.sqlite").exists():
            with RunStore.open_readonly(out) as st:
                if st.status().candidates >= more_than + 100:
                    break
        time.sleep(0.2)
    proc.send_signal(sig)
    return proc.wait(timeout=120)


def test_sigint_and_sigterm_exit_130_and_say_how_to_resume_and_the_rerun_says_where_it_resumes(tmp_path):
    out = tmp_path / "run"
    saved = 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        log = tmp_path / f"{sig}.log"
        rc = _interrupt_after_progress(_start(out, log), out, sig, saved)
        text = log.read_text()
        assert rc == 130, text[-2000:]
        line = text.strip().splitlines()[-1]
        assert line.startswith("interrupted: ") and "rerun the same command to resume" in line, line
        with RunStore.open(out) as st:
            saved = len(st.candidates())
            assert st.get_meta("status") == "interrupted" and f"{saved} candidates saved" in line
        if sig == signal.SIGTERM:  # the second session resumed the first one and said so
            assert "candidates already saved; resuming run 0 at iteration" in text, text[:2000]


def test_max_calls_holds_and_every_summary_field_is_filled(tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        "surf", "--rubric", "code", "--target", "mock", *MOCK, "--runs", "2", "--iterations", "3",
        "--candidates", "20", "--max-calls", "50", "--no-cache", "--quiet", "--out", str(out),
    )
    assert r.returncode == 3, r.stderr
    line = last_line(r)
    assert line.startswith("budget reached: ") and "rerun with a larger --max-calls" in line
    for role in ("generator", "target", "judge"):
        assert f"{role} " in line and " calls" in line
    with RunStore.open(out) as st:
        assert st.get_meta("status") == "budget"
        assert st.spent_calls()[0] <= 50
        usage = st.get_meta("usage")
    assert sum(u["calls"] - u["cached_calls"] for u in usage.values()) <= 50


def test_a_run_without_violations_says_so_instead_of_listing_score_0_findings(tmp_path):
    # The mock's echoes never contain code, so the code gate scores everything 0.
    r = surf(tmp_path / "run")
    assert r.returncode == 0, r.stderr
    assert "#1" not in r.stdout and "No violation: none of the 24 scored candidates scored above 50." in r.stdout
    assert last_line(r).startswith("done: 24 scored, 0 violations")


def test_steer_from_run_remeasures_with_the_runs_own_gate(tmp_path):
    import json

    # `--gate none`: the mock judge scores the mock's echoes, many above 50. The code rubric's own gate would
    # score every one of them 0 (an echo holds no code), so a re-measure with it would report 0%.
    out = tmp_path / "run"
    r = surf(out, "--gate", "none")
    assert r.returncode == 0, r.stderr
    res = run_cli("steer", "--from-run", str(out), "--min-score", "51", "--top", "5", "--json")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)["rows"][0]
    # the same deterministic target and judge give each finding the same score again: all are violations
    assert row["n_examples"] >= 1 and row["original"]["value"] == 1.0


def test_top_on_a_run_without_violations_says_its_rows_are_not_findings(tmp_path):
    out = tmp_path / "run"
    assert surf(out).returncode == 0
    r = run_cli("top", str(out), "--n", "3")
    assert r.returncode == 0 and "0 violations" in r.stderr
    assert "No violation (no score above 50): these are the highest-scoring candidates, not findings." in r.stderr


def test_steer_on_an_unreachable_model_fails_instead_of_reporting_a_rate(tmp_path):
    model = f"http://127.0.0.1:{free_port()}/v1:x"
    r = run_cli("steer", "-m", model, "-d", "sums-grid", "--limit", "3", "--metric", "stance:no",
                "-o", str(tmp_path / "s"), env=FAST | {"CHUNKY_MAX_ATTEMPTS": "2"})
    assert r.returncode == 1, r.stderr
    line = last_line(r)
    assert line.startswith(f"failed: every call of model {model} failed") and "connect" in line


def test_robust_against_an_unreachable_target_fails_instead_of_printing_empty_rates(tmp_path):
    out = tmp_path / "run"
    assert surf(out, "--gate", "none").returncode == 0
    model = f"http://127.0.0.1:{free_port()}/v1:x"
    r = run_cli("robust", str(out), "--top", "1", "--perturbations", "1", "--samples", "1", "--target", model,
                env=FAST | {"CHUNKY_MAX_ATTEMPTS": "2"})
    assert r.returncode == 1, r.stderr
    assert last_line(r).startswith("failed: no response of the 1 prompts could be judged") and "connect" in last_line(r)
