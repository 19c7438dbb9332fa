"""Regression suites: `chunky suite build` from SURF runs and steering results, `chunky suite export`, and
`chunky check` with its baseline gate, resume and bad-input messages (real console script, real run store;
scripted providers stand in for two checkpoints)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from chunky.errors import ConfigError
from chunky.measure.stats import newcombe_delta
from chunky.suite.check import CheckConfig, Journal, SampleResult, compare, load_check, run_check
from chunky.suite.records import CASES_FILE, Case, Scorer, SuiteMeta, load_suite, suite_id, write_suite

from helpers import run_cli

REBUTTING = "mock:text=No, that is not correct."
AGREEING = "mock:text=Sure, happy to help with that."


def surf(out: Path, *, target: str, judge: str) -> None:
    r = run_cli("surf", "--rubric", "rebut", "--target", target, "--generator", "mock", "--judge", judge,
                "--runs", "1", "--iterations", "1", "--candidates", "4", "--out", str(out))
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    det, rub = base / "det", base / "rub"
    surf(det, target=REBUTTING, judge="detector:rebuttal")  # the detector is the whole judge
    surf(rub, target=REBUTTING, judge="mock")  # an LLM judge behind the rubric's rebuttal gate
    return {"det": det, "rub": rub}


@pytest.fixture
def suite_dir(runs, tmp_path) -> Path:
    out = tmp_path / "suite"
    r = run_cli("suite", "build", str(runs["det"]), "--out", str(out), "--top", "3")
    assert r.returncode == 0, r.stderr
    return out


def test_a_suite_is_built_from_a_runs_findings_with_their_scorer_and_provenance(runs, tmp_path):
    out = tmp_path / "suite"
    r = run_cli("suite", "build", str(runs["det"]), str(runs["rub"]), "--out", str(out), "--top", "2")
    assert r.returncode == 0, r.stderr
    suite = load_suite(out)
    meta = json.loads((out / "suite.json").read_text())
    assert meta["format"] == "chunky-suite" and meta["version"] == 1 and meta["suite_id"] == suite.meta.suite_id
    assert [s["path"] for s in meta["provenance"]["sources"]] == [str(runs["det"]), str(runs["rub"])]
    assert meta["provenance"]["rubrics"] == ["rebut"] and meta["created_at"]
    assert len(suite.cases) == 4
    det, rub = suite.cases[0], suite.cases[2]
    assert det.scorer == Scorer("detector", detector="rebuttal")
    assert rub.scorer.kind == "rubric" and rub.scorer.gate == "rebuttal" and rub.scorer.judge == "mock"
    assert rub.scorer.rubric["name"] == "rebut"
    for c in suite.cases:
        assert c.prompt and c.response == "No, that is not correct." and c.score is not None and c.score > 50
        assert c.source["kind"] == "surf" and isinstance(c.source["candidate_id"], int)
        assert c.rate is None  # no robustness test ran on these runs


def test_robust_findings_carry_their_measured_rate_and_interval(runs, tmp_path):
    r = run_cli("robust", str(runs["det"]), "--top", "2", "--perturbations", "1", "--samples", "3")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "suite"
    r = run_cli("suite", "build", str(runs["det"]), "--out", str(out), "--robust")
    assert r.returncode == 0, r.stderr
    cases = load_suite(out).cases
    assert len(cases) == 2  # only the two findings whose robustness is known
    for c in cases:
        assert c.rate is not None and c.rate.source == "robustness"
        assert (c.rate.hits, c.rate.n, c.rate.rate) == (3, 3, 1.0)  # the target always rebuts
        assert c.rate.low is not None and 0 < c.rate.low < 1 and c.rate.high == 1.0


def test_steering_results_become_cases_with_their_original_and_transformed_pair(tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Tell me about topic {i}."}) + "\n" for i in range(3)))
    steer = tmp_path / "steer"
    r = run_cli("steer", "--data", str(data), "--model", "mock", "--transform", "suffix: Answer with banana.",
                "--metric", "phrase:banana", "--samples", "2", "--out", str(steer))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "suite"
    r = run_cli("suite", "build", str(steer), "--out", str(out))
    assert r.returncode == 0, r.stderr
    cases = load_suite(out).cases
    assert [c.id for c in cases] == ["steer-q0", "steer-q1", "steer-q2"]
    for c in cases:
        assert c.scorer == Scorer("detector", detector="phrase:banana")
        assert c.pair is not None and c.pair.transformed == c.prompt and c.pair.original in c.prompt
        assert (c.pair.original_rate, c.pair.transformed_rate) == (0.0, 1.0)
        assert c.rate is not None and (c.rate.hits, c.rate.n, c.rate.source) == (2, 2, "steer")


def test_check_fails_only_when_the_rate_really_rose(suite_dir, tmp_path):
    base, new, again = tmp_path / "base.json", tmp_path / "new.json", tmp_path / "again.json"
    r = run_cli("check", str(suite_dir), "--model", AGREEING, "--samples", "5", "--out", str(base))
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("OK:")
    # the checkpoint that rebuts every time: every case rose 0% -> 100%, intervals apart
    r = run_cli("check", str(suite_dir), "--model", REBUTTING, "--samples", "5", "--out", str(new),
                "--baseline", str(base))
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("REGRESSION: 3 case(s)")
    got = load_check(new)
    assert got.status == "regression" and got.comparison is not None
    assert len(got.comparison.regressions) == 3
    for row in got.comparison.rows:
        assert (row.baseline.rate, row.current.rate, row.overlap) == (0.0, 1.0, False)
        assert row.delta.value == 1.0 and row.delta.low is not None and 0 < row.delta.low < 1
    # a rerun of the same checkpoint with fresh calls passes
    r = run_cli("check", str(suite_dir), "--model", AGREEING, "--samples", "5", "--out", str(again),
                "--baseline", str(base), "--no-cache")
    assert r.returncode == 0, r.stderr
    assert "OK: no regression" in r.stderr
    # going back to the agreeing checkpoint is an improvement, not a regression
    r = run_cli("check", str(suite_dir), "--model", AGREEING, "--samples", "5", "--out", str(again),
                "--baseline", str(new))
    assert r.returncode == 0, r.stderr


def test_a_check_that_could_not_measure_a_case_fails_with_exit_1_and_keeps_its_journal(suite_dir, tmp_path):
    from helpers import free_port

    out = tmp_path / "down.json"
    # nothing listens on this port: every target call fails (one attempt each, no backoff)
    r = run_cli("check", str(suite_dir), "--model", f"http://127.0.0.1:{free_port()}/v1:gone", "--samples", "2",
                "--out", str(out), env={"CHUNKY_MAX_ATTEMPTS": "1", "CHUNKY_RETRY_BASE_DELAY": "0"})
    assert r.returncode == 1, r.stderr  # FAILED, as a surf role that fails for good; 2 is a usage error
    assert r.stderr.strip().splitlines()[-1].startswith("INCOMPLETE: 3 case(s) could not be measured")
    got = load_check(out)
    assert got.status == "incomplete" and all(c.errors == 2 and c.rate.rate is None for c in got.cases)
    assert all(s.error and s.error.startswith("target:") for c in got.cases for s in c.samples)
    assert (tmp_path / "down.json.partial.jsonl").is_file()
    # the journal belongs to that checkpoint: checking another model into the same --out is refused, not mixed
    r = run_cli("check", str(suite_dir), "--model", AGREEING, "--samples", "2", "--out", str(out))
    assert r.returncode == 1 and "line 1: field 'config.model' differs" in r.stderr


def test_a_rise_within_sampling_noise_or_under_the_threshold_does_not_fail(tmp_path):
    cases = [Case("c", "Is 5+8=13?", Scorer("detector", detector="rebuttal"))]
    suite = _write(tmp_path / "s", cases)
    base, cur = _result(suite, hits=0, n=3), _result(suite, hits=3, n=3)
    # 0/3 -> 3/3: +100 pp, but with three samples each the 95% intervals still overlap
    assert not compare(cur, base, 10.0).rows[0].regression
    base, cur = _result(suite, hits=0, n=20), _result(suite, hits=20, n=20)
    assert compare(cur, base, 10.0).rows[0].regression
    assert not compare(cur, base, 100.0).rows[0].regression  # the rise must exceed --max-increase


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Table II example (a), method 10: 56/70 vs 48/80, difference 0.2000, 95% CI 0.0524 to 0.3339
    e = newcombe_delta(48, 80, 56, 70)
    assert e.value == pytest.approx(0.2, abs=1e-9)
    assert e.low == pytest.approx(0.0524, abs=1e-4) and e.high == pytest.approx(0.3339, abs=1e-4)


def test_an_interrupted_check_resumes_from_its_journal(tmp_path):
    from surf_helpers import scripted

    cases = [Case(f"c{i}", f"Is {i}+1={i + 2}?", Scorer("detector", detector="rebuttal")) for i in range(3)]
    suite = _write(tmp_path / "s", cases)
    out = tmp_path / "check.json"
    cfg = CheckConfig(model="mock", samples=4, use_cache=False)
    # an earlier run finished two samples (and failed one) before it was killed (the last line cut short)
    j = Journal(out.with_name(out.name + ".partial.jsonl"), {"suite_id": suite.meta.suite_id, "config": cfg.identity()})
    j.open()
    j.add("c0", SampleResult(0, "No.", True, 100.0, "No"))
    j.add("c1", SampleResult(2, "No.", True, 100.0, "No"))
    j.add("c2", SampleResult(0, None, None, error="target: connection refused"))  # a failed sample is retried
    j.close(remove=False)
    with j.path.open("a") as f:
        f.write('{"case": "c2", "sample_ind')
    target, provider = scripted(lambda req: "Yes, it is.", role="target")
    result = asyncio.run(run_check(suite, cfg, out=out, target=target))
    assert provider.calls == 3 * 4 - 2
    assert [c.hits for c in result.cases] == [1, 1, 0] and all(c.judged == 4 for c in result.cases)
    # a journal from other settings is refused with the field that differs
    with pytest.raises(ConfigError, match=r"line 1: field 'config.samples' differs"):
        asyncio.run(run_check(suite, CheckConfig(model="mock", samples=2, use_cache=False), out=out, target=target))


def test_export_writes_jsonl_with_the_authors_field_names(suite_dir, tmp_path):
    out = tmp_path / "cases.jsonl"
    r = run_cli("suite", "export", str(suite_dir), "--format", "jsonl", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert {"query", "response", "reward_score", "attributes", "id", "scorer"} <= set(row)
        assert row["response"] == "No, that is not correct." and row["reward_score"] > 50


def test_promptfoo_export_needs_a_served_model(suite_dir, tmp_path):
    r = run_cli("suite", "export", str(suite_dir), "--format", "promptfoo", "--out", str(tmp_path / "pf"),
                "--model", "local")
    assert r.returncode == 1
    assert "promptfoo reaches models over HTTP" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---- bad input: one line naming the file, the line and the field -----------------------------------


def _edit_case(suite_dir: Path, lineno: int, **changes) -> None:
    path = suite_dir / CASES_FILE
    lines = path.read_text().splitlines()
    d = json.loads(lines[lineno - 1])
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    lines[lineno - 1] = json.dumps(d)
    path.write_text("\n".join(lines) + "\n")


def _one_line_error(r) -> str:
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    return " ".join(lines)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"prompt": None}, "line 2: missing field 'prompt'"),
        ({"scorer": {"kind": "detector", "detector": "sarcasm"}}, "line 2: field 'scorer.detector': unknown detector 'sarcasm'"),
        ({"scorer": {"kind": "vibes"}}, "line 2: field 'scorer.kind' must be 'detector' or 'rubric'"),
    ],
)
def test_a_bad_case_is_one_line_naming_file_line_and_field(suite_dir, tmp_path, change, expected):
    _edit_case(suite_dir, 2, **change)
    r = run_cli("check", str(suite_dir), "--model", AGREEING, "--out", str(tmp_path / "c.json"))
    msg = _one_line_error(r)
    assert str(suite_dir / CASES_FILE) in msg and expected in msg


def test_a_baseline_from_another_suite_is_refused(suite_dir, runs, tmp_path):
    other = tmp_path / "other"
    assert run_cli("suite", "build", str(runs["rub"]), "--out", str(other), "--top", "1").returncode == 0
    theirs = tmp_path / "theirs.json"
    assert run_cli("check", str(other), "--model", AGREEING, "--samples", "1", "--out", str(theirs)).returncode == 0
    r = run_cli("check", str(suite_dir), "--model", AGREEING, "--out", str(tmp_path / "c.json"), "--baseline", str(theirs))
    msg = _one_line_error(r)
    assert str(theirs) in msg and "field 'suite_id'" in msg and "a baseline from another suite" in msg
    assert "line 4" in msg  # where suite_id sits in the file
    assert not (tmp_path / "c.json").exists()


def test_an_edited_suite_no_longer_matches_its_recorded_id(suite_dir, tmp_path):
    _edit_case(suite_dir, 1, prompt="Something else entirely?")
    r = run_cli("check", str(suite_dir), "--model", AGREEING, "--out", str(tmp_path / "c.json"))
    msg = _one_line_error(r)
    assert "suite.json: field 'suite_id'" in msg


# ---- helpers ---------------------------------------------------------------------------------------


def _write(path: Path, cases: list[Case]):
    meta = SuiteMeta(name=path.name, created_at="", chunky_version="test", cases=len(cases), suite_id=suite_id(cases))
    write_suite(path, meta, cases)
    return load_suite(path)


def _result(suite, *, hits: int, n: int):
    from chunky.suite.check import CaseResult, CheckResult

    c = suite.cases[0]
    samples = [SampleResult(i, "x", i < hits) for i in range(n)]
    return CheckResult(suite.meta.suite_id, suite.meta.name, str(suite.path), CheckConfig(model="m", samples=n),
                       [CaseResult(c.id, c.prompt, None, c.scorer.label, samples)], 1.0, 10)


def test_suite_build_names_a_source_that_is_neither_a_run_nor_a_steering_result(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_cli("suite", "build", str(tmp_path / "empty"), "--out", str(tmp_path / "s"))
    assert "neither a SURF run (run.sqlite) nor a steering result (steer.json)" in _one_line_error(r)
    r = run_cli("suite", "build", str(tmp_path / "missing"), "--out", str(tmp_path / "s"))
    assert "missing: no such directory" in _one_line_error(r)
    assert not (tmp_path / "s").exists()
