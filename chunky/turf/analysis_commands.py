"""The CLI of TURF attribution and data analyses: `chunky trace`, `grep`, `cooccur`, `mine`.
Registered by `chunky.turf.commands._register_analysis`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from chunky.errors import ConfigError

console = Console()
err_console = Console(stderr=True)


def _open_index(path: Path) -> Any:
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


def _load_rubric(spec: str | None) -> Any:
    if spec is None:
        return None
    from chunky.surf.rubric import load_rubric

    return load_rubric(spec)


def _progress(message: str) -> None:
    """Where a long command is, on stderr (stdout stays the result, e.g. --json)."""
    err_console.print(f"[dim]… {escape(message)}[/dim]")


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=1))


def register_analysis_commands(app: typer.Typer) -> None:
    @app.command("trace")
    def trace_cmd(
        index: Path = typer.Argument(..., help="A TURF index directory (built by `chunky index`)."),
        query: Optional[str] = typer.Option(None, "--query", "-q", help="The failing query (or @file)."),
        response: Optional[str] = typer.Option(None, "--response", "-r", help="The failing response (or @file)."),
        rubric: Optional[str] = typer.Option(None, "--rubric", help="Rubric name or YAML path (for the informed judge)."),
        judge: Optional[str] = typer.Option(
            None, "--judge", help="Model spec for the blind/informed judges and query attributes (LLM channel)."
        ),
        from_run: Optional[Path] = typer.Option(None, "--from-run", help="Trace a SURF run's top findings."),
        top: int = typer.Option(5, "--top", help="With --from-run: how many top findings."),
        min_score: Optional[float] = typer.Option(None, "--min-score", help="With --from-run: only findings scoring at least this."),
        crux: Optional[list[str]] = typer.Option(None, "--crux", help="Crux attribute(s) given directly (skips the judges' crux)."),
        k: int = typer.Option(1000, "--k", help="Training response attributes retrieved per crux (LLM channel)."),
        k_lexical: int = typer.Option(1000, "--k-lexical", help="Nearest training responses (lexical channel)."),
        channel: str = typer.Option("both", "--channel", help="llm, lexical or both."),
        search: str = typer.Option("auto", "--search", help="exact, ivf or auto (IVF above 2M vectors)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Where to save the trace JSON (direct trace)."),
        as_json: bool = typer.Option(False, "--json", help="Print the trace(s) as JSON."),
        full: bool = typer.Option(False, "--full", help="Print every table (default: one screen per trace)."),
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
                _echo_json([r.to_dict() for r in results])
            else:
                for r in results:
                    print_trace(r, console, full=full)
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

    @app.command("grep")
    def grep_cmd(
        index: Path = typer.Argument(..., help="A TURF index directory."),
        pattern: str = typer.Argument(..., help="Text to find: a literal, a lexical feature name (format:latex), "
                                      "a regex with --regex or re:PATTERN, or lit:TEXT for the text itself."),
        regex: bool = typer.Option(False, "--regex", help="PATTERN is a regular expression (RE2 syntax)."),
        side: str = typer.Option("both", "--side", help="query, response or both."),
        case_sensitive: bool = typer.Option(False, "--case-sensitive", help="Match case exactly (default: ignore case)."),
        examples: int = typer.Option(10, "--examples", help="How many example matches to show."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
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

    @app.command("cooccur")
    def cooccur_cmd(
        index: Path = typer.Argument(..., help="A TURF index directory."),
        query: str = typer.Option(..., "--query", help="Query pattern: literal, re:REGEX, or a feature name (format:numbered_list)."),
        response: str = typer.Option(..., "--response", help="Response pattern: literal, re:REGEX, or a feature name."),
        regex: bool = typer.Option(False, "--regex", help="Both patterns are regular expressions."),
        case_sensitive: bool = typer.Option(False, "--case-sensitive", help="Match case exactly (default: ignore case)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
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

    @app.command("mine")
    def mine_cmd(
        index: Path = typer.Argument(..., help="A TURF index directory."),
        top: int = typer.Option(25, "--top", help="Rows per table."),
        min_count: int = typer.Option(20, "--min-count", help="Minimum examples behind a finding."),
        min_share: float = typer.Option(0.5, "--min-share", help="Minimum share of a feature in its top source."),
        min_rate: float = typer.Option(0.5, "--min-rate", help="Minimum P(response feature | query feature)."),
        min_lift: float = typer.Option(2.0, "--min-lift", help="Minimum lift of a pair."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Rank a mix's strongest chunky correlations: source-concentrated features, query→response pairs."""
        from chunky.turf.analyses import mine
        from chunky.turf.render import print_mine

        res = mine(_open_index(index), top=top, min_count=min_count, min_share=min_share, min_rate=min_rate, min_lift=min_lift)
        if as_json:
            _echo_json(res.to_dict())
        else:
            print_mine(res, console)
