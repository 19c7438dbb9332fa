"""The SURF run store (SQLite, WAL) and its exports. Every reader of a run directory goes through here."""

from chunky.store.records import (
    FINAL_STATUSES,
    GENERATION_FAILED,
    JUDGE_ERROR,
    REJECTED,
    SCORED,
    TARGET_ERROR,
    BufferEntry,
    CandidateRecord,
    IterationRecord,
    NewCandidate,
    RobustnessRow,
    RobustnessSample,
    RunRecord,
    StoreStatus,
)
from chunky.store.runstore import DB_NAME, RESULTS_NAME, SCHEMA_VERSION, RunStore

__all__ = [
    "BufferEntry",
    "CandidateRecord",
    "DB_NAME",
    "FINAL_STATUSES",
    "GENERATION_FAILED",
    "IterationRecord",
    "JUDGE_ERROR",
    "NewCandidate",
    "REJECTED",
    "RESULTS_NAME",
    "RobustnessRow",
    "RobustnessSample",
    "RunRecord",
    "RunStore",
    "SCHEMA_VERSION",
    "SCORED",
    "StoreStatus",
    "TARGET_ERROR",
]
