"""The evidence both channels show for a retrieved group of training examples: the sources behind it (share
against the mix) and a few of its examples, clipped for display."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from chunky.turf.trace.records import SourceShare, TrainingExample

if TYPE_CHECKING:  # pragma: no cover
    from chunky.turf.index import SourceCodes, TurfIndex


def source_shares(sources: SourceCodes, example_ids: np.ndarray, top: int = 8) -> list[SourceShare]:
    """The `top` sources of these examples, most hits first, each with its share against its share of the mix."""
    ids = np.asarray(example_ids, dtype=np.int64)
    if not len(ids):
        return []
    counts = np.bincount(sources.codes[ids], minlength=len(sources.names))
    total = int(counts.sum())
    out = []
    for c in np.argsort(-counts, kind="stable")[:top]:
        if counts[c] == 0:
            break
        share = counts[c] / total
        mix = sources.sizes[c] / sources.n
        out.append(SourceShare(sources.names[c], int(counts[c]), float(share), float(mix), float(share / mix)))
    return out


def training_examples(idx: TurfIndex, picks: Sequence[tuple[int, float, str]]) -> list[TrainingExample]:
    """The picked examples, as (example_id, similarity, matched text), in the order given."""
    rows = idx.examples_by_id([e for e, _, _ in picks])
    out = []
    for e, sim, matched in picks:
        if e in rows:
            row = rows[e]
            out.append(TrainingExample(e, row.id, row.source, clip(row.query), clip(row.response), sim, matched))
    return out


def clip(text: str, n: int = 600) -> str:
    return text if len(text) <= n else text[:n] + "…"
