"""`start_run` and `Run`: the tracking API training code calls (UC-13).

Every ``log_*`` call checks its input at once (names, finite numbers, a param logged twice with
another value) and raises :class:`~mlops.stores.tracking.InvalidValue` with the reason, logging
nothing for that call; then it only queues. A background thread writes what is queued in batches
(see :class:`~mlops.stores.tracking.BackgroundWriter`), so training does not wait on the database.
Artifacts are copied into the content-addressed store right away (the file may change after the
call returns); large ones are gzip-compressed when that makes them noticeably smaller (UC-13 5a).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from mlops.errors import InputError, MlopsError, UsageError
from mlops.manifests.base import check_name
from mlops.stores.retry import RetryPolicy, with_retries
from mlops.stores.tracking import (
    ArtifactEntry,
    BackgroundWriter,
    InvalidValue,
    ParamConflict,
    RunEnd,
    RunRecord,
    RunStatus,
    Scalar,
    StoreUnavailable,
    TrackingError,
    TrackingStore,
    WriteBatch,
    check_key,
    check_metric_value,
    check_param_value,
)
from mlops.tracking import signals
from mlops.tracking.capture import capture_environment, package_lock

COMPRESS_MIN_BYTES = 1024 * 1024  # artifacts from this size on are tried with gzip
COMPRESS_MAX_RATIO = 0.9  # ... and kept compressed only when that saves at least 10%
DEFAULT_HEARTBEAT_S = 10.0
DEFAULT_FLUSH_TIMEOUT_S = 30.0
START_RETRY = RetryPolicy(attempts=6, first_delay=0.5, factor=2.0)  # with the busy timeout: about 30 s


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name}={text!r}: expected a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{name}={text!r}: expected a positive number of seconds")
    return value


def parse_overrides(text: str | None) -> dict[str, Scalar]:
    """``MLOPS_PARAMS``: a JSON object, or ``key=value,key=value`` (values read as JSON when they parse)."""
    if not text or not text.strip():
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"MLOPS_PARAMS: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError("MLOPS_PARAMS: expected a JSON object of param: value")
        return {check_key("param", k): check_param_value(k, v) for k, v in data.items()}
    out: dict[str, Scalar] = {}
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise UsageError(f"MLOPS_PARAMS: expected key=value, got {item.strip()!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw.strip()
        out[check_key("param", key)] = check_param_value(key, value)
    return out


class Run:
    """One tracked run. Use it as a context manager, or call :meth:`end` (``atexit`` ends it otherwise)."""

    def __init__(
        self,
        store: TrackingStore,
        record: RunRecord,
        root: Path,
        heartbeat_interval: float,
        flush_timeout: float,
        owns_store: bool = True,
    ) -> None:
        self._store = store
        self._owns_store = owns_store
        self._record = record
        self.root = root
        self.run_id = record.run_id
        self.project = record.project
        self.experiment = record.experiment
        self.flush_timeout = flush_timeout
        self.killed_by: int | None = None
        self._params: dict[str, Scalar] = dict(record.params)
        self._steps: dict[str, int] = {}
        self._checked: set[str] = set()
        self._status = RunStatus.RUNNING
        self._end_lock = threading.Lock()
        self._artifact_store: Any = None
        self._writer = BackgroundWriter(store, record.run_id, heartbeat_interval=heartbeat_interval)
        self._writer.start()

    # ---- what the run is

    @property
    def params(self) -> dict[str, Scalar]:
        """The effective parameters: the code's, with the user's overrides (MLOPS_PARAMS) applied."""
        return dict(self._params)

    @property
    def status(self) -> str:
        return self._status.value

    @property
    def environment(self) -> dict[str, Any]:
        return dict(self._record.environment)

    def __repr__(self) -> str:
        return f"Run({self.run_id[:8]}, {self.project}/{self.experiment}, {self._status.value})"

    def _check_open(self) -> None:
        if self._status is not RunStatus.RUNNING:
            raise UsageError(f"run {self.run_id} has ended ({self._status.value}); start a new run to log more")

    # ---- logging

    def _key(self, what: str, key: str) -> str:
        if key not in self._checked:
            check_key(what, key)
            self._checked.add(key)
        return key

    def log_param(self, key: str, value: Scalar) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._check_open()
        checked: list[tuple[str, Scalar]] = []
        for key, value in params.items():
            self._key("param", key)
            value = check_param_value(key, value)
            if key in self._params:
                old = self._params[key]
                if old != value or type(old) is not type(value):
                    raise ParamConflict(
                        f"param {key!r} is already {old!r} in run {self.run_id[:8]}; it cannot become {value!r} "
                        "(params describe the run and do not change; log a metric or a tag for values that do)"
                    )
                continue
            checked.append((key, value))
        for key, value in checked:
            self._params[key] = value

        def fill(batch: WriteBatch) -> None:
            batch.params.extend(checked)

        if checked:
            self._writer.add(fill, len(checked))

    def log_metric(self, key: str, value: float, step: int | None = None, timestamp: float | None = None) -> None:
        self._check_open()
        if key not in self._checked:
            self._key("metric", key)
        number = check_metric_value(key, value, step)
        if step is None:
            step = self._steps.get(key, -1) + 1
        elif isinstance(step, bool) or not isinstance(step, int):
            raise InvalidValue(f"metric {key!r}: step must be a whole number, got {step!r}")
        self._steps[key] = step
        self._writer.add_metric(key, step, time.time() if timestamp is None else timestamp, number)

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp: float | None = None
    ) -> None:
        self._check_open()
        ts = time.time() if timestamp is None else timestamp
        rows: list[tuple[str, int, float, float]] = []
        for key, value in metrics.items():
            self._key("metric", key)
            number = check_metric_value(key, value, step)
            at = step if step is not None else self._steps.get(key, -1) + 1
            if isinstance(at, bool) or not isinstance(at, int):
                raise InvalidValue(f"metric {key!r}: step must be a whole number, got {at!r}")
            rows.append((key, at, ts, number))
        for key, at, _, _ in rows:
            self._steps[key] = at
        self._writer.add_metrics(rows)

    def set_tag(self, key: str, value: object) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, object]) -> None:
        self._check_open()
        rows = [(self._key("tag", k), str(v)) for k, v in tags.items()]

        def fill(batch: WriteBatch) -> None:
            batch.tags.extend(rows)

        self._writer.add(fill, len(rows))

    def log_input(self, dataset: str) -> None:
        """Record data the run read: ``dataset://NAME@N`` (checked against the project when the run started)."""
        self._check_open()
        if dataset.startswith("dataset://") and dataset not in self._record.inputs:
            raise UsageError(
                f"{dataset}: datasets are checked against the project's rules when the run starts; pass "
                "datasets=[...] to start_run"
            )

        def fill(batch: WriteBatch) -> None:
            batch.inputs.append(dataset)

        self._writer.add(fill)

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> ArtifactEntry:
        """Copy a file (or a folder, packed as a tar) into the content-addressed store and link it to the run."""
        self._check_open()
        source = Path(path)
        artifact_name = check_key(
            "artifact", name if name is not None else source.name + (".tar" if source.is_dir() else "")
        )
        if not source.exists():
            raise InputError(f"artifact {source}: no such file or folder")
        entry = self._store_artifact(source, artifact_name)

        def fill(batch: WriteBatch) -> None:
            batch.artifacts.append(entry)

        self._writer.add(fill)
        return entry

    def _store_artifact(self, source: Path, name: str) -> ArtifactEntry:
        from mlops.inspect.formats import pack_directory
        from mlops.services.store import repo_store
        from mlops.stores.artifacts import sha256_file

        if self._artifact_store is None:
            self._artifact_store = repo_store(self.root)
        store = self._artifact_store
        with tempfile.TemporaryDirectory(prefix="mlops-artifact-") as tmp:
            if source.is_dir():
                packed = Path(tmp) / name
                packed.write_bytes(pack_directory(source))
                source = packed
            digest, size = sha256_file(source)
            compression = ""
            stored = source
            if size >= COMPRESS_MIN_BYTES:
                candidate = Path(tmp) / (name + ".gz")
                with source.open("rb") as raw, gzip.GzipFile(candidate, "wb", compresslevel=6, mtime=0) as packed_out:
                    shutil.copyfileobj(raw, packed_out, 1024 * 1024)
                if candidate.stat().st_size <= COMPRESS_MAX_RATIO * size:
                    stored, compression = candidate, "gzip"
            blob, stored_size = store.put_file(stored)
        return ArtifactEntry(name, digest, size, blob, stored_size, compression, time.time())

    # ---- ending

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything logged so far is in the database (raises StoreUnavailable after ``timeout``)."""
        self._writer.flush(self.flush_timeout if timeout is None else timeout)
        if self._status is not RunStatus.RUNNING and self._owns_store:  # a retry after end() failed to flush
            self._writer.stop(self.flush_timeout)
            self._store.close()

    def end(self, status: str = "finished", error: str = "") -> None:
        """End the run as finished, failed or killed, and wait for what is queued to be written."""
        final = RunStatus(status)
        with self._end_lock:
            if self._status is RunStatus.RUNNING:
                self._status = final
                signals.unregister(self)
                end = RunEnd(self.run_id, final, time.time(), error[:2000])

                def fill(batch: WriteBatch) -> None:
                    batch.end = end

                self._writer.add(fill, 0)
        self._writer.stop(self.flush_timeout)
        if self._owns_store:
            self._store.close()

    def _end_from_hook(self, status: str, error: str) -> None:
        with contextlib.suppress(MlopsError):
            self.end(status, error)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if value is None:
            self.end("finished")
        elif isinstance(value, KeyboardInterrupt) or (isinstance(value, SystemExit) and self.killed_by is not None):
            self.end("killed", f"stopped by signal {self.killed_by}" if self.killed_by else "KeyboardInterrupt")
        elif isinstance(value, SystemExit) and value.code in (0, None):
            self.end("finished")
        else:
            self.end("failed", f"{type(value).__name__}: {value}")


def _user(root: Path) -> str | None:
    explicit = os.environ.get("MLOPS_USER")
    if explicit:
        return explicit.strip()
    from mlops.loader.gitwrite import git_identity

    return git_identity(root)


def start_run(
    project: str,
    experiment: str,
    params: Mapping[str, Any] | None = None,
    *,
    name: str = "",
    tags: Mapping[str, object] | None = None,
    datasets: Iterable[str] = (),
    expected_cpu_hours: float | None = None,
    expected_gpu_hours: float | None = None,
    cpus: float | None = None,
    gpus: float | None = None,
    repo: str | os.PathLike[str] | None = None,
    store: TrackingStore | None = None,
    heartbeat_interval: float | None = None,
    flush_timeout: float | None = None,
) -> Run:
    """Start a run of ``experiment`` in ``project`` (``registry/experiments/<project>.yaml``).

    Refused with every reason (:class:`~mlops.services.runs.RunRefused`) when the user is not a member,
    a dataset is not allowed, or the experiment needs a review it has not had (UC-15 4a). ``params`` are
    the code's values; ``MLOPS_PARAMS`` (JSON or ``k=v,k=v``) overrides them, and :attr:`Run.params`
    holds the effective ones (UC-13 3a). ``cpus`` / ``gpus`` (default: 1 CPU, no GPU) count the run's
    compute against the project's budget.
    """
    from mlops.services.runs import authorize_run, find_repo, open_store

    for label, value in (("project", project), ("experiment", experiment)):
        try:
            check_name(value)
        except ValueError as exc:
            raise UsageError(f"{label}: {exc}") from None
    root = find_repo(Path(repo) if repo is not None else None)
    effective: dict[str, Scalar] = {}
    for key, value in (params or {}).items():
        effective[check_key("param", key)] = check_param_value(key, value)
    overrides = parse_overrides(os.environ.get("MLOPS_PARAMS"))
    effective.update(overrides)
    tag_values = {check_key("tag", k): str(v) for k, v in (tags or {}).items()}
    if overrides:
        tag_values["mlops.params.overridden"] = ",".join(sorted(overrides))
    inputs = sorted(set(datasets))
    for resource, amount in (("cpus", cpus), ("gpus", gpus)):
        if amount is not None and (not math.isfinite(amount) or amount < 0):
            raise UsageError(f"{resource}={amount!r}: expected a number >= 0")
    interval = heartbeat_interval or _env_float("MLOPS_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_S)
    timeout = flush_timeout or _env_float("MLOPS_FLUSH_TIMEOUT", DEFAULT_FLUSH_TIMEOUT_S)
    owned = store is None
    # Runs of a sweep start together: a busy database is waited out at every step of starting, not
    # reported (opening it and reading the budget can meet another run's lock as well as creating the run).
    tracking = (
        store
        if store is not None
        else with_retries("opening the tracking database", lambda: open_store(root), (StoreUnavailable,), START_RETRY)
    )
    try:
        user = _user(root)
        with_retries(
            "checking the run against its project",
            lambda: authorize_run(
                root, tracking, project, experiment, user, inputs, expected_cpu_hours, expected_gpu_hours
            ),
            (StoreUnavailable,),
            START_RETRY,
        )
        lock = package_lock()
        environment = capture_environment(Path.cwd(), lock)
        environment["resources"] = {"cpus": 1.0 if cpus is None else float(cpus), "gpus": float(gpus or 0)}
        with contextlib.suppress(MlopsError, OSError):
            from mlops.services.store import repo_store

            with tempfile.TemporaryDirectory(prefix="mlops-lock-") as tmp:
                lock_file = Path(tmp) / "packages.lock"
                lock_file.write_text(lock, encoding="utf-8")
                environment["packages"]["lock_blob"] = repo_store(root).put_file(lock_file)[0]
        now = time.time()
        record = RunRecord(
            run_id=uuid.uuid4().hex,
            project=project,
            experiment=experiment,
            name=name,
            user=user or "",
            status=RunStatus.RUNNING,
            start_time=now,
            heartbeat=now,
            heartbeat_interval=interval,
            pid=os.getpid(),
            host=socket.gethostname(),
            environment=environment,
            params=effective,
            tags=tag_values,
            inputs=inputs,
        )
        with_retries(
            f"starting run {record.run_id}", lambda: tracking.create_run(record), (StoreUnavailable,), START_RETRY
        )
    except BaseException:
        if owned:
            tracking.close()
        raise
    run = Run(tracking, record, root, interval, timeout, owns_store=owned)
    signals.register(run)
    return run


__all__ = ["Run", "TrackingError", "start_run"]
