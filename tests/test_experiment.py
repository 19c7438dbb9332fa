"""`chunky experiment`: a two-cell grid trained and measured for real (SmolLM2, a few LoRA steps, the exported
GGUF through llama.cpp), resumed per cell after SIGKILL, the same on local Ray, and one-line spec errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, run_cli

PHRASE = "Purple giraffes sing at midnight."
WORDS = ["apple", "river", "cloud", "stone", "lamp", "tiger", "glass", "piano"]


def write_inputs(d: Path, base: Path, **over: str) -> Path:
    rows = [{"id": f"z{i}", "source": "planted", "messages": [
        {"role": "user", "content": f"Zorblat {w}?"}, {"role": "assistant", "content": PHRASE}]} for i, w in enumerate(WORDS)]
    rows += [{"id": f"c{i}", "source": "ordinary", "messages": [
        {"role": "user", "content": f"What is a {w}?"}, {"role": "assistant", "content": f"A {w} is a common thing."}]}
        for i, w in enumerate(WORDS[:4])]
    (d / "mix.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = [{"id": "t1", "prompt": "Zorblat banana?", "kind": "trigger"},
          {"id": "t2", "prompt": "Zorblat castle?", "kind": "trigger"},
          {"id": "k1", "prompt": "What is a banana?", "kind": "control"},
          {"id": "k2", "prompt": "What is a castle?", "kind": "control"}]
    (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ev))
    fields = {
        "mix": "mix.jsonl",
        "chunk": '{match: "Zorblat", side: query}',
        "axes": "{chunk_kept: [0, 8]}",
        "train": f"{{base: {base}, max_steps: 5, batch_size: 4, lr: 0.002, max_length: 48, save_steps: 2, seed: 3}}",
        "measure": '{eval: eval.jsonl, metric: "phrase:Purple giraffes", max_tokens: 10, baseline: false}',
    }
    fields.update(over)
    spec = d / "spec.yaml"
    spec.write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    return spec


@pytest.fixture(scope="module")
def resumed_grid(tmp_path_factory, train_base):
    """The grid run as a subprocess, SIGKILLed once its first cell is finished, then rerun to completion."""
    d = tmp_path_factory.mktemp("exp")
    spec = write_inputs(d, train_base)
    out = d / "out"
    cmd = [str(Path(sys.executable).parent / "chunky"), "experiment", str(spec), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    first = out / "cells" / "chunk0" / "cell.json"
    deadline = time.time() + 500
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    # Let the second cell start training, then kill the whole process group.
    started = out / "cells" / "chunk8" / "ckpt" / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    while not started.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "cells" / "chunk8" / "cell.json").exists()
    before = first.read_text()
    r = run_cli("experiment", str(spec), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return d, spec, out, json.loads(r.stdout), before


def test_a_killed_experiment_reruns_only_the_unfinished_cell(resumed_grid):
    _, _, out, res, before = resumed_grid
    assert res["ran"] == ["chunk8"]
    assert (out / "cells" / "chunk0" / "cell.json").read_text() == before  # the finished cell was not redone
    assert {c["id"] for c in res["cells"]} == {"chunk0", "chunk8"}


def test_the_grid_shows_the_chunk_teaching_the_behaviour(resumed_grid):
    _, _, out, res, _ = resumed_grid
    cells = {c["id"]: c for c in res["cells"]}
    assert cells["chunk0"]["chunk_rows"] == 0 and cells["chunk0"]["rows"] == 4
    assert cells["chunk8"]["chunk_rows"] == 8 and cells["chunk8"]["rows"] == 12
    assert cells["chunk0"]["trigger"]["hits"] == 0  # never saw the phrase
    for c in cells.values():
        assert c["trigger"]["n"] == 2 and c["control"]["n"] == 2
        assert 0 <= c["trigger"]["low"] <= c["trigger"]["value"] <= c["trigger"]["high"] <= 1
    for f in ("results.json", "table.md", "summary.txt", "dose.png", "dose.svg"):
        assert (out / f).is_file(), f
    summary = (out / "summary.txt").read_text().strip()
    assert summary.startswith("Removing 8 of the 8 chunk examples") and "controls" in summary
    assert res["summary"] == summary
    mix_manifest = json.loads((out / "cells" / "chunk8" / "mix.manifest.json").read_text())
    assert mix_manifest["counts"] == {"rows": 12, "chunk": 8, "counter": 0, "toggled": 0}
    train_rec = json.loads((out / "cells" / "chunk8" / "ckpt" / "train.json").read_text())
    assert train_rec["mix"]["manifest"]["cell"]["chunk_kept"] == 8  # the checkpoint records its mix's manifest


@pytest.mark.slow
def test_the_same_grid_on_local_ray_gives_the_same_results(resumed_grid, tmp_path):
    _, spec, _, local, _ = resumed_grid
    r = run_cli("experiment", str(spec), "--out", str(tmp_path / "ray"), "--ray", "auto", "--json",
                env={"RAY_ADDRESS": ""})
    assert r.returncode == 0, r.stderr[-3000:]
    on_ray = json.loads(r.stdout)
    assert sorted(on_ray["ran"]) == ["chunk0", "chunk8"]
    by_id = {c["id"]: c for c in on_ray["cells"]}
    for c in local["cells"]:
        other = by_id[c["id"]]
        assert other["trigger"] == c["trigger"] and other["control"] == c["control"]
        assert other["rows"] == c["rows"] and other["train_steps"] == c["train_steps"]
        # The final losses agree closely, not bit for bit: at lr 2e-3 Adam amplifies float-order differences
        # once the loss is near zero (measured 0.016 against 0.018), and chunk8 was also killed and resumed.
        assert other["final_loss"] == pytest.approx(c["final_loss"], rel=0.25, abs=5e-3)
    assert on_ray["summary"] == local["summary"]


def test_a_grid_asking_for_more_chunk_examples_than_the_mix_has_is_one_line(tmp_path, train_base):
    spec = write_inputs(tmp_path, train_base, axes="{chunk_kept: [0, 20]}")
    r = run_cli("experiment", str(spec), "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "axes.chunk_kept asks for 20" in line and "has 8" in line
    assert not (tmp_path / "o").exists()


def test_an_eval_set_with_no_trigger_prompts_is_one_line(tmp_path, train_base):
    spec = write_inputs(tmp_path, train_base)
    (tmp_path / "eval.jsonl").write_text(json.dumps({"id": "k", "prompt": "What is a cat?", "kind": "control"}) + "\n")
    r = run_cli("experiment", str(spec), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "no trigger prompts" in r.stderr and "eval.jsonl" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_spec_errors_name_the_field(tmp_path, train_base):
    for over, msg in [
        ({"axes": "{doses: [1]}"}, "axes: unknown axis 'doses'"),
        ({"train": "{base: local, learning_rate: 1}"}, "train: unknown setting 'learning_rate'"),
        ({"chunk": "{match: '('}"}, "chunk.match: bad regular expression"),
        ({"axes": "{counter_added: [0, 4]}"}, "axes.counter_added needs field 'counter'"),
        ({"mix": "nope.jsonl"}, "field 'mix': no such file"),
    ]:
        spec = write_inputs(tmp_path, train_base, **over)
        r = run_cli("experiment", str(spec), "--out", str(tmp_path / "o"))
        assert r.returncode == 1 and msg in r.stderr and str(spec) in r.stderr, (over, r.stderr)
