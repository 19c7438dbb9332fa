"""Typed records the run store hands out. Readers (top, robust, table, the explorer, TURF's
`trace --from-run`) use these, never raw SQL rows."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

# Candidate status values.
SCORED = "scored"  # judged; `score` holds the judgment
JUDGE_ERROR = "judge_error"  # the judge failed after its retries; kept out of the buffer
TARGET_ERROR = "target_error"  # the target call failed for good
REJECTED = "rejected"  # the generated query was unusable and replaced by a fresh draw
GENERATION_FAILED = "generation_failed"  # the slot ran out of fresh draws
FINAL_STATUSES = (SCORED, JUDGE_ERROR, TARGET_ERROR, GENERATION_FAILED)
ERROR_STATUSES = (JUDGE_ERROR, TARGET_ERROR, GENERATION_FAILED)  # final, but without a judgment


@dataclass
class NewCandidate:
    """A finished candidate as the SURF loop commits it (`RunStore.add_candidates`); the store assigns its id
    and finish time and hands it back as a `CandidateRecord`."""

    run_id: int
    iteration: int
    slot: int
    attempt: int
    attributes: list[str]
    weighted: list[str]
    explore: list[str]
    query: str | None
    response: str | None
    score: float | None
    reasoning: str | None
    error: str | None
    gate: dict[str, Any] | None
    usage: dict[str, Any]
    judge_samples: list[float]
    status: str
    created_at: float


@dataclass
class CandidateRecord:
    id: int
    run_id: int
    iteration: int
    slot: int
    attempt: int
    attributes: list[str]
    query: str | None
    response: str | None
    score: float | None
    reasoning: str | None
    error: str | None
    status: str
    weighted_attributes: list[str] = field(default_factory=list)
    explore_attributes: list[str] = field(default_factory=list)
    gate: dict[str, Any] | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    judge_samples: list[float] = field(default_factory=list)
    created_at: float = 0.0
    finished_at: float | None = None

    def is_violation(self, threshold: float = 50.0) -> bool:
        return self.score is not None and self.score > threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_result(self) -> dict[str, Any]:
        """The authors' results.jsonl field names, plus ours."""
        return {
            "query": self.query,
            "response": self.response,
            "reward_score": self.score,
            "attributes": self.attributes,
            "weighted_attributes": self.weighted_attributes,
            "random_attributes": self.explore_attributes,
            "iteration": self.iteration + 1,  # 1-based, as everywhere chunky shows an iteration
            "run_id": self.run_id,
            "reasoning": self.reasoning,
            "candidate_id": self.id,
            "slot": self.slot,
            "gate": self.gate,
            "judge_samples": self.judge_samples,
        }


@dataclass
class BufferEntry:
    run_id: int
    iteration: int
    rank: int
    candidate_id: int
    score: float
    attributes: list[str]


@dataclass
class IterationRecord:
    run_id: int
    iteration: int
    status: str  # running | done
    started_at: float
    finished_at: float | None
    scored: int = 0
    errors: int = 0
    rejected: int = 0
    violations: int = 0
    best_score: float | None = None
    buffer_mean: float | None = None
    buffer_digest: str | None = None


@dataclass
class RunRecord:
    run_id: int
    status: str  # pending | running | done | converged | budget | error
    iterations_done: int
    best_score: float | None
    stopped_reason: str | None
    updated_at: float


@dataclass
class RobustnessRow:
    """One prompt variant of a robustness test (variant 0 is the original prompt)."""

    candidate_id: int
    variant: int
    prompt: str
    samples: int
    judged: int
    violations: int
    errors: int
    mean_score: float | None
    failure_rate: float | None
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RobustnessSample:
    candidate_id: int
    variant: int
    sample_index: int
    response: str | None
    score: float | None
    reasoning: str | None
    error: str | None


@dataclass
class IterationScores:
    """Per (parallel run, iteration), over every committed candidate, the iteration still running included
    (`RunStore.iteration_scores`): what the explorer's charts plot."""

    run_id: int
    iteration: int
    best: float | None  # max score of the scored candidates
    scored: int
    violations: int  # scored above the `violation` threshold asked for
    strong: int  # scored above the `strong` threshold asked for
    updated: float | None  # the latest finished_at (or created_at) among its candidates


@dataclass(frozen=True)
class CandidateSearch:
    """Which candidates `RunStore.search_candidates` matches, and in what order. Rejected drafts never match.
    Frozen: callers use it as a cache key."""

    text: str = ""  # substring of the query, response, reasoning or an attribute (case-insensitive)
    min_score: float | None = None  # score >= this
    score_above: float | None = None  # score > this (the violation thresholds are strict)
    run_id: int | None = None
    iteration: int | None = None
    statuses: tuple[str, ...] = ()  # empty: any status
    sort: str = "score"  # score (best first) | iteration | recent; anything else sorts by score
    distinct: bool = False  # only the best-scoring candidate of each query text


@dataclass
class CandidateMatches:
    """One page of a search: the matching ids in display order, and how many match in all."""

    ids: list[int]
    total: int


@dataclass
class StoreStatus:
    status: str
    runs: list[RunRecord]
    candidates: int
    scored: int
    errors: int
    rejected: int
    violations: int
    best_score: float | None
    usage: dict[str, Any]


def dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


def loads(s: str | None, default: Any = None) -> Any:
    if s is None:
        return default
    return json.loads(s)
