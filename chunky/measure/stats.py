"""Bootstrap confidence intervals for steering scores.

Steering compares the same examples under two prompts, so the delta's interval comes from a
*paired* bootstrap: examples are resampled with replacement and the per-example differences
travel together. Repeated samples of one prompt stay inside their example (a cluster bootstrap),
because they are not independent draws of the evaluation population.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from chunky import serde

DEFAULT_BOOT = 2000


@dataclass(frozen=True)
class Estimate:
    """A mean with its percentile-bootstrap interval; `n` is the number of examples it rests on."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Estimate:
        # Real work: a missing estimate ({}, e.g. no mean delta) reads as an undefined one over 0 examples.
        return serde.from_dict(cls, {"value": None, "low": None, "high": None, "n": 0, **d})

    @property
    def defined(self) -> bool:
        return self.value is not None


EMPTY = Estimate(None, None, None, 0)


def _as_array(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)


def bootstrap_mean(
    values: Sequence[float | None] | np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean of `values` (None / NaN are missing and ignored) with a percentile bootstrap interval."""
    x = _as_array(values)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return EMPTY
    mean = float(x.mean())
    if n == 1:
        return Estimate(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boots = x[idx].mean(axis=1)
    lo, hi = np.quantile(boots, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return Estimate(mean, float(lo), float(hi), n)


def paired_bootstrap_delta(
    original: Sequence[float | None] | np.ndarray,
    transformed: Sequence[float | None] | np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOT,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean of (transformed - original) over examples that have both values, with a paired
    percentile bootstrap interval (the examples are resampled, keeping each pair together)."""
    a, b = _as_array(original), _as_array(transformed)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.size} original vs {b.size} transformed")
    both = ~np.isnan(a) & ~np.isnan(b)
    return bootstrap_mean(b[both] - a[both], n_boot=n_boot, confidence=confidence, seed=seed)


def relative_change(original: Estimate, delta: Estimate) -> float | None:
    """delta / original mean (e.g. +0.5 = "50% more"); None when the original is zero or missing."""
    if original.value is None or delta.value is None or original.value == 0:
        return None
    return delta.value / original.value


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial rate (one prompt's repeated samples); None when n is 0.
    Unlike the bootstrap it stays informative at 0/n and n/n, where a prompt's rate often sits."""
    if n <= 0:
        return None
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if hits == 0 else max(0.0, centre - half)  # exact bounds at the edges, not 1e-17
    hi = 1.0 if hits == n else min(1.0, centre + half)
    return lo, hi


def newcombe_delta(hits_a: int, n_a: int, hits_b: int, n_b: int, confidence: float = 0.95) -> Estimate:
    """Rate b minus rate a of two independent binomial samples (two checks of one prompt), with Newcombe's
    hybrid score interval built from the two Wilson intervals (method 10 of Newcombe 1998): unlike the
    normal approximation it stays inside [-1, 1] and is informative at 0/n and n/n. `n` is min(n_a, n_b)."""
    wa, wb = wilson_interval(hits_a, n_a, confidence), wilson_interval(hits_b, n_b, confidence)
    if wa is None or wb is None:
        return EMPTY
    pa, pb = hits_a / n_a, hits_b / n_b
    d = pb - pa
    lo = d - math.sqrt((pb - wb[0]) ** 2 + (wa[1] - pa) ** 2)
    hi = d + math.sqrt((wb[1] - pb) ** 2 + (pa - wa[0]) ** 2)
    return Estimate(d, max(-1.0, lo), min(1.0, hi), min(n_a, n_b))
