"""The CLI of TURF attribution and data analyses: `chunky trace`, `grep`, `cooccur`, `mine`.
Registered by `chunky.turf.commands._register_analysis`; each command is a module-level function."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from chunky.cli_options import (
    AsJsonResult,
    CaseSensitive,
    FromRunTop,
    IndexDirArg,
    from_run_option,
    json_option,
    judge_option,
    min_score_option,
    out_option,
    top_option,
)
from chunky.errors import ConfigError

if TYPE_CHECKING:
    from chunky.surf.rubric import Rubric
    from chunky.turf.index import TurfIndex

console = Console()
err_console = Console(stderr=True)


def _open_index(path: Path) -> TurfIndex:
    from chunky.turf.index import TurfIndex

    return TurfIndex.open(path)


def _text_arg(value: str | None, flag: str) -> str | None:
    """`@file` reads the text from a file (long queries/responses), anything else is the text itself."""
    if value is None or not value.startswith("@"):
        return value
    p = Path(value[1:])
    try:
        return p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{flag}: {p}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{flag}: {p}: not UTF-8 text") from None


def _load_rubric(spec: str | None) -> Rubric | None:
    if spec is None:
        return None
    from chunky.surf.rubric import load_rubric

    return load_rubric(spec)


def _progress(message: str) -> None:
    """Where a long command is, on stderr (stdout stays the result, e.g. --json)."""
    err_console.print(f"[dim]… {escape(message)}[/dim]")


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=1))


def trace_cmd(
    index: Annotated[Path, typer.Argument(help="A TURF index directory (built by `chunky index`).")],
    query: Annotated[str | None, typer.Option("--query", "-q", help="The failing query (or @file).")] = None,
    response: Annotated[str | None, typer.Option("--response", "-r", help="The failing response (or @file).")] = None,
    rubric: Annotated[str | None, typer.Option("--rubric", help="Rubric name or YAML path (for the informed judge).")] = None,
    judge: Annotated[str | None, judge_option("Model spec for the blind/informed judges and query attributes (LLM channel).")] = None,
    from_run: Annotated[Path | None, from_run_option("Trace a SURF run's top findings.")] = None,
    top: FromRunTop = 5,
    min_score: Annotated[float | None, min_score_option("With --from-run: only findings scoring at least this.")] = None,
    crux: Annotated[list[str] | None, typer.Option("--crux", help="Crux attribute(s) given directly (skips the judges' crux).")] = None,
    k: Annotated[int, typer.Option("--k", help="Training response attributes retrieved per crux (LLM channel).")] = 1000,
    k_lexical: Annotated[int, typer.Option("--k-lexical", help="Nearest training responses (lexical channel).")] = 1000,
    channel: Annotated[str, typer.Option("--channel", help="llm, lexical or both.")] = "both",
    search: Annotated[str, typer.Option("--search", help="exact, ivf or auto (IVF above 2M vectors).")] = "auto",
    out: Annotated[Path | None, out_option("Where to save the trace JSON (direct trace).", short=False)] = None,
    as_json: Annotated[bool, json_option("Print the trace(s) as JSON.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Print every table (default: one screen per trace).")] = False,
) -> None:
    """Trace a failing (query, response) to its trigger and the training chunks behind it."""
    from chunky.turf.render import print_trace
    from chunky.turf.trace import TraceOptions

    if channel not in ("llm", "lexical", "both"):
        raise ConfigError(f"--channel: expected llm, lexical or both, got {channel!r}")
    if search not in ("exact", "ivf", "auto"):
        raise ConfigError(f"--search: expected exact, ivf or auto, got {search!r}")
    opts = TraceOptions(
        k=k,
        k_lexical=k_lexical,
        exact={"exact": True, "ivf": False, "auto": None}[search],
        channels=("llm", "lexical") if channel == "both" else (channel,),
    )
    if k < 1 or k_lexical < 1:
        raise ConfigError("--k and --k-lexical must be at least 1")
    idx = _open_index(index)
    model = None
    if judge is not None:
        from chunky.models import GenerateConfig, get_model

        model = get_model(judge, role="turf-judge", config=GenerateConfig(temperature=0.0, max_tokens=600))
    if from_run is not None:
        if query is not None or response is not None:
            raise ConfigError("--from-run traces the run's findings: drop --query/--response")
        from chunky.turf.trace import trace_run

        results = trace_run(
            idx, from_run, top=top, min_score=min_score, rubric=_load_rubric(rubric), judge=model, crux=crux,
            options=opts, on_error=lambda msg: err_console.print(f"[red]error:[/red] {escape(msg)}"),
            on_saved=lambda res, dest: err_console.print(f"saved trace of candidate {res.candidate_id}: {escape(str(dest))}"),
            progress=_progress,
        )
        if as_json:
            _echo_json([traced.to_dict() for traced in results])
        else:
            for traced in results:
                print_trace(traced, console, full=full)
                console.print()
        return
    q = _text_arg(query, "--query")
    r = _text_arg(response, "--response")
    if not q or not r:
        raise ConfigError("trace: give --query and --response (or --from-run RUN_DIR)")
    rub = _load_rubric(rubric)
    from chunky.turf.trace import trace

    result = asyncio.run(trace(idx, q, r, rubric=rub, judge=model, crux=crux, options=opts, progress=_progress))
    dest = out or (Path(idx.path) / "traces" / f"{result.id}.json")
    result.save(dest)
    if as_json:
        _echo_json(result.to_dict())
    else:
        print_trace(result, console, full=full)
    err_console.print(f"saved trace: {escape(str(dest))}")


def grep_cmd(
    index: IndexDirArg,
    pattern: Annotated[str, typer.Argument(help="Text to find: a literal, a lexical feature name (format:latex), "
                                  "a regex with --regex or re:PATTERN, or lit:TEXT for the text itself.")],
    regex: Annotated[bool, typer.Option("--regex", help="PATTERN is a regular expression (RE2 syntax).")] = False,
    side: Annotated[str, typer.Option("--side", help="query, response or both.")] = "both",
    case_sensitive: CaseSensitive = False,
    examples: Annotated[int, typer.Option("--examples", help="How many example matches to show.")] = 10,
    as_json: AsJsonResult = False,
) -> None:
    """Keyword / regex / feature search over the training data, with per-source counts, share and
    lift P(src|match)/P(src)."""
    from chunky.turf.analyses import grep
    from chunky.turf.render import print_grep

    res = grep(_open_index(index), pattern, regex=regex, side=side, case_sensitive=case_sensitive, examples=examples)
    if as_json:
        _echo_json(res.to_dict())
    else:
        print_grep(res, console)


def cooccur_cmd(
    index: IndexDirArg,
    query: Annotated[str, typer.Option("--query", help="Query pattern: literal, re:REGEX, or a feature name (format:numbered_list).")],
    response: Annotated[str, typer.Option("--response", help="Response pattern: literal, re:REGEX, or a feature name.")],
    regex: Annotated[bool, typer.Option("--regex", help="Both patterns are regular expressions.")] = False,
    case_sensitive: CaseSensitive = False,
    as_json: AsJsonResult = False,
) -> None:
    """P(response pattern | query pattern) vs P(response pattern | not query pattern), per source, with the
    lift P(r|q)/P(r) and the risk ratio P(r|q)/P(r|not q)."""
    from chunky.turf.analyses import cooccur
    from chunky.turf.render import print_cooccur

    res = cooccur(_open_index(index), query, response, regex=regex, case_sensitive=case_sensitive)
    if as_json:
        _echo_json(res.to_dict())
    else:
        print_cooccur(res, console)


def mine_cmd(
    index: IndexDirArg,
    top: Annotated[int, top_option("Rows per table.")] = 25,
    min_count: Annotated[int, typer.Option("--min-count", help="Minimum examples behind a finding.")] = 20,
    min_share: Annotated[float, typer.Option("--min-share", help="Minimum share of a feature in its top source.")] = 0.5,
    min_rate: Annotated[float, typer.Option("--min-rate", help="Minimum P(response feature | query feature).")] = 0.5,
    min_lift: Annotated[float, typer.Option("--min-lift", help="Minimum lift of a pair.")] = 2.0,
    as_json: AsJsonResult = False,
) -> None:
    """Rank a mix's strongest chunky correlations: source-concentrated features, query→response pairs."""
    from chunky.turf.analyses import mine
    from chunky.turf.render import print_mine

    res = mine(_open_index(index), top=top, min_count=min_count, min_share=min_share, min_rate=min_rate, min_lift=min_lift)
    if as_json:
        _echo_json(res.to_dict())
    else:
        print_mine(res, console)


def register_analysis_commands(app: typer.Typer) -> None:
    """Add `chunky trace`, `grep`, `cooccur` and `mine` to the main app."""
    app.command("trace")(trace_cmd)
    app.command("grep")(grep_cmd)
    app.command("cooccur")(cooccur_cmd)
    app.command("mine")(mine_cmd)
