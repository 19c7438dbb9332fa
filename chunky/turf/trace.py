"""TURF attribution: trace a failing (query, response) to its trigger and the training chunks behind it.

Two channels over one index (docs/ARCHITECTURE.md, paper §4.1 and App. D.1):

- LLM channel (paper): a blind judge lists 10 attributes of the response without the rubric; an informed
  judge picks the top-3 crux; for each crux the k nearest training *response attributes* (FAISS) give a
  retrieved set; hit counts per *query cluster* over that set; the failing query's attributes are assigned
  to their nearest centroids and the trigger is the attribute whose cluster has the most hits (lift against
  the cluster's base rate is reported too, since raw counts favour big clusters).
- Lexical channel (no LLM calls): groups of training examples — the k whose responses are nearest to the
  failing response (and to each crux, when there is one), and those sharing one of the failing response's
  distinctive lexical features (an opening, a closing line, an n-gram) — and which lexical features of the
  failing query are over-represented among each group's queries: hits, lift, and the log-odds with an
  informative Dirichlet prior (Monroe et al. 2008), ranked by the lower end of its 95% interval; overall
  and per source.

The output reads "When the model sees [trigger], it [behaviour], causing [violation]", with hit counts,
ranked clusters / features, the sources behind the hits (share and lift against the mix) and examples.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar, get_args, get_origin, get_type_hints

import numpy as np

from chunky.errors import ChunkyError, ConfigError, ModelError, StructuredOutputError
from chunky.turf.hits import ExampleClusters, HitCounts, lift, lift_lower, log_odds_bound, log_odds_z

TRACE_FORMAT = "chunky-trace"
TRACE_VERSION = 1

# ============================================================================================ records


@dataclass
class SourceShare:
    """A source behind a set of hits: its share of the hits against its share of the mix."""

    source: str
    hits: int
    share: float  # hits / all hits
    mix_share: float  # the source's examples / all examples
    lift: float  # share / mix_share


@dataclass
class TrainingExample:
    example_id: int
    id: str
    source: str
    query: str
    response: str
    similarity: float  # cosine of the retrieved vector to the crux / response
    matched: str = ""  # the retrieved response attribute (LLM channel)


@dataclass
class ClusterHit:
    cluster: int
    summary: str
    hits: int
    total: int
    size: int  # examples whose query has the cluster, whole mix
    base_rate: float
    lift: float  # P(cluster | hits) / P(cluster)
    lift_low: float = 0.0  # lower end of the lift's 95% interval


@dataclass
class QueryAttribute:
    """An attribute of the failing query, assigned to its nearest query cluster."""

    text: str
    cluster: int
    cluster_summary: str
    similarity: float
    hits: int
    lift: float  # P(cluster | hits) / P(cluster)
    lift_low: float = 0.0  # lower end of the lift's 95% interval

    @property
    def stands_out(self) -> bool:
        """Over-represented beyond chance: lift > 1 with a 95% interval above 1."""
        return self.hits > 0 and self.lift > 1.0 and self.lift_low > 1.0


@dataclass
class CruxTrace:
    crux: str
    k: int  # retrieved response attributes
    trigger: QueryAttribute | None
    query_attributes: list[QueryAttribute]  # ranked: most hits first
    clusters: list[ClusterHit]  # the clusters with most hits overall
    sources: list[SourceShare]  # sources of all retrieved examples
    trigger_sources: list[SourceShare]  # sources of the retrieved examples in the trigger's cluster
    examples: list[TrainingExample]  # retrieved examples in the trigger's cluster
    statement: str


@dataclass
class LLMChannel:
    blind_attributes: list[str]
    crux: list[str]
    query_attributes: list[str]
    search: str  # exact | ivf
    traces: list[CruxTrace]


@dataclass
class FeatureHit:
    """A lexical feature of the failing query among the queries of the retrieved examples."""

    feature: str
    kind: str
    hits: int  # retrieved examples whose query has it
    total: int  # retrieved examples
    df: int  # examples having it, whole mix
    base_rate: float
    lift: float  # P(feature | hits) / P(feature)
    log_odds: float
    z: float
    sources: list[SourceShare]  # the sources of its hits
    lower: float = 0.0  # lower end of the log-odds' 95% interval: the ranking statistic
    lift_low: float = 0.0  # lower end of the lift's 95% interval

    def stands_out(self, min_hits: int = 1) -> bool:
        """Over-represented beyond chance: at least min_hits, lift > 1 with a 95% interval above 1."""
        return self.hits >= min_hits and self.lift > 1.0 and self.lift_low > 1.0


@dataclass
class LexicalAnchor:
    anchor: str  # "response" / "crux" (embedding neighbours) or "response feature" (exact feature match)
    text: str
    k: int
    trigger: FeatureHit | None  # the strongest query feature that stands out (None: none does)
    features: list[FeatureHit]  # the failing query's features, most significant first
    sources: list[SourceShare]  # sources of the retrieved examples
    examples: list[TrainingExample]  # nearest retrieved examples having the trigger feature
    statement: str
    carries_violation: bool = False  # a response feature the rubric's detector fires on (see trace_response_features)


@dataclass
class LexicalChannel:
    query_features: list[str]  # the failing query's features known to the index
    unseen_features: int  # features of the failing query the index never saw
    anchors: list[LexicalAnchor]


@dataclass
class TraceResult:
    """One attribution. Saved as JSON (RUN/traces/<candidate_id>.json or IDX/traces/<id>.json)."""

    id: str
    created_at: str
    index: str
    query: str
    response: str
    k: int
    statement: str
    rubric: str | None = None
    violation: str | None = None
    judge: str | None = None
    candidate_id: int | None = None
    run: str | None = None
    score: float | None = None
    llm: LLMChannel | None = None
    lexical: LexicalChannel | None = None
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    format: str = TRACE_FORMAT
    version: int = TRACE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TraceResult":
        if d.get("format", TRACE_FORMAT) != TRACE_FORMAT:
            raise ChunkyError(f"not a chunky trace: field 'format' is {d.get('format')!r}")
        return _build(cls, d)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> "TraceResult":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ChunkyError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        except (KeyError, TypeError) as e:
            raise ChunkyError(f"{path}: not a chunky trace ({e})") from None


T = TypeVar("T")


def _build(cls: type[T], d: Any) -> T:
    """Rebuild a dataclass tree from its asdict() form, following the type hints."""
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in d:
            kwargs[f.name] = _value(hints[f.name], d[f.name])
    return cls(**kwargs)


def _value(tp: Any, v: Any) -> Any:
    if v is None:
        return None
    origin = get_origin(tp)
    args = get_args(tp)
    if is_dataclass(tp):
        return _build(tp, v)
    if origin is list:
        return [_value(args[0], x) for x in v]
    if origin is tuple:
        return tuple(v)
    if origin is dict:
        return dict(v)
    if args and type(None) in args:  # X | None
        inner = [a for a in args if a is not type(None)][0]
        return _value(inner, v)
    return v


# ============================================================================================ search

IVF_THRESHOLD = 2_000_000  # above this many vectors, exact search costs more than an IVF index
_ADD_CHUNK = 262_144


class VectorSearch:
    """Inner-product (cosine: rows are L2-normalised) k-NN over one embedding matrix with FAISS."""

    def __init__(self, matrix: np.ndarray, *, exact: bool | None = None, cache_file: Path | None = None):
        import faiss

        self.n = int(matrix.shape[0])
        self.d = int(matrix.shape[1])
        use_ivf = exact is False or (exact is None and self.n > IVF_THRESHOLD)
        self.kind = "ivf" if use_ivf and self.n >= 64 else "exact"
        if self.kind == "exact":
            self.index = faiss.IndexFlatIP(self.d)
            self._add(self.index, matrix)
        else:
            self.index = self._ivf(matrix, cache_file)

    def _add(self, index: Any, matrix: np.ndarray) -> None:
        # In chunks: the matrix may be a float16 memmap larger than we want to convert at once.
        for s in range(0, self.n, _ADD_CHUNK):
            index.add(np.ascontiguousarray(matrix[s : s + _ADD_CHUNK], dtype=np.float32))

    def _ivf(self, matrix: np.ndarray, cache_file: Path | None) -> Any:
        import faiss

        nlist = max(1, min(int(4 * math.sqrt(self.n)), self.n // 39))
        nprobe = max(8, nlist // 16)
        if cache_file is not None and cache_file.exists():
            index = faiss.read_index(str(cache_file))
            if index.ntotal == self.n and index.d == self.d:
                index.nprobe = nprobe
                return index
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.d), self.d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(self.n, size=min(self.n, nlist * 64), replace=False))
        index.train(np.ascontiguousarray(matrix[sample], dtype=np.float32))
        self._add(index, matrix)
        index.nprobe = nprobe
        if cache_file is not None:
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache_file.with_name(cache_file.name + ".tmp")
                faiss.write_index(index, str(tmp))
                tmp.replace(cache_file)
            except OSError:
                pass  # a read-only index still traces; it just rebuilds the IVF next time
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [q, k'], sims float32 [q, k']) with k' = min(k, n)."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(0, min(int(k), self.n))
        if k == 0:
            return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
        sims, ids = self.index.search(q, k)
        return ids.astype(np.int64), sims.astype(np.float32)


_CACHE: dict[tuple[str, str], Any] = {}
_CACHE_LOCK = threading.Lock()


def _cached(idx: Any, name: str, make: Callable[[], T]) -> T:
    """Per-process memo keyed by the index path and its index.json timestamp, so tracing many findings
    against one index loads each table and builds each FAISS index once."""
    stamp = json.dumps(idx.meta.files, sort_keys=True) + idx.meta.created_at
    key = (f"{Path(idx.path).resolve()}|{hash(stamp)}", name)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    value = make()
    with _CACHE_LOCK:
        _CACHE[key] = value
    return value


def _searcher(idx: Any, name: str, exact: bool | None) -> VectorSearch:
    def make() -> VectorSearch:
        matrix = {
            "response_attr": idx.response_attr_emb,
            "response_text": idx.response_text_emb,
            "centroids": idx.centroids,
        }[name]()
        digest = idx.meta.files.get(f"emb/{name}.npy", "")[:12] or "nodigest"
        return VectorSearch(matrix, exact=exact, cache_file=Path(idx.path) / "cache" / f"{name}.{digest}.ivf.faiss")

    return _cached(idx, f"search:{name}:{exact}", make)


# ============================================================================================ index data


@dataclass
class _Sources:
    codes: np.ndarray  # int32 [N], source code of each example
    names: list[str]
    sizes: np.ndarray  # int64 [n_sources]

    @property
    def n(self) -> int:
        return int(self.sizes.sum())

    def shares(self, example_ids: np.ndarray, top: int = 8) -> list[SourceShare]:
        ids = np.asarray(example_ids, dtype=np.int64)
        if not len(ids):
            return []
        counts = np.bincount(self.codes[ids], minlength=len(self.names))
        total = int(counts.sum())
        out = []
        for c in np.argsort(-counts, kind="stable")[:top]:
            if counts[c] == 0:
                break
            share = counts[c] / total
            mix = self.sizes[c] / self.n
            out.append(SourceShare(self.names[c], int(counts[c]), float(share), float(mix), float(share / mix)))
        return out


def _sources(idx: Any) -> _Sources:
    def make() -> _Sources:
        col = idx.examples(["source"])["source"].combine_chunks().dictionary_encode()
        codes = np.asarray(col.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
        names = [str(x) for x in col.dictionary.to_pylist()]
        sizes = np.bincount(codes, minlength=len(names)).astype(np.int64)
        return _Sources(codes, names, sizes)

    return _cached(idx, "sources", make)


def _example_clusters(idx: Any) -> ExampleClusters:
    def make() -> ExampleClusters:
        ex = idx.attr_example_ids("query")
        cl = idx.query_attr_clusters()
        return ExampleClusters.build(ex, cl, idx.meta.counts.examples, max(idx.meta.counts.clusters, int(cl.max()) + 1 if len(cl) else 0))

    return _cached(idx, "example_clusters", make)


def _response_attrs(idx: Any) -> tuple[np.ndarray, list[str]]:
    def make() -> tuple[np.ndarray, list[str]]:
        t = idx.attributes(["side", "text"])
        import pyarrow.compute as pc

        texts = t.filter(pc.equal(t["side"], "response"))["text"].to_pylist()
        return idx.attr_example_ids("response"), texts

    return _cached(idx, "response_attrs", make)


def _cluster_info(idx: Any) -> tuple[dict[int, str], dict[int, int]]:
    def make() -> tuple[dict[int, str], dict[int, int]]:
        t = idx.clusters(["cluster", "summary", "size"])
        cl = t["cluster"].to_pylist()
        return dict(zip(cl, t["summary"].to_pylist())), dict(zip(cl, t["size"].to_pylist()))

    return _cached(idx, "clusters", make)


def _examples_by_id(idx: Any, ids: Sequence[int]) -> dict[int, tuple[str, str, str, str]]:
    """(id, source, query, response) of a few examples, read with DuckDB (no full-table load)."""
    ids = [int(i) for i in ids]
    if not ids:
        return {}
    from chunky.turf.analyses import analysis_connection

    con = _cached(idx, "duckdb", lambda: analysis_connection(idx))
    with _CACHE_LOCK:  # one connection, used by one thread at a time
        rows = con.execute(
            "SELECT example_id, id, source, query, response FROM examples WHERE example_id IN (SELECT unnest(?))",
            [ids],
        ).fetchall()
    return {int(r[0]): (str(r[1]), str(r[2]), r[3] or "", r[4] or "") for r in rows}


def _clip(text: str, n: int = 600) -> str:
    return text if len(text) <= n else text[:n] + "…"


# ============================================================================================ judges

INFORMED_SYSTEM = "You are an expert auditor of AI assistant behaviour."
INFORMED_PROMPT = """An AI assistant's response violated this rubric:

<rubric>
{rubric}
</rubric>

<query>
{query}
</query>

<response>
{response}
</response>

A reviewer who did not see the rubric described the response with these attributes:
{attributes}

Pick the {n} attribute(s) most causally responsible for the violation of the rubric, most responsible first.
Copy each one exactly as it is written in the list above. Answer with JSON: {{"crux": [{slots}]}}"""


def _list_schema(key: str, n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: {"type": "array", "items": {"type": "string"}, "minItems": n, "maxItems": n}},
        "required": [key],
    }


def _clean(items: Any, what: str, judge: str) -> list[str]:
    if not isinstance(items, list):
        raise ModelError(f"{judge}: the {what} judge returned no list")
    out, seen = [], set()
    for x in items:
        s = " ".join(str(x).split())
        if s and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
    if not out:
        raise ModelError(f"{judge}: the {what} judge returned an empty list")
    return out


async def blind_attributes(model: Any, response: str, n: int = 10) -> list[str]:
    """Judge 1 (blind): attributes of the response, without the rubric. It uses the index builder's own
    response prompt, so the crux is phrased like the training response attributes it is matched against."""
    from chunky.turf.extract import extract_side

    return await extract_side(model, "response", response, n)


async def query_attributes(model: Any, query: str, n: int = 10) -> list[str]:
    """Attributes of the failing query (the builder's query prompt), to assign to the query clusters."""
    from chunky.turf.extract import extract_side

    return await extract_side(model, "query", query, n)


async def informed_crux(model: Any, rubric_text: str, query: str, response: str, attributes: list[str], n: int = 3) -> list[str]:
    """Judge 2 (informed): the top-n crux attributes for the rubric violation."""
    n = min(n, len(attributes))
    listed = "\n".join(f"{i + 1}. {a}" for i, a in enumerate(attributes))
    slots = ", ".join(f'"<attribute {i + 1} of your choice>"' for i in range(n))
    # The crux must be attributes of the list: an enum makes grammar-constrained providers (llama.cpp, OpenAI's
    # strict schemas) choose among them instead of inventing text; _pick_from_list handles the others.
    schema = _list_schema("crux", n)
    schema["properties"]["crux"]["items"] = {"type": "string", "enum": list(attributes)}
    try:
        res = await model.generate(
            INFORMED_PROMPT.format(rubric=rubric_text, query=query, response=response, attributes=listed, n=n, slots=slots),
            system=INFORMED_SYSTEM,
            json_schema=schema,
            # The mock has no judgement; it answers with the first n attributes, which keeps runs deterministic.
            hints={"task": "json", "payload": {"crux": attributes[:n]}},
            temperature=0.0,
        )
        picked = (res.parsed or {}).get("crux")
    except StructuredOutputError as e:
        # Still off the list after the repair (a provider that cannot enforce the enum): read what it wrote and
        # map it below, rather than lose the channel over a changed capital letter.
        from chunky.models.structured import parse_structured

        loose = {"type": "object", "properties": {"crux": {"type": "array", "items": {"type": "string"}}}, "required": ["crux"]}
        value, problem = parse_structured(e.raw_text or "", loose)
        if problem is not None:
            raise
        picked = value["crux"]
    crux: list[str] = []
    for c in _clean(picked, "informed", model.name):
        picked = _pick_from_list(c, attributes)
        if picked is not None and picked not in crux:
            crux.append(picked)
    if not crux:
        raise ModelError(f"{model.name}: the informed judge named no usable crux attribute (it answered placeholders)")
    return crux[:n]


_CRUX_NUMBER = re.compile(r"^\s*#?(\d{1,2})[.)]?\s*$")


def _pick_from_list(c: str, attributes: list[str]) -> str | None:
    """The judge was asked to copy crux attributes verbatim from the blind list. Map what it wrote back onto
    that list: a near-copy (case, trailing dot) or a bare list number ("2", "#2", "2.") is the blind wording;
    a sentence of its own is kept as given (a capable judge sometimes sharpens one); an echo of the prompt's
    placeholders ("...", "N/A", one word) is dropped, since it matches nothing in the index meaningfully."""
    norm = {a.lower().rstrip("."): a for a in attributes}
    key = c.lower().rstrip(".")
    if key in norm:
        return norm[key]
    m = _CRUX_NUMBER.match(c)
    if m:
        i = int(m.group(1)) - 1
        return attributes[i] if 0 <= i < len(attributes) else None
    if len(re.findall(r"[^\W\d_]{2,}", c)) < 2 or key in ("n/a", "none", "null", "attribute"):
        return None
    return c


# ============================================================================================ statements


def behaviour_phrase(crux: str) -> str:
    """'The response provides extensive code examples.' -> 'provides extensive code examples'."""
    s = crux.strip().rstrip(".")
    s = re.sub(r"^(the|this)\s+(response|answer|assistant|model)\s+", "", s, flags=re.IGNORECASE)
    return s[:1].lower() + s[1:] if s else s


def trigger_phrase(attr: str) -> str:
    s = attr.strip().rstrip(".")
    return f'"{s}"'


def statement(trigger: str, behaviour: str, violation: str | None, evidence: str) -> str:
    cause = f", causing {violation}" if violation else ""
    return f"When the model sees {trigger}, it {behaviour}{cause} ({evidence})."


def violation_phrase(rubric: Any) -> str | None:
    if rubric is None:
        return None
    principle = " ".join(str(getattr(rubric, "principle", "") or "").split()).rstrip(".")
    name = getattr(rubric, "name", "rubric")
    return f"a '{name}' violation ({principle})" if principle else f"a '{name}' violation"


# ============================================================================================ LLM channel


def trace_llm_crux(
    idx: Any,
    crux: str,
    crux_vec: np.ndarray,
    query_attrs: list[str],
    query_vecs: np.ndarray,
    *,
    k: int = 1000,
    exact: bool | None = None,
    violation: str | None = None,
    top_clusters: int = 15,
    n_examples: int = 5,
) -> CruxTrace:
    """Steps 2–4 of the paper for one crux: retrieve, count hits per query cluster, match the trigger."""
    resp_ex, resp_text = _response_attrs(idx)
    ec = _example_clusters(idx)
    summaries, _sizes = _cluster_info(idx)
    srcs = _sources(idx)
    ids, sims = _searcher(idx, "response_attr", exact).search(crux_vec, k)
    ids, sims = ids[0], sims[0]
    keep = ids >= 0
    ids, sims = ids[keep], sims[keep]
    retrieved_examples = resp_ex[ids]
    hc = HitCounts.count(ec, retrieved_examples)

    # Step 4: assign each query attribute to its nearest centroid; the trigger is the one whose cluster has
    # the most hits (ties: higher lift, then the judge's order).
    qas: list[QueryAttribute] = []
    if len(query_attrs) and ec.n_clusters:
        cids, csims = _searcher(idx, "centroids", True).search(query_vecs, 1)
        for text, c, s in zip(query_attrs, cids[:, 0], csims[:, 0]):
            c = int(c)
            low = lift_lower(hc.hit(c), hc.total, int(hc.df[c]), hc.n_examples) if c >= 0 else 0.0
            qas.append(QueryAttribute(text, c, summaries.get(c, ""), float(s), hc.hit(c),
                                      hc.lift(c) if c >= 0 else 0.0, low))
    ranked_qas = sorted(qas, key=lambda a: (-a.hits, -a.lift))
    # the trigger is over-represented beyond chance, not merely the attribute with most hits
    trigger = next((a for a in ranked_qas if a.stands_out), None)

    clusters = [
        ClusterHit(c, summaries.get(c, ""), hc.hit(c), hc.total, int(hc.df[c]), hc.base_rate(c), hc.lift(c),
                   lift_lower(hc.hit(c), hc.total, int(hc.df[c]), hc.n_examples))
        for c in hc.ranked(top_clusters)
    ]
    sources = srcs.shares(np.unique(retrieved_examples))
    trig_sources: list[SourceShare] = []
    examples: list[TrainingExample] = []
    if trigger is not None:
        item, cl = ec.gather(retrieved_examples)
        in_trig = np.zeros(len(retrieved_examples), dtype=bool)
        in_trig[item[cl == trigger.cluster]] = True
        trig_sources = srcs.shares(retrieved_examples[in_trig])
        order = [i for i in np.flatnonzero(in_trig)]  # retrieved order = most similar first
        chosen, seen = [], set()
        for i in order:
            e = int(retrieved_examples[i])
            if e not in seen:
                seen.add(e)
                chosen.append(i)
            if len(chosen) >= n_examples:
                break
        rows = _examples_by_id(idx, [int(retrieved_examples[i]) for i in chosen])
        for i in chosen:
            e = int(retrieved_examples[i])
            if e in rows:
                id_, src, q, r = rows[e]
                examples.append(TrainingExample(e, id_, src, _clip(q), _clip(r), float(sims[i]), resp_text[int(ids[i])]))
        evidence = f"hit count {trigger.hits}/{hc.total}, lift {trigger.lift:.1f}× (95% ≥ {trigger.lift_low:.1f}×)"
        if trig_sources:
            top = trig_sources[0]
            evidence += f"; {top.share:.0%} of those hits from {top.source}"
        stmt = statement(trigger_phrase(trigger.text), behaviour_phrase(crux), violation, evidence)
    else:
        stmt = (f"No trigger stands out for the crux {crux!r}: no query attribute of the failing query falls in a "
                f"cluster over-represented among its {hc.total} hits (lift > 1 with a 95% interval above 1).")
    return CruxTrace(
        crux=crux,
        k=hc.total,
        trigger=trigger,
        query_attributes=ranked_qas,
        clusters=clusters,
        sources=sources,
        trigger_sources=trig_sources,
        examples=examples,
        statement=stmt,
    )


# ============================================================================================ lexical channel


def _feature_stats(idx: Any, side: str = "query") -> dict[str, tuple[int, str]]:
    """feature -> (df, kind) for one side."""

    def make() -> dict[str, tuple[int, str]]:
        import pyarrow.compute as pc

        t = idx.feature_stats(["side", "feature", "kind", "df"])
        t = t.filter(pc.equal(t["side"], side))
        return {f: (int(d), k) for f, d, k in zip(t["feature"].to_pylist(), t["df"].to_pylist(), t["kind"].to_pylist())}

    return _cached(idx, f"feature_stats:{side}", make)


def feature_examples(idx: Any, feats: Sequence[str]) -> dict[str, np.ndarray]:
    """For each query-side feature, the examples whose query has it (one DuckDB scan of features.parquet,
    filtered to these features; nothing else of the table is loaded)."""
    if not feats:
        return {}
    from chunky.turf.analyses import feature_lookup

    return feature_lookup(idx).examples_of("query", feats)


def candidate_query_features(text: str, ngram_max: int = 3, side: str = "query") -> list[str]:
    """Every feature the index builder could have given this text: its regex-level features plus each
    word (not a stop word or number) and each 2-/3-gram inside a sentence that is not only stop words —
    the same rules as `chunky.turf.lexical.LexicalBuilder`; the index's vocabulary then keeps the real ones."""
    from chunky.turf.lexical import BOUNDARY_CHARS, ENGLISH_STOP, regex_features, tokenize

    toks = tokenize(text)
    weak = [t in ENGLISH_STOP or t.isdigit() for t in toks]
    cut = [t in BOUNDARY_CHARS for t in toks]
    feats = [f"word:{t}" for t, w, c in zip(toks, weak, cut) if not w and not c]
    for n in range(2, ngram_max + 1):
        for i in range(len(toks) - n + 1):
            if any(cut[i : i + n]) or all(weak[i : i + n]):
                continue
            feats.append("ngram:" + " ".join(toks[i : i + n]))
    feats.extend(regex_features(text, side))
    return list(dict.fromkeys(feats))


def query_features(idx: Any, query: str, extract: Callable[[str], list[str]] | None = None) -> tuple[list[str], int]:
    """The failing query's lexical features that the index knows, and how many it does not.

    Regex-level features come from the index builder's extractor; words and n-grams are candidates the
    index keeps only above its document-frequency floor, so we propose them and keep those it has."""
    if extract is None:
        extract = candidate_query_features
    stats = _feature_stats(idx)
    cand = list(dict.fromkeys(extract(query)))
    known = [f for f in cand if f in stats]
    return known, len(cand) - len(known)


# A query-shape feature (one line, ends in "?", short) in more of the mix than this explains nothing: it is never
# named as the trigger (it still shows in the ranked table).
TRIGGER_MAX_DF = 0.25
SHAPE_KINDS = frozenset({"format", "question", "length", "script", "language"})


def trace_lexical_anchor(
    idx: Any,
    anchor: str,
    text: str,
    vec: np.ndarray,
    feats: list[str],
    *,
    k: int = 1000,
    exact: bool | None = None,
    violation: str | None = None,
    behaviour: str | None = None,
    min_hits: int = 3,
    prior_strength: float = 100.0,
    n_examples: int = 5,
    having: dict[str, np.ndarray] | None = None,
) -> LexicalAnchor:
    """Nearest training responses to `vec`; which of the failing query's features their queries share."""
    ids, sims = _searcher(idx, "response_text", exact).search(vec, k)
    ids, sims = ids[0], sims[0]
    keep = ids >= 0
    return _rank_query_features(
        idx, anchor, text, ids[keep], sims[keep], feats,
        violation=violation, behaviour=behaviour or "answers like its nearest training responses",
        group="nearest training responses", min_hits=min_hits, prior_strength=prior_strength,
        n_examples=n_examples, having=having,
    )


def _rank_query_features(
    idx: Any,
    anchor: str,
    text: str,
    ids: np.ndarray,
    sims: np.ndarray,
    feats: list[str],
    *,
    violation: str | None,
    behaviour: str,
    group: str,
    min_hits: int,
    prior_strength: float,
    n_examples: int,
    having: dict[str, np.ndarray] | None,
    exclude: set[str] | None = None,
    trigger_max_df: float = TRIGGER_MAX_DF,
) -> LexicalAnchor:
    """Given a retrieved group of training examples, rank the failing query's features by how
    over-represented they are among the group's queries (log-odds z with an informative prior). The trigger
    is the first that stands out and is not a ubiquitous query shape (a format / question / length feature
    in more than `trigger_max_df` of the mix: "the query is one line" or "ends in ?" explains nothing)."""
    srcs = _sources(idx)
    stats = _feature_stats(idx)
    fex = feature_examples(idx, feats) if having is None else having
    n = srcs.n
    total = len(ids)
    member = np.zeros(n, dtype=bool)
    member[ids] = True

    hits_list: list[FeatureHit] = []
    for f in feats:
        df, kind = stats[f]
        ids_f = fex.get(f, np.zeros(0, np.int64))
        hit_ids = ids_f[member[ids_f]]
        h = len(hit_ids)
        delta, z = log_odds_z(h, total, df, n, prior_strength)
        lower = log_odds_bound(h, total, df, n, prior_strength)
        hits_list.append(
            FeatureHit(
                feature=f,
                kind=kind,
                hits=h,
                total=total,
                df=df,
                base_rate=df / n if n else 0.0,
                lift=lift(h, total, df, n),
                log_odds=delta,
                z=z,
                lower=lower,
                lift_low=lift_lower(h, total, df, n),
                sources=srcs.shares(hit_ids, top=5),
            )
        )
    hits_list.sort(key=lambda h: (-h.lower, -h.hits, h.feature))
    cands = [h for h in hits_list if h.stands_out(min_hits) and h.feature not in (exclude or ())
             and not (h.kind in SHAPE_KINDS and h.df > trigger_max_df * n)]
    trigger = cands[0] if cands else None
    examples: list[TrainingExample] = []
    if trigger is not None:
        has = np.zeros(n, dtype=bool)
        has[fex[trigger.feature]] = True
        chosen = [(int(e), float(s)) for e, s in zip(ids, sims) if has[e]][:n_examples]
        rows = _examples_by_id(idx, [e for e, _ in chosen])
        for e, s in chosen:
            if e in rows:
                id_, src, q, r = rows[e]
                examples.append(TrainingExample(e, id_, src, _clip(q), _clip(r), s))
        evidence = (f"hit count {trigger.hits}/{total}: {group} with it in their query; lift {trigger.lift:.1f}× "
                    f"(95% ≥ {trigger.lift_low:.1f}×), log-odds ≥ {trigger.lower:.1f}")
        if trigger.sources:
            evidence += f"; {trigger.sources[0].share:.0%} from {trigger.sources[0].source}"
        stmt = statement(f"the query feature {trigger.feature}", behaviour, violation, evidence)
    else:
        stmt = (f"No trigger stands out: no feature of the failing query is over-represented among the {total} "
                f"{group} (lift > 1 with a 95% interval above 1).")
    return LexicalAnchor(
        anchor=anchor,
        text=_clip(text, 300),
        k=total,
        trigger=trigger,
        features=hits_list,
        sources=srcs.shares(ids),
        examples=examples,
        statement=stmt,
    )


def rubric_detector(rubric: Any) -> Callable[[str], Any] | None:
    """The rubric's detector: its `detector` key, else the built-in detector of the rubric's name (`math`,
    `code`, `refusal`...), else None."""
    from chunky.errors import ConfigError as _ConfigError
    from chunky.measure.detectors import get_detector

    for spec in (getattr(rubric, "detector", None), getattr(rubric, "name", None)):
        if spec:
            try:
                return get_detector(str(spec))
            except _ConfigError:
                continue
    return None


def violation_features(response: str, detector: Callable[[str], Any]) -> set[str]:
    """The lexical features of the lines of `response` the detector fires on (its evidence's lines): the
    features that carry the violation."""
    hit = detector(response)
    if not getattr(hit, "hit", False):
        return set()
    evidence = str(getattr(hit, "evidence", "") or "").strip()
    if not evidence or evidence not in response:
        return set()
    start = response.rfind("\n", 0, response.find(evidence)) + 1
    end = response.find("\n", response.find(evidence) + len(evidence))
    lines = response[start : end if end >= 0 else len(response)]
    return set(candidate_query_features(lines, side="response")) - {f for f in candidate_query_features(lines, side="response")
                                                                   if f.split(":", 1)[0] in ("length", "script", "language")}


def trace_response_features(
    idx: Any,
    response: str,
    feats: list[str],
    *,
    violation: str | None = None,
    min_hits: int = 3,
    prior_strength: float = 100.0,
    max_df_frac: float = 0.02,
    max_candidates: int = 300,
    n_examples: int = 5,
    having: dict[str, np.ndarray] | None = None,
    n_anchors: int = 3,
    query: str = "",
    detector: Callable[[str], Any] | None = None,
    format_max_df_frac: float = 0.2,
) -> list[LexicalAnchor]:
    """Exact lexical anchors, no embeddings: each distinctive lexical feature of the failing response
    (an opening, a closing line, an n-gram, a format seen in at most `max_df_frac` of the mix) selects the
    training examples whose responses have it; the anchors kept are those whose examples' queries
    over-represent a feature of the failing query most strongly (highest lower bound of the log-odds).
    This finds a planted behaviour even when the rest of the response is about something else.

    Response features that carry the violation come first: a response feature that only repeats a word of
    the failing query (`word:weighs` for "How much does a whale weigh?") is the topic echoing and is skipped;
    with the rubric's `detector`, the features of the span it fires on (GSM8K's answer line, a `\\boxed{}`)
    are anchors before the others. `format:` features (a chunk's answer line, its annotations) may be
    common in the mix, up to `format_max_df_frac`; the others up to `max_df_frac`."""
    from chunky.turf.lexical import content_stems

    rstats = _feature_stats(idx, "response")
    srcs = _sources(idx)
    n = srcs.n
    query_stems = frozenset().union(*(content_stems(f) for f in candidate_query_features(query) if f.startswith("word:"))) \
        if query else frozenset()
    cand = [f for f in candidate_query_features(response, side="response") if f in rstats
            and not (content_stems(f) & query_stems)]
    lo = max(min_hits, 3)

    def hi(f: str) -> float:
        return max((format_max_df_frac if f.startswith("format:") else max_df_frac) * n, min_hits)

    carriers = violation_features(response, detector) if detector is not None else set()
    cand = sorted((f for f in cand if lo <= rstats[f][0] <= hi(f)),
                  key=lambda f: (f not in carriers, rstats[f][0], f))[:max_candidates]
    if not cand or not feats:
        return []
    from chunky.turf.analyses import feature_lookup

    rex = feature_lookup(idx).examples_of("response", cand)
    qex = feature_examples(idx, feats) if having is None else having
    qstats = _feature_stats(idx)
    qdf = np.array([qstats[f][0] for f in feats], dtype=np.float64)
    masks = np.zeros((len(feats), n), dtype=bool)
    for i, f in enumerate(feats):
        masks[i, qex.get(f, np.zeros(0, np.int64))] = True
    # A query feature sharing a word with the response feature is the topic echoing, not a trigger.
    qtok = [set(f.split(":", 1)[1].split()) if f.startswith(("word:", "ngram:")) else set() for f in feats]
    shape = np.array([f.split(":", 1)[0] in SHAPE_KINDS for f in feats], dtype=bool)
    scored: list[tuple[float, str, str]] = []
    a0 = prior_strength
    p = np.clip(qdf / n, 1e-9, 1 - 1e-9)
    for rf in cand:
        e = rex[rf]
        g = len(e)
        if g == 0:
            continue
        h = masks[:, e].sum(axis=1).astype(np.float64)
        # log_odds_bound (chunky.turf.hits), vectorised over the query features
        gy, gn = h + a0 * p, (g - h) + a0 * (1 - p)
        ry, rn = (qdf - h) + a0 * p, ((n - g) - (qdf - h)) + a0 * (1 - p)
        lower = (np.log(gy / gn) - np.log(ry / rn)) - 1.959964 * np.sqrt(1 / gy + 1 / gn + 1 / ry + 1 / rn)
        rtok = set(rf.split(":", 1)[1].split()) if rf.startswith(("word:", "ngram:")) else set()
        echo = np.array([bool(rtok & t) for t in qtok])
        ok = (h >= min_hits) & (h / g > qdf / n) & ~echo & ~(shape & (qdf > TRIGGER_MAX_DF * n))
        if not ok.any():
            continue
        j = int(np.flatnonzero(ok)[np.argmax(lower[ok])])
        scored.append((float(lower[j]), rf, feats[j]))
    # The strongest few response features, each with a different best query feature, as separate anchors
    # (like the LLM channel's three cruxes): a response often carries its own chunk's signature too. Features
    # the rubric's detector fires on lead.
    scored.sort(key=lambda x: (x[1] not in carriers, -x[0], x[1]))
    anchors: list[LexicalAnchor] = []
    used_q: set[str] = set()
    for _, rf, qf in scored:
        if qf in used_q:
            continue
        used_q.add(qf)
        ids = rex[rf]
        rtok = set(rf.split(":", 1)[1].split()) if rf.startswith(("word:", "ngram:")) else set()
        a = _rank_query_features(
            idx, "response feature", rf, ids, np.ones(len(ids), dtype=np.float32), feats,
            violation=violation, behaviour=f"produces the response feature {rf}",
            group=f"training examples whose response has {rf}", min_hits=min_hits,
            prior_strength=prior_strength, n_examples=n_examples, having=qex,
            exclude={f for f, t in zip(feats, qtok) if rtok & t},
        )
        a.carries_violation = rf in carriers
        anchors.append(a)
        if len(anchors) >= n_anchors:
            break
    return anchors


# ============================================================================================ the whole trace


@dataclass
class TraceOptions:
    k: int = 1000
    k_lexical: int = 1000
    exact: bool | None = None  # None: exact below IVF_THRESHOLD vectors, IVF above
    n_attributes: int = 10
    n_crux: int = 3
    channels: tuple[str, ...] = ("llm", "lexical")
    min_hits: int = 3
    prior_strength: float = 100.0
    # response words / n-grams seen in at most this share of the mix can anchor the lexical channel; format-level
    # response features (a chunk's answer line, its annotations) up to the second share
    feature_max_df: float = 0.02
    format_max_df: float = 0.2


async def trace(
    idx: Any,
    query: str,
    response: str,
    *,
    rubric: Any = None,
    judge: Any = None,
    crux: Sequence[str] | None = None,
    query_attrs: Sequence[str] | None = None,
    options: TraceOptions | None = None,
    embedder: Any = None,
    extract_features: Callable[[str], list[str]] | None = None,
    trace_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> TraceResult:
    """Attribute one failing (query, response). `progress` hears what stage it is in (the CLI prints it on
    stderr).

    `judge` (a chunky Model) runs the blind judge, the informed judge (needs `rubric`) and the query
    attribute extraction; `crux` / `query_attrs` given directly skip those calls. Without a judge and
    without them, the LLM channel is skipped and only the lexical channel (no LLM calls) runs."""
    opts = options or TraceOptions()
    if not query or not response:
        raise ConfigError("trace: both a query and a response are needed")
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    emb_text = embedder if embedder is not None else _embedder_for(idx, "text_tokens")
    emb_attr = embedder if embedder is not None else _embedder_for(idx, "attr_tokens")
    violation = violation_phrase(rubric)
    usage_before = _usage_snapshot(judge)
    say = progress or (lambda _msg: None)

    # ---- crux and query attributes (LLM calls) -------------------------------------------------
    blind: list[str] = []
    crux_list = [c for c in (crux or []) if c.strip()]
    q_attrs = [a for a in (query_attrs or []) if a.strip()]
    want_llm = "llm" in opts.channels
    if want_llm and judge is not None:
        say("judges: blind attributes, informed crux, query attributes")
        t0 = time.perf_counter()
        need_blind = not crux_list
        need_query = not q_attrs and idx.has_llm
        if need_blind and rubric is None:
            raise ConfigError("trace: the informed judge needs a rubric (--rubric NAME or a YAML path)")
        jobs = []
        if need_blind:
            jobs.append(blind_attributes(judge, response, opts.n_attributes))
        if need_query:
            jobs.append(query_attributes(judge, query, opts.n_attributes))
        try:
            got = list(await asyncio.gather(*jobs))
            if need_blind:
                blind = got.pop(0)
            if need_query:
                q_attrs = got.pop(0)
            if need_blind:
                crux_list = await informed_crux(judge, rubric.judge_text(), query, response, blind, opts.n_crux)
        except ModelError as e:
            # The lexical channel needs no model: keep it, and say why the LLM channel is missing.
            warnings.append(f"LLM channel failed: {e}")
            blind, q_attrs, crux_list = [], [], []
            want_llm = False
        timings["judges_s"] = time.perf_counter() - t0

    llm: LLMChannel | None = None
    if want_llm and crux_list and not idx.has_llm:
        warnings.append(f"{idx.path}: built without the LLM channel; only the lexical channel ran")
    elif want_llm and crux_list and not q_attrs:
        warnings.append("LLM channel skipped: no attributes of the failing query (pass --judge or query attributes)")
    elif want_llm and idx.has_llm and not crux_list:
        warnings.append("LLM channel skipped: no judge (pass --judge MODEL and --rubric, or --crux)")
    elif want_llm and crux_list and q_attrs:
        say(f"LLM channel: retrieving and counting hits for {len(crux_list)} crux")
        t0 = time.perf_counter()
        k_llm = _capped_k(opts.k, idx.meta.counts.response_attributes, "--k", warnings)
        vecs = emb_attr.embed(list(crux_list) + list(q_attrs))
        cvecs, qvecs = vecs[: len(crux_list)], vecs[len(crux_list) :]
        traces = [
            trace_llm_crux(idx, c, cvecs[i : i + 1], list(q_attrs), qvecs, k=k_llm, exact=opts.exact, violation=violation)
            for i, c in enumerate(crux_list)
        ]
        search_kind = _searcher(idx, "response_attr", opts.exact).kind
        llm = LLMChannel(blind, list(crux_list), list(q_attrs), search_kind, traces)
        timings["llm_channel_s"] = time.perf_counter() - t0

    lexical: LexicalChannel | None = None
    if "lexical" in opts.channels:
        if not idx.has_lexical:
            warnings.append(f"{idx.path}: built without the lexical channel")
        else:
            say("lexical channel: the failing query's features")
            t0 = time.perf_counter()
            feats, unseen = query_features(idx, query, extract_features)
            k_lex = _capped_k(opts.k_lexical, idx.meta.counts.examples, "--k-lexical", warnings)
            having = feature_examples(idx, feats)
            anchors_in = [("response", response)] + [("crux", c) for c in crux_list]
            say(f"lexical channel: nearest training responses to {len(anchors_in)} anchor(s)")
            avecs = emb_text.embed([t for _, t in anchors_in])
            anchors = [
                trace_lexical_anchor(
                    idx,
                    kind,
                    text,
                    avecs[i : i + 1],
                    feats,
                    k=k_lex,
                    exact=opts.exact,
                    violation=violation,
                    behaviour=behaviour_phrase(text) if kind == "crux" else None,
                    min_hits=opts.min_hits,
                    prior_strength=opts.prior_strength,
                    having=having,
                )
                for i, (kind, text) in enumerate(anchors_in)
            ]
            say("lexical channel: training examples sharing the failing response's features")
            anchors += trace_response_features(
                idx, response, feats, violation=violation, min_hits=opts.min_hits,
                prior_strength=opts.prior_strength, max_df_frac=opts.feature_max_df, having=having,
                query=query, detector=rubric_detector(rubric) if rubric is not None else None,
                format_max_df_frac=opts.format_max_df,
            )
            lexical = LexicalChannel(feats, unseen, anchors)
            timings["lexical_channel_s"] = time.perf_counter() - t0

    if llm is None and lexical is None:
        raise ChunkyError(
            f"{idx.path}: nothing to trace with: " + ("; ".join(warnings) or "no channel selected")
        )
    timings["total_s"] = time.perf_counter() - t_start
    return TraceResult(
        id=trace_id or uuid.uuid4().hex[:12],
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        index=str(idx.path),
        query=query,
        response=response,
        k=opts.k,
        statement=_headline(llm, lexical, crux_given=bool(crux_list) and bool(crux)),
        rubric=getattr(rubric, "name", None),
        violation=violation,
        judge=getattr(judge, "name", None),
        llm=llm,
        lexical=lexical,
        timings={k: round(v, 4) for k, v in timings.items()},
        usage=_usage_delta(judge, usage_before),
        warnings=warnings,
    )


def _embedder_for(idx: Any, budget: str) -> Any:
    """The build's embedder with the build's token budget for this kind of text (`chunky index` records
    text_tokens for response texts and attr_tokens for attributes), so trace-time vectors match."""
    tokens = idx.meta.params.get(budget)
    # Through the index, which refuses an embedder whose vectors are not comparable with the build's.
    return idx.embedder(max_tokens=int(tokens)) if tokens else idx.embedder()


def _capped_k(k: int, n: int, flag: str, warnings: list[str]) -> int:
    """Retrieving most of a small index makes every feature look like its base rate: keep k ≤ half of it."""
    cap = max(10, n // 2)
    if k > cap:
        warnings.append(f"{flag} {k} lowered to {cap}: at most half of the index's {n} vectors")
        return cap
    return k


NO_TRIGGER = "No trigger stands out"


def _headline(llm: LLMChannel | None, lexical: LexicalChannel | None, *, crux_given: bool = False) -> str:
    """The paper's sentence for the strongest trigger that stands out (lift > 1 with a 95% interval above 1):
    a crux the user gave leads (the LLM channel's first crux with a trigger, else the lexical channel's crux
    anchor); otherwise the LLM channel's first crux with a trigger, else the strongest lexical anchor (the
    rubric's violation-carrying response features first). When no trigger stands out it says so rather
    than naming one."""
    def strongest(anchors: list[LexicalAnchor]) -> LexicalAnchor | None:
        with_trigger = [a for a in anchors if a.trigger is not None]
        if not with_trigger:
            return None
        # ties go to an exact response-feature anchor: it names the behaviour, not just "like these"
        return max(with_trigger, key=lambda a: (a.carries_violation, round(a.trigger.lower, 6) if a.trigger else 0.0,
                                                a.anchor == "response feature"))

    llm_hit = next((t for t in llm.traces if t.trigger is not None), None) if llm is not None else None
    anchors = lexical.anchors if lexical is not None else []
    if crux_given:
        if llm_hit is not None:
            return llm_hit.statement
        best = strongest([a for a in anchors if a.anchor == "crux"])
        if best is not None:
            return best.statement
        cruxes = [a.text for a in anchors if a.anchor == "crux"] or ([t.crux for t in llm.traces] if llm else [])
        return f"{NO_TRIGGER} for the crux {cruxes[0]!r}: no feature of the failing query is over-represented " \
               "among the training examples behind it (lift > 1 with a 95% interval above 1)." if cruxes else \
               f"{NO_TRIGGER}."
    if llm_hit is not None:
        return llm_hit.statement
    best = strongest(anchors)
    if best is not None:
        return best.statement
    return f"{NO_TRIGGER}: no feature or attribute of the failing query is over-represented among the training " \
           "examples behind the response (lift > 1 with a 95% interval above 1)."


def _usage_snapshot(judge: Any) -> tuple[int, int, float]:
    u = getattr(judge, "usage", None)
    if u is None:
        return (0, 0, 0.0)
    t = u.total() if hasattr(u, "total") else None
    if t is None:
        return (0, 0, 0.0)
    return (int(getattr(t, "input_tokens", 0)), int(getattr(t, "output_tokens", 0)), float(getattr(t, "cost_usd", 0.0) or 0.0))


def _usage_delta(judge: Any, before: tuple[int, int, float]) -> dict[str, float]:
    if judge is None:
        return {}
    after = _usage_snapshot(judge)
    return {"input_tokens": after[0] - before[0], "output_tokens": after[1] - before[1], "cost_usd": round(after[2] - before[2], 6)}


def trace_sync(*args: Any, **kwargs: Any) -> TraceResult:
    return asyncio.run(trace(*args, **kwargs))


def trace_run(
    idx: Any,
    run_dir: str | Path,
    *,
    top: int = 5,
    min_score: float | None = None,
    rubric: Any = None,
    judge: Any = None,
    crux: Sequence[str] | None = None,
    options: TraceOptions | None = None,
    embedder: Any = None,
    extract_features: Callable[[str], list[str]] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_saved: Callable[[TraceResult, Path], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[TraceResult]:
    """Trace a SURF run's top findings (read through chunky.store). Each trace is saved as soon as it is
    done, to RUN/traces/<candidate_id>.json and the run store's traces table, so an error on one finding
    never loses the others. The rubric defaults to the run's own copy."""
    from chunky.store import RunStore

    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)
    try:
        if rubric is None:
            raw = store.get_meta("rubric")
            if isinstance(raw, dict) and raw.get("name"):
                from chunky.surf.rubric import Rubric

                rubric = Rubric.from_dict(raw)
        findings = [c for c in store.top(top, min_score) if c.query and c.response]
        if not findings:
            raise ChunkyError(f"{run_dir}: no scored findings to trace")
        results: list[TraceResult] = []
        errors: list[str] = []
        for n_done, c in enumerate(findings):
            say = None
            if progress is not None:
                def say(msg: str, _i: int = n_done, _id: int = c.id) -> None:
                    progress(f"finding {_i + 1}/{len(findings)} (candidate {_id}): {msg}")
            try:
                res = asyncio.run(
                    trace(idx, c.query or "", c.response or "", rubric=rubric, judge=judge, crux=crux,
                          options=options, embedder=embedder, extract_features=extract_features, trace_id=str(c.id),
                          progress=say)
                )
            except ChunkyError as e:
                msg = f"{run_dir}: candidate {c.id}: {e}"
                errors.append(msg)
                if on_error is not None:
                    on_error(msg)
                continue
            res.candidate_id = c.id
            res.run = str(run_dir)
            res.score = c.score
            dest = res.save(run_dir / "traces" / f"{c.id}.json")
            store.put_trace(c.id, "turf", res.to_dict())
            results.append(res)
            if on_saved is not None:
                on_saved(res, dest)
        if not results:
            raise ChunkyError(f"every trace failed; first error: {errors[0]}")
        return results
    finally:
        store.close()
