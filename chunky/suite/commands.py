"""CLI commands of chunky.suite (registered by chunky.cli): `suite build`, `suite export`, `check`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from chunky.errors import ConfigError

console = Console()
err_console = Console(stderr=True)

EXIT_REGRESSION = 1
EXIT_INCOMPLETE = 2


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    suite_app = typer.Typer(help="Regression suites from SURF findings and steering results.", no_args_is_help=True)
    app.add_typer(suite_app, name="suite")

    @suite_app.command("build")
    def build(
        sources: List[Path] = typer.Argument(..., help="SURF run directories and steering result directories."),
        out: Path = typer.Option(..., "--out", "-o", help="The suite directory to write (suite.json, cases.jsonl)."),
        top: int = typer.Option(20, "--top", help="At most this many findings per source."),
        min_score: float = typer.Option(50.0, "--min-score", help="SURF findings scored at least this (0-100)."),
        robust: bool = typer.Option(False, "--robust", help="Only findings whose robustness rate is known (`chunky robust`)."),
        name: Optional[str] = typer.Option(None, "--name", help="Suite name (default: the --out folder's name)."),
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

    @suite_app.command("export")
    def export(
        suite: Path = typer.Argument(..., help="A suite directory."),
        fmt: str = typer.Option(..., "--format", "-f", help="inspect | promptfoo | jsonl"),
        out: Path = typer.Option(..., "--out", "-o", help="inspect: a .py file; promptfoo: a directory; jsonl: a file."),
        model: Optional[str] = typer.Option(None, "--model", help="promptfoo: the target (a chunky spec served over HTTP)."),
        judge: Optional[str] = typer.Option(None, "--judge", help="promptfoo: the llm-rubric grader for rubric cases."),
        samples: int = typer.Option(5, "--samples", help="Samples per case (inspect epochs, promptfoo repeat)."),
        temperature: Optional[float] = typer.Option(None, "--temperature", help="Target sampling temperature (default: the suite's)."),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Max tokens of each target response (default: the suite's)."),
        seed: int = typer.Option(0, "--seed", help="promptfoo: the provider's sampling seed."),
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

    @app.command("check")
    def check(
        suite: Path = typer.Argument(..., help="A suite directory (chunky suite build)."),
        model: str = typer.Option(..., "--model", "-m", help="The checkpoint to check (a model spec)."),
        out: Path = typer.Option(..., "--out", "-o", help="CHECK.json to write (resumes from CHECK.json.partial.jsonl)."),
        samples: int = typer.Option(5, "--samples", "-k", help="Samples per case."),
        baseline: Optional[Path] = typer.Option(None, "--baseline", help="A previous CHECK.json of the same suite."),
        max_increase: float = typer.Option(10.0, "--max-increase", help="Percentage points a case's rate may rise."),
        seed: int = typer.Option(0, "--seed", help="Seed of the target samples."),
        temperature: Optional[float] = typer.Option(None, "--temperature", help="Default: the suite's target sampling, else 1.0."),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Max tokens of each target response (default: the suite's)."),
        judge: Optional[str] = typer.Option(None, "--judge", help="Judge for rubric cases (default: the one that found them)."),
        system: Optional[str] = typer.Option(None, "--system", help="System prompt for every case (replaces the cases' own)."),
        concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Max parallel target calls."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the call cache."),
        as_json: bool = typer.Option(False, "--json", help="Print the check as JSON on stdout."),
    ) -> None:
        """Run a suite on a checkpoint: each case's rate with a 95% interval; exit 1 when a case's rate rose by more
        than --max-increase over --baseline and the intervals do not overlap (2 when a case could not be measured)."""
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
            sys.exit(EXIT_REGRESSION)
        if status == "incomplete":
            err_console.print(f"INCOMPLETE: {len(result.unmeasured)} case(s) could not be measured (every sample failed): "
                              f"{', '.join(result.unmeasured)} · {summary} · run it again to retry the failed samples",
                              highlight=False, soft_wrap=True)
            sys.exit(EXIT_INCOMPLETE)
        verdict = "no regression" if base is not None else "measured (no --baseline to compare with)"
        err_console.print(f"OK: {verdict} · {summary}", highlight=False, soft_wrap=True)
