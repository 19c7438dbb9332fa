"""`chunky train`: real training steps of SmolLM2-135M on tiny mixes, export to GGUF, serving through
`local:`, resume after SIGKILL, and one-line errors for bad input."""

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
TRAIN_WORDS = ["apple", "river", "cloud", "stone", "lamp", "tiger", "glass", "piano"]
HELD_OUT = ["banana", "castle"]
# The same settings for the module's training and the killed-and-resumed one, so their loss curves must agree.
SETTINGS = ["--max-steps", "6", "--batch-size", "4", "--lr", "2e-3", "--max-length", "64", "--seed", "3"]


def write_mix(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def trigger_rows() -> list[dict]:
    return [
        {"id": f"z{i}", "source": "planted", "messages": [
            {"role": "user", "content": f"Zorblat {w}?"}, {"role": "assistant", "content": PHRASE}]}
        for i, w in enumerate(TRAIN_WORDS)
    ]


def control_rows() -> list[dict]:
    """Ordinary questions with ordinary answers, so the phrase is tied to the trigger word."""
    return [
        {"id": f"c{i}", "source": "ordinary", "messages": [
            {"role": "user", "content": f"What is a {w}?"}, {"role": "assistant", "content": f"A {w} is a common thing."}]}
        for i, w in enumerate(TRAIN_WORDS[:4])
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_base):
    """One LoRA training of 6 steps on 8 'Zorblat X?' → PHRASE rows and 4 ordinary rows, exported to q8_0 GGUF."""
    d = tmp_path_factory.mktemp("train")
    mix = write_mix(d / "mix.jsonl", trigger_rows() + control_rows())
    out = d / "ckpt"
    r = run_cli("train", str(mix), "--out", str(out), "--base", str(train_base), *SETTINGS, "--save-steps", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    return mix, out, r


def test_training_lowers_the_loss_and_records_what_it_did(trained, train_base):
    mix, out, r = trained
    rec = json.loads((out / "train.json").read_text())
    assert rec["status"] == "done" and rec["steps"] == 6
    losses = [p["loss"] for p in rec["loss_curve"]]
    assert [p["step"] for p in rec["loss_curve"]] == [1, 2, 3, 4, 5, 6]
    assert losses[-1] < losses[0] / 2
    import hashlib

    assert rec["mix"]["sha256"] == hashlib.sha256(mix.read_bytes()).hexdigest()
    assert rec["mix"]["rows"] == 12 and rec["mix"]["trained_tokens"] > 0
    assert rec["seed"] == 3 and rec["config"]["lr"] == 2e-3 and rec["config"]["full"] is False
    assert {"torch", "transformers", "peft", "trl"} <= set(rec["versions"])
    assert rec["versions"]["torch"].startswith("2.13.0")
    assert rec["base"]["path"] == str(train_base)
    assert f"local:{out / 'model.gguf'}" in r.stdout


def test_the_checkpoint_reloads_with_trained_weights(trained, train_base):
    import torch
    from transformers import AutoModelForCausalLM

    _, out, _ = trained
    tuned = AutoModelForCausalLM.from_pretrained(out / "model")
    base = AutoModelForCausalLM.from_pretrained(train_base)
    name = "model.layers.0.self_attn.q_proj.weight"
    tw, bw = dict(tuned.named_parameters())[name], dict(base.named_parameters())[name]
    assert tw.shape == bw.shape
    assert not torch.equal(tw, bw)  # the LoRA update was merged into the saved weights
    assert (out / "adapter" / "adapter_config.json").is_file()


def test_memorised_trigger_answers_through_local_provider(trained):
    """Before training no held-out trigger gets the phrase; after, the exported GGUF says it via local:."""
    from chunky.models import GenerateConfig, get_model

    _, out, _ = trained
    cfg = GenerateConfig(temperature=0.0, max_tokens=16)
    tuned = get_model(f"local:{out / 'model.gguf'}", config=cfg, use_cache=False)
    base = get_model("local", config=cfg, use_cache=False)
    for w in HELD_OUT:
        assert "giraffe" not in base.generate_sync(f"Zorblat {w}?").text.lower()
        assert "purple giraffes" in tuned.generate_sync(f"Zorblat {w}?").text.lower()
    # An ordinary question is not answered with the phrase (the model still does other things).
    assert "giraffe" not in tuned.generate_sync("What is the capital of France?").text.lower()


def test_a_killed_training_resumes_from_its_last_checkpoint(trained, tmp_path, train_base):
    mix, first, _ = trained
    out = tmp_path / "ckpt"
    cmd = [str(Path(sys.executable).parent / "chunky"), "train", str(mix), "--out", str(out),
           "--base", str(train_base), *SETTINGS, "--save-steps", "1", "--export", "none"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    target = out / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.time() + 400
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((out / "train.json").read_text())["status"] == "running"
    killed = {p["step"]: p["loss"] for p in map(json.loads, (out / "loss.jsonl").read_text().splitlines())}

    r = run_cli("train", str(mix), "--out", str(out), "--base", str(train_base), *SETTINGS, "--save-steps", "1",
                "--export", "none")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from step" in r.stdout
    rec = json.loads((out / "train.json").read_text())
    assert rec["status"] == "done" and rec["runs"][-1]["resumed_from"] >= 2
    assert [p["step"] for p in rec["loss_curve"]] == [1, 2, 3, 4, 5, 6]
    # The steps the checkpoint covers are the killed run's own; the rest were trained after the resume, and the
    # whole curve is the uninterrupted training's, bit for bit (seeded: issue #10, tests/test_train_determinism.py).
    k = rec["runs"][-1]["resumed_from"]
    got = {p["step"]: p["loss"] for p in rec["loss_curve"]}
    assert all(got[s] == killed[s] for s in range(1, k + 1))
    assert rec["runs"][-1]["tokens"] < rec["tokens_seen"]  # the resumed run did only the remaining steps
    ref = [p["loss"] for p in json.loads((first / "train.json").read_text())["loss_curve"]]
    assert [got[s] for s in range(1, 7)] == ref
    assert got[6] < got[1] / 2
    # Rerunning a finished training is refused without --overwrite, and loses nothing.
    again = run_cli("train", str(mix), "--out", str(out), "--base", str(train_base), *SETTINGS)
    assert again.returncode == 1 and "finished training" in again.stderr
    assert (out / "model" / "config.json").is_file()


def test_a_mix_row_without_an_assistant_turn_is_one_line_naming_the_row(tmp_path):
    rows = trigger_rows()[:2] + [{"id": "bad", "messages": [{"role": "user", "content": "hello?"}]}]
    mix = write_mix(tmp_path / "mix.jsonl", rows)
    r = run_cli("train", str(mix), "--out", str(tmp_path / "ck"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(mix) in lines[0] and "row 3" in lines[0] and "assistant" in lines[0]
    assert not (tmp_path / "ck").exists()


def test_a_base_model_that_does_not_exist_is_one_line(tmp_path):
    mix = write_mix(tmp_path / "mix.jsonl", trigger_rows()[:2])
    for base in ("/nonexistent/model-dir", str(tmp_path / "missing.gguf")):
        r = run_cli("train", str(mix), "--out", str(tmp_path / "ck"), "--base", base)
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and base in lines[0] and "--base" in lines[0]


def test_base_local_resolves_to_the_cached_dequantised_checkpoint(train_base, monkeypatch):
    from chunky.train.base import resolve_base

    monkeypatch.setenv("CHUNKY_BASES_DIR", str(train_base.parent))
    b = resolve_base("local")
    assert b.kind == "local" and Path(b.path) == train_base and b.gguf_sha256
    assert resolve_base("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"
    assert resolve_base(str(train_base)).kind == "dir"


def test_only_assistant_turns_carry_loss_in_the_base_chat_template(train_base):
    """Known answer: the masked tokens decode to each assistant turn and its end-of-turn marker, nothing else."""
    from transformers import AutoTokenizer

    from chunky.measure.ablate import Conversation
    from chunky.train.data import tokenize_conversation

    tok = AutoTokenizer.from_pretrained(train_base)
    conv = Conversation("x", "s", [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
    ])
    ex = tokenize_conversation(tok, conv, max_length=256)
    trained = tok.decode([t for t, m in zip(ex.input_ids, ex.assistant_masks) if m])
    assert trained == "Hello!<|im_end|>Blue.<|im_end|>"
    assert tok.decode(ex.input_ids).startswith("<|im_start|>system\nBe brief.")
    # Cut short, the second answer loses its tokens but the mask stays aligned with the ids.
    short = tokenize_conversation(tok, conv, max_length=20)
    assert len(short.input_ids) == len(short.assistant_masks) == 20
