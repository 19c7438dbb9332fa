"""Export an index to the SURF authors' `pseudo_sae_attributes.jsonl`, so their SURF can use our index.

One record per example with LLM attributes: `prompt`, `response`, `source`, `attributes` (the raw query
attributes), `sae_attributes` (the summary of each attribute's cluster) and `normalized_weights` (per attribute,
1.0 at its cluster's centroid and 0.0 at the cluster's farthest member, from cosine similarity).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from chunky.errors import ChunkyError
from chunky.turf.index import TurfIndex


@dataclass
class PseudoSaeRecord:
    prompt: str
    response: str
    source: str
    attributes: list[str]
    sae_attributes: list[str]
    normalized_weights: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def pseudo_sae_records(index: TurfIndex) -> Iterator[PseudoSaeRecord]:
    """The records of every example with query attributes, in example order (SURF reads these directly)."""
    if not index.has_llm or index.meta.counts.query_attributes == 0:
        raise ChunkyError(f"{index.path}: has no LLM attributes; build it with --extractor llm or both")
    attrs = index.attributes()
    q = attrs.filter(pc.equal(attrs["side"], "query"))
    eids = q["example_id"].to_numpy()
    clusters = q["cluster"].to_numpy()
    texts = q["text"].to_pylist()
    emb = np.asarray(index.query_attr_emb(), dtype=np.float32)
    cent = np.asarray(index.centroids(), dtype=np.float32)
    sim = np.einsum("ij,ij->i", emb, cent[clusters]) if len(clusters) else np.zeros(0, np.float32)
    k = len(cent)
    lo = np.full(k, np.inf, dtype=np.float32)
    hi = np.full(k, -np.inf, dtype=np.float32)
    np.minimum.at(lo, clusters, sim)
    np.maximum.at(hi, clusters, sim)
    span = hi[clusters] - lo[clusters]
    weight = np.where(span > 1e-9, (sim - lo[clusters]) / np.where(span > 1e-9, span, 1.0), 1.0)
    summaries = dict(zip(index.clusters()["cluster"].to_pylist(), index.clusters()["summary"].to_pylist()))
    ex = index.examples(["example_id", "source", "query", "response"])
    ex_by_id = {e: i for i, e in enumerate(ex["example_id"].to_pylist())}
    sources = ex["source"].to_pylist()
    queries = ex["query"].to_pylist()
    responses = ex["response"].to_pylist()
    order = np.argsort(eids, kind="stable")
    bounds = np.flatnonzero(np.diff(eids[order])) + 1
    for group in np.split(order, bounds):
        if len(group) == 0:
            continue
        row = ex_by_id[int(eids[group[0]])]
        yield PseudoSaeRecord(
            prompt=queries[row],
            response=responses[row],
            source=sources[row],
            attributes=[texts[i] for i in group],
            sae_attributes=[summaries.get(int(clusters[i]), texts[i]) for i in group],
            normalized_weights=[round(float(weight[i]), 4) for i in group],
        )


def export_pseudo_sae(index: TurfIndex, out: str | os.PathLike[str]) -> int:
    """Write pseudo_sae_attributes.jsonl (atomically); returns the number of records."""
    outp = Path(out)
    outp.parent.mkdir(parents=True, exist_ok=True)
    tmp = outp.with_name(outp.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in pseudo_sae_records(index):
            fh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, outp)
    return n
