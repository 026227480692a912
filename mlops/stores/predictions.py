"""The prediction log: every served prediction with its id, model version, environment, commit, inputs,
output and latency, for monitoring, drift and lineage.

One small interface (:class:`PredictionLog`); the default backend is SQLite in WAL mode (readers never block
the writer) at ``<repo>/.mlops/predictions.db``, or wherever ``MLOPS_PREDICTIONS`` points (a path, or
``sqlite:///path``). The model server never writes on the request path: :class:`BackgroundWriter` queues
records and a thread writes them in batches; when the queue is full, records are dropped and counted rather
than slowing requests down.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlops.errors import InputError, StoreError

PREDICTIONS_ENV = "MLOPS_PREDICTIONS"
DEFAULT_PREDICTIONS = ".mlops/predictions.db"


@dataclass(frozen=True)
class PredictionRecord:
    id: str
    time: float
    environment: str
    deployment: str
    model: str
    version: int
    commit: str
    inputs: str
    outputs: str
    latency_ms: float
    status: int = 200


class PredictionLog(Protocol):
    url: str

    def write(self, records: Sequence[PredictionRecord]) -> None: ...

    def query(
        self,
        environment: str | None = None,
        model: str | None = None,
        version: int | None = None,
        limit: int | None = None,
    ) -> list[PredictionRecord]: ...

    def count(self, environment: str | None = None, model: str | None = None, version: int | None = None) -> int: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    environment TEXT NOT NULL,
    deployment TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    commit_sha TEXT NOT NULL,
    inputs TEXT NOT NULL,
    outputs TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_by_version ON predictions (environment, model, version, time);
"""
_COLUMNS = "id, time, environment, deployment, model, version, commit_sha, inputs, outputs, latency_ms, status"


class SQLitePredictionLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the prediction log {path}: {exc}") from None

    def write(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        rows = [
            (r.id, r.time, r.environment, r.deployment, r.model, r.version, r.commit, r.inputs, r.outputs,
             r.latency_ms, r.status)
            for r in records
        ]
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    f"INSERT OR REPLACE INTO predictions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise StoreError(f"cannot write to the prediction log {self.path}: {exc}") from None

    def _where(
        self, environment: str | None, model: str | None, version: int | None
    ) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for column, value in (("environment", environment), ("model", model), ("version", version)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def query(
        self,
        environment: str | None = None,
        model: str | None = None,
        version: int | None = None,
        limit: int | None = None,
    ) -> list[PredictionRecord]:
        where, params = self._where(environment, model, version)
        sql = f"SELECT {_COLUMNS} FROM predictions{where} ORDER BY time"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [PredictionRecord(*row) for row in rows]

    def count(self, environment: str | None = None, model: str | None = None, version: int | None = None) -> int:
        where, params = self._where(environment, model, version)
        with self._lock:
            (total,) = self._db.execute(f"SELECT COUNT(*) FROM predictions{where}", params).fetchone()
        return int(total)

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()


def prediction_log_address(root: Path, configured: str | None = None) -> str:
    """Where a repository's prediction log lives: ``MLOPS_PREDICTIONS`` or ``<repo>/.mlops/predictions.db``."""
    spec = configured or os.environ.get(PREDICTIONS_ENV) or DEFAULT_PREDICTIONS
    if "://" in spec:
        return spec
    path = Path(spec)
    return str(path if path.is_absolute() else (root / path).absolute())


def open_prediction_log(address: str) -> PredictionLog:
    if address.startswith("sqlite:///"):
        return SQLitePredictionLog(Path(address.removeprefix("sqlite://")))
    if "://" in address:
        raise InputError(f"prediction log {address!r}: expected a file path or sqlite:///path")
    return SQLitePredictionLog(Path(address))


class BackgroundWriter:
    """Queue records and write them in batches from a daemon thread; never block the caller for long."""

    def __init__(self, log: PredictionLog, max_queue: int = 50_000, batch: int = 500, interval: float = 0.5) -> None:
        self.log = log
        self.dropped = 0
        self.written = 0
        self.failures = 0
        self.last_error: str | None = None
        self._queue: queue.Queue[PredictionRecord] = queue.Queue(maxsize=max_queue)
        self._batch = batch
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, record: PredictionRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def _drain(self) -> list[PredictionRecord]:
        out: list[PredictionRecord] = []
        with contextlib.suppress(queue.Empty):
            while len(out) < self._batch:
                out.append(self._queue.get_nowait())
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self._interval)
            self.flush()

    def flush(self) -> None:
        while True:
            records = self._drain()
            if not records:
                return
            try:
                self.log.write(records)
                self.written += len(records)
            except Exception as exc:  # the log is best effort: serving goes on, the failure is counted
                self.failures += len(records)
                self.last_error = str(exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
        self.log.close()

    def stats(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "queued": self._queue.qsize(),
            "dropped": self.dropped,
            "failures": self.failures,
            "last_error": self.last_error,
        }
