"""Loading training mixes: every format and schema, multi-turn handling, bad rows, limit and sampling."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from chunky.errors import ConfigError
from chunky.turf.load import LoadReport, load_examples

DATA = Path(__file__).parent / "fixtures" / "data"


def test_tulu_jsonl_first_turn_and_bad_rows_are_counted_not_fatal():
    report = LoadReport("tulu")
    exs = load_examples(DATA / "tulu.jsonl", report=report)
    assert report.rows_read == 26
    # 21 single-pair rows + the multi-turn row (first pair only)
    assert len(exs) == 22
    assert report.rows_skipped == 4
    assert report.skipped_reasons == {
        "no_user_assistant_pair": 1,
        "empty_text": 1,
        "unknown_schema": 1,
        "invalid_json": 1,
    }
    assert report.skipped_rows["invalid_json"] == [26]
    assert "invalid_json (rows 26)" in report.describe_skips()
    first = exs[0]
    assert (first.id, first.source, first.turn) == ("fx-000", "codeset", 0)
    assert first.query.startswith("Elucidate the concept of recursion")
    multi = [e for e in exs if e.id == "fx-multi"]
    assert [(e.turn, e.query) for e in multi] == [(0, "Name a primary colour.")]


def test_turns_all_indexes_every_user_assistant_pair():
    exs = load_examples(DATA / "tulu.jsonl", turns="all")
    multi = [e for e in exs if e.id == "fx-multi"]
    assert [(e.turn, e.query, e.response) for e in multi] == [
        (0, "Name a primary colour.", "Red is a primary colour."),
        (1, "And another one?", "Blue is another primary colour."),
    ]


def test_gzip_jsonl_reads_the_same(tmp_path):
    gz = tmp_path / "tulu.jsonl.gz"
    with open(DATA / "tulu.jsonl", "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert [e.query for e in load_examples(gz)] == [e.query for e in load_examples(DATA / "tulu.jsonl")]


def test_sharegpt_json_list_with_system_turns():
    report = LoadReport("sg")
    exs = load_examples(DATA / "sharegpt.json", turns="all", report=report)
    assert [(e.id, e.turn, e.query, e.response) for e in exs] == [
        ("sg-1", 0, "Write a haiku about rain.", "Soft rain on the roof\nwhispers to the sleeping town\nmorning wakes in grey"),
        ("sg-2", 0, "Capital of France?", "Paris."),
        ("sg-2", 1, "And of Italy?", "Rome."),
    ]
    assert report.skipped_reasons == {"no_user_assistant_pair": 1}
    # No source field: the file's stem names the chunk.
    assert {e.source for e in exs} == {"sharegpt"}


def test_alpaca_csv_with_source_field_and_input_appended():
    exs = load_examples(DATA / "alpaca.csv", source_field="dataset")
    assert exs[0].query == "Translate to French.\n\nGood morning"
    assert exs[1].query == "List three fruits."
    assert exs[1].response == "1. Apple\n2. Banana\n3. Cherry"
    assert {e.source for e in exs} == {"alpaca_fx"}
    assert exs[0].id == "alpaca:1"


def test_prompt_response_parquet_and_a_missing_source_field_is_a_counted_skip():
    exs = load_examples(DATA / "prompt_response.parquet", source_field="origin")
    assert [e.source for e in exs] == ["physics_fx", "math_fx", "words_fx"]
    report = LoadReport("p")
    assert load_examples(DATA / "prompt_response.parquet", source_field="nope", report=report) == []
    assert report.skipped_reasons == {"missing_source_field_nope": 3}


def test_hugging_face_local_repo_streams_and_saved_dataset_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    exs = load_examples(f"hf:{DATA / 'hf_repo'}")
    assert [e.id for e in exs] == ["hf-0", "hf-1", "hf-2"]
    assert exs[2].response.startswith("No, the Earth")
    ds = datasets.Dataset.from_list(
        [{"prompt": "Ping?", "response": "Pong.", "source": "saved"}, {"prompt": "Hi", "response": "Hello", "source": "saved"}]
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    exs = load_examples(tmp_path / "saved")
    assert [(e.query, e.response, e.source) for e in exs] == [("Ping?", "Pong.", "saved"), ("Hi", "Hello", "saved")]


def test_limit_and_seeded_sample_keep_file_order():
    all_ = load_examples(DATA / "tulu.jsonl")
    assert load_examples(DATA / "tulu.jsonl", limit=3) == all_[:3]
    s1 = load_examples(DATA / "tulu.jsonl", sample=5, seed=7)
    s2 = load_examples(DATA / "tulu.jsonl", sample=5, seed=7)
    s3 = load_examples(DATA / "tulu.jsonl", sample=5, seed=8)
    assert s1 == s2 and len(s1) == 5
    assert s1 != s3
    positions = [all_.index(e) for e in s1]
    assert positions == sorted(positions)


def test_missing_file_and_unknown_format_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_examples(tmp_path / "nope.jsonl")
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(ConfigError, match="unknown data format"):
        load_examples(odd)
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON \(line 1"):
        load_examples(bad)


def test_reads_the_shared_sft_mix(shared_mix):
    report = LoadReport(str(shared_mix))
    exs = load_examples(shared_mix, limit=500, report=report)
    assert len(exs) == 500
    assert report.rows_read == 500 and report.rows_skipped == 0
    assert all(e.query.strip() and e.response.strip() for e in exs)
    assert all(e.id and e.source for e in exs)
