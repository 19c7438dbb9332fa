"""Readable terminal views (rich) of traces, grep, cooccur and mine results. Dataset text is untrusted:
it is always printed without markup interpretation."""

from __future__ import annotations

from typing import Literal

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from chunky.turf.analyses import (
    LIFT_HITS,
    LIFT_IN_SOURCE,
    LIFT_MATCH,
    LIFT_PAIR,
    LIFT_SOURCE,
    SIGNATURE_KINDS,
    CooccurResult,
    GrepResult,
    MineResult,
)
from chunky.turf.trace import FeatureHit, LexicalAnchor, SourceShare, TraceResult, TrainingExample


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
    t.add_column("lift P(src|hits)/P(src)", justify="right")
    for s in rows:
        t.add_row(escape(s.source), str(s.hits), _pct(s.share), _pct(s.mix_share), f"{s.lift:.1f}×")
    return t


def _examples(rows: list[TrainingExample], title: str, compact: bool = False, width: int = 160) -> Table:
    # compact: one line per example (the one-screen view), cut with an ellipsis
    t = Table(title=title, title_justify="left", show_edge=False, show_lines=not compact)
    overflow: Literal["ellipsis", "fold"] = "ellipsis" if compact else "fold"
    t.add_column("source", min_width=8, no_wrap=compact, overflow=overflow)
    t.add_column("sim", justify="right", min_width=4)
    t.add_column("training query", no_wrap=compact, overflow=overflow)
    t.add_column("training response", no_wrap=compact, overflow=overflow)
    for e in rows:
        t.add_row(escape(e.source), f"{e.similarity:.2f}", Text(_one_line(e.query, width)), Text(_one_line(e.response, width)))
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
    for col in ("hits", "mix df", LIFT_HITS, "≥ (95%)", "log-odds ≥"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("top sources of hits", overflow="fold")
    for f in a.features[:top]:
        srcs = ", ".join(f"{s.source} {s.share:.0%}" for s in f.sources[:2])
        style = "bold green" if a.trigger is not None and f.feature == a.trigger.feature else None
        t.add_row(Text(f.feature), f"{f.hits}/{f.total}", str(f.df), f"{f.lift:.1f}×", f"{f.lift_low:.1f}×",
                  _log_odds(f), Text(srcs), style=style)
    parts.append(t)
    if a.sources:
        parts.append(_sources_table("sources of the nearest responses", a.sources))
    if a.examples:
        parts.append(_examples(a.examples[:examples], "training pairs having the trigger feature"))
    return parts


def _log_odds(f: FeatureHit) -> str:
    # the bound of a feature none of the group has says nothing about it
    return f"{f.lower:.1f}" if f.hits > 0 else "—"


def _features_line(tr: TraceResult) -> str:
    lx = tr.lexical
    if lx is None:
        return ""
    line = f"{len(lx.query_features)} of the failing query's features occur in the index"
    if lx.unseen_features:
        line += f"; {lx.unseen_features} other candidate words and n-grams of it do not"
    return line


def _headline_source(tr: TraceResult) -> tuple[list[SourceShare], list[TrainingExample], str]:
    """The sources and examples behind the trigger the headline names."""
    if tr.llm is not None:
        for ct in tr.llm.traces:
            if ct.statement == tr.statement:
                return ct.trigger_sources, ct.examples, "retrieved training pairs in the trigger's cluster"
    if tr.lexical is not None:
        for a in tr.lexical.anchors:
            if a.statement == tr.statement and a.trigger is not None:
                return a.trigger.sources, a.examples, "training pairs having the trigger feature"
    return [], [], ""


def print_trace_summary(tr: TraceResult, console: Console, examples: int = 3) -> None:
    """One screen: the headline, the top triggers (one per crux / anchor), the sources behind the headline's
    trigger and a few training examples. `print_trace(full=True)` shows every table."""
    console.print(Panel(Text(tr.statement), title="TURF trace", border_style="cyan"))
    console.print(Text("query: ", style="bold") + Text(_one_line(tr.query, 150)))
    console.print(Text("response: ", style="bold") + Text(_one_line(tr.response, 150)))
    if tr.violation:
        console.print(Text("rubric: ", style="bold") + Text(_one_line(tr.violation, 150)))
    for w in tr.warnings:
        console.print(Text("note: " + _one_line(w, 150), style="yellow"))
    t = Table(title="top triggers (lift > 1 with a 95% interval above 1)", title_justify="left", show_edge=False)
    for col, width in (("behind", 12), ("trigger", 12), ("hits", 9), ("lift", 6), ("≥ (95%)", 7)):
        t.add_column(col, justify="left" if col in ("behind", "trigger") else "right", no_wrap=True,
                     overflow="ellipsis", min_width=width)
    rows = 0
    if tr.llm is not None:
        for ct in tr.llm.traces:
            if ct.trigger is not None:
                t.add_row(Text(_one_line("LLM crux: " + ct.crux, 40)), Text(_one_line(ct.trigger.text, 50)),
                          f"{ct.trigger.hits}/{ct.k}", f"{ct.trigger.lift:.1f}×", f"{ct.trigger.lift_low:.1f}×")
                rows += 1
    if tr.lexical is not None:
        ranked = sorted((a for a in tr.lexical.anchors if a.trigger is not None),
                        key=lambda a: (not a.carries_violation, -(a.trigger.lower if a.trigger else 0.0)))
        for a in ranked[:5]:
            f = a.trigger
            assert f is not None
            behind = a.text if a.anchor == "response feature" else f"nearest to the {a.anchor}"
            t.add_row(Text(_one_line(behind, 40)), Text(f.feature), f"{f.hits}/{f.total}",
                      f"{f.lift:.1f}×", f"{f.lift_low:.1f}×")
            rows += 1
    if rows:
        console.print(t)
    srcs, exs, title = _headline_source(tr)
    if srcs:
        console.print(_sources_table("sources of the trigger's hits", srcs[:5]))
    if exs:
        cut = max(20, (console.width - max(len(e.source) for e in exs[:examples]) - 16) // 2)
        console.print(_examples(exs[:examples], title, compact=True, width=cut))
    console.print(Text(f"{_features_line(tr)}. --full shows every table, --json everything.".lstrip(". "), style="dim"))


def print_trace(tr: TraceResult, console: Console, top: int = 10, examples: int = 3, full: bool = True) -> None:
    if not full:
        print_trace_summary(tr, console, examples)
        return
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
            for col in ("query attribute", "cluster", "hits", "lift P(c|hits)/P(c)", "≥ (95%)"):
                t.add_column(col, justify="left" if col in ("query attribute", "cluster") else "right")
            for qa in ct.query_attributes:
                style = "bold green" if ct.trigger is not None and qa.text == ct.trigger.text else None
                t.add_row(Text(qa.text), Text(f"{qa.cluster}: {_one_line(qa.cluster_summary, 50)}"),
                          f"{qa.hits}/{ct.k}", f"{qa.lift:.1f}×", f"{qa.lift_low:.1f}×", style=style)
            console.print(t)
            t = Table(title=f"clusters with most hits (k = {ct.k})", title_justify="left", show_edge=False)
            for col in ("cluster", "summary", "hits", "mix size", "lift P(c|hits)/P(c)"):
                t.add_column(col, justify="left" if col in ("cluster", "summary") else "right")
            for c in ct.clusters[:top]:
                t.add_row(str(c.cluster), Text(_one_line(c.summary, 70)), f"{c.hits}/{c.total}", str(c.size), f"{c.lift:.1f}×")
            console.print(t)
            if ct.trigger_sources:
                console.print(_sources_table("sources of the trigger cluster's hits", ct.trigger_sources))
            if ct.examples:
                console.print(_examples(ct.examples[:examples], "retrieved training pairs in the trigger's cluster"))
    if tr.lexical is not None:
        console.rule("lexical channel")
        console.print(Text(_features_line(tr)))
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
    for col in ("source", "matches", "share of matches", "source size", "rate in source", LIFT_MATCH):
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
            + (f"   {LIFT_PAIR} {o.lift:.1f}×" if o.lift else "")
            + (f", risk ratio P(r|q)/P(r|¬q) {o.risk_ratio:.1f}×" if o.risk_ratio else "")
        )
    )
    t = Table(show_edge=False, pad_edge=False, title="per source (rates in %, 95% Wilson intervals)", title_justify="left")
    t.add_column("source", min_width=10, overflow="ellipsis", no_wrap=True)
    for col in ("n", "q", "q∧r", "P(r|q)", "P(r|¬q)", LIFT_PAIR, "risk ratio P(r|q)/P(r|¬q)"):
        t.add_column(col, justify="right", no_wrap=True)

    def rate(p: float | None, ci: tuple[float, float]) -> str:
        return "—" if p is None else f"{100 * p:.1f} [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]"

    for c in res.by_source:
        t.add_row(
            escape(c.source), str(c.n), str(c.n_query), str(c.n_both),
            rate(c.p_response_given_query, c.ci_given_query) if c.n_query else "—",
            rate(c.p_response_given_not_query, c.ci_given_not_query) if c.n > c.n_query else "—",
            f"{c.lift:.1f}×" if c.lift else "—",
            f"{c.risk_ratio:.1f}×" if c.risk_ratio else "—",
        )
    console.print(t)
    console.print(Text(f"{res.elapsed_s:.3f}s", style="dim"))


def _also(names: list[str], n: int = 2) -> str:
    if not names:
        return ""
    more = f" +{len(names) - n}" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def print_mine(res: MineResult, console: Console) -> None:
    t = Table(title=f"Features concentrated in one source ({res.n_examples} examples; ranked by the lift's 95% lower bound)",
              title_justify="left", show_edge=False)
    for col in ("side", "feature", "examples", "top source", "share P(src|f)", "P(src)", LIFT_SOURCE, "≥ (95%)",
                "same examples"):
        t.add_column(col, justify="left" if col in ("side", "feature", "top source", "same examples") else "right")
    for f in res.concentrated:
        t.add_row(f.side, Text(f.feature), str(f.df), escape(f.source), _pct(f.share), _pct(f.source_share),
                  f"{f.lift:.1f}×", f"{f.lift_low:.1f}×", Text(_also(f.same_examples)))
    console.print(t)
    if res.signatures:
        t = Table(title=f"Each source's strongest signatures of each kind (examples, {LIFT_SOURCE}; strongest first)",
                  title_justify="left", show_edge=False, show_lines=True)
        t.add_column("source")
        t.add_column("share of mix", justify="right")
        for k in SIGNATURE_KINDS:
            t.add_column(k, overflow="fold")
        for sig in res.signatures:
            cells = []
            for k in SIGNATURE_KINDS:
                shown = ([sig.signatures[k]] if k in sig.signatures else []) + sig.runners_up.get(k, [])
                cells.append(Text("\n".join(f"{f.feature} ({f.count}, {f.lift:.0f}×)" for f in shown)) if shown else Text("—"))
            t.add_row(escape(sig.source), _pct(sig.share_of_mix), *cells)
        console.print(t)
    habits = [h for sig in res.signatures for h in sig.conditional]
    if habits:
        t = Table(title=f"Each source's habits conditional on a query feature (inside the source; {LIFT_IN_SOURCE})",
                  title_justify="left", show_edge=False)
        for col in ("source", "query feature", "response feature", "both", "P(r|q,src)", "P(r|src)", LIFT_IN_SOURCE,
                    "≥ (95%)", "same examples"):
            t.add_column(col, justify="right" if col in ("both", "P(r|q,src)", "P(r|src)", LIFT_IN_SOURCE, "≥ (95%)") else "left")
        for h in habits:
            t.add_row(escape(h.source), Text(h.query_feature), Text(h.response_feature), f"{h.n_both}/{h.n_query}",
                      _pct(h.p_response_given_query), _pct(h.p_response), f"{h.lift:.1f}×", f"{h.lift_low:.1f}×",
                      Text(_also(h.same_examples, 1)))
        console.print(t)
    t = Table(title="Query feature → response feature", title_justify="left", show_edge=False)
    for col in ("query feature", "response feature", "both", "P(r|q)", "95% CI", "P(r)", LIFT_PAIR, "≥ (95%)",
                "main source", "same examples"):
        t.add_column(col, justify="left" if "feature" in col or col in ("main source", "same examples") else "right")
    for p in res.pairs:
        t.add_row(
            Text(p.query_feature), Text(p.response_feature), f"{p.n_both}/{p.n_query}", _pct(p.p_response_given_query),
            _ci(p.ci), _pct(p.p_response), f"{p.lift:.1f}×", f"{p.lift_low:.1f}×", Text(f"{p.source} ({p.source_share:.0%})"),
            Text(_also(p.same_examples, 1)),
        )
    console.print(t)
    console.print(Text(f"{res.elapsed_s:.2f}s", style="dim"))


__all__ = ["print_trace", "print_trace_summary", "print_grep", "print_cooccur", "print_mine"]
