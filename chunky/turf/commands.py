"""CLI commands of chunky.turf (registered on the main app by chunky.cli).

Each command is its own function; `register(app)` calls one `_register_<group>(app)` helper per group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

from chunky.cli_options import json_option, limit_option, no_cache_option, out_option, seed_option
from chunky.errors import ExitCode
from chunky.interrupts import signals_as_interrupt
from chunky.models.embeddings import DEFAULT_EMBEDDER

if TYPE_CHECKING:  # typer >= 0.2x vendors click; its hooks are typed with that copy's Context
    from typer._click import Context as ClickContext


class _BuildByDefault(TyperGroup):
    """`chunky index DATA ...` means `chunky index build DATA ...` (DATA is not a subcommand name)."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["build", *args]
        return super().parse_args(ctx, args)


index_app = typer.Typer(
    cls=_BuildByDefault,
    help="Build a TURF index of a training mix (`chunky index DATA --out IDX`), inspect one "
    "(`chunky index info IDX`), or export it (`chunky index export IDX --out pseudo_sae_attributes.jsonl`).",
    no_args_is_help=True,
)


def index_build(
    data: Annotated[str, typer.Argument(help="Training data: .jsonl[.gz], .json, .parquet, .csv, hf:<name> (or hf:<name>@<split>), or a saved dataset folder.")],
    out: Annotated[Path, out_option("Index directory to write (or resume).")],
    extractor: Annotated[str, typer.Option("--extractor", help="lexical (no LLM), llm (the paper's attributes), or both.")] = "lexical",
    extract_model: Annotated[str | None, typer.Option("--extract-model", help="Model spec for LLM attributes (default: local).")] = None,
    attributes_per_side: Annotated[int, typer.Option("--attributes-per-side", help="LLM attributes per query and per response.")] = 10,
    extract_concurrency: Annotated[int | None, typer.Option("--extract-concurrency", help="Concurrent extraction calls (default: the provider's).")] = None,
    embedder: Annotated[str, typer.Option("--embedder", help="minilm-static (default: static vectors distilled from the embedded MiniLM), minilm, minilm-onnx, minilm-onnx-int8, a sentence-transformers id/path, http(s)://host:port/v1:<model>, openai:<model>, hash:<dim>.")] = DEFAULT_EMBEDDER,
    dtype: Annotated[str, typer.Option("--dtype", help="Embedding storage: float32 or float16.")] = "float32",
    embed_workers: Annotated[int | None, typer.Option("--embed-workers", help="Processes for a local embedder (default: CPU cores, at most 4).")] = None,
    text_tokens: Annotated[int, typer.Option("--text-tokens", help="Tokens of each response text embedded (lexical channel).")] = 128,
    clusters: Annotated[int | None, typer.Option("--clusters", help="K for k-means (default round(10 N / 376), the paper's ratio).")] = None,
    summary_model: Annotated[str | None, typer.Option("--summary-model", help="Model spec that writes cluster summaries (default: most central attribute).")] = None,
    limit: Annotated[int | None, limit_option("Index only the first N pairs.")] = None,
    sample: Annotated[int | None, typer.Option("--sample", help="Index a uniform random sample of N pairs.")] = None,
    seed: Annotated[int, seed_option("Seed for --sample and k-means.")] = 0,
    source_field: Annotated[str | None, typer.Option("--source-field", help="Row field naming the source dataset (default: source).")] = None,
    turns: Annotated[str, typer.Option("--turns", help="first: the first user turn and its reply; all: every pair.")] = "first",
    min_df: Annotated[int | None, typer.Option("--min-df", help="Minimum examples for a word/n-gram feature (default 5; 2 under 1,000 examples).")] = None,
    max_df: Annotated[float, typer.Option("--max-df", help="Maximum share of examples for a word/n-gram feature.")] = 0.5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per lexical batch (the unit of resume).")] = 4096,
    ray: Annotated[str | None, typer.Option("--ray", help="Run on Ray: 'auto' (local or RAY_ADDRESS) or a cluster address.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Delete the index's files and rebuild from scratch.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print calls, tokens and estimated cost of the LLM extraction; build nothing.")] = False,
    no_cache: Annotated[bool, no_cache_option("Do not use the model call cache for extraction.")] = False,
) -> None:
    """Build (or resume) a TURF index."""
    from chunky.turf.build import BuildOptions, IndexBuilder, RichReporter

    opts = BuildOptions(
        data=data,
        out=out,
        extractor=extractor,  # type: ignore[arg-type]
        extract_model=extract_model,
        attributes_per_side=attributes_per_side,
        extract_concurrency=extract_concurrency,
        embedder=embedder,
        dtype=dtype,  # type: ignore[arg-type]
        text_tokens=text_tokens,
        embed_workers=embed_workers,
        clusters=clusters,
        summary_model=summary_model,
        limit=limit,
        sample=sample,
        seed=seed,
        source_field=source_field,
        turns=turns,  # type: ignore[arg-type]
        min_df=min_df,
        max_df=max_df,
        batch_size=batch_size,
        force=force,
        dry_run=dry_run,
        use_cache=not no_cache,
    )
    if ray:
        from chunky.turf.ray_build import RayIndexBuilder

        builder: IndexBuilder = RayIndexBuilder(opts, ray_address=ray, reporter=None)
    else:
        builder = IndexBuilder(opts)
    if dry_run:
        typer.echo(builder.dry_run())
        return
    reporter = RichReporter()
    builder.reporter = reporter
    try:
        with signals_as_interrupt():
            summary = builder.run()
    except KeyboardInterrupt:
        reporter.close()
        typer.echo(f"{out}: interrupted; saved: {builder.saved_note()} — rerun the same command to resume", err=True)
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    finally:
        reporter.close()
    meta = summary.meta
    assert meta is not None
    if summary.nothing_to_do:
        typer.echo(f"{out}: the index is complete; nothing to do (add --force to rebuild)")
        return
    c = meta.counts
    partial = [s for s, v in meta.stages.items() if v == "partial"]
    typer.echo(
        f"{out}: {c.examples} examples, {c.features} lexical features, {c.query_attributes} query + "
        f"{c.response_attributes} response attributes, {c.clusters} clusters"
        + (f" (resumed from {summary.resumed_from}; skipped finished stages: {', '.join(summary.stages_skipped)})"
           if summary.resumed_from else "")
    )
    if partial:
        typer.echo(f"stages with failures: {', '.join(partial)} — rerun the same command to retry them")
    for w in summary.warnings:
        typer.echo(w, err=True)


def index_info(
    idx: Annotated[Path, typer.Argument(help="Index directory.")],
    as_json: Annotated[bool, json_option("Print index.json.")] = False,
) -> None:
    """Counts, models, parameters, sources and the top features of an index."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from chunky.turf.index import TurfIndex, read_meta

    meta = read_meta(idx)
    if as_json:
        typer.echo(json.dumps(meta.to_dict(), indent=2, ensure_ascii=False))
        return
    con = Console(emoji=False)  # feature names such as template:question: are not emoji codes
    c = meta.counts
    unfinished = {s: v for s, v in meta.stages.items() if v not in ("done", "skipped")}
    con.print(f"[bold]{escape(str(idx))}[/bold]  chunky-index v{meta.version}, built {meta.created_at} by chunky {meta.chunky_version}")
    con.print(f"data: {escape(meta.data.path)}  ({meta.data.rows_read} rows read, {meta.data.rows_skipped} skipped)")
    if meta.data.skipped_reasons:
        con.print("skipped: " + escape(", ".join(f"{k} {v}" for k, v in meta.data.skipped_reasons.items())))
    con.print(f"channels: {', '.join(meta.channels)}   extractor model: {meta.extractor.get('model') or '-'}")
    con.print(f"embedder: {escape(meta.embedder.spec)} (d={meta.embedder.dim}, {meta.embedder.dtype})")
    con.print(
        f"examples {c.examples} · lexical features {c.features} · query attributes {c.query_attributes} · "
        f"response attributes {c.response_attributes} · clusters {c.clusters}"
    )
    if unfinished and not any(v in ("done", "partial") for v in meta.stages.values()):
        # A stub from a build that never finished a stage (older chunky left these): nothing to resume.
        con.print(f"[yellow]no stage of this build finished: the folder holds no index; delete it, or run "
                  f"`chunky index DATA --out {escape(str(idx))}` to build one[/yellow]")
    elif unfinished:
        con.print(f"[yellow]unfinished stages: {escape(json.dumps(unfinished))} — rerun the same `chunky index` "
                  "command to resume[/yellow]")
    t = Table(title="sources")
    t.add_column("source")
    t.add_column("examples", justify="right")
    for s, n in meta.sources.items():
        t.add_row(escape(s), str(n))
    con.print(t)
    if meta.stages.get("finalize") == "done":
        index = TurfIndex.open(idx)
        if index.has_lexical:
            rows = index.duckdb().sql(
                "SELECT side, kind, feature, df FROM feature_stats WHERE kind NOT IN ('word', 'ngram', 'length', 'script') "
                "QUALIFY row_number() OVER (PARTITION BY side ORDER BY df DESC, feature) <= 8 ORDER BY side, df DESC"
            ).fetchall()
            ft = Table(title="most common lexical features (beyond words and n-grams)")
            for col in ("side", "feature", "examples"):
                ft.add_column(col)
            for side, _, feat, df in rows:
                ft.add_row(side, escape(feat), str(df))
            con.print(ft)
        if index.has_llm and c.clusters:
            rows = index.duckdb().sql("SELECT cluster, size, summary FROM clusters ORDER BY size DESC LIMIT 8").fetchall()
            ct = Table(title="largest query-attribute clusters")
            for col in ("cluster", "size", "summary"):
                ct.add_column(col)
            for cl, size, summ in rows:
                ct.add_row(str(cl), str(size), escape(summ))
            con.print(ct)


def index_export(
    idx: Annotated[Path, typer.Argument(help="Index directory (with the LLM channel).")],
    out: Annotated[Path, out_option("The pseudo_sae_attributes.jsonl to write.")],
) -> None:
    """Export to the SURF authors' pseudo_sae_attributes.jsonl (prompt, response, attributes, sae_attributes, ...)."""
    from chunky.turf.export import export_pseudo_sae
    from chunky.turf.index import TurfIndex

    n = export_pseudo_sae(TurfIndex.open(idx), out)
    typer.echo(f"{out}: {n} records")


def _register_index(app: typer.Typer) -> None:
    """`chunky index DATA --out IDX` (build), `chunky index info IDX`, `chunky index export IDX --out F`."""
    index_app.command("build")(index_build)
    index_app.command("info")(index_info)
    index_app.command("export")(index_export)
    app.add_typer(index_app, name="index")


def _register_analysis(app: typer.Typer) -> None:
    """`chunky trace`, `chunky grep`, `chunky cooccur`, `chunky mine` (chunky/turf/analysis_commands.py)."""
    from chunky.turf.analysis_commands import register_analysis_commands

    register_analysis_commands(app)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    _register_index(app)
    _register_analysis(app)
