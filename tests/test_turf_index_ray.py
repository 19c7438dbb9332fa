"""The Ray build on a real two-node Ray cluster (head + a second node, both on 127.0.0.1, started with `ray start`)
writes the same index as the local build."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from chunky.turf.build import BuildOptions, IndexBuilder
from chunky.turf.index import TurfIndex

from helpers import free_port, run_cli

DATA = Path(__file__).parent / "fixtures" / "data"
ray = pytest.importorskip("ray")
RAY = str(Path(sys.executable).parent / "ray")


def _start(args: list[str], log: Path) -> subprocess.Popen:
    # --block keeps `ray start` in the foreground: its process group holds the node's processes, stopped by id below.
    with open(log, "wb") as fh:
        return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", "--num-cpus", "1",
                                 "--object-store-memory", str(150 * 1024 * 1024), *args],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    try:  # what the node started in its group (raylet, workers) goes with it
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory):
    """`ray start --head` and `ray start --address=...` (its own resource `node2`), both on 127.0.0.1."""
    logs = tmp_path_factory.mktemp("ray-logs")
    # Ray 2.5x clusters require a token by default: one of the test's own, for the nodes and this driver.
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = _start(["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--include-dashboard", "false",
                   "--temp-dir", temp_dir], logs / "head.log")
    nodes = [head]
    try:
        second = None
        deadline = time.time() + 300  # a busy machine is slow, never a failure
        while time.time() < deadline:
            assert head.poll() is None, (logs / "head.log").read_text()[-3000:]
            if second is None:
                if subprocess.run([RAY, "status", "--address", address], capture_output=True).returncode == 0:
                    second = _start(["--address", address, "--node-ip-address", "127.0.0.1", "--resources",
                                     json.dumps({"node2": 1})], logs / "node2.log")
                    nodes.append(second)
            else:
                assert second.poll() is None, (logs / "node2.log").read_text()[-3000:]
                r = subprocess.run([RAY, "status", "--address", address], capture_output=True, text=True)
                if r.returncode == 0 and "node2" in r.stdout and r.stdout.count("node_") >= 2:
                    break
            time.sleep(1)
        else:
            pytest.fail("the two-node Ray cluster did not come up")
        yield address
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _sorted_rows(t):
    cols = t.column_names
    return sorted(zip(*(t[c].to_pylist() for c in cols)), key=repr)


def _same_index(a: Path, b: Path) -> None:
    ray_idx, local_idx = TurfIndex.open(a), TurfIndex.open(b)
    assert ray_idx.meta.counts == local_idx.meta.counts
    assert ray_idx.meta.data == local_idx.meta.data
    assert ray_idx.meta.sources == local_idx.meta.sources
    assert ray_idx.meta.embedder == local_idx.meta.embedder
    assert ray_idx.examples().equals(local_idx.examples())
    assert _sorted_rows(ray_idx.features()) == _sorted_rows(local_idx.features())
    assert ray_idx.feature_stats().equals(local_idx.feature_stats())
    assert ray_idx.attributes().equals(local_idx.attributes())
    for name in ("response_text_emb", "query_attr_emb", "response_attr_emb", "centroids"):
        x, y = getattr(ray_idx, name)(), getattr(local_idx, name)()
        assert x.shape == y.shape and np.allclose(x, y, atol=1e-4), name
    assert ray_idx.clusters().equals(local_idx.clusters())


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ray_build_equals_local_build(tmp_path, two_node_cluster):
    # `chunky index --ray ADDRESS` drives the cluster from its own process, as a user would. Both channels: Ray
    # Data reads the JSONL lines, map_batches runs the lexical analysis, actors embed (hash:64: no model load per
    # actor) and extract attributes (the mock model: the actors' calls go through chunky.models like any
    # provider's); clustering on the driver.
    common = ["--extractor", "both", "--extract-model", "mock", "--attributes-per-side", "3", "--embedder", "hash:64",
              "--clusters", "3"]
    r = run_cli("index", str(DATA / "tulu.jsonl"), "--out", str(tmp_path / "ray"), *common, "--ray", two_node_cluster)
    assert r.returncode == 0, r.stderr[-3000:]
    # Ray Data reads Parquet itself too: the same examples as locally.
    pq_args = [str(DATA / "prompt_response.parquet"), "--embedder", "hash:16", "--source-field", "origin"]
    r = run_cli("index", pq_args[0], "--out", str(tmp_path / "ray-pq"), *pq_args[1:], "--ray", two_node_cluster)
    assert r.returncode == 0, r.stderr[-3000:]
    # The vLLM-engine path needs ray.data.llm + vllm, absent here: a clear error before any stage, not a crash.
    r = run_cli("index", str(DATA / "tulu.jsonl"), "--out", str(tmp_path / "vllm"), *common[:2], "--extract-model",
                "vllm:some/model", "--ray", two_node_cluster)
    assert r.returncode == 1 and "ray.data.llm, which is not available here" in r.stderr
    assert not (tmp_path / "vllm").exists()

    IndexBuilder(BuildOptions(data=str(DATA / "tulu.jsonl"), out=tmp_path / "local", extractor="both",
                              extract_model="mock", attributes_per_side=3, embedder="hash:64", clusters=3)).run()
    IndexBuilder(BuildOptions(data=pq_args[0], out=tmp_path / "local-pq", embedder="hash:16", source_field="origin")).run()
    _same_index(tmp_path / "ray", tmp_path / "local")
    assert TurfIndex.open(tmp_path / "ray").meta.counts.query_attributes > 0
    rp = pq.read_table(tmp_path / "ray-pq" / "examples.parquet")
    assert rp.equals(pq.read_table(tmp_path / "local-pq" / "examples.parquet")) and rp.num_rows == 3
