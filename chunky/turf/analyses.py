"""The data analyses the paper relies on, as DuckDB queries over a TURF index's Parquet tables:

- `grep`: keyword / regex search with per-source counts, share and lift ("elucidate": 85% codealpaca);
- `cooccur`: P(response pattern | query pattern) vs P(response pattern | not query pattern), per source,
  with Wilson intervals (P("I hope it is correct" | "1." and "2.") = 93%), the lift P(r|q)/P(r) and the risk
  ratio P(r|q)/P(r|not q);

Lift means one thing everywhere: P(B | A) / P(B) (LIFT_SOURCE, LIFT_PAIR below name it in column headers).
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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import numpy as np

from chunky.config import chunky_home
from chunky.errors import ChunkyError
from chunky.turf.hits import wilson

if TYPE_CHECKING:
    import pyarrow as pa

    from chunky.turf.index import TurfIndex

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

    def condition(self, column: str, side: Side) -> tuple[str, list[str]]:
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


def analysis_connection(idx: TurfIndex) -> duckdb.DuckDBPyConnection:
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
    def open(cls, idx: TurfIndex) -> FeatureLookup:
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

    def names_table(self) -> pa.Table:
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


_LOOKUP_BATCH = 1 << 22  # rows of features.parquet decoded at a time while building the lookup


def _encode_features(src: Path) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """(dictionary, feature code int32, is-response bool, example_id int64) of every row of features.parquet.

    Streamed batch by batch: at 1M examples the table holds ~200M rows, and reading it whole as Arrow strings
    (then dictionary-encoding and sorting it) took more than 24 GB; this keeps 13 bytes a row. The dictionary
    lists features in order of first appearance in the file, as one `dictionary_encode` of the whole column
    would (so the lookup's layout does not depend on the batch size)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(src)
    n_rows = pf.metadata.num_rows
    codes = np.empty(n_rows, np.int32)
    is_resp = np.empty(n_rows, bool)
    ex = np.empty(n_rows, np.int64)
    dictionary = pa.array([], pa.string())
    at = 0
    for b in pf.iter_batches(batch_size=_LOOKUP_BATCH, columns=["example_id", "side", "feature"]):
        m = b.num_rows
        enc = b.column("feature").dictionary_encode()
        # the batch's own dictionary -> global codes; features new to this batch are appended in its order
        glob = pc.index_in(enc.dictionary, value_set=dictionary).fill_null(-1).to_numpy(zero_copy_only=False)
        glob = glob.astype(np.int64)
        new = glob < 0
        glob[new] = len(dictionary) + np.arange(int(new.sum()))
        dictionary = pa.concat_arrays([dictionary, enc.dictionary.filter(pa.array(new))])
        codes[at : at + m] = glob[enc.indices.to_numpy(zero_copy_only=False)]
        is_resp[at : at + m] = pc.equal(b.column("side"), "response").fill_null(False).to_numpy(zero_copy_only=False)
        ex[at : at + m] = b.column("example_id").to_numpy()
        at += m
    return dictionary, codes[:at], is_resp[:at], ex[:at]


def _dedupe_sorted(key: np.ndarray, block: int) -> np.ndarray:
    """The distinct values of a sorted array, compacted in place block by block (no second full-size copy)."""
    w = 0
    prev: int | None = None
    for s in range(0, len(key), block):
        blk = key[s : s + block]
        first = blk[0] != prev if prev is not None else True
        prev = int(blk[-1])
        m = np.empty(len(blk), bool)
        m[0] = first
        np.not_equal(blk[1:], blk[:-1], out=m[1:])
        kept = blk[m]  # a copy, so writing over the prefix (w <= s) below is safe
        key[w : w + len(kept)] = kept
        w += len(kept)
    return key[:w]


def _run_starts(key: np.ndarray, span: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(value, start) of each run of equal `key // span` in a sorted array, computed block by block."""
    starts, values = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    prev: int | None = None
    for s in range(0, len(key), block):
        f = key[s : s + block] // span
        ch = np.empty(len(f), bool)
        ch[0] = f[0] != prev if prev is not None else True
        np.not_equal(f[1:], f[:-1], out=ch[1:])
        at = np.flatnonzero(ch)
        starts.append(at + s)
        values.append(f[at])
        prev = int(f[-1])
    return np.concatenate(values), np.concatenate(starts)


def _build_lookup(src: Path, directory: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dictionary, fcode, is_resp, ex = _encode_features(src)
    nf = len(dictionary)
    lo = int(ex.min()) if len(ex) else 0
    span = int(ex.max()) - lo + 1 if len(ex) else 1
    if 2 * max(nf, 1) * span >= 2**63:
        raise ChunkyError(f"{src}: {nf:,} features × {span:,} example ids do not fit the feature lookup's 64-bit keys")
    # One int64 key per row, (side, feature) major and example id minor, built in place of the example ids:
    # one in-place sort then groups each feature's examples in id order (a lexsort of two arrays needed four
    # more arrays as long as the table).
    key = ex
    for s in range(0, len(key), _LOOKUP_BATCH):
        sl = slice(s, s + _LOOKUP_BATCH)
        key[sl] -= lo
        key[sl] += (is_resp[sl].astype(np.int64) * nf + fcode[sl]) * span
    del fcode, is_resp, ex
    key.sort()
    key = _dedupe_sorted(key, _LOOKUP_BATCH)  # a feature listed twice for one example counts once
    uniq, start = _run_starts(key, span, _LOOKUP_BATCH)
    count = np.diff(np.append(start, len(key)))
    for s in range(0, len(key), _LOOKUP_BATCH):  # the keys become the example ids, grouped by feature
        sl = slice(s, s + _LOOKUP_BATCH)
        key[sl] %= span
        key[sl] += lo
    ex = key
    names = pa.table({
        "side": pa.array(np.where(uniq >= nf, "response", "query")),
        "feature": dictionary.take(pa.array(uniq % nf)),
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


def _source_codes(idx: TurfIndex) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(source code of each example, source names, examples per source), from the index's one encoding."""
    sc = idx.source_codes()
    return np.asarray(sc.codes, dtype=np.int64), sc.names, sc.sizes.astype(np.float64)


_LOOKUPS: dict[str, FeatureLookup] = {}
_LOOKUPS_LOCK = threading.Lock()


def feature_lookup(idx: TurfIndex) -> FeatureLookup:
    """The index's FeatureLookup, opened once per process."""
    key = f"{Path(idx.path).resolve()}|{idx.meta.files.get('features.parquet', '')}"
    with _LOOKUPS_LOCK:
        if key not in _LOOKUPS:
            _LOOKUPS[key] = FeatureLookup.open(idx)
        return _LOOKUPS[key]


def _register_feature_sets(con: duckdb.DuckDBPyConnection, idx: TurfIndex, patterns: list[tuple[str, Pattern, str]]) -> None:
    """Feature patterns become small tables of example ids (`_fs_<name>`) the conditions refer to."""
    import pyarrow as pa

    for name, pat, side in patterns:
        if pat.kind == "feature":
            ids = feature_lookup(idx).examples_of(side, [pat.text])[pat.text]
            con.register(f"_fs_{name}", pa.table({"example_id": ids}))


def source_sizes(idx: TurfIndex) -> dict[str, int]:
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
    lift: float  # share / the source's share of the mix = P(source | match) / P(source)


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


def _grep_pattern(
    con: duckdb.DuckDBPyConnection, text: str, sides: list[Side], *, regex: bool, case_sensitive: bool
) -> Pattern:
    """PATTERN as `resolve_pattern` reads it; a feature name (`format:latex`) must exist on one of the searched
    sides (a side without it simply matches nothing)."""
    errors: list[ChunkyError] = []
    for s_ in sides:
        try:
            pat = resolve_pattern(con, text, s_, regex=regex, case_sensitive=case_sensitive, what="PATTERN")
        except ChunkyError as e:
            errors.append(e)
            continue
        if pat.kind == "feature" or len(sides) == 1 or s_ == sides[-1]:
            return pat
    raise errors[-1]


def grep(
    idx: TurfIndex,
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
    sides: list[Side] = ["query", "response"] if side == "both" else [side]  # type: ignore[list-item]
    pat = _grep_pattern(con, pattern, sides, regex=regex, case_sensitive=case_sensitive)
    if pat.kind == "feature":  # the examples having the feature, on each searched side, as in cooccur
        _register_feature_sets(con, idx, [(s_, pat, s_) for s_ in sides])
    sizes = source_sizes(idx)
    qc, qp = pat.condition("query", "query") if "query" in sides else ("FALSE", [])
    rc, rp = pat.condition("response", "response") if "response" in sides else ("FALSE", [])
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
    lift: float | None  # P(r | q) / P(r): the one lift of chunky (see LIFT_PAIR)
    risk_ratio: float | None = None  # P(r | q) / P(r | not q)

    @classmethod
    def from_counts(cls, source: str, n: int, nq: int, nr: int, nqr: int) -> Conditional:
        n_not = n - nq
        r_not = nr - nqr
        p1 = nqr / nq if nq else None
        p0 = r_not / n_not if n_not else None
        base = nr / n if n else 0.0
        lift_ = (p1 / base) if p1 is not None and base else None
        risk = (p1 / p0) if p1 is not None and p0 else None
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
            risk_ratio=risk,
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
    idx: TurfIndex,
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

# Lift, everywhere in chunky: lift(A, B) = P(B | A) / P(B) = P(A and B) / (P(A) P(B)). For a feature in a
# source it is P(source | feature) / P(source); for a pair P(r | q) / P(r). cooccur also reports the risk ratio
# P(r | q) / P(r | not q), under that name.
LIFT_SOURCE = "lift P(src|f)/P(src)"
LIFT_PAIR = "lift P(r|q)/P(r)"
LIFT_MATCH = "lift P(src|match)/P(src)"
LIFT_HITS = "lift P(f|hits)/P(f)"
LIFT_IN_SOURCE = "lift P(r|q,src)/P(r|src)"  # a pair's lift inside one source (ConditionalHabit)

# The kinds of signature a chunk can have, and the feature kinds each one covers. The query side has two: how
# the query is asked (its template: openings, labels, template phrases, formats, question forms) and the words
# it uses; a source's many topical words (a math source's LaTeX commands) would otherwise crowd out a small
# query template of the same source (a fixed opening phrase in 2% of its queries).
SIGNATURE_KINDS = ("query", "query_vocabulary", "opening", "closing", "vocabulary", "format")
_RESPONSE_SIGNATURE = {"opening": "opening", "closing": "closing", "word": "vocabulary", "ngram": "vocabulary",
                       "template": "vocabulary", "format": "format", "length": "format", "script": "format",
                       "language": "format", "question": "format"}
_QUERY_SIGNATURE = {"template": "query", "opening": "query", "format": "query", "question": "query",
                    "word": "query_vocabulary", "ngram": "query_vocabulary"}
_FIXED_KINDS = frozenset({"format", "length", "question", "script", "language"})
NEAR_DUPLICATE = 0.8  # Jaccard overlap of example sets above which two findings are one row
# A feature whose 95% lower bound of P(src | f) is at least this is near-exclusive to its source: a distinct
# chunk of that source however small, shown among its signatures beyond the first `signatures_per_kind`.
EXCLUSIVE_SHARE = 0.9


def signature_kind(side: str, feature: str) -> str | None:
    """Which signature a feature can be (one of SIGNATURE_KINDS), or None."""
    kind = feature.split(":", 1)[0]
    return (_QUERY_SIGNATURE if side == "query" else _RESPONSE_SIGNATURE).get(kind)


def wilson_lower(successes: np.ndarray, n: np.ndarray, z: float = 1.959964) -> np.ndarray:
    """The lower end of the Wilson interval (95%), vectorised; 0 where n = 0."""
    k = np.asarray(successes, dtype=np.float64)
    m = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    p = k / m
    denom = 1 + z * z / m
    centre = (p + z * z / (2 * m)) / denom
    half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / denom
    return np.where(np.asarray(n) > 0, np.maximum(0.0, centre - half), 0.0)


def intersect_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a ∩ b of two sorted arrays of unique example ids, sorted: a binary search of the shorter in the longer
    (np.intersect1d sorts both again, which dominated mine's per-candidate work)."""
    if len(a) > len(b):
        a, b = b, a
    if not len(a):
        return a
    pos = np.minimum(np.searchsorted(b, a), len(b) - 1)
    return a[b[pos] == a]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two sorted arrays of unique example ids."""
    if not len(a) and not len(b):
        return 1.0
    inter = len(intersect_sorted(a, b))
    return inter / (len(a) + len(b) - inter)


def near_duplicates(a: np.ndarray, b: np.ndarray, threshold: float = NEAR_DUPLICATE) -> bool:
    """Do two findings cover nearly the same examples (Jaccard ≥ threshold)? Sizes alone often decide."""
    small, big = sorted((len(a), len(b)))
    if big == 0 or small / big < threshold:
        return False
    return jaccard(a, b) >= threshold


@dataclass
class ConcentratedFeature:
    """A lexical feature over-represented in one source."""

    side: str
    feature: str
    kind: str
    df: int  # examples having it, whole mix
    source: str  # the source it is concentrated in
    count: int  # examples of that source having it
    share: float  # count / df = P(source | feature)
    source_share: float  # the source's share of the mix = P(source)
    lift: float  # share / source_share = P(source | feature) / P(source)
    lift_low: float  # lower end of the lift's 95% interval (Wilson interval of the share / source_share)
    score: float  # ln(lift_low): the ranking statistic (significant and concentrated first)
    signature: str | None = None  # query | opening | closing | vocabulary | format
    same_examples: list[str] = field(default_factory=list)  # same-side features covering nearly the same examples


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
    lift: float  # P(r | q) / P(r)
    source: str  # the source holding most co-occurrences
    source_share: float  # its share of the co-occurrences
    score: float  # ln(lift_low), lift_low = lower end of the CI of P(r | q) / P(r)
    lift_low: float = 0.0
    same_examples: list[str] = field(default_factory=list)  # near-duplicate pairs folded in ("q → r")


@dataclass
class ConditionalHabit:
    """Inside one source, a response format that the examples with a query feature have far more often than
    the source's other examples: a habit conditional on the query ("Use Haskell." → fenced code, "Answer
    tersely." → short answers). Neither a source's own signatures nor the mix-wide pairs show it when the
    format is common elsewhere in the mix (short answers are 30% of it): its lift is taken inside the source."""

    source: str
    query_feature: str
    response_feature: str
    n_source: int  # examples of the source
    n_query: int  # of them, with the query feature
    n_response: int  # of them, with the response feature
    n_both: int
    p_response_given_query: float  # P(r | q, src)
    ci: tuple[float, float]  # its Wilson interval (95%)
    p_response: float  # P(r | src)
    lift: float  # P(r | q, src) / P(r | src)
    lift_low: float  # lower end of the lift's 95% interval
    score: float  # ln(lift_low)
    same_examples: list[str] = field(default_factory=list)  # near-duplicate habits folded in ("q → r")


@dataclass
class SourceSignature:
    """A source's strongest signature of each kind (absent kinds: nothing over-represented enough), and its
    strongest habits conditional on a query feature."""

    source: str
    n: int
    share_of_mix: float
    signatures: dict[str, ConcentratedFeature] = field(default_factory=dict)  # the strongest of each kind
    runners_up: dict[str, list[ConcentratedFeature]] = field(default_factory=dict)  # the next ones, per kind
    conditional: list[ConditionalHabit] = field(default_factory=list)  # strongest first


@dataclass
class MineResult:
    n_examples: int
    concentrated: list[ConcentratedFeature]
    pairs: list[FeaturePair]
    params: dict[str, float] = field(default_factory=dict)  # mine's settings (ints and floats)
    elapsed_s: float = 0.0
    signatures: list[SourceSignature] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _FeatureTable:
    """Per-(feature, source) counts of every feature with df ≥ min_count, from the lookup's CSR."""

    rows: np.ndarray  # row in the lookup's names table
    df: np.ndarray  # int64 [F]
    per: np.ndarray  # int64 [F, S]
    is_resp: np.ndarray  # bool [F]
    is_word: np.ndarray  # bool [F]
    names: list[str]  # feature names [F]
    starts: np.ndarray  # CSR starts [F]


def _feature_table(lk: FeatureLookup, codes: np.ndarray, n_src: int, min_count: int) -> _FeatureTable:
    import pyarrow.compute as pc

    table = lk.names_table()
    counts = table["count"].to_numpy()
    keep = np.flatnonzero(counts >= min_count)
    lens = counts[keep]
    starts = table["start"].to_numpy()[keep]
    per = np.zeros((len(keep), n_src), np.int64)
    # Counted a block of features at a time (~4M example ids each): at 1M examples the kept features hold
    # ~200M example ids, and gathering them all at once took several int64 arrays of that length (GBs each).
    ends = np.cumsum(lens)
    b0 = 0
    while b0 < len(keep):
        b1 = max(b0 + 1, int(np.searchsorted(ends, (ends[b0 - 1] if b0 else 0) + _LOOKUP_BATCH, side="right")))
        bl, bs = lens[b0:b1], starts[b0:b1]
        entry = np.repeat(np.arange(b1 - b0), bl)
        pos = np.repeat(bs - (np.cumsum(bl) - bl), bl) + np.arange(int(bl.sum()))
        per[b0:b1] = np.bincount(entry * n_src + codes[np.asarray(lk.example_ids[pos], dtype=np.int64)],
                                 minlength=(b1 - b0) * n_src).reshape(b1 - b0, n_src)
        b0 = b1
    sub = table.take(pa_indices(keep))
    feat_col = sub["feature"]
    return _FeatureTable(
        rows=keep,
        df=lens.astype(np.int64),
        per=per.astype(np.int64),
        is_resp=pc.equal(sub["side"], "response").to_numpy(zero_copy_only=False),
        is_word=pc.or_(pc.starts_with(feat_col, "word:"), pc.starts_with(feat_col, "ngram:")).to_numpy(zero_copy_only=False),
        names=[str(x) for x in feat_col.to_pylist()],
        starts=starts.astype(np.int64),
    )


def pa_indices(ix: np.ndarray) -> pa.Array:
    import pyarrow as pa

    return pa.array(np.asarray(ix, dtype=np.int64))


def mine(
    idx: TurfIndex,
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
    signatures_per_kind: int = 3,
    max_signatures_per_kind: int = 6,
) -> MineResult:
    """Rank a mix's chunky correlations without a failure in hand.

    Concentrated features: df ≥ min_count, ≥ min_share of them in one source; ranked by the lower end of the
    lift's 95% interval (ln of it is `score`), so a 60-example word at 94% in a 2% source ranks with a
    7,000-example template, and a handful of examples cannot rank on luck. Features covering nearly the same
    examples (Jaccard ≥ 0.8: `format:boxed` and `word:boxed`) are one row; each source has at most
    `max_per_source` rows. Per source, its strongest signature of each kind (query template, query vocabulary,
    opening, closing, vocabulary, format), with up to `signatures_per_kind` - 1 runners-up (distinct examples)
    each, and up to `max_signatures_per_kind` in all when the further ones are near-exclusive to the source
    (EXCLUSIVE_SHARE): a source's distinct chunks, not only its largest. Per source, its strongest habits
    conditional on a query feature (`ConditionalHabit`, up to `signatures_per_kind`): a format-level response
    feature far more frequent, inside the source, among the examples whose query has the feature.
    Pairs: among candidate features per side with df in [min_count, max_df_frac · N] — the most
    concentrated of each source (at least 30 per source), every format-level feature, the most frequent other
    non-word features, and for each format-level response feature the query features most over-represented
    among its examples — pairs seen together ≥ min_count times with P(r | q) ≥ min_rate and lift ≥ min_lift,
    ranked by the lower end of the lift's interval; a response feature repeating a word of the query feature
    is skipped; near-duplicate pairs are one row; each feature appears at most `max_per_feature` times and each
    source at most max(`max_per_source`, top / 5) times."""
    t0 = time.perf_counter()
    codes, names, src_sizes = _source_codes(idx)
    n = int(src_sizes.sum())
    params = dict(top=top, min_count=min_count, min_share=min_share, min_rate=min_rate, min_lift=min_lift,
                  max_df_frac=max_df_frac, pair_candidates=pair_candidates, max_per_feature=max_per_feature,
                  max_per_source=max_per_source, signatures_per_kind=signatures_per_kind,
                  max_signatures_per_kind=max_signatures_per_kind)
    if n == 0:
        return MineResult(0, [], [], params, 0.0)
    lk = feature_lookup(idx)
    n_src = len(names)
    mix_share = src_sizes / n
    ft = _feature_table(lk, codes, n_src, min_count)

    def ids_of(i: int) -> np.ndarray:
        return np.asarray(lk.example_ids[int(ft.starts[i]) : int(ft.starts[i]) + int(ft.df[i])], dtype=np.int64)

    # lift of every (feature, source) and the lower end of its interval
    df2 = ft.df[:, None].astype(np.float64)
    lift_all = (ft.per / np.maximum(df2, 1)) / mix_share[None, :]
    share_low_all = wilson_lower(ft.per, np.broadcast_to(ft.df[:, None], ft.per.shape))  # of P(src | f)
    low_all = share_low_all / mix_share[None, :]
    top_src = ft.per.argmax(axis=1)
    rows_i = np.arange(len(ft.df))
    c_top = ft.per[rows_i, top_src]
    share = c_top / np.maximum(ft.df, 1)
    low = low_all[rows_i, top_src]
    good = np.flatnonzero((share >= min_share) & (low > 1.0))
    score = np.round(np.log(np.maximum(low[good], 1e-12)), 6)
    # strongest first; ties to format-level features, which name a pattern better than words
    order = good[np.lexsort((ft.is_word[good], -score))]

    def finding(i: int, s: int) -> ConcentratedFeature:
        f = ft.names[i]
        side = "response" if ft.is_resp[i] else "query"
        return ConcentratedFeature(
            side, f, f.split(":", 1)[0], int(ft.df[i]), names[s], int(ft.per[i, s]),
            float(ft.per[i, s] / max(ft.df[i], 1)), float(mix_share[s]), float(lift_all[i, s]),
            float(low_all[i, s]), float(math.log(max(low_all[i, s], 1e-12))), signature_kind(side, f),
        )

    # ---- the ranked list: near-duplicates folded into one row, at most max_per_source rows per source
    concentrated: list[ConcentratedFeature] = []
    reps: dict[tuple[int, bool], list[tuple[np.ndarray, ConcentratedFeature]]] = {}
    shown: dict[int, int] = {}
    scan_after_full = 2000  # keep folding near-duplicates into the shown rows a little past the last one
    scanned_after = 0
    for i in order:
        i = int(i)
        s = int(top_src[i])
        key = (s, bool(ft.is_resp[i]))  # a query template and the response style it brings are two findings
        mine_ids = ids_of(i)
        dup = next((c for ids, c in reps.get(key, []) if near_duplicates(ids, mine_ids)), None)
        if dup is not None:
            dup.same_examples.append(ft.names[i])
            continue
        if len(concentrated) >= top:
            scanned_after += 1
            if scanned_after > scan_after_full:
                break
            continue
        if shown.get(s, 0) >= max_per_source:
            continue
        row = finding(i, s)
        reps.setdefault(key, []).append((mine_ids, row))
        shown[s] = shown.get(s, 0) + 1
        concentrated.append(row)

    # ---- per source, its strongest signature of each kind
    kinds = np.array([SIGNATURE_KINDS.index(k) if (k := signature_kind("response" if r else "query", f)) else -1
                      for f, r in zip(ft.names, ft.is_resp)], dtype=np.int64)
    ok_all = (ft.per >= min_count) & (low_all > 1.0)
    signatures: list[SourceSignature] = []
    for s in np.argsort(-src_sizes, kind="stable"):
        s = int(s)
        sig = SourceSignature(names[s], int(src_sizes[s]), float(mix_share[s]))
        for k_i, kname in enumerate(SIGNATURE_KINDS):
            cand = np.flatnonzero(ok_all[:, s] & (kinds == k_i))
            if not len(cand):
                continue
            ranked = cand[np.lexsort((ft.is_word[cand], -np.round(low_all[cand, s], 6)))]
            picked: list[tuple[np.ndarray, ConcentratedFeature]] = []
            for i in ranked[:200]:
                ids = ids_of(int(i))
                dup = next((c for other, c in picked if near_duplicates(other, ids)), None)
                if dup is not None:
                    dup.same_examples.append(ft.names[int(i)])
                elif len(picked) < max(1, signatures_per_kind) or (
                        len(picked) < max_signatures_per_kind and share_low_all[i, s] >= EXCLUSIVE_SHARE):
                    picked.append((ids, finding(int(i), s)))
            sig.signatures[kname] = picked[0][1]
            if len(picked) > 1:
                sig.runners_up[kname] = [c for _, c in picked[1:]]
        signatures.append(sig)

    # ---- pairs. Candidates: the most source-concentrated features of each side (chunky correlations ride on
    # chunks) plus the most frequent format-level features; all words × all words would be ~10^8 pairs.
    max_df = max_df_frac * n
    half = max(1, pair_candidates // 2)
    cand_i: dict[str, list[int]] = {}
    per_src = max(30, half // n_src)
    is_fixed = np.array([f.split(":", 1)[0] in _FIXED_KINDS for f in ft.names], dtype=bool)
    for side, flag in (("query", False), ("response", True)):
        side_order = order[(ft.is_resp[order] == flag) & (ft.df[order] <= max_df)]
        # an equal share per source: ranked by lift, the smallest sources would take every slot
        concentrated_i = np.concatenate([side_order[top_src[side_order] == s_i][:per_src] for s_i in range(n_src)]) \
            if len(side_order) else side_order
        # every format-level feature (a small fixed set: formats, lengths, question forms, scripts), then the
        # most frequent other non-word features (openings, closings, labels)
        fixed = np.flatnonzero((ft.is_resp == flag) & is_fixed & (ft.df <= max_df))
        fmt = np.flatnonzero((ft.is_resp == flag) & ~ft.is_word & ~is_fixed & (ft.df <= max_df))
        fmt = np.concatenate([fixed, fmt[np.argsort(-ft.df[fmt], kind="stable")][: max(0, half - len(fixed))]])
        cand_i[side] = list(dict.fromkeys([int(x) for x in concentrated_i] + [int(x) for x in fmt]))
    pairs = _pairs(n, codes, names, {side: [(ft.names[i], ids_of(i)) for i in cand_i[side]] for side in cand_i},
                   min_count=min_count, min_rate=min_rate, min_lift=min_lift)
    fixed_resp = [i for i in cand_i["response"] if is_fixed[i]]  # a format habit conditional on the query
    qx = _query_index(ft, lk.example_ids, n, max_df)
    pairs += _response_driven_pairs(ft, qx, ids_of, codes, names, n, fixed_resp,
                                    {(p.row.query_feature, p.row.response_feature) for p in pairs},
                                    min_count=min_count, min_rate=min_rate, min_lift=min_lift)
    # pairs of one source are more often distinct findings than its concentrated features: a looser cap
    chosen = _choose_pairs(pairs, top, max_per_feature, max(max_per_source, top // 5))
    habits = _conditional_habits(ft, qx, ids_of, codes, names, src_sizes, np.flatnonzero(ft.is_resp & is_fixed),
                                 min_count=min_count, min_rate=min_rate, min_lift=min_lift,
                                 per_source=max(1, signatures_per_kind), max_per_source=max_signatures_per_kind,
                                 max_per_feature=max_per_feature)
    for sig in signatures:
        sig.conditional = habits.get(sig.source, [])
    return MineResult(n, concentrated, chosen, params, time.perf_counter() - t0, signatures)


@dataclass
class _Pair:
    row: FeaturePair
    both_ids: np.ndarray


def _pairs(
    n: int,
    codes: np.ndarray,
    names: list[str],
    cand: dict[str, list[tuple[str, np.ndarray]]],
    *,
    min_count: int,
    min_rate: float,
    min_lift: float,
) -> list[_Pair]:
    """Co-occurrence counts of every candidate pair (one matrix product of example × feature indicators,
    in blocks of examples so memory stays ~100 MB on a 10^6-example mix), filtered and scored."""
    from chunky.turf.lexical import echoes

    qf, rf = cand["query"], cand["response"]
    if not qf or not rf:
        return []
    both = np.zeros((len(qf), len(rf)), dtype=np.float64)
    block = 65536
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        qm = np.zeros((hi - lo, len(qf)), dtype=np.float32)
        rm = np.zeros((hi - lo, len(rf)), dtype=np.float32)
        for j, (_, ids) in enumerate(qf):
            qm[ids[np.searchsorted(ids, lo) : np.searchsorted(ids, hi)] - lo, j] = 1.0
        for j, (_, ids) in enumerate(rf):
            rm[ids[np.searchsorted(ids, lo) : np.searchsorted(ids, hi)] - lo, j] = 1.0
        both += qm.T @ rm
    both_i = np.rint(both).astype(np.int64)
    nq = np.array([len(ids) for _, ids in qf], dtype=np.float64)
    nr = np.array([len(ids) for _, ids in rf], dtype=np.float64)
    p = both_i / nq[:, None]
    base = nr[None, :] / n
    lift_m = p / base
    ok = (both_i >= min_count) & (p >= min_rate) & (lift_m >= min_lift)
    low_m = wilson_lower(both_i, np.broadcast_to(nq[:, None], both_i.shape)) / base
    out: list[_Pair] = []
    for i, j in zip(*np.nonzero(ok)):
        qname, qids = qf[i]
        rname, rids = rf[j]
        if qname == rname or echoes(qname, rname):
            continue
        e = intersect_sorted(qids, rids)
        sc = np.bincount(codes[e], minlength=len(names))
        out.append(_Pair(FeaturePair(
            query_feature=qname, response_feature=rname, n_query=int(nq[i]), n_response=int(nr[j]),
            n_both=int(both_i[i, j]), p_response_given_query=float(p[i, j]), ci=wilson(int(both_i[i, j]), int(nq[i])),
            p_response=float(nr[j] / n), lift=float(lift_m[i, j]), source=names[int(sc.argmax())],
            source_share=float(sc.max() / max(len(e), 1)), score=float(math.log(max(low_m[i, j], 1e-12))),
            lift_low=float(low_m[i, j]),
        ), e))
    return out


@dataclass
class _QueryIndex:
    """Each example's query features (rows of the feature table with df ≤ max_df), as a CSR over example ids:
    the query features of example e are `rows[q_of[offsets[e]:offsets[e + 1]]]`. Counting the query features
    over the examples of a response feature is then one gather and one bincount."""

    rows: np.ndarray  # feature-table rows of the query features [Q]
    q_of: np.ndarray  # int32, local query-feature index of each (example, feature) entry, grouped by example
    offsets: np.ndarray  # int64 [N + 1]


def _query_index(ft: _FeatureTable, example_ids: np.ndarray, n: int, max_df: float) -> _QueryIndex:
    import scipy.sparse as sp

    q_rows = np.flatnonzero(~ft.is_resp & (ft.df <= max_df))
    lens = ft.df[q_rows]
    # every (query feature, example) of these features, gathered from the lookup's CSR in one read
    pos = np.arange(int(lens.sum()), dtype=np.int64)
    pos += np.repeat(ft.starts[q_rows] - (np.cumsum(lens) - lens), lens)
    ex = np.asarray(example_ids[pos], dtype=np.int32 if n < 2**31 else np.int64)
    del pos
    # feature → examples is a CSR; example → features is its transpose. scipy's CSR → CSC conversion is a
    # counting sort (linear, in C) and keeps each example's features in ascending order; a comparison sort
    # of example·Q + feature keys gave the same arrays in ~5× the time (13 s of mine's 26 s at 1M examples).
    indptr = np.concatenate([np.zeros(1, np.int64), np.cumsum(lens, dtype=np.int64)])
    by_feature = sp.csr_matrix((np.ones(len(ex), np.int8), ex, indptr), shape=(len(q_rows), n))
    del ex
    by_example = by_feature.tocsc()
    del by_feature
    return _QueryIndex(q_rows, by_example.indices.astype(np.int32, copy=False),
                       by_example.indptr.astype(np.int64, copy=False))


def _query_features_of(qx: _QueryIndex, examples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local query-feature index, the example) of every query feature of `examples`."""
    starts, ends = qx.offsets[examples], qx.offsets[examples + 1]
    lens = ends - starts
    pos = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
    return qx.q_of[pos], np.repeat(examples, lens)


def _response_driven_pairs(
    ft: _FeatureTable,
    qx: _QueryIndex,
    ids_of: Callable[[int], np.ndarray],
    codes: np.ndarray,
    names: list[str],
    n: int,
    response_cands: list[int],
    known: set[tuple[str, str]],
    *,
    min_count: int,
    min_rate: float,
    min_lift: float,
    per_response: int = 10,
    max_response_df: float = 0.05,
) -> list[_Pair]:
    """Pairs whose query feature is no candidate of its own: a format habit conditional on a query feature of a
    chunk (a language named in a coding source's query → fenced code) rides on a feature too small to be among
    the source's most concentrated. For each format-level response feature (df ≤ max_response_df · N), count every
    query feature over its examples (the query index) and keep the `per_response` with the highest lift lower
    bound."""
    from chunky.turf.lexical import echoes

    q_rows = qx.rows
    if not len(q_rows) or not response_cands:
        return []
    nq = ft.df[q_rows].astype(np.float64)
    out: list[_Pair] = []
    for r in response_cands:
        if ft.df[r] > max_response_df * n or ft.df[r] < min_count:
            continue
        e = ids_of(int(r))
        q_local, _ = _query_features_of(qx, e)
        if not len(q_local):
            continue
        both = np.bincount(q_local, minlength=len(q_rows))
        p = both / nq
        base = ft.df[r] / n
        ok = np.flatnonzero((both >= min_count) & (p >= min_rate) & (p / base >= min_lift))
        if not len(ok):
            continue
        low = wilson_lower(both[ok], nq[ok]) / base
        rname = ft.names[int(r)]
        taken = 0
        for j in ok[np.argsort(-low, kind="stable")]:
            qname = ft.names[int(q_rows[j])]
            if (qname, rname) in known or qname == rname or echoes(qname, rname):
                continue
            qids = ids_of(int(q_rows[j]))
            both_ids = intersect_sorted(qids, e)
            sc = np.bincount(codes[both_ids], minlength=len(names))
            lo = float(wilson(int(both[j]), int(nq[j]))[0] / base)
            out.append(_Pair(FeaturePair(
                query_feature=qname, response_feature=rname, n_query=int(nq[j]), n_response=int(ft.df[r]),
                n_both=int(both[j]), p_response_given_query=float(p[j]), ci=wilson(int(both[j]), int(nq[j])),
                p_response=float(base), lift=float(p[j] / base), source=names[int(sc.argmax())],
                source_share=float(sc.max() / max(len(both_ids), 1)), score=math.log(max(lo, 1e-12)), lift_low=lo,
            ), both_ids))
            known.add((qname, rname))
            taken += 1
            if taken >= per_response:
                break
    return out


def _conditional_habits(
    ft: _FeatureTable,
    qx: _QueryIndex,
    ids_of: Callable[[int], np.ndarray],
    codes: np.ndarray,
    names: list[str],
    src_sizes: np.ndarray,
    response_rows: np.ndarray,
    *,
    min_count: int,
    min_rate: float,
    min_lift: float,
    per_source: int,
    max_per_source: int,
    max_per_feature: int,
) -> dict[str, list[ConditionalHabit]]:
    """Per source, its strongest format habits conditional on a query feature (`ConditionalHabit`), strongest
    lift lower bound first (inside the source), near-duplicates (nearly the same examples) folded into one.

    A lift of at least min_lift inside a source needs P(r | src) ≤ 1 / min_lift and P(q | src) ≤ 1 / min_lift
    (P(r | src) ≥ P(r | q, src) P(q | src)), so a feature present in most of a source is no candidate there: it
    is the source's own signature, not a habit conditional on its queries. Counted per response feature over its
    examples in the sources where it can qualify: one gather of their query features, one bincount per
    (query feature, source). A source shows up to `per_source` habits, and up to `max_per_source` when the further
    ones are near-deterministic (the lower bound of P(r | q, src) ≥ EXCLUSIVE_SHARE); a response feature at most
    `max_per_feature` times (its strongest triggers); a format the query names (`word:html` → `format:html`)
    is instruction following, not a habit (`lexical.echoes`)."""
    from chunky.turf.lexical import echoes

    n_src = len(names)
    q_rows = qx.rows
    out: dict[str, list[ConditionalHabit]] = {}
    if not len(q_rows) or not len(response_rows):
        return out
    nq_s = ft.per[q_rows]  # [Q, S]: examples of each source whose query has the feature
    q_ok = (nq_s >= min_count) & (nq_s * min_lift <= src_sizes[None, :])
    # per source: (score, is the query feature a word, query feature (local), response row, both, n_r in source)
    cands: dict[int, list[tuple[float, bool, int, int, int, int]]] = {}
    for r in response_rows:
        r = int(r)
        e = ids_of(r)
        src_e = codes[e]
        nr_s = np.bincount(src_e, minlength=n_src)
        eligible = (nr_s >= min_count) & (nr_s * min_lift <= src_sizes)
        if not eligible.any():
            continue
        e = e[eligible[src_e]]
        q_local, ex = _query_features_of(qx, e)
        both = np.bincount(q_local.astype(np.int64) * n_src + codes[ex], minlength=len(q_rows) * n_src)
        both = both.reshape(len(q_rows), n_src)
        qi, si = np.nonzero((both >= min_count) & q_ok & eligible[None, :])
        if not len(qi):
            continue
        k = both[qi, si]
        p = k / nq_s[qi, si]
        base = nr_s[si] / src_sizes[si]
        ok = (p >= min_rate) & (p / base >= min_lift)
        qi, si, k, base = qi[ok], si[ok], k[ok], base[ok]
        score = np.round(np.log(wilson_lower(k, nq_s[qi, si]) / base), 6)
        for j in range(len(qi)):
            qname = ft.names[int(q_rows[qi[j]])]
            if qname == ft.names[r] or echoes(qname, ft.names[r]):  # the query's own format, or one it names
                continue
            cands.setdefault(int(si[j]), []).append(
                (float(score[j]), bool(ft.is_word[q_rows[qi[j]]]), int(qi[j]), r, int(k[j]), int(nr_s[si[j]])))
    for s, cs in cands.items():
        # strongest first; ties to format-level query features, then by name (the same result every run)
        cs.sort(key=lambda c: (-c[0], c[1], ft.names[int(q_rows[c[2]])], ft.names[c[3]]))
        shown: list[tuple[np.ndarray, ConditionalHabit]] = []
        per_response: dict[int, int] = {}
        for _, _, qi_, r_, n_both, n_r in cs[:200]:  # a little past the last shown one, to fold its near-duplicates
            qname, rname = ft.names[int(q_rows[qi_])], ft.names[r_]
            qids = ids_of(int(q_rows[qi_]))
            both_ids = intersect_sorted(qids[codes[qids] == s], ids_of(r_))
            dup = next((h for ids, h in shown if near_duplicates(ids, both_ids)), None)
            n_s, n_q = int(src_sizes[s]), int(nq_s[qi_, s])
            if dup is not None:
                dup.same_examples.append(f"{qname} → {rname}")
            elif per_response.get(r_, 0) < max_per_feature and (
                    len(shown) < per_source
                    or (len(shown) < max_per_source and wilson(n_both, n_q)[0] >= EXCLUSIVE_SHARE)):
                per_response[r_] = per_response.get(r_, 0) + 1
                p_, base_ = n_both / n_q, n_r / n_s
                low_ = wilson(n_both, n_q)[0] / base_
                shown.append((both_ids, ConditionalHabit(
                    source=names[s], query_feature=qname, response_feature=rname, n_source=n_s, n_query=n_q,
                    n_response=n_r, n_both=n_both, p_response_given_query=p_, ci=wilson(n_both, n_q), p_response=base_,
                    lift=p_ / base_, lift_low=low_, score=math.log(max(low_, 1e-12)),
                )))
        out[names[s]] = [h for _, h in shown]
    return out


def _choose_pairs(pairs: list[_Pair], top: int, max_per_feature: int, max_per_source: int) -> list[FeaturePair]:
    """The shown pairs: strongest first (ties to format-level features, which name a pattern better than single
    words), near-duplicates (nearly the same co-occurring examples) folded into one row, each feature at most
    `max_per_feature` times and each main source at most `max_per_source` times, so the list shows distinct
    findings rather than one templated chunk's dozens of equivalent pairs."""
    words = ("word:", "ngram:")
    pairs.sort(key=lambda p: (-round(p.row.score, 6),
                              p.row.query_feature.startswith(words) + p.row.response_feature.startswith(words),
                              p.row.query_feature, p.row.response_feature))
    chosen: list[_Pair] = []
    by_source: dict[str, list[_Pair]] = {}  # near-duplicates share their examples, hence their main source
    used: dict[str, int] = {}
    per_source: dict[str, int] = {}
    for p in pairs:
        dup = next((c for c in by_source.get(p.row.source, []) if near_duplicates(c.both_ids, p.both_ids)), None)
        if dup is not None:
            dup.row.same_examples.append(f"{p.row.query_feature} → {p.row.response_feature}")
            continue
        if len(chosen) >= top:
            continue
        kq, kr = "q|" + p.row.query_feature, "r|" + p.row.response_feature
        if used.get(kq, 0) >= max_per_feature or used.get(kr, 0) >= max_per_feature:
            continue
        if per_source.get(p.row.source, 0) >= max_per_source:
            continue
        used[kq] = used.get(kq, 0) + 1
        used[kr] = used.get(kr, 0) + 1
        per_source[p.row.source] = per_source.get(p.row.source, 0) + 1
        chosen.append(p)
        by_source.setdefault(p.row.source, []).append(p)
    return [c.row for c in chosen]
