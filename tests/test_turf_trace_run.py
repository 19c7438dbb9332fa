"""Tracing a SURF run's top findings (through chunky.store) and the `chunky trace` command."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from chunky.errors import ChunkyError
from chunky.turf.index import TurfIndex
from chunky.turf.trace import TraceOptions, TraceResult, trace_run

from turf_handmade import query_features

CODE_RESPONSE = "Here is an example:\n```python\ndef pronouns_demo():\n    return 1\n```\nThis shows pronouns."


def make_run(path, findings):
    from chunky.store import JUDGE_ERROR, SCORED, RunStore
    from chunky.surf.rubric import Rubric

    store = RunStore.create(path)
    store.set_meta("rubric", Rubric(name="code", behaviour="code", principle="Do not write code unless asked.").to_dict())
    store.set_run(0, "done")
    ids = []
    for slot, (q, r, score) in enumerate(findings):
        ids.append(
            store.add_candidate(
                run_id=0, iteration=0, slot=slot, attempt=0, attributes=["a"], weighted=[], explore=[],
                query=q, response=r, score=score, reasoning="r", error=None if score is not None else "judge failed",
                gate=None, usage={}, judge_samples=[], status=SCORED if score is not None else JUDGE_ERROR,
                created_at=time.time(),
            )
        )
    store.close()
    return ids


def test_trace_run_traces_the_top_findings_and_saves_them(tmp_path, hm):
    run = tmp_path / "run"
    ids = make_run(run, [
        ("Could you elucidate pronouns?", CODE_RESPONSE, 95.0),
        ("1. What is 1 plus 1? 2. What is 2 times 2?", "2 and 4. I hope it is correct.", 80.0),
        ("hey what about lunch?", "Lovely!", 10.0),
        ("never judged", "x", None),
    ])
    idx = TurfIndex.open(hm.path)
    results = trace_run(idx, run, top=2, extract_features=query_features, options=TraceOptions(k_lexical=30, channels=("lexical",)))
    assert [r.candidate_id for r in results] == ids[:2]
    assert [r.score for r in results] == [95.0, 80.0]
    assert results[0].rubric == "code"  # the run's own rubric copy
    assert results[0].lexical.anchors[0].trigger.feature == "word:elucidate"
    assert results[1].lexical.anchors[0].sources[0].source == "mathset"
    for r, cid in zip(results, ids):
        saved = TraceResult.load(run / "traces" / f"{cid}.json")
        assert saved == r and saved.run == str(run)
    from chunky.store import RunStore

    with RunStore.open(run) as store:
        assert store.traces(ids[0])["turf"]["candidate_id"] == ids[0]
        assert store.traces(ids[2]) == {}


def test_trace_run_keeps_finished_traces_when_one_fails(tmp_path, hm):
    from chunky.models import get_model

    run = tmp_path / "run"
    ids = make_run(run, [("Could you elucidate pronouns?", CODE_RESPONSE, 95.0), ("second", "second answer", 90.0)])
    idx = TurfIndex.open(hm.path)
    # a judge that returns no valid JSON: with only the LLM channel every trace fails, each with its own line
    errors: list[str] = []
    bad = get_model("mock:text=not json", use_cache=False)
    with pytest.raises(ChunkyError, match="every trace failed"):
        trace_run(idx, run, judge=bad, extract_features=query_features, on_error=errors.append,
                  options=TraceOptions(channels=("llm",)))
    assert len(errors) == 2 and f"candidate {ids[0]}" in errors[0] and "LLM channel failed" in errors[0]
    assert not (run / "traces").exists()
    # with both channels the lexical channel still traces, and the trace says why the LLM one is missing
    ok = trace_run(idx, run, judge=bad, extract_features=query_features, options=TraceOptions(k=40, k_lexical=40))
    assert len(ok) == 2 and all(r.llm is None for r in ok)
    assert any("LLM channel failed" in w for w in ok[0].warnings)
    assert ok[0].lexical.anchors[0].trigger.feature == "word:elucidate"


def test_trace_run_errors_are_one_line(tmp_path, hm):
    idx = TurfIndex.open(hm.path)
    with pytest.raises(ChunkyError, match="no such run directory"):
        trace_run(idx, tmp_path / "missing")
    make_run(tmp_path / "empty", [("q", "r", None)])
    with pytest.raises(ChunkyError, match="no scored findings"):
        trace_run(idx, tmp_path / "empty")


def test_cli_trace_direct_and_from_run(tmp_path, hm):
    from chunky.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["trace", str(hm.path), "--query", "Could you elucidate pronouns?", "--response", CODE_RESPONSE,
                            "--crux", "The response provides extensive code examples", "--k", "40", "--k-lexical", "40",
                            "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    saved = list((hm.path / "traces").glob("*.json"))
    assert any(p.stem == d["id"] for p in saved)
    assert d["lexical"]["anchors"][0]["sources"][0]["source"] == "codeset"
    # no judge: the LLM channel is skipped with a note, not an error
    assert any("LLM channel skipped" in w for w in d["warnings"])

    resp_file = tmp_path / "resp.txt"
    resp_file.write_text(CODE_RESPONSE)
    r = runner.invoke(app, ["trace", str(hm.path), "-q", "Could you elucidate pronouns?", "-r", f"@{resp_file}",
                            "--out", str(tmp_path / "t.json")])
    assert r.exit_code == 0, r.output
    assert "When the model sees" in r.output
    assert TraceResult.load(tmp_path / "t.json").response == CODE_RESPONSE

    run = tmp_path / "run"
    ids = make_run(run, [("Could you elucidate pronouns?", CODE_RESPONSE, 95.0)])
    r = runner.invoke(app, ["trace", str(hm.path), "--from-run", str(run), "--top", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["candidate_id"] == ids[0]
    assert (run / "traces" / f"{ids[0]}.json").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--query", "q"], "give --query and --response"),
        (["--query", "q", "--response", "r", "--channel", "nope"], "--channel"),
        (["--query", "q", "--response", "@/no/such/file"], "--response: /no/such/file: no such file"),
        (["--from-run", "/no/such/run"], "no such run directory"),
    ],
)
def test_cli_trace_bad_input(hm, args, message):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "chunky.cli", "trace", str(hm.path), *args], capture_output=True, text=True)
    assert p.returncode == 1
    assert message in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
