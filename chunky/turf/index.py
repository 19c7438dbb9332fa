"""The TURF index directory: its schemas, the lazy reader `TurfIndex`, and the writer the builder uses.

Layout (docs/ARCHITECTURE.md is the contract)::

    IDX/
      index.json             format, version, data, params, embedder, extractor, counts, sources, files, stages
      examples.parquet       example_id int64 (0..N-1), id str, source str, turn int32, query str, response str
      features.parquet       example_id int64, side str, feature str            (lexical channel, long format)
      feature_stats.parquet  side str, feature str, kind str, df int64
      attributes.parquet     attr_id int64, example_id int64, side str, text str, cluster int32
      clusters.parquet       cluster int32, size int64, summary str, keywords list<str>, central_attr_id int64
      emb/query_attr.npy     [n_query_attr, d]  row i <-> i-th query attribute (attr_id order)
      emb/response_attr.npy  [n_response_attr, d]
      emb/response_text.npy  [N, d]            row i <-> example_id i
      emb/centroids.npy      [K, d]            L2-normalised

Every table is always written, empty when its channel was not built, so DuckDB views and readers never
need to special-case a missing file. Files are written to a temporary name and renamed, so a killed
build never leaves a half-written table under its final name; `index.json` records each file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chunky import serde
from chunky.errors import ChunkyError, ConfigError
from chunky.turf.hits import ExampleClusters

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

    from chunky.models.embeddings import Embedder
    from chunky.turf.trace.search import VectorSearch

T = TypeVar("T")

FORMAT = "chunky-index"
VERSION = 1

EXAMPLES_SCHEMA = pa.schema(
    [
        ("example_id", pa.int64()),
        ("id", pa.string()),
        ("source", pa.string()),
        ("turn", pa.int32()),
        ("query", pa.string()),
        ("response", pa.string()),
    ]
)
FEATURES_SCHEMA = pa.schema([("example_id", pa.int64()), ("side", pa.string()), ("feature", pa.string())])
FEATURE_STATS_SCHEMA = pa.schema(
    [("side", pa.string()), ("feature", pa.string()), ("kind", pa.string()), ("df", pa.int64())]
)
ATTRIBUTES_SCHEMA = pa.schema(
    [
        ("attr_id", pa.int64()),
        ("example_id", pa.int64()),
        ("side", pa.string()),
        ("text", pa.string()),
        ("cluster", pa.int32()),
    ]
)
CLUSTERS_SCHEMA = pa.schema(
    [
        ("cluster", pa.int32()),
        ("size", pa.int64()),
        ("summary", pa.string()),
        ("keywords", pa.list_(pa.string())),
        ("central_attr_id", pa.int64()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "examples": EXAMPLES_SCHEMA,
    "features": FEATURES_SCHEMA,
    "feature_stats": FEATURE_STATS_SCHEMA,
    "attributes": ATTRIBUTES_SCHEMA,
    "clusters": CLUSTERS_SCHEMA,
}
EMBEDDINGS = ("query_attr", "response_attr", "response_text", "centroids")
# Two embedders whose probe vectors agree less than this are different models (CPU rounding stays far above it).
PROBE_MIN_COSINE = 0.995


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def feature_kind(feature: str) -> str:
    """The kind of a lexical feature name: the part before the first colon (`word:elucidate` -> word)."""
    return feature.split(":", 1)[0]


@dataclass
class DataInfo:
    path: str = ""
    sha256: str = ""
    rows_read: int = 0
    rows_skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class EmbedderInfo:
    spec: str = ""
    dim: int = 0
    dtype: str = "float32"
    # The embedder's vector of chunky.models.embeddings.PROBE_TEXT: identifies the model behind the spec.
    probe: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, embedder: Embedder, dtype: str) -> EmbedderInfo:
        return cls(spec=embedder.spec, dim=embedder.dim, dtype=dtype,
                   probe=[round(float(x), 5) for x in embedder.probe()])

    def check(self, embedder: Embedder, where: str) -> None:
        """Refuse vectors of another embedder than the one that made this index's vectors."""
        from chunky.models.embeddings import canonical_spec

        theirs = f"{embedder.spec} (d={embedder.dim})"
        mine = f"{self.spec} (d={self.dim})"
        if canonical_spec(embedder.spec) != canonical_spec(self.spec) or embedder.dim != self.dim:
            raise ConfigError(f"{where}: its vectors were made by embedder {mine}; vectors of {theirs} cannot be "
                              "compared with them (rebuild the index with --force to change embedder)")
        if self.probe:
            a = np.asarray(self.probe, dtype=np.float32)
            b = np.asarray(embedder.probe(), dtype=np.float32)
            cos = float(a @ b / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))
            if cos < PROBE_MIN_COSINE:
                raise ConfigError(
                    f"{where}: its vectors were made by a different model behind embedder '{self.spec}' (the probe "
                    f"sentence's vectors agree to cosine {cos:.3f}, not ≥ {PROBE_MIN_COSINE}); the model files "
                    "changed since the build: rebuild the index with --force, or restore that model"
                )


@dataclass
class IndexCounts:
    examples: int = 0
    query_attributes: int = 0
    response_attributes: int = 0
    clusters: int = 0
    features: int = 0


@dataclass
class IndexMeta:
    """The parsed `index.json`. Item access (`meta["counts"]`) returns the raw JSON value too."""

    format: str = FORMAT
    version: int = VERSION
    chunky_version: str = ""
    created_at: str = ""
    data: DataInfo = field(default_factory=DataInfo)
    params: dict[str, Any] = field(default_factory=dict)
    embedder: EmbedderInfo = field(default_factory=EmbedderInfo)
    # {"channels": ["lexical", "llm"], "model": spec or None, "n": 10, ...}
    extractor: dict[str, Any] = field(default_factory=dict)
    counts: IndexCounts = field(default_factory=IndexCounts)
    sources: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    @property
    def channels(self) -> list[str]:
        return list(self.extractor.get("channels", []))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexMeta:
        # Real work: a file without format/version is not taken for the current format (the caller checks them).
        return serde.from_dict(cls, {"format": "", "version": 0, **d}, where="index.json")



@dataclass
class SourceCodes:
    """The source of every example, dictionary-encoded: `names[codes[example_id]]`."""

    codes: np.ndarray  # int32 [N], source code of each example
    names: list[str]
    sizes: np.ndarray  # int64 [n_sources], examples per source

    @property
    def n(self) -> int:
        return int(self.sizes.sum())


class ExampleText(NamedTuple):
    """The text columns of one example (examples.parquet), as `TurfIndex.examples_by_id` returns them."""

    id: str
    source: str
    query: str
    response: str


SEARCHABLE = ("response_attr", "response_text", "centroids")


def read_meta(path: Path) -> IndexMeta:
    f = Path(path) / "index.json"
    if not f.exists():
        raise ConfigError(f"{path}: not a chunky index (no index.json); build one with `chunky index DATA --out {path}`")
    try:
        raw = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{f}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if raw.get("format") != FORMAT:
        raise ConfigError(f"{f}: field 'format' is {raw.get('format')!r}, expected {FORMAT!r}")
    if int(raw.get("version", 0)) > VERSION:
        raise ConfigError(f"{f}: index version {raw.get('version')} is newer than this chunky reads ({VERSION})")
    return IndexMeta.from_dict(raw)


class TurfIndex:
    """A built TURF index, loaded lazily: nothing but index.json is read until asked for."""

    def __init__(self, path: Path, meta: IndexMeta):
        self.path = Path(path)
        self.meta = meta
        self._tables: dict[str, pa.Table] = {}
        self._emb: dict[str, np.ndarray] = {}
        self._embedder: Embedder | None = None
        # Derived data the attribution reads on every trace (see "derived data" below), built once per index
        # object: tracing many findings against one index loads each table and builds each FAISS index once.
        self._memo: dict[str, object] = {}
        self._memo_lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._con_lock = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TurfIndex:
        p = Path(path)
        meta = read_meta(p)
        if meta.stages.get("finalize") != "done":
            raise ConfigError(
                f"{p}: the index build did not finish (stages: {meta.stages}); rerun `chunky index` to resume it"
            )
        return cls(p, meta)

    def __repr__(self) -> str:
        c = self.meta.counts
        return f"TurfIndex({str(self.path)!r}, examples={c.examples}, channels={self.meta.channels})"

    # ---- channels -------------------------------------------------------------------------
    @property
    def has_llm(self) -> bool:
        return "llm" in self.meta.channels

    @property
    def has_lexical(self) -> bool:
        return "lexical" in self.meta.channels

    @property
    def n_examples(self) -> int:
        return self.meta.counts.examples

    # ---- tables ---------------------------------------------------------------------------
    def _table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        f = self.path / f"{name}.parquet"
        if columns is not None:
            if name in self._tables:
                return self._tables[name].select(columns)
            return pq.read_table(f, columns=columns)
        if name not in self._tables:
            if not f.exists():
                raise ChunkyError(f"{f}: missing from the index; rebuild it with `chunky index ... --force`")
            self._tables[name] = pq.read_table(f)
        return self._tables[name]

    def examples(self, columns: list[str] | None = None) -> pa.Table:
        return self._table("examples", columns)

    def features(self, columns: list[str] | None = None) -> pa.Table:
        return self._table("features", columns)

    def feature_stats(self, columns: list[str] | None = None) -> pa.Table:
        return self._table("feature_stats", columns)

    def attributes(self, columns: list[str] | None = None) -> pa.Table:
        return self._table("attributes", columns)

    def clusters(self, columns: list[str] | None = None) -> pa.Table:
        return self._table("clusters", columns)

    def iter_examples(self, columns: list[str], batch_size: int = 8192) -> Iterator[pa.RecordBatch]:
        """examples.parquet in row order, streamed batch by batch (for a pass over a mix too large to load)."""
        yield from pq.ParquetFile(self.path / "examples.parquet").iter_batches(batch_size=batch_size, columns=columns)

    # ---- embeddings (memory-mapped) ---------------------------------------------------------
    def _npy(self, name: str) -> np.ndarray:
        if name not in self._emb:
            f = self.path / "emb" / f"{name}.npy"
            if not f.exists():
                raise ChunkyError(f"{f}: missing from the index; rebuild it with `chunky index ... --force`")
            self._emb[name] = np.load(f, mmap_mode="r")
        return self._emb[name]

    def query_attr_emb(self) -> np.ndarray:
        return self._npy("query_attr")

    def response_attr_emb(self) -> np.ndarray:
        return self._npy("response_attr")

    def response_text_emb(self) -> np.ndarray:
        return self._npy("response_text")

    def centroids(self) -> np.ndarray:
        return self._npy("centroids")

    # ---- convenience arrays for attribution (aligned with the embedding rows) ----------------
    def attr_example_ids(self, side: str) -> np.ndarray:
        """example_id of each attribute of `side`, in attr_id order (row i <-> embedding row i)."""
        t = self.attributes(["example_id", "side"])
        mask = pc.equal(t["side"], side)
        return t.filter(mask)["example_id"].to_numpy()

    def query_attr_clusters(self) -> np.ndarray:
        """Cluster of each query attribute, in attr_id order (row i <-> query_attr_emb row i)."""
        t = self.attributes(["side", "cluster"])
        return t.filter(pc.equal(t["side"], "query"))["cluster"].to_numpy()

    # ---- derived data, built once per index object ---------------------------------------------
    def _memoised(self, key: str, make: Callable[[], T]) -> T:
        with self._memo_lock:
            if key in self._memo:
                return self._memo[key]  # type: ignore[return-value]
        # Built outside the lock: two threads may both build it once, but neither waits on the other's scan.
        value = make()
        with self._memo_lock:
            return self._memo.setdefault(key, value)  # type: ignore[return-value]

    def searcher(self, name: str, exact: bool | None = None) -> VectorSearch:
        """k-NN over one embedding matrix (`response_attr`, `response_text` or `centroids`); an IVF index, when
        one is used, is kept in IDX/cache/ under the matrix's checksum, so the next process reads it back."""
        from chunky.turf.trace.search import VectorSearch

        if name not in SEARCHABLE:
            raise ValueError(f"no vector search over {name!r}; one of {', '.join(SEARCHABLE)}")

        def make() -> VectorSearch:
            digest = self.meta.files.get(f"emb/{name}.npy", "")[:12] or "nodigest"
            return VectorSearch(self._npy(name), exact=exact,
                                cache_file=self.path / "cache" / f"{name}.{digest}.ivf.faiss")

        return self._memoised(f"search:{name}:{exact}", make)

    def source_codes(self) -> SourceCodes:
        """The source of every example, dictionary-encoded, with each source's size."""

        def make() -> SourceCodes:
            col = self.examples(["source"])["source"].combine_chunks().dictionary_encode()
            codes = np.asarray(col.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
            names = [str(x) for x in col.dictionary.to_pylist()]
            return SourceCodes(codes, names, np.bincount(codes, minlength=len(names)).astype(np.int64))

        return self._memoised("sources", make)

    def example_clusters(self) -> ExampleClusters:
        """The query clusters of every example (from its query attributes), for hit counting."""

        def make() -> ExampleClusters:
            ex = self.attr_example_ids("query")
            cl = self.query_attr_clusters()
            n_clusters = max(self.meta.counts.clusters, int(cl.max()) + 1 if len(cl) else 0)
            return ExampleClusters.build(ex, cl, self.meta.counts.examples, n_clusters)

        return self._memoised("example_clusters", make)

    def response_attrs(self) -> tuple[np.ndarray, list[str]]:
        """(example_id, text) of each response attribute, in attr_id order (row i <-> response_attr_emb row i)."""

        def make() -> tuple[np.ndarray, list[str]]:
            t = self.attributes(["side", "text"])
            texts = t.filter(pc.equal(t["side"], "response"))["text"].to_pylist()
            return self.attr_example_ids("response"), texts

        return self._memoised("response_attrs", make)

    def cluster_summaries(self) -> dict[int, str]:
        """cluster -> its summary (clusters.parquet)."""

        def make() -> dict[int, str]:
            t = self.clusters(["cluster", "summary"])
            return dict(zip(t["cluster"].to_pylist(), t["summary"].to_pylist()))

        return self._memoised("cluster_summaries", make)

    def feature_df(self, side: str = "query") -> dict[str, tuple[int, str]]:
        """feature -> (df, kind) for one side (feature_stats.parquet)."""

        def make() -> dict[str, tuple[int, str]]:
            t = self.feature_stats(["side", "feature", "kind", "df"])
            t = t.filter(pc.equal(t["side"], side))
            return {f: (int(d), k) for f, d, k in zip(t["feature"].to_pylist(), t["df"].to_pylist(),
                                                      t["kind"].to_pylist())}

        return self._memoised(f"feature_df:{side}", make)

    def examples_by_id(self, ids: Sequence[int]) -> dict[int, ExampleText]:
        """The text of a few examples, read with DuckDB (no full-table load); ids the index lacks are absent."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        with self._con_lock:  # one connection, used by one thread at a time
            if self._con is None:
                self._con = self.duckdb()
            rows = self._con.execute(
                "SELECT example_id, id, source, query, response FROM examples WHERE example_id IN (SELECT unnest(?))",
                [ids],
            ).fetchall()
        return {int(r[0]): ExampleText(str(r[1]), str(r[2]), r[3] or "", r[4] or "") for r in rows}

    # ---- models and SQL ---------------------------------------------------------------------
    def embedder(self, max_tokens: int | None = None) -> Embedder:
        """The embedder the index was built with, checked to be the same model (so query vectors are
        comparable); `max_tokens` defaults to the build's budget for response texts."""
        from chunky.models.embeddings import get_embedder

        spec = self.meta.embedder.spec
        if not spec:
            raise ChunkyError(f"{self.path}/index.json: no embedder recorded (field 'embedder.spec')")
        tokens = max_tokens or int(self.meta.params.get("text_tokens", 256))
        if max_tokens is None and self._embedder is not None:
            return self._embedder
        emb = get_embedder(spec, max_tokens=tokens)
        self.check_embedder(emb)
        if max_tokens is None:
            self._embedder = emb
        return emb

    def check_embedder(self, embedder: Embedder) -> None:
        """Raise ConfigError unless `embedder` makes vectors comparable with this index's."""
        self.meta.embedder.check(embedder, str(self.path))

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with views examples, features, feature_stats, attributes, clusters."""
        import duckdb

        con = duckdb.connect()
        for name in TABLES:
            f = self.path / f"{name}.parquet"
            path_sql = str(f).replace("'", "''")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path_sql}')")
        return con


# ---- writing -------------------------------------------------------------------------------


def _atomic_path(final: Path) -> Path:
    return final.with_name(final.name + f".tmp-{os.getpid()}")


def write_table(path: Path, table: pa.Table, schema: pa.Schema) -> str:
    """Write one Parquet table atomically; returns its sha256."""
    table = table.select(schema.names).cast(schema)
    tmp = _atomic_path(path)
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return sha256_file(path)


class ParquetStreamWriter:
    """Append record batches to one Parquet file, renamed into place by `close()` (atomic)."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path = Path(path)
        self.schema = schema
        self.tmp = _atomic_path(self.path)
        self._w = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._w.write_table(table.select(self.schema.names).cast(self.schema))
            self.rows += table.num_rows

    def close(self) -> str:
        self._w.close()
        os.replace(self.tmp, self.path)
        return sha256_file(self.path)

    def abort(self) -> None:
        self._w.close()
        self.tmp.unlink(missing_ok=True)


def write_npy(path: Path, array: np.ndarray) -> str:
    """Save an array as .npy atomically; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(path)
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))
    os.replace(tmp, path)
    return sha256_file(path)


def write_meta(path: Path, meta: IndexMeta) -> None:
    f = Path(path) / "index.json"
    tmp = _atomic_path(f)
    tmp.write_text(json.dumps(meta.to_dict(), indent=2, ensure_ascii=False, sort_keys=False))
    os.replace(tmp, f)


def _empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def _as_table(rows: pa.Table | Iterable[dict[str, Any]] | None, schema: pa.Schema) -> pa.Table:
    if rows is None:
        return _empty(schema)
    if isinstance(rows, pa.Table):
        return rows
    return pa.Table.from_pylist(list(rows), schema=schema)


def _emb_or_empty(a: np.ndarray | None, dim: int, dtype: str) -> np.ndarray:
    if a is None:
        return np.zeros((0, dim), dtype=dtype)
    return np.asarray(a, dtype=dtype)


def write_index_tables(
    out: str | os.PathLike[str],
    *,
    examples: pa.Table | Iterable[dict[str, Any]],
    embedder_spec: str,
    dim: int,
    features: pa.Table | Iterable[dict[str, Any]] | None = None,
    attributes: pa.Table | Iterable[dict[str, Any]] | None = None,
    clusters: pa.Table | Iterable[dict[str, Any]] | None = None,
    query_attr_emb: np.ndarray | None = None,
    response_attr_emb: np.ndarray | None = None,
    response_text_emb: np.ndarray | None = None,
    centroids: np.ndarray | None = None,
    dtype: str = "float32",
    data: DataInfo | None = None,
    params: dict[str, Any] | None = None,
    extractor: dict[str, Any] | None = None,
) -> TurfIndex:
    """Write a complete index from in-memory tables (tests, small tools, and the builder's final step).

    `features` gets its `feature_stats` computed here. Channels: lexical when features are given,
    llm when attributes are given. Returns the opened index.
    """
    from chunky import __version__

    outp = Path(out)
    (outp / "emb").mkdir(parents=True, exist_ok=True)
    ex = _as_table(examples, EXAMPLES_SCHEMA)
    feats = _as_table(features, FEATURES_SCHEMA)
    attrs = _as_table(attributes, ATTRIBUTES_SCHEMA)
    clus = _as_table(clusters, CLUSTERS_SCHEMA)
    files: dict[str, str] = {}
    files["examples.parquet"] = write_table(outp / "examples.parquet", ex, EXAMPLES_SCHEMA)
    files["features.parquet"] = write_table(outp / "features.parquet", feats, FEATURES_SCHEMA)
    stats = feature_stats_from(feats)
    files["feature_stats.parquet"] = write_table(outp / "feature_stats.parquet", stats, FEATURE_STATS_SCHEMA)
    files["attributes.parquet"] = write_table(outp / "attributes.parquet", attrs, ATTRIBUTES_SCHEMA)
    files["clusters.parquet"] = write_table(outp / "clusters.parquet", clus, CLUSTERS_SCHEMA)
    for name, arr in (
        ("query_attr", query_attr_emb),
        ("response_attr", response_attr_emb),
        ("response_text", response_text_emb),
        ("centroids", centroids),
    ):
        files[f"emb/{name}.npy"] = write_npy(outp / "emb" / f"{name}.npy", _emb_or_empty(arr, dim, dtype))
    channels = []
    if features is not None:
        channels.append("lexical")
    if attributes is not None:
        channels.append("llm")
    sides = attrs["side"].to_pylist() if attrs.num_rows else []
    sources: dict[str, int] = {}
    for s in ex["source"].to_pylist():
        sources[s] = sources.get(s, 0) + 1
    meta = IndexMeta(
        chunky_version=__version__,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        data=data or DataInfo(rows_read=ex.num_rows),
        params=params or {},
        embedder=EmbedderInfo(spec=embedder_spec, dim=dim, dtype=dtype),
        extractor={"channels": channels, **(extractor or {})},
        counts=IndexCounts(
            examples=ex.num_rows,
            query_attributes=sides.count("query"),
            response_attributes=sides.count("response"),
            clusters=clus.num_rows,
            features=stats.num_rows,
        ),
        sources=sources,
        files=files,
        stages={"finalize": "done"},
    )
    write_meta(outp, meta)
    return TurfIndex.open(outp)


def feature_stats_from(features: pa.Table) -> pa.Table:
    """Per (side, feature) document frequency, with the feature's kind."""
    import duckdb

    if features.num_rows == 0:
        return _empty(FEATURE_STATS_SCHEMA)
    con = duckdb.connect()
    con.register("f", features)
    t = con.sql(
        "SELECT side, feature, split_part(feature, ':', 1) AS kind, count(DISTINCT example_id)::BIGINT AS df "
        "FROM f GROUP BY side, feature ORDER BY side, df DESC, feature"
    ).to_arrow_table()
    return t.cast(FEATURE_STATS_SCHEMA)
