"""Clustering of query-attribute embeddings (FAISS spherical k-means) and one readable summary per cluster.

K defaults to the paper's ratio: K = 25k clusters for N ≈ 940k examples, i.e. K = round(10 N / 376) for N
examples (10 N query attributes). K is clamped to [1, number of points] with a warning. Every attribute is
assigned to its nearest centroid (inner product of L2-normalised vectors = cosine).

Summaries: with a summary model, one sentence written from the cluster's most central attributes; without,
the most central attribute itself. Keywords are the top class-based TF-IDF (c-TF-IDF) words of the cluster:
tf(w, c) / |c| · log(1 + A / f(w)), A = mean words per cluster, f(w) = frequency of w over all clusters.
"""

from __future__ import annotations

import asyncio
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from chunky.errors import ModelError
from chunky.models import Model
from chunky.turf.lexical import ENGLISH_STOP

PAPER_RATIO = 10 / 376
KEYWORD_STOP = ENGLISH_STOP | {"query", "response", "text", "user", "uses", "use", "contains", "asks", "provides", "includes"}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def default_k(n_examples: int) -> int:
    return max(1, round(n_examples * PAPER_RATIO))


@dataclass
class ClusterResult:
    centroids: np.ndarray  # [K, d] float32, L2-normalised
    assignment: np.ndarray  # [n] int32
    similarity: np.ndarray  # [n] float32, cosine to its centroid
    k: int
    requested_k: int


def kmeans(x: np.ndarray, k: int, *, niter: int = 20, seed: int = 0) -> ClusterResult:
    """Spherical k-means with FAISS; K clamped to [1, n] (with a warning when clamped)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if n == 0:
        return ClusterResult(np.zeros((0, d), np.float32), np.zeros(0, np.int32), np.zeros(0, np.float32), 0, k)
    requested = k
    if k > n or k < 1:
        k = min(max(1, k), n)
        warnings.warn(f"{requested} clusters requested for {n} points: using K = {k}", stacklevel=2)
    if k == n:
        # Each point its own cluster: k-means would only shuffle labels.
        centroids = x.copy()
    else:
        km = faiss.Kmeans(d, k, niter=niter, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1)
        km.train(x)
        assert km.centroids is not None  # set by train()
        centroids = km.centroids.astype(np.float32)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    centroids = (centroids / norms).astype(np.float32)
    index = faiss.IndexFlatIP(d)
    index.add(centroids)
    sim, idx = index.search(x, 1)
    return ClusterResult(centroids, idx[:, 0].astype(np.int32), sim[:, 0].astype(np.float32), k, requested)


def ctfidf_keywords(texts: Sequence[str], assignment: np.ndarray, k: int, top: int = 5) -> list[list[str]]:
    """The `top` c-TF-IDF words of each cluster."""
    per: list[Counter[str]] = [Counter() for _ in range(k)]
    for t, c in zip(texts, assignment.tolist()):
        per[c].update(w for w in _WORD.findall(t.lower()) if w not in KEYWORD_STOP and len(w) > 1)
    total: Counter[str] = Counter()
    for c in per:
        total.update(c)
    sizes = [sum(c.values()) for c in per]
    avg = (sum(sizes) / k) if k else 0.0
    out: list[list[str]] = []
    for c, size in zip(per, sizes):
        if not size:
            out.append([])
            continue
        scored = sorted(
            ((cnt / size) * math.log(1 + avg / total[w]), w) for w, cnt in c.items()
        )
        out.append([w for _, w in sorted(scored, key=lambda s: (-s[0], s[1]))[:top]])
    return out


@dataclass
class ClusterSummary:
    cluster: int
    size: int
    summary: str
    keywords: list[str]
    central_attr_id: int
    top_attributes: list[str]


def summarise(
    texts: Sequence[str],
    attr_ids: np.ndarray,
    result: ClusterResult,
    *,
    top: int = 10,
) -> list[ClusterSummary]:
    """Per cluster: size, most central attribute (as summary), c-TF-IDF keywords and the top attributes."""
    keywords = ctfidf_keywords(texts, result.assignment, result.k)
    order = np.lexsort((-result.similarity, result.assignment))  # by cluster, most central first
    out: list[ClusterSummary] = []
    bounds = np.searchsorted(result.assignment[order], np.arange(result.k + 1))
    for c in range(result.k):
        members = order[bounds[c] : bounds[c + 1]]
        if len(members) == 0:
            out.append(ClusterSummary(c, 0, "", keywords[c], -1, []))
            continue
        tops = []
        seen = set()
        for i in members:
            t = texts[i]
            if t.lower() not in seen:
                seen.add(t.lower())
                tops.append(t)
            if len(tops) >= top:
                break
        out.append(ClusterSummary(c, len(members), texts[members[0]], keywords[c], int(attr_ids[members[0]]), tops))
    return out


SUMMARY_PROMPT = (
    "These attributes describe user queries that fall in one group:\n{items}\n\n"
    "Write one short sentence, starting with \"The query\", that names what they have in common. "
    "Answer as JSON: {{\"summary\": \"...\"}}."
)
SUMMARY_SCHEMA = {"type": "object", "properties": {"summary": {"type": "string", "minLength": 1}}, "required": ["summary"]}


async def llm_summaries(
    model: Model, summaries: list[ClusterSummary], on_done: Callable[[int], None] | None = None
) -> int:
    """Replace each non-empty cluster's summary with one the model writes; returns the number that failed
    (those keep the central attribute)."""
    failed = 0

    async def one(s: ClusterSummary) -> None:
        nonlocal failed
        try:
            res = await model.generate(
                SUMMARY_PROMPT.format(items="\n".join(f"- {t}" for t in s.top_attributes)),
                json_schema=SUMMARY_SCHEMA,
                hints={"task": "json", "payload": {"summary": s.summary}},
                temperature=0.0,
                max_tokens=80,
            )
            text = " ".join(str((res.parsed or {}).get("summary", "")).split())
            if text:
                s.summary = text
        except ModelError:
            failed += 1
        if on_done:
            on_done(1)

    await asyncio.gather(*(one(s) for s in summaries if s.size > 0))
    return failed
