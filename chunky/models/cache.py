"""On-disk call cache: SQLite in WAL mode, safe with many concurrent writers (threads and processes).

The key is the full request (provider, model, endpoint, messages, sampling settings, schema, seed,
sample index); never an API key. Only successful results are stored.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from chunky import serde
from chunky.models.types import ChatResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    result TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_model ON calls(provider, model);
"""


@dataclass
class CacheStats:
    path: str
    entries: int
    size_bytes: int
    by_model: list[tuple[str, str, int]]


class CallCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    def get(self, key: str) -> ChatResult | None:
        row = self._connect().execute("SELECT result FROM calls WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        result = serde.from_dict(ChatResult, json.loads(row[0]), where=f"{self.path}: cached call")
        result.cached = True
        result.latency_s = 0.0
        return result

    def put(self, key: str, result: ChatResult) -> None:
        d = result.to_dict()
        d["cached"] = False
        blob = json.dumps(d, ensure_ascii=False, default=str)
        for attempt in range(5):
            try:
                self._connect().execute(
                    "INSERT OR REPLACE INTO calls(key, provider, model, result, created_at) VALUES (?,?,?,?,?)",
                    (key, result.provider, result.model, blob, time.time()),
                )
                return
            except sqlite3.OperationalError as e:  # pragma: no cover - only under heavy contention
                if "locked" not in str(e) or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def stats(self) -> CacheStats:
        conn = self._connect()
        entries = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        by_model = conn.execute(
            "SELECT provider, model, COUNT(*) FROM calls GROUP BY provider, model ORDER BY 3 DESC"
        ).fetchall()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.exists())
        return CacheStats(str(self.path), entries, size, [tuple(r) for r in by_model])

    def clear(self, model: str | None = None) -> int:
        conn = self._connect()
        if model:
            n = conn.execute("DELETE FROM calls WHERE model = ?", (model,)).rowcount
        else:
            n = conn.execute("DELETE FROM calls").rowcount
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if not model:
            conn.execute("VACUUM")
        return n

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


_default: CallCache | None = None
_default_lock = threading.Lock()


def default_cache() -> CallCache:
    """The process-wide cache at CHUNKY_HOME (re-opened if CHUNKY_HOME changes, e.g. in tests)."""
    global _default
    from chunky.config import cache_db_path

    path = cache_db_path()
    with _default_lock:
        if _default is None or _default.path != path:
            _default = CallCache(path)
        return _default
