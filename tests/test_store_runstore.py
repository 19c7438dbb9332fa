"""The run store: schema and migrations, candidates, top, buffers and weights, robustness rows,
traces, exports, and readers alongside a writer (real SQLite files in WAL mode)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

from chunky.errors import ChunkyError
from chunky.store import JUDGE_ERROR, REJECTED, SCHEMA_VERSION, SCORED, RobustnessSample, RunStore


def add(st, run_id=0, it=0, slot=0, attempt=0, score=50.0, status=SCORED, query=None, attrs=("a",)):
    return st.add_candidate(
        run_id=run_id, iteration=it, slot=slot, attempt=attempt, attributes=list(attrs), weighted=list(attrs[:1]),
        explore=list(attrs[1:]), query=query or f"q{run_id}.{it}.{slot}.{attempt}", response="r", score=score,
        reasoning="why", error=None if status == SCORED else "boom", gate=None,
        usage={"target": {"calls": 1, "cached": 0, "input_tokens": 3, "output_tokens": 4, "cost_usd": 0.5}},
        judge_samples=[score] if score is not None else [], status=status, created_at=time.time(),
    )


def test_create_then_open_a_run_directory(tmp_path):
    st = RunStore.create(tmp_path / "run")
    assert st.schema_version == SCHEMA_VERSION
    assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    st.set_meta_many({"config": {"runs": 2}, "rubric": {"name": "code"}, "models": {"target": "mock"}})
    st.close()
    with RunStore.open(tmp_path / "run") as st:
        assert st.meta["config"] == {"runs": 2}
        assert (st.rubric_name, st.target_model) == ("code", "mock")


def test_opening_something_else_fails_clearly(tmp_path):
    with pytest.raises(ChunkyError, match="no such run directory"):
        RunStore.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ChunkyError, match="not a SURF run directory"):
        RunStore.open(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ChunkyError, match="not a readable run database"):
        RunStore.open(tmp_path / "junk")


def test_a_newer_schema_is_refused_and_an_empty_database_is_migrated(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    con = sqlite3.connect(d / "run.sqlite")
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(ChunkyError, match="newer chunky"):
        RunStore.open(d)
    d2 = tmp_path / "run2"
    d2.mkdir()
    sqlite3.connect(d2 / "run.sqlite").close()  # version 0: nothing yet
    with RunStore.open(d2) as st:
        assert st.schema_version == SCHEMA_VERSION and st.candidates() == []


def test_candidates_round_trip_and_a_duplicate_slot_attempt_keeps_the_first(tmp_path):
    with RunStore.create(tmp_path / "run") as st:
        a = add(st, score=70.0, attrs=("x", "y"))
        b = add(st, score=10.0)  # same run/iteration/slot/attempt: ignored
        assert a == b
        c = st.candidate(a)
        assert (c.score, c.attributes, c.weighted_attributes, c.explore_attributes) == (70.0, ["x", "y"], ["x"], ["y"])
        assert c.usage["target"]["calls"] == 1 and c.judge_samples == [70.0]
        assert len(st.candidates()) == 1


def test_top_is_ordered_distinct_and_ignores_errors(tmp_path):
    with RunStore.create(tmp_path / "run") as st:
        add(st, slot=0, score=60.0, query="same")
        add(st, slot=1, score=90.0, query="same")
        add(st, slot=2, score=90.0, it=1, query="later")
        add(st, slot=3, score=None, status=JUDGE_ERROR)
        add(st, slot=4, score=None, status=REJECTED)
        add(st, run_id=1, slot=0, score=75.0)
        top = st.top(10)
        assert [(c.query, c.score) for c in top] == [("same", 90.0), ("later", 90.0), ("q1.0.0.0", 75.0)]
        assert len(st.top(10, distinct=False)) == 4
        assert [c.score for c in st.top(10, min_score=80)] == [90.0, 90.0]
        assert [c.run_id for c in st.top(10, run_id=1)] == [1]
        s = st.status()
        assert (s.candidates, s.scored, s.errors, s.rejected, s.violations, s.best_score) == (6, 4, 1, 1, 4, 90.0)
        assert st.spent_calls() == (6, 3.0)


def test_iterations_buffers_and_weights(tmp_path):
    with RunStore.create(tmp_path / "run") as st:
        st.start_iteration(0, 0, "d0", {})
        ids = [add(st, slot=i, score=s, attrs=(f"a{i}",)) for i, s in enumerate([30.0, 80.0, 55.0])]
        rec = st.finish_iteration(0, 0, [(ids[1], 80.0), (ids[2], 55.0)])
        assert (rec.status, rec.scored, rec.violations, rec.best_score, rec.buffer_mean) == ("done", 3, 2, 80.0, 67.5)
        st.start_iteration(0, 1, "d1", {"a1": 80.0, "a2": 55.0})
        assert st.weights(0, 1) == {"a1": 80.0, "a2": 55.0}
        assert [(b.rank, b.candidate_id, b.attributes) for b in st.buffer(0)] == [(0, ids[1], ["a1"]), (1, ids[2], ["a2"])]
        assert st.iteration(0, 1).status == "running"
        assert [b.score for b in st.final_buffers()] == [80.0, 55.0]
        st.set_run(0, "done")
        assert st.runs()[0].iterations_done == 1 and st.runs()[0].best_score == 80.0


def test_robustness_rows_aggregate_failure_rates_per_variant(tmp_path):
    with RunStore.create(tmp_path / "run") as st:
        cid = add(st, score=95.0)
        st.put_robust_variant(cid, 0, "original")
        st.put_robust_variant(cid, 1, "rewrite")
        st.put_robust_variant(cid, 2, "", "duplicate rewrite")  # a failed rewrite is not a variant
        for s, score in enumerate([90.0, 20.0, 60.0, None]):
            st.add_robust_sample(RobustnessSample(cid, 0, s, "resp", score, "r", None if score is not None else "judge failed"))
        st.add_robust_sample(RobustnessSample(cid, 1, 0, "resp", 10.0, "r", None))
        rows = st.robustness(cid)
        assert [(r.variant, r.samples, r.judged, r.violations, r.errors) for r in rows] == [(0, 4, 3, 2, 1), (1, 1, 1, 0, 0)]
        assert rows[0].failure_rate == pytest.approx(2 / 3)
        assert st.robust_done(cid, 0) == {0, 1, 2, 3}
        assert st.robust_variants(cid) == {0: "original", 1: "rewrite"}
        assert st.robustness(cid, threshold=15.0)[0].violations == 3


def test_traces_and_the_results_export(tmp_path):
    with RunStore.create(tmp_path / "run") as st:
        cid = add(st, score=80.0, attrs=("formal", "Russian"))
        add(st, slot=1, score=None, status=JUDGE_ERROR)
        st.put_trace(cid, "turf", {"trigger": "formal"})
        assert st.traces(cid) == {"turf": {"trigger": "formal"}}
        path = st.export_results()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 1  # judge errors are not results
    r = lines[0]
    # the store's first iteration (0) is iteration 1 in every output, as in the CLI and the explorer
    assert (r["reward_score"], r["attributes"], r["run_id"], r["iteration"]) == (80.0, ["formal", "Russian"], 0, 1)
    assert r["query"] == "q0.0.0.0" and r["response"] == "r" and r["reasoning"] == "why"


def test_a_reader_sees_committed_candidates_while_the_writer_keeps_writing(tmp_path):
    writer = RunStore.create(tmp_path / "run")
    reader = RunStore.open(tmp_path / "run")
    stop = threading.Event()
    seen = []

    def read():
        while not stop.is_set():
            seen.append(len(reader.top(1000)))

    t = threading.Thread(target=read)
    t.start()
    for i in range(300):
        add(writer, slot=i, score=float(i % 100))
    stop.set()
    t.join()
    assert seen == sorted(seen)  # never goes backwards, never errors
    assert len(reader.candidates()) == 300
    writer.close()
    reader.close()


def test_at_equal_scores_top_puts_responses_that_passed_the_gate_first(tmp_path):
    with RunStore.create(tmp_path / "run") as st:
        rows = []
        for slot, gate in enumerate([None, {"detector": "rebuttal", "hit": False, "evidence": ""},
                                     {"detector": "rebuttal", "hit": True, "evidence": "No,"}]):
            rows.append(dict(run_id=0, iteration=0, slot=slot, attempt=0, attributes=["a"], weighted=[], explore=[],
                             query=f"q{slot}", response="r", score=0.0, reasoning="", error=None, gate=gate, usage={},
                             judge_samples=[], status=SCORED, created_at=0.0))
        st.add_candidates(rows)
        assert [c.query for c in st.top(3)] == ["q2", "q0", "q1"]


def test_a_read_only_store_reads_alongside_a_writer_and_refuses_to_write(tmp_path):
    writer = RunStore.create(tmp_path / "run")
    add(writer, slot=0, score=10.0)
    with RunStore.open_readonly(tmp_path / "run") as reader:
        assert [c.score for c in reader.top(5)] == [10.0]
        add(writer, slot=1, score=80.0)  # committed by the writer while the reader is open
        assert [c.score for c in reader.top(5)] == [80.0, 10.0]
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only"):
            reader.set_meta("x", 1)
    writer.close()


def test_a_read_only_open_never_migrates_and_says_why(tmp_path):
    with pytest.raises(ChunkyError, match="not a SURF run directory"):
        RunStore.open_readonly(tmp_path)
    (tmp_path / "old").mkdir()
    conn = sqlite3.connect(tmp_path / "old" / "run.sqlite")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA user_version=1")
    conn.close()
    if SCHEMA_VERSION > 1:
        with pytest.raises(ChunkyError, match="older chunky"):
            RunStore.open_readonly(tmp_path / "old")
    (tmp_path / "new").mkdir()
    conn = sqlite3.connect(tmp_path / "new" / "run.sqlite")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ChunkyError, match="newer chunky"):
        RunStore.open_readonly(tmp_path / "new")
    assert sqlite3.connect(tmp_path / "new" / "run.sqlite").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_typed_new_candidates_and_keyword_rows_commit_the_same_way(tmp_path):
    from chunky.store import NewCandidate

    fields = dict(run_id=0, iteration=0, slot=0, attempt=0, attributes=["a"], weighted=["a"], explore=[], query="q",
                  response="r", score=5.0, reasoning="", error=None, gate=None, usage={}, judge_samples=[5.0],
                  status=SCORED, created_at=0.0)
    with RunStore.create(tmp_path / "run") as st:
        ids = st.add_candidates([NewCandidate(**fields), dict(fields, slot=1)])
        assert [st.candidate(i).slot for i in ids] == [0, 1]
        with pytest.raises(TypeError):
            st.add_candidate(**dict(fields, slot=2, colour="red"))
