"""The data analyses the paper relies on, as DuckDB queries over a TURF index's Parquet tables:

- `grep`: keyword / regex search with per-source counts, share and lift ("elucidate": 85% codealpaca);
- `cooccur`: P(response pattern | query pattern) vs P(response pattern | not query pattern), per source,
  with Wilson intervals (P("I hope it is correct" | "1." and "2.") = 93%);
- `mine`: features concentrated in one source, and query-feature → response-feature pairs with a high
  conditional rate and lift, to audit a mix before training on it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Sequence

import duckdb
import numpy as np

from chunky.config import chunky_home
from chunky.errors import ChunkyError
from chunky.turf.hits import wilson

Side = Literal["query", "response"]
SIDES = ("query", "response", "both")


# --------------------------------------------------------------------------------------------- patterns


@dataclass(frozen=True)
class Pattern:
    """A text pattern: a literal substring, a regular expression (RE2 syntax, as DuckDB uses), or the
    name of a lexical feature of the index (e.g. `format:numbered_list`)."""

    text: str
    kind: Literal["literal", "regex", "feature"] = "literal"
    case_sensitive: bool = False

    def describe(self) -> str:
        flag = "" if self.case_sensitive or self.kind == "feature" else ", case-insensitive"
        return f"{self.kind} {self.text!r}{flag}"

    def condition(self, column: str, side: Side) -> tuple[str, list[Any]]:
        """A SQL boolean over the `examples` view and its parameters."""
        if self.kind == "feature":
            # the example ids were registered as _fs_<side> (see _register_feature_sets)
            return f"example_id IN (SELECT example_id FROM _fs_{side})", []
        if self.kind == "regex":
            opt = "c" if self.case_sensitive else "i"
            lit = required_literal(self.text)
            if lit is None:
                return f"regexp_matches({column}, ?, ?)", [self.text, opt]
            # A literal every match must contain is a cheap first filter (RE2 scans for it with memchr);
            # DuckDB runs the full regex only on the rows that pass it. Case-insensitive: a superset either way.
            return (f"(regexp_matches({column}, ?, 'i') AND regexp_matches({column}, ?, ?))",
                    [re2_literal(lit), self.text, opt])
        if self.case_sensitive:
            escaped = self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return f"{column} LIKE ? ESCAPE '\\'", [f"%{escaped}%"]
        # A quoted literal through RE2 with the 'i' option scans about twice as fast as ILIKE.
        return f"regexp_matches({column}, ?, 'i')", [re2_literal(self.text)]

    def python_regex(self) -> re.Pattern[str] | None:
        """The same pattern for Python's `re`, to place snippets; None if RE2 syntax Python lacks."""
        flags = 0 if self.case_sensitive else re.IGNORECASE
        try:
            return re.compile(self.text if self.kind == "regex" else re.escape(self.text), flags)
        except re.error:
            return None


def required_literal(pattern: str, min_len: int = 3) -> str | None:
    """The longest run of literal characters that every match of `pattern` contains, read from Python's
    parse of it; None when there is none of `min_len` or more, or Python cannot parse the (RE2) pattern."""
    import warnings
    from re import _parser  # type: ignore[attr-defined]  # the stdlib's own regex parser

    if "[:" in pattern:  # POSIX classes ([[:alpha:]]) are RE2 syntax that Python would misread as literals
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items = list(_parser.parse(pattern))
    except Exception:  # RE2-only syntax (\pL, \Q..\E, \x{41}, ...): no pre-filter
        return None
    if any(op is _parser.BRANCH for op, _ in items):
        return None
    best, run = "", []
    for op, arg in items + [(None, None)]:
        if op is _parser.LITERAL:
            run.append(chr(arg))
            continue
        if op is _parser.AT:  # zero-width (\b, ^, $): the literal characters around it are still adjacent
            continue
        if len(run) > len(best):
            best = "".join(run)
        run = []
    return best if len(best) >= min_len and best != pattern else None


def re2_literal(text: str) -> str:
    """A regex matching `text` literally (RE2 accepts a backslash before any punctuation)."""
    out = []
    for c in text:
        if c.isalnum() or c == " " or ord(c) > 127:
            out.append(c)
        elif c.isprintable():
            out.append("\\" + c)
        else:
            out.append(f"\\x{{{ord(c):02x}}}")
    return "".join(out)


def _check_regex(con: duckdb.DuckDBPyConnection, text: str, what: str) -> None:
    if not text:
        raise ChunkyError(f"{what}: empty pattern")
    try:
        con.execute("SELECT regexp_matches('', ?)", [text]).fetchall()
    except duckdb.Error as e:
        msg = str(e).split("Error:", 1)[-1].strip()
        raise ChunkyError(f"{what}: invalid regular expression {text!r} ({msg})") from None


def _has_feature(con: duckdb.DuckDBPyConnection, side: Side, name: str) -> bool:
    return bool(con.execute("SELECT 1 FROM feature_stats WHERE side = ? AND feature = ? LIMIT 1", [side, name]).fetchall())


def _feature_prefixes(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT DISTINCT kind FROM feature_stats").fetchall() if r[0]}


def _similar_features(con: duckdb.DuckDBPyConnection, side: Side, name: str) -> list[str]:
    prefix, _, rest = name.partition(":")
    rows = con.execute(
        "SELECT feature FROM feature_stats WHERE side = ? AND kind = ? AND contains(feature, ?) "
        "ORDER BY df DESC LIMIT 5",
        [side, prefix, rest[:3]],
    ).fetchall()
    return [r[0] for r in rows]


def resolve_pattern(
    con: duckdb.DuckDBPyConnection,
    text: str,
    side: Side,
    *,
    regex: bool = False,
    case_sensitive: bool = False,
    allow_feature: bool = True,
    what: str = "pattern",
) -> Pattern:
    """Turn a user's PAT into a Pattern: `re:P` (or --regex) is a regex, `lit:T` a literal, a lexical
    feature name of the index (`format:numbered_list`) that feature, anything else a literal."""
    if text is None or text == "":
        raise ChunkyError(f"{what}: empty pattern")
    if regex or text.startswith("re:"):
        body = text[3:] if text.startswith("re:") and not regex else text
        _check_regex(con, body, what)
        return Pattern(body, "regex", case_sensitive)
    if text.startswith("lit:"):
        body = text[4:]
        if not body:
            raise ChunkyError(f"{what}: empty pattern after 'lit:'")
        return Pattern(body, "literal", case_sensitive)
    if allow_feature and ":" in text:
        prefix = text.split(":", 1)[0]
        if prefix in _feature_prefixes(con):
            if _has_feature(con, side, text):
                return Pattern(text, "feature")
            close = _similar_features(con, side, text)
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise ChunkyError(
                f"{what}: {text!r} looks like a lexical feature but the index has no {side}-side feature of that "
                f"name{hint}; write lit:{text} to search for the text itself"
            )
    return Pattern(text, "literal", case_sensitive)


# --------------------------------------------------------------------------------------------- index access


def analysis_connection(idx: Any) -> duckdb.DuckDBPyConnection:
    """The index's DuckDB views (examples, features, feature_stats, attributes, clusters)."""
    return idx.duckdb()


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


class FeatureLookup:
    """Which examples have a given lexical feature, without scanning features.parquet (~20M rows on the
    89k mix: ~2 s per scan). A CSR built once per index by dictionary-encoding and sorting the table:
    `names.parquet` (side, feature, start, count) and `example_ids.npy` (example ids grouped by feature).
    Stored next to the index (IDX/cache/) or, if that is read-only, under CHUNKY_HOME; named after
    features.parquet's checksum, so a rebuilt index gets a fresh one."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.names_path = directory / "names.parquet"
        self.example_ids = np.load(directory / "example_ids.npy", mmap_mode="r")
        self._con = duckdb.connect()
        self._con.execute(f"CREATE VIEW names AS SELECT * FROM read_parquet('{_sql_str(str(self.names_path))}')")
        self._lock = threading.Lock()

    @classmethod
    def open(cls, idx: Any) -> "FeatureLookup":
        digest = (idx.meta.files.get("features.parquet") or "")[:16]
        src = Path(idx.path) / "features.parquet"
        if not digest:
            st = src.stat()
            digest = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        name = f"feature_lookup.{digest}"
        places = [Path(idx.path) / "cache" / name, chunky_home() / "turf-cache" / name]
        for d in places:
            if (d / "example_ids.npy").exists() and (d / "names.parquet").exists():
                return cls(d)
        last: Exception | None = None
        for d in places:
            try:
                _build_lookup(src, d)
                return cls(d)
            except OSError as e:
                last = e
        raise ChunkyError(f"{idx.path}: cannot write the feature lookup cache ({last})")

    def names_table(self) -> Any:
        """The whole (side, feature, start, count) table (pyarrow)."""
        import pyarrow.parquet as pq

        return pq.read_table(self.names_path).combine_chunks()

    def examples_of(self, side: str, features: Sequence[str]) -> dict[str, np.ndarray]:
        """feature -> sorted unique example ids (empty for a feature the index does not have)."""
        names = list(dict.fromkeys(features))
        out = {f: np.zeros(0, np.int64) for f in names}
        if not names:
            return out
        with self._lock:
            rows = self._con.execute(
                "SELECT feature, start, count FROM names WHERE side = ? AND feature IN (SELECT unnest(?))",
                [side, names],
            ).fetchall()
        for f, start, count in rows:
            out[f] = np.asarray(self.example_ids[int(start) : int(start) + int(count)], dtype=np.int64)
        return out


def _build_lookup(src: Path, directory: Path) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(src, columns=["example_id", "side", "feature"])
    side = pc.equal(t["side"], "response").combine_chunks().to_numpy(zero_copy_only=False).astype(np.int64)
    feat = t["feature"].combine_chunks().dictionary_encode()
    fcode = np.asarray(feat.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    ex = np.asarray(t["example_id"].to_numpy(), dtype=np.int64)
    nf = len(feat.dictionary)
    key = side * nf + fcode
    order = np.lexsort((ex, key))
    key, ex = key[order], ex[order]
    keep = np.ones(len(key), dtype=bool)  # a feature listed twice for one example counts once
    keep[1:] = (key[1:] != key[:-1]) | (ex[1:] != ex[:-1])
    key, ex = key[keep], ex[keep]
    uniq, start, count = np.unique(key, return_index=True, return_counts=True)
    names = pa.table({
        "side": pa.array(np.where(uniq >= nf, "response", "query")),
        "feature": feat.dictionary.take(pa.array(uniq % nf)),
        "start": pa.array(start.astype(np.int64)),
        "count": pa.array(count.astype(np.int64)),
    })
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "example_ids.npy", ex)
    pq.write_table(names, tmp / "names.parquet")
    if directory.exists():  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        return
    os.replace(tmp, directory)


def _source_codes(idx: Any) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(source code of each example, source names, examples per source)."""
    col = idx.examples(["source"])["source"].combine_chunks().dictionary_encode()
    codes = np.asarray(col.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    names = [str(x) for x in col.dictionary.to_pylist()]
    return codes, names, np.bincount(codes, minlength=len(names)).astype(np.float64)


_LOOKUPS: dict[str, FeatureLookup] = {}
_LOOKUPS_LOCK = threading.Lock()


def feature_lookup(idx: Any) -> FeatureLookup:
    """The index's FeatureLookup, opened once per process."""
    key = f"{Path(idx.path).resolve()}|{idx.meta.files.get('features.parquet', '')}"
    with _LOOKUPS_LOCK:
        if key not in _LOOKUPS:
            _LOOKUPS[key] = FeatureLookup.open(idx)
        return _LOOKUPS[key]


def _register_feature_sets(con: duckdb.DuckDBPyConnection, idx: Any, patterns: list[tuple[str, "Pattern", str]]) -> None:
    """Feature patterns become small tables of example ids (`_fs_<name>`) the conditions refer to."""
    import pyarrow as pa

    for name, pat, side in patterns:
        if pat.kind == "feature":
            ids = feature_lookup(idx).examples_of(side, [pat.text])[pat.text]
            con.register(f"_fs_{name}", pa.table({"example_id": ids}))


def source_sizes(idx: Any) -> dict[str, int]:
    sources = idx.meta.sources
    if sources:
        return {str(k): int(v) for k, v in sources.items()}
    rows = idx.duckdb().execute("SELECT source, count(*) FROM examples GROUP BY source").fetchall()
    return {r[0]: int(r[1]) for r in rows}


def _snippet(text: str, rx: re.Pattern[str] | None, width: int = 160) -> str:
    text = text or ""
    start = 0
    if rx is not None:
        m = rx.search(text)
        if m:
            start = max(0, m.start() - width // 3)
    out = text[start : start + width].replace("\n", " ")
    return ("…" if start > 0 else "") + out + ("…" if start + width < len(text) else "")


# --------------------------------------------------------------------------------------------- grep


@dataclass
class SourceCount:
    source: str
    n_source: int  # examples of this source in the mix
    matches: int
    share: float  # of all matches
    rate: float  # matches / n_source
    lift: float  # share / the source's share of the mix


@dataclass
class GrepExample:
    example_id: int
    id: str
    source: str
    matched: str  # query | response | both
    query: str
    response: str


@dataclass
class GrepResult:
    pattern: Pattern
    side: str
    n_examples: int
    matches: int
    query_matches: int
    response_matches: int
    by_source: list[SourceCount]
    examples: list[GrepExample]
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _by_source(counts: dict[str, int], sizes: dict[str, int]) -> list[SourceCount]:
    total = sum(counts.values())
    n = sum(sizes.values())
    out = []
    for src, c in counts.items():
        if c <= 0:
            continue
        ns = sizes.get(src, 0)
        share = c / total if total else 0.0
        out.append(
            SourceCount(
                source=src,
                n_source=ns,
                matches=c,
                share=share,
                rate=c / ns if ns else 0.0,
                lift=share / (ns / n) if ns and n else 0.0,
            )
        )
    out.sort(key=lambda s: (-s.matches, s.source))
    return out


def grep(
    idx: Any,
    pattern: str,
    *,
    regex: bool = False,
    side: str = "both",
    case_sensitive: bool = False,
    examples: int = 10,
    per_source_examples: int = 3,
) -> GrepResult:
    """Examples whose query and/or response contain PATTERN, counted per source."""
    if side not in SIDES:
        raise ChunkyError(f"--side: expected one of {', '.join(SIDES)}, got {side!r}")
    t0 = time.perf_counter()
    con = analysis_connection(idx)
    pat = resolve_pattern(con, pattern, "query", regex=regex, case_sensitive=case_sensitive, allow_feature=False, what="PATTERN")
    sizes = source_sizes(idx)
    qc, qp = pat.condition("query", "query") if side in ("query", "both") else ("FALSE", [])
    rc, rp = pat.condition("response", "response") if side in ("response", "both") else ("FALSE", [])
    # One scan of the text columns: the matching ids go to a temp table; counts and examples come from it.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _grep AS
            SELECT example_id, source, qm, rm FROM (SELECT example_id, source, {qc} AS qm, {rc} AS rm FROM examples)
            WHERE qm OR rm""",
        qp + rp,
    )
    rows = con.execute(
        "SELECT source, count(*) FILTER (WHERE qm), count(*) FILTER (WHERE rm), count(*) FROM _grep GROUP BY source"
    ).fetchall()
    counts = {r[0]: int(r[3]) for r in rows}
    q_total = sum(int(r[1]) for r in rows)
    r_total = sum(int(r[2]) for r in rows)
    ex_rows = []
    if examples > 0:
        ex_rows = con.execute(
            """WITH pick AS (
                 SELECT example_id, qm, rm FROM _grep
                 QUALIFY row_number() OVER (PARTITION BY source ORDER BY example_id) <= ?
                 ORDER BY example_id LIMIT ?)
               SELECT e.example_id, e.id, e.source, p.qm, p.rm, e.query, e.response
               FROM examples e JOIN pick p USING (example_id) ORDER BY e.example_id""",
            [per_source_examples, examples],
        ).fetchall()
    rx = pat.python_regex()
    exs = []
    for eid, id_, src, qm, rm, q, r in ex_rows:
        matched = "both" if qm and rm else ("query" if qm else "response")
        exs.append(
            GrepExample(
                example_id=int(eid),
                id=str(id_),
                source=src,
                matched=matched,
                query=_snippet(q, rx if qm else None),
                response=_snippet(r, rx if rm else None),
            )
        )
    return GrepResult(
        pattern=pat,
        side=side,
        n_examples=sum(sizes.values()),
        matches=sum(counts.values()),
        query_matches=q_total,
        response_matches=r_total,
        by_source=_by_source(counts, sizes),
        examples=exs,
        elapsed_s=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------------------------- cooccur


@dataclass
class Conditional:
    """Counts of one 2×2 table (query pattern × response pattern) and the rates derived from it."""

    source: str  # a source name, or "(all)"
    n: int
    n_query: int  # examples whose query matches
    n_response: int  # examples whose response matches
    n_both: int
    p_response_given_query: float | None
    ci_given_query: tuple[float, float]
    p_response_given_not_query: float | None
    ci_given_not_query: tuple[float, float]
    lift: float | None  # P(r | q) / P(r | not q)

    @classmethod
    def from_counts(cls, source: str, n: int, nq: int, nr: int, nqr: int) -> "Conditional":
        n_not = n - nq
        r_not = nr - nqr
        p1 = nqr / nq if nq else None
        p0 = r_not / n_not if n_not else None
        lift_ = (p1 / p0) if p1 is not None and p0 else None
        return cls(
            source=source,
            n=n,
            n_query=nq,
            n_response=nr,
            n_both=nqr,
            p_response_given_query=p1,
            ci_given_query=wilson(nqr, nq),
            p_response_given_not_query=p0,
            ci_given_not_query=wilson(r_not, n_not),
            lift=lift_,
        )


@dataclass
class CooccurResult:
    query_pattern: Pattern
    response_pattern: Pattern
    overall: Conditional
    by_source: list[Conditional]
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cooccur(
    idx: Any,
    query: str,
    response: str,
    *,
    regex: bool = False,
    case_sensitive: bool = False,
) -> CooccurResult:
    """P(response matches RESPONSE | query matches QUERY) against P(... | query does not), per source."""
    t0 = time.perf_counter()
    con = analysis_connection(idx)
    qpat = resolve_pattern(con, query, "query", regex=regex, case_sensitive=case_sensitive, what="--query")
    rpat = resolve_pattern(con, response, "response", regex=regex, case_sensitive=case_sensitive, what="--response")
    _register_feature_sets(con, idx, [("query", qpat, "query"), ("response", rpat, "response")])
    qc, qp = qpat.condition("query", "query")
    rc, rp = rpat.condition("response", "response")
    rows = con.execute(
        f"""SELECT source, count(*), count(*) FILTER (WHERE qm), count(*) FILTER (WHERE rm),
                   count(*) FILTER (WHERE qm AND rm)
            FROM (SELECT source, {qc} AS qm, {rc} AS rm FROM examples) GROUP BY source ORDER BY source""",
        qp + rp,
    ).fetchall()
    per = [Conditional.from_counts(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]
    overall = Conditional.from_counts(
        "(all)",
        sum(c.n for c in per),
        sum(c.n_query for c in per),
        sum(c.n_response for c in per),
        sum(c.n_both for c in per),
    )
    per.sort(key=lambda c: (-c.n_query, -c.n_response, c.source))
    return CooccurResult(qpat, rpat, overall, per, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------- mine


@dataclass
class ConcentratedFeature:
    """A lexical feature most of whose occurrences come from one source."""

    side: str
    feature: str
    kind: str
    df: int  # examples having it, whole mix
    source: str  # the source holding most of them
    count: int  # examples of that source having it
    share: float  # count / df
    source_share: float  # the source's share of the mix
    lift: float  # share / source_share
    score: float  # count · ln(lift): strong and frequent first


@dataclass
class FeaturePair:
    """A query feature → response feature correlation."""

    query_feature: str
    response_feature: str
    n_query: int  # examples whose query has the query feature
    n_response: int  # examples whose response has the response feature
    n_both: int
    p_response_given_query: float
    ci: tuple[float, float]
    p_response: float  # base rate of the response feature
    lift: float
    source: str  # the source holding most co-occurrences
    source_share: float  # its share of the co-occurrences
    score: float


@dataclass
class MineResult:
    n_examples: int
    concentrated: list[ConcentratedFeature]
    pairs: list[FeaturePair]
    params: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mine(
    idx: Any,
    *,
    top: int = 25,
    min_count: int = 20,
    min_share: float = 0.5,
    min_rate: float = 0.5,
    min_lift: float = 2.0,
    max_df_frac: float = 0.5,
    pair_candidates: int = 400,
    max_per_feature: int = 2,
    max_per_source: int = 3,
) -> MineResult:
    """Rank a mix's strongest chunky correlations without a failure in hand.

    Concentrated features: df ≥ min_count, ≥ min_share of them in one source, lift > 1; ranked by
    count · ln(lift). Pairs: among `pair_candidates` features per side with df in [min_count,
    max_df_frac · N] (ubiquitous features explain nothing) — half the most source-concentrated, half the
    most frequent format-level (non-word) features — pairs seen together ≥ min_count
    times with P(r | q) ≥ min_rate and lift ≥ min_lift; a feature paired with itself on the other side
    (the response repeating a query word) is skipped, and each feature appears at most `max_per_feature`
    times in the list; each source at most `max_per_source` times in the concentrated list."""
    t0 = time.perf_counter()
    codes, names, src_sizes = _source_codes(idx)
    n = int(src_sizes.sum())
    if n == 0:
        return MineResult(0, [], [], {}, 0.0)
    import pyarrow.compute as pc

    lk = feature_lookup(idx)
    table = lk.names_table()
    side_col, feat_col = table["side"], table["feature"]
    is_resp = pc.equal(side_col, "response").to_numpy(zero_copy_only=False)
    is_word = pc.or_(pc.starts_with(feat_col, "word:"), pc.starts_with(feat_col, "ngram:")).to_numpy(zero_copy_only=False)
    starts = table["start"].to_numpy()
    counts = table["count"].to_numpy()
    n_src = len(names)
    mix_share = src_sizes / n

    # Concentrated features: per-(feature, source) counts from the lookup's CSR in one bincount.
    keep = np.flatnonzero(counts >= min_count)
    lens = counts[keep]
    entry = np.repeat(np.arange(len(keep)), lens)
    pos = np.repeat(starts[keep] - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
    per = np.bincount(entry * n_src + codes[np.asarray(lk.example_ids[pos], dtype=np.int64)],
                      minlength=len(keep) * n_src).reshape(len(keep), n_src)
    top_src = per.argmax(axis=1)
    c_top = per[np.arange(len(keep)), top_src].astype(np.float64)
    share = c_top / np.maximum(lens, 1)
    lifts = share / mix_share[top_src]
    good = np.flatnonzero((share >= min_share) & (lifts > 1))
    score = np.round(c_top[good] * np.log(lifts[good]), 6)
    # most concentrated first; ties to format-level features, which name a pattern better than words
    order = good[np.lexsort((is_word[keep[good]], -score))]

    def concentrated_at(i: int) -> ConcentratedFeature:
        f = feat_col[int(keep[i])].as_py()
        return ConcentratedFeature(
            "response" if is_resp[keep[i]] else "query", f, f.split(":", 1)[0], int(lens[i]), names[int(top_src[i])],
            int(c_top[i]), float(share[i]), float(mix_share[top_src[i]]), float(lifts[i]),
            float(c_top[i] * math.log(lifts[i])),
        )

    # Pair candidates: the most source-concentrated features of each side (chunky correlations ride on
    # chunks) plus the most frequent format-level features; all words × all words would be ~10^8 pairs.
    max_df = max_df_frac * n
    half = max(1, pair_candidates // 2)
    cand: dict[str, list[str]] = {}
    for side, flag in (("query", False), ("response", True)):
        picked_i = order[(is_resp[keep[order]] == flag) & (lens[order] <= max_df)][:half]
        picked = [feat_col[int(keep[i])].as_py() for i in picked_i]
        fmt = np.flatnonzero((is_resp == flag) & ~is_word & (counts >= min_count) & (counts <= max_df))
        fmt = fmt[np.argsort(-counts[fmt], kind="stable")][:half]
        cand[side] = list(dict.fromkeys(picked + [feat_col[int(i)].as_py() for i in fmt]))
    # One templated chunk puts dozens of equivalent features on top; cap each source's rows so the
    # table shows every chunk with a signature.
    concentrated: list[ConcentratedFeature] = []
    per_source: dict[int, int] = {}
    for i in order:
        s_i = int(top_src[i])
        if per_source.get(s_i, 0) < max_per_source:
            per_source[s_i] = per_source.get(s_i, 0) + 1
            concentrated.append(concentrated_at(int(i)))
        if len(concentrated) >= top:
            break

    # Co-occurrence counts of every candidate pair: one matrix product of example × feature indicators.
    qsets = lk.examples_of("query", cand["query"])
    rsets = lk.examples_of("response", cand["response"])
    qf = [f for f in cand["query"] if len(qsets[f])]
    rf = [f for f in cand["response"] if len(rsets[f])]
    pairs = []
    if qf and rf:
        # in blocks of examples, so memory stays ~100 MB on a 10^6-example mix
        both = np.zeros((len(qf), len(rf)), dtype=np.float64)
        block = 65536
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            qm = np.zeros((hi - lo, len(qf)), dtype=np.float32)
            rm = np.zeros((hi - lo, len(rf)), dtype=np.float32)
            for j, f in enumerate(qf):
                ids = qsets[f]
                qm[ids[np.searchsorted(ids, lo) : np.searchsorted(ids, hi)] - lo, j] = 1.0
            for j, f in enumerate(rf):
                ids = rsets[f]
                rm[ids[np.searchsorted(ids, lo) : np.searchsorted(ids, hi)] - lo, j] = 1.0
            both += qm.T @ rm
        both = np.rint(both).astype(np.int64)
        nq = np.array([len(qsets[f]) for f in qf], dtype=np.float64)
        nr = np.array([len(rsets[f]) for f in rf], dtype=np.float64)
        p = both / nq[:, None]
        lift_m = p / (nr[None, :] / n)
        ok = (both >= min_count) & (p >= min_rate) & (lift_m >= min_lift)
        masks: dict[int, np.ndarray] = {}
        for i, j in zip(*np.nonzero(ok)):
            if qf[i] == rf[j]:
                continue
            if i not in masks:
                masks[i] = np.zeros(n, dtype=bool)
                masks[i][qsets[qf[i]]] = True
            e = rsets[rf[j]]
            e = e[masks[i][e]]
            sc = np.bincount(codes[e], minlength=n_src)
            pairs.append(
                FeaturePair(
                    query_feature=qf[i],
                    response_feature=rf[j],
                    n_query=int(nq[i]),
                    n_response=int(nr[j]),
                    n_both=int(both[i, j]),
                    p_response_given_query=float(p[i, j]),
                    ci=wilson(int(both[i, j]), int(nq[i])),
                    p_response=float(nr[j] / n),
                    lift=float(lift_m[i, j]),
                    source=names[int(sc.argmax())],
                    source_share=float(sc.max() / max(len(e), 1)),
                    score=float(both[i, j]) * math.log(float(lift_m[i, j])),
                )
            )
    # Ties (common: every word of a templated chunk co-occurs with every other) go to format-level features,
    # which name the pattern better than single words.
    words = ("word:", "ngram:")
    pairs.sort(key=lambda p: (-round(p.score, 6), p.query_feature.startswith(words) + p.response_feature.startswith(words),
                              p.query_feature, p.response_feature))
    # One templated chunk yields dozens of equivalent pairs; cap each feature's appearances so the list
    # shows distinct findings.
    chosen: list[FeaturePair] = []
    used: dict[str, int] = {}
    for p in pairs:
        kq, kr = "q|" + p.query_feature, "r|" + p.response_feature
        if used.get(kq, 0) >= max_per_feature or used.get(kr, 0) >= max_per_feature:
            continue
        used[kq] = used.get(kq, 0) + 1
        used[kr] = used.get(kr, 0) + 1
        chosen.append(p)
        if len(chosen) >= top:
            break
    params = dict(top=top, min_count=min_count, min_share=min_share, min_rate=min_rate, min_lift=min_lift,
                  max_df_frac=max_df_frac, pair_candidates=pair_candidates, max_per_feature=max_per_feature,
                  max_per_source=max_per_source)
    return MineResult(n, concentrated, chosen, params, time.perf_counter() - t0)
