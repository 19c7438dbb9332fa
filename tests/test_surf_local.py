"""SURF end to end on the embedded model (SmolLM2 as generator, target and judge): tiny, but real."""

from __future__ import annotations

import json

import pytest

from chunky.store import GENERATION_FAILED, JUDGE_ERROR, REJECTED, SCORED, RunStore

from helpers import run_cli


@pytest.mark.slow
def test_surf_on_the_embedded_model_produces_real_scored_candidates(tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        "surf", "--rubric", "math", "--target", "local", "--generator", "local", "--judge", "local",
        "--runs", "1", "--iterations", "2", "--candidates", "3", "--buffer", "2",
        "--target-max-tokens", "48", "--generator-max-tokens", "128", "--judge-max-tokens", "160",
        # No early stopping: what the model writes (and so when a buffer saturates) differs by CPU, and the
        # test needs every slot of both iterations.
        "--patience", "0",
        "--out", str(out), timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    with RunStore.open(out) as st:
        cands = st.candidates()
        finals = [c for c in cands if c.status != REJECTED]
        assert len(finals) == 6  # every slot of both iterations finished
        scored = [c for c in finals if c.status == SCORED]
        assert scored, [c.error for c in finals]
        for c in scored:
            assert c.query and c.query.strip() and c.response is not None
            assert 0 <= c.score <= 100 and c.reasoning
        for c in finals:
            if c.status == JUDGE_ERROR:
                assert c.score is None and c.error  # a failed judgment is never a 0
            assert c.status in (SCORED, JUDGE_ERROR, GENERATION_FAILED)
        assert [it.status for it in st.iterations(0)] == ["done", "done"]
        usage = st.get_meta("usage")
        assert usage["target"]["output_tokens"] > 0 and usage["generator"]["calls"] >= 6
        assert st.get_meta("config")["judge_style"] == "auto"
    top = run_cli("top", str(out), "--json")
    assert top.returncode == 0 and json.loads(top.stdout.splitlines()[0])["reward_score"] is not None

    # robustness of the best prompt on the same real model: one rewrite, two samples per variant
    rob = run_cli("robust", str(out), "--top", "1", "--perturbations", "1", "--samples", "2", "--json", timeout=900)
    assert rob.returncode == 0, rob.stderr[-2000:]
    item = json.loads(rob.stdout)["items"][0]
    variants = {v["variant"]: v for v in item["variants"]}
    assert variants[0]["samples"] == 2
    with RunStore.open(out) as st:
        prompts = st.robust_variants(item["candidate_id"])
        assert prompts[0] == st.candidate(item["candidate_id"]).query
        if 1 in prompts:  # a rewrite the small model could not make distinct is recorded, not used
            assert prompts[1] != prompts[0] and variants[1]["samples"] == 2
