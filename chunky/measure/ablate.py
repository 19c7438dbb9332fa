"""Data-ablation mixes (paper §4.4): write a training mix with a chunk removed, down-weighted or
balanced with counter-examples, plus a manifest of what changed, so the user can retrain and re-measure.

The mix is built from one of two bases:
- `index` (default): the conversations of the TURF index (examples.parquet, turns regrouped by id);
- `data`: the original training file the index was built from (index.json `data.path`, or --data), streamed
  row by row, so system turns, every turn and rows the index did not sample are kept.
Selections that need the index (clusters, lexical features) name conversation ids, which both bases share.

Operations, in this order: every drop (the union of --drop-source, --drop-cluster, --drop-match,
--drop-feature), then --downweight (keep a seeded share of a source; weights above 1 duplicate), then --add.
Output rows use the Tülu schema: {"id", "messages": [{"role", "content"}], "source"}.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from chunky import serde
from chunky.errors import ChunkyError, ConfigError
from chunky.jsonl import read_jsonl

MANIFEST_FORMAT = "chunky-mix-manifest"

Side = Literal["query", "response", "any"]


@dataclass
class Conversation:
    id: str
    source: str
    messages: list[dict[str, str]]

    def to_row(self) -> dict[str, Any]:
        return {"id": self.id, "messages": self.messages, "source": self.source}

    def texts(self, side: Side) -> Iterator[str]:
        roles = {"query": ("user",), "response": ("assistant",), "any": ("user", "assistant")}[side]
        for m in self.messages:
            if m.get("role") in roles:
                yield m.get("content") or ""


@dataclass
class AblationPlan:
    drop_sources: list[str] = field(default_factory=list)
    drop_clusters: list[int] = field(default_factory=list)
    drop_matches: list[str] = field(default_factory=list)
    drop_features: list[str] = field(default_factory=list)
    match_side: Side = "any"
    downweights: list[tuple[str, float]] = field(default_factory=list)
    adds: list[Path] = field(default_factory=list)
    seed: int = 0
    base: Literal["index", "data"] = "index"
    data: str | None = None  # the training file for base=data (default: index.json data.path)

    def is_empty(self) -> bool:
        return not (self.drop_sources or self.drop_clusters or self.drop_matches or self.drop_features
                    or self.downweights or self.adds)


@dataclass
class OpReport:
    """One operation: how many rows it selected (drops may overlap) and per source."""

    op: str
    arg: str
    rows: int = 0
    by_source: dict[str, int] = field(default_factory=dict)


@dataclass
class AblationManifest:
    index: str
    base: str
    base_path: str
    output: str
    seed: int
    operations: list[OpReport]
    before: dict[str, int]
    after: dict[str, int]
    removed: dict[str, int]
    added: dict[str, int]
    duplicated: dict[str, int]
    rows_before: int
    rows_after: int
    unmatched_ids: int = 0
    skipped_rows: int = 0
    output_sha256: str = ""
    created_at: str = ""
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = MANIFEST_FORMAT
        d["version"] = 1
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AblationManifest:
        return serde.from_dict(cls, d, where="ablation manifest")


def parse_downweight(spec: str) -> tuple[str, float]:
    src, sep, w = spec.rpartition(":")
    if not sep or not src:
        raise ConfigError(f"--downweight '{spec}': write SOURCE:WEIGHT, e.g. coconot:0.5")
    try:
        weight = float(w)
    except ValueError:
        raise ConfigError(f"--downweight '{spec}': the weight '{w}' is not a number") from None
    if weight < 0 or math.isnan(weight) or math.isinf(weight):
        raise ConfigError(f"--downweight '{spec}': the weight must be 0 or more")
    return src, weight


def _unit(seed: int, key: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, key): order-independent, reproducible sampling."""
    h = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


# --- bases ---------------------------------------------------------------------------------------


def conversations_from_index(idx: Any) -> Iterator[Conversation]:
    """The index's examples regrouped into conversations: consecutive rows with one id and rising turns."""
    cur: Conversation | None = None
    last_turn = -1
    for batch in idx.iter_examples(["id", "source", "turn", "query", "response"]):
        for r in batch.to_pylist():
            if cur is None or r["id"] != cur.id or r["turn"] <= last_turn:
                if cur is not None:
                    yield cur
                cur = Conversation(r["id"], r["source"], [])
            cur.messages += [{"role": "user", "content": r["query"]}, {"role": "assistant", "content": r["response"]}]
            last_turn = r["turn"]
    if cur is not None:
        yield cur


_ROLE_MAP = {"human": "user", "prompter": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant",
             "chatbot": "assistant"}


def _content(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):  # content given as parts: [{"type": "text", "text": ...}]
        return "\n".join(_content(p.get("text") if isinstance(p, dict) else p) for p in v)
    return v if isinstance(v, str) else str(v)


def _messages(raw: Any) -> list[dict[str, str]] | None:
    """Tülu `messages` or ShareGPT `conversations` as [{role, content}]; None when malformed."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return None
    if hasattr(raw, "tolist"):
        raw = raw.tolist()
    if not isinstance(raw, list):
        return None
    out = []
    for m in raw:
        if not isinstance(m, dict) or m.get("role", m.get("from")) is None:
            return None
        role = str(m.get("role", m.get("from"))).lower()
        out.append({"role": _ROLE_MAP.get(role, role), "content": _content(m.get("content", m.get("value")))})
    return out


def _row_conversation(row: Any, rowno: int, stem: str, source_field: str | None) -> Conversation:
    """One raw training row as a conversation, with the TURF loader's id and source rules
    (so ids match the index's). Raises RowSkipped."""
    from chunky.turf.load import RowSkipped, row_identity, row_pairs

    if not isinstance(row, dict):
        raise RowSkipped("row_not_an_object")  # also the loader's marker for an unparsable JSON line
    rid, source = row_identity(row, rowno, stem, source_field)
    raw = row.get("messages") if row.get("messages") is not None else row.get("conversations")
    if raw is not None:
        msgs = _messages(raw)
        if msgs is None:
            raise RowSkipped("malformed_messages")
        if not any(m["role"] == "assistant" for m in msgs):
            raise RowSkipped("no_user_assistant_pair")
    else:
        msgs = []
        for q, a in row_pairs(row):
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return Conversation(rid, source, msgs)


def conversations_from_data(path: str, source_field: str | None, skipped: Counter) -> Iterator[Conversation]:
    from chunky.turf.load import RowSkipped, file_stem, raw_rows

    stem = file_stem(str(path))
    for rowno, row in enumerate(raw_rows(path), start=1):
        try:
            yield _row_conversation(row, rowno, stem, source_field)
        except RowSkipped as e:
            skipped[e.reason] += 1


def load_additions(path: Path) -> list[Conversation]:
    """Counter-examples to add: JSONL rows in the Tülu schema, or prompt/response (and similar) fields."""
    from chunky.turf.load import RowSkipped

    if not path.is_file():
        raise ConfigError(f"--add {path}: no such file")
    out = []
    stem = path.name.split(".")[0]
    for n, row in read_jsonl(path):
        try:
            conv = _row_conversation(row, n, stem, None)
        except RowSkipped as e:
            raise ConfigError(f"{path}: line {n}: not a usable conversation ({e.reason})") from None
        if isinstance(row, dict) and not row.get("source"):
            conv.source = f"added:{stem}"
        if isinstance(row, dict) and not row.get("id"):
            conv.id = f"added:{stem}:{n}"
        out.append(conv)
    if not out:
        raise ConfigError(f"{path}: no rows to add")
    return out


# --- selections that need the index -----------------------------------------------------------------


def ids_for_clusters(idx: Any, clusters: list[int]) -> tuple[set[str], dict[int, Counter]]:
    """Conversation ids whose query has an attribute in one of `clusters`; ids per source per cluster."""
    if not idx.has_llm:
        raise ConfigError(f"{idx.path}: --drop-cluster needs the LLM channel (attributes and clusters); "
                          "this index has only the lexical one")
    n_clusters = idx.meta.counts.clusters
    bad = [c for c in clusters if c < 0 or (n_clusters and c >= n_clusters)]
    if bad:
        raise ConfigError(f"--drop-cluster {bad[0]}: {idx.path} has clusters 0..{n_clusters - 1}")
    con = idx.duckdb()
    try:
        rows = con.execute(
            "SELECT DISTINCT a.cluster, e.id, e.source FROM attributes a JOIN examples e USING (example_id) "
            "WHERE a.side = 'query' AND a.cluster IN (SELECT UNNEST(?::INTEGER[]))",
            [clusters],
        ).fetchall()
    finally:
        con.close()
    per: dict[int, Counter] = {c: Counter() for c in clusters}
    for c, _, src in rows:
        per[c][src] += 1
    return {i for _, i, _ in rows}, per


def ids_for_features(idx: Any, features: list[str]) -> tuple[set[str], dict[str, Counter]]:
    """Conversation ids having a lexical feature (`side:feature`, or `feature` on either side)."""
    if not idx.has_lexical:
        raise ConfigError(f"{idx.path}: --drop-feature needs the lexical channel; this index has only the LLM one")
    con = idx.duckdb()
    ids: set[str] = set()
    per: dict[str, Counter] = {}
    try:
        for spec in features:
            side, sep, feat = spec.partition("=")
            if sep and side in ("query", "response"):
                q = ("SELECT DISTINCT e.id, e.source FROM features f JOIN examples e USING (example_id) "
                     "WHERE f.side = ? AND f.feature = ?")
                rows = con.execute(q, [side, feat]).fetchall()
            else:
                q = ("SELECT DISTINCT e.id, e.source FROM features f JOIN examples e USING (example_id) "
                     "WHERE f.feature = ?")
                rows = con.execute(q, [spec]).fetchall()
            if not rows:
                known = con.execute(
                    "SELECT count(*) FROM feature_stats WHERE feature = ?", [feat if sep else spec]
                ).fetchone()[0]
                if not known:
                    raise ConfigError(f"--drop-feature '{spec}': no such feature in {idx.path} "
                                      "(see `chunky grep` / feature_stats for names such as closing:i hope it is correct)")
            per[spec] = Counter(r[1] for r in rows)
            ids.update(r[0] for r in rows)
    finally:
        con.close()
    return ids, per


# --- the mix ------------------------------------------------------------------------------------


def build_mix(index_path: str | os.PathLike[str], plan: AblationPlan, out: Path, *, dry_run: bool = False) -> AblationManifest:
    """Write the ablated mix to `out` (and `out` with .manifest.json) and return the manifest."""
    from chunky.turf.index import TurfIndex

    start = time.perf_counter()
    if plan.is_empty():
        raise ConfigError("ablate: give at least one of --drop-source, --drop-cluster, --drop-match, "
                          "--drop-feature, --downweight, --add")
    idx = TurfIndex.open(index_path)
    patterns = []
    for p in plan.drop_matches:
        try:
            patterns.append((p, re.compile(p)))
        except re.error as e:
            raise ConfigError(f"--drop-match '{p}': bad regular expression: {e}") from None
    additions = [(p, load_additions(Path(p))) for p in plan.adds]
    weights = dict(plan.downweights)
    if len(weights) != len(plan.downweights):
        raise ConfigError("--downweight: the same source is given twice")

    # Index-level selections first: they are small id sets.
    cluster_ids: set[str] = set()
    cluster_rows: dict[int, Counter] = {}
    if plan.drop_clusters:
        cluster_ids, cluster_rows = ids_for_clusters(idx, plan.drop_clusters)
    feature_ids: set[str] = set()
    feature_rows: dict[str, Counter] = {}
    if plan.drop_features:
        feature_ids, feature_rows = ids_for_features(idx, plan.drop_features)

    skipped: Counter = Counter()
    if plan.base == "data":
        base_path = plan.data or idx.meta.data.path
        if not base_path:
            raise ConfigError(f"{idx.path}/index.json: no data.path recorded; pass --data FILE")
        if not base_path.startswith("hf:") and not Path(base_path).exists():
            raise ConfigError(f"{base_path}: the training data of {idx.path} is not there; pass --data FILE")
        if not base_path.startswith("hf:") and Path(base_path).resolve() == out.resolve():
            raise ConfigError(f"--out {out} is the training data itself; write the mix elsewhere")
        source_field = idx.meta.params.get("source_field") or None
        convs: Iterator[Conversation] = conversations_from_data(base_path, source_field, skipped)
    else:
        base_path = str(idx.path / "examples.parquet")
        # The index knows its sources: catch a misspelt one before streaming a large table.
        known_sources = set(idx.meta.sources)
        missing = [s for s in [*plan.drop_sources, *weights] if known_sources and s not in known_sources]
        if missing:
            raise ConfigError(f"source '{missing[0]}' is not in {idx.path} (sources: {', '.join(sorted(known_sources))})")
        convs = conversations_from_index(idx)

    ops: dict[tuple[str, str], OpReport] = {}

    def op(kind: str, arg: str) -> OpReport:
        return ops.setdefault((kind, arg), OpReport(kind, arg))

    for s in plan.drop_sources:
        op("drop-source", s)
    for c in plan.drop_clusters:
        op("drop-cluster", str(c))
    for p, _ in patterns:
        op("drop-match", p)
    for f in plan.drop_features:
        op("drop-feature", f)
    for s, w in plan.downweights:
        op("downweight", f"{s}:{w:g}")

    before: Counter = Counter()
    after: Counter = Counter()
    removed: Counter = Counter()
    duplicated: Counter = Counter()
    added: Counter = Counter()
    seen_index_ids: set[str] = set()
    drop_sources = set(plan.drop_sources)

    def bump(rep: OpReport, source: str, n: int = 1) -> None:
        rep.rows += n
        rep.by_source[source] = rep.by_source.get(source, 0) + n

    tmp = out.with_name(out.name + ".tmp")
    sink = None if dry_run else tmp.open("w", encoding="utf-8")
    digest = hashlib.sha256()

    def write(conv: Conversation) -> None:
        after[conv.source] += 1
        if sink is not None:
            line = json.dumps(conv.to_row(), ensure_ascii=False) + "\n"
            sink.write(line)
            digest.update(line.encode())

    try:
        for conv in convs:
            before[conv.source] += 1
            drop = False
            if conv.source in drop_sources:
                bump(op("drop-source", conv.source), conv.source)
                drop = True
            if conv.id in cluster_ids:
                seen_index_ids.add(conv.id)
                drop = True
            if conv.id in feature_ids:
                seen_index_ids.add(conv.id)
                drop = True
            for p, rx in patterns:
                if any(rx.search(t) for t in conv.texts(plan.match_side)):
                    bump(op("drop-match", p), conv.source)
                    drop = True
            if drop:
                removed[conv.source] += 1
                continue
            weight = weights.get(conv.source)
            if weight is None:
                write(conv)
                continue
            rep = op("downweight", f"{conv.source}:{weight:g}")
            whole = math.floor(weight)
            copies = int(whole) + (1 if _unit(plan.seed, conv.id) < weight - whole else 0)
            if copies == 0:
                bump(rep, conv.source)
                removed[conv.source] += 1
                continue
            write(conv)
            for k in range(1, copies):
                duplicated[conv.source] += 1
                write(Conversation(f"{conv.id}::copy{k}", conv.source, conv.messages))
        for path, rows in additions:
            rep = op("add", str(path))
            for conv in rows:
                bump(rep, conv.source)
                added[conv.source] += 1
                write(conv)
    except BaseException:
        if sink is not None:
            sink.close()
            tmp.unlink(missing_ok=True)
        raise
    if sink is not None:
        sink.close()
        tmp.replace(out)

    # Id-based drops report the conversations the index matched (they may overlap other drops).
    for key, per_source in [(("drop-cluster", str(c)), n) for c, n in cluster_rows.items()] + [
        (("drop-feature", f), n) for f, n in feature_rows.items()
    ]:
        rep = op(*key)
        rep.rows = sum(per_source.values())
        rep.by_source = dict(sorted(per_source.items()))
    unknown = [s for s in plan.drop_sources if before.get(s, 0) == 0] + [
        s for s, _ in plan.downweights if before.get(s, 0) == 0
    ]
    if unknown:
        if not dry_run:
            out.unlink(missing_ok=True)
        known = ", ".join(sorted(before)) or "none"
        raise ConfigError(f"source '{unknown[0]}' is not in {base_path} (sources: {known})")
    manifest = AblationManifest(
        index=str(idx.path),
        base=plan.base,
        base_path=base_path,
        output="" if dry_run else str(out),
        seed=plan.seed,
        operations=list(ops.values()),
        before=dict(sorted(before.items())),
        after=dict(sorted(after.items())),
        removed=dict(sorted(removed.items())),
        added=dict(sorted(added.items())),
        duplicated=dict(sorted(duplicated.items())),
        rows_before=sum(before.values()),
        rows_after=sum(after.values()),
        unmatched_ids=len((cluster_ids | feature_ids) - seen_index_ids),
        skipped_rows=sum(skipped.values()),
        output_sha256="" if dry_run else digest.hexdigest(),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        elapsed_s=round(time.perf_counter() - start, 3),
    )
    if not dry_run:
        manifest_path(out).write_text(json.dumps(manifest.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    return manifest


def manifest_path(out: Path) -> Path:
    name = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(name + ".manifest.json")


def check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise ChunkyError(f"{out} exists; choose another --out or add --overwrite")
    if not out.parent.exists():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist")
