"""The embedded tracking database: one SQLite file in WAL mode (the default, ``.mlops/tracking.db``).

WAL lets readers (``mlops runs list``) work while a training process writes, and makes a commit one
append to the log. ``synchronous=NORMAL`` is what SQLite recommends with WAL: a commit survives the
process being killed; only a power cut can lose the last transactions, never corrupt the file.
Another process holding the write lock makes a write wait up to ``busy_timeout`` and then fail with
"locked": the caller (:class:`~mlops.stores.tracking.BackgroundWriter`) keeps the batch and retries.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from mlops.errors import InputError, MlopsError
from mlops.stores.tracking import SCHEMA_VERSION, SqlTrackingStore, StoreUnavailable, TrackingError

BUSY_TIMEOUT_MS = 2000


class SqliteTrackingStore(SqlTrackingStore):
    def __init__(self, path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        super().__init__()
        self.path = path
        self.url = f"sqlite:///{path}"
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._open_lock = threading.Lock()
        self._connection()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        with self._open_lock:
            if self._conn is not None:
                return self._conn
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"tracking database {self.path}: cannot create its folder: {exc.strerror}") from None
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.busy_timeout_ms / 1000, check_same_thread=False, isolation_level=None
                )
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise InputError(f"tracking database {self.path}: cannot use WAL mode (got {mode})")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = OFF")
                if _schema_version(conn) == SCHEMA_VERSION:  # the usual case: no write, so a reader never waits
                    self._conn = _Connection(conn)  # type: ignore[assignment]
                    return self._conn  # type: ignore[return-value]
                conn.execute("BEGIN IMMEDIATE")
                try:
                    cursor = conn.cursor()
                    self._create_schema(cursor)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise self._translate(exc, "opening the tracking database") from None
            self._conn = _Connection(conn)  # type: ignore[assignment]
            return self._conn  # type: ignore[return-value]

    def _read_cursor(self, conn: Any) -> Any:
        return conn.raw.cursor()  # reads take no write lock: WAL readers never wait for the writer

    def _errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.Error,)

    def _translate(self, exc: Exception, doing: str) -> MlopsError:
        text = str(exc)
        lowered = text.lower()
        where = f"{doing} in {self.path}"
        if "locked" in lowered or "busy" in lowered:
            return StoreUnavailable(
                f"{where}: the database is locked by another writer (waited {self.busy_timeout_ms / 1000:g} s)"
            )
        if "full" in lowered:
            return StoreUnavailable(f"{where}: the disk is full ({text})")
        if isinstance(exc, sqlite3.OperationalError) and ("disk i/o" in lowered or "readonly" in lowered):
            return StoreUnavailable(f"{where}: {text}")
        if "not a database" in lowered or "malformed" in lowered:
            return InputError(f"{where}: not a readable tracking database ({text})")
        return TrackingError(f"{where}: {text}")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _schema_version(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("SELECT value FROM mlops_meta WHERE key = 'schema'").fetchone()
    except sqlite3.OperationalError:  # no such table yet
        return None
    return int(row[0]) if row is not None else None


class _Connection:
    """sqlite3 in autocommit mode with explicit BEGIN IMMEDIATE / COMMIT, behind the DB-API calls we use.

    ``BEGIN IMMEDIATE`` takes the write lock at the start of a write transaction, so a busy database is
    noticed (and waited for) before anything is done rather than in the middle of a batch.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.raw = conn
        self._open = False

    def cursor(self) -> Any:
        if not self._open:
            self.raw.execute("BEGIN IMMEDIATE")
            self._open = True
        return self.raw.cursor()

    def commit(self) -> None:
        if self._open:
            self._open = False
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self._open:
            self._open = False
            if self.raw.in_transaction:
                self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()
