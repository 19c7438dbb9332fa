"""`chunky experiment`: a grid of mixes, each trained and measured (see chunky.train.experiment)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chunky.cli_options import json_option, out_option, overwrite_option
from chunky.errors import ExitCode

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def experiment(
    spec: Annotated[Path, typer.Argument(help="The experiment spec (YAML): mix, chunk, axes, train, measure.")],
    out: Annotated[Path, out_option("Experiment folder (cells/, results.json, table.md, figures).")],
    ray: Annotated[str | None, typer.Option("--ray", help="Run cells on Ray, one per worker: auto (local or RAY_ADDRESS) or ADDRESS.")] = None,
    overwrite: Annotated[bool, overwrite_option("Discard finished cells in --out and start again.")] = False,
    as_json: Annotated[bool, json_option("Print the results as JSON.")] = False,
) -> None:
    """Train and measure every cell of a causal grid (chunk kept × counter-examples × source); resumable per cell."""
    from chunky.interrupts import interrupted_line, signals_as_interrupt
    from chunky.train.commands import _need_train_extra
    from chunky.train.experiment import run_experiment
    from chunky.train.report import HEADER, table_rows

    _need_train_extra("chunky experiment")
    try:
        with warnings.catch_warnings(), signals_as_interrupt():
            warnings.simplefilter("ignore")
            res = run_experiment(spec, out, overwrite=overwrite, ray_address=ray,
                                 progress=lambda s: err_console.print(f"[dim]{escape(s)}[/dim]", highlight=False))
    except KeyboardInterrupt:
        from chunky.train.experiment import experiment_progress, load_spec

        p = experiment_progress(load_spec(spec), out, on_ray=bool(ray))
        typer.echo(interrupted_line(p.where(), p.saved(out)), err=True)
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    if as_json:
        typer.echo(json.dumps({"summary": res.summary, "cells": [c.to_dict() for c in res.cells],
                               "baseline": res.baseline, "ran": res.ran}, ensure_ascii=False))
        return
    t = Table(title=f"experiment {escape(str(out))}", title_justify="left")
    for h in HEADER:
        t.add_column(h)
    for row in table_rows(res.cells):
        t.add_row(*[escape(x) for x in row])
    console.print(t)
    console.print(escape(res.summary), highlight=False)
