"""Reading SURF run directories for the explorer: live, read-only, one short-lived store per request.

`chunky.store.RunStore` owns `run.sqlite`: the explorer opens it read-only (`RunStore.open_readonly`, so a run
that is still being written is never locked or modified by a viewer) and asks it only through its public
methods and typed records; no SQL here. What this module adds is the explorer's view of them (violation
thresholds, chart series, pages of findings) and a cache keyed on the store's file state.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from chunky.errors import ChunkyError
from chunky.store import (
    ERROR_STATUSES,
    SCORED,
    BufferEntry,
    CandidateRecord,
    CandidateSearch,
    IterationRecord,
    IterationScores,
    RobustnessRow,
    RobustnessSample,
    RunStore,
    file_state,
)
from chunky.turf.hits import wilson as wilson_interval
from chunky.web.charts import Band, HeatCell, Heatmap, Series
from chunky.web.discover import Item
from chunky.web.views import STRONG_VIOLATION, VIOLATION, FindingFilter, FindingPage, RunSummary

T = TypeVar("T")


class _Memo:
    """A small LRU of derived results keyed by (what, run directory, its file state, arguments): a finished
    run's aggregates are computed once, a live run's whenever it has written something new."""

    def __init__(self, size: int = 256):
        self.size = size
        self.data: OrderedDict[tuple, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple, compute: Callable[[], T]) -> T:
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        value = compute()
        with self.lock:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


MEMO = _Memo()


def memoized(what: str, directory: Path, args: Hashable, compute: Callable[[], T]) -> T:
    d = Path(directory).resolve()
    return MEMO.get((what, str(d), file_state(d), args), compute)


@contextmanager
def open_run(directory: Path) -> Iterator[RunStore]:
    """The run, read-only (`RunStore.open_readonly`): safe while `chunky surf` writes."""
    st = RunStore.open_readonly(directory)
    try:
        yield st
    except sqlite3.DatabaseError as e:
        raise ChunkyError(f"{st.path}: could not read the run ({e})") from None
    finally:
        st.close()


# --------------------------------------------------------------------------------------------- summary


def _usage_cost(usage: Any) -> tuple[float | None, bool]:
    """(cost in USD, every role's price known) of a usage record: {role: {cost_usd, cost_known, ...}} or a
    flat {cost_usd}. (None, True) when it carries no cost at all."""
    if not isinstance(usage, dict) or not usage:
        return None, True
    if isinstance(usage.get("cost_usd"), (int, float)):
        return float(usage["cost_usd"]), bool(usage.get("cost_known", True))
    roles = [v for v in usage.values() if isinstance(v, dict) and "cost_usd" in v]
    if not roles:
        return None, True
    return float(sum(float(r.get("cost_usd") or 0.0) for r in roles)), all(r.get("cost_known", True) for r in roles)


def _cost(store: RunStore, meta: dict[str, Any]) -> tuple[float | None, bool]:
    """The run's total cost (search plus robustness tests) and whether every price was known."""
    cost, known = _usage_cost(meta.get("usage"))
    if cost is None:
        # No run-level record (an older or interrupted run): the per-candidate usage has the search's cost.
        cost = store.spent_calls()[1]
    rob = meta.get("robustness")
    if isinstance(rob, dict):
        rcost, rknown = _usage_cost(rob.get("usage"))
        if rcost is not None:
            cost += rcost
            known = known and rknown
    return cost, known


def _first_int(d: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def _flat_config(config: Any) -> dict[str, Any]:
    """The stored config as `key` / `role.key` rows (nested values one level deep, longer ones as JSON)."""
    if not isinstance(config, dict):
        return {}
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                if v2 is not None:
                    out[f"{k}.{k2}"] = _compact(v2)
        elif v is not None:
            out[str(k)] = _compact(v)
    return out


def _compact(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        text = json.dumps(v, ensure_ascii=False, sort_keys=True)
        return text if len(text) <= 300 else text[:299] + "…"
    return v


def _mapping(meta: dict[str, Any], key: str) -> dict[str, Any]:
    value = meta.get(key)
    return value if isinstance(value, dict) else {}


def run_summary(item: Item) -> RunSummary:
    """What the runs list shows; a run that cannot be read comes back with `problem` set."""
    return memoized("summary", item.path, item.key, lambda: _run_summary(item))


def _run_summary(item: Item) -> RunSummary:
    try:
        with open_run(item.path) as st:
            meta = st.meta
            status = st.status()
            models = _mapping(meta, "models")
            config = _mapping(meta, "config")
            rubric = st.rubric_name or (meta.get("rubric") if isinstance(meta.get("rubric"), str) else "") or "?"
            stats = iteration_stats(st)
            strong = sum(s.strong for s in stats)
            iterations = len({s.iteration for s in stats})
            runs = status.runs
            run_ids = {r.run_id for r in runs} | {s.run_id for s in stats}
            cost, cost_known = _cost(st, meta)
            outputs = st.final_buffers()
            times = [s.updated for s in stats] + [r.updated_at for r in runs]
            updated = max([u for u in times if u is not None], default=None)
            return RunSummary(
                key=item.key,
                path=item.path,
                name=item.name,
                target=str(models.get("target") or "?"),
                rubric=str(rubric),
                status=str(status.status),
                best_score=status.best_score,
                candidates=status.candidates,
                scored=status.scored,
                errors=status.errors,
                violations=status.violations,
                strong_violations=int(strong or 0),
                cost_usd=cost,
                cost_known=cost_known,
                iterations=int(iterations or 0),
                planned_iterations=_first_int(config, "iterations", "num_iterations"),
                parallel_runs=max(len(run_ids), _first_int(config, "runs", "parallel_runs") or 0),
                created_at=meta.get("created_at") or "",
                updated_at=updated or "",
                models={str(k): str(v) for k, v in models.items()},
                config=_flat_config(config),
                outputs=len(outputs),
                output_violations=sum(1 for b in outputs if b.score > VIOLATION),
                failure=str((meta.get("failure") or {}).get("message") or "") if isinstance(meta.get("failure"), dict) else "",
            )
    except ChunkyError as e:
        return RunSummary(
            key=item.key, path=item.path, name=item.name, target="?", rubric="?", status="unreadable",
            best_score=None, candidates=0, scored=0, errors=0, violations=0, strong_violations=0, cost_usd=None,
            iterations=0, planned_iterations=None, parallel_runs=0, problem=str(e),
        )


# --------------------------------------------------------------------------------------------- charts data


def iteration_stats(st: RunStore) -> list[IterationScores]:
    """Per (parallel run, iteration): max score, scored, violating (> 50) and strongly violating (> 70)
    candidates, including the iteration still running."""
    return memoized("iteration_stats", st.dir, None, lambda: st.iteration_scores(VIOLATION, STRONG_VIOLATION))


def trajectories(stats: list[IterationScores]) -> list[Series]:
    """Best score so far (running maximum) of each parallel run, per iteration."""
    by_run: dict[int, list[IterationScores]] = {}
    for s in stats:
        by_run.setdefault(s.run_id, []).append(s)
    series = []
    for run_id, rows in sorted(by_run.items()):
        best: float | None = None
        pts = []
        for s in rows:
            if s.best is not None:
                best = s.best if best is None else max(best, s.best)
            if best is not None:
                pts.append((float(s.iteration + 1), float(best)))  # iterations are 1-based wherever shown
        series.append(Series(label=f"run {run_id}", points=pts))
    return series


def violation_rates(stats: list[IterationScores]) -> list[Series]:
    """Share of scored candidates above the violation threshold per iteration, all runs pooled, in %."""
    pooled: dict[int, list[int]] = {}
    for s in stats:
        acc = pooled.setdefault(s.iteration, [0, 0])
        acc[0] += s.violations
        acc[1] += s.scored
    pts = [(float(i + 1), 100.0 * v / n) for i, (v, n) in sorted(pooled.items()) if n]
    return [Series(label="% of scored > 50", points=pts)]


SCORE_BANDS = [Band(VIOLATION, "violation > 50"), Band(STRONG_VIOLATION, "strong > 70", color="#7a0016")]


def weight_heatmap(st: RunStore, stats: list[IterationScores], top: int = 15) -> Heatmap:
    """P(a) per iteration, pooled over parallel runs, for the attributes heaviest in the latest iteration
    that has weights."""
    pairs = sorted({(s.run_id, s.iteration) for s in stats})
    sums: dict[int, dict[str, float]] = {}
    runs_with_weights: dict[int, int] = {}
    for run_id, iteration in pairs:
        w = st.weights(run_id, iteration)
        if not w:
            continue  # uniform sampling (the first iteration) records no weights
        total = sum(w.values()) or 1.0
        acc = sums.setdefault(iteration, {})
        for a, v in w.items():
            acc[a] = acc.get(a, 0.0) + v / total
        runs_with_weights[iteration] = runs_with_weights.get(iteration, 0) + 1
    if not sums:
        return Heatmap(columns=[])
    # mean over the parallel runs of each run's P(a)
    per_iter = {i: {a: v / runs_with_weights[i] for a, v in acc.items()} for i, acc in sums.items()}
    iters = sorted(per_iter)
    last = per_iter[iters[-1]]
    chosen = sorted(last, key=lambda a: (-last[a], a))[:top]
    vmax = max((per_iter[i].get(a, 0.0) for i in iters for a in chosen), default=1.0) or 1.0
    rows = []
    for a in chosen:
        cells: list[HeatCell | None] = []
        for i in iters:
            weight = per_iter[i].get(a)
            cells.append(None if weight is None else HeatCell(value=weight, share=weight / vmax))
        rows.append((a, cells))
    return Heatmap(columns=[str(i + 1) for i in iters], rows=rows)


@dataclass
class OutputPrompt:
    """One entry of a parallel run's final replay buffer, with its candidate."""

    entry: BufferEntry
    candidate: CandidateRecord


def output_prompts(st: RunStore) -> list[OutputPrompt]:
    """The pipeline's output: each parallel run's last replay buffer, in rank order."""

    def compute() -> list[OutputPrompt]:
        out = []
        for b in st.final_buffers():
            c = st.candidate(b.candidate_id)
            if c is not None:
                out.append(OutputPrompt(b, c))
        return out

    return memoized("outputs", st.dir, None, compute)


def iteration_records(st: RunStore) -> list[IterationRecord]:
    return memoized("iterations", st.dir, None, lambda: st.iterations())


# --------------------------------------------------------------------------------------------- findings


def find_candidates(st: RunStore, f: FindingFilter) -> FindingPage:
    """Candidates matching the filter, best first by default, one page of them."""
    return memoized("find", st.dir, f, lambda: _find_candidates(st, f))


def search_of(f: FindingFilter) -> CandidateSearch:
    """The store's search for a page's filter: the status choices are the explorer's names for
    status sets and the violation thresholds."""
    statuses: tuple[str, ...] = ()
    above: float | None = None
    if f.status == "scored":
        statuses = (SCORED,)
    elif f.status == "error":
        statuses = ERROR_STATUSES
    elif f.status in ("violation", "strong"):
        statuses = (SCORED,)
        above = VIOLATION if f.status == "violation" else STRONG_VIOLATION
    return CandidateSearch(
        text=f.q,
        min_score=f.min_score,
        score_above=above,
        run_id=f.run_id,
        iteration=f.iteration,
        statuses=statuses,
        sort=f.sort,
        distinct=f.distinct,
    )


def _find_candidates(st: RunStore, f: FindingFilter) -> FindingPage:
    found = st.search_candidates(search_of(f), f.limit, f.offset)
    stats = iteration_stats(st)
    return FindingPage(
        items=list(st.candidates_by_id(found.ids)),
        total=found.total,
        filter=f,
        run_ids=sorted({s.run_id for s in stats}),
        iterations=sorted({s.iteration for s in stats}),
    )


def export_lines(directory: Path, f: FindingFilter) -> Iterator[str]:
    """Every candidate matching the filter as results.jsonl lines (the authors' field names), streamed with
    its own read-only connection."""
    with open_run(directory) as st:
        found = st.search_candidates(search_of(f), -1)
        batch: list[str] = []
        for c in st.candidates_by_id(found.ids):
            batch.append(json.dumps(c.to_result(), ensure_ascii=False) + "\n")
            if len(batch) == 500:  # each yielded chunk crosses a thread; lines one by one cost 10× more
                yield "".join(batch)
                batch = []
        if batch:
            yield "".join(batch)


# --------------------------------------------------------------------------------------------- robustness


@dataclass
class RobustnessSummary:
    rows: list[RobustnessRow]
    samples: dict[int, list[RobustnessSample]]  # a few judged samples per variant, failures first
    original_rate: float | None
    perturbed_rate: float | None  # pooled over every perturbation's judged samples
    perturbed_ci: tuple[float, float] | None
    perturbations: int


def robustness_summary(st: RunStore, candidate_id: int, samples_per_variant: int = 3) -> RobustnessSummary:
    rows = st.robustness(candidate_id)
    orig = next((r for r in rows if r.variant == 0), None)
    pert = [r for r in rows if r.variant != 0]
    judged = sum(r.judged for r in pert)
    viol = sum(r.violations for r in pert)
    samples: dict[int, list[RobustnessSample]] = {}
    for smp in st.robust_samples(candidate_id):
        samples.setdefault(smp.variant, []).append(smp)
    for v, lst in samples.items():
        lst.sort(key=lambda x: (x.score is None, -(x.score or 0.0), x.sample_index))
        samples[v] = lst[:samples_per_variant]
    return RobustnessSummary(
        rows=rows,
        samples=samples,
        original_rate=orig.failure_rate if orig else None,
        perturbed_rate=(viol / judged) if judged else None,
        perturbed_ci=wilson_interval(viol, judged) if judged else None,
        perturbations=len(pert),
    )


def load_candidate(st: RunStore, candidate_id: int) -> CandidateRecord | None:
    return st.candidate(candidate_id)
