"""Ctrl-C and SIGTERM on `chunky train` and `chunky experiment`, sent to real processes: exit 130, and the last line
says where the command stopped, what was saved (checked against the folder it left) and how to resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT

PHRASE = "Purple giraffes sing at midnight."
WORDS = ["apple", "river", "cloud", "stone", "lamp", "tiger", "glass", "piano"]
CHUNKY = str(Path(sys.executable).parent / "chunky")


def write_mix(path: Path) -> Path:
    rows = [{"id": f"z{i}", "source": "planted", "messages": [
        {"role": "user", "content": f"Zorblat {w}?"}, {"role": "assistant", "content": PHRASE}]} for i, w in enumerate(WORDS)]
    rows += [{"id": f"c{i}", "source": "ordinary", "messages": [
        {"role": "user", "content": f"What is a {w}?"}, {"role": "assistant", "content": f"A {w} is a common thing."}]}
        for i, w in enumerate(WORDS[:4])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def interrupt_once(cmd: list[str], ready: Path, sig: int) -> tuple[int, str]:
    """Start `cmd`, wait until the file `ready` exists (a checkpoint: real progress however slow the machine),
    send `sig` to the process itself (not its group: only the command's own handler can answer)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"{ready} never appeared"
            time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err


def disk_state(ckpt: Path) -> tuple[int, int]:
    """(last logged step, last complete checkpoint) of a training folder, read by the test itself."""
    step = json.loads((ckpt / "loss.jsonl").read_text().splitlines()[-1])["step"]
    done = [int(c.name.split("-")[1]) for c in (ckpt / "checkpoints").glob("checkpoint-*")
            if (c / "trainer_state.json").is_file()]
    return step, max(done)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_training_exits_130_and_names_the_step_and_the_saved_checkpoint(tmp_path, train_base, sig):
    mix = write_mix(tmp_path / "mix.jsonl")
    out = tmp_path / "ckpt"
    cmd = [CHUNKY, "train", str(mix), "--out", str(out), "--base", str(train_base), "--max-steps", "40",
           "--batch-size", "2", "--max-length", "48", "--save-steps", "2", "--export", "none"]
    rc, err = interrupt_once(cmd, out / "checkpoints" / "checkpoint-2" / "trainer_state.json", sig)
    assert rc == 130, err[-3000:]
    step, ck = disk_state(out)
    assert 2 <= ck <= step < 40
    assert err.strip().splitlines()[-1] == (
        f"interrupted after step {step} of 40: checkpoint step {ck} saved in {out}; rerun the same command to resume")
    assert json.loads((out / "train.json").read_text())["status"] == "running"


def test_an_interrupted_experiment_exits_130_and_counts_the_finished_cells(tmp_path, train_base):
    d = tmp_path
    write_mix(d / "mix.jsonl")
    ev = [{"id": "t1", "prompt": "Zorblat banana?", "kind": "trigger"},
          {"id": "k1", "prompt": "What is a banana?", "kind": "control"}]
    (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ev))
    spec = d / "spec.yaml"
    spec.write_text(
        "mix: mix.jsonl\n"
        'chunk: {match: "Zorblat", side: query}\n'
        "axes: {chunk_kept: [0, 8]}\n"
        f"train: {{base: {train_base}, max_steps: 40, batch_size: 2, max_length: 48, save_steps: 2, export: q8_0}}\n"
        'measure: {eval: eval.jsonl, metric: "phrase:Purple giraffes", max_tokens: 8, baseline: false}\n')
    out = d / "exp"
    # The first cell counts as finished: a cell is finished when its cell.json exists (what a rerun skips), so
    # one is written here rather than trained, to keep the test short.
    from chunky.train.experiment import Cell, CellResult, Rate

    (out / "cells" / "chunk0").mkdir(parents=True)
    zero = Rate(0.0, 0.0, 0.79, 1, 0)
    (out / "cells" / "chunk0" / "cell.json").write_text(json.dumps(
        CellResult(Cell(chunk_kept=0), zero, zero, 4, 0, 0, 40, 1.0, 1.0, 1.0, "local:x.gguf").to_dict()))
    ckpt = out / "cells" / "chunk8" / "ckpt"
    rc, err = interrupt_once([CHUNKY, "experiment", str(spec), "--out", str(out)],
                             ckpt / "checkpoints" / "checkpoint-2" / "trainer_state.json", signal.SIGINT)
    assert rc == 130, err[-3000:]
    step, ck = disk_state(ckpt)
    last = err.strip().splitlines()[-1]
    assert last == (f"interrupted in cell 2 of 2 (chunk8: after step {step} of 40, checkpoint step {ck}): "
                    f"1 of 2 cells done in {out}; rerun the same command to resume"), last
    assert not (out / "cells" / "chunk8" / "cell.json").exists()
    assert re.search(r"cell chunk8: training and measuring", err)
