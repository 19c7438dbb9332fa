"""The run overview: the charts and tables above a run's findings, shared by the served run page
(`chunky.web.app`) and the self-contained report (`chunky.web.report`). Neither of those imports the other."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from markupsafe import Markup

from chunky.store import IterationRecord, RunStore
from chunky.web import runs as runs_mod
from chunky.web.charts import Heatmap, line_chart


@dataclass
class RunOverview:
    """The run page's (and the report's) charts and tables above the findings."""

    traj_svg: Markup
    viol_svg: Markup
    weights: Heatmap
    outputs: list[runs_mod.OutputPrompt]
    iters: list[IterationRecord]

    def context(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def run_overview(st: RunStore) -> RunOverview:
    """Computed once per state of the run's files (a live run's whenever it has written something new)."""
    return runs_mod.memoized("overview", st.dir, None, lambda: _run_overview(st))


def _run_overview(st: RunStore) -> RunOverview:
    stats = runs_mod.iteration_stats(st)
    return RunOverview(
        traj_svg=line_chart(
            runs_mod.trajectories(stats),
            x_label="iteration",
            y_label="best judge score",
            y_range=(0, 100),
            bands=runs_mod.SCORE_BANDS,
            css_class="chart line-chart trajectory",
        ),
        viol_svg=line_chart(
            runs_mod.violation_rates(stats),
            x_label="iteration",
            y_label="% of scored candidates > 50",
            y_range=(0, 100),
            css_class="chart line-chart violations",
        ),
        weights=runs_mod.weight_heatmap(st, stats),
        outputs=runs_mod.output_prompts(st),
        iters=runs_mod.iteration_records(st),
    )
