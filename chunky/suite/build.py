"""`chunky suite build`: turn SURF findings and steering results into a regression suite.

From a SURF run (read through chunky.store): its top findings, each scored as the run scored it (the run's
detector when the judge was a detector, else its rubric with the run's gate and judge), with the measured
robustness rate of the original prompt when `chunky robust` has run on it.
From a steering result (OUT/steer.json): the examples whose transformed prompt raised the behaviour the most,
each with its original/transformed pair and the transformed side's rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from chunky.errors import ChunkyError, ConfigError
from chunky.measure.stats import wilson_interval
from chunky.suite.records import Case, PromptPair, Rate, Scorer, SuiteMeta, suite_id, write_suite


@dataclass
class BuildOptions:
    sources: list[Path]
    out: Path
    top: int = 20
    min_score: float | None = 50.0
    robust: bool = False
    name: str | None = None
    threshold: float = 50.0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "src"


def _rate(hits: int, n: int, source: str) -> Rate | None:
    if n <= 0:
        return None
    ci = wilson_interval(hits, n)
    assert ci is not None
    return Rate(hits / n, ci[0], ci[1], hits, n, source)


def run_scorer(meta: dict[str, Any], where: Path) -> Scorer:
    """How the run scored its findings, as a suite scorer."""
    from chunky.surf.loop import SurfConfig, judge_gate, resolve_judge_style
    from chunky.surf.rubric import Rubric

    cfg_raw, rubric_raw = meta.get("config"), meta.get("rubric")
    if not isinstance(cfg_raw, dict) or not isinstance(rubric_raw, dict):
        raise ChunkyError(f"{where}: the run has no stored config or rubric; was it written by `chunky surf`?")
    cfg = SurfConfig.from_dict(cfg_raw)
    rubric = Rubric.from_dict(rubric_raw)
    judge_spec = cfg.judge.spec
    gate = judge_gate(judge_spec, cfg.gate)
    if gate is None:
        gate = rubric.detector
    if gate is not None and gate.strip().lower() in ("none", "off", ""):
        gate = None
    if judge_spec.startswith("detector:"):
        return Scorer("detector", detector=judge_spec[len("detector:"):])
    return Scorer("rubric", rubric=rubric.to_dict(), threshold=50.0, gate=gate, judge=judge_spec,
                  style=resolve_judge_style(cfg))


def cases_from_run(run_dir: Path, opts: BuildOptions) -> tuple[list[Case], dict[str, Any]]:
    from chunky.store import RunStore

    with RunStore.open_readonly(run_dir) as store:
        meta = store.meta
        scorer = run_scorer(meta, run_dir)
        cfg = meta.get("config") or {}
        tops = store.top(n=10**9 if opts.robust else opts.top, min_score=opts.min_score)
        cases: list[Case] = []
        prefix = _slug(run_dir.name)
        for c in tops:
            if len(cases) >= opts.top:
                break
            if not (c.query or "").strip():
                continue
            rate = None
            rows = [r for r in store.robustness(c.id, threshold=opts.threshold) if r.variant == 0]
            if rows and rows[0].judged:
                rate = _rate(rows[0].violations, rows[0].judged, "robustness")
            if opts.robust and rate is None:
                continue
            cases.append(
                Case(
                    id=f"{prefix}-c{c.id}",
                    prompt=c.query or "",
                    system=cfg.get("system_prompt"),
                    scorer=scorer,
                    response=c.response,
                    score=c.score,
                    rate=rate,
                    attributes=tuple(c.attributes),
                    source={"kind": "surf", "run": str(run_dir), "candidate_id": c.id, "run_id": c.run_id,
                            "iteration": c.iteration},
                )
            )
    models = meta.get("models") if isinstance(meta.get("models"), dict) else {}
    target = (cfg.get("target") or {}) if isinstance(cfg, dict) else {}
    prov = {
        "path": str(run_dir),
        "kind": "surf",
        "rubric": (meta.get("rubric") or {}).get("name"),
        "models": models,
        "cases": len(cases),
        "target_sampling": {"temperature": target.get("temperature"), "max_tokens": target.get("max_tokens")},
    }
    return cases, prov


def steer_scorer(metric: str, judge: str, where: Path) -> Scorer | None:
    """A steering metric as a suite scorer; None for metrics that are not a behaviour rate (length, accuracy)."""
    from chunky.measure.detectors import DETECTORS, get_detector
    from chunky.surf.rubric import load_rubric

    name, _, arg = metric.partition(":")
    key = name.strip().lower()
    if key == "rubric":
        rname, _, thr = arg.rpartition(":") if re.search(r":\d+(\.\d+)?$", arg) else (arg, "", "")
        rubric = load_rubric(rname)
        style: Literal["full", "compact"] = "compact" if judge == "local" or judge.startswith("local:") else "full"
        return Scorer("rubric", rubric=rubric.to_dict(), threshold=float(thr) if thr else 50.0, gate=None,
                      judge=judge, style=style)
    if key in ("length", "tokens", "accuracy"):
        return None
    if key in DETECTORS or key.replace("-", "_") in ("code_block", "rebut", "tool", "short_answer"):
        get_detector(metric)
        return Scorer("detector", detector=metric)
    raise ConfigError(f"{where}: metric '{metric}' is not a behaviour a suite can check")


def cases_from_steer(steer_dir: Path, opts: BuildOptions) -> tuple[list[Case], dict[str, Any]]:
    from chunky.measure.steer import SteerResult

    result = SteerResult.load(steer_dir)
    scorer = steer_scorer(result.config.metric, result.config.judge_model, steer_dir)
    if scorer is None:
        raise ConfigError(
            f"{steer_dir}: metric '{result.config.metric}' is a {result.metric_kind}, not a behaviour rate; "
            "a suite needs a detector or rubric metric"
        )
    if not result.has_transform:
        raise ConfigError(f"{steer_dir}: the steering result has no transform (no original/transformed pairs)")
    model = result.config.models[0]
    ranked = []
    for p in result.pairs_of(model):
        if p.transformed is None or p.transformed.prompt is None or p.delta is None or p.delta <= 0:
            continue
        if p.transformed.prompt.history:
            continue  # in-context turns do not fit a one-turn case
        ranked.append(p)
    ranked.sort(key=lambda p: (-(p.delta or 0), p.example.id))
    prefix = _slug(steer_dir.name)
    cases = []
    for p in ranked[: opts.top]:
        t = p.transformed
        assert t is not None and t.prompt is not None
        vals = [s.value for s in t.samples if s.value is not None]
        hits = sum(1 for v in vals if v >= 0.5)
        best = next((s for s in t.samples if s.value and s.value >= 0.5), None)
        cases.append(
            Case(
                id=f"{prefix}-{_slug(p.example.id)}",
                prompt=t.prompt.user,
                system=t.prompt.system,
                scorer=scorer,
                response=best.response if best else (t.samples[0].response if t.samples else None),
                score=100.0 if best else 0.0,
                rate=_rate(hits, len(vals), "steer"),
                pair=PromptPair(
                    original=p.original.prompt.user if p.original.prompt else p.example.prompt,
                    transformed=t.prompt.user,
                    original_system=p.original.prompt.system if p.original.prompt else None,
                    transformed_system=t.prompt.system,
                    transform=result.transform_label,
                    original_rate=p.original.value,
                    transformed_rate=t.value,
                ),
                source={"kind": "steer", "steer": str(steer_dir), "example": p.example.id, "model": model},
            )
        )
    prov = {
        "path": str(steer_dir),
        "kind": "steer",
        "metric": result.config.metric,
        "transform": result.transform_label,
        "models": {"target": result.config.spec_of(model), "judge": result.config.judge_model},
        "cases": len(cases),
        "target_sampling": {"temperature": result.config.effective_temperature(), "max_tokens": result.config.max_tokens},
    }
    return cases, prov


def build_suite(opts: BuildOptions) -> tuple[SuiteMeta, list[Case]]:
    from chunky import __version__

    if not opts.sources:
        raise ConfigError("suite build: give at least one SURF run or steering result directory")
    if opts.top < 1:
        raise ConfigError("--top must be at least 1")
    cases: list[Case] = []
    provenance: list[dict[str, Any]] = []
    for src in opts.sources:
        if (src / "run.sqlite").is_file():
            got, prov = cases_from_run(src, opts)
        elif (src / "steer.json").is_file() or (src.is_file() and src.name == "steer.json"):
            got, prov = cases_from_steer(src if src.is_dir() else src.parent, opts)
        elif not src.exists():
            raise ConfigError(f"{src}: no such directory")
        else:
            raise ConfigError(f"{src}: neither a SURF run (run.sqlite) nor a steering result (steer.json)")
        cases.extend(got)
        provenance.append(prov)
    if not cases:
        what = "with robustness data " if opts.robust else ""
        floor = "" if opts.min_score is None else f" scoring at least {opts.min_score:g}"
        raise ChunkyError(f"suite build: no findings {what}{floor} in {', '.join(map(str, opts.sources))}")
    ids: set[str] = set()
    for c in cases:
        if c.id in ids:
            raise ConfigError(f"suite build: case id '{c.id}' twice (two sources with the same directory name?)")
        ids.add(c.id)
    # The check's default sampling: the first source's target settings (SURF targets sample at 1.0).
    gen: dict[str, Any] = next((p["target_sampling"] for p in provenance if p.get("target_sampling")), {})
    meta = SuiteMeta(
        name=opts.name or opts.out.name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        chunky_version=__version__,
        cases=len(cases),
        suite_id=suite_id(cases),
        provenance={
            "sources": provenance,
            "rubrics": sorted({c.scorer.rubric["name"] for c in cases if c.scorer.rubric}),
            "detectors": sorted({d for c in cases for d in (c.scorer.detector, c.scorer.gate) if d}),
            "options": {"top": opts.top, "min_score": opts.min_score, "robust": opts.robust},
        },
        generation={k: v for k, v in gen.items() if v is not None},
    )
    write_suite(opts.out, meta, cases)
    return meta, cases
