"""Attribute pools for `chunky surf --attributes`.

A pool is the set of natural-language prompt attributes SURF searches over, plus (when the source
has them) the data's own records: which attributes occur together in one training query. Records
feed the exploration draw ("attributes of one random dataset record"), so new candidates mix what
scored well with combinations that really occur in data.

Sources:
- none: the built-in pool written for chunky (`chunky/data/attributes/default.txt`); a shipped pool
  by name (`facts`: users stating or checking true facts, for quick `rebut` audits);
- a JSONL / Parquet file, a Hugging Face dataset id or a dataset saved with `save_to_disk`, with a
  `sae_attributes` list per record (the authors' format, e.g. `seoirsem/CHUNKY-tulu3-SFT-25k-attributes`),
  or another list column;
- a plain list: a text file with one attribute per line, or JSONL of strings / {"attribute": ...};
- a TURF index directory (its LLM channel's query attributes, read through `chunky.turf.index.TurfIndex`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from chunky.errors import ConfigError
from chunky.jsonl import read_jsonl

LIST_COLUMNS = ("sae_attributes", "attributes")
TEXT_KEYS = ("attribute", "text", "description")


@dataclass
class AttributePool:
    attributes: list[str]
    # Each record: indices into `attributes` of one data example's attributes.
    records: list[list[int]] = field(default_factory=list)
    source: str = "built-in"
    kind: str = "list"  # list | records | turf-clusters | turf-attributes

    def __post_init__(self) -> None:
        self.index = {a: i for i, a in enumerate(self.attributes)}

    def __len__(self) -> int:
        return len(self.attributes)

    @property
    def digest(self) -> str:
        """Identifies the pool's content (stored with a run; a resume must use the same pool)."""
        h = hashlib.sha256()
        for a in self.attributes:
            h.update(a.encode())
            h.update(b"\0")
        h.update(str(len(self.records)).encode())
        for r in self.records[:1000]:
            h.update(",".join(map(str, r)).encode())
            h.update(b";")
        return h.hexdigest()[:16]

    @classmethod
    def from_lists(cls, rows: list[list[str]], source: str, kind: str = "records") -> AttributePool:
        attrs: list[str] = []
        index: dict[str, int] = {}
        records: list[list[int]] = []
        for row in rows:
            rec: list[int] = []
            for a in row:
                a = a.strip()
                if not a:
                    continue
                i = index.get(a)
                if i is None:
                    i = index[a] = len(attrs)
                    attrs.append(a)
                if i not in rec:
                    rec.append(i)
            if rec:
                records.append(rec)
        return cls(attrs, records, source, kind)

    @classmethod
    def from_texts(cls, texts: list[str], source: str) -> AttributePool:
        seen: dict[str, None] = {}
        for t in texts:
            t = t.strip()
            if t:
                seen.setdefault(t, None)
        return cls(list(seen), [], source, "list")


def _shipped_dir() -> Path:
    return Path(str(resources.files("chunky") / "data" / "attributes"))


def shipped_pools() -> list[str]:
    """Names of the pools shipped with chunky (`default`, `facts`)."""
    return sorted(p.stem for p in _shipped_dir().glob("*.txt"))


def default_pool() -> AttributePool:
    return _read_text_list(_shipped_dir() / "default.txt", "built-in")


def load_pool(spec: str | Path | None, *, column: str | None = None) -> AttributePool:
    """Load an attribute pool from a spec (see module docstring). Raises ConfigError naming the
    file, line or column at fault."""
    if spec is None or str(spec) in ("", "default", "builtin", "built-in"):
        return default_pool()
    p = Path(spec)
    if not p.exists() and str(spec) in shipped_pools():
        return _read_text_list(_shipped_dir() / f"{spec}.txt", f"built-in:{spec}")
    if p.is_dir():
        if (p / "index.json").exists():
            return _read_turf_index(p)
        if (p / "state.json").exists() or (p / "dataset_dict.json").exists():
            return _read_hf_disk(p, column)
        raise ConfigError(
            f"{p}: a directory, but neither a TURF index (index.json) nor a saved Hugging Face dataset (state.json)"
        )
    if p.exists():
        suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
        if suffix in (".parquet",):
            return _read_parquet(p, column)
        if suffix in (".jsonl", ".json", ".jsonl.gz", ".ndjson"):
            return _read_jsonl(p, column)
        return _read_text_list(p, str(p))
    s = str(spec)
    if s.startswith("hf:") or (s.count("/") == 1 and not s.startswith((".", "/"))):
        return _read_hf(s.removeprefix("hf:"), column)
    raise ConfigError(f"attribute pool '{spec}': no such file or directory (or Hugging Face dataset id)")


def _read_text_list(p: Path, source: str) -> AttributePool:
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file of attributes (one per line)") from None
    texts = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    pool = AttributePool.from_texts(texts, source)
    if not pool.attributes:
        raise ConfigError(f"{p}: no attributes (write one attribute per line)")
    return pool


def _row_list(value: object, where: str) -> list[str]:
    if isinstance(value, str):
        # Some exports store the list as a JSON string.
        text = value
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return [text]
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        raise ConfigError(f"{where}: expected a list of attribute texts")
    return [str(x) for x in value]


def _read_jsonl(p: Path, column: str | None) -> AttributePool:
    rows: list[list[str]] = []
    texts: list[str] = []
    try:
        for n, obj in read_jsonl(p):
            if isinstance(obj, str):
                texts.append(obj)
                continue
            if not isinstance(obj, dict):
                raise ConfigError(f"{p}: line {n}: expected an object or a string")
            cols = [column] if column else [c for c in LIST_COLUMNS if c in obj]
            if cols and cols[0] in obj:
                rows.append(_row_list(obj[cols[0]], f"{p}: line {n}: field '{cols[0]}'"))
                continue
            key = next((k for k in TEXT_KEYS if isinstance(obj.get(k), str)), None)
            if key is not None and not column:
                texts.append(obj[key])
                continue
            want = f"'{column}'" if column else "'sae_attributes' (a list) or 'attribute' (a text)"
            raise ConfigError(f"{p}: line {n}: no field {want}")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    if rows and texts:
        raise ConfigError(f"{p}: mixes records with attribute lists and single attributes; use one form")
    pool = AttributePool.from_lists(rows, str(p)) if rows else AttributePool.from_texts(texts, str(p))
    if not pool.attributes:
        raise ConfigError(f"{p}: no attributes found")
    return pool


def _pick_column(names: list[str], column: str | None, where: str) -> str:
    if column:
        if column not in names:
            raise ConfigError(f"{where}: no column '{column}' (columns: {', '.join(names)})")
        return column
    for c in LIST_COLUMNS + TEXT_KEYS:
        if c in names:
            return c
    raise ConfigError(
        f"{where}: no attribute column (looked for {', '.join(LIST_COLUMNS + TEXT_KEYS)}; columns: {', '.join(names)}); "
        "pass --attribute-column"
    )


def _pool_from_column(values: list, col: str, where: str) -> AttributePool:
    if values and all(isinstance(v, str) for v in values) and col in TEXT_KEYS:
        pool = AttributePool.from_texts(values, where)
    else:
        rows = []
        for i, v in enumerate(values):
            if v is None:
                continue
            rows.append(_row_list(v, f"{where}: row {i}: column '{col}'"))
        pool = AttributePool.from_lists(rows, where)
    if not pool.attributes:
        raise ConfigError(f"{where}: column '{col}' holds no attributes")
    return pool


def _read_parquet(p: Path, column: str | None) -> AttributePool:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(p)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise ConfigError(f"{p}: not a readable Parquet file ({e})") from None
    col = _pick_column(schema.names, column, str(p))
    values = pq.read_table(p, columns=[col]).column(col).to_pylist()
    return _pool_from_column(values, col, str(p))


def _read_hf(name: str, column: str | None) -> AttributePool:
    try:
        import datasets
    except ImportError:
        from chunky.errors import MissingExtraError

        raise MissingExtraError(f"attribute pool '{name}'", "hf", "datasets") from None
    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as e:  # offline, unknown id, auth: the library raises many types
        raise ConfigError(f"attribute pool '{name}': could not load the Hugging Face dataset ({type(e).__name__}: {e})") from None
    col = _pick_column(list(ds.column_names), column, f"dataset {name}")
    return _pool_from_column(list(ds[col]), col, f"hf:{name}")


def _read_hf_disk(p: Path, column: str | None) -> AttributePool:
    """A dataset written with `datasets.Dataset.save_to_disk` (its `train` split for a DatasetDict)."""
    try:
        import datasets
    except ImportError:
        from chunky.errors import MissingExtraError

        raise MissingExtraError(f"attribute pool '{p}'", "hf", "datasets") from None
    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # corrupt or partial save: the library raises many types
        raise ConfigError(f"{p}: not a readable saved dataset ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise ConfigError(f"{p}: a dataset dict without a 'train' split (splits: {', '.join(ds)})")
        ds = ds["train"]
    col = _pick_column(list(ds.column_names), column, str(p))
    return _pool_from_column(list(ds[col]), col, str(p))


def _read_turf_index(p: Path) -> AttributePool:
    """A TURF index's query-side LLM attributes, read through `TurfIndex` (it owns the directory's files).
    With clusters, the cluster summaries are the attributes (as in the authors' pool, whose `sae_attributes`
    are cluster summaries) and each example's record is the set of clusters of its query attributes; without
    clusters, the raw query attribute texts."""
    import pyarrow.compute as pc

    from chunky.turf.index import TurfIndex

    idx = TurfIndex.open(p)  # a ConfigError naming index.json for a bad or unfinished index
    lexical_only = ConfigError(
        f"{p}: this TURF index has only the lexical channel (no LLM query attributes); its word and n-gram "
        "features are not prompt attributes. Rebuild it with LLM attribute extraction, or pass a list "
        "with --attributes (or omit it for the built-in pool)"
    )
    if not idx.has_llm:
        raise lexical_only
    try:
        table = idx.attributes(["example_id", "side", "text", "cluster"])
        summaries = {
            int(c): s.strip() for c, s in idx.cluster_summaries().items() if isinstance(s, str) and s.strip()
        }
    except Exception as err:  # pyarrow raises several types for a missing or bad file
        raise ConfigError(f"{p}: the index's attribute tables are not readable ({err})") from None
    q = table.filter(pc.equal(table.column("side"), "query"))
    if q.num_rows == 0:
        raise lexical_only
    ex = q.column("example_id").to_pylist()
    texts = q.column("text").to_pylist()
    clusters = q.column("cluster").to_pylist()
    by_example: dict[int, list[str]] = {}
    use_clusters = bool(summaries)
    for e, t, c in zip(ex, texts, clusters):
        if use_clusters and c is not None and int(c) in summaries:
            a = summaries[int(c)]
        elif use_clusters:
            continue
        else:
            a = t
        if isinstance(a, str) and a.strip():
            by_example.setdefault(int(e), []).append(a)
    rows = [by_example[k] for k in sorted(by_example)]
    pool = AttributePool.from_lists(rows, str(p), "turf-clusters" if use_clusters else "turf-attributes")
    if not pool.attributes:
        raise ConfigError(f"{p}: no usable query attributes in the index's attributes table")
    return pool
