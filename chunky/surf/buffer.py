"""The replay buffer: the top-n candidates seen so far in one run (paper eq. 2)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class BufferItem:
    candidate_id: int
    score: float
    attributes: tuple[str, ...]
    # Where the candidate came from; also the deterministic tie-break (never the database id,
    # which depends on the order in which concurrent calls happened to finish).
    iteration: int
    slot: int
    attempt: int = 0

    @property
    def order(self) -> tuple[float, int, int, int]:
        return (-self.score, self.iteration, self.slot, self.attempt)


class ReplayBuffer:
    """B ← TopK(B ∪ new, n), ties broken by (iteration, slot, attempt)."""

    def __init__(self, size: int, items: Iterable[BufferItem] = ()):
        if size < 1:
            raise ValueError("buffer size must be ≥ 1")
        self.size = size
        self.items: list[BufferItem] = sorted(items, key=lambda b: b.order)[:size]

    def add(self, new: Iterable[BufferItem]) -> None:
        merged = {(b.iteration, b.slot, b.attempt): b for b in self.items}
        for b in new:
            merged.setdefault((b.iteration, b.slot, b.attempt), b)
        self.items = sorted(merged.values(), key=lambda b: b.order)[: self.size]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    @property
    def scores(self) -> list[float]:
        return [b.score for b in self.items]

    @property
    def mean(self) -> float | None:
        return sum(self.scores) / len(self.items) if self.items else None

    @property
    def best(self) -> float | None:
        return self.items[0].score if self.items else None

    def digest(self) -> str:
        """Content hash of the buffer; seeds the next iteration's sampling."""
        h = hashlib.sha256()
        for b in self.items:
            h.update(f"{b.iteration}:{b.slot}:{b.attempt}:{b.score:.6f};".encode())
        return h.hexdigest()[:16]
