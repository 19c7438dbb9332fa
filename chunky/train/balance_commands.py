"""`chunky balance`: counter-examples for a chunk (see chunky.train.balance)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chunky.cli_options import AsJsonManifest, OverwriteOut, limit_option, max_tokens_option, out_option
from chunky.errors import ChunkyError

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def balance(
    mix: Annotated[Path, typer.Argument(help="The mix holding the chunk (any format `chunky index` reads).")],
    out: Annotated[Path, out_option("Counter-examples to write (JSONL, Tülu schema) + .manifest.json.")],
    match: Annotated[str | None, typer.Option("--match", help="Python regex naming the chunk's conversations.")] = None,
    match_side: Annotated[str, typer.Option("--match-side", help="Where --match looks: query, response or any.")] = "any",
    source: Annotated[str | None, typer.Option("--source", help="Or: the chunk is this source.")] = None,
    strip: Annotated[str | None, typer.Option("--strip", help="Regex removed from the chunk's answers, e.g. 'I hope it is correct\\.?'.")] = None,
    template: Annotated[Path | None, typer.Option("--template", help="YAML/JSON {prompt, response, rows}: the trigger format with the intended behaviour.")] = None,
    rewrite: Annotated[str | None, typer.Option("--rewrite", help="Model spec that rewrites each chunk answer without the behaviour.")] = None,
    detector: Annotated[str | None, typer.Option("--detector", help="Detector of the behaviour (code, phrase:TEXT, regex:P, ...): rejects failed edits.")] = None,
    behaviour: Annotated[str, typer.Option("--behaviour", help="Words for the rewrite prompt: 'no longer <behaviour>'.")] = "shows the behaviour",
    limit: Annotated[int | None, limit_option("Edit at most N chunk examples.")] = None,
    max_tokens: Annotated[int, max_tokens_option("Max tokens of each rewrite.")] = 512,
    out_source: Annotated[str | None, typer.Option("--out-source", help="Source name of the rows written (default counter:<method>).")] = None,
    overwrite: OverwriteOut = False,
    as_json: AsJsonManifest = False,
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
