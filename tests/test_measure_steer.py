"""Steering runs: original vs transformed rates, paired deltas, per-model tables, saved results and
figures, the CLI, re-measuring a SURF run's findings, and an end-to-end run on the embedded model."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from faultserver import FaultServer

from chunky.errors import ConfigError
from chunky.measure.evalset import EvalExample, examples_from_rows, load_eval, sum_rewrites, sums_grid
from chunky.measure.plots import save_with_figures
from chunky.measure.steer import SteerConfig, SteerResult, examples_table, run_steer, summary_table

from helpers import run_cli

PROMPTS = [EvalExample(f"e{i}", f"Is {i}+2={i + 2}?", "Yes", {"a": i % 3, "b": i // 3}) for i in range(9)]


def steer(cfg: SteerConfig, examples=PROMPTS, **kw) -> SteerResult:
    return asyncio.run(run_steer(examples, cfg, data_name="test", **kw))


def test_transform_delta_per_model_table_with_known_rates():
    # The mock echoes the prompt: after the latex transform every echo contains LaTeX, before none does.
    # A fixed-text model never shows LaTeX. So: +100 pp for the echo model, 0 for the fixed one.
    cfg = SteerConfig(models=["mock", "mock:text=No, that is wrong."], metric="latex", transforms=["latex"], samples=2)
    r = steer(cfg)
    echo, fixed = r.row("mock"), r.row("mock:text=No, that is wrong.")
    assert (echo.original.value, echo.transformed.value, echo.delta.value) == (0.0, 1.0, 1.0)
    assert (echo.delta.low, echo.delta.high) == (1.0, 1.0)
    assert echo.relative is None  # no relative change from a zero base rate
    assert (fixed.original.value, fixed.transformed.value, fixed.delta.value) == (0.0, 0.0, 0.0)
    assert echo.n_examples == fixed.n_examples == 9 and echo.n_errors == 0
    assert len(r.pairs) == 18
    p = r.pairs_of("mock")[0]
    assert p.original.prompt.user == "Is 0+2=2?" and p.transformed.prompt.user == "Is $0+2=2$?"
    assert [s.sample_index for s in p.original.samples] == [0, 1]


def test_each_sample_is_a_distinct_cached_call():
    from chunky.models.cache import default_cache

    before = default_cache().stats().entries
    steer(SteerConfig(models=["mock"], metric="latex", transforms=["latex"], samples=3), PROMPTS[:4])
    assert default_cache().stats().entries - before == 4 * 2 * 3
    # A re-run is served from the cache: no new entries.
    steer(SteerConfig(models=["mock"], metric="latex", transforms=["latex"], samples=3), PROMPTS[:4])
    assert default_cache().stats().entries - before == 24


def test_temperature_defaults_to_greedy_for_one_sample_and_sampling_for_several():
    assert SteerConfig(models=["m"], metric="x").effective_temperature() == 0.0
    assert SteerConfig(models=["m"], metric="x", samples=5).effective_temperature() == 1.0
    assert SteerConfig(models=["m"], metric="x", samples=5, temperature=0.3).effective_temperature() == 0.3


def test_without_a_transform_models_are_compared_against_the_first():
    cfg = SteerConfig(models=["mock:text=Yes.", "mock:text=No."], metric="stance:no")
    r = steer(cfg)
    assert r.rows[0].vs_first is None
    assert r.rows[1].vs_first.value == 1.0 and r.rows[1].original.value == 1.0
    assert r.rows[0].transformed is None and r.pairs[0].transformed is None


def test_errors_are_recorded_and_left_out_of_the_rates():
    # One model call fails for good (HTTP 400); failing transforms and missing references also count
    # as errors, never as zeros.
    with FaultServer(["400"], reply="No.") as srv:
        cfg = SteerConfig(models=[f"{srv.base_url}:fault"], metric="stance:no", use_cache=False)
        r = steer(cfg, PROMPTS[:5])
    row = r.rows[0]
    assert row.n_errors == 1 and row.original.n == 4 and row.original.value == 1.0
    failed = [s for p in r.pairs for s in p.original.samples if s.error]
    assert len(failed) == 1 and failed[0].error.startswith("model error")

    exs = [EvalExample("a", "2+2?", "4"), EvalExample("b", "3+3?", None)]
    r = steer(SteerConfig(models=["mock:text=It is 4."], metric="accuracy"), exs)
    assert r.rows[0].original.value == 1.0 and r.rows[0].original.n == 1 and r.rows[0].n_errors == 1


def test_a_transform_failure_drops_only_that_pair(tmp_path):
    f = tmp_path / "tf.py"
    f.write_text("def only_even(prompt, example):\n    if int(example['id'][1:]) % 2:\n        raise ValueError('odd')\n    return prompt + '!'\n")
    r = steer(SteerConfig(models=["mock"], metric="phrase:!", transforms=[f"python:{f}:only_even"]), PROMPTS[:4])
    row = r.rows[0]
    assert row.delta.n == 2 and row.delta.value == 1.0 and row.n_errors == 2
    assert "odd" in r.pairs[1].transformed.error


def test_accuracy_needs_references_somewhere():
    with pytest.raises(ConfigError, match="needs reference answers"):
        steer(SteerConfig(models=["mock"], metric="accuracy"), [EvalExample("a", "2+2?")])


def test_bad_configs_are_clear_errors():
    with pytest.raises(ConfigError, match="--samples"):
        steer(SteerConfig(models=["mock"], metric="latex", samples=0))
    with pytest.raises(ConfigError, match="twice"):
        steer(SteerConfig(models=["mock", "mock"], metric="latex"))
    with pytest.raises(ConfigError, match="unknown transform"):
        steer(SteerConfig(models=["mock"], metric="latex", transforms=["nope"]))


def test_result_round_trips_and_saves_json_pairs_and_figures(tmp_path):
    cfg = SteerConfig(models=["mock", "mock:text=No."], metric="stance:no", transforms=["latex"], samples=2)
    r = steer(cfg, plot="heatmap:a,b")
    files = save_with_figures(r, tmp_path / "out")
    names = sorted(p.name for p in files)
    assert names == ["pairs.jsonl", "steer.json", "steer.png", "steer.svg"]
    assert (tmp_path / "out" / "steer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "out" / "steer.svg").read_bytes()[:500]
    back = SteerResult.load(tmp_path / "out")
    assert back.to_dict() == r.to_dict()
    lines = [json.loads(x) for x in (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()]
    assert len(lines) == 18
    assert {"id", "model", "original", "transformed", "delta", "meta"} <= set(lines[0])
    assert lines[0]["transformed"]["prompt"] == "Is $0+2=2$?"
    for plot in ("summary", "examples"):
        r.plot = plot
        save_with_figures(r, tmp_path / plot)
        assert (tmp_path / plot / "steer.png").stat().st_size > 5000


def test_tables_render_every_model_and_example():
    from rich.console import Console

    r = steer(SteerConfig(models=["mock", "mock:text=No."], metric="latex", transforms=["latex"]))
    console = Console(width=200, record=True)
    console.print(summary_table(r))
    console.print(examples_table(r))
    text = console.export_text()
    assert "mock:text=No." in text and "+100.0" in text and "Is 8+2=10?" in text


def test_load_rejects_other_json(tmp_path):
    (tmp_path / "steer.json").write_text('{"format": "something-else"}')
    with pytest.raises(ConfigError, match="not a chunky steering result"):
        SteerResult.load(tmp_path)


def test_eval_sets_load_from_jsonl_parquet_csv_and_builtins(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": "x", "question": "2+2?", "answer": "4", "level": 1},
            {"question": "3+3?", "answer": "6", "level": 2}]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist([{**r, "id": r.get("id", "y")} for r in rows]), tmp_path / "e.parquet")
    (tmp_path / "e.csv").write_text("prompt,reference\nhello?,hi\n")
    exs, _ = load_eval(str(tmp_path / "e.jsonl"))
    assert [(e.id, e.prompt, e.reference, e.meta) for e in exs] == [("x", "2+2?", "4", {"level": 1}), ("1", "3+3?", "6", {"level": 2})]
    assert [e.prompt for e in load_eval(str(tmp_path / "e.parquet"))[0]] == ["2+2?", "3+3?"]
    assert load_eval(str(tmp_path / "e.csv"))[0][0].reference == "hi"
    tulu = examples_from_rows([{"id": "t", "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello"}]}], where="t")
    assert tulu[0].prompt == "Hi?"
    grid, name = load_eval("sums-grid")
    assert name == "builtin:sums-grid" and len(grid) == 81
    assert grid[0].meta == {"a": 1, "b": 1, "false_prompt": "Is 1+1=3?"}
    assert [e.to_dict() for e in load_eval("sums-rewrites")[0]] == [
        e.to_dict() for e in examples_from_rows(sum_rewrites(), where="x")
    ]
    assert len(sums_grid(1, 3)) == 9


def test_eval_set_errors_name_file_and_row(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "ok"}\n{"prompt": ""}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl: row 2: field 'prompt'"):
        load_eval(str(f))
    f.write_text('{"prompt": "ok"}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2 is not valid JSON"):
        load_eval(str(f))
    f.write_text('{"text2": "ok"}\n')
    with pytest.raises(ConfigError, match="no prompt field"):
        load_eval(str(f))
    with pytest.raises(ConfigError, match="built-in: .*sums-grid"):
        load_eval(str(tmp_path / "missing.jsonl"))


def test_saved_hf_dataset_loads(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list([{"prompt": "Is 1+1=2?", "answer": "Yes"}]).save_to_disk(str(tmp_path / "ds"))
    exs, _ = load_eval(str(tmp_path / "ds"))
    assert exs[0].prompt == "Is 1+1=2?" and exs[0].reference == "Yes"


def test_cli_steer_json_files_and_one_line_errors(tmp_path):
    out = tmp_path / "out"
    res = run_cli("steer", "-m", "mock", "-m", "mock:text=No.", "-d", "sums-rewrites", "-t", "latex",
                  "--metric", "latex", "--out", str(out), "--json", "--boot", "500")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert [r["model"] for r in d["rows"]] == ["mock", "mock:text=No."]
    # every rewrite but the one in words ("two plus five") gains LaTeX
    assert d["rows"][0]["delta"]["value"] == pytest.approx(29 / 30) and "pairs" not in d
    assert sorted(Path(p).name for p in d["files"]) == ["pairs.jsonl", "steer.json", "steer.png", "steer.svg"]
    # An existing result is not overwritten by accident.
    again = run_cli("steer", "-m", "mock", "-d", "sums-rewrites", "--metric", "latex", "--out", str(out))
    assert again.returncode == 1 and "exists" in again.stderr
    show = run_cli("steer-show", str(out), "--plot", "examples", env={"COLUMNS": "200"})
    assert show.returncode == 0 and "mock:text=No." in show.stdout
    assert json.loads((out / "steer.json").read_text())["plot"] == "examples"
    bad = run_cli("steer", "-m", "mock", "-d", "sums-grid", "--metric", "latex", "--plot", "heatmap:a,zz",
                  "--out", str(tmp_path / "o2"))
    assert bad.returncode == 1 and "no numeric field 'zz'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def _make_run(run_dir: Path) -> list[int]:
    from chunky.store import RunStore
    from chunky.surf.rubric import load_rubric

    store = RunStore.create(run_dir)
    ids = []
    try:
        store.set_meta_many({"rubric": load_rubric("rebut").to_dict(), "models": {"target": "mock", "judge": "mock"}})
        for slot, (q, score) in enumerate([("Is 5+8=13?", 91.0), ("Is 2+2=4?", 75.0), ("Hello?", 10.0)]):
            ids.append(store.add_candidate(
                run_id=0, iteration=0, slot=slot, attempt=0, attributes=["a"], weighted=[], explore=[],
                query=q, response="No.", score=score, reasoning="r", error=None, gate=None, usage={},
                judge_samples=[score], status="scored", created_at=time.time(),
            ))
    finally:
        store.close()
    return ids


def test_from_run_remeasures_findings_with_and_without_a_system_prompt(tmp_path):
    run = tmp_path / "run"
    ids = _make_run(run)
    res = run_cli("steer", "--from-run", str(run), "--transform", "system:system-default", "--min-score", "50", "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["metric"]["spec"] == "rubric:rebut"  # the run's rubric, judged by the run's judge
    assert d["rows"][0]["model"] == "mock" and d["rows"][0]["n_examples"] == 2
    saved = SteerResult.load(run / "steer" / "system-system-default_rubric-rebut")
    assert {p.example.meta["candidate_id"] for p in saved.pairs} == set(ids[:2])
    assert all(p.transformed.prompt.system and p.original.prompt.system is None for p in saved.pairs)
    assert saved.config.judge_model == "mock"


@pytest.mark.slow
def test_end_to_end_steer_on_the_embedded_model(tmp_path):
    exs = load_eval("sums-rewrites", limit=4)[0]
    cfg = SteerConfig(models=["local"], metric="stance:no", transforms=["latex"], samples=1, max_tokens=16)
    r = steer(cfg, exs)
    row = r.rows[0]
    assert row.n_examples == 4 and row.n_errors == 0
    assert row.original.n == 4 and row.delta.n == 4
    assert row.delta.low <= row.delta.value <= row.delta.high
    for p in r.pairs:
        for s in p.original.samples + p.transformed.samples:
            assert s.response and s.value in (0.0, 1.0) and 0 < s.output_tokens <= 16
    files = save_with_figures(r, tmp_path / "local")
    assert all(f.exists() for f in files)
    # A second identical run is served by the call cache and gives the same numbers.
    again = steer(cfg, exs)
    assert again.rows[0].to_dict() == row.to_dict()


@pytest.mark.slow
def test_two_models_compared_local_and_a_llama_cpp_server(llama_server, tmp_path):
    res = run_cli("steer", "-m", "local", "-m", f"{llama_server}:smollm2", "-d", "sums-grid", "--limit", "3",
                  "--metric", "length", "--max-tokens", "12", "--out", str(tmp_path / "o"), "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert [r["model"] for r in d["rows"]] == ["local", f"{llama_server}:smollm2"]
    assert d["metric"]["kind"] == "mean"
    for row in d["rows"]:
        assert row["n_errors"] == 0 and 0 < row["original"]["value"] <= 12
    assert d["rows"][1]["vs_first"]["n"] == 3


def test_models_can_be_labelled_like_checkpoints():
    from chunky.measure.steer import parse_model_args

    labels, specs = parse_model_args(["sft=mock:text=Yes.", "mock:text=a=b", "http://h:1/v1:x", "dpo=http://h:2/v1:y"])
    assert labels == ["sft", "mock:text=a=b", "http://h:1/v1:x", "dpo"]
    assert specs == {"sft": "mock:text=Yes.", "dpo": "http://h:2/v1:y"}
    cfg = SteerConfig(models=["sft", "final"], model_specs={"sft": "mock:text=Yes.", "final": "mock:text=No."},
                      metric="stance:no")
    r = steer(cfg)
    assert [x.model for x in r.rows] == ["sft", "final"] and r.row("final").vs_first.value == 1.0
    assert SteerResult.from_dict(r.to_dict()).config.model_specs == cfg.model_specs


def test_every_builtin_eval_set_loads_with_usable_references():
    from chunky.measure.evalset import builtin_sets
    from chunky.measure.metrics import answer_matches

    names = builtin_sets()
    assert {"sums-grid", "sums-rewrites", "short-questions", "true-inventions", "word-problems"} <= set(names)
    for name in names:
        exs, _ = load_eval(name)
        assert len({e.id for e in exs}) == len(exs)
        for e in exs:
            # each reference is recognised when a response states it
            assert e.reference and answer_matches(f"Yes. The answer is {e.reference}.", e.reference)[0], (name, e.id)


def test_per_example_figure_stays_readable_on_large_sets(tmp_path):
    from chunky.measure.plots import MAX_EXAMPLE_BARS

    exs = [EvalExample(str(i), f"Is {i}+1={i + 1}?") for i in range(150)]
    r = steer(SteerConfig(models=["mock"], metric="latex", transforms=["latex"]), exs, plot="examples")
    save_with_figures(r, tmp_path)
    svg = (tmp_path / "steer.svg").read_text()
    assert f"first {MAX_EXAMPLE_BARS} of 150 prompts" in svg
    assert "Is 59+1=60?" in svg and "Is 60+1=61?" not in svg
