"""Finding what the explorer can show under the directories it was given.

A directory is a SURF run (has `run.sqlite`), a TURF index (`index.json`), a steering result (`steer.json`), or
a folder to look into (a few levels deep). A run's `steer/*/` and `traces/`, and an index's `traces/`, belong to
it. Every item gets a stable key (derived from its path) used in URLs; requests look items up by key only, so a
URL can never name a file outside what was discovered.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from chunky.errors import ConfigError

MAX_DEPTH = 3
# Directories never worth descending into (large or irrelevant).
SKIP_DIRS = {"emb", "__pycache__", "node_modules", ".git", ".venv", "venv", "site-packages"}


@dataclass
class Item:
    kind: str  # run | index | steer | trace | check | experiment
    key: str
    path: Path  # the directory (run, index, steer) or the JSON file (trace)
    parent_key: str = ""  # the run or index a steer/trace belongs to ("" when standalone)

    @property
    def name(self) -> str:
        return self.path.stem if self.kind == "trace" else self.path.name


@dataclass
class Catalog:
    roots: list[Path]
    runs: dict[str, Item] = field(default_factory=dict)
    indexes: dict[str, Item] = field(default_factory=dict)
    steers: dict[str, Item] = field(default_factory=dict)
    traces: dict[str, Item] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_paths(cls, paths: list[Path | str]) -> Catalog:
        roots = []
        for p in paths:
            path = Path(p).expanduser().resolve()
            if not path.exists():
                raise ConfigError(f"{p}: no such directory")
            if path.is_file():
                if path.name == "run.sqlite" or path.name in ("index.json", "steer.json"):
                    path = path.parent
                else:
                    raise ConfigError(f"{p}: expected a run, index or steering directory, not a file")
            roots.append(path)
        cat = cls(roots=roots or [Path.cwd().resolve()])
        cat.scan()
        return cat

    # ---- scanning ------------------------------------------------------------------------------------
    def scan(self) -> None:
        """Re-read the directory trees (cheap: names only), so runs started after `serve` appear."""
        runs: dict[str, Item] = {}
        indexes: dict[str, Item] = {}
        steers: dict[str, Item] = {}
        traces: dict[str, Item] = {}
        names = root_names(self.roots)
        for root, root_name in zip(self.roots, names):
            self._walk(root, root, root_name, 0, runs, indexes, steers, traces)
        with self._lock:
            self.runs, self.indexes, self.steers, self.traces = runs, indexes, steers, traces

    def _walk(self, root: Path, d: Path, root_name: str, depth: int, runs, indexes, steers, traces) -> None:
        key = _key(root, d, root_name)
        kind = classify(d)
        if kind == "run":
            runs[key] = Item("run", key, d)
            self._attach(d, key, steers, traces)
            return
        if kind == "index":
            indexes[key] = Item("index", key, d)
            self._attach(d, key, steers, traces)
            return
        if kind == "steer":
            steers[key] = Item("steer", key, d)
            return
        if depth >= MAX_DEPTH:
            return
        try:
            children = [e for e in os.scandir(d) if e.is_dir()]  # symlinked runs count; MAX_DEPTH bounds loops
        except (PermissionError, FileNotFoundError, NotADirectoryError):
            return
        for e in sorted(children, key=lambda e: e.name):
            if e.name.startswith(".") or e.name in SKIP_DIRS:
                continue
            self._walk(root, Path(e.path), root_name, depth + 1, runs, indexes, steers, traces)

    @staticmethod
    def _attach(d: Path, owner_key: str, steers, traces) -> None:
        steer_dir = d / "steer"
        if steer_dir.is_dir():
            if (steer_dir / "steer.json").is_file():
                steers[f"{owner_key}/steer"] = Item("steer", f"{owner_key}/steer", steer_dir, owner_key)
            for sub in sorted(steer_dir.iterdir()):
                if sub.is_dir() and (sub / "steer.json").is_file():
                    k = f"{owner_key}/steer/{sub.name}"
                    steers[k] = Item("steer", k, sub, owner_key)
        trace_dir = d / "traces"
        if trace_dir.is_dir():
            for f in sorted(trace_dir.glob("*.json")):
                k = f"{owner_key}/traces/{f.stem}"
                traces[k] = Item("trace", k, f, owner_key)

    # ---- lookups -------------------------------------------------------------------------------------
    def get(self, kind: str, key: str) -> Item | None:
        table = {"run": "runs", "index": "indexes", "steer": "steers", "trace": "traces"}[kind]
        item = getattr(self, table).get(key)
        if item is None:
            self.scan()  # maybe created since the last scan
            item = getattr(self, table).get(key)
        return item

    def steers_of(self, owner_key: str) -> list[Item]:
        return [s for s in self.steers.values() if s.parent_key == owner_key]

    def traces_of(self, owner_key: str) -> list[Item]:
        return [t for t in self.traces.values() if t.parent_key == owner_key]

    def standalone_steers(self) -> list[Item]:
        return [s for s in self.steers.values() if not s.parent_key]


def classify(d: Path) -> str | None:
    if (d / "run.sqlite").is_file():
        return "run"
    if (d / "index.json").is_file():
        return "index"
    if (d / "steer.json").is_file():
        return "steer"
    return None


def has_format(path: Path, fmt: str) -> bool:
    """Whether a JSON file chunky wrote declares `"format": "<fmt>"` in its first 200 bytes (a cheap sniff: the
    explorer walks whole directory trees, and reads one short prefix per candidate file)."""
    try:
        with path.open("rb") as f:
            return f'"format": "{fmt}"'.encode() in f.read(200)
    except OSError:
        return False


def root_names(roots: list[Path]) -> list[str]:
    """One display name per served root, made unique with ~2, ~3 ..."""
    names: list[str] = []
    for r in roots:
        base = r.name or "root"
        name, i = base, 2
        while name in names:
            name, i = f"{base}~{i}", i + 1
        names.append(name)
    return names


def _key(root: Path, d: Path, root_name: str) -> str:
    rel = d.relative_to(root)
    return root_name if str(rel) == "." else f"{root_name}/{rel.as_posix()}"
