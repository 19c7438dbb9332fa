"""CLI commands of chunky.measure: `steer`, `steer-show` and `ablate` (registered by chunky.cli)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chunky.errors import ChunkyError, ConfigError

console = Console()
err_console = Console(stderr=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "steer"


def examples_from_run(run_dir: Path, top: int, min_score: float | None) -> tuple[list[Any], dict[str, Any]]:
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
    models = meta.get("models") if isinstance(meta.get("models"), dict) else {}
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    return exs, {"rubric": meta.get("rubric"), "target": models.get("target"), "judge": models.get("judge"), "config": config}


def _failed_models(result: Any) -> list[tuple[str, str]]:
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
    except (KeyError, TypeError):  # a run without a readable config: the rubric's defaults
        return None, "full"
    return surf_config.gate, resolve_judge_style(surf_config)


def _builtin_sets() -> list[str]:
    from chunky.measure.evalset import builtin_sets

    return builtin_sets()


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""

    @app.command()
    def steer(
        model: List[str] = typer.Option([], "--model", "-m", help="Target model spec, or LABEL=SPEC (e.g. sft=http://host:8000/v1:tulu-sft); repeat to compare models or checkpoints."),
        data: Optional[str] = typer.Option(
            None, "--data", "-d",
            help="Evaluation set: .jsonl/.json/.parquet/.csv, a saved HF dataset, hf:NAME[:SPLIT], or a built-in "
            f"set ({', '.join(_builtin_sets())}).",
        ),
        transform: List[str] = typer.Option(
            [], "--transform", "-t",
            help="latex | template:FILE | prefix:TEXT | suffix:TEXT | system:FILE | icl:FILE:N | translate:LANG | "
            "backstory | field:NAME | python:MODULE:FUNC. Repeat to chain. None: measure the original prompts only.",
        ),
        metric: Optional[str] = typer.Option(
            None, "--metric",
            help="A detector (code, sympy, tool_call, refusal, rebuttal, latex, math, phrase:TEXT, regex:P, short[:N], "
            "stance:no|yes), length, accuracy, or rubric:NAME[:THRESHOLD]. Default with --from-run: the run's rubric.",
        ),
        samples: int = typer.Option(1, "--samples", "-s", help="Responses per prompt and side (distinct samples)."),
        seed: int = typer.Option(0, "--seed", help="Seed for sampling, transforms and the bootstrap."),
        temperature: Optional[float] = typer.Option(None, "--temperature", help="Default: 0 for one sample, 1.0 for several."),
        max_tokens: int = typer.Option(512, "--max-tokens", help="Max tokens of each target response."),
        transform_model: str = typer.Option("local", "--transform-model", help="Model that writes translate/backstory rewrites."),
        judge: Optional[str] = typer.Option(None, "--judge", help="Judge model for rubric metrics ('none': the rubric's detector only). Default: local, or the run's judge."),
        judge_samples: int = typer.Option(1, "--judge-samples", help="Judge samples per response (scores averaged)."),
        judge_max_tokens: int = typer.Option(400, "--judge-max-tokens", help="Max tokens of each judgment."),
        limit: Optional[int] = typer.Option(None, "--limit", help="Use the first N examples."),
        prompt_field: Optional[str] = typer.Option(None, "--prompt-field", help="Column of the eval set holding the prompt (default: prompt, question, input...)."),
        reference_field: Optional[str] = typer.Option(None, "--reference-field", help="Column holding the reference answer (for --metric accuracy)."),
        from_run: Optional[Path] = typer.Option(None, "--from-run", help="Re-measure a SURF run's findings (results go to RUN/steer/NAME)."),
        top: int = typer.Option(20, "--top", help="With --from-run: how many top findings."),
        min_score: Optional[float] = typer.Option(None, "--min-score", help="With --from-run: only findings scored at least this."),
        plot: str = typer.Option("summary", "--plot", help="summary | examples | heatmap:X,Y (two numeric fields of the data)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default steer-<time>, or RUN/steer/NAME)."),
        name: Optional[str] = typer.Option(None, "--name", help="Name of the result (the folder under RUN/steer/)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing result in --out."),
        per_example: bool = typer.Option(False, "--per-example", help="Also print the per-example table."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary (without per-example pairs) as JSON."),
        concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Max parallel calls per target model."),
        boot: int = typer.Option(2000, "--boot", help="Bootstrap resamples."),
        confidence: float = typer.Option(0.95, "--confidence", help="Confidence level of the intervals."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the call cache for target calls."),
    ) -> None:
        """Steering score: a behaviour's rate on original vs transformed prompts, with a paired bootstrap CI, per model."""
        from chunky.measure.evalset import load_eval
        from chunky.measure.metrics import RubricMetric, parse_metric
        from chunky.measure.steer import (
            SteerConfig,
            check_plot_spec,
            ensure_unique_out,
            examples_table,
            parse_model_args,
            run_steer,
            summary_table,
        )

        if (data is None) == (from_run is None):
            raise ConfigError("steer: give exactly one of --data EVAL or --from-run DIR")
        if not 0 < confidence < 1:
            raise ConfigError("--confidence must be between 0 and 1 (e.g. 0.95)")
        if boot < 100:
            raise ConfigError("--boot must be at least 100")
        models, model_specs = parse_model_args(list(model))
        metric_obj = None
        judge_model = judge or "local"
        if from_run is not None:
            examples, info = examples_from_run(from_run, top, min_score)
            data_name = f"run:{from_run}"
            if not models:
                if not info.get("target"):
                    raise ConfigError(f"{from_run}: the run records no target model; pass --model")
                models = [info["target"]]
            judge_model = judge or info.get("judge") or "local"
            if metric is None:
                rub = info.get("rubric")
                if not isinstance(rub, dict) or not rub.get("name"):
                    raise ConfigError(f"{from_run}: the run records no rubric; pass --metric")
                from chunky.surf.rubric import Rubric

                metric = f"rubric:{rub['name']}"
                gate, style = _run_judging(info.get("config") or {})
                metric_obj = RubricMetric(
                    metric, rub["name"], judge_model, 50.0, judge_samples,
                    rubric=Rubric.from_dict(rub), judge_max_tokens=judge_max_tokens, gate=gate, style=style,
                )
        else:
            assert data is not None
            examples, data_name = load_eval(data, prompt_field=prompt_field, reference_field=reference_field, limit=limit)
        if not models:
            raise ConfigError("steer: give at least one --model")
        if metric is None:
            raise ConfigError("steer: give --metric (e.g. --metric sympy, --metric length, --metric rubric:rebut)")
        plot = check_plot_spec(plot, examples)
        cfg = SteerConfig(
            models=models,
            model_specs=model_specs,
            metric=metric,
            transforms=list(transform),
            samples=samples,
            seed=seed,
            temperature=temperature,
            max_tokens=max_tokens,
            transform_model=transform_model,
            judge_model=judge_model,
            judge_samples=judge_samples,
            judge_max_tokens=judge_max_tokens,
            n_boot=boot,
            confidence=confidence,
            max_concurrency=concurrency,
            use_cache=not no_cache,
        )
        if metric_obj is None:
            metric_obj = parse_metric(
                metric, judge_model=judge_model, judge_samples=judge_samples, judge_max_tokens=judge_max_tokens
            )
        label = name or _slug("_".join([*transform, metric]) if transform else metric)
        if out is None:
            out = (from_run / "steer" / label) if from_run is not None else Path(f"steer-{time.strftime('%Y%m%d-%H%M%S')}")
        if not overwrite:
            ensure_unique_out(out)

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("steer"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console, transient=True, disable=as_json,
        ) as bar:
            task = bar.add_task("calls", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = asyncio.run(
                run_steer(examples, cfg, data_name=data_name, metric=metric_obj, progress=progress, plot=plot, name=label)
            )
        paths = result.save(out)
        failed = _failed_models(result)
        if as_json:
            d = result.to_dict(include_pairs=False)
            d["files"] = [str(p) for p in paths]
            typer.echo(json.dumps(d, ensure_ascii=False))
        else:
            console.print(summary_table(result))
            if per_example:
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
            raise typer.Exit(1)

    @app.command("steer-show")
    def steer_show(
        path: Path = typer.Argument(..., help="A steering output folder (OUT/steer.json)."),
        per_example: bool = typer.Option(False, "--per-example", help="Also print the per-example table."),
        plot: Optional[str] = typer.Option(None, "--plot", help="Redraw steer.png/svg as summary | examples | heatmap:X,Y."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
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

    @app.command()
    def ablate(
        index: Path = typer.Argument(..., help="A TURF index folder (chunky index)."),
        out: Path = typer.Option(..., "--out", "-o", help="The mix to write (JSONL, Tülu schema); a .manifest.json goes next to it."),
        drop_source: List[str] = typer.Option([], "--drop-source", help="Remove every conversation of this source."),
        drop_cluster: List[int] = typer.Option([], "--drop-cluster", help="Remove conversations whose query has an attribute in this cluster."),
        drop_match: List[str] = typer.Option([], "--drop-match", help="Remove conversations matching this Python regex (see --match-side)."),
        drop_feature: List[str] = typer.Option([], "--drop-feature", help="Remove conversations with this lexical feature (e.g. 'response=closing:i hope it is correct')."),
        match_side: str = typer.Option("any", "--match-side", help="Where --drop-match looks: query, response or any."),
        downweight: List[str] = typer.Option([], "--downweight", help="SOURCE:WEIGHT: keep a seeded share (0.5 = half; 2 = twice)."),
        add: List[Path] = typer.Option([], "--add", help="Add the conversations of this JSONL (counter-examples)."),
        base: str = typer.Option("index", "--base", help="index: the index's conversations; data: the original training file."),
        data_path: Optional[str] = typer.Option(None, "--data", help="With --base data: the training file (default: the one the index was built from)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the --downweight draws."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Count only; write nothing."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
        as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
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
