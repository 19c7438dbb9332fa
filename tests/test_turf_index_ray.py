"""The Ray build (local Ray instance, 2 CPUs) writes the same index as the local build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from chunky.errors import ConfigError
from chunky.turf.build import BuildOptions, IndexBuilder
from chunky.turf.index import TurfIndex

DATA = Path(__file__).parent / "fixtures" / "data"
ray = pytest.importorskip("ray")


def _sorted_rows(t):
    cols = t.column_names
    return sorted(zip(*(t[c].to_pylist() for c in cols)), key=repr)


@pytest.mark.slow
def test_ray_build_equals_local_build(tmp_path, llama_server):
    # hash:64 embeds inside the Ray actors like any embedder; MiniLM itself is tested in test_embeddings.py
    # (loading it in three actor pools would add minutes on 2 cores).
    from chunky.turf.ray_build import RayIndexBuilder

    ray.init(num_cpus=2, log_to_driver=False, configure_logging=False)
    try:
        common = dict(data=str(DATA / "tulu.jsonl"), extractor="both", extract_model=f"{llama_server}:smollm2",
                      attributes_per_side=2, limit=3, embedder="hash:64", clusters=2)
        RayIndexBuilder(BuildOptions(out=tmp_path / "ray", **common), ray_address="auto").run()
        # The vLLM-engine path needs ray.data.llm + vllm, absent here: a clear error, not a crash.
        with pytest.raises(ConfigError, match=r"ray\.data\.llm, which is not available here"):
            RayIndexBuilder(BuildOptions(out=tmp_path / "vllm", **{**common, "extract_model": "vllm:some/model"})).run()
        # Ray Data reads JSONL lines itself: a gzip file and a Parquet file give the same examples as locally.
        pq_opts = BuildOptions(data=str(DATA / "prompt_response.parquet"), out=tmp_path / "ray-pq", embedder="hash:16",
                               source_field="origin")
        RayIndexBuilder(pq_opts).run()
    finally:
        ray.shutdown()
    IndexBuilder(BuildOptions(out=tmp_path / "local", **common)).run()
    IndexBuilder(BuildOptions(data=str(DATA / "prompt_response.parquet"), out=tmp_path / "local-pq", embedder="hash:16",
                              source_field="origin")).run()

    r, l = TurfIndex.open(tmp_path / "ray"), TurfIndex.open(tmp_path / "local")
    assert r.meta.counts == l.meta.counts
    assert r.meta.data == l.meta.data
    assert r.meta.sources == l.meta.sources
    assert r.examples().equals(l.examples())
    assert _sorted_rows(r.features()) == _sorted_rows(l.features())
    assert r.feature_stats().equals(l.feature_stats())
    assert r.attributes().equals(l.attributes())
    assert r.meta.counts.query_attributes > 0
    for name in ("response_text_emb", "query_attr_emb", "response_attr_emb", "centroids"):
        a, b = getattr(r, name)(), getattr(l, name)()
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-4), name
    assert r.clusters().equals(l.clusters())
    rp = pq.read_table(tmp_path / "ray-pq" / "examples.parquet")
    lp = pq.read_table(tmp_path / "local-pq" / "examples.parquet")
    assert rp.equals(lp) and rp.num_rows == 3
