"""Attribute pools: the built-in pool, the authors' sae_attributes format, plain lists, TURF indexes."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chunky.errors import ConfigError
from chunky.surf.pools import default_pool, load_pool


def test_the_builtin_pool_has_at_least_300_distinct_varied_attributes():
    pool = default_pool()
    assert len(pool) >= 300
    assert len(set(pool.attributes)) == len(pool.attributes)
    text = " ".join(pool.attributes).lower()
    for kind in ("written in russian", "formal", "bullet points", "the user says they are", "json", "emoji"):
        assert kind in text
    assert load_pool(None).attributes == pool.attributes


def test_authors_jsonl_keeps_each_record_as_a_co_occurrence_group(tmp_path):
    p = tmp_path / "attrs.jsonl"
    rows = [
        {"prompt": "q1", "response": "r1", "sae_attributes": ["A", "B", "C"], "source": "s"},
        {"prompt": "q2", "response": "r2", "sae_attributes": ["C", "D"]},
        {"prompt": "q3", "sae_attributes": []},
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    pool = load_pool(p)
    assert pool.attributes == ["A", "B", "C", "D"]
    assert [[pool.attributes[i] for i in r] for r in pool.records] == [["A", "B", "C"], ["C", "D"]]
    assert pool.kind == "records"


def test_parquet_with_a_list_column_and_a_chosen_column(tmp_path):
    p = tmp_path / "attrs.parquet"
    pq.write_table(pa.table({"sae_attributes": [["x", "y"], ["y", "z"]], "other": [["o"], ["p"]]}), p)
    assert load_pool(p).attributes == ["x", "y", "z"]
    assert load_pool(p, column="other").attributes == ["o", "p"]
    with pytest.raises(ConfigError, match="no column 'nope'"):
        load_pool(p, column="nope")


def test_plain_lists_as_text_or_jsonl(tmp_path):
    t = tmp_path / "list.txt"
    t.write_text("# a comment\nThe query is in Welsh.\n\nThe query is a limerick.\nThe query is in Welsh.\n")
    pool = load_pool(t)
    assert pool.attributes == ["The query is in Welsh.", "The query is a limerick."]
    assert pool.records == []
    j = tmp_path / "list.jsonl"
    j.write_text('"one"\n{"attribute": "two"}\n')
    assert load_pool(j).attributes == ["one", "two"]


def test_bad_pools_name_the_file_and_line(tmp_path):
    j = tmp_path / "bad.jsonl"
    j.write_text('{"sae_attributes": ["a"]}\n{not json}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl: line 2 is not valid JSON"):
        load_pool(j)
    j.write_text('{"sae_attributes": "not a list"}\n{"sae_attributes": 3}\n')
    with pytest.raises(ConfigError, match=r"line 2: field 'sae_attributes': expected a list"):
        load_pool(j)
    j.write_text('{"prompt": "x"}\n')
    with pytest.raises(ConfigError, match=r"line 1: no field 'sae_attributes'"):
        load_pool(j)
    e = tmp_path / "empty.txt"
    e.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="no attributes"):
        load_pool(e)
    with pytest.raises(ConfigError, match="no such file"):
        load_pool(tmp_path / "missing.txt")
    (tmp_path / "plaindir").mkdir()
    with pytest.raises(ConfigError, match="neither a TURF index"):
        load_pool(tmp_path / "plaindir")


def _index(tmp_path, *, attributes, clusters=None, channels=("lexical", "llm")):
    """A hand-made TURF index directory, written from the documented format."""
    d = tmp_path / "idx"
    d.mkdir()
    meta = {"format": "chunky-index", "version": 1, "extractor": {"channels": list(channels)}, "stages": {"finalize": "done"}}
    (d / "index.json").write_text(json.dumps(meta))
    pq.write_table(
        pa.table(
            {
                "attr_id": pa.array(range(len(attributes)), pa.int64()),
                "example_id": pa.array([a[0] for a in attributes], pa.int64()),
                "side": [a[1] for a in attributes],
                "text": [a[2] for a in attributes],
                "cluster": pa.array([a[3] for a in attributes], pa.int32()),
            }
        ),
        d / "attributes.parquet",
    )
    clusters = clusters or []
    pq.write_table(
        pa.table(
            {
                "cluster": pa.array([c[0] for c in clusters], pa.int32()),
                "size": pa.array([1] * len(clusters), pa.int64()),
                "summary": pa.array([c[1] for c in clusters], pa.string()),
                "keywords": pa.array([[] for _ in clusters], pa.list_(pa.string())),
                "central_attr_id": pa.array([0] * len(clusters), pa.int64()),
            }
        ),
        d / "clusters.parquet",
    )
    return d


ATTRS = [
    (0, "query", "The query uses 'elucidate'", 0),
    (0, "query", "The query is formal", 0),
    (0, "query", "The query asks about history", 1),
    (1, "query", "The query asks about the French revolution", 1),
    (0, "response", "The response writes Python", -1),
]


def test_a_turf_index_gives_cluster_summaries_grouped_per_example(tmp_path):
    d = _index(tmp_path, attributes=ATTRS, clusters=[(0, "Formal, elevated vocabulary"), (1, "History questions")])
    pool = load_pool(d)
    assert pool.kind == "turf-clusters"
    assert pool.attributes == ["Formal, elevated vocabulary", "History questions"]
    assert [[pool.attributes[i] for i in r] for r in pool.records] == [
        ["Formal, elevated vocabulary", "History questions"],
        ["History questions"],
    ]


def test_a_turf_index_without_clusters_gives_the_raw_query_attributes(tmp_path):
    d = _index(tmp_path, attributes=ATTRS)
    pool = load_pool(d)
    assert pool.kind == "turf-attributes"
    assert "The response writes Python" not in pool.attributes
    assert len(pool.attributes) == 4 and len(pool.records) == 2


def test_a_lexical_only_index_is_refused_with_advice(tmp_path):
    d = _index(tmp_path, attributes=[], channels=("lexical",))
    with pytest.raises(ConfigError, match="only the lexical channel.*--attributes"):
        load_pool(d)


def test_an_unfinished_index_is_refused_with_the_advice_to_resume_its_build(tmp_path):
    d = _index(tmp_path, attributes=ATTRS)
    meta = json.loads((d / "index.json").read_text())
    (d / "index.json").write_text(json.dumps(dict(meta, stages={"load": "done"})))
    with pytest.raises(ConfigError, match="did not finish.*rerun `chunky index`"):
        load_pool(d)


def test_the_real_index_writer_output_is_read(tmp_path):
    """Cross-check against TURF's own writer (the real component)."""
    from chunky.turf.index import write_index_tables

    ex = [{"example_id": i, "id": f"e{i}", "source": "s", "turn": 0, "query": f"q{i}", "response": f"r{i}"} for i in range(2)]
    attrs = [{"attr_id": i, "example_id": a[0], "side": a[1], "text": a[2], "cluster": a[3]} for i, a in enumerate(ATTRS)]
    clusters = [
        {"cluster": 0, "size": 2, "summary": "Formal vocabulary", "keywords": ["formal"], "central_attr_id": 0},
        {"cluster": 1, "size": 2, "summary": "History", "keywords": ["history"], "central_attr_id": 2},
    ]
    write_index_tables(tmp_path / "real", examples=ex, embedder_spec="hash:8", dim=8, attributes=attrs, clusters=clusters)
    pool = load_pool(tmp_path / "real")
    assert sorted(pool.attributes) == ["Formal vocabulary", "History"]


def test_a_saved_hugging_face_dataset_in_the_authors_format(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"prompt": ["p1", "p2"], "sae_attributes": [["The query is terse.", "The query is in Dutch."], ["The query is terse."]]}
    )
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hfds"))
    pool = load_pool(tmp_path / "hfds")
    assert pool.attributes == ["The query is terse.", "The query is in Dutch."]
    assert pool.records == [[0, 1], [0]]


def test_an_unreachable_hub_dataset_is_a_clear_error(monkeypatch):
    import datasets
    import huggingface_hub.constants

    # the libraries read these at import time, so set the parsed values too
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="could not load the Hugging Face dataset"):
        load_pool("seoirsem/CHUNKY-tulu3-SFT-25k-attributes")


def test_shipped_pools_load_by_name():
    from chunky.surf.pools import shipped_pools

    assert shipped_pools() == ["default", "facts"]
    facts = load_pool("facts")
    assert facts.source == "built-in:facts" and 30 <= len(facts) < len(default_pool())
