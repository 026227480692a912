"""The team tracking database: PostgreSQL through psycopg 3 (``tracking = "postgresql://user@host/db"``).

Same tables and SQL as the SQLite backend; metric points go in with ``COPY`` (one round trip per
batch). The schema is created on first use under an advisory lock, so two processes starting at
once do not race on ``CREATE TABLE``.
"""

from __future__ import annotations

import re
from typing import Any

from mlops.errors import InputError, MlopsError
from mlops.stores.tracking import SqlTrackingStore, StoreUnavailable, TrackingError

_SCHEMA_LOCK = 0x6D6C6F7073  # "mlops"
CONNECT_TIMEOUT_S = 10


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class PostgresTrackingStore(SqlTrackingStore):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError:
            raise InputError(
                f"tracking {_shown(url)}: PostgreSQL needs the psycopg package (pip install 'psycopg[binary]')"
            ) from None
        self._psycopg = psycopg
        self._dsn = url.replace("postgres://", "postgresql://", 1)
        self.url = _shown(self._dsn)
        self._conn: Any = None
        self._connection()

    def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(self._dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=False)
        except psycopg.Error as exc:
            raise InputError(f"tracking {self.url}: cannot connect: {_first_line(exc)}") from None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                self._create_schema(cur)
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise self._translate(exc, "creating the tracking tables") from None
        self._conn = conn
        return conn

    def _errors(self) -> tuple[type[Exception], ...]:
        return (self._psycopg.Error,)

    def _insert_metrics(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        with cursor.copy("COPY metrics (run_id, key, step, ts, value) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _translate(self, exc: Exception, doing: str) -> MlopsError:
        errors = self._psycopg.errors
        where = f"{doing} in {self.url}"
        if isinstance(exc, errors.DiskFull):
            return StoreUnavailable(f"{where}: the server's disk is full")
        if isinstance(exc, errors.LockNotAvailable | errors.DeadlockDetected | errors.SerializationFailure):
            return StoreUnavailable(f"{where}: locked by another writer ({_first_line(exc)})")
        if isinstance(exc, self._psycopg.OperationalError):
            if self._conn is not None and self._conn.closed:
                self._conn = None  # reconnect on the next try
            return StoreUnavailable(f"{where}: {_first_line(exc)}")
        return TrackingError(f"{where}: {_first_line(exc)}")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
