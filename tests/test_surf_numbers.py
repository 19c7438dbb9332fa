"""Every printed number means what its label says: one iteration convention (1-based) in the CLI, `top --json`,
results.jsonl, the explorer's charts and weight table; the violations chart says it plots a share; `table`
keeps gated and ungated runs apart; an all-zero steering plot has an axis from 0."""

from __future__ import annotations

import asyncio
import json
import re

from chunky.store import RunStore

from helpers import run_cli

MOCK = ["--target", "mock", "--generator", "mock", "--judge", "mock"]


def surf(out, *extra):
    r = run_cli("surf", "--rubric", "code", *MOCK, "--runs", "2", "--iterations", "2", "--candidates", "5",
                "--buffer", "3", "--patience", "0", "--out", str(out), *extra)
    assert r.returncode == 0, r.stderr
    return r


def test_iterations_are_1_based_everywhere_they_are_shown(tmp_path):
    out = tmp_path / "run"
    r = surf(out, "--gate", "none")
    assert set(re.findall(r"iteration (\d)/2", r.stderr)) == {"1", "2"}
    assert set(re.findall(r"· iteration (\d) ·", r.stdout)) <= {"1", "2"} and "iteration 0" not in r.stdout
    js = run_cli("top", str(out), "--n", "50", "--json")
    assert {json.loads(line)["iteration"] for line in js.stdout.splitlines()} == {1, 2}
    assert {json.loads(line)["iteration"] for line in (out / "results.jsonl").read_text().splitlines()} == {1, 2}

    from chunky.web import runs as runs_mod

    with RunStore.open(out) as st:
        stats = runs_mod.iteration_stats(st)
        assert {x for s in runs_mod.trajectories(stats) for x, _ in s.points} == {1.0, 2.0}
        assert {x for s in runs_mod.violation_rates(stats) for x, _ in s.points} == {1.0, 2.0}
        # the first iteration samples uniformly (no weights): the table's one column is iteration 2
        assert runs_mod.weight_heatmap(st, stats).columns == ["2"]


def test_the_violations_chart_says_it_plots_a_share_of_scored_candidates(tmp_path):
    out = tmp_path / "run"
    surf(out, "--gate", "none")
    from starlette.testclient import TestClient

    from chunky.web import runs as runs_mod
    from chunky.web.app import create_app

    with RunStore.open(out) as st:
        (series,) = runs_mod.violation_rates(runs_mod.iteration_stats(st))
    assert "%" in series.label and all(0 <= y <= 100 for _, y in series.points)
    page = TestClient(create_app([out])).get("/run/run").text
    assert "Share of violations per iteration" in page and "% of scored candidates &gt; 50" in page


def test_table_keeps_gated_and_ungated_runs_of_one_rubric_apart(tmp_path):
    gated, ungated = tmp_path / "gated", tmp_path / "ungated"
    surf(gated)
    surf(ungated, "--gate", "none")
    js = json.loads(run_cli("table", str(gated), str(ungated), "--format", "json").stdout)
    cells = {c["behaviour"]: c for c in js["cells"]}
    assert set(cells) == {"code", "code [gate none]"}
    assert cells["code"]["share"] == 0.0  # the code gate: the echoing mock writes no code
    assert cells["code [gate none]"]["share"] > 0  # the mock judge's hash scores, many above 50
    assert all(c["prompts"] == 6 for c in cells.values())  # never pooled into one cell
    md = run_cli("table", str(gated), str(ungated)).stdout
    assert md.splitlines()[0] == "| model | code | code [gate none] |"


def test_an_all_zero_steering_plot_has_an_axis_from_zero():
    from chunky.measure.evalset import EvalExample
    from chunky.measure.plots import plot_summary
    from chunky.measure.steer import SteerConfig, run_steer

    exs = [EvalExample(f"e{i}", f"Is {i}+2={i + 2}?", "Yes") for i in range(4)]
    for transforms in ([], ["suffix: Thanks."]):
        cfg = SteerConfig(models=["mock:text=Yes."], metric="stance:no", transforms=transforms, use_cache=False)
        result = asyncio.run(run_steer(exs, cfg, data_name="zeros"))
        assert result.rows[0].original.value == 0.0
        fig = plot_summary(result)
        lo, hi = fig.axes[0].get_ylim()
        assert lo == 0.0 and hi >= 1.0  # a rate of 0 %, not a bar inside -0.04..+0.04
        if transforms:
            dlo, dhi = fig.axes[1].get_ylim()
            assert dlo == -1.0 and dhi == 1.0
