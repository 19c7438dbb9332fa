"""`chunky experiment`: a grid of mixes, each trained and measured (see chunky.train.experiment)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def experiment(
        spec: Path = typer.Argument(..., help="The experiment spec (YAML): mix, chunk, axes, train, measure."),
        out: Path = typer.Option(..., "--out", "-o", help="Experiment folder (cells/, results.json, table.md, figures)."),
        ray: str | None = typer.Option(None, "--ray", help="Run cells on Ray, one per worker: auto (local or RAY_ADDRESS) or ADDRESS."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Discard finished cells in --out and start again."),
        as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    ) -> None:
        """Train and measure every cell of a causal grid (chunk kept × counter-examples × source); resumable per cell."""
        from chunky.train.commands import _need_train_extra
        from chunky.train.experiment import run_experiment
        from chunky.train.report import HEADER, table_rows

        _need_train_extra("chunky experiment")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = run_experiment(spec, out, overwrite=overwrite, ray_address=ray,
                                 progress=lambda s: err_console.print(f"[dim]{escape(s)}[/dim]", highlight=False))
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
