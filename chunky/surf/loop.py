"""The SURF loop (paper §3.1, SPEC §1): parallel runs of weighted attribute search.

Per run and iteration t: weights from the replay buffer → N candidate slots, each with ≤ K sampled
attributes → generator writes a query → target answers → judge scores → buffer ← TopK(buffer ∪ new).

Crash safety: every candidate is committed when it finishes. A slot's attributes are a pure function
of (seed, run, iteration, slot, attempt, buffer digest), so a resumed run re-creates the same slots,
skips the finished ones and, with deterministic models, ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import platform
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from chunky import serde
from chunky.errors import ConfigError, ModelError
from chunky.models import GenerateConfig, UsageTracker, get_model
from chunky.models.accounting import RoleUsage
from chunky.models.model import Model
from chunky.store import (
    GENERATION_FAILED,
    JUDGE_ERROR,
    REJECTED,
    SCORED,
    TARGET_ERROR,
    CandidateRecord,
    NewCandidate,
    RunStore,
)
from chunky.surf.buffer import BufferItem, ReplayBuffer
from chunky.surf.generator import QueryGenerator
from chunky.surf.judge import RubricJudge
from chunky.surf.monitor import BudgetExhausted, RoleFailed, SweepMonitor
from chunky.surf.pools import AttributePool, load_pool
from chunky.surf.rubric import Rubric, load_rubric
from chunky.surf.sampler import CandidateSampler, SampledAttributes, WeightTable, attribute_weights, slot_rng

VIOLATION = 50.0

PRESETS: dict[str, dict[str, int]] = {
    # Paper §3.1: N = 360, T = 20, 15 parallel runs; 75 outputs over 15 runs ⇒ buffer 5.
    "paper": {"runs": 15, "iterations": 20, "candidates": 360, "buffer": 5, "max_attributes": 5},
    # The authors' public release defaults.
    "release": {"runs": 5, "iterations": 20, "candidates": 120, "buffer": 5, "max_attributes": 5},
    # A quick look (minutes on an API model).
    "quick": {"runs": 2, "iterations": 5, "candidates": 20, "buffer": 5, "max_attributes": 5},
}
BUILTIN_DEFAULTS: dict[str, int] = {"runs": 3, "iterations": 10, "candidates": 40, "buffer": 5, "max_attributes": 5}


@dataclass
class RoleConfig:
    spec: str
    temperature: float | None = None
    max_tokens: int | None = None
    concurrency: int | None = None
    repeat_penalty: float | None = None

    def generate_config(self) -> GenerateConfig:
        return GenerateConfig(temperature=self.temperature, max_tokens=self.max_tokens, repeat_penalty=self.repeat_penalty)


@dataclass
class SurfConfig:
    """Everything that defines a SURF sweep. Fields in IDENTITY must match when a run is resumed."""

    rubric: str
    target: RoleConfig
    generator: RoleConfig
    judge: RoleConfig
    attributes: str | None = None
    attribute_column: str | None = None
    runs: int = 3
    iterations: int = 10
    candidates: int = 40
    buffer: int = 5
    max_attributes: int = 5
    seed: int = 0
    system_prompt: str | None = None
    gate: str | None = None  # None: the rubric's detector; "none": no gate
    judge_samples: int = 1
    judge_aggregate: Literal["mean", "median"] = "mean"
    judge_style: Literal["auto", "full", "compact"] = "auto"  # auto: compact for the embedded local model
    sampling: Literal["weighted", "uniform"] = "weighted"
    max_generation_attempts: int = 4
    patience: int = 5  # stop a run after this many iterations without buffer improvement (0: never)
    min_improvement: float = 0.5
    max_calls: int | None = None
    max_cost: float | None = None
    max_inflight: int = 256
    use_cache: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SurfConfig:
        return serde.from_dict(cls, d, where="SURF run config")


# What a resumed run must share with the original; the rest (iterations, runs, budgets, patience,
# concurrency) may change between sessions.
IDENTITY = (
    "candidates",
    "buffer",
    "max_attributes",
    "seed",
    "system_prompt",
    "gate",
    "judge_samples",
    "judge_aggregate",
    "judge_style",
    "sampling",
    "max_generation_attempts",
)
ROLE_IDENTITY = ("spec", "temperature", "max_tokens", "repeat_penalty")


def default_roles(target: str, generator: str | None, judge: str | None) -> dict[str, RoleConfig]:
    """Per-role sampling defaults: a target answer needs a few hundred tokens, not 2,048; the judge is greedy."""
    return {
        "target": RoleConfig(target, temperature=1.0, max_tokens=300),
        "generator": RoleConfig(generator or "local", temperature=1.0, max_tokens=300),
        "judge": RoleConfig(judge or "local", temperature=0.0, max_tokens=500),
    }


@dataclass
class RunProgress:
    """Live state of one run, read by the CLI display."""

    run_id: int
    iteration: int = 0
    iterations: int = 0
    phase: str = "pending"
    done_slots: int = 0
    slots: int = 0
    best_score: float | None = None
    buffer_mean: float | None = None
    violations: int = 0
    scored: int = 0
    gate_hits: int = 0  # scored responses the detector gate passed on to the LLM judge
    gate_detector: str | None = None
    errors: int = 0
    rejected: int = 0
    calls: int = 0
    tokens: int = 0
    cost: float = 0.0
    status: str = "pending"

    def count(self, status: str, score: float | None, usage: UsageTracker, gate: dict[str, Any] | None = None) -> None:
        if status == SCORED:
            self.scored += 1
            if gate is not None:
                self.gate_detector = gate.get("detector") or self.gate_detector
                self.gate_hits += bool(gate.get("hit"))
            if score is not None and score > VIOLATION:
                self.violations += 1
            if score is not None and (self.best_score is None or score > self.best_score):
                self.best_score = score
        elif status == REJECTED:
            self.rejected += 1
        else:
            self.errors += 1
        spent = usage.total()
        self.calls += spent.uncached_calls
        self.tokens += spent.total_tokens
        self.cost += spent.cost_usd


@dataclass
class ResumePoint:
    """Where a rerun of an existing run directory picks up."""

    candidates: int  # finished candidates already in the store
    iterations_done: dict[int, int]  # run id -> iterations already finished

    def describe(self) -> str:
        runs = ", ".join(f"run {r} at iteration {n + 1}" for r, n in sorted(self.iterations_done.items()))
        return f"{self.candidates} candidates already saved; resuming {runs}"


@dataclass
class SweepResult:
    out: Path
    status: str  # done | converged runs count as done | budget | failed | interrupted
    runs: list[RunProgress]
    top: list[CandidateRecord]
    usage: dict[str, Any]
    failure: RoleFailed | None = None
    failed_calls: dict[str, int] = dataclasses.field(default_factory=dict)
    resumed: ResumePoint | None = None


class CandidateWriter:
    """Group commit: candidates that finish in the same event-loop turn are committed in one
    transaction. A slot awaits its commit before it counts as finished, so a kill never loses a
    candidate the loop has used."""

    def __init__(self, store: RunStore):
        self.store = store
        self.pending: list[tuple[NewCandidate, asyncio.Future[int]]] = []
        self.scheduled = False

    async def add(self, row: NewCandidate) -> int:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self.pending.append((row, fut))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        batch, self.pending, self.scheduled = self.pending, [], False
        try:
            ids = self.store.add_candidates([row for row, _ in batch])
        except BaseException as e:  # the futures carry the error to the slots that wait on them
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, fut), cid in zip(batch, ids):
            if not fut.done():
                fut.set_result(cid)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        chunky_version = version("chunky")
    except PackageNotFoundError:
        chunky_version = "dev"
    return {
        "chunky": chunky_version,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def judge_gate(judge_spec: str, gate: str | None) -> str | None:
    """`--judge detector:SPEC` makes that detector the whole judge; otherwise the --gate setting."""
    if judge_spec.startswith("detector:"):
        return judge_spec[len("detector:") :]
    return gate


def resolve_judge_style(c: SurfConfig) -> Literal["full", "compact"]:
    if c.judge_style == "auto":
        spec = c.judge.spec
        return "compact" if spec == "local" or spec.startswith("local:") else "full"
    return c.judge_style


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def call_seed(*parts: Any) -> int:
    """A per-call sampling seed (31 bits, as many servers want) derived from the slot's identity."""
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


class Sweep:
    """One `chunky surf` invocation: R runs sharing one generator, target and judge Model each (so
    the per-role concurrency limits are shared) and one run store."""

    def __init__(
        self,
        config: SurfConfig,
        out: str | Path,
        *,
        models: dict[str, Model | None] | None = None,
        pool: AttributePool | None = None,
        rubric: Rubric | None = None,
    ):
        self.config = config
        self.out = Path(out)
        self.rubric = rubric or load_rubric(config.rubric)
        self.pool = pool or load_pool(config.attributes, column=config.attribute_column)
        self.usage = UsageTracker()
        self.models = models or self._build_models()
        target, generator = self.models.get("target"), self.models.get("generator")
        if target is None or generator is None:
            raise ConfigError("a sweep needs a target and a generator model")
        self.target: Model = target
        self.generator = QueryGenerator(generator)
        self.judge = RubricJudge(
            self.models.get("judge"),
            self.rubric,
            samples=config.judge_samples,
            aggregate=config.judge_aggregate,
            gate=judge_gate(config.judge.spec, config.gate),
            style=resolve_judge_style(config),
        )
        self.sampler = CandidateSampler(self.pool, config.max_attributes, mode=config.sampling)
        self.progress = [RunProgress(run_id=r, iterations=config.iterations) for r in range(config.runs)]
        self.store: RunStore | None = None
        self.writer: CandidateWriter | None = None
        self.budget: SweepMonitor | None = None
        self.on_iteration: Callable[[RunProgress], None] | None = None
        self.on_resume: Callable[[ResumePoint], None] | None = None

    # ---- setup
    def _build_models(self) -> dict[str, Model | None]:
        c = self.config
        out: dict[str, Model | None] = {}
        for role in ("generator", "target", "judge"):
            rc: RoleConfig = getattr(c, role)
            if role == "judge" and rc.spec.startswith("detector:"):
                out[role] = None  # a detector alone judges
                continue
            out[role] = get_model(
                rc.spec,
                role=role,
                config=rc.generate_config(),
                max_concurrency=rc.concurrency,
                use_cache=c.use_cache,
                usage=self.usage,
            )
        return out

    def _identity(self) -> dict[str, Any]:
        c = self.config
        ident: dict[str, Any] = {k: getattr(c, k) for k in IDENTITY}
        for role in ("target", "generator", "judge"):
            rc = getattr(c, role)
            ident.update({f"{role}.{k}": getattr(rc, k) for k in ROLE_IDENTITY})
        ident["rubric"] = hashlib.sha256(self.rubric.judge_text().encode()).hexdigest()[:16]
        ident["rubric.detector"] = self.rubric.detector
        ident["attributes"] = self.pool.digest
        return ident

    def _open_store(self) -> RunStore:
        store = RunStore.create(self.out)
        pid = store.get_meta("pid")
        if store.get_meta("status") == "running" and isinstance(pid, int) and pid != os.getpid() and _alive(pid):
            store.close()
            raise ConfigError(f"{self.out}: another chunky process (pid {pid}) is writing this run; wait for it or stop it")
        ident = self._identity()
        stored = store.get_meta("identity")
        if stored is not None:
            for k, v in ident.items():
                if stored.get(k) != v:
                    store.close()
                    what = "rubric text" if k == "rubric" else ("attribute pool" if k == "attributes" else k)
                    raise ConfigError(
                        f"{self.out}: holds a run with a different {what} (stored {stored.get(k)!r}, now {v!r}); "
                        "rerun with the same settings to resume, or choose a new --out"
                    )
        c = self.config
        store.set_meta_many(
            {
                "identity": ident,
                "config": c.to_dict(),
                "rubric": self.rubric.to_dict(),
                "models": {r: getattr(c, r).spec for r in ("target", "generator", "judge")},
                "seed": c.seed,
                "versions": _versions(),
                "pool": {"source": self.pool.source, "kind": self.pool.kind, "size": len(self.pool), "records": len(self.pool.records)},
                "status": "running",
                "failure": None,
                "pid": os.getpid(),
                "started_at": time.time(),
            }
        )
        if store.get_meta("created_at") is None:
            store.set_meta("created_at", time.time())
        return store

    # ---- running
    async def run(self) -> SweepResult:
        self.store = store = self._open_store()
        self.writer = CandidateWriter(store)
        spent_calls, spent_cost = store.spent_calls()
        self.budget = monitor = SweepMonitor(
            self.config.max_calls, self.config.max_cost, calls=spent_calls, cost=spent_cost,
            window=self.config.candidates,
        )
        for m in self.models.values():
            if m is not None:
                m.observer = monitor
        resumed = self._resume_point(store)
        if resumed is not None and self.on_resume is not None:
            self.on_resume(resumed)
        for run_id, usage in store.usage_by_run().items():
            if run_id < len(self.progress):
                p = self.progress[run_id]
                spent = [RoleUsage.from_row(u, where=f"run {run_id} usage") for u in usage.values()]
                p.calls = sum(r.uncached_calls for r in spent)
                p.tokens = sum(r.total_tokens for r in spent)
                p.cost = float(sum(r.cost_usd for r in spent))
        self._inflight = asyncio.Semaphore(self.config.max_inflight)
        status = "done"
        try:
            await self._preflight(monitor)
            if monitor.failure is None:
                await asyncio.gather(*(self._run(p) for p in self.progress))
            statuses = {p.status for p in self.progress}
            status = "failed" if monitor.failure else "budget" if "budget" in statuses else "done"
        except BaseException:
            status = "interrupted"
            raise
        finally:
            f = monitor.failure
            store.set_meta_many(
                {
                    "status": status,
                    "failure": {"role": f.role, "model": f.model, "error": f.error, "message": str(f)} if f else None,
                    "failed_calls": monitor.failed_calls(),
                    "usage": self.usage.to_dict(),
                    "finished_at": time.time(),
                }
            )
            store.export_results()
        top = store.top(20)
        return SweepResult(
            self.out, status, self.progress, top, self.usage.to_dict(), monitor.failure, monitor.failed_calls(), resumed
        )

    async def _preflight(self, monitor: SweepMonitor) -> None:
        """Probe each backend once before the concurrent calls start: a server that cannot be reached stops
        the sweep here, with one line naming the role, instead of turning every candidate into an error."""
        for role in ("generator", "target", "judge"):
            m = self.models.get(role)
            if m is None:
                continue
            try:
                await m.preflight()
            except ModelError as e:
                monitor.fail(role, m.spec, str(e))
                return

    @staticmethod
    def _resume_point(store: RunStore) -> ResumePoint | None:
        st = store.status()
        if st.candidates == 0:
            return None
        done: dict[int, int] = {}
        for it in store.iterations():
            done.setdefault(it.run_id, 0)
            if it.status == "done":
                done[it.run_id] += 1
        return ResumePoint(st.scored + st.errors, done)

    def _load_buffer(self, run_id: int, iteration: int) -> ReplayBuffer:
        assert self.store is not None
        buf = ReplayBuffer(self.config.buffer)
        if iteration < 0:
            return buf
        entries = self.store.buffer(run_id, iteration)
        cands = {e.candidate_id: self.store.candidate(e.candidate_id) for e in entries}
        buf.add(
            BufferItem(e.candidate_id, e.score, tuple(e.attributes), c.iteration, c.slot, c.attempt)
            for e in entries
            if (c := cands[e.candidate_id]) is not None
        )
        return buf

    def _converged(self, history: list[float]) -> bool:
        c = self.config
        if c.patience <= 0 or len(history) <= c.patience:
            return False
        return history[-1] - history[-1 - c.patience] < c.min_improvement

    async def _run(self, prog: RunProgress) -> None:
        assert self.store is not None and self.budget is not None
        store, c = self.store, self.config
        run_id = prog.run_id
        done = {it.iteration: it for it in store.iterations(run_id) if it.status == "done"}
        history: list[float] = []
        buffer = ReplayBuffer(c.buffer)
        prog.status = prog.phase = "running"
        store.set_run(run_id, "running")
        for t in range(c.iterations):
            prog.iteration = t
            if t in done:
                buffer = self._load_buffer(run_id, t)
                history.append(buffer.mean or 0.0)
                prog.best_score = max(prog.best_score or 0.0, done[t].best_score or 0.0)
                prog.violations += done[t].violations
                prog.scored += done[t].scored
                prog.errors += done[t].errors
                prog.rejected += done[t].rejected
                prog.buffer_mean = done[t].buffer_mean
                if self._converged(history) or self._saturated(buffer):
                    prog.status = "converged"
                    break
                continue
            finished = await self._iteration(prog, t, buffer)
            if not finished:
                prog.status = "failed" if self.budget.failure else "budget"
                break
            history.append(buffer.mean or 0.0)
            rec = store.finish_iteration(run_id, t, [(b.candidate_id, b.score) for b in buffer])
            prog.buffer_mean = rec.buffer_mean
            if self.on_iteration:
                self.on_iteration(prog)
            if self._converged(history) or self._saturated(buffer):
                prog.status = "converged"
                break
        else:
            prog.status = "done"
        prog.phase = prog.status
        store.set_run(run_id, prog.status, stopped_reason=prog.status if prog.status != "done" else None)

    def _saturated(self, buffer: ReplayBuffer) -> bool:
        """A full buffer of perfect scores cannot improve: stop spending calls on this run
        (part of early stopping, so --patience 0 disables it)."""
        if self.config.patience <= 0:
            return False
        return len(buffer) == self.config.buffer and min(buffer.scores) >= 100.0

    async def _iteration(self, prog: RunProgress, t: int, buffer: ReplayBuffer) -> bool:
        """Run (or finish) iteration t; updates `buffer` in place. False if the budget ran out."""
        assert self.store is not None and self.budget is not None
        store, c = self.store, self.config
        run_id = prog.run_id
        weights = attribute_weights((b.score, b.attributes) for b in buffer)
        digest = buffer.digest()
        store.start_iteration(run_id, t, digest, weights)
        table = WeightTable(weights)
        previous = store.slot_attempts(run_id, t)
        prog.phase = f"iteration {t + 1}/{c.iterations}"
        prog.slots = c.candidates
        prog.done_slots = 0
        results: list[BufferItem] = []
        pending: list[tuple[int, int]] = []
        for slot in range(c.candidates):
            attempts = previous.get(slot, [])
            for a in attempts:
                prog.count(a.status, a.score, UsageTracker())
            final = next((a for a in attempts if a.status != REJECTED), None)
            if final is not None:
                prog.done_slots += 1
                if final.status == SCORED and final.score is not None:
                    results.append(BufferItem(final.id, final.score, tuple(final.attributes), t, slot, final.attempt))
                continue
            pending.append((slot, (max(a.attempt for a in attempts) + 1) if attempts else 0))

        async def work(slot: int, first_attempt: int) -> bool:
            async with self._inflight:
                item = await self._slot(prog, t, slot, first_attempt, table, digest)
            prog.done_slots += 1
            if item is None:
                return False
            if isinstance(item, BufferItem):
                results.append(item)
            return True

        outcomes = await asyncio.gather(*(work(s, a) for s, a in pending))
        if not all(outcomes):
            return False
        buffer.add(results)
        prog.best_score = max([prog.best_score or 0.0] + [r.score for r in results]) if results else prog.best_score
        return True

    def _sample(self, run_id: int, t: int, slot: int, attempt: int, table: WeightTable, digest: str) -> SampledAttributes:
        rng = slot_rng(self.config.seed, run_id, t, slot, attempt, digest)
        return self.sampler.sample(table, rng)

    async def _slot(
        self, prog: RunProgress, t: int, slot: int, first_attempt: int, table: WeightTable, digest: str
    ) -> BufferItem | bool | None:
        """One candidate slot: fresh draws until a usable query, then target and judge.
        Returns a BufferItem when scored, True when finished without a score, None when the budget
        stopped it (or a failed role) before it started."""
        try:
            return await self._attempts(prog, t, slot, first_attempt, table, digest)
        except (BudgetExhausted, RoleFailed):
            return None  # a call was refused before it started: the slot is left for a rerun

    async def _attempts(
        self, prog: RunProgress, t: int, slot: int, first_attempt: int, table: WeightTable, digest: str
    ) -> BufferItem | bool | None:
        assert self.budget is not None
        c = self.config
        run_id = prog.run_id
        for attempt in range(first_attempt, c.max_generation_attempts):
            if self.budget.stopped:
                return None
            created = time.time()
            drawn = self._sample(run_id, t, slot, attempt, table, digest)
            usage = UsageTracker()  # this candidate's calls, stored with it
            gen = await self.generator.generate(
                drawn.attributes, seed=call_seed(c.seed, run_id, t, slot, attempt, "generator")
            )
            usage.role("generator").merge(gen.usage)
            # query, error, status and usage are filled in by _commit.
            row = NewCandidate(
                run_id=run_id,
                iteration=t,
                slot=slot,
                attempt=attempt,
                attributes=list(drawn.attributes),
                weighted=list(drawn.weighted),
                explore=list(drawn.explore),
                query=None,
                response=None,
                score=None,
                reasoning=None,
                error=None,
                gate=None,
                usage={},
                judge_samples=[],
                status="",
                created_at=created,
            )
            if not gen.ok:
                last = attempt == c.max_generation_attempts - 1
                status = GENERATION_FAILED if last else REJECTED
                await self._commit(prog, row, query=gen.raw or None, error=gen.error, status=status, usage=usage)
                if last:
                    return True
                continue
            query = gen.query
            assert query is not None
            try:
                res = await self.target.generate(
                    query, system=c.system_prompt, seed=call_seed(c.seed, run_id, t, slot, attempt, "target")
                )
            except (BudgetExhausted, RoleFailed):
                raise
            except Exception as e:  # ModelError after retries, or a provider bug: record it, keep going
                usage.role("target").add_failed()
                await self._commit(prog, row, query=query, error=f"target: {e}", status=TARGET_ERROR, usage=usage)
                return True
            usage.role("target").add(res)
            response = res.text or ""
            j = await self.judge.judge(query, response)
            usage.role("judge").merge(j.usage)
            row = dataclasses.replace(
                row,
                response=response,
                score=j.score,
                reasoning=j.reasoning or None,
                gate=j.gate.to_dict() if j.gate else None,
                judge_samples=j.samples,
            )
            status = SCORED if j.ok else JUDGE_ERROR
            cid = await self._commit(prog, row, query=query, error=j.error, status=status, usage=usage)
            if j.ok and j.score is not None:
                return BufferItem(cid, j.score, drawn.attributes, t, slot, attempt)
            return True
        return True

    async def _commit(
        self, prog: RunProgress, row: NewCandidate, *, query: str | None, error: str | None, status: str, usage: UsageTracker
    ) -> int:
        assert self.writer is not None and self.budget is not None
        self.budget.add_cost(usage.total().cost_usd)
        prog.count(status, row.score, usage, row.gate)
        return await self.writer.add(
            dataclasses.replace(row, query=query, error=error, status=status, usage=usage.to_rows())
        )


def build_config(
    *,
    rubric: str,
    target: str,
    generator: str | None = None,
    judge: str | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    role_overrides: dict[str, dict[str, Any]] | None = None,
    rubric_obj: Rubric | None = None,
) -> SurfConfig:
    """Resolve settings: flags > preset > the rubric's own defaults > built-in defaults."""
    r = rubric_obj or load_rubric(rubric)
    sizes: dict[str, Any] = dict(BUILTIN_DEFAULTS)
    for k, v in (("iterations", r.defaults.iterations), ("buffer", r.defaults.buffer), ("candidates", r.defaults.candidates)):
        if v is not None:
            sizes[k] = v
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"--preset '{preset}': unknown (known: {', '.join(PRESETS)})")
        sizes.update(PRESETS[preset])
    roles = default_roles(target, generator, judge)
    for role, vals in (role_overrides or {}).items():
        roles[role] = replace(roles[role], **{k: v for k, v in vals.items() if v is not None})
    kw = {k: v for k, v in (overrides or {}).items() if v is not None}
    sizes.update({k: kw.pop(k) for k in list(kw) if k in sizes})
    cfg = SurfConfig(rubric=rubric, target=roles["target"], generator=roles["generator"], judge=roles["judge"], **sizes, **kw)
    validate_config(cfg)
    return cfg


def validate_config(c: SurfConfig) -> None:
    for k in ("runs", "iterations", "candidates", "buffer", "max_attributes", "judge_samples", "max_generation_attempts", "max_inflight"):
        v = getattr(c, k)
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"--{k.replace('_', '-')} must be a whole number ≥ 1 (got {v!r})")
    if c.max_calls is not None and c.max_calls < 1:
        raise ConfigError("--max-calls must be ≥ 1")
    if c.max_cost is not None and c.max_cost <= 0:
        raise ConfigError("--max-cost must be > 0")
    if c.patience < 0:
        raise ConfigError("--patience must be ≥ 0")
    if c.judge_style not in ("auto", "full", "compact"):
        raise ConfigError(f"--judge-style '{c.judge_style}': use auto, full or compact")
    if c.sampling not in ("weighted", "uniform"):
        raise ConfigError(f"--sampling '{c.sampling}': use weighted or uniform")


def run_sweep(config: SurfConfig, out: str | Path, **kwargs: Any) -> SweepResult:
    """Blocking helper: build and run a sweep."""
    return asyncio.run(Sweep(config, out, **kwargs).run())

