"""Steering scores (paper §4.3, App. B, C): run models on an evaluation set's original prompts and on
their transformed versions, measure a behaviour on every response, and report the rate on each side,
the delta with a paired bootstrap interval, per-model rows and per-example pairs.

Saved as OUT/steer.json (SteerResult.to_dict), OUT/pairs.jsonl, OUT/steer.png and OUT/steer.svg.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chunky import serde
from chunky.errors import ChunkyError, ConfigError, ModelError
from chunky.measure.evalset import EvalExample
from chunky.measure.metrics import Metric, parse_metric
from chunky.measure.stats import DEFAULT_BOOT, Estimate, bootstrap_mean, paired_bootstrap_delta, relative_change
from chunky.measure.transforms import Prompt, Transform, TransformContext, parse_transform, transform_all
from chunky.models.types import ChatResult

FORMAT = "chunky-steer"
VERSION = 1


@dataclass
class SteerConfig:
    models: list[str]  # labels of the rows (the spec itself unless a LABEL=SPEC was given)
    metric: str
    transforms: list[str] = field(default_factory=list)
    model_specs: dict[str, str] = field(default_factory=dict)  # label -> spec, for labelled models
    samples: int = 1
    seed: int = 0
    temperature: float | None = None  # None: 0 for one sample, 1.0 for several
    max_tokens: int = 512
    transform_model: str = "local"
    judge_model: str = "local"
    judge_samples: int = 1
    judge_max_tokens: int = 400
    n_boot: int = DEFAULT_BOOT
    confidence: float = 0.95
    max_concurrency: int | None = None
    use_cache: bool = True

    def spec_of(self, model: str) -> str:
        return self.model_specs.get(model, model)

    def effective_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.samples == 1 else 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



@dataclass
class Sample:
    """One response to one prompt, and its measurement."""

    sample_index: int
    response: str | None
    value: float | None
    evidence: str = ""
    error: str | None = None
    output_tokens: int = 0


@dataclass
class Side:
    """All samples of one prompt version (original or transformed) of one example for one model."""

    prompt: Prompt | None
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None  # the transform failed: nothing was asked

    @property
    def value(self) -> float | None:
        vals = [s.value for s in self.samples if s.value is not None]
        return sum(vals) / len(vals) if vals else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt.to_dict() if self.prompt else None,
            "value": self.value,
            "error": self.error,
            "samples": [asdict(s) for s in self.samples],
        }



@dataclass
class Pair:
    """One example under one model: the original side and (when a transform is given) the transformed side."""

    example: EvalExample
    model: str
    original: Side
    transformed: Side | None = None

    @property
    def delta(self) -> float | None:
        if self.transformed is None:
            return None
        a, b = self.original.value, self.transformed.value
        return None if a is None or b is None else b - a

    def to_dict(self) -> dict[str, Any]:
        return {
            "example": self.example.to_dict(),
            "model": self.model,
            "original": self.original.to_dict(),
            "transformed": self.transformed.to_dict() if self.transformed else None,
            "delta": self.delta,
        }



@dataclass
class ModelRow:
    """The summary of one model: rates on each side, the delta, and (without a transform, for the
    second and later models) the paired difference from the first model."""

    model: str
    n_examples: int
    n_errors: int
    original: Estimate
    transformed: Estimate | None = None
    delta: Estimate | None = None
    relative: float | None = None
    vs_first: Estimate | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "n_examples": self.n_examples,
            "n_errors": self.n_errors,
            "original": self.original.to_dict(),
            "transformed": self.transformed.to_dict() if self.transformed else None,
            "delta": self.delta.to_dict() if self.delta else None,
            "relative": self.relative,
            "vs_first": self.vs_first.to_dict() if self.vs_first else None,
        }



@dataclass
class SteerResult:
    config: SteerConfig
    data: str
    metric_kind: str
    metric_unit: str
    rows: list[ModelRow]
    pairs: list[Pair]
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    elapsed_s: float = 0.0
    plot: str = "summary"
    name: str = ""

    @property
    def has_transform(self) -> bool:
        return bool(self.config.transforms)

    @property
    def transform_label(self) -> str:
        return " + ".join(self.config.transforms) if self.config.transforms else "none"

    def row(self, model: str) -> ModelRow:
        for r in self.rows:
            if r.model == model:
                return r
        raise KeyError(model)

    def pairs_of(self, model: str) -> list[Pair]:
        return [p for p in self.pairs if p.model == model]

    def to_dict(self, include_pairs: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "created_at": self.created_at,
            "elapsed_s": round(self.elapsed_s, 3),
            "data": self.data,
            "transform": self.transform_label,
            "metric": {"spec": self.config.metric, "kind": self.metric_kind, "unit": self.metric_unit},
            "plot": self.plot,
            "config": self.config.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
        }
        if include_pairs:
            d["pairs"] = [p.to_dict() for p in self.pairs]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SteerResult:
        if d.get("format") != FORMAT:
            raise ConfigError(f"not a chunky steering result (format {d.get('format')!r})")
        # Real work: the file nests the metric's kind and unit, and may leave out the pairs (include_pairs=False).
        metric = d.get("metric") or {}
        flat = {**d, "metric_kind": metric.get("kind"), "metric_unit": metric.get("unit"), "pairs": d.get("pairs") or []}
        return serde.from_dict(cls, flat, where="steering result")

    def save(self, out: Path) -> list[Path]:
        """Write steer.json and pairs.jsonl into `out`. The figures are the caller's to draw
        (`chunky.measure.plots.save_with_figures` does both), so this module never imports the plotting one."""
        out.mkdir(parents=True, exist_ok=True)
        j = out / "steer.json"
        tmp = j.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(j)
        pj = out / "pairs.jsonl"
        with pj.open("w", encoding="utf-8") as f:
            for p in self.pairs:
                f.write(json.dumps(flat_pair(p), ensure_ascii=False) + "\n")
        return [j, pj]

    @classmethod
    def load(cls, path: Path) -> SteerResult:
        f = path / "steer.json" if path.is_dir() else path
        if not f.is_file():
            raise ConfigError(f"{f}: no such file (a steering result is OUT/steer.json)")
        try:
            return cls.from_dict(json.loads(f.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{f}: not valid JSON (line {e.lineno}: {e.msg})") from None
        except KeyError as e:
            raise ConfigError(f"{f}: missing field {e}") from None


def flat_pair(p: Pair) -> dict[str, Any]:
    """One line of pairs.jsonl: the example, both prompts as the model saw them, responses and values."""

    def side(s: Side | None) -> dict[str, Any] | None:
        if s is None:
            return None
        return {
            "prompt": s.prompt.user if s.prompt else None,
            "system": s.prompt.system if s.prompt else None,
            "n_context_turns": len(s.prompt.history) if s.prompt else 0,
            "value": s.value,
            "responses": [x.response for x in s.samples],
            "values": [x.value for x in s.samples],
            "evidence": [x.evidence for x in s.samples],
            "errors": [x.error for x in s.samples if x.error] + ([s.error] if s.error else []),
        }

    return {
        "id": p.example.id,
        "model": p.model,
        "reference": p.example.reference,
        "meta": p.example.meta,
        "original": side(p.original),
        "transformed": side(p.transformed),
        "delta": p.delta,
    }


# --- running -----------------------------------------------------------------------------------

ProgressFn = Callable[[int, int], None]


def _sample_seed(seed: int, sample_index: int) -> int:
    # Each sample needs its own sampling seed: one seed for all would repeat the same answer.
    return seed * 1_000_003 + sample_index


async def _ask(
    target: Any, metric: Metric, ex: EvalExample, prompt: Prompt, cfg: SteerConfig, s: int
) -> Sample:
    try:
        res: ChatResult = await target.generate(
            prompt.messages(),
            sample_index=s,
            seed=_sample_seed(cfg.seed, s),
            temperature=cfg.effective_temperature(),
            max_tokens=cfg.max_tokens,
        )
    except ModelError as e:
        return Sample(s, None, None, error=f"model error: {e}")
    try:
        mv = await metric.measure(ex, prompt, res)
    except ModelError as e:
        return Sample(s, res.text, None, error=f"metric error: {e}", output_tokens=res.usage.output_tokens)
    return Sample(s, res.text, mv.value, mv.evidence, mv.error, res.usage.output_tokens)


def summarize(
    pairs: list[Pair], models: list[str], cfg: SteerConfig, has_transform: bool
) -> list[ModelRow]:
    rows: list[ModelRow] = []
    first_vals: dict[str, float | None] = {}
    for mi, m in enumerate(models):
        ps = [p for p in pairs if p.model == m]
        orig = [p.original.value for p in ps]
        errors = sum(
            1 for p in ps for side in (p.original, p.transformed) if side is not None
            for x in side.samples if x.value is None
        ) + sum(1 for p in ps if p.transformed is not None and p.transformed.error)
        o = bootstrap_mean(orig, n_boot=cfg.n_boot, confidence=cfg.confidence, seed=cfg.seed)
        row = ModelRow(model=m, n_examples=len(ps), n_errors=errors, original=o)
        if has_transform:
            trans = [p.transformed.value if p.transformed else None for p in ps]
            row.transformed = bootstrap_mean(trans, n_boot=cfg.n_boot, confidence=cfg.confidence, seed=cfg.seed)
            row.delta = paired_bootstrap_delta(orig, trans, n_boot=cfg.n_boot, confidence=cfg.confidence, seed=cfg.seed)
            row.relative = relative_change(o, row.delta)
        if mi == 0:
            first_vals = {p.example.id: p.original.value for p in ps}
        elif not has_transform:
            base = [first_vals.get(p.example.id) for p in ps]
            row.vs_first = paired_bootstrap_delta(
                base, orig, n_boot=cfg.n_boot, confidence=cfg.confidence, seed=cfg.seed
            )
        rows.append(row)
    return rows


async def run_steer(
    examples: list[EvalExample],
    cfg: SteerConfig,
    *,
    data_name: str = "",
    transforms: list[Transform] | None = None,
    metric: Metric | None = None,
    progress: ProgressFn | None = None,
    plot: str = "summary",
    name: str = "",
) -> SteerResult:
    """Measure `cfg.metric` on every model × example × side × sample; see the module docstring."""
    from chunky.models import GenerateConfig, get_model

    if not cfg.models:
        raise ConfigError("steer: give at least one --model")
    if len(set(cfg.models)) != len(cfg.models):
        raise ConfigError("steer: the same --model is given twice")
    if cfg.samples < 1:
        raise ConfigError("steer: --samples must be at least 1")
    if not examples:
        raise ConfigError(f"{data_name or 'steer'}: no examples")
    start = time.perf_counter()
    if transforms is None:
        transforms = [parse_transform(t) for t in cfg.transforms]
    if metric is None:
        metric = parse_metric(
            cfg.metric, judge_model=cfg.judge_model, judge_samples=cfg.judge_samples, judge_max_tokens=cfg.judge_max_tokens
        )
    if metric.needs_reference and not any(e.reference for e in examples):
        raise ConfigError(
            f"{data_name or 'evaluation set'}: metric '{metric.spec}' needs reference answers, and no example has one "
            "(add a 'reference' or 'answer' field, or use --reference-field)"
        )
    has_transform = bool(transforms)
    originals = [Prompt(ex.prompt) for ex in examples]
    transformed = None
    if has_transform:
        ctx = TransformContext(seed=cfg.seed, transform_model=cfg.transform_model)
        transformed = await transform_all(transforms, examples, ctx)

    sides_per_example = 2 if has_transform else 1
    total = len(cfg.models) * len(examples) * sides_per_example * cfg.samples
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    async def run_model(m: str) -> list[Pair]:
        target = get_model(
            cfg.spec_of(m),
            role="target",
            config=GenerateConfig(max_tokens=cfg.max_tokens),
            max_concurrency=cfg.max_concurrency,
            use_cache=cfg.use_cache,
        )

        async def side(ex: EvalExample, prompt: Prompt | None, error: str | None) -> Side:
            if prompt is None:
                for _ in range(cfg.samples):
                    tick()
                return Side(None, [], error=error)

            async def one(s: int) -> Sample:
                out = await _ask(target, metric, ex, prompt, cfg, s)
                tick()
                return out

            samples = list(await asyncio.gather(*(one(s) for s in range(cfg.samples))))
            return Side(prompt, samples)

        async def pair(i: int, ex: EvalExample) -> Pair:
            o = side(ex, originals[i], None)
            if transformed is None:
                return Pair(ex, m, await o)
            t = transformed[i]
            so, st = await asyncio.gather(o, side(ex, t.prompt, t.error))
            return Pair(ex, m, so, st)

        return list(await asyncio.gather(*(pair(i, ex) for i, ex in enumerate(examples))))

    # Models run side by side (each under its own concurrency limit); rows keep the --model order.
    per_model = await asyncio.gather(*(run_model(m) for m in cfg.models))
    pairs: list[Pair] = [p for ps in per_model for p in ps]

    rows = summarize(pairs, cfg.models, cfg, has_transform)
    return SteerResult(
        config=cfg,
        data=data_name,
        metric_kind=metric.kind,
        metric_unit=metric.unit,
        rows=rows,
        pairs=pairs,
        elapsed_s=time.perf_counter() - start,
        plot=plot,
        name=name,
    )


# --- presentation ------------------------------------------------------------------------------


def fmt_value(result: SteerResult, v: float | None, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if result.metric_kind == "mean":
        return f"{v:+.1f}" if signed else f"{v:.1f}"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}%"


def fmt_estimate(result: SteerResult, e: Estimate | None, signed: bool = False) -> str:
    if e is None or e.value is None:
        return "—"
    s = fmt_value(result, e.value, signed)
    if e.low is None or e.high is None or e.n < 2:
        return s
    scale = 1 if result.metric_kind == "mean" else 100
    return f"{s} [{e.low * scale:+.1f}, {e.high * scale:+.1f}]" if signed else f"{s} [{e.low * scale:.1f}, {e.high * scale:.1f}]"


def summary_table(result: SteerResult) -> Any:
    """The per-model table (paper Figures 22/23 as numbers) as a rich Table."""
    from rich.table import Table

    unit = result.metric_unit if result.metric_kind == "mean" else "% (pp for Δ)"
    ci = int(round(result.config.confidence * 100))
    t = Table(
        title=f"{result.config.metric} · transform: {result.transform_label} · {result.data} · {unit}",
        title_justify="left",
    )
    t.add_column("model", no_wrap=True)
    t.add_column("n", justify="right")
    t.add_column(f"original [{ci}% CI]", justify="right")
    if result.has_transform:
        t.add_column(f"transformed [{ci}% CI]", justify="right")
        t.add_column(f"Δ [{ci}% CI]", justify="right")
        t.add_column("relative", justify="right")
    elif len(result.rows) > 1:
        t.add_column(f"vs first model [{ci}% CI]", justify="right")
    t.add_column("errors", justify="right")
    for r in result.rows:
        cells = [r.model, str(r.n_examples), fmt_estimate(result, r.original)]
        if result.has_transform:
            cells += [
                fmt_estimate(result, r.transformed),
                fmt_estimate(result, r.delta, signed=True),
                "—" if r.relative is None else f"{100 * r.relative:+.0f}%",
            ]
        elif len(result.rows) > 1:
            cells.append(fmt_estimate(result, r.vs_first, signed=True))
        cells.append(str(r.n_errors))
        t.add_row(*cells)
    return t


def examples_table(result: SteerResult, limit: int | None = None) -> Any:
    """Per-example values (the paper's Table 2 style): one row per prompt, one column per model (and side)."""
    from rich.table import Table

    n = result.config.samples
    t = Table(title=f"{result.config.metric} per example ({n} sample{'s' if n > 1 else ''} each)", title_justify="left")
    t.add_column("id")
    t.add_column("prompt", overflow="fold", max_width=60)
    for m in result.config.models:
        t.add_column(m if not result.has_transform else f"{m} orig", justify="right")
        if result.has_transform:
            t.add_column(f"{m} transf", justify="right")
    by_model = {m: {p.example.id: p for p in result.pairs_of(m)} for m in result.config.models}
    first = result.config.models[0]
    ids = [p.example.id for p in result.pairs_of(first)]
    for ex_id in ids[: limit or None]:
        ex = by_model[first][ex_id].example
        cells = [ex_id, ex.prompt]
        for m in result.config.models:
            p = by_model[m].get(ex_id)
            cells.append(fmt_value(result, p.original.value if p else None))
            if result.has_transform:
                cells.append(fmt_value(result, p.transformed.value if p and p.transformed else None))
        t.add_row(*cells)
    return t


_LABEL = re.compile(r"^([A-Za-z0-9_.+-]+)=(.+)$")


def parse_model_args(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """--model values: a spec, or LABEL=SPEC to name a row (e.g. sft=http://host:8000/v1:tulu-sft).
    A spec's own '=' (mock:text=...) comes after a colon, so it is never read as a label."""
    labels: list[str] = []
    specs: dict[str, str] = {}
    for a in args:
        m = _LABEL.match(a)
        if m and ":" not in m.group(1):
            labels.append(m.group(1))
            specs[m.group(1)] = m.group(2)
        else:
            labels.append(a)
    return labels, specs


def check_plot_spec(plot: str, examples: list[EvalExample]) -> str:
    """Validate --plot against the data: summary | examples | heatmap:X,Y (X, Y numeric fields)."""
    plot = plot.strip()
    if plot in ("summary", "examples"):
        return plot
    if plot.startswith("heatmap:"):
        axes = plot[len("heatmap:") :].split(",")
        if len(axes) != 2 or not all(axes):
            raise ConfigError(f"--plot '{plot}': write heatmap:X,Y with two fields of the evaluation set")
        for a in axes:
            for ex in examples:
                v = ex.meta.get(a)
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise ConfigError(f"--plot '{plot}': example '{ex.id}' has no numeric field '{a}'")
        return plot
    raise ConfigError(f"--plot '{plot}': use summary, examples or heatmap:X,Y")


def ensure_unique_out(out: Path) -> None:
    if (out / "steer.json").exists():
        raise ChunkyError(f"{out}/steer.json exists; choose another --out or add --overwrite")
