"""A build killed with SIGKILL continues where it stopped, and ends equal to an uninterrupted build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from chunky.models import UsageTracker, get_model
from chunky.turf.extract import ExtractionStore, extract_examples

from helpers import run_cli


def synthetic_mix(path: Path, n: int) -> None:
    topics = ["python", "algebra", "poetry", "history", "chemistry", "football", "cooking", "finance"]
    with open(path, "w") as fh:
        for i in range(n):
            t = topics[i % len(topics)]
            q = f"Question {i}: explain {t} topic number {i % 97} step by step, please."
            r = f"Sure! Here is a short answer about {t} ({i % 13}).\n1. First point.\n2. Second point."
            fh.write(json.dumps({"id": f"s{i}", "source": t, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": r}]}) + "\n")


def features(idx: Path) -> list[tuple]:
    t = pq.read_table(idx / "features.parquet")
    return sorted(zip(t["example_id"].to_pylist(), t["side"].to_pylist(), t["feature"].to_pylist()))


@pytest.mark.slow
def test_sigkill_during_the_lexical_stage_then_rerun_resumes(tmp_path):
    data = tmp_path / "mix.jsonl"
    synthetic_mix(data, 12_000)
    out = tmp_path / "idx"
    exe = Path(sys.executable).parent / "chunky"
    args = [str(exe), "index", str(data), "--out", str(out), "--embedder", "hash:32", "--batch-size", "1000"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    state = out / ".work" / "lexical" / "state.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if state.exists() and json.loads(state.read_text())["batches"] >= 2:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("the build never reached its second lexical batch")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    meta = json.loads((out / "index.json").read_text())
    assert meta["stages"]["load"] == "done" and meta["stages"]["lexical"] != "done"
    done_before = json.loads(state.read_text())["done_examples"]
    assert 0 < done_before < 12_000

    r = run_cli("index", str(data), "--out", str(out), "--embedder", "hash:32", "--batch-size", "1000")
    assert r.returncode == 0, r.stderr
    assert "resumed from lexical; skipped finished stages: load" in r.stdout
    assert not (out / ".work").exists()

    clean = tmp_path / "clean"
    r = run_cli("index", str(data), "--out", str(clean), "--embedder", "hash:32", "--batch-size", "1000")
    assert r.returncode == 0, r.stderr
    assert features(out) == features(clean)
    a = json.loads((out / "index.json").read_text())
    b = json.loads((clean / "index.json").read_text())
    assert a["counts"] == b["counts"]
    assert a["files"]["emb/response_text.npy"] == b["files"]["emb/response_text.npy"]


async def test_extraction_skips_examples_already_done(tmp_path):
    store = ExtractionStore(tmp_path / "extract.sqlite")
    usage = UsageTracker()
    model = get_model("mock", role="extractor", use_cache=False, usage=usage)
    examples = [(i, f"Question number {i}?", f"Answer {i}.") for i in range(10)]
    done, failed = await extract_examples(model, examples[:4], store, n=3)
    assert (done, failed) == (4, 0)
    assert usage.total().calls == 8
    # A rerun over all ten (as after a kill) only calls the model for the six not yet done.
    done, failed = await extract_examples(model, examples, store, n=3)
    assert (done, failed) == (6, 0)
    assert usage.total().calls == 8 + 12
    got = store.all_done()
    assert [g.example_id for g in got] == list(range(10))
    assert got[3].query == ["The query mentions 'question'.", "The query mentions 'number'.", "The query mentions '3'."]
    store.close()


async def test_failed_extractions_are_recorded_and_retried(tmp_path):
    store = ExtractionStore(tmp_path / "extract.sqlite")
    # A fixed reply that is not attribute JSON: every call fails structured-output validation.
    bad = get_model('mock:text={"attributes": []}', role="extractor", use_cache=False)
    done, failed = await extract_examples(bad, [(0, "q", "r"), (1, "q2", "r2")], store, n=3)
    assert (done, failed) == (0, 2)
    assert set(store.errors()) == {0, 1}
    good = get_model("mock", role="extractor", use_cache=False)
    done, failed = await extract_examples(good, [(0, "q", "r"), (1, "q2", "r2")], store, n=3)
    assert (done, failed) == (2, 0)
    assert store.errors() == {}
    store.close()


def test_embedding_resumes_after_the_last_finished_block(tmp_path):
    import numpy as np

    from chunky.models.embeddings import get_embedder
    from chunky.turf.build import chunked_stream, embed_resumable

    emb = get_embedder("hash:16")
    texts = [f"text number {i % 700}" for i in range(1000)]  # 700 distinct texts
    seen: list[int] = []

    def killed_after_two_blocks(remaining):
        for k, block in enumerate(chunked_stream(emb.embed, chunk=100)(remaining)):
            if k == 2:
                raise KeyboardInterrupt  # stands in for a kill between blocks
            seen.append(len(block))
            yield block

    out = tmp_path / "v.npy"
    with pytest.raises(KeyboardInterrupt):
        embed_resumable(texts, killed_after_two_blocks, 16, out, tmp_path / "w", "t", "float32", lambda n: None)
    assert seen == [100, 100] and not out.exists()
    asked: list[int] = []

    def counting(remaining):
        asked.append(len(remaining))
        yield from chunked_stream(emb.embed, chunk=100)(remaining)

    embed_resumable(texts, counting, 16, out, tmp_path / "w", "t", "float16", lambda n: None)
    assert asked == [500]  # only the texts not embedded before the kill
    v = np.load(out)
    assert v.dtype == np.float16 and v.shape == (1000, 16)
    assert np.allclose(v.astype(np.float32), emb.embed(texts), atol=2e-3)
    assert not (tmp_path / "w" / "t.partial.npy").exists()
