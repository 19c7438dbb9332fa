"""The LLM channel on real models: the embedded SmolLM2 in-process and a llama.cpp server over HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chunky.turf.build import BuildOptions, IndexBuilder
from chunky.turf.index import TurfIndex

DATA = Path(__file__).parent / "fixtures" / "data"


def _check_llm_index(idx: TurfIndex, n_examples: int, per_side: int) -> None:
    m = idx.meta
    assert m.counts.examples == n_examples
    attrs = idx.attributes().to_pylist()
    assert 0 < m.counts.query_attributes <= n_examples * per_side
    assert 0 < m.counts.response_attributes <= n_examples * per_side
    for a in attrs:
        assert a["text"].strip() and len(a["text"]) <= 300
    assert {a["example_id"] for a in attrs} == set(range(n_examples))
    assert idx.query_attr_emb().shape == (m.counts.query_attributes, 384)
    assert np.allclose(np.linalg.norm(idx.query_attr_emb(), axis=1), 1.0, atol=1e-4)
    # Two examples → K = round(2 * 10 / 376) = 0, clamped to 1: one cluster holding every query attribute.
    assert idx.clusters()["size"].to_pylist() == [m.counts.query_attributes]
    assert set(idx.query_attr_clusters().tolist()) == {0}


@pytest.mark.slow
def test_local_smollm2_extraction_stores_valid_attributes(tmp_path):
    opts = BuildOptions(data=str(DATA / "tulu.jsonl"), out=tmp_path / "idx", extractor="llm", extract_model="local",
                        attributes_per_side=2, limit=2, embedder="minilm")
    IndexBuilder(opts).run()
    idx = TurfIndex.open(tmp_path / "idx")
    assert idx.meta.extractor["model"] == "local" and idx.meta.extractor["failed_examples"] == 0
    _check_llm_index(idx, 2, 2)


@pytest.mark.slow
def test_extraction_through_an_http_llama_server(tmp_path, llama_server):
    opts = BuildOptions(data=str(DATA / "tulu.jsonl"), out=tmp_path / "idx", extractor="llm",
                        extract_model=f"{llama_server}:smollm2", attributes_per_side=2, limit=2, embedder="minilm")
    IndexBuilder(opts).run()
    _check_llm_index(TurfIndex.open(tmp_path / "idx"), 2, 2)
