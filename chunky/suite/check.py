"""`chunky check`: run every case of a suite K times on a model, give each case's behaviour rate with a 95%
Wilson interval, and compare with a baseline check.

A case regresses when its rate rose by more than `max_increase` percentage points over the baseline AND the two
intervals do not overlap, so sampling noise alone never fails a build.

Resumable: every finished sample is appended to `OUT.partial.jsonl` as it lands; a rerun with the same settings
picks up from there, and the model layer's call cache answers repeated calls. The journal is removed once
OUT is written.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chunky import serde
from chunky.errors import ConfigError, ModelError
from chunky.measure.stats import Estimate, newcombe_delta, paired_bootstrap_delta, wilson_interval
from chunky.suite.records import CHECK_FORMAT, CHECK_VERSION, Case, Rate, Scorer, Suite

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class CheckConfig:
    model: str
    samples: int = 5
    seed: int = 0
    temperature: float | None = None  # None: the suite's recorded target temperature, else 1.0 (0 for one sample)
    max_tokens: int | None = None  # None: the suite's recorded target max_tokens, else 300
    judge: str | None = None  # None: each rubric case's own judge, else "local"
    system: str | None = None  # replaces every case's system prompt (a checkpoint = model + system prompt)
    concurrency: int | None = None
    use_cache: bool = True
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What a resumed check must share with the interrupted one."""
        d = self.to_dict()
        for k in ("concurrency", "use_cache"):
            d.pop(k)
        return d



@dataclass
class SampleResult:
    sample_index: int
    response: str | None
    hit: bool | None  # None: could not be scored (an error, never a miss)
    score: float | None = None
    evidence: str = ""
    error: str | None = None


@dataclass
class CaseResult:
    id: str
    prompt: str
    system: str | None
    scorer: str
    samples: list[SampleResult] = field(default_factory=list)
    confidence: float = 0.95

    @property
    def hits(self) -> int:
        return sum(1 for s in self.samples if s.hit)

    @property
    def judged(self) -> int:
        return sum(1 for s in self.samples if s.hit is not None)

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if s.hit is None)

    @property
    def rate(self) -> Rate:
        n = self.judged
        ci = wilson_interval(self.hits, n, self.confidence)
        return Rate(self.hits / n if n else None, ci[0] if ci else None, ci[1] if ci else None, self.hits, n, "check")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "system": self.system,
            "scorer": self.scorer,
            "rate": self.rate.to_dict(),
            "errors": self.errors,
            "samples": [asdict(s) for s in self.samples],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], confidence: float = 0.95, *, where: str = "") -> CaseResult:
        # Real work: the confidence is the check's, not stored per case.
        return serde.from_dict(cls, {**d, "confidence": confidence}, where=where)


@dataclass
class CaseComparison:
    id: str
    baseline: Rate
    current: Rate
    delta: Estimate  # current - baseline with Newcombe's interval
    overlap: bool
    regression: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "baseline": self.baseline.to_dict(),
            "current": self.current.to_dict(),
            "delta": self.delta.to_dict(),
            "overlap": self.overlap,
            "regression": self.regression,
        }


@dataclass
class Comparison:
    baseline_path: str
    baseline_model: str
    max_increase_pp: float
    rows: list[CaseComparison]
    mean_delta: Estimate  # mean over cases of (current - baseline), paired bootstrap over cases

    @property
    def regressions(self) -> list[str]:
        return [r.id for r in self.rows if r.regression]

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline_path,
            "baseline_model": self.baseline_model,
            "max_increase_pp": self.max_increase_pp,
            "regressions": self.regressions,
            "mean_delta": self.mean_delta.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
        }


@dataclass
class CheckResult:
    suite_id: str
    suite_name: str
    suite_path: str
    config: CheckConfig
    cases: list[CaseResult]
    temperature: float
    max_tokens: int
    created_at: str = ""
    elapsed_s: float = 0.0
    comparison: Comparison | None = None
    path: str = ""

    @property
    def unmeasured(self) -> list[str]:
        return [c.id for c in self.cases if c.judged == 0]

    @property
    def mean_rate(self) -> float | None:
        v = [c.rate.rate for c in self.cases if c.rate.rate is not None]
        return sum(v) / len(v) if v else None

    @property
    def status(self) -> str:
        if self.comparison is not None and self.comparison.regressions:
            return "regression"
        if self.unmeasured:
            return "incomplete"
        return "pass"

    def case(self, cid: str) -> CaseResult | None:
        return next((c for c in self.cases if c.id == cid), None)

    def to_dict(self) -> dict[str, Any]:
        # `format` first: the explorer recognises a check file by its first bytes.
        return {
            "format": CHECK_FORMAT,
            "version": CHECK_VERSION,
            "suite_id": self.suite_id,
            "suite": {"name": self.suite_name, "path": self.suite_path},
            "status": self.status,
            "created_at": self.created_at,
            "elapsed_s": round(self.elapsed_s, 3),
            "config": self.config.to_dict(),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "summary": {
                "cases": len(self.cases),
                "samples": sum(len(c.samples) for c in self.cases),
                "errors": sum(c.errors for c in self.cases),
                "mean_rate": self.mean_rate,
                "unmeasured": self.unmeasured,
            },
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "cases": [c.to_dict() for c in self.cases],
        }

    def save(self, out: Path) -> Path:
        out = Path(out)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, out)
        self.path = str(out)
        return out


def _field_line(text: str, key: str) -> int:
    """The line of a JSON file where `"key":` first appears (for error messages; 1 when not found)."""
    needle = f'"{key}"'
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    return 1


def load_check(path: str | Path) -> CheckResult:
    """Read a CHECK.json; bad input is one line naming the file, line and field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such check file (written by `chunky check --out`)")
    text = p.read_text(encoding="utf-8")
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(d, dict) or d.get("format") != CHECK_FORMAT:
        raise ConfigError(f"{p}: line {_field_line(text, 'format')}: field 'format' must be '{CHECK_FORMAT}'")
    for key in ("suite_id", "config", "cases"):
        if key not in d:
            raise ConfigError(f"{p}: missing field '{key}'")
    try:
        cfg = serde.from_dict(CheckConfig, d["config"], where=f"{p}: field 'config'")
        conf = cfg.confidence
        cases = [CaseResult.from_dict(c, conf, where=f"{p}: cases[{i}]") for i, c in enumerate(d["cases"])]
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{p}: line {_field_line(text, 'cases')}: field 'cases' is malformed ({e})") from None
    suite = d.get("suite") or {}
    cmp = None
    if d.get("comparison"):
        c = d["comparison"]
        rows = [
            CaseComparison(
                id=r["id"], baseline=Rate(**r["baseline"]), current=Rate(**r["current"]),
                delta=Estimate.from_dict(r["delta"]), overlap=bool(r["overlap"]), regression=bool(r["regression"]),
            )
            for r in c.get("rows") or []
        ]
        cmp = Comparison(c.get("baseline", ""), c.get("baseline_model", ""), float(c.get("max_increase_pp", 0)),
                         rows, Estimate.from_dict(c.get("mean_delta") or {}))
    return CheckResult(
        suite_id=str(d["suite_id"]), suite_name=str(suite.get("name") or ""), suite_path=str(suite.get("path") or ""),
        config=cfg, cases=cases, temperature=float(d.get("temperature") or 0.0),
        max_tokens=int(d.get("max_tokens") or 0), created_at=str(d.get("created_at") or ""),
        elapsed_s=float(d.get("elapsed_s") or 0.0), comparison=cmp, path=str(p),
    )


def check_baseline(baseline: CheckResult, suite_id: str, suite_name: str) -> None:
    if baseline.suite_id != suite_id:
        text = Path(baseline.path).read_text(encoding="utf-8")
        raise ConfigError(
            f"{baseline.path}: line {_field_line(text, 'suite_id')}: field 'suite_id' is {baseline.suite_id}, "
            f"but suite '{suite_name}' is {suite_id} (a baseline from another suite)"
        )


def compare(current: CheckResult, baseline: CheckResult, max_increase_pp: float) -> Comparison:
    """Per case: Δ = current - baseline with Newcombe's interval; a regression when Δ > max_increase_pp and the
    two Wilson intervals do not overlap."""
    rows: list[CaseComparison] = []
    base_vals: list[float | None] = []
    cur_vals: list[float | None] = []
    for c in current.cases:
        b = baseline.case(c.id)
        if b is None:
            continue
        br, cr = b.rate, c.rate
        delta = newcombe_delta(br.hits, br.n, cr.hits, cr.n, current.config.confidence)
        if br.n and cr.n:
            assert br.low is not None and br.high is not None and cr.low is not None and cr.high is not None
            overlap = not (cr.low > br.high or cr.high < br.low)
            assert br.rate is not None and cr.rate is not None
            # A small tolerance: 0.3 - 0.1 is 0.19999999999999998 in floating point.
            regression = (cr.rate - br.rate) * 100 > max_increase_pp + 1e-9 and not overlap
        else:
            overlap, regression = True, False
        rows.append(CaseComparison(c.id, br, cr, delta, overlap, regression))
        base_vals.append(br.rate)
        cur_vals.append(cr.rate)
    mean_delta = paired_bootstrap_delta(base_vals, cur_vals, seed=current.config.seed, confidence=current.config.confidence)
    return Comparison(baseline.path, baseline.config.model, max_increase_pp, rows, mean_delta)


# ---- running -------------------------------------------------------------------------------------


def sample_seed(seed: int, case_id: str, sample_index: int) -> int:
    from chunky.surf.loop import call_seed

    return call_seed(seed, "check", case_id, sample_index)


class CaseScorer:
    """Applies a case's scorer to one response: a detector, or a rubric judge (with its gate)."""

    def __init__(self, judge_override: str | None, use_cache: bool):
        self.judge_override = judge_override
        self.use_cache = use_cache
        self._judges: dict[tuple[str, str], Any] = {}

    def _rubric_judge(self, scorer: Scorer) -> Any:
        from chunky.models import GenerateConfig, get_model
        from chunky.surf.judge import RubricJudge
        from chunky.surf.rubric import Rubric

        spec = self.judge_override or scorer.judge or "local"
        key = (spec, json.dumps(scorer.to_dict(), sort_keys=True))
        if key not in self._judges:
            model = None
            if spec.strip().lower() != "none" and not spec.startswith("detector:"):
                model = get_model(spec, role="judge", config=GenerateConfig(temperature=0.0, max_tokens=400),
                                  use_cache=self.use_cache)
            gate = scorer.gate if scorer.gate else "none"
            if model is None and not scorer.gate:
                raise ConfigError(f"rubric '{(scorer.rubric or {}).get('name')}': --judge none needs a gate detector")
            self._judges[key] = RubricJudge(model, Rubric.from_dict(scorer.rubric or {}), gate=gate, style=scorer.style)
        return self._judges[key]

    def prepare(self, cases: list[Case]) -> None:
        """Build every judge up front, so a bad judge spec fails before any target call."""
        for c in cases:
            if c.scorer.kind == "rubric":
                self._rubric_judge(c.scorer)

    async def score(self, case: Case, response: str) -> tuple[bool | None, float | None, str, str | None]:
        from chunky.measure.detectors import get_detector

        if case.scorer.kind == "detector":
            d = get_detector(case.scorer.detector or "")(response)
            return d.hit, float(d.score), d.evidence, None
        j = await self._rubric_judge(case.scorer).judge(case.prompt, response)
        if j.score is None:
            return None, None, "", f"judge: {j.error or 'no score'}"
        return j.score > case.scorer.threshold, j.score, (j.reasoning or "")[:300], None


def resolve_sampling(suite: Suite, cfg: CheckConfig) -> tuple[float, int]:
    gen = suite.meta.generation or {}
    if cfg.temperature is not None:
        temperature = cfg.temperature
    elif isinstance(gen.get("temperature"), (int, float)):
        temperature = float(gen["temperature"])
    else:
        temperature = 0.0 if cfg.samples == 1 else 1.0
    max_tokens = cfg.max_tokens or (int(gen["max_tokens"]) if isinstance(gen.get("max_tokens"), int) else 300)
    return temperature, max_tokens


class Journal:
    """OUT.partial.jsonl: a header line (suite id and settings) then one line per finished sample."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.header = header
        self.done: dict[tuple[str, int], SampleResult] = {}
        self._fh: Any = None

    def open(self) -> None:
        if self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            head: dict[str, Any] = {}
            try:
                head = json.loads(lines[0]) if lines else {}
            except json.JSONDecodeError:
                raise ConfigError(f"{self.path}: line 1: not valid JSON; delete it to start the check afresh") from None
            if head != self.header:
                diff = next((k for k in self.header if head.get(k) != self.header[k]), "config")
                if diff == "config":
                    sub = next((k for k in self.header["config"] if (head.get("config") or {}).get(k) != self.header["config"][k]), "")
                    diff = f"config.{sub}" if sub else diff
                raise ConfigError(
                    f"{self.path}: line 1: field '{diff}' differs from this check's; it belongs to another check "
                    "(delete it, or rerun with the same settings to resume)"
                )
            for line in lines[1:]:
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    self.done[(d["case"], int(d["sample_index"]))] = serde.from_dict(SampleResult, d)
                except (json.JSONDecodeError, KeyError, TypeError, ValueError, ConfigError):
                    # A line cut short by a kill: that sample is simply run again.
                    continue
            self._fh = self.path.open("a", encoding="utf-8")
            if lines and not self.path.read_text(encoding="utf-8").endswith("\n"):
                self._fh.write("\n")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
            self._fh.write(json.dumps(self.header, sort_keys=True) + "\n")
            self._fh.flush()

    def add(self, case_id: str, s: SampleResult) -> None:
        self._fh.write(json.dumps({"case": case_id, **asdict(s)}, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self, remove: bool) -> None:
        if self._fh is not None:
            self._fh.close()
        if remove:
            self.path.unlink(missing_ok=True)


async def run_check(
    suite: Suite,
    cfg: CheckConfig,
    *,
    out: Path | None = None,
    progress: ProgressFn | None = None,
    target: Any = None,
) -> CheckResult:
    """Sample every case `cfg.samples` times and score each response. With `out`, resumable via the journal."""
    from chunky.models import GenerateConfig, get_model

    if cfg.samples < 1:
        raise ConfigError("--samples must be at least 1")
    if not 0 < cfg.confidence < 1:
        raise ConfigError("--confidence must be between 0 and 1")
    start = time.perf_counter()
    temperature, max_tokens = resolve_sampling(suite, cfg)
    scorer = CaseScorer(cfg.judge, cfg.use_cache)
    scorer.prepare(suite.cases)
    if target is None:
        target = get_model(cfg.model, role="target", config=GenerateConfig(temperature=temperature, max_tokens=max_tokens),
                           max_concurrency=cfg.concurrency, use_cache=cfg.use_cache)
    journal = None
    if out is not None:
        journal = Journal(out.with_name(out.name + ".partial.jsonl"),
                          {"suite_id": suite.meta.suite_id, "config": cfg.identity()})
        journal.open()
    results = {c.id: CaseResult(c.id, c.prompt, cfg.system if cfg.system is not None else c.system, c.scorer.label,
                                confidence=cfg.confidence)
               for c in suite.cases}
    total = len(suite.cases) * cfg.samples
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    async def one(case: Case, s: int) -> SampleResult:
        system = cfg.system if cfg.system is not None else case.system
        try:
            res = await target.generate(case.prompt, system=system, sample_index=s,
                                        seed=sample_seed(cfg.seed, case.id, s),
                                        temperature=temperature, max_tokens=max_tokens)
        except ModelError as e:
            return SampleResult(s, None, None, error=f"target: {e}")
        text = res.text or ""
        hit, score, evidence, err = await scorer.score(case, text)
        return SampleResult(s, text, hit, score, evidence, err)

    async def job(case: Case, s: int) -> None:
        key = (case.id, s)
        got = journal.done.get(key) if journal else None
        if got is None or got.hit is None:  # errors are retried on resume
            got = await one(case, s)
            if journal is not None:
                journal.add(case.id, got)
        results[case.id].samples.append(got)
        tick()

    try:
        await asyncio.gather(*(job(c, s) for c in suite.cases for s in range(cfg.samples)))
    finally:
        if journal is not None:
            journal.close(remove=False)
    for r in results.values():
        r.samples.sort(key=lambda x: x.sample_index)
    result = CheckResult(
        suite_id=suite.meta.suite_id, suite_name=suite.meta.name, suite_path=str(suite.path), config=cfg,
        cases=[results[c.id] for c in suite.cases], temperature=temperature, max_tokens=max_tokens,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"), elapsed_s=time.perf_counter() - start,
    )
    return result


def finish(result: CheckResult, out: Path) -> Path:
    """Write CHECK.json, then drop the journal (its samples are all in the file now), unless some samples failed:
    then it stays, so the same command run again retries only those."""
    p = result.save(out)
    if not any(c.errors for c in result.cases):
        Path(str(out) + ".partial.jsonl").unlink(missing_ok=True)
    return p


# ---- presentation --------------------------------------------------------------------------------


def fmt_rate(r: Rate) -> str:
    if r.rate is None:
        return "—"
    ci = f" [{100 * r.low:.0f},{100 * r.high:.0f}]" if r.low is not None and r.high is not None else ""
    return f"{100 * r.rate:.0f}%{ci}"


def fmt_delta(e: Estimate) -> str:
    if e.value is None:
        return "—"
    ci = f" [{100 * e.low:+.0f},{100 * e.high:+.0f}]" if e.low is not None and e.high is not None else ""
    return f"{100 * e.value:+.0f} pp{ci}"


def verdict_of(row: CaseComparison, max_increase_pp: float) -> str:
    rise = 100 * (row.delta.value or 0.0)
    if row.regression:
        return "REGRESSION"
    if rise > max_increase_pp:
        return "within noise"
    if rise > 0:
        return "under threshold"
    return "ok"


def check_table(result: CheckResult) -> Any:
    """The per-case table; against a baseline, the scorer and n make way for the comparison columns."""
    from rich.table import Table

    ci = int(round(result.config.confidence * 100))
    t = Table(
        title=f"check {result.suite_name} · {result.config.model} · {result.config.samples} samples per case · "
        f"rates with {ci}% Wilson intervals" + (", Δ with Newcombe's" if result.comparison else ""),
        title_justify="left",
    )
    t.add_column("case", no_wrap=True)
    cmp = {r.id: r for r in result.comparison.rows} if result.comparison else {}
    if result.comparison:
        t.add_column("baseline", justify="right", no_wrap=True)
        t.add_column("rate", justify="right", no_wrap=True)
        t.add_column("Δ", justify="right", no_wrap=True)
        t.add_column("verdict", no_wrap=True)
    else:
        t.add_column("scorer", overflow="ellipsis", max_width=28)
        t.add_column(f"rate [{ci}% CI]", justify="right", no_wrap=True)
        t.add_column("n", justify="right", no_wrap=True)
    for c in result.cases:
        n = f"{c.judged}" + (f" ({c.errors} err)" if c.errors else "")
        if result.comparison:
            row = cmp.get(c.id)
            if row is None:
                t.add_row(c.id, "—", fmt_rate(c.rate), "—", "new")
            else:
                t.add_row(c.id, fmt_rate(row.baseline), fmt_rate(c.rate), fmt_delta(row.delta),
                          verdict_of(row, result.comparison.max_increase_pp))
        else:
            t.add_row(c.id, c.scorer, fmt_rate(c.rate), n)
    return t
