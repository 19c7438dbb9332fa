"""Readable terminal views (rich) of traces, grep, cooccur and mine results. Dataset text is untrusted:
it is always printed without markup interpretation."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from chunky.turf.analyses import CooccurResult, GrepResult, MineResult
from chunky.turf.trace import LexicalAnchor, SourceShare, TraceResult, TrainingExample


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _ci(ci: tuple[float, float]) -> str:
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _one_line(s: str, n: int = 110) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _sources_table(title: str, rows: list[SourceShare]) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False)
    t.add_column("source")
    t.add_column("hits", justify="right")
    t.add_column("share of hits", justify="right")
    t.add_column("share of mix", justify="right")
    t.add_column("lift", justify="right")
    for s in rows:
        t.add_row(escape(s.source), str(s.hits), _pct(s.share), _pct(s.mix_share), f"{s.lift:.1f}×")
    return t


def _examples(rows: list[TrainingExample], title: str) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False, show_lines=True)
    t.add_column("source")
    t.add_column("sim", justify="right")
    t.add_column("training query")
    t.add_column("training response")
    for e in rows:
        t.add_row(escape(e.source), f"{e.similarity:.2f}", Text(_one_line(e.query, 160)), Text(_one_line(e.response, 160)))
    return t


def _lexical_anchor(a: LexicalAnchor, top: int, examples: int) -> list:
    parts: list = []
    if a.anchor == "response feature":
        head = Text(f"The {a.k} training examples whose response has ", style="bold")
        head.append(a.text, style="italic")
    else:
        head = Text(f"Nearest {a.k} training responses to the {a.anchor}: ", style="bold")
        head.append(_one_line(a.text, 90), style="italic")
    parts.append(head)
    parts.append(Text(a.statement))
    t = Table(show_edge=False, pad_edge=False)
    t.add_column("query feature", min_width=22, overflow="fold")
    for col in ("hits", "mix df", "lift", "log-odds ≥"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("top sources of hits", overflow="fold")
    for f in a.features[:top]:
        srcs = ", ".join(f"{s.source} {s.share:.0%}" for s in f.sources[:2])
        style = "bold green" if a.trigger is not None and f.feature == a.trigger.feature else None
        t.add_row(Text(f.feature), f"{f.hits}/{f.total}", str(f.df), f"{f.lift:.1f}×", f"{f.lower:.1f}", Text(srcs), style=style)
    parts.append(t)
    if a.sources:
        parts.append(_sources_table("sources of the nearest responses", a.sources))
    if a.examples:
        parts.append(_examples(a.examples[:examples], "training pairs having the trigger feature"))
    return parts


def print_trace(tr: TraceResult, console: Console, top: int = 10, examples: int = 3) -> None:
    console.print(Panel(Text(tr.statement), title="TURF trace", border_style="cyan"))
    console.print(Text("query: ", style="bold") + Text(_one_line(tr.query, 200)))
    console.print(Text("response: ", style="bold") + Text(_one_line(tr.response, 200)))
    if tr.violation:
        console.print(Text("rubric: ", style="bold") + Text(tr.violation))
    for w in tr.warnings:
        console.print(Text("note: " + w, style="yellow"))
    if tr.llm is not None:
        console.rule("LLM channel")
        if tr.llm.blind_attributes:
            console.print(Text("blind judge's attributes: ", style="bold") + Text("; ".join(tr.llm.blind_attributes)))
            console.print(Text("informed judge's crux: ", style="bold") + Text("; ".join(tr.llm.crux)))
        for ct in tr.llm.traces:
            console.print()
            console.print(Text(f"crux: {ct.crux}", style="bold magenta"))
            console.print(Text(ct.statement))
            t = Table(title="failing query's attributes → nearest cluster", title_justify="left", show_edge=False)
            for col in ("query attribute", "cluster", "hits", "lift"):
                t.add_column(col, justify="left" if col != "hits" and col != "lift" else "right")
            for qa in ct.query_attributes:
                style = "bold green" if ct.trigger is not None and qa is ct.query_attributes[0] and qa.hits > 0 else None
                t.add_row(Text(qa.text), Text(f"{qa.cluster}: {_one_line(qa.cluster_summary, 50)}"),
                          f"{qa.hits}/{ct.k}", f"{qa.lift:.1f}×", style=style)
            console.print(t)
            t = Table(title=f"clusters with most hits (k = {ct.k})", title_justify="left", show_edge=False)
            for col in ("cluster", "summary", "hits", "mix size", "lift"):
                t.add_column(col, justify="right" if col in ("hits", "mix size", "lift") else "left")
            for c in ct.clusters[:top]:
                t.add_row(str(c.cluster), Text(_one_line(c.summary, 70)), f"{c.hits}/{c.total}", str(c.size), f"{c.lift:.1f}×")
            console.print(t)
            if ct.trigger_sources:
                console.print(_sources_table("sources of the trigger cluster's hits", ct.trigger_sources))
            if ct.examples:
                console.print(_examples(ct.examples[:examples], "retrieved training pairs in the trigger's cluster"))
    if tr.lexical is not None:
        console.rule("lexical channel")
        console.print(
            f"{len(tr.lexical.query_features)} features of the failing query are in the index"
            + (f" ({tr.lexical.unseen_features} unseen)" if tr.lexical.unseen_features else "")
        )
        for a in tr.lexical.anchors:
            console.print()
            for p in _lexical_anchor(a, top, examples):
                console.print(p)
    timing = ", ".join(f"{k} {v:.2f}" for k, v in tr.timings.items())
    console.print(Text(f"trace {tr.id} · {timing}", style="dim"))


def print_grep(res: GrepResult, console: Console) -> None:
    console.print(
        f"[bold]{res.matches}[/bold] of {res.n_examples} examples match {escape(res.pattern.describe())} "
        f"(side: {res.side}; query {res.query_matches}, response {res.response_matches}) in {res.elapsed_s:.3f}s"
    )
    t = Table(show_edge=False)
    for col in ("source", "matches", "share of matches", "source size", "rate in source", "lift"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for s in res.by_source:
        t.add_row(escape(s.source), str(s.matches), _pct(s.share), str(s.n_source), _pct(s.rate), f"{s.lift:.1f}×")
    console.print(t)
    if res.examples:
        t = Table(title="examples", title_justify="left", show_edge=False, show_lines=True)
        t.add_column("source")
        t.add_column("in")
        t.add_column("query")
        t.add_column("response")
        for e in res.examples:
            t.add_row(escape(e.source), e.matched, Text(_one_line(e.query, 140)), Text(_one_line(e.response, 140)))
        console.print(t)


def print_cooccur(res: CooccurResult, console: Console) -> None:
    o = res.overall
    console.print(
        Text(f"P(response ~ {res.response_pattern.describe()} | query ~ {res.query_pattern.describe()}) = ", style="bold")
        + Text(f"{_pct(o.p_response_given_query)} {_ci(o.ci_given_query)}  ({o.n_both}/{o.n_query})")
    )
    console.print(
        Text("P(response | query does not match) = ", style="bold")
        + Text(
            f"{_pct(o.p_response_given_not_query)} {_ci(o.ci_given_not_query)}  "
            f"({o.n_response - o.n_both}/{o.n - o.n_query})"
            + (f"   lift {o.lift:.1f}×" if o.lift else "")
        )
    )
    t = Table(show_edge=False, pad_edge=False, title="per source (rates in %, 95% Wilson intervals)", title_justify="left")
    t.add_column("source", min_width=10, overflow="ellipsis", no_wrap=True)
    for col in ("n", "q", "q∧r", "P(r|q)", "P(r|¬q)", "lift"):
        t.add_column(col, justify="right", no_wrap=True)

    def rate(p: float | None, ci: tuple[float, float]) -> str:
        return "—" if p is None else f"{100 * p:.1f} [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]"

    for c in res.by_source:
        t.add_row(
            escape(c.source), str(c.n), str(c.n_query), str(c.n_both),
            rate(c.p_response_given_query, c.ci_given_query) if c.n_query else "—",
            rate(c.p_response_given_not_query, c.ci_given_not_query) if c.n > c.n_query else "—",
            f"{c.lift:.1f}×" if c.lift else "—",
        )
    console.print(t)
    console.print(Text(f"{res.elapsed_s:.3f}s", style="dim"))


def print_mine(res: MineResult, console: Console) -> None:
    t = Table(title=f"Features concentrated in one source ({res.n_examples} examples)", title_justify="left", show_edge=False)
    for col in ("side", "feature", "examples", "top source", "share", "source's share of mix", "lift"):
        t.add_column(col, justify="right" if col in ("examples", "share", "source's share of mix", "lift") else "left")
    for f in res.concentrated:
        t.add_row(f.side, Text(f.feature), str(f.df), escape(f.source), _pct(f.share), _pct(f.source_share), f"{f.lift:.1f}×")
    console.print(t)
    t = Table(title="Query feature → response feature", title_justify="left", show_edge=False)
    for col in ("query feature", "response feature", "both", "P(r|q)", "95% CI", "P(r)", "lift", "main source"):
        t.add_column(col, justify="left" if "feature" in col or col == "main source" else "right")
    for p in res.pairs:
        t.add_row(
            Text(p.query_feature), Text(p.response_feature), f"{p.n_both}/{p.n_query}", _pct(p.p_response_given_query),
            _ci(p.ci), _pct(p.p_response), f"{p.lift:.1f}×", Text(f"{p.source} ({p.source_share:.0%})"),
        )
    console.print(t)
    console.print(Text(f"{res.elapsed_s:.2f}s", style="dim"))


__all__ = ["print_trace", "print_grep", "print_cooccur", "print_mine"]
