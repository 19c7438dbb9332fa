"""The SURF run store: one SQLite database (WAL) per run directory, plus its exports.

Every finished candidate is committed on its own, so `kill -9` loses at most the calls in flight;
iterations are closed (buffer written, marked done) in one transaction. Readers may open the same
directory while a run is writing (WAL allows that).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from chunky.errors import ChunkyError, ConfigError
from chunky.store.records import (
    GENERATION_FAILED,
    JUDGE_ERROR,
    REJECTED,
    SCORED,
    TARGET_ERROR,
    BufferEntry,
    CandidateMatches,
    CandidateRecord,
    CandidateSearch,
    IterationRecord,
    IterationScores,
    NewCandidate,
    RobustnessRow,
    RobustnessSample,
    RunRecord,
    StoreStatus,
    dumps,
    loads,
)

DB_NAME = "run.sqlite"
RESULTS_NAME = "results.jsonl"

# Each entry migrates the schema from version i to i+1. Never edit a shipped entry; append.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE runs (
        run_id INTEGER PRIMARY KEY, status TEXT NOT NULL, iterations_done INTEGER NOT NULL DEFAULT 0,
        best_score REAL, stopped_reason TEXT, updated_at REAL NOT NULL);
    CREATE TABLE iterations (
        run_id INTEGER NOT NULL, iteration INTEGER NOT NULL, status TEXT NOT NULL,
        started_at REAL NOT NULL, finished_at REAL, scored INTEGER DEFAULT 0, errors INTEGER DEFAULT 0,
        rejected INTEGER DEFAULT 0, violations INTEGER DEFAULT 0, best_score REAL, buffer_mean REAL,
        buffer_digest TEXT, PRIMARY KEY (run_id, iteration));
    CREATE TABLE candidates (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, iteration INTEGER NOT NULL,
        slot INTEGER NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, attributes TEXT NOT NULL,
        weighted TEXT, explore TEXT, query TEXT, response TEXT, score REAL, reasoning TEXT, error TEXT,
        gate TEXT, usage TEXT, judge_samples TEXT, created_at REAL NOT NULL, finished_at REAL,
        status TEXT NOT NULL, UNIQUE (run_id, iteration, slot, attempt));
    CREATE INDEX candidates_score ON candidates (score DESC) WHERE status = 'scored';
    CREATE TABLE buffer (
        run_id INTEGER NOT NULL, iteration INTEGER NOT NULL, candidate_id INTEGER NOT NULL,
        rank INTEGER NOT NULL, PRIMARY KEY (run_id, iteration, rank));
    CREATE TABLE weights (
        run_id INTEGER NOT NULL, iteration INTEGER NOT NULL, attribute TEXT NOT NULL, weight REAL NOT NULL,
        PRIMARY KEY (run_id, iteration, attribute));
    CREATE TABLE robustness_variants (
        candidate_id INTEGER NOT NULL, variant INTEGER NOT NULL, prompt TEXT NOT NULL, error TEXT,
        PRIMARY KEY (candidate_id, variant));
    CREATE TABLE robustness (
        candidate_id INTEGER NOT NULL, variant INTEGER NOT NULL, sample_index INTEGER NOT NULL,
        response TEXT, score REAL, reasoning TEXT, error TEXT, created_at REAL NOT NULL,
        PRIMARY KEY (candidate_id, variant, sample_index));
    CREATE TABLE traces (
        candidate_id INTEGER NOT NULL, channel TEXT NOT NULL, json TEXT NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (candidate_id, channel));
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

R = TypeVar("R")

_CAND_COLS = (
    "id, run_id, iteration, slot, attempt, attributes, weighted, explore, query, response, score, reasoning, "
    "error, gate, usage, judge_samples, created_at, finished_at, status"
)
_ITER_COLS = (
    "run_id, iteration, status, started_at, finished_at, scored, errors, rejected, violations, best_score, "
    "buffer_mean, buffer_digest"
)

# Display orders of `search_candidates` (CandidateSearch.sort); the trailing keys make every order total.
_SCORE_ORDER = "score IS NULL, score DESC, iteration, run_id, slot, attempt"
_ORDERS = {
    "score": _SCORE_ORDER,
    "iteration": "iteration, run_id, slot, attempt",
    "recent": "coalesce(finished_at, created_at) DESC, id DESC",
}
# The narrow columns a search sorts on (sorting whole rows, responses and all, costs several times more).
_SORT_COLS = "id, score, iteration, run_id, slot, attempt, finished_at, created_at"


def _record(cls: type[R], row: sqlite3.Row) -> R:
    """A record dataclass from a row whose column names are its field names."""
    return cls(**{k: row[k] for k in row.keys()})


def _candidate(row: sqlite3.Row) -> CandidateRecord:
    return CandidateRecord(
        id=row["id"],
        run_id=row["run_id"],
        iteration=row["iteration"],
        slot=row["slot"],
        attempt=row["attempt"],
        attributes=loads(row["attributes"], []),
        weighted_attributes=loads(row["weighted"], []),
        explore_attributes=loads(row["explore"], []),
        query=row["query"],
        response=row["response"],
        score=row["score"],
        reasoning=row["reasoning"],
        error=row["error"],
        gate=loads(row["gate"]),
        usage=loads(row["usage"], {}),
        judge_samples=loads(row["judge_samples"], []),
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        status=row["status"],
    )


def _like(text: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching `text` anywhere."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _search_where(f: CandidateSearch) -> tuple[str, list[Any]]:
    where: list[str] = [f"status <> '{REJECTED}'"]
    args: list[Any] = []
    if f.text:
        where.append(
            "(query LIKE ? ESCAPE '\\' OR response LIKE ? ESCAPE '\\' OR reasoning LIKE ? ESCAPE '\\' "
            "OR attributes LIKE ? ESCAPE '\\')"
        )
        args += [_like(f.text)] * 3
        # attributes are stored as JSON text: match the JSON-escaped form of the search text
        args.append(_like(json.dumps(f.text, ensure_ascii=False)[1:-1]))
    if f.min_score is not None:
        where.append("score >= ?")
        args.append(f.min_score)
    if f.run_id is not None:
        where.append("run_id = ?")
        args.append(f.run_id)
    if f.iteration is not None:
        where.append("iteration = ?")
        args.append(f.iteration)
    if f.statuses:
        where.append(f"status IN ({','.join('?' * len(f.statuses))})")
        args += list(f.statuses)
    if f.score_above is not None:
        where.append("score > ?")
        args.append(f.score_above)
    return " AND ".join(where), args


def file_state(directory: str | Path) -> tuple[tuple[int, int] | None, ...]:
    """What changes whenever the run store changes: size and mtime of run.sqlite and its WAL. (A commit
    appends to the WAL; a checkpoint rewrites the main file.) Readers key their caches on it."""
    out: list[tuple[int, int] | None] = []
    for name in (DB_NAME, DB_NAME + "-wal"):
        try:
            s = os.stat(Path(directory) / name)
            out.append((s.st_mtime_ns, s.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


class RunStore:
    """A SURF run directory. Open it with `RunStore.open(dir)` (readers) or `RunStore.create(dir)`."""

    def __init__(self, directory: Path, conn: sqlite3.Connection):
        self.dir = directory
        self.path = directory / DB_NAME
        self.conn = conn
        self.conn.row_factory = sqlite3.Row  # every read below names its columns

    # ---- opening
    @classmethod
    def open(cls, directory: str | Path, *, create: bool = False) -> RunStore:
        d = Path(directory)
        db = d / DB_NAME
        if not db.exists():
            if not create:
                if d.is_dir():
                    raise ChunkyError(f"{d}: not a SURF run directory (no {DB_NAME})")
                raise ChunkyError(f"{d}: no such run directory")
            if d.exists() and not d.is_dir():
                raise ConfigError(f"{d}: exists and is not a directory")
            d.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(db, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process kill (not a power cut), and costs no fsync.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(d, conn)
            store._migrate()
        except sqlite3.DatabaseError as e:
            raise ChunkyError(f"{db}: not a readable run database ({e})") from None
        return store

    @classmethod
    def open_readonly(cls, directory: str | Path) -> RunStore:
        """Open a run for reading only (`mode=ro`, `query_only`): safe while `chunky surf` is writing it, and
        never migrates, so an older or newer schema is a clear error instead of a silent upgrade."""
        d = Path(directory)
        db = d / DB_NAME
        if not db.is_file():
            raise ChunkyError(f"{d}: not a SURF run directory (no {DB_NAME})")
        try:
            conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0, check_same_thread=False)
        except sqlite3.DatabaseError as e:
            raise ChunkyError(f"{db}: not a readable run database ({e})") from None
        store = cls(d, conn)
        try:
            conn.execute("PRAGMA query_only=ON")
            version = store.schema_version
            if version > SCHEMA_VERSION:
                raise ChunkyError(f"{db}: written by a newer chunky (schema {version}; this one reads up to {SCHEMA_VERSION})")
            if version == 0:
                raise ChunkyError(f"{db}: the run is still being created (no schema yet)")
            if version < SCHEMA_VERSION:
                # A reader cannot migrate; any chunky command that opens the run for writing does.
                raise ChunkyError(
                    f"{db}: written by an older chunky (schema {version} of {SCHEMA_VERSION}); run `chunky top {d}` "
                    "once to upgrade it"
                )
        except sqlite3.DatabaseError as e:
            conn.close()
            raise ChunkyError(f"{db}: not a readable run database ({e})") from None
        except ChunkyError:
            conn.close()
            raise
        return store

    @classmethod
    def create(cls, directory: str | Path) -> RunStore:
        return cls.open(directory, create=True)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise ChunkyError(
                f"{self.path}: written by a newer chunky (schema {version}, this one reads up to {SCHEMA_VERSION})"
            )
        for v in range(version, SCHEMA_VERSION):
            with self._tx():
                for stmt in _split_sql(MIGRATIONS[v]):
                    self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version={v + 1}")

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()["user_version"])

    class _Tx:
        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: Any, *rest: Any) -> None:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> RunStore._Tx:
        return RunStore._Tx(self.conn)

    # ---- meta
    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, dumps(value)))

    def set_meta_many(self, values: dict[str, Any]) -> None:
        with self._tx():
            for k, v in values.items():
                self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (k, dumps(v)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    @property
    def meta(self) -> dict[str, Any]:
        """Every meta key: `config`, `rubric`, `models`, `seed`, `versions`, `status`, `created_at`, `usage`..."""
        return {r["key"]: json.loads(r["value"]) for r in self.conn.execute("SELECT key, value FROM meta ORDER BY key")}

    @property
    def rubric_name(self) -> str | None:
        r = self.get_meta("rubric")
        return r.get("name") if isinstance(r, dict) else None

    @property
    def target_model(self) -> str | None:
        m = self.get_meta("models")
        return m.get("target") if isinstance(m, dict) else None

    # ---- runs and iterations
    def set_run(self, run_id: int, status: str, *, stopped_reason: str | None = None) -> None:
        now = time.time()
        row = self.conn.execute(
            "SELECT MAX(best_score) AS best, COUNT(*) FILTER (WHERE status = 'done') AS done FROM iterations "
            "WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        self.conn.execute(
            "INSERT INTO runs (run_id, status, iterations_done, best_score, stopped_reason, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, "
            "iterations_done = excluded.iterations_done, best_score = excluded.best_score, "
            "stopped_reason = excluded.stopped_reason, updated_at = excluded.updated_at",
            (run_id, status, row["done"] or 0, row["best"], stopped_reason, now),
        )

    def runs(self) -> list[RunRecord]:
        return [
            _record(RunRecord, row)
            for row in self.conn.execute(
                "SELECT run_id, status, iterations_done, best_score, stopped_reason, updated_at FROM runs ORDER BY run_id"
            )
        ]

    def start_iteration(self, run_id: int, iteration: int, buffer_digest: str, weights: dict[str, float]) -> None:
        """Record an iteration's start and its attribute weights (idempotent on resume)."""
        with self._tx():
            self.conn.execute(
                "INSERT OR IGNORE INTO iterations (run_id, iteration, status, started_at, buffer_digest) "
                "VALUES (?, ?, 'running', ?, ?)",
                (run_id, iteration, time.time(), buffer_digest),
            )
            self.conn.execute("DELETE FROM weights WHERE run_id = ? AND iteration = ?", (run_id, iteration))
            self.conn.executemany(
                "INSERT INTO weights (run_id, iteration, attribute, weight) VALUES (?, ?, ?, ?)",
                [(run_id, iteration, a, float(w)) for a, w in weights.items()],
            )

    def finish_iteration(self, run_id: int, iteration: int, buffer: list[tuple[int, float]]) -> IterationRecord:
        """Write the buffer after `iteration` (candidate ids in rank order) and close the iteration."""
        with self._tx():
            self.conn.execute("DELETE FROM buffer WHERE run_id = ? AND iteration = ?", (run_id, iteration))
            self.conn.executemany(
                "INSERT INTO buffer (run_id, iteration, candidate_id, rank) VALUES (?, ?, ?, ?)",
                [(run_id, iteration, cid, rank) for rank, (cid, _) in enumerate(buffer)],
            )
            counts = self.conn.execute(
                "SELECT COUNT(*) FILTER (WHERE status = 'scored') AS scored, "
                "COUNT(*) FILTER (WHERE status IN ('judge_error', 'target_error', 'generation_failed')) AS errors, "
                "COUNT(*) FILTER (WHERE status = 'rejected') AS rejected, MAX(score) AS best "
                "FROM candidates WHERE run_id = ? AND iteration = ?",
                (run_id, iteration),
            ).fetchone()
            violations = self.conn.execute(
                "SELECT COUNT(*) AS n FROM candidates WHERE run_id = ? AND iteration = ? AND status = 'scored' "
                "AND score > 50",
                (run_id, iteration),
            ).fetchone()["n"]
            mean = sum(s for _, s in buffer) / len(buffer) if buffer else None
            self.conn.execute(
                "UPDATE iterations SET status = 'done', finished_at = ?, scored = ?, errors = ?, rejected = ?, "
                "violations = ?, best_score = ?, buffer_mean = ? WHERE run_id = ? AND iteration = ?",
                (time.time(), counts["scored"], counts["errors"], counts["rejected"], violations, counts["best"], mean,
                 run_id, iteration),
            )
        rec = self.iteration(run_id, iteration)
        assert rec is not None
        return rec

    def iteration(self, run_id: int, iteration: int) -> IterationRecord | None:
        row = self.conn.execute(
            f"SELECT {_ITER_COLS} FROM iterations WHERE run_id = ? AND iteration = ?", (run_id, iteration)
        ).fetchone()
        return _record(IterationRecord, row) if row else None

    def iterations(self, run_id: int | None = None) -> list[IterationRecord]:
        sql = f"SELECT {_ITER_COLS} FROM iterations"
        args: tuple = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            args = (run_id,)
        return [_record(IterationRecord, r) for r in self.conn.execute(sql + " ORDER BY run_id, iteration", args)]

    def iteration_scores(self, violation: float, strong: float) -> list[IterationScores]:
        """Per (parallel run, iteration), from the candidates themselves (so the iteration still running counts
        too): best score, scored candidates, and those scored above `violation` and above `strong`."""
        rows = self.conn.execute(
            "SELECT run_id, iteration, MAX(score) FILTER (WHERE status = ?) AS best, "
            "COUNT(*) FILTER (WHERE status = ?) AS scored, "
            "COUNT(*) FILTER (WHERE status = ? AND score > ?) AS violations, "
            "COUNT(*) FILTER (WHERE status = ? AND score > ?) AS strong, "
            "MAX(coalesce(finished_at, created_at)) AS updated "
            "FROM candidates GROUP BY run_id, iteration ORDER BY run_id, iteration",
            (SCORED, SCORED, SCORED, violation, SCORED, strong),
        ).fetchall()
        return [
            IterationScores(
                run_id=int(r["run_id"]),
                iteration=int(r["iteration"]),
                best=r["best"],
                scored=int(r["scored"]),
                violations=int(r["violations"]),
                strong=int(r["strong"]),
                updated=r["updated"],
            )
            for r in rows
        ]

    # ---- candidates
    def add_candidate(self, **fields: Any) -> int:
        """Commit one finished candidate (the fields of `NewCandidate`); returns its id. A duplicate (same
        run/iteration/slot/attempt) keeps the first copy."""
        return self.add_candidates([NewCandidate(**fields)])[0]

    def add_candidates(self, rows: list[NewCandidate] | list[dict[str, Any]]) -> list[int]:
        """Commit several finished candidates in one transaction (group commit); returns their ids."""
        if not rows:
            return []
        cands = [r if isinstance(r, NewCandidate) else NewCandidate(**r) for r in rows]
        with self._tx():
            return [self._insert_candidate(c) for c in cands]

    def _insert_candidate(self, c: NewCandidate) -> int:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO candidates (run_id, iteration, slot, attempt, attributes, weighted, explore, "
            "query, response, score, reasoning, error, gate, usage, judge_samples, created_at, finished_at, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                c.run_id,
                c.iteration,
                c.slot,
                c.attempt,
                dumps(c.attributes),
                dumps(c.weighted),
                dumps(c.explore),
                c.query,
                c.response,
                c.score,
                c.reasoning,
                c.error,
                None if c.gate is None else dumps(c.gate),
                dumps(c.usage),
                dumps(c.judge_samples),
                c.created_at,
                time.time(),
                c.status,
            ),
        )
        if cur.rowcount == 0:
            row = self.conn.execute(
                "SELECT id FROM candidates WHERE run_id = ? AND iteration = ? AND slot = ? AND attempt = ?",
                (c.run_id, c.iteration, c.slot, c.attempt),
            ).fetchone()
            return int(row["id"])
        return int(cur.lastrowid or 0)

    def slot_attempts(self, run_id: int, iteration: int) -> dict[int, list[CandidateRecord]]:
        """Every committed attempt of an iteration, by slot (resume uses it to skip finished work)."""
        out: dict[int, list[CandidateRecord]] = {}
        for row in self.conn.execute(
            f"SELECT {_CAND_COLS} FROM candidates WHERE run_id = ? AND iteration = ? ORDER BY slot, attempt",
            (run_id, iteration),
        ):
            c = _candidate(row)
            out.setdefault(c.slot, []).append(c)
        return out

    def candidate(self, candidate_id: int) -> CandidateRecord | None:
        row = self.conn.execute(f"SELECT {_CAND_COLS} FROM candidates WHERE id = ?", (candidate_id,)).fetchone()
        return _candidate(row) if row else None

    def candidates_by_id(self, ids: list[int], chunk: int = 500) -> Iterator[CandidateRecord]:
        """The records of `ids`, in that order; unknown ids are skipped. Fetched in chunks: SQLite limits the
        number of bound parameters."""
        for i in range(0, len(ids), chunk):
            part = ids[i : i + chunk]
            rows = self.conn.execute(
                f"SELECT {_CAND_COLS} FROM candidates WHERE id IN ({','.join('?' * len(part))})", part
            ).fetchall()
            by_id = {r["id"]: r for r in rows}
            for cid in part:
                if cid in by_id:
                    yield _candidate(by_id[cid])

    def search_candidates(self, f: CandidateSearch, limit: int, offset: int = 0) -> CandidateMatches:
        """One page of the candidates matching `f` (ids in display order) and the number of matches; limit -1:
        every match.

        One scan: only the narrow sort columns are sorted, and the matches are counted alongside. NOT INDEXED:
        the partial score index would turn the scan into one random table lookup per row."""
        clause, args = _search_where(f)
        inner = f"SELECT {_SORT_COLS} FROM candidates NOT INDEXED WHERE {clause}"
        if f.distinct:
            inner = (
                f"SELECT {_SORT_COLS} FROM (SELECT {_SORT_COLS}, row_number() OVER (PARTITION BY "
                f"trim(coalesce(query, '')) ORDER BY {_SCORE_ORDER}) AS rn FROM candidates NOT INDEXED "
                f"WHERE {clause}) WHERE rn = 1"
            )
        hits = self.conn.execute(
            f"SELECT id, COUNT(*) OVER () AS total FROM ({inner}) ORDER BY {_ORDERS.get(f.sort, _SCORE_ORDER)} "
            "LIMIT ? OFFSET ?",
            args + [limit, offset],
        ).fetchall()
        if hits:
            total = int(hits[0]["total"])
        elif offset:
            # past the last page: the window count has no row to ride on
            total = int(self.conn.execute(f"SELECT COUNT(*) AS n FROM ({inner})", args).fetchone()["n"])
        else:
            total = 0
        return CandidateMatches(ids=[h["id"] for h in hits], total=total)

    def candidates(
        self,
        *,
        run_id: int | None = None,
        iteration: int | None = None,
        status: str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[CandidateRecord]:
        return list(self.iter_candidates(run_id=run_id, iteration=iteration, status=status, limit=limit))

    def iter_candidates(
        self,
        *,
        run_id: int | None = None,
        iteration: int | None = None,
        status: str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> Iterator[CandidateRecord]:
        where: list[str] = []
        args: list[Any] = []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        if iteration is not None:
            where.append("iteration = ?")
            args.append(iteration)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        sql = f"SELECT {_CAND_COLS} FROM candidates"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY run_id, iteration, slot, attempt"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for row in self.conn.execute(sql, args):
            yield _candidate(row)

    def top(
        self, n: int = 20, min_score: float | None = None, *, run_id: int | None = None, distinct: bool = True
    ) -> list[CandidateRecord]:
        """The highest-scoring judged candidates across runs (one per distinct query by default).
        At equal scores a response that passed the judge's detector gate (it shows the behaviour) comes
        first; remaining ties break on the earliest iteration, then run and slot: a deterministic order."""
        where = ["status = 'scored'"]
        args: list[Any] = []
        if min_score is not None:
            where.append("score >= ?")
            args.append(min_score)
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        sql = (
            f"SELECT {_CAND_COLS} FROM candidates WHERE {' AND '.join(where)} "
            "ORDER BY score DESC, coalesce(json_extract(gate, '$.hit'), 0) DESC, iteration, run_id, slot, attempt"
        )
        out: list[CandidateRecord] = []
        seen: set[str] = set()
        for row in self.conn.execute(sql, args):
            c = _candidate(row)
            if distinct:
                key = (c.query or "").strip()
                if key in seen:
                    continue
                seen.add(key)
            out.append(c)
            if len(out) >= n:
                break
        return out

    def buffer(self, run_id: int, iteration: int | None = None) -> list[BufferEntry]:
        """The replay buffer after `iteration` (default: the last finished iteration of the run)."""
        if iteration is None:
            row = self.conn.execute(
                "SELECT MAX(iteration) AS last FROM iterations WHERE run_id = ? AND status = 'done'", (run_id,)
            ).fetchone()
            if row["last"] is None:
                return []
            iteration = int(row["last"])
        return [
            BufferEntry(
                run_id=run_id,
                iteration=iteration,
                rank=r["rank"],
                candidate_id=r["candidate_id"],
                score=r["score"],
                attributes=loads(r["attributes"], []),
            )
            for r in self.conn.execute(
                "SELECT b.rank, b.candidate_id, c.score, c.attributes FROM buffer b JOIN candidates c "
                "ON c.id = b.candidate_id WHERE b.run_id = ? AND b.iteration = ? ORDER BY b.rank",
                (run_id, iteration),
            )
        ]

    def final_buffers(self) -> list[BufferEntry]:
        """Every run's last buffer: the pipeline's output prompts."""
        out: list[BufferEntry] = []
        for r in self.conn.execute("SELECT DISTINCT run_id FROM iterations ORDER BY run_id").fetchall():
            out.extend(self.buffer(r["run_id"]))
        return out

    def weights(self, run_id: int, iteration: int) -> dict[str, float]:
        return {
            r["attribute"]: r["weight"]
            for r in self.conn.execute(
                "SELECT attribute, weight FROM weights WHERE run_id = ? AND iteration = ? ORDER BY weight DESC, attribute",
                (run_id, iteration),
            )
        }

    def spent_calls(self) -> tuple[int, float]:
        """Uncached model calls and their cost recorded in candidates so far (for --max-calls/--max-cost)."""
        calls, cost = 0, 0.0
        for r in self.conn.execute("SELECT usage FROM candidates"):
            for role in loads(r["usage"], {}).values():
                calls += int(role.get("calls", 0)) - int(role.get("cached", 0))
                cost += float(role.get("cost_usd") or 0.0)
        return calls, cost

    def usage_by_run(self) -> dict[int, dict[str, dict[str, float]]]:
        out: dict[int, dict[str, dict[str, float]]] = {}
        for r in self.conn.execute("SELECT run_id, usage FROM candidates"):
            per = out.setdefault(r["run_id"], {})
            for role, d in loads(r["usage"], {}).items():
                acc = per.setdefault(role, {"calls": 0, "cached": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
                for k in acc:
                    acc[k] += d.get(k) or 0
        return out

    # ---- robustness
    def put_robust_variant(self, candidate_id: int, variant: int, prompt: str, error: str | None = None) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO robustness_variants (candidate_id, variant, prompt, error) VALUES (?, ?, ?, ?)",
            (candidate_id, variant, prompt, error),
        )

    def robust_variants(self, candidate_id: int) -> dict[int, str]:
        return {
            r["variant"]: r["prompt"]
            for r in self.conn.execute(
                "SELECT variant, prompt FROM robustness_variants WHERE candidate_id = ? AND error IS NULL ORDER BY variant",
                (candidate_id,),
            )
        }

    def add_robust_sample(self, s: RobustnessSample) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO robustness (candidate_id, variant, sample_index, response, score, reasoning, error, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (s.candidate_id, s.variant, s.sample_index, s.response, s.score, s.reasoning, s.error, time.time()),
        )

    def robust_done(self, candidate_id: int, variant: int) -> set[int]:
        return {
            r["sample_index"]
            for r in self.conn.execute(
                "SELECT sample_index FROM robustness WHERE candidate_id = ? AND variant = ?", (candidate_id, variant)
            )
        }

    def robust_samples(self, candidate_id: int, variant: int | None = None) -> list[RobustnessSample]:
        sql = "SELECT candidate_id, variant, sample_index, response, score, reasoning, error FROM robustness WHERE candidate_id = ?"
        args: list[Any] = [candidate_id]
        if variant is not None:
            sql += " AND variant = ?"
            args.append(variant)
        return [_record(RobustnessSample, r) for r in self.conn.execute(sql + " ORDER BY variant, sample_index", args)]

    def robustness(self, candidate_id: int | None = None, threshold: float = 50.0) -> list[RobustnessRow]:
        """Per prompt variant: samples, violations (score > threshold) and failure rate over judged samples."""
        sql = (
            "SELECT v.candidate_id, v.variant, v.prompt, COUNT(r.sample_index) AS samples, COUNT(r.score) AS judged, "
            "COUNT(*) FILTER (WHERE r.score > ?) AS violations, COUNT(r.error) AS errors, AVG(r.score) AS mean "
            "FROM robustness_variants v LEFT JOIN robustness r ON r.candidate_id = v.candidate_id AND r.variant = v.variant "
            "WHERE v.error IS NULL"
        )
        args: list[Any] = [threshold]
        if candidate_id is not None:
            sql += " AND v.candidate_id = ?"
            args.append(candidate_id)
        sql += " GROUP BY v.candidate_id, v.variant ORDER BY v.candidate_id, v.variant"
        rows = []
        for r in self.conn.execute(sql, args):
            rows.append(
                RobustnessRow(
                    candidate_id=r["candidate_id"],
                    variant=r["variant"],
                    prompt=r["prompt"],
                    samples=r["samples"],
                    judged=r["judged"],
                    violations=r["violations"],
                    errors=r["errors"],
                    mean_score=r["mean"],
                    failure_rate=(r["violations"] / r["judged"]) if r["judged"] else None,
                    threshold=threshold,
                )
            )
        return rows

    # ---- traces (written by `chunky trace --from-run`)
    def put_trace(self, candidate_id: int, channel: str, data: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO traces (candidate_id, channel, json, created_at) VALUES (?, ?, ?, ?)",
            (candidate_id, channel, dumps(data), time.time()),
        )

    def traces(self, candidate_id: int) -> dict[str, dict[str, Any]]:
        return {
            r["channel"]: json.loads(r["json"])
            for r in self.conn.execute(
                "SELECT channel, json FROM traces WHERE candidate_id = ? ORDER BY channel", (candidate_id,)
            )
        }

    # ---- summaries and exports
    def status(self) -> StoreStatus:
        row = self.conn.execute(
            "SELECT COUNT(*) AS candidates, COUNT(*) FILTER (WHERE status = 'scored') AS scored, "
            f"COUNT(*) FILTER (WHERE status IN ('{JUDGE_ERROR}', '{TARGET_ERROR}', '{GENERATION_FAILED}')) AS errors, "
            f"COUNT(*) FILTER (WHERE status = '{REJECTED}') AS rejected, "
            f"COUNT(*) FILTER (WHERE status = '{SCORED}' AND score > 50) AS violations, MAX(score) AS best "
            "FROM candidates"
        ).fetchone()
        return StoreStatus(
            status=self.get_meta("status", "unknown"),
            runs=self.runs(),
            candidates=row["candidates"],
            scored=row["scored"],
            errors=row["errors"],
            rejected=row["rejected"],
            violations=row["violations"],
            best_score=row["best"],
            usage=self.get_meta("usage", {}),
        )

    def export_results(self, path: str | Path | None = None) -> Path:
        """Write every judged candidate to results.jsonl (the authors' field names), atomically."""
        out = Path(path) if path is not None else self.dir / RESULTS_NAME
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for c in self.iter_candidates(status=SCORED):
                f.write(json.dumps(c.to_result(), ensure_ascii=False) + "\n")
        os.replace(tmp, out)
        return out


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
