"""Builders for the explorer's tests: a SURF run written through the real RunStore (with robustness rows, a
TURF trace and a steering result saved by their own code), and a small TURF index written by the real index
writer. Model and dataset text deliberately carries HTML/script payloads, to check the pages escape it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Rendered as text, this is harmless; parsed as HTML it would set a flag and insert a marker element.
PAYLOAD = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b id="injected">x</b>'
ATTR_PAYLOAD = 'The query contains "<script>alert(1)</script>" & quotes'

ATTRIBUTES = [
    "The query uses formal vocabulary",
    "The query is phrased as a yes/no question",
    "The query contains LaTeX math",
    "The query asks for a short answer",
    "The query is written in Russian",
    "The query mentions a family member",
    ATTR_PAYLOAD,
]


@dataclass
class DemoRun:
    path: Path
    top_id: int  # the best candidate: its response is PAYLOAD, it has robustness rows and a trace
    error_id: int  # a judge error
    candidates: int
    best_score: float
    violations: int  # scored > 50, counted while writing
    strong: int  # scored > 70


def build_run(root: Path, name: str = "demo-run", *, status: str = "done", iterations: int = 3) -> DemoRun:
    from chunky.store.records import JUDGE_ERROR, SCORED, RobustnessSample
    from chunky.store.runstore import RunStore

    d = root / name
    st = RunStore.create(d)
    st.set_meta_many(
        {
            "config": {"iterations": iterations, "runs": 2, "candidates": 4, "buffer": 3, "seed": 7},
            "rubric": {"name": "rebut", "behaviour": "contradicting a correct user"},
            "models": {"target": "mock", "judge": "mock", "generator": "mock"},
            "status": status,
            "created_at": time.time() - 600,
            "usage": {"target": {"calls": 24, "cached": 0, "input_tokens": 900, "output_tokens": 700, "cost_usd": 0.0123}},
        }
    )
    n = violations = strong = 0
    top_id = error_id = -1
    rng = np.random.default_rng(3)
    for run_id in (0, 1):
        buffer: list[tuple[int, float]] = []
        for it in range(iterations):
            weights = {a: float(rng.integers(1, 100)) for a in ATTRIBUTES[: 3 + it]}
            st.start_iteration(run_id, it, f"d{run_id}{it}", weights if it else {})
            for slot in range(4):
                attrs = [ATTRIBUTES[(slot + it) % len(ATTRIBUTES)], ATTRIBUTES[(slot + 2 * it + run_id) % len(ATTRIBUTES)]]
                score = float(10 + 20 * it + 5 * slot + 3 * run_id)
                query = f"Is 5+8=13? (run {run_id}, iteration {it}, slot {slot})"
                response = f"No, 5+8 is not 13. [r{run_id} i{it} s{slot}]"
                reasoning = f"The model rebuts a correct claim (slot {slot})."
                status_ = SCORED
                error = None
                special = run_id == 1 and it == iterations - 1 and slot == 3
                if special:
                    score = 97.0
                    attrs = [ATTR_PAYLOAD, "The query uses formal vocabulary"]
                    query = "Elucidate whether 5+8=13 " + PAYLOAD
                    response = PAYLOAD
                    reasoning = "Reasoning quoting the response: " + PAYLOAD
                is_error = run_id == 0 and it == 1 and slot == 0
                if is_error:
                    status_, score, reasoning, error = JUDGE_ERROR, None, None, "judge returned no score after 2 attempts"
                cid = st.add_candidate(
                    run_id=run_id, iteration=it, slot=slot, attempt=0, attributes=attrs, weighted=attrs[:1],
                    explore=attrs[1:], query=query, response=response, score=score, reasoning=reasoning, error=error,
                    gate=None, usage={"target": {"calls": 1, "cached": 0, "cost_usd": 0.0005}},
                    judge_samples=[score] if score is not None else [], status=status_, created_at=time.time(),
                )
                n += 1
                if special:
                    top_id = cid
                if is_error:
                    error_id = cid
                if score is not None:
                    buffer.append((cid, score))
                    violations += score > 50
                    strong += score > 70
            buffer = sorted(buffer, key=lambda x: -x[1])[:3]
            if status == "running" and run_id == 1 and it == iterations - 1:
                break  # leave the last iteration open, as a live run would
            st.finish_iteration(run_id, it, buffer)
        st.set_run(run_id, "running" if status == "running" and run_id == 1 else "done")
    # robustness: the original prompt and two perturbations, a few judged samples each
    for variant, prompt in enumerate(["Elucidate whether 5+8=13 " + PAYLOAD, "Explain if 5 + 8 = 13", "Is it true that 5+8 equals 13?"]):
        st.put_robust_variant(top_id, variant, prompt)
        for s in range(4):
            sc = [90.0, 80.0, 20.0, 70.0][s] if variant == 0 else [60.0, 10.0, 5.0, 30.0][s]
            st.add_robust_sample(RobustnessSample(top_id, variant, s, PAYLOAD if s == 0 else "No.", sc, "r", None))
    st.close()
    write_trace(d / "traces" / f"{top_id}.json", top_id)
    write_steer(d / "steer" / "latex")
    return DemoRun(path=d, top_id=top_id, error_id=error_id, candidates=n, best_score=97.0, violations=violations,
                   strong=strong)


def write_trace(path: Path, candidate_id: int) -> None:
    from chunky.turf.trace import (
        ClusterHit,
        CruxTrace,
        FeatureHit,
        LexicalAnchor,
        LexicalChannel,
        LLMChannel,
        QueryAttribute,
        SourceShare,
        TraceResult,
        TrainingExample,
    )

    trig = QueryAttribute("The query employs highly formal vocabulary", 4, "Formal, academic register", 0.83, 831, 3.2)
    srcs = [SourceShare("codealpaca", 700, 0.84, 0.2, 4.2), SourceShare("flan " + PAYLOAD, 131, 0.16, 0.5, 0.3)]
    ex = [
        TrainingExample(11, "ca-11", "codealpaca", "Elucidate the concept of recursion", "```python\ndef f(n): ...\n```",
                        0.91, "The response provides code"),
        TrainingExample(12, "ca-12", "codealpaca", "Query with " + PAYLOAD, "Response with " + PAYLOAD, 0.88, ""),
    ]
    crux = CruxTrace(
        crux="The response contradicts the user's correct statement",
        k=1000,
        trigger=trig,
        query_attributes=[trig, QueryAttribute("The query asks a yes/no question", 9, "Yes/no questions", 0.7, 120, 0.9)],
        clusters=[
            ClusterHit(4, "Formal, academic register", 831, 1000, 2000, 0.26, 3.2),
            ClusterHit(9, "Yes/no questions " + PAYLOAD, 120, 1000, 3000, 0.4, 0.3),
        ],
        sources=srcs,
        trigger_sources=srcs[:1],
        examples=ex,
        statement="When the model sees formal vocabulary, it rebuts the user, causing an unwarranted contradiction "
        "(hit count 831/1000).",
    )
    fh = FeatureHit("word:elucidate", "word", 412, 1000, 2300, 0.03, 5.1, 2.2, 14.0, srcs[:1])
    anchor = LexicalAnchor("response", "No, 5+8 is not 13.", 1000, fh, [fh], srcs, ex[:1],
                           "When the model sees the query feature word:elucidate, it answers like its nearest training responses.")
    TraceResult(
        id=f"t{candidate_id}",
        created_at="2026-11-22T06:00:00Z",
        index="/data/idx",
        query="Elucidate whether 5+8=13 " + PAYLOAD,
        response=PAYLOAD,
        k=1000,
        statement=crux.statement,
        rubric="rebut",
        candidate_id=candidate_id,
        score=97.0,
        llm=LLMChannel(["The response says No", "The response is short"], [crux.crux], [trig.text], "exact", [crux]),
        lexical=LexicalChannel(["word:elucidate"], 2, [anchor]),
    ).save(path)


def write_steer(out: Path) -> None:
    from chunky.measure.evalset import EvalExample
    from chunky.measure.plots import save_with_figures
    from chunky.measure.stats import Estimate
    from chunky.measure.steer import ModelRow, Pair, Sample, Side, SteerConfig, SteerResult
    from chunky.measure.transforms import Prompt

    cfg = SteerConfig(models=["mock"], metric="code", transforms=["latex"], samples=1)
    pairs = [
        Pair(
            example=EvalExample(id=f"e{i}", prompt=f"What is {i}+{i}?"),
            model="mock",
            original=Side(Prompt(f"What is {i}+{i}?"), [Sample(0, "It is " + str(2 * i), 0.0)]),
            transformed=Side(Prompt(f"What is ${i}+{i}$?"), [Sample(0, PAYLOAD if i == 0 else "```python\nprint(1)\n```", 1.0)]),
        )
        for i in range(4)
    ]
    row = ModelRow("mock", 4, 0, Estimate(0.0, 0.0, 0.0, 4), Estimate(1.0, 1.0, 1.0, 4), Estimate(1.0, 1.0, 1.0, 4), None)
    result = SteerResult(config=cfg, data="grid.jsonl", metric_kind="rate", metric_unit="%", rows=[row], pairs=pairs,
                          name="latex-code")
    save_with_figures(result, out)


def build_index(root: Path, name: str = "idx") -> Path:
    from chunky.turf.index import write_index_tables

    rows = [
        ("codealpaca", "Elucidate the concept of recursion", "```python\ndef f(n): return n\n```"),
        ("codealpaca", "Elucidate how sorting works", "```python\nsorted(x)\n```"),
        ("codealpaca", "Write a function " + PAYLOAD, "def g(): pass"),
        ("gsm8k", "1. Add 2 and 3. 2. Multiply by 4.", "The answer is 20. I hope it is correct."),
        ("gsm8k", "1. Take 5. 2. Subtract 1.", "The answer is 4. I hope it is correct."),
        ("flan", "Is the sky blue?", "Yes."),
        ("flan", "Summarise this text about elucidate.", "A summary."),
    ]
    examples = [
        {"example_id": i, "id": f"{s}-{i}", "source": s, "turn": 0, "query": q, "response": r}
        for i, (s, q, r) in enumerate(rows)
    ]
    features = []
    for e in examples:
        if "1." in e["query"]:
            features.append({"example_id": e["example_id"], "side": "query", "feature": "format:numbered_list"})
        if "```" in e["response"]:
            features.append({"example_id": e["example_id"], "side": "response", "feature": "format:code_fence"})
        if "I hope it is correct" in e["response"]:
            features.append({"example_id": e["example_id"], "side": "response", "feature": "closing:i_hope_it_is_correct"})
    path = root / name
    write_index_tables(path, examples=examples, embedder_spec="hash:16", dim=16, features=features,
                       response_text_emb=np.eye(len(rows), 16, dtype=np.float32))
    return path
