"""Trace a SURF run's top findings (`chunky trace --from-run`), each saved as soon as it is done."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from chunky.errors import ChunkyError
from chunky.turf.trace.compose import TraceOptions, trace
from chunky.turf.trace.records import TraceResult

if TYPE_CHECKING:  # pragma: no cover
    from chunky.models import Model
    from chunky.models.embeddings import Embedder
    from chunky.surf.rubric import Rubric
    from chunky.turf.index import TurfIndex


def trace_run(
    idx: TurfIndex,
    run_dir: str | Path,
    *,
    top: int = 5,
    min_score: float | None = None,
    rubric: Rubric | None = None,
    judge: Model | None = None,
    crux: Sequence[str] | None = None,
    options: TraceOptions | None = None,
    embedder: Embedder | None = None,
    extract_features: Callable[[str], list[str]] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_saved: Callable[[TraceResult, Path], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[TraceResult]:
    """Trace a SURF run's top findings (read through chunky.store). Each trace is saved as soon as it is
    done, to RUN/traces/<candidate_id>.json and the run store's traces table, so an error on one finding
    never loses the others. The rubric defaults to the run's own copy."""
    from chunky.store import RunStore

    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)
    try:
        if rubric is None:
            raw = store.get_meta("rubric")
            if isinstance(raw, dict) and raw.get("name"):
                from chunky.surf.rubric import Rubric

                rubric = Rubric.from_dict(raw)
        findings = [c for c in store.top(top, min_score) if c.query and c.response]
        if not findings:
            raise ChunkyError(f"{run_dir}: no scored findings to trace")
        results: list[TraceResult] = []
        errors: list[str] = []
        for n_done, c in enumerate(findings):
            say = None
            if progress is not None:
                def say(msg: str, _i: int = n_done, _id: int = c.id) -> None:
                    progress(f"finding {_i + 1}/{len(findings)} (candidate {_id}): {msg}")
            try:
                res = asyncio.run(
                    trace(idx, c.query or "", c.response or "", rubric=rubric, judge=judge, crux=crux,
                          options=options, embedder=embedder, extract_features=extract_features, trace_id=str(c.id),
                          progress=say)
                )
            except ChunkyError as e:
                msg = f"{run_dir}: candidate {c.id}: {e}"
                errors.append(msg)
                if on_error is not None:
                    on_error(msg)
                continue
            res.candidate_id = c.id
            res.run = str(run_dir)
            res.score = c.score
            dest = res.save(run_dir / "traces" / f"{c.id}.json")
            store.put_trace(c.id, "turf", res.to_dict())
            results.append(res)
            if on_saved is not None:
                on_saved(res, dest)
        if not results:
            raise ChunkyError(f"every trace failed; first error: {errors[0]}")
        return results
    finally:
        store.close()
