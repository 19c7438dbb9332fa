"""`chunky report RUN --out report.html`: one self-contained HTML file with the key views of a run, its
findings (robustness and traces included) and its steering results.

Nothing is fetched when it opens: CSS and the one small script are inline, charts are inline SVG, plots are
data: URIs, and a Content-Security-Policy meta tag forbids any other script, any network request and any
form submission.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chunky.errors import ChunkyError
from chunky.store.records import CandidateRecord
from chunky.web import runs as runs_mod
from chunky.web.artifacts import TraceView, data_uri, load_trace_file, steer_image, steer_view, traces_for_candidate
from chunky.web.discover import Catalog, Item, classify
from chunky.web.overview import run_overview
from chunky.web.render import render
from chunky.web.views import FindingFilter


class ReportUrls:
    """In-page anchors instead of server routes."""

    def run(self, key: str, **params: Any) -> str:
        return "#run"

    def finding(self, key: str, candidate_id: Any) -> str:
        return f"#finding-{candidate_id}"

    def steer(self, key: str) -> str:
        return "#steering"

    def trace(self, key: str) -> str:
        return "#details"

    def index(self, key: str, **params: Any) -> str:
        return "#"


@dataclass
class FindingDetail:
    c: CandidateRecord
    rob: runs_mod.RobustnessSummary
    traces: list[TraceView] = field(default_factory=list)
    trace_problems: list[str] = field(default_factory=list)


def build_report(run_dir: Path, *, top: int = 30) -> str:
    """The report's HTML for one run directory: the `top` best findings (and every traced one) in detail."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise ChunkyError(f"{run_dir}: no such directory")
    if classify(run_dir) != "run":
        raise ChunkyError(f"{run_dir}: not a SURF run directory (no run.sqlite); `chunky report` takes a run "
                          "directory, an experiment folder or a CHECK.json")
    catalog = Catalog.from_paths([run_dir])
    item = catalog.runs.get(run_dir.name) or Item("run", run_dir.name, run_dir)
    summary = runs_mod.run_summary(item)
    if summary.problem:
        raise ChunkyError(summary.problem)
    with runs_mod.open_run(run_dir) as st:
        overview = run_overview(st)
        page = runs_mod.find_candidates(st, FindingFilter(status="scored", limit=top))
        findings = list(page.items)
        details_only: list[CandidateRecord] = []
        shown = {c.id for c in findings}
        # The output prompts (final buffers) link to their details too, even outside the top.
        for o in overview.outputs:
            if o.candidate.id not in shown:
                shown.add(o.candidate.id)
                details_only.append(o.candidate)
        # Traced findings outside the top still belong in the report; traces not named after a finding get
        # their own section.
        other_traces: list[TraceView] = []
        for t in catalog.traces_of(item.key):
            try:
                cid = int(t.path.stem.split(".")[0])
            except ValueError:
                other_traces.append(load_trace_file(t.path))
                continue
            if cid not in shown:
                c = st.candidate(cid)
                if c is not None:
                    details_only.append(c)
                    shown.add(cid)
        details = []
        for c in findings + details_only:
            traces, problems = traces_for_candidate(run_dir, c.id, st.traces(c.id))
            details.append(FindingDetail(c=c, rob=runs_mod.robustness_summary(st, c.id), traces=traces, trace_problems=problems))

    def embed(it: Item) -> str | None:
        found = steer_image(it.path)
        return data_uri(*found) if found else None

    steers = []
    for s in catalog.steers_of(item.key):
        try:
            steers.append(steer_view(s, embed))
        except ChunkyError as e:
            raise ChunkyError(f"{s.path}: {e}") from None
    return render(
        "report.html",
        report=True,
        u=ReportUrls(),
        run=summary,
        findings=findings,
        total_scored=summary.scored,
        details=details,
        other_traces=other_traces,
        steers=steers,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **overview.context(),
    )


def write_report(run_dir: Path, out: Path, *, top: int = 30) -> Path:
    """Render and write atomically (a failed render never leaves a half-written file). An experiment folder gets
    the experiment's report (chunky.web.experiments)."""
    from chunky.web.experiments import is_experiment_dir, write_experiment_report

    if is_experiment_dir(Path(run_dir)):
        return write_experiment_report(Path(run_dir), out)
    return write_html(out, build_report(run_dir, top=top))


def write_html(out: Path, html: str) -> Path:
    """Write a rendered page atomically: a failed write never leaves a half-written file at `out`."""
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise ChunkyError(f"--out {out}: directory {out.parent} does not exist")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
