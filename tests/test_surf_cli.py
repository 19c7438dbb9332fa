"""`chunky surf`, `top`, `robust` and `table` as a user runs them (real console script, real run store)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from chunky.store import RunStore

from helpers import run_cli

MOCK = ["--target", "mock", "--generator", "mock", "--judge", "mock"]


def surf(out, *extra):
    return run_cli("surf", "--rubric", "code", *MOCK, "--runs", "2", "--iterations", "2", "--candidates", "6",
                   "--buffer", "3", "--gate", "none", "--out", str(out), *extra)


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "run"
    r = surf(out)
    assert r.returncode == 0, r.stderr
    return out


def test_surf_prints_progress_and_the_top_findings(tmp_path):
    r = surf(tmp_path / "run")
    assert r.returncode == 0, r.stderr
    assert "run 1 iteration 2/2" in r.stderr and "done: 24 scored" in r.stderr
    assert "#1  score" in r.stdout and "query:" in r.stdout
    # the same command again resumes a finished run: nothing new is done
    again = surf(tmp_path / "run")
    assert again.returncode == 0 and "done: 24 scored" in again.stderr
    with RunStore.open(tmp_path / "run") as st:
        assert len(st.candidates()) == 24


def test_a_gated_run_says_how_many_responses_passed_its_gate(tmp_path):
    # a target that always rebuts passes the rebut rubric's detector gate every time; the echoing mock never does
    rebutting = run_cli("surf", "--rubric", "rebut", "--target", "mock:text=No, that is not correct.", "--generator", "mock",
                        "--judge", "mock", "--runs", "1", "--iterations", "1", "--candidates", "4", "--out", str(tmp_path / "a"))
    assert rebutting.returncode == 0, rebutting.stderr
    assert "done: 4 scored" in rebutting.stderr and "4 passed the rebuttal gate" in rebutting.stderr
    echoing = run_cli("surf", "--rubric", "rebut", *MOCK, "--runs", "1", "--iterations", "1", "--candidates", "4",
                      "--out", str(tmp_path / "b"))
    assert "0 passed the rebuttal gate" in echoing.stderr
    ungated = surf(tmp_path / "c")  # --gate none: nothing to report
    assert "passed the" not in ungated.stderr


def test_surf_reads_a_system_prompt_file_and_an_attribute_list(tmp_path):
    sp = tmp_path / "system.txt"
    sp.write_text("You are terse.")
    pool = tmp_path / "pool.txt"
    pool.write_text("The query is about owls.\nThe query is in Welsh.\n")
    out = tmp_path / "run"
    r = surf(out, "--system-prompt", str(sp), "--attributes", str(pool), "--max-attributes", "2")
    assert r.returncode == 0, r.stderr
    with RunStore.open(out) as st:
        assert st.get_meta("config")["system_prompt"] == "You are terse."
        assert st.get_meta("pool")["size"] == 2
        assert {a for c in st.candidates() for a in c.attributes} <= {"The query is about owls.", "The query is in Welsh."}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rubric", "nope"], "error: rubric 'nope'"),
        (["--attributes", "/nonexistent/pool.txt"], "error: attribute pool"),
        (["--runs", "0"], "error: --runs must be a whole number ≥ 1"),
        (["--system-prompt", "/nonexistent/sp.txt"], "error: --system-prompt /nonexistent/sp.txt: no such file"),
        (["--target", "martian:x"], "unknown provider 'martian'"),
        (["--preset", "huge"], "--preset 'huge': unknown"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    base = {"--rubric": "code", "--target": "mock"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv]
    r = run_cli("surf", *flat, "--generator", "mock", "--judge", "mock", "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2


def test_top_as_text_and_json(run_dir):
    r = run_cli("top", str(run_dir), "--n", "3", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 3 and rows[0]["reward_score"] >= rows[1]["reward_score"] >= rows[2]["reward_score"]
    r = run_cli("top", str(run_dir), "--min-score", "101")
    assert r.returncode == 0 and "No scored candidates" in r.stdout
    r = run_cli("top", str(run_dir.parent / "nothing"))
    assert r.returncode == 1 and "no such run directory" in r.stderr


def test_robust_stores_per_prompt_failure_rates(run_dir):
    r = run_cli("robust", str(run_dir), "--top", "2", "--perturbations", "3", "--samples", "4", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["prompts"] == 2
    for item in rep["items"]:
        assert [v["variant"] for v in item["variants"]] == [0, 1, 2, 3]
        assert all(v["samples"] == 4 for v in item["variants"])
        assert 0.0 <= item["original_rate"] <= 1.0
    with RunStore.open(run_dir) as st:
        cid = rep["items"][0]["candidate_id"]
        variants = st.robust_variants(cid)
        assert variants[0] == st.candidate(cid).query and len(set(variants.values())) == 4
        assert len(st.robust_samples(cid)) == 16
    # rerunning resumes: no new samples are drawn
    again = run_cli("robust", str(run_dir), "--top", "2", "--perturbations", "3", "--samples", "4", "--json")
    assert json.loads(again.stdout) == rep


def test_table_aggregates_models_by_behaviours(tmp_path):
    outs = []
    for rubric, target in (("code", "mock"), ("rebut", "mock"), ("code", "mock:text=```python\nprint(1)\n```")):
        out = tmp_path / f"{rubric}-{len(outs)}"
        r = run_cli("surf", "--rubric", rubric, "--target", target, "--generator", "mock", "--judge", "mock",
                    "--runs", "2", "--iterations", "1", "--candidates", "4", "--buffer", "3", "--out", str(out))
        assert r.returncode == 0, r.stderr
        outs.append(str(out))
    md = run_cli("table", *outs)
    assert md.returncode == 0, md.stderr
    assert md.stdout.splitlines()[0] == "| model | code | rebut |"
    # the echoing mock never rebuts: the rebut rubric's gate scores all its outputs 0
    mock_row = next(line for line in md.stdout.splitlines() if line.startswith("| mock |"))
    assert mock_row.endswith("| 0 |")
    js = json.loads(run_cli("table", *outs, "--format", "json").stdout)
    cells = {(c["model"], c["behaviour"]): c for c in js["cells"]}
    assert cells[("mock", "code")]["prompts"] == 6 and cells[("mock", "rebut")]["share"] == 0.0
    code_target = "mock:text=```python\nprint(1)\n```"
    assert cells[(code_target, "code")]["prompts"] == 6
    rows = list(csv.reader(io.StringIO(run_cli("table", *outs, "--format", "csv", "--threshold", "101").stdout)))
    assert rows[0] == ["model", "code", "rebut"] and rows[1][1:] == ["0", "0"]
