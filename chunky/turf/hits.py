"""Hit counting: how often each query cluster (or lexical feature) appears among the training examples
retrieved for a crux, against its base rate in the whole mix (paper App. D.1.4), plus the small
statistics both TURF channels share (Wilson intervals, log-odds with an informative prior)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ExampleClusters:
    """For every example, the set of query clusters its query attributes fall in (CSR layout).

    Built once per index from attributes.parquet's query side; an example counts once per cluster even
    when several of its query attributes land in the same cluster."""

    offsets: np.ndarray  # int64 [n_examples + 1]
    clusters: np.ndarray  # int32, clusters of example i are clusters[offsets[i]:offsets[i+1]]
    n_clusters: int
    df: np.ndarray = field(init=False)  # int64 [n_clusters]: examples whose query has the cluster
    n_examples_with_attrs: int = field(init=False)

    def __post_init__(self) -> None:
        self.df = np.bincount(self.clusters, minlength=self.n_clusters).astype(np.int64)
        self.n_examples_with_attrs = int(np.count_nonzero(np.diff(self.offsets)))

    @classmethod
    def build(cls, example_ids: np.ndarray, clusters: np.ndarray, n_examples: int, n_clusters: int) -> ExampleClusters:
        ex = np.asarray(example_ids, dtype=np.int64)
        cl = np.asarray(clusters, dtype=np.int64)
        keep = cl >= 0
        ex, cl = ex[keep], cl[keep]
        if len(ex) and (ex.min() < 0 or ex.max() >= n_examples):
            raise ValueError("query attribute refers to an example_id outside the index")
        if len(cl) and cl.max() >= n_clusters:
            raise ValueError("query attribute refers to a cluster outside clusters.parquet")
        # Unique (example, cluster) pairs, sorted by example: the CSR rows.
        pairs = np.unique(ex * np.int64(n_clusters) + cl)
        pex = pairs // n_clusters
        pcl = (pairs % n_clusters).astype(np.int32)
        counts = np.bincount(pex, minlength=n_examples)
        offsets = np.zeros(n_examples + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(offsets=offsets, clusters=pcl, n_clusters=n_clusters)

    def gather(self, example_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(item index, cluster) for every cluster of every retrieved item, vectorised."""
        ids = np.asarray(example_ids, dtype=np.int64)
        starts = self.offsets[ids]
        lens = self.offsets[ids + 1] - starts
        total = int(lens.sum())
        item = np.repeat(np.arange(len(ids)), lens)
        # position inside each item's slice: a running index minus the slice's start in the output
        first = np.repeat(np.cumsum(lens) - lens, lens)
        pos = np.repeat(starts, lens) + (np.arange(total) - first)
        return item, self.clusters[pos]


@dataclass
class HitCounts:
    """h(c; ρ) for every query cluster c: retrieved items whose example's query has an attribute in c.

    `total` is the number of retrieved items (k), so a hit count reads as e.g. 831/1000. `lift` compares
    the hit rate with the cluster's base rate (its share of all examples), since raw counts favour big
    clusters."""

    total: int
    hits: np.ndarray  # int64 [n_clusters]
    df: np.ndarray  # int64 [n_clusters]
    n_examples: int

    @classmethod
    def count(cls, example_clusters: ExampleClusters, retrieved_example_ids: np.ndarray) -> HitCounts:
        ids = np.asarray(retrieved_example_ids, dtype=np.int64)
        _, cl = example_clusters.gather(ids)
        hits = np.bincount(cl, minlength=example_clusters.n_clusters).astype(np.int64)
        return cls(
            total=len(ids),
            hits=hits,
            df=example_clusters.df,
            n_examples=len(example_clusters.offsets) - 1,
        )

    def hit(self, cluster: int) -> int:
        return int(self.hits[cluster]) if 0 <= cluster < len(self.hits) else 0

    def base_rate(self, cluster: int) -> float:
        return float(self.df[cluster]) / self.n_examples if self.n_examples else 0.0

    def lift(self, cluster: int) -> float:
        return lift(self.hit(cluster), self.total, int(self.df[cluster]), self.n_examples)

    def ranked(self, top: int = 20) -> list[int]:
        """Clusters by hits (ties: higher lift first), only those with at least one hit."""
        nz = np.flatnonzero(self.hits)
        if not len(nz):
            return []
        base = self.df[nz] / max(self.n_examples, 1)
        rate = self.hits[nz] / max(self.total, 1)
        lifts = np.divide(rate, base, out=np.zeros_like(rate, dtype=float), where=base > 0)
        order = np.lexsort((-lifts, -self.hits[nz]))
        return [int(c) for c in nz[order][:top]]


def lift(hits: int, total: int, df: int, n: int) -> float:
    """(hits / total) / (df / n): how much more common a feature is among the hits than in the mix."""
    if total <= 0 or df <= 0 or n <= 0:
        return 0.0
    return (hits / total) / (df / n)


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) when n = 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _log_odds(hits: int, group_n: int, df: int, n: int, prior_strength: float) -> tuple[float, float]:
    """(delta, sd) of the log-odds ratio with the informative prior (see log_odds_z)."""
    rest_hits = max(df - hits, 0)
    rest_n = max(n - group_n, 0)
    p = min(max(df / n if n else 0.0, 1e-9), 1 - 1e-9)
    # At least half a pseudo-count in each cell (Jeffreys): a feature the mix barely has would otherwise get a
    # prior of ~1e-7 and a log-odds of -8,000 whenever the group lacks it.
    a = max(prior_strength * p, 0.5)
    b = max(prior_strength * (1 - p), 0.5)
    g_yes, g_no = hits + a, max(group_n - hits, 0) + b
    r_yes, r_no = rest_hits + a, max(rest_n - rest_hits, 0) + b
    delta = math.log(g_yes / g_no) - math.log(r_yes / r_no)
    return delta, math.sqrt(1 / g_yes + 1 / g_no + 1 / r_yes + 1 / r_no)


def log_odds_z(hits: int, group_n: int, df: int, n: int, prior_strength: float = 100.0) -> tuple[float, float]:
    """Log-odds ratio of a feature's presence in a group vs the rest of the mix, with an informative
    prior (Monroe, Colaresi & Quinn 2008, "Fightin' Words"), for document-level presence.

    The prior is Beta(a0·p, a0·(1-p)) with p = df / n, the feature's rate in the whole mix: rare features
    seen a handful of times are shrunk towards "no difference" instead of getting huge ratios.
    Returns (delta, z) where z = delta / sd."""
    delta, sd = _log_odds(hits, group_n, df, n, prior_strength)
    return delta, delta / sd


def log_odds_bound(hits: int, group_n: int, df: int, n: int, prior_strength: float = 100.0, z: float = 1.959964) -> float:
    """The lower end of the log-odds ratio's 95% interval (delta - 1.96 sd): large only when the effect is
    both big and well supported. Ranks features across groups of different sizes, where the z-score alone
    prefers large, mildly over-represented groups (a topic shared by query and response) to small, perfect
    associations (a planted trigger)."""
    delta, sd = _log_odds(hits, group_n, df, n, prior_strength)
    return delta - z * sd


def lift_lower(hits: int, total: int, df: int, n: int) -> float:
    """The lower end of the lift's 95% interval: the Wilson interval of hits / total over the base rate df / n.
    A trigger must have it above 1 (over-represented beyond chance), not only a lift above 1."""
    if total <= 0 or df <= 0 or n <= 0:
        return 0.0
    return wilson(hits, total)[0] / (df / n)
