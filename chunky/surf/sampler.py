"""Attribute weighting and per-candidate sampling (paper §3.1.3-3.1.4, SPEC §1 step 2).

w(a) = Σ_j s_j · 1[a ∈ A_j] over the replay buffer, normalised to P(a). Each candidate gets
k ~ Binomial(K, ½) draws from P(a) (uniform over the pool while the buffer carries no weight) and
is filled up to K with an exploration draw: 1..K attributes of one random data record (or of the
pool, when it has no records), each kept with probability 1 - thinning[k], so the more weighted
attributes a candidate has, the fewer exploratory ones. Unlike the authors' release, a candidate is
never empty: if thinning removes everything, one attribute of the exploration draw is kept.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from chunky.surf.pools import AttributePool

DEFAULT_THINNING: dict[int, float] = {0: 0.0, 1: 0.0, 2: 0.2, 3: 0.4, 4: 0.6, 5: 0.8}
SamplingMode = Literal["weighted", "uniform"]


@dataclass(frozen=True)
class SampledAttributes:
    attributes: tuple[str, ...]
    weighted: tuple[str, ...]
    explore: tuple[str, ...]


def attribute_weights(entries: Iterable[tuple[float, Iterable[str]]]) -> dict[str, float]:
    """w(a) = Σ score · 1[a ∈ attributes] over (score, attributes) pairs; zero weights are dropped."""
    w: dict[str, float] = {}
    for score, attrs in entries:
        if score is None or score <= 0:
            continue
        for a in set(attrs):
            w[a] = w.get(a, 0.0) + float(score)
    return w


class WeightTable:
    """P(a) prepared once per iteration: the attributes with positive weight and their weights."""

    def __init__(self, weights: dict[str, float]):
        items = sorted((a, w) for a, w in weights.items() if w > 0)
        self.names = [a for a, _ in items]
        self.weights = [w for _, w in items]
        total = sum(self.weights)
        self.probs = [w / total for w in self.weights] if items else []

    def __len__(self) -> int:
        return len(self.names)

    def draw(self, rng: random.Random, m: int) -> list[str]:
        """m attributes without replacement, each draw ∝ weight (Efraimidis–Spirakis keys)."""
        keys = sorted(
            ((rng.random() ** (1.0 / w), i) for i, w in enumerate(self.weights)), reverse=True
        )
        return [self.names[i] for _, i in keys[:m]]


def slot_rng(*parts: int | str) -> random.Random:
    """A generator determined by its parts (seed, run, iteration, slot, attempt, buffer digest...).
    The stdlib generator: cheap to create per slot, and stable across platforms for a given seed."""
    key = "\x1f".join(str(p) for p in parts).encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:16], "big"))


class CandidateSampler:
    def __init__(
        self,
        pool: AttributePool,
        max_attributes: int = 5,
        mode: SamplingMode = "weighted",
        thinning: dict[int, float] | None = None,
    ):
        if max_attributes < 1:
            raise ValueError("max_attributes must be ≥ 1")
        if not pool.attributes:
            raise ValueError("empty attribute pool")
        if mode not in ("weighted", "uniform"):
            raise ValueError(f"unknown sampling mode {mode!r}")
        self.pool = pool
        self.k_max = max_attributes
        self.mode = mode
        self.thinning = DEFAULT_THINNING if thinning is None else thinning

    def _uniform(self, rng: random.Random, n: int, exclude: Iterable[str] = ()) -> list[str]:
        attrs = self.pool.attributes
        excluded = {a for a in exclude if a in self.pool.index}
        n = min(n, len(attrs) - len(excluded))
        out: list[str] = []
        # Rejection sampling is fast because n ≪ |pool| in practice.
        while len(out) < n:
            a = attrs[rng.randrange(len(attrs))]
            if a not in excluded and a not in out:
                out.append(a)
        return out

    def _explore_draw(self, rng: random.Random) -> list[str]:
        """1..K attributes that occur together in one data record (or uniform ones for a plain list)."""
        if self.pool.records:
            rec = self.pool.records[rng.randrange(len(self.pool.records))]
            m = min(rng.randint(1, self.k_max), len(rec))
            return [self.pool.attributes[i] for i in rng.sample(rec, m)]
        return self._uniform(rng, rng.randint(1, self.k_max))

    def sample(self, table: WeightTable, rng: random.Random) -> SampledAttributes:
        if self.mode == "uniform":
            attrs = self._uniform(rng, rng.randint(1, self.k_max))
            return SampledAttributes(tuple(attrs), (), tuple(attrs))
        k = sum(rng.random() < 0.5 for _ in range(self.k_max))  # Binomial(K, 1/2)
        if len(table):
            weighted = table.draw(rng, min(k, len(table)))
        else:
            weighted = self._uniform(rng, k)  # t = 0: uniform over the pool
        draw = [a for a in self._explore_draw(rng) if a not in weighted]
        p_drop = self.thinning.get(k, 0.0)
        explore = [a for a in draw if rng.random() >= p_drop][: self.k_max - len(weighted)]
        if not weighted and not explore:
            explore = draw[:1] or self._uniform(rng, 1)
        combined = weighted + explore
        rng.shuffle(combined)
        return SampledAttributes(tuple(combined), tuple(weighted), tuple(explore))
