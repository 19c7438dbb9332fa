"""The SURF loop on deterministic models: slots, buffer, weights, errors, shared limits, budgets, resume rules."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from surf_helpers import judge_json, scripted

from chunky.errors import ConfigError
from chunky.models import get_model
from chunky.store import GENERATION_FAILED, JUDGE_ERROR, REJECTED, SCORED, RunStore
from chunky.surf.loop import Sweep, build_config, run_sweep
from chunky.surf.sampler import attribute_weights


def cfg(**kw):
    base = dict(runs=2, iterations=3, candidates=12, buffer=4, patience=0, gate="none", use_cache=False)
    base.update(kw)
    return build_config(rubric="code", target="mock", generator="mock", judge="mock", overrides=base)


def rows(out):
    with RunStore.open(out) as st:
        return st.candidates()


def test_every_iteration_scores_N_candidates_and_the_buffer_is_the_running_top_n(tmp_path):
    res = run_sweep(cfg(), tmp_path / "run")
    assert res.status == "done"
    with RunStore.open(tmp_path / "run") as st:
        for run_id in range(2):
            seen = []
            for t in range(3):
                cands = st.candidates(run_id=run_id, iteration=t)
                assert len(cands) == 12 and all(c.status == SCORED for c in cands)
                assert all(1 <= len(c.attributes) <= 5 for c in cands)
                # weights of iteration t are eq. 1 over the buffer after t-1 (empty at t = 0)
                prev = st.buffer(run_id, t - 1) if t else []
                assert st.weights(run_id, t) == pytest.approx(attribute_weights((b.score, b.attributes) for b in prev))
                seen += cands
                best = sorted(seen, key=lambda c: (-c.score, c.iteration, c.slot))[:4]
                assert [b.candidate_id for b in st.buffer(run_id, t)] == [c.id for c in best]
            assert [it.status for it in st.iterations(run_id)] == ["done"] * 3
        assert {r.status for r in st.runs()} == {"done"}
        meta = st.meta
        assert meta["models"] == {"target": "mock", "generator": "mock", "judge": "mock"}
        assert meta["rubric"]["name"] == "code" and meta["status"] == "done"
        assert set(meta["usage"]) == {"generator", "target", "judge"}
    exported = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(exported) == 72
    assert {"query", "response", "reward_score", "attributes", "iteration", "run_id", "reasoning"} <= set(exported[0])


def test_the_same_seed_gives_identical_results_and_another_seed_does_not(tmp_path):
    def key(out):
        return [(c.run_id, c.iteration, c.slot, c.attributes, c.query, c.response, c.score) for c in rows(out)]

    run_sweep(cfg(seed=11), tmp_path / "a")
    run_sweep(cfg(seed=11), tmp_path / "b")
    run_sweep(cfg(seed=12), tmp_path / "c")
    assert key(tmp_path / "a") == key(tmp_path / "b")
    assert key(tmp_path / "a") != key(tmp_path / "c")


def test_search_concentrates_on_buffer_attributes_over_iterations(tmp_path):
    run_sweep(cfg(runs=1, iterations=4, candidates=40, buffer=3), tmp_path / "run")
    with RunStore.open(tmp_path / "run") as st:
        buf_attrs = {a for b in st.buffer(0, 2) for a in b.attributes}
        last = st.candidates(run_id=0, iteration=3)
    share = sum(any(a in buf_attrs for a in c.attributes) for c in last) / len(last)
    assert share > 0.8  # most iteration-3 candidates reuse attributes of the buffer that preceded them


def test_judge_errors_are_recorded_and_kept_out_of_the_buffer(tmp_path):
    # the judge answers unparseable text for about a third of the queries
    def reply(r):
        q = r.hints["query"]
        return "no verdict" if len(q) % 3 == 0 else judge_json(len(q) % 97)

    judge, _ = scripted(reply)
    c = cfg(runs=1, iterations=2, candidates=15)
    sweep = Sweep(c, tmp_path / "run", models={"generator": get_model("mock", role="generator", use_cache=False),
                                              "target": get_model("mock", role="target", use_cache=False), "judge": judge})
    import asyncio

    asyncio.run(sweep.run())
    cands = rows(tmp_path / "run")
    errors = [x for x in cands if x.status == JUDGE_ERROR]
    assert errors and all(x.score is None and "unparseable" in x.error for x in errors)
    with RunStore.open(tmp_path / "run") as st:
        buffered = {b.candidate_id for t in range(2) for b in st.buffer(0, t)}
        assert buffered and buffered.isdisjoint({x.id for x in errors})
        assert st.status().errors == len(errors)
    exported = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(exported) == 30 - len(errors) and all(r["reward_score"] is not None for r in exported)


def test_unusable_generations_are_replaced_by_fresh_draws(tmp_path):
    import asyncio

    calls = {"n": 0}

    def gen(r):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            return json.dumps({"query": "I'm sorry, but I can't write that message."})
        return json.dumps({"query": "Could you explain tides to me? " + "; ".join(r.hints["attributes"])})

    generator, _ = scripted(gen, role="generator")
    c = cfg(runs=1, iterations=2, candidates=10)
    models = {"generator": generator, "target": get_model("mock", role="target", use_cache=False),
              "judge": get_model("mock", role="judge", use_cache=False)}
    asyncio.run(Sweep(c, tmp_path / "run", models=models).run())
    cands = rows(tmp_path / "run")
    rejected = [x for x in cands if x.status == REJECTED]
    assert rejected and all("refused" in x.error for x in rejected)
    by_slot = defaultdict(list)
    for x in cands:
        by_slot[(x.iteration, x.slot)].append(x)
    assert len(by_slot) == 20
    for attempts in by_slot.values():
        final = [a for a in attempts if a.status != REJECTED]
        assert len(final) == 1 and final[0].status == SCORED  # every slot ends scored
        assert [a.attempt for a in attempts] == list(range(len(attempts)))
        if len(attempts) > 1:
            assert attempts[0].attributes != attempts[-1].attributes  # a fresh draw, not a retry


def test_a_slot_that_never_gets_a_usable_query_is_recorded_and_the_run_goes_on(tmp_path):
    import asyncio

    generator, provider = scripted(lambda r: json.dumps({"query": ""}), role="generator")
    c = cfg(runs=1, iterations=1, candidates=3, max_generation_attempts=2)
    models = {"generator": generator, "target": get_model("mock", role="target", use_cache=False),
              "judge": get_model("mock", role="judge", use_cache=False)}
    asyncio.run(Sweep(c, tmp_path / "run", models=models).run())
    statuses = sorted(x.status for x in rows(tmp_path / "run"))
    assert statuses == [GENERATION_FAILED] * 3 + [REJECTED] * 3


def test_parallel_runs_share_one_concurrency_limit_per_role(tmp_path):
    import asyncio

    target, provider = scripted(lambda r: "Fine answer.", role="target", delay=0.01, max_concurrency=2)
    c = cfg(runs=3, iterations=1, candidates=6)
    models = {"generator": get_model("mock", role="generator", use_cache=False), "target": target,
              "judge": get_model("mock", role="judge", use_cache=False)}
    sweep = Sweep(c, tmp_path / "run", models=models)
    asyncio.run(sweep.run())
    assert provider.calls == 18
    assert provider.peak == 2  # three runs, one limit of two


def test_max_calls_stops_the_sweep_and_a_rerun_with_more_budget_finishes(tmp_path):
    out = tmp_path / "run"
    res = run_sweep(cfg(runs=1, iterations=3, candidates=10, max_calls=40, max_inflight=2), out)
    assert res.status == "budget"
    with RunStore.open(out) as st:
        spent, _ = st.spent_calls()
        # Calls are counted as they start, so the budget holds exactly; the calls of a slot cut short
        # are made (and cached) but belong to no committed candidate.
        made = sum(u["calls"] - u["cached_calls"] for u in st.get_meta("usage").values())
        assert made == 40 and 40 - 2 * 3 <= spent <= 40
        assert st.get_meta("status") == "budget"
        n_before = len(st.candidates())
    res = run_sweep(cfg(runs=1, iterations=3, candidates=10), out)
    assert res.status == "done"
    cands = rows(out)
    assert len(cands) == 30 > n_before
    assert len({(c.iteration, c.slot, c.attempt) for c in cands}) == 30  # nothing duplicated


def test_resuming_with_different_settings_is_refused(tmp_path):
    out = tmp_path / "run"
    run_sweep(cfg(runs=1, iterations=1, candidates=3), out)
    with pytest.raises(ConfigError, match=r"different candidates \(stored 3, now 4\)"):
        run_sweep(cfg(runs=1, iterations=1, candidates=4), out)
    with pytest.raises(ConfigError, match="different target.temperature"):
        run_sweep(build_config(rubric="code", target="mock", generator="mock", judge="mock",
                               overrides=dict(runs=1, iterations=1, candidates=3, buffer=4, patience=0, gate="none", use_cache=False),
                               role_overrides={"target": {"temperature": 0.2}}), out)
    # more iterations is an allowed change: the run is extended
    run_sweep(cfg(runs=1, iterations=2, candidates=3), out)
    assert len(rows(out)) == 6


def test_a_run_stops_early_when_the_buffer_stops_improving(tmp_path):
    import asyncio

    judge, _ = scripted(lambda r: judge_json(40))
    c = cfg(runs=1, iterations=10, candidates=4, patience=2)
    models = {"generator": get_model("mock", role="generator", use_cache=False),
              "target": get_model("mock", role="target", use_cache=False), "judge": judge}
    sweep = Sweep(c, tmp_path / "run", models=models)
    asyncio.run(sweep.run())
    assert sweep.progress[0].status == "converged"
    with RunStore.open(tmp_path / "run") as st:
        assert len(st.iterations(0)) == 3  # the buffer mean stalls at 40 from the first iteration on
        assert st.runs()[0].status == "converged"


def test_live_progress_counts_calls_tokens_and_violations_per_run(tmp_path):
    import asyncio

    sweep = Sweep(cfg(runs=2, iterations=2, candidates=5), tmp_path / "run")
    asyncio.run(sweep.run())
    assert {r: u["calls"] for r, u in sweep.usage.to_dict().items()} == {"generator": 20, "target": 20, "judge": 20}
    for p in sweep.progress:
        assert p.scored == 10 and p.calls == 30 and p.tokens > 0
        assert p.violations == sum(1 for c in rows(tmp_path / "run") if c.run_id == p.run_id and c.score > 50)
        assert p.status == "done"


def test_a_run_being_written_by_another_live_process_is_not_touched(tmp_path):
    import subprocess

    out = tmp_path / "run"
    run_sweep(cfg(runs=1, iterations=1, candidates=2), out)
    other = subprocess.Popen(["sleep", "30"])
    try:
        with RunStore.open(out) as st:
            st.set_meta_many({"status": "running", "pid": other.pid})
        with pytest.raises(ConfigError, match=f"another chunky process \\(pid {other.pid}\\)"):
            run_sweep(cfg(runs=1, iterations=1, candidates=2), out)
    finally:
        other.kill()
        other.wait()
    # once that process is gone (e.g. killed with -9), the same command resumes
    assert run_sweep(cfg(runs=1, iterations=1, candidates=2), out).status == "done"


def test_a_detector_can_be_the_whole_judge(tmp_path):
    c = build_config(rubric="code", target="mock:text=```python\nprint('hi')\n```", generator="mock",
                     judge="detector:code", overrides=dict(runs=1, iterations=1, candidates=3, patience=0, use_cache=False))
    res = run_sweep(c, tmp_path / "run")
    assert res.usage.keys() == {"generator", "target"}  # no judge model exists
    assert [(x.score, x.reasoning.startswith("detector code")) for x in rows(tmp_path / "run")] == [(100.0, True)] * 3
