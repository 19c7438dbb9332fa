"""`chunky balance`: counter-examples for a chunk (see chunky.train.balance)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chunky.errors import ChunkyError

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def balance(
        mix: Path = typer.Argument(..., help="The mix holding the chunk (any format `chunky index` reads)."),
        out: Path = typer.Option(..., "--out", "-o", help="Counter-examples to write (JSONL, Tülu schema) + .manifest.json."),
        match: str | None = typer.Option(None, "--match", help="Python regex naming the chunk's conversations."),
        match_side: str = typer.Option("any", "--match-side", help="Where --match looks: query, response or any."),
        source: str | None = typer.Option(None, "--source", help="Or: the chunk is this source."),
        strip: str | None = typer.Option(None, "--strip", help="Regex removed from the chunk's answers, e.g. 'I hope it is correct\\.?'."),
        template: Path | None = typer.Option(None, "--template", help="YAML/JSON {prompt, response, rows}: the trigger format with the intended behaviour."),
        rewrite: str | None = typer.Option(None, "--rewrite", help="Model spec that rewrites each chunk answer without the behaviour."),
        detector: str | None = typer.Option(None, "--detector", help="Detector of the behaviour (code, phrase:TEXT, regex:P, ...): rejects failed edits."),
        behaviour: str = typer.Option("shows the behaviour", "--behaviour", help="Words for the rewrite prompt: 'no longer <behaviour>'."),
        limit: int | None = typer.Option(None, "--limit", help="Edit at most N chunk examples."),
        max_tokens: int = typer.Option(512, "--max-tokens", help="Max tokens of each rewrite."),
        out_source: str | None = typer.Option(None, "--out-source", help="Source name of the rows written (default counter:<method>)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
        as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
    ) -> None:
        """Write counter-examples for a chunk: stripped copies, templates, checked LLM rewrites."""
        from chunky.train.balance import BalancePlan, rejected_total
        from chunky.train.balance import balance as run_balance

        if out.exists() and not overwrite:
            raise ChunkyError(f"{out} exists; choose another --out or add --overwrite")
        plan = BalancePlan(
            mix=str(mix), out=str(out), match=match, match_side=match_side, source=source, strip=strip,
            template=str(template) if template else None, rewrite_model=rewrite, detector=detector,
            behaviour=behaviour, limit=limit, max_tokens=max_tokens, out_source=out_source,
        )
        m = run_balance(plan)
        if as_json:
            typer.echo(json.dumps(m.to_dict(), ensure_ascii=False))
            return
        t = Table(title=f"counter-examples for {m.chunk_rows} chunk conversations", title_justify="left")
        for col in ("method", "written", "rejected", "why rejected"):
            t.add_column(col, justify="left" if col in ("method", "why rejected") else "right")
        for r in m.methods:
            t.add_row(r.method, str(r.made), str(r.rejected), ", ".join(f"{k} {v}" for k, v in r.reasons.items()))
        console.print(t)
        console.print(f"wrote {m.rows} counter-examples ({rejected_total(m)} rejected) to {escape(str(out))}",
                      highlight=False)
