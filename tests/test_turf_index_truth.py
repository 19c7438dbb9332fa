"""`chunky index` tells the truth: options checked before any stage, nothing left by a build that never started,
a one-source warning, interrupts (SIGINT, SIGTERM) that exit 130 and say what was saved, and an index that refuses
vectors from another embedder."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_turf_index_resume import synthetic_mix

from chunky.errors import ConfigError
from chunky.turf.build import BuildOptions, IndexBuilder, Reporter
from chunky.turf.index import TurfIndex

from helpers import run_cli

DATA = Path(__file__).parent / "fixtures" / "data"


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stderr)
    return lines[0]


def test_every_bad_option_fails_before_any_stage_and_leaves_nothing(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    blank_gz = tmp_path / "blank.jsonl.gz"
    with gzip.open(blank_gz, "wt") as fh:
        fh.write("\n\n")
    good = str(DATA / "tulu.jsonl")
    cases = [
        ([str(tmp_path / "missing.jsonl")], "missing.jsonl: no such file or directory"),
        ([str(empty)], "empty.jsonl: the file is empty"),
        ([str(blank_gz)], "blank.jsonl.gz: the file has no rows"),
        ([good, "--embedder", "nonsense"], "embedder 'nonsense': not a known spec"),
        ([good, "--embedder", "http://127.0.0.1:8080/v1"], "http(s)://host:port/v1:<model>"),
        ([good, "--embedder", f"st:{tmp_path}/no-model"], "no such model folder"),
        ([good, "--source-field", "origin"], "--source-field origin: no such field in the first"),
        ([good, "--extractor", "llm", "--extract-model", "nosuch:model"], "--extract-model: model spec 'nosuch:model'"),
        ([good, "--turns", "some"], "--turns must be 'first' or 'all'"),
    ]
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"idx{i}"
        r = run_cli("index", *args, "--out", str(out))
        assert message in _one_error_line(r), (args, r.stderr)
        assert not out.exists(), args  # no stub folder, no stage ran

    # A build whose load stage finds no pair at all: the folder it created is removed too.
    nopairs = tmp_path / "nopairs.jsonl"
    nopairs.write_text('{"text": "a"}\n{"text": "b"}\n')
    r = run_cli("index", str(nopairs), "--out", str(tmp_path / "np"), "--embedder", "hash:8")
    assert "no (query, response) pair found in 2 rows" in r.stderr and r.returncode == 1
    assert not (tmp_path / "np").exists()


def test_a_stub_left_by_an_older_build_is_not_advertised_as_resumable_and_is_replaced(tmp_path):
    stub = tmp_path / "stub"
    (stub / "emb").mkdir(parents=True)
    (stub / ".work").mkdir()
    (stub / "index.json").write_text(json.dumps({
        "format": "chunky-index", "version": 1, "params": {"embedder": "minilm"},
        "stages": {"load": "pending", "lexical": "pending", "embed_text": "pending", "finalize": "pending"},
    }))
    r = run_cli("index", "info", str(stub))
    assert r.returncode == 0, r.stderr
    assert "resume" not in r.stdout and "no stage of this build finished" in r.stdout
    # Other parameters than the stub's are no reason to refuse: nothing was built.
    r = run_cli("index", str(DATA / "tulu.jsonl"), "--out", str(stub), "--embedder", "hash:8")
    assert r.returncode == 0, r.stderr
    assert TurfIndex.open(stub).meta.counts.examples == 22


def _sorted_by_source(path: Path, per_source: int = 60) -> None:
    with open(path, "w") as fh:
        for s in ("alpha", "beta", "gamma"):
            for i in range(per_source):
                msgs = [{"role": "user", "content": f"{s} question {i}?"}, {"role": "assistant", "content": f"{s} answer {i}."}]
                fh.write(json.dumps({"id": f"{s}{i}", "source": s, "messages": msgs}) + "\n")


def test_limit_over_a_mix_sorted_by_source_warns_that_the_index_has_one_source(tmp_path):
    data = tmp_path / "sorted.jsonl"
    _sorted_by_source(data)
    r = run_cli("index", str(data), "--out", str(tmp_path / "lim"), "--embedder", "hash:8", "--limit", "50")
    assert r.returncode == 0, r.stderr
    warning = " ".join(r.stderr.split())  # rich may wrap the progress line; the final echo is one line
    assert "the index holds one source (alpha)" in warning and "names several (e.g. beta)" in warning
    assert "use --sample N" in warning
    r = run_cli("index", str(data), "--out", str(tmp_path / "smp"), "--embedder", "hash:8", "--sample", "50")
    assert r.returncode == 0, r.stderr
    assert "one source" not in r.stderr
    assert len(TurfIndex.open(tmp_path / "smp").meta.sources) == 3


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_build_exits_130_says_what_it_saved_and_the_rerun_says_where_it_resumed(tmp_path, sig):
    data = tmp_path / "mix.jsonl"
    synthetic_mix(data, 12_000)
    out = tmp_path / "idx"
    args = [str(Path(sys.executable).parent / "chunky"), "index", str(data), "--out", str(out), "--embedder", "hash:32",
            "--batch-size", "1000"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    state = out / ".work" / "lexical" / "state.json"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if state.exists() and json.loads(state.read_text())["batches"] >= 2:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        else:
            pytest.fail("the build never reached its second lexical batch")
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    saved = json.loads(state.read_text())["done_examples"]
    assert f"interrupted; saved: finished stages: load; lexical: {saved:,} of 12,000 done" in last
    assert last.endswith("rerun the same command to resume")

    r = run_cli(*args[1:])
    assert r.returncode == 0, r.stderr
    err = " ".join(r.stderr.split())
    assert "finished stages load; continuing with lexical" in err
    assert f"lexical: resuming after {saved:,} of 12,000 examples" in err
    assert "resumed from lexical" in r.stdout


class _StopAt(Reporter):
    """Stands in for Ctrl-C when the build reaches `stage`."""

    def __init__(self, stage: str):
        self.at = stage

    def stage(self, name, total):
        if name == self.at:
            raise KeyboardInterrupt
        return super().stage(name, total)


@pytest.mark.slow
def test_an_index_refuses_vectors_from_another_embedder(tmp_path, monkeypatch):
    # A small model2vec model (random 16-d vectors over MiniLM's tokenizer): made in a moment, loaded like any.
    from model2vec import StaticModel
    from safetensors.numpy import load_file, save_file
    from tokenizers import Tokenizer

    from chunky.models import embeddings as E

    model = tmp_path / "static-model"
    tok = Tokenizer.from_file(str(E.embedded_minilm_path() / "tokenizer.json"))
    vectors = np.random.default_rng(1).normal(size=(tok.get_vocab_size(), 16)).astype(np.float32)
    StaticModel(vectors=vectors, tokenizer=tok, normalize=True).save_pretrained(str(model))
    spec = f"static:{model}"
    opts = dict(data=str(DATA / "tulu.jsonl"), extractor="both", extract_model="mock", embedder=spec, clusters=2)
    # The response texts are embedded, then the build stops (as on Ctrl-C) before extracting attributes.
    with pytest.raises(KeyboardInterrupt):
        IndexBuilder(BuildOptions(out=tmp_path / "idx", **opts), _StopAt("extract")).run()
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["stages"]["embed_text"] == "done" and meta["embedder"]["spec"] == spec and meta["embedder"]["probe"]

    # The model behind the same spec changes (retrained, replaced): its vectors are not the index's.
    weights = load_file(str(model / "model.safetensors"))
    rng = np.random.default_rng(0)
    weights = {k: (rng.permutation(v) if v.ndim == 2 else v) for k, v in weights.items()}
    save_file(weights, str(model / "model.safetensors"))
    monkeypatch.setattr(E, "_CACHE", {})
    with pytest.raises(ConfigError, match=r"different model behind embedder 'static:.*rebuild the index with --force"):
        IndexBuilder(BuildOptions(out=tmp_path / "idx", **opts)).run()  # the resume would embed attributes with it

    # A finished index: its embedder is checked when loaded, and any other embedder is refused.
    done = tmp_path / "done"
    IndexBuilder(BuildOptions(data=str(DATA / "tulu.jsonl"), out=done, embedder="hash:32")).run()
    idx = TurfIndex.open(done)
    assert idx.embedder().spec == "hash:32"
    for other in ("hash:64", spec):
        with pytest.raises(ConfigError, match=r"made by embedder hash:32 \(d=32\)"):
            idx.check_embedder(E.get_embedder(other))
    with pytest.raises(ConfigError, match="different parameters \\(embedder\\)"):
        IndexBuilder(BuildOptions(data=str(DATA / "tulu.jsonl"), out=done, embedder="hash:64")).run()
