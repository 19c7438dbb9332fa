"""CLI commands of chunky.suite (registered by chunky.cli): `suite build`, `suite export`, `check`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chunky.cli_options import (
    NoCache,
    SuiteMaxTokens,
    concurrency_option,
    json_option,
    judge_option,
    min_score_option,
    model_option,
    out_option,
    samples_option,
    seed_option,
    temperature_option,
    top_option,
)
from chunky.errors import ConfigError, ExitCode

console = Console()
err_console = Console(stderr=True)


def build(
    sources: Annotated[list[Path], typer.Argument(help="SURF run directories and steering result directories.")],
    out: Annotated[Path, out_option("The suite directory to write (suite.json, cases.jsonl).")],
    top: Annotated[int, top_option("At most this many findings per source.")] = 20,
    min_score: Annotated[float, min_score_option("SURF findings scored at least this (0-100).")] = 50.0,
    robust: Annotated[bool, typer.Option("--robust", help="Only findings whose robustness rate is known (`chunky robust`).")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Suite name (default: the --out folder's name).")] = None,
) -> None:
    """Turn confirmed findings into a suite of regression cases."""
    from chunky.suite.build import BuildOptions, build_suite

    meta, cases = build_suite(BuildOptions(sources=list(sources), out=out, top=top, min_score=min_score,
                                           robust=robust, name=name))
    with_rate = sum(1 for c in cases if c.rate is not None)
    err_console.print(
        f"Wrote {out} · {len(cases)} cases ({with_rate} with a measured rate) · suite id {meta.suite_id}",
        highlight=False,
    )


def export(
    suite: Annotated[Path, typer.Argument(help="A suite directory.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="inspect | promptfoo | jsonl")],
    out: Annotated[Path, out_option("inspect: a .py file; promptfoo: a directory; jsonl: a file.")],
    model: Annotated[str | None, model_option("promptfoo: the target (a chunky spec served over HTTP).")] = None,
    judge: Annotated[str | None, judge_option("promptfoo: the llm-rubric grader for rubric cases.")] = None,
    samples: Annotated[int, samples_option("Samples per case (inspect epochs, promptfoo repeat).")] = 5,
    temperature: Annotated[float | None, temperature_option("Target sampling temperature (default: the suite's).")] = None,
    max_tokens: SuiteMaxTokens = None,
    seed: Annotated[int, seed_option("promptfoo: the provider's sampling seed.")] = 0,
) -> None:
    """Export a suite to inspect-ai, promptfoo or JSONL."""
    from chunky.suite.export import FORMATS, export_suite
    from chunky.suite.records import load_suite

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: use {', '.join(FORMATS)}")
    if samples < 1:
        raise ConfigError("--samples must be at least 1")
    s = load_suite(suite)
    path = export_suite(s, fmt, out, model=model, judge=judge, samples=samples, temperature=temperature,
                        max_tokens=max_tokens, seed=seed)
    err_console.print(f"Wrote {path} ({len(s.cases)} cases, {fmt})", highlight=False)


def check(
    suite: Annotated[Path, typer.Argument(help="A suite directory (chunky suite build).")],
    model: Annotated[str, model_option("The checkpoint to check (a model spec).", short=True)],
    out: Annotated[Path, out_option("CHECK.json to write (resumes from CHECK.json.partial.jsonl).")],
    samples: Annotated[int, samples_option("Samples per case.", short="-k")] = 5,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="A previous CHECK.json of the same suite.")] = None,
    max_increase: Annotated[float, typer.Option("--max-increase", help="Percentage points a case's rate may rise.")] = 10.0,
    seed: Annotated[int, seed_option("Seed of the target samples.")] = 0,
    temperature: Annotated[float | None, temperature_option("Default: the suite's target sampling, else 1.0.")] = None,
    max_tokens: SuiteMaxTokens = None,
    judge: Annotated[str | None, judge_option("Judge for rubric cases (default: the one that found them).")] = None,
    system: Annotated[str | None, typer.Option("--system", help="System prompt for every case (replaces the cases' own).")] = None,
    concurrency: Annotated[int | None, concurrency_option("Max parallel target calls.")] = None,
    no_cache: NoCache = False,
    as_json: Annotated[bool, json_option("Print the check as JSON on stdout.")] = False,
) -> None:
    """Run a suite on a checkpoint: each case's rate with a 95% interval; exit 1 when a case's rate rose by more
    than --max-increase over --baseline and the intervals do not overlap, or when a case could not be measured."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from chunky.suite.check import CheckConfig, check_baseline, check_table, compare, finish, load_check, run_check
    from chunky.suite.records import load_suite

    if max_increase < 0:
        raise ConfigError("--max-increase must be ≥ 0 (percentage points)")
    s = load_suite(suite)
    base = None
    if baseline is not None:
        base = load_check(baseline)
        check_baseline(base, s.meta.suite_id, s.meta.name)
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out}: is a directory; give a file name such as check.json")
    cfg = CheckConfig(model=model, samples=samples, seed=seed, temperature=temperature, max_tokens=max_tokens,
                      judge=judge, system=system, concurrency=concurrency, use_cache=not no_cache)
    with Progress(TextColumn("check"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("samples", total=len(s.cases) * samples)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = asyncio.run(run_check(s, cfg, out=out, progress=progress))
    if base is not None:
        result.comparison = compare(result, base, max_increase)
    finish(result, out)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        console.print(check_table(result))
    status = result.status
    summary = f"{len(result.cases)} cases × {samples} samples · wrote {out}"
    if status == "regression":
        assert result.comparison is not None
        ids = ", ".join(result.comparison.regressions)
        err_console.print(f"REGRESSION: {len(result.comparison.regressions)} case(s) rose by more than "
                          f"{max_increase:g} pp beyond sampling noise: {ids} · {summary}", highlight=False, soft_wrap=True)
        raise typer.Exit(ExitCode.FAILED)
    if status == "incomplete":
        err_console.print(f"INCOMPLETE: {len(result.unmeasured)} case(s) could not be measured (every sample failed): "
                          f"{', '.join(result.unmeasured)} · {summary} · run it again to retry the failed samples",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(ExitCode.FAILED)  # nothing measured is a failure, as in surf, robust and steer
    verdict = "no regression" if base is not None else "measured (no --baseline to compare with)"
    err_console.print(f"OK: {verdict} · {summary}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    suite_app = typer.Typer(help="Regression suites from SURF findings and steering results.", no_args_is_help=True)
    suite_app.command("build")(build)
    suite_app.command("export")(export)
    app.add_typer(suite_app, name="suite")
    app.command("check")(check)

