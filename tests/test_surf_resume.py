"""Crash safety: `kill -9` a real `chunky surf` process mid-run, run the same command again, and get
exactly the results of an uninterrupted run: nothing finished lost, nothing duplicated."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chunky.store import RunStore

from helpers import run_cli

RUNS, ITERATIONS, CANDIDATES = 3, 4, 250


def surf_args(out: Path) -> list[str]:
    return [
        "surf", "--rubric", "code", "--target", "mock", "--generator", "mock", "--judge", "mock", "--gate", "none",
        "--runs", str(RUNS), "--iterations", str(ITERATIONS), "--candidates", str(CANDIDATES), "--buffer", "5",
        "--patience", "0", "--seed", "5", "--out", str(out), "--quiet",
    ]


def count(out: Path) -> int:
    db = out / "run.sqlite"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0  # the schema is being created


def start_and_kill(out: Path, at_least: int) -> int:
    exe = Path(sys.executable).parent / "chunky"
    proc = subprocess.Popen([str(exe), *surf_args(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while count(out) < at_least:
            if proc.poll() is not None:
                pytest.fail(f"surf finished before it could be killed: {proc.stderr.read().decode()[-500:]}")
            if time.time() > deadline:
                pytest.fail("surf made no progress")
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return count(out)


def snapshot(out: Path):
    with RunStore.open(out) as st:
        cands = st.candidates()
        top = [(c.run_id, c.iteration, c.slot, c.query, c.response, c.score) for c in st.top(25)]
        buffers = {
            (r, t): [(b.score, b.attributes) for b in st.buffer(r, t)] for r in range(RUNS) for t in range(ITERATIONS)
        }
        weights = {(r, t): st.weights(r, t) for r in range(RUNS) for t in range(ITERATIONS)}
        status = st.get_meta("status")
    rows = sorted((c.run_id, c.iteration, c.slot, c.attempt, tuple(c.attributes), c.query, c.response, c.score, c.status) for c in cands)
    return rows, top, buffers, weights, status


@pytest.mark.slow
def test_kill_9_twice_then_rerun_matches_an_uninterrupted_run(tmp_path):
    total = RUNS * ITERATIONS * CANDIDATES
    clean = tmp_path / "clean"
    r = run_cli(*surf_args(clean))
    assert r.returncode == 0, r.stderr

    crashed = tmp_path / "crashed"
    first = start_and_kill(crashed, 400)
    assert 400 <= first < total
    with RunStore.open(crashed) as st:
        assert st.get_meta("status") == "running"  # it really died mid-run
    second = start_and_kill(crashed, first + 600)
    assert first < second < total
    r = run_cli(*surf_args(crashed))
    assert r.returncode == 0, r.stderr

    rows_a, top_a, buf_a, w_a, status_a = snapshot(clean)
    rows_b, top_b, buf_b, w_b, status_b = snapshot(crashed)
    assert len(rows_b) == total  # nothing lost ...
    assert len({row[:4] for row in rows_b}) == total  # ... nothing duplicated
    assert rows_b == rows_a
    assert top_b == top_a and buf_b == buf_a and w_b == w_a
    assert status_a == status_b == "done"
    assert (crashed / "results.jsonl").read_text().count("\n") == total
