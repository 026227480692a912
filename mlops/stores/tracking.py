"""The experiment-tracking store: runs, their params, metrics, tags, inputs and artifacts (UC-13).

One small interface (:class:`TrackingStore`) with two backends that share their SQL
(:class:`SqlTrackingStore`): an embedded SQLite database in WAL mode (the default,
``mlops.stores.tracking_sqlite``) and PostgreSQL for teams (``mlops.stores.tracking_postgres``).

Training code never waits on the database: :class:`BackgroundWriter` queues what a run logs and
one writer thread commits it in batches (one transaction per batch, so a batch is written whole
or not at all). A batch that cannot be written (the database is locked by another writer, the
disk is full) stays queued and is tried again; what was committed before stays committed.

Tables (the same in both backends)::

    runs            one row per run: identity, project, state, times, heartbeat, environment (JSON)
    params          run_id, key, value (JSON, so 6 and "6" stay different)
    tags            run_id, key, value
    metrics         run_id, key, step, ts, value        every point, for curves
    latest_metrics  run_id, key, step, ts, value, n     the value at the highest step, kept on write
    inputs          run_id, dataset                     dataset://NAME@N and other inputs
    artifacts       run_id, name, digest, size, blob, stored_size, compression, ts
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from mlops.errors import InputError, MlopsError, UsageError

Scalar = str | int | float | bool
SCHEMA_VERSION = 1

# Names of params, metrics, tags and artifacts: no '/', no '..', nothing that could become a path.
KEY_MAX = 250
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]*$")


class TrackingError(MlopsError):
    """Something the tracking store or API could not do."""

    exit_code = 1


class InvalidValue(TrackingError):
    """A name, a metric value or a parameter the caller got wrong; nothing was logged for it."""

    exit_code = 2


class ParamConflict(InvalidValue):
    pass


class RunNotFound(InputError):
    pass


class StoreUnavailable(TrackingError):
    """The database refused a write for now (locked by another writer, disk full, connection lost)."""


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    KILLED = "killed"
    CRASHED = "crashed"

    @property
    def terminal(self) -> bool:
        return self is not RunStatus.RUNNING


def check_key(what: str, name: object) -> str:
    """A param, metric, tag or artifact name, or :class:`InvalidValue` saying why it is refused."""
    if not isinstance(name, str):
        raise InvalidValue(f"{what} name {name!r}: expected a string, got {type(name).__name__}")
    if len(name) > KEY_MAX:
        raise InvalidValue(f"{what} name {name[:40]!r}...: longer than {KEY_MAX} characters")
    if "/" in name or "\\" in name or ".." in name or not _KEY_RE.match(name):
        raise InvalidValue(
            f"{what} name {name!r}: use letters, digits and '_', '.', '-', ':', '+' (not starting with '.' or "
            "'-'); '/', '\\', '..', spaces and other characters are refused so that no name can become a path"
        )
    return name


def check_param_value(key: str, value: object) -> Scalar:
    if isinstance(value, bool | int | str):
        if isinstance(value, str) and len(value) > 6000:
            raise InvalidValue(f"param {key!r}: a value of {len(value):,} characters; at most 6,000")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValue(f"param {key!r}: {value} is not a finite number")
        return value
    try:  # numpy scalars and the like
        item = value.item()  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        item = None
    if isinstance(item, bool | int | float | str):
        return check_param_value(key, item)
    raise InvalidValue(
        f"param {key!r}: {type(value).__name__} values are not supported; use a string, number or boolean"
    )


def check_metric_value(key: str, value: object, step: int | None) -> float:
    at = f" at step {step}" if step is not None else ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidValue(f"metric {key!r}{at}: {value!r} is not a number; nothing was logged for it") from None
    number = float(value)
    if not math.isfinite(number):
        raise InvalidValue(
            f"metric {key!r}{at}: {number} is not a finite number; nothing was logged for it "
            "(a NaN or infinite loss usually means training diverged)"
        )
    return number


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: float


@dataclass(frozen=True)
class ArtifactEntry:
    name: str
    digest: str  # sha256 of the artifact's own bytes
    size: int
    blob: str  # the digest the store holds (the compressed bytes when compression is set)
    stored_size: int
    compression: str  # "" or "gzip"
    timestamp: float


@dataclass
class RunRecord:
    run_id: str
    project: str
    experiment: str
    name: str = ""
    user: str = ""
    status: RunStatus = RunStatus.RUNNING
    start_time: float = 0.0
    end_time: float | None = None
    heartbeat: float | None = None
    heartbeat_interval: float = 10.0
    pid: int | None = None
    host: str = ""
    error: str = ""
    partial: bool = False
    source: str = "mlops"
    environment: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Scalar] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metric_steps: dict[str, int] = field(default_factory=dict)
    metric_counts: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    artifacts: list[ArtifactEntry] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        end = self.end_time if self.end_time is not None else self.heartbeat
        return None if end is None else max(0.0, end - self.start_time)


@dataclass(frozen=True)
class RunEnd:
    run_id: str
    status: RunStatus
    end_time: float
    error: str = ""


@dataclass
class WriteBatch:
    """Everything one transaction writes. Rows are plain tuples in table column order (without the run id)."""

    run_id: str
    params: list[tuple[str, Scalar]] = field(default_factory=list)
    tags: list[tuple[str, str]] = field(default_factory=list)
    metrics: list[tuple[str, int, float, float]] = field(default_factory=list)  # key, step, ts, value
    inputs: list[str] = field(default_factory=list)
    artifacts: list[ArtifactEntry] = field(default_factory=list)
    heartbeat: float | None = None
    end: RunEnd | None = None

    def __len__(self) -> int:
        return len(self.params) + len(self.tags) + len(self.metrics) + len(self.inputs) + len(self.artifacts)

    @property
    def empty(self) -> bool:
        return not len(self) and self.heartbeat is None and self.end is None


class TrackingStore(Protocol):
    url: str

    def create_run(self, run: RunRecord, points: Sequence[tuple[str, int, float, float]] = ()) -> None: ...

    def write(self, batch: WriteBatch) -> None: ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def resolve(self, ref: str) -> str: ...

    def list_runs(
        self, project: str | None = None, experiment: str | None = None, run_ids: Sequence[str] | None = None
    ) -> list[RunRecord]: ...

    def metric_history(self, run_id: str, keys: Sequence[str] | None = None) -> dict[str, list[MetricPoint]]: ...

    def mark_crashed(self, run_ids: Sequence[str], at: float) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- SQL shared by both backends

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, project TEXT NOT NULL, experiment TEXT NOT NULL, name TEXT NOT NULL,
        username TEXT NOT NULL, status TEXT NOT NULL, partial INTEGER NOT NULL, start_time DOUBLE PRECISION NOT NULL,
        end_time DOUBLE PRECISION, heartbeat DOUBLE PRECISION, heartbeat_interval DOUBLE PRECISION NOT NULL,
        pid INTEGER, host TEXT NOT NULL, error TEXT NOT NULL, source TEXT NOT NULL, environment TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS runs_by_project ON runs (project, experiment, start_time)",
    """CREATE TABLE IF NOT EXISTS params (
        run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key))""",
    """CREATE TABLE IF NOT EXISTS tags (
        run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key))""",
    """CREATE TABLE IF NOT EXISTS metrics (
        run_id TEXT NOT NULL, key TEXT NOT NULL, step BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL,
        value DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id, key, step)",
    """CREATE TABLE IF NOT EXISTS latest_metrics (
        run_id TEXT NOT NULL, key TEXT NOT NULL, step BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL,
        value DOUBLE PRECISION NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (run_id, key))""",
    """CREATE TABLE IF NOT EXISTS inputs (
        run_id TEXT NOT NULL, dataset TEXT NOT NULL, PRIMARY KEY (run_id, dataset))""",
    """CREATE TABLE IF NOT EXISTS artifacts (
        run_id TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL, size BIGINT NOT NULL, blob TEXT NOT NULL,
        stored_size BIGINT NOT NULL, compression TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, name))""",
    "CREATE TABLE IF NOT EXISTS mlops_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]

_RUN_COLUMNS = (
    "run_id, project, experiment, name, username, status, partial, start_time, end_time, heartbeat, "
    "heartbeat_interval, pid, host, error, source, environment"
)
_UPSERT_LATEST = (
    "INSERT INTO latest_metrics (run_id, key, step, ts, value, n) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, key) DO UPDATE SET "
    "step = CASE WHEN excluded.step >= latest_metrics.step THEN excluded.step ELSE latest_metrics.step END, "
    "ts = CASE WHEN excluded.step >= latest_metrics.step THEN excluded.ts ELSE latest_metrics.ts END, "
    "value = CASE WHEN excluded.step >= latest_metrics.step THEN excluded.value ELSE latest_metrics.value END, "
    "n = latest_metrics.n + excluded.n"
)


def _latest_rows(run_id: str, points: Sequence[tuple[str, int, float, float]]) -> list[tuple[Any, ...]]:
    """One row per key: the point at the highest step (the last logged among equal steps), and how many."""
    best: dict[str, tuple[int, float, float]] = {}
    counts: dict[str, int] = {}
    for key, step, ts, value in points:
        counts[key] = counts.get(key, 0) + 1
        seen = best.get(key)
        if seen is None or step >= seen[0]:
            best[key] = (step, ts, value)
    return [(run_id, key, step, ts, value, counts[key]) for key, (step, ts, value) in best.items()]


def _decode_param(text: str) -> Scalar:
    """A param's JSON text back to its value; plain strings and numbers skip the JSON parser (10,000 runs list fast)."""
    if text.startswith('"') and "\\" not in text:
        return text[1:-1]
    if text == "true" or text == "false":
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
        if math.isfinite(number):
            return number
    except ValueError:
        pass
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str | int | float | bool) else text


class SqlTrackingStore:
    """The SQL both backends run; subclasses supply the connection, placeholders and error translation."""

    url: str
    placeholder = "?"

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # ---- backend hooks

    def _connection(self) -> Any:
        raise NotImplementedError

    def _translate(self, exc: Exception, doing: str) -> MlopsError:
        raise NotImplementedError

    def _errors(self) -> tuple[type[Exception], ...]:
        raise NotImplementedError

    def _read_cursor(self, conn: Any) -> Any:
        return conn.cursor()

    def _insert_metrics(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        cursor.executemany(self._sql("INSERT INTO metrics (run_id, key, step, ts, value) VALUES (?, ?, ?, ?, ?)"), rows)

    # ---- helpers

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[Any]:
        with self._lock:
            conn = self._connection()
            try:
                cursor = conn.cursor()
                yield cursor
                conn.commit()
            except self._errors() as exc:
                try:
                    conn.rollback()
                except self._errors():
                    pass
                raise self._translate(exc, doing) from None
            except BaseException:
                try:
                    conn.rollback()
                except self._errors():
                    pass
                raise

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connection()
            try:
                cursor = self._read_cursor(conn)
                cursor.execute(self._sql(sql), tuple(args))
                rows = list(cursor.fetchall())
                conn.commit()  # ends the read transaction (PostgreSQL opens one for every statement)
                return rows
            except self._errors() as exc:
                try:
                    conn.rollback()
                except self._errors():
                    pass
                raise self._translate(exc, "reading runs") from None

    def _create_schema(self, cursor: Any) -> None:
        for statement in SCHEMA:
            cursor.execute(statement)
        cursor.execute(self._sql("SELECT value FROM mlops_meta WHERE key = ?"), ("schema",))
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                self._sql("INSERT INTO mlops_meta (key, value) VALUES (?, ?)"), ("schema", str(SCHEMA_VERSION))
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise InputError(
                f"{self.url}: written by a newer mlops (tracking schema {row[0]}, this one knows {SCHEMA_VERSION}); "
                "upgrade mlops"
            )

    # ---- writes

    def create_run(self, run: RunRecord, points: Sequence[tuple[str, int, float, float]] = ()) -> None:
        """Insert a run with its params, tags, inputs, artifacts and any metric ``points`` in one transaction."""
        with self._transaction(f"creating run {run.run_id}") as cur:
            cur.execute(
                self._sql(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 16)})"),
                (
                    run.run_id,
                    run.project,
                    run.experiment,
                    run.name,
                    run.user,
                    run.status.value,
                    int(run.partial),
                    run.start_time,
                    run.end_time,
                    run.heartbeat,
                    run.heartbeat_interval,
                    run.pid,
                    run.host,
                    run.error,
                    run.source,
                    json.dumps(run.environment, sort_keys=True, default=str),
                ),
            )
            batch = WriteBatch(
                run.run_id,
                params=list(run.params.items()),
                tags=list(run.tags.items()),
                metrics=list(points),
                inputs=list(run.inputs),
                artifacts=list(run.artifacts),
            )
            self._write_in(cur, batch)

    def write(self, batch: WriteBatch) -> None:
        with self._transaction(f"writing run {batch.run_id}") as cur:
            self._write_in(cur, batch)

    def _write_in(self, cur: Any, batch: WriteBatch) -> None:
        run_id = batch.run_id
        if True:
            if batch.params:
                cur.executemany(
                    self._sql("INSERT INTO params (run_id, key, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"),
                    [(run_id, k, json.dumps(v)) for k, v in batch.params],
                )
            if batch.tags:
                cur.executemany(
                    self._sql(
                        "INSERT INTO tags (run_id, key, value) VALUES (?, ?, ?) "
                        "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"
                    ),
                    [(run_id, k, v) for k, v in batch.tags],
                )
            if batch.metrics:
                self._insert_metrics(cur, [(run_id, *row) for row in batch.metrics])
                cur.executemany(self._sql(_UPSERT_LATEST), _latest_rows(run_id, batch.metrics))
            if batch.inputs:
                cur.executemany(
                    self._sql("INSERT INTO inputs (run_id, dataset) VALUES (?, ?) ON CONFLICT DO NOTHING"),
                    [(run_id, d) for d in batch.inputs],
                )
            if batch.artifacts:
                cur.executemany(
                    self._sql(
                        "INSERT INTO artifacts (run_id, name, digest, size, blob, stored_size, compression, ts) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, name) DO UPDATE SET "
                        "digest = excluded.digest, size = excluded.size, blob = excluded.blob, "
                        "stored_size = excluded.stored_size, compression = excluded.compression, ts = excluded.ts"
                    ),
                    [
                        (run_id, a.name, a.digest, a.size, a.blob, a.stored_size, a.compression, a.timestamp)
                        for a in batch.artifacts
                    ],
                )
            if batch.heartbeat is not None:
                # A live writer revives a run a reader marked crashed while the database kept us waiting.
                cur.execute(
                    self._sql(
                        "UPDATE runs SET heartbeat = ?, status = ?, partial = 0, end_time = NULL, error = '' "
                        "WHERE run_id = ? AND status IN (?, ?)"
                    ),
                    (
                        batch.heartbeat,
                        RunStatus.RUNNING.value,
                        run_id,
                        RunStatus.RUNNING.value,
                        RunStatus.CRASHED.value,
                    ),
                )
            if batch.end is not None:
                end = batch.end
                cur.execute(
                    self._sql(
                        "UPDATE runs SET status = ?, end_time = ?, heartbeat = ?, error = ?, partial = ? "
                        "WHERE run_id = ?"
                    ),
                    (
                        end.status.value,
                        end.end_time,
                        end.end_time,
                        end.error,
                        int(end.status is not RunStatus.FINISHED),
                        run_id,
                    ),
                )

    def mark_crashed(self, run_ids: Sequence[str], at: float) -> None:
        if not run_ids:
            return
        with self._transaction("marking crashed runs") as cur:
            cur.executemany(
                self._sql(
                    "UPDATE runs SET status = ?, partial = 1, end_time = heartbeat, error = ? "
                    "WHERE run_id = ? AND status = ?"
                ),
                [
                    (
                        RunStatus.CRASHED.value,
                        f"heartbeat lost (noticed {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(at))} UTC)",
                        run_id,
                        RunStatus.RUNNING.value,
                    )
                    for run_id in run_ids
                ],
            )

    # ---- reads

    def resolve(self, ref: str) -> str:
        """A full run id from an id or a unique prefix of at least 4 characters."""
        ref = ref.strip()
        if not re.fullmatch(r"[0-9a-zA-Z-]{4,64}", ref):
            raise UsageError(f"run {ref!r}: expected a run id (or at least its first 4 characters)")
        rows = self._query("SELECT run_id FROM runs WHERE run_id LIKE ? ORDER BY run_id LIMIT 3", (ref + "%",))
        if not rows:
            raise RunNotFound(f"run {ref!r} is not in the tracking store {self.url}")
        if len(rows) > 1:
            raise UsageError(f"run {ref!r} is ambiguous: {', '.join(r[0] for r in rows)}...; give more characters")
        return str(rows[0][0])

    def get_run(self, run_id: str) -> RunRecord | None:
        runs = self.list_runs(run_ids=[run_id])
        if not runs:
            return None
        run = runs[0]
        rows = self._query(
            "SELECT name, digest, size, blob, stored_size, compression, ts FROM artifacts WHERE run_id = ? "
            "ORDER BY name",
            (run_id,),
        )
        run.artifacts = [ArtifactEntry(r[0], r[1], int(r[2]), r[3], int(r[4]), r[5], float(r[6])) for r in rows]
        return run

    def list_runs(
        self, project: str | None = None, experiment: str | None = None, run_ids: Sequence[str] | None = None
    ) -> list[RunRecord]:
        where: list[str] = []
        args: list[Any] = []
        if project is not None:
            where.append("project = ?")
            args.append(project)
        if experiment is not None:
            where.append("experiment = ?")
            args.append(experiment)
        if run_ids is not None:
            if not run_ids:
                return []
            where.append(f"run_id IN ({', '.join('?' * len(run_ids))})")
            args.extend(run_ids)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sub = f"SELECT run_id FROM runs{clause}"
        runs: dict[str, RunRecord] = {}
        for row in self._query(f"SELECT {_RUN_COLUMNS} FROM runs{clause} ORDER BY start_time DESC, run_id", args):
            environment = json.loads(row[15]) if row[15] else {}
            runs[row[0]] = RunRecord(
                run_id=row[0],
                project=row[1],
                experiment=row[2],
                name=row[3],
                user=row[4],
                status=RunStatus(row[5]),
                partial=bool(row[6]),
                start_time=float(row[7]),
                end_time=None if row[8] is None else float(row[8]),
                heartbeat=None if row[9] is None else float(row[9]),
                heartbeat_interval=float(row[10]),
                pid=row[11],
                host=row[12],
                error=row[13],
                source=row[14],
                environment=environment if isinstance(environment, dict) else {},
            )
        if not runs:
            return []
        filtered = bool(where)
        scope = f" WHERE run_id IN ({sub})" if filtered else ""
        for run_id, key, value in self._query(
            f"SELECT run_id, key, value FROM params{scope}", args if filtered else ()
        ):
            if run_id in runs:
                runs[run_id].params[key] = _decode_param(value)
        for run_id, key, step, value, n in self._query(
            f"SELECT run_id, key, step, value, n FROM latest_metrics{scope}", args if filtered else ()
        ):
            if run_id in runs:
                run = runs[run_id]
                run.metrics[key] = float(value)
                run.metric_steps[key] = int(step)
                run.metric_counts[key] = int(n)
        for run_id, key, value in self._query(f"SELECT run_id, key, value FROM tags{scope}", args if filtered else ()):
            if run_id in runs:
                runs[run_id].tags[key] = value
        for run_id, dataset in self._query(f"SELECT run_id, dataset FROM inputs{scope}", args if filtered else ()):
            if run_id in runs:
                runs[run_id].inputs.append(dataset)
        for run in runs.values():
            run.inputs.sort()
        return list(runs.values())

    def metric_history(self, run_id: str, keys: Sequence[str] | None = None) -> dict[str, list[MetricPoint]]:
        sql = "SELECT key, value, step, ts FROM metrics WHERE run_id = ?"
        args: list[Any] = [run_id]
        if keys:
            sql += f" AND key IN ({', '.join('?' * len(keys))})"
            args.extend(keys)
        history: dict[str, list[MetricPoint]] = {}
        for key, value, step, ts in self._query(sql + " ORDER BY key, step, ts", args):
            history.setdefault(key, []).append(MetricPoint(key, float(value), int(step), float(ts)))
        return history


# --------------------------------------------------------------------------- opening a store


def sqlite_path(uri: str, root: Path) -> Path:
    """``sqlite:///rel/path.db`` (relative to the repository) or ``sqlite:////abs/path.db``."""
    rest = uri.removeprefix("sqlite:///")
    if not rest:
        raise InputError(f"tracking {uri!r}: expected sqlite:///path/to/tracking.db")
    path = Path(rest)
    return path if path.is_absolute() else root / path


def open_tracking_store(uri: str, root: Path, create: bool = True) -> TrackingStore | None:
    """The store at ``uri``; with ``create=False``, None when a SQLite file does not exist yet."""
    if uri.startswith("sqlite:///"):
        from mlops.stores.tracking_sqlite import SqliteTrackingStore

        path = sqlite_path(uri, root)
        if not create and not path.is_file():
            return None
        return SqliteTrackingStore(path)
    if uri.startswith(("postgresql://", "postgres://")):
        from mlops.stores.tracking_postgres import PostgresTrackingStore

        return PostgresTrackingStore(uri)
    raise InputError(
        f"tracking {uri!r}: expected sqlite:///path (relative to the repository), sqlite:////absolute/path "
        "or postgresql://user@host/db"
    )


# --------------------------------------------------------------------------- the background writer


class BackgroundWriter:
    """Queues one run's writes and commits them in batches from one thread.

    ``log_*`` calls only append to in-memory lists (a lock held for a list append); the thread wakes
    every ``interval`` seconds, or sooner when ``batch_size`` rows wait, and writes everything queued in
    one transaction. A failed write keeps its batch at the head of the queue and is retried with
    backoff; only when ``max_pending`` rows wait does a ``log_*`` call block, until the thread catches up
    or ``block_timeout`` passes (then it raises rather than grow without bound).
    """

    def __init__(
        self,
        store: TrackingStore,
        run_id: str,
        interval: float = 0.25,
        heartbeat_interval: float = 10.0,
        batch_size: int = 20_000,
        max_pending: int = 2_000_000,
        block_timeout: float = 60.0,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.interval = interval
        self.heartbeat_interval = heartbeat_interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.block_timeout = block_timeout
        self._pending = WriteBatch(run_id)
        self._failed: WriteBatch | None = None  # a batch taken from the queue whose write failed
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._closing = False
        self._last_error: MlopsError | None = None
        self._errors_seen = 0
        self._last_heartbeat = 0.0
        self._thread: threading.Thread | None = None
        self.written = 0

    # ---- producer side

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._closing = False
            self._thread = threading.Thread(target=self._loop, name=f"mlops-writer-{self.run_id[:8]}", daemon=True)
            self._thread.start()

    @property
    def last_error(self) -> MlopsError | None:
        return self._last_error

    def _wait_for_room(self, rows: int) -> None:
        """Called holding the condition: block (boundedly) while the queue is full."""
        self._wake.set()
        deadline = time.monotonic() + self.block_timeout
        while len(self._pending) + rows > self.max_pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreUnavailable(
                    f"{len(self._pending):,} logged values of run {self.run_id} are waiting to be written "
                    f"to {self.store.url} ({self._error_text()}); refusing more rather than use unbounded memory"
                )
            self._cond.wait(min(left, 0.5))

    def add(self, fill: Callable[[WriteBatch], None], rows: int = 1) -> None:
        with self._cond:
            if rows and len(self._pending) + rows > self.max_pending:
                self._wait_for_room(rows)
            fill(self._pending)
            if len(self._pending) >= self.batch_size:
                self._wake.set()

    def add_metric(self, key: str, step: int, timestamp: float, value: float) -> None:
        """The hot path of ``log_metric``: one append under the lock."""
        with self._cond:
            metrics = self._pending.metrics
            if len(metrics) >= self.max_pending:
                self._wait_for_room(1)
                metrics = self._pending.metrics
            metrics.append((key, step, timestamp, value))
            if len(metrics) >= self.batch_size:
                self._wake.set()

    def add_metrics(self, rows: list[tuple[str, int, float, float]]) -> None:
        with self._cond:
            if len(self._pending.metrics) + len(rows) > self.max_pending:
                self._wait_for_room(len(rows))
            self._pending.metrics.extend(rows)
            if len(self._pending.metrics) >= self.batch_size:
                self._wake.set()

    def pending(self) -> int:
        with self._cond:
            failed = len(self._failed) if self._failed is not None else 0
            return len(self._pending) + failed + self._inflight

    def flush(self, timeout: float) -> None:
        """Wait until everything queued so far is written, or raise :class:`StoreUnavailable` after ``timeout``."""
        self.start()
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                idle = self._pending.empty and self._failed is None and not self._busy
            if idle:
                return
            self._wake.set()
            if time.monotonic() >= deadline:
                waiting = self.pending()
                raise StoreUnavailable(
                    f"run {self.run_id}: {waiting:,} logged value(s) could not be written to {self.store.url} "
                    f"within {timeout:g} s ({self._error_text()}); everything written before is kept, and the "
                    "rest stays queued in this process: call run.flush() to try again"
                )
            time.sleep(0.01)

    def stop(self, timeout: float) -> None:
        try:
            self.flush(timeout)
        finally:
            self._closing = True
            self._wake.set()
            if self._thread is not None:
                self._thread.join(timeout=1.0)

    def _error_text(self) -> str:
        return self._last_error.message if self._last_error is not None else "still waiting for the database"

    # ---- the thread

    _busy = False
    _inflight = 0

    def _loop(self) -> None:
        backoff = self.interval
        while not self._closing:
            self._wake.wait(backoff)
            self._wake.clear()
            ok = self._write_once()
            backoff = self.interval if ok else min(max(backoff * 2, 0.05), 2.0)

    def _take(self) -> WriteBatch:
        with self._cond:
            if self._failed is not None:
                batch, self._failed = self._failed, None
                # Whatever was queued meanwhile joins the retried batch, in order.
                _merge(batch, self._pending)
            else:
                batch = self._pending
            self._pending = WriteBatch(self.run_id)
            now = time.time()
            if batch.end is None and now - self._last_heartbeat >= self.heartbeat_interval:
                batch.heartbeat = now
            self._busy = True
            self._inflight = len(batch)
            self._cond.notify_all()
            return batch

    def _write_once(self) -> bool:
        batch = self._take()
        try:
            if not batch.empty:
                self.store.write(batch)
                if batch.heartbeat is not None:
                    self._last_heartbeat = batch.heartbeat
                self.written += len(batch)
            self._last_error = None
            return True
        except MlopsError as exc:
            self._last_error = exc
            self._errors_seen += 1
            with self._cond:
                batch.heartbeat = None
                self._failed = batch
            return False
        except Exception as exc:  # a bug or an unexpected driver error: keep the data, report it
            self._last_error = TrackingError(f"writing to {self.store.url} failed: {type(exc).__name__}: {exc}")
            with self._cond:
                batch.heartbeat = None
                self._failed = batch
            return False
        finally:
            with self._cond:
                self._busy = False
                self._inflight = 0
                self._cond.notify_all()


def _merge(into: WriteBatch, more: WriteBatch) -> None:
    into.params.extend(more.params)
    into.tags.extend(more.tags)
    into.metrics.extend(more.metrics)
    into.inputs.extend(more.inputs)
    into.artifacts.extend(more.artifacts)
    if more.end is not None:
        into.end = more.end


def iter_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def mapping_of(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value) if value else {}
