"""CLI commands of chunky.measure: `steer`, `steer-show` and `ablate` (registered by chunky.cli)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chunky.cli_options import (
    AsJsonManifest,
    FromRunTop,
    OverwriteOut,
    PerExample,
    concurrency_option,
    from_run_option,
    json_option,
    judge_option,
    limit_option,
    max_tokens_option,
    min_score_option,
    model_option,
    no_cache_option,
    out_option,
    overwrite_option,
    samples_option,
    seed_option,
    temperature_option,
)
from chunky.errors import ChunkyError, ConfigError, ExitCode

if TYPE_CHECKING:
    from chunky.measure.evalset import EvalExample
    from chunky.measure.metrics import Metric
    from chunky.measure.steer import SteerConfig, SteerResult

console = Console()
err_console = Console(stderr=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "steer"


def examples_from_run(run_dir: Path, top: int, min_score: float | None) -> tuple[list[EvalExample], dict[str, Any]]:
    """A SURF run's findings as an evaluation set, with the run's target, judge and rubric."""
    from chunky.measure.evalset import EvalExample
    from chunky.store import RunStore

    store = RunStore.open(run_dir)
    try:
        found = store.top(n=top, min_score=min_score)
        meta = store.meta
    finally:
        store.close()
    exs = [
        EvalExample(
            id=f"cand-{c.id}",
            prompt=c.query or "",
            meta={"candidate_id": c.id, "run_id": c.run_id, "iteration": c.iteration, "score": c.score},
        )
        for c in found
        if (c.query or "").strip()
    ]
    if not exs:
        raise ChunkyError(
            f"{run_dir}: no scored findings{'' if min_score is None else f' with score >= {min_score:g}'} to re-measure"
        )
    recorded_models, recorded_config = meta.get("models"), meta.get("config")
    models = recorded_models if isinstance(recorded_models, dict) else {}
    config = recorded_config if isinstance(recorded_config, dict) else {}
    return exs, {"rubric": meta.get("rubric"), "target": models.get("target"), "judge": models.get("judge"), "config": config}


def _failed_models(result: SteerResult) -> list[tuple[str, str]]:
    """(model, its last error) for every model whose pairs all failed."""
    out = []
    for row in result.rows:
        if row.n_examples and row.n_errors >= row.n_examples:
            errors: list[str] = []
            for p in result.pairs_of(row.model):
                for side in (p.original, p.transformed):
                    if side is None:
                        continue
                    errors += [side.error] if side.error else [s.error for s in side.samples if s.error]
            out.append((row.model, errors[-1] if errors else "no measurement"))
    return out


def _run_judging(config: dict[str, Any]) -> tuple[str | None, str]:
    """The gate and prompt style a SURF run judged with (`--gate none` stays none)."""
    from chunky.surf.loop import SurfConfig, resolve_judge_style

    try:
        surf_config = SurfConfig.from_dict(config)
    except ConfigError:  # a run without a readable config: the rubric's defaults
        return None, "full"
    return surf_config.gate, resolve_judge_style(surf_config)


def _builtin_sets() -> list[str]:
    from chunky.measure.evalset import builtin_sets

    return builtin_sets()


def steer(
    model: Annotated[list[str], model_option("Target model spec, or LABEL=SPEC (e.g. sft=http://host:8000/v1:tulu-sft); repeat to compare models or checkpoints.", short=True)] = [],  # noqa: B006 (typer hands each call a fresh list)
    data: Annotated[str | None, typer.Option("--data", "-d", help="Evaluation set: .jsonl/.json/.parquet/.csv, a saved HF dataset, hf:NAME[:SPLIT], or a built-in "
        f"set ({', '.join(_builtin_sets())}).")] = None,
    transform: Annotated[list[str], typer.Option("--transform", "-t", help="latex | template:FILE | prefix:TEXT | suffix:TEXT | system:FILE | icl:FILE:N | translate:LANG | "
        "backstory | field:NAME | python:MODULE:FUNC. Repeat to chain. None: measure the original prompts only.")] = [],  # noqa: B006 (typer hands each call a fresh list)
    metric: Annotated[str | None, typer.Option("--metric", help="A detector (code, sympy, tool_call, refusal, rebuttal, latex, math, phrase:TEXT, regex:P, short[:N], "
        "stance:no|yes), length, accuracy, or rubric:NAME[:THRESHOLD]. Default with --from-run: the run's rubric.")] = None,
    samples: Annotated[int, samples_option("Responses per prompt and side (distinct samples).", short="-s")] = 1,
    seed: Annotated[int, seed_option("Seed for sampling, transforms and the bootstrap.")] = 0,
    temperature: Annotated[float | None, temperature_option("Default: 0 for one sample, 1.0 for several.")] = None,
    max_tokens: Annotated[int, max_tokens_option("Max tokens of each target response.")] = 512,
    transform_model: Annotated[str, typer.Option("--transform-model", help="Model that writes translate/backstory rewrites.")] = "local",
    judge: Annotated[str | None, judge_option("Judge model for rubric metrics ('none': the rubric's detector only). Default: local, or the run's judge.")] = None,
    judge_samples: Annotated[int, typer.Option("--judge-samples", help="Judge samples per response (scores averaged).")] = 1,
    judge_max_tokens: Annotated[int, typer.Option("--judge-max-tokens", help="Max tokens of each judgment.")] = 400,
    limit: Annotated[int | None, limit_option("Use the first N examples.")] = None,
    prompt_field: Annotated[str | None, typer.Option("--prompt-field", help="Column of the eval set holding the prompt (default: prompt, question, input...).")] = None,
    reference_field: Annotated[str | None, typer.Option("--reference-field", help="Column holding the reference answer (for --metric accuracy).")] = None,
    from_run: Annotated[Path | None, from_run_option("Re-measure a SURF run's findings (results go to RUN/steer/NAME).")] = None,
    top: FromRunTop = 20,
    min_score: Annotated[float | None, min_score_option("With --from-run: only findings scored at least this.")] = None,
    plot: Annotated[str, typer.Option("--plot", help="summary | examples | heatmap:X,Y (two numeric fields of the data).")] = "summary",
    out: Annotated[Path | None, out_option("Output folder (default steer-<time>, or RUN/steer/NAME).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name of the result (the folder under RUN/steer/).")] = None,
    overwrite: Annotated[bool, overwrite_option("Replace an existing result in --out.")] = False,
    per_example: PerExample = False,
    as_json: Annotated[bool, json_option("Print the summary (without per-example pairs) as JSON.")] = False,
    concurrency: Annotated[int | None, concurrency_option("Max parallel calls per target model.")] = None,
    boot: Annotated[int, typer.Option("--boot", help="Bootstrap resamples.")] = 2000,
    confidence: Annotated[float, typer.Option("--confidence", help="Confidence level of the intervals.")] = 0.95,
    no_cache: Annotated[bool, no_cache_option("Do not read or write the call cache for target calls.")] = False,
) -> None:
    """Steering score: a behaviour's rate on original vs transformed prompts, with a paired bootstrap CI, per model."""
    run_steer_command(
        SteerOptions(
            models=list(model),
            data=data,
            transforms=list(transform),
            metric=metric,
            samples=samples,
            seed=seed,
            temperature=temperature,
            max_tokens=max_tokens,
            transform_model=transform_model,
            judge=judge,
            judge_samples=judge_samples,
            judge_max_tokens=judge_max_tokens,
            limit=limit,
            prompt_field=prompt_field,
            reference_field=reference_field,
            from_run=from_run,
            top=top,
            min_score=min_score,
            plot=plot,
            out=out,
            name=name,
            overwrite=overwrite,
            per_example=per_example,
            as_json=as_json,
            concurrency=concurrency,
            boot=boot,
            confidence=confidence,
            use_cache=not no_cache,
        )
    )


@dataclass(frozen=True)
class SteerOptions:
    """Every flag of `chunky steer`, typed. The defaults live in the command's signature only; `config()` turns these,
    with what --data or --from-run resolved to, into the measurement's SteerConfig."""

    models: list[str]  # --model values: SPEC or LABEL=SPEC
    data: str | None
    transforms: list[str]
    metric: str | None
    samples: int
    seed: int
    temperature: float | None
    max_tokens: int
    transform_model: str
    judge: str | None
    judge_samples: int
    judge_max_tokens: int
    limit: int | None
    prompt_field: str | None
    reference_field: str | None
    from_run: Path | None
    top: int
    min_score: float | None
    plot: str
    out: Path | None
    name: str | None
    overwrite: bool
    per_example: bool
    as_json: bool
    concurrency: int | None
    boot: int
    confidence: float
    use_cache: bool

    def check(self) -> None:
        """The flag combinations no input can fix, before anything is read."""
        if (self.data is None) == (self.from_run is None):
            raise ConfigError("steer: give exactly one of --data EVAL or --from-run DIR")
        if not 0 < self.confidence < 1:
            raise ConfigError("--confidence must be between 0 and 1 (e.g. 0.95)")
        if self.boot < 100:
            raise ConfigError("--boot must be at least 100")

    def config(self, inputs: SteerInputs) -> SteerConfig:
        from chunky.measure.steer import SteerConfig

        return SteerConfig(
            models=inputs.models,
            model_specs=inputs.model_specs,
            metric=inputs.metric,
            transforms=list(self.transforms),
            samples=self.samples,
            seed=self.seed,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            transform_model=self.transform_model,
            judge_model=inputs.judge_model,
            judge_samples=self.judge_samples,
            judge_max_tokens=self.judge_max_tokens,
            n_boot=self.boot,
            confidence=self.confidence,
            max_concurrency=self.concurrency,
            use_cache=self.use_cache,
        )


@dataclass(frozen=True)
class SteerInputs:
    """What --data or --from-run resolve to: the examples, and the models, metric and judge that measure them."""

    examples: list[EvalExample]
    data_name: str
    models: list[str]  # row labels
    model_specs: dict[str, str]  # label -> spec, for LABEL=SPEC models
    metric: str
    metric_obj: Metric | None  # set when a run's rubric is the metric (judged the way the run judged)
    judge_model: str


def steer_inputs(opts: SteerOptions) -> SteerInputs:
    """Read the eval set (or the run's findings) and settle the models, the metric and the judge."""
    from chunky.measure.evalset import load_eval
    from chunky.measure.metrics import RubricMetric
    from chunky.measure.steer import parse_model_args

    models, model_specs = parse_model_args(list(opts.models))
    metric = opts.metric
    metric_obj: Metric | None = None
    judge_model = opts.judge or "local"
    if opts.from_run is not None:
        from_run = opts.from_run
        examples, info = examples_from_run(from_run, opts.top, opts.min_score)
        data_name = f"run:{from_run}"
        if not models:
            if not info.get("target"):
                raise ConfigError(f"{from_run}: the run records no target model; pass --model")
            models = [info["target"]]
        judge_model = opts.judge or info.get("judge") or "local"
        if metric is None:
            rub = info.get("rubric")
            if not isinstance(rub, dict) or not rub.get("name"):
                raise ConfigError(f"{from_run}: the run records no rubric; pass --metric")
            from chunky.surf.rubric import Rubric

            metric = f"rubric:{rub['name']}"
            gate, style = _run_judging(info.get("config") or {})
            metric_obj = RubricMetric(
                metric, rub["name"], judge_model, 50.0, opts.judge_samples,
                rubric=Rubric.from_dict(rub), judge_max_tokens=opts.judge_max_tokens, gate=gate, style=style,
            )
    else:
        assert opts.data is not None
        examples, data_name = load_eval(
            opts.data, prompt_field=opts.prompt_field, reference_field=opts.reference_field, limit=opts.limit
        )
    if not models:
        raise ConfigError("steer: give at least one --model")
    if metric is None:
        raise ConfigError("steer: give --metric (e.g. --metric sympy, --metric length, --metric rubric:rebut)")
    return SteerInputs(examples, data_name, models, model_specs, metric, metric_obj, judge_model)


def run_steer_command(opts: SteerOptions) -> None:
    """`chunky steer`: measure, save, print the summary; exits FAILED when every call of a model failed."""
    from chunky.measure.metrics import parse_metric
    from chunky.measure.steer import check_plot_spec, ensure_unique_out, examples_table, run_steer, summary_table

    opts.check()
    inputs = steer_inputs(opts)
    examples, data_name, metric = inputs.examples, inputs.data_name, inputs.metric
    plot = check_plot_spec(opts.plot, examples)
    cfg = opts.config(inputs)
    metric_obj = inputs.metric_obj
    if metric_obj is None:
        metric_obj = parse_metric(
            metric, judge_model=inputs.judge_model, judge_samples=opts.judge_samples, judge_max_tokens=opts.judge_max_tokens
        )
    transform = opts.transforms
    label = opts.name or _slug("_".join([*transform, metric]) if transform else metric)
    out = opts.out
    if out is None:
        from_run = opts.from_run
        out = (from_run / "steer" / label) if from_run is not None else Path(f"steer-{time.strftime('%Y%m%d-%H%M%S')}")
    if not opts.overwrite:
        ensure_unique_out(out)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("steer"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=opts.as_json,
    ) as bar:
        task = bar.add_task("calls", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = asyncio.run(
            run_steer(examples, cfg, data_name=data_name, metric=metric_obj, progress=progress, plot=plot, name=label)
        )
    from chunky.measure.plots import save_with_figures

    paths = save_with_figures(result, out)  # steer.json, pairs.jsonl, steer.png, steer.svg
    failed = _failed_models(result)
    if opts.as_json:
        d = result.to_dict(include_pairs=False)
        d["files"] = [str(p) for p in paths]
        typer.echo(json.dumps(d, ensure_ascii=False))
    else:
        console.print(summary_table(result))
        if opts.per_example:
            console.print(examples_table(result))
        errors = sum(r.n_errors for r in result.rows)
        note = f" · {errors} of {sum(r.n_examples for r in result.rows)} pairs with errors (left out of the rates)" if errors else ""
        err_console.print(
            f"[dim]{escape(str(out))}: steer.json, pairs.jsonl, steer.png, steer.svg · {result.elapsed_s:.1f}s{note}[/dim]",
            soft_wrap=True,
        )
    if failed:
        # Every pair of a model failed: its rate is not 0, it was never measured. Say so, and exit non-zero.
        model, error = failed[0]
        err_console.print(
            f"[bold red]failed[/bold red]: every call of model {escape(model)} failed"
            + (f" (and {len(failed) - 1} more models)" if len(failed) > 1 else "")
            + f": {escape(error)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(ExitCode.FAILED)


def steer_show(
    path: Annotated[Path, typer.Argument(help="A steering output folder (OUT/steer.json).")],
    per_example: PerExample = False,
    plot: Annotated[str | None, typer.Option("--plot", help="Redraw steer.png/svg as summary | examples | heatmap:X,Y.")] = None,
    as_json: Annotated[bool, json_option("Print the summary as JSON.")] = False,
) -> None:
    """Show a saved steering result (and optionally redraw its figure)."""
    from chunky.measure.plots import render
    from chunky.measure.steer import SteerResult, check_plot_spec, examples_table, summary_table

    result = SteerResult.load(path)
    if plot is not None:
        first = result.config.models[0]
        result.plot = check_plot_spec(plot, [p.example for p in result.pairs_of(first)])
        folder = path if path.is_dir() else path.parent
        render(result, folder / "steer")
        (folder / "steer.json").write_text(json.dumps(result.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(result.to_dict(include_pairs=False), ensure_ascii=False))
        return
    console.print(summary_table(result))
    if per_example:
        console.print(examples_table(result))


def ablate(
    index: Annotated[Path, typer.Argument(help="A TURF index folder (chunky index).")],
    out: Annotated[Path, out_option("The mix to write (JSONL, Tülu schema); a .manifest.json goes next to it.")],
    drop_source: Annotated[list[str], typer.Option("--drop-source", help="Remove every conversation of this source.")] = [],  # noqa: B006 (typer hands each call a fresh list)
    drop_cluster: Annotated[list[int], typer.Option("--drop-cluster", help="Remove conversations whose query has an attribute in this cluster.")] = [],  # noqa: B006 (typer hands each call a fresh list)
    drop_match: Annotated[list[str], typer.Option("--drop-match", help="Remove conversations matching this Python regex (see --match-side).")] = [],  # noqa: B006 (typer hands each call a fresh list)
    drop_feature: Annotated[list[str], typer.Option("--drop-feature", help="Remove conversations with this lexical feature (e.g. 'response=closing:i hope it is correct').")] = [],  # noqa: B006 (typer hands each call a fresh list)
    match_side: Annotated[str, typer.Option("--match-side", help="Where --drop-match looks: query, response or any.")] = "any",
    downweight: Annotated[list[str], typer.Option("--downweight", help="SOURCE:WEIGHT: keep a seeded share (0.5 = half; 2 = twice).")] = [],  # noqa: B006 (typer hands each call a fresh list)
    add: Annotated[list[Path], typer.Option("--add", help="Add the conversations of this JSONL (counter-examples).")] = [],  # noqa: B006 (typer hands each call a fresh list)
    base: Annotated[str, typer.Option("--base", help="index: the index's conversations; data: the original training file.")] = "index",
    data_path: Annotated[str | None, typer.Option("--data", help="With --base data: the training file (default: the one the index was built from).")] = None,
    seed: Annotated[int, seed_option("Seed of the --downweight draws.")] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; write nothing.")] = False,
    overwrite: OverwriteOut = False,
    as_json: AsJsonManifest = False,
) -> None:
    """Write a training mix with a chunk removed, down-weighted or balanced, plus a manifest of what changed."""
    from chunky.measure.ablate import AblationPlan, build_mix, check_output, manifest_path, parse_downweight

    if match_side not in ("query", "response", "any"):
        raise ConfigError(f"--match-side '{match_side}': use query, response or any")
    if base not in ("index", "data"):
        raise ConfigError(f"--base '{base}': use index or data")
    if data_path and base != "data":
        raise ConfigError("--data needs --base data")
    if not dry_run:
        check_output(out, overwrite)
    plan = AblationPlan(
        drop_sources=list(drop_source),
        drop_clusters=list(drop_cluster),
        drop_matches=list(drop_match),
        drop_features=list(drop_feature),
        match_side=match_side,  # type: ignore[arg-type]
        downweights=[parse_downweight(d) for d in downweight],
        adds=list(add),
        seed=seed,
        base=base,  # type: ignore[arg-type]
        data=data_path,
    )
    m = build_mix(index, plan, out, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(m.to_dict(), ensure_ascii=False))
        return
    t = Table(title=f"mix from {m.base}: {m.rows_before} → {m.rows_after} conversations", title_justify="left")
    for col in ("source", "before", "removed", "duplicated", "added", "after", "change"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for s in sorted(set(m.before) | set(m.after)):
        b, a = m.before.get(s, 0), m.after.get(s, 0)
        change = "new" if b == 0 else f"{100 * (a - b) / b:+.0f}%"
        t.add_row(s, str(b), str(m.removed.get(s, 0)), str(m.duplicated.get(s, 0)), str(m.added.get(s, 0)), str(a), change)
    console.print(t)
    ops = Table(title="operations", title_justify="left")
    ops.add_column("operation")
    ops.add_column("argument")
    ops.add_column("conversations", justify="right")
    for o in m.operations:
        ops.add_row(o.op, o.arg, str(o.rows))
    console.print(ops)
    if m.unmatched_ids:
        err_console.print(f"[yellow]{m.unmatched_ids} conversations selected in the index were not found in {escape(m.base_path)}[/yellow]")
    if m.skipped_rows:
        err_console.print(f"[yellow]{m.skipped_rows} rows of {escape(m.base_path)} had no usable conversation and are not in the mix[/yellow]")
    if not dry_run:
        err_console.print(f"[dim]wrote {escape(str(out))} and {escape(str(manifest_path(out)))}[/dim]")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command("steer")(steer)
    app.command("steer-show")(steer_show)
    app.command("ablate")(ablate)

