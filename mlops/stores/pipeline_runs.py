"""Pipeline runs and the step cache, as files under ``.mlops/pipelines/`` (the embedded default).

::

    runs/<run id>/plan.json        what the run does (mlops.planner.pipeline_run.RunPlan), written once
    runs/<run id>/state.json       where it is (mlops.planner.pipeline_state.RunState), rewritten by the driver
    runs/<run id>/logs/<step>.<attempt>.log
    runs/<run id>/src/             the pipeline's code at the run's commit (a git worktree)
    cache.sqlite                   a step's outputs by cache key: digests of blobs in the artifact store

Every record write goes to a temporary file and is renamed into place, so a killed driver leaves the
old record or the new one. The step cache is one SQLite table rather than a file per key: a 200-step
run records 200 entries, and creating 200 files cost the driver more than running the steps (about
0.4 ms per file creation on the file systems measured); a transaction per turn of the driver's loop
costs well under a millisecond, and concurrent runs share it safely.

State files are not fsynced: after a power cut a run may look less advanced than it was, and
``mlops pipeline resume`` redoes that work; the outputs themselves are durable blobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlops.errors import InputError, StoreError, UsageError
from mlops.planner.pipeline_state import OutputRecord, RunState

RUN_ID_CHARS = frozenset("0123456789abcdef")
CACHE_BUSY_TIMEOUT_S = 30.0  # another run's driver may hold the write lock for a moment

_CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS step_cache (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    outputs TEXT NOT NULL
);
"""

CacheEntry = tuple[str, str, dict[str, OutputRecord]]  # (cache key, run that produced them, outputs)


class PipelineRunStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runs = folder / "runs"
        self.cache_db = folder / "cache.sqlite"
        self._db: sqlite3.Connection | None = None

    def run_dir(self, run_id: str) -> Path:
        if not run_id or not set(run_id) <= RUN_ID_CHARS:
            raise UsageError(f"invalid pipeline run id {run_id!r}")
        return self.runs / run_id

    def log_path(self, run_id: str, step: str, attempt: int) -> Path:
        return self.run_dir(run_id) / "logs" / f"{step}.{attempt}.log"

    def create(self, state: RunState, plan: dict[str, Any]) -> Path:
        folder = self.run_dir(state.run_id)
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        _write_json(folder / "plan.json", plan)
        self.write_state(state)
        return folder

    def write_state(self, state: RunState) -> None:
        _write_json(self.run_dir(state.run_id) / "state.json", state.to_json())

    def read_state(self, run_id: str) -> RunState:
        path = self.run_dir(run_id) / "state.json"
        try:
            return RunState.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise UsageError(f"no pipeline run {run_id} (runs are listed by `mlops pipeline runs`)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a pipeline run record ({exc})") from None

    def read_plan(self, run_id: str) -> dict[str, Any]:
        path = self.run_dir(run_id) / "plan.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"no pipeline run {run_id}") from None
        except ValueError as exc:
            raise InputError(f"{path}: not a pipeline plan ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: not a pipeline plan")
        return data

    def resolve(self, ref: str) -> str:
        """The run id that ``ref`` (a whole id or a unique prefix) names."""
        if not ref or not set(ref) <= RUN_ID_CHARS:
            raise UsageError(f"invalid pipeline run id {ref!r}")
        if (self.runs / ref / "state.json").is_file():
            return ref
        matches = sorted(p.name for p in self.runs.glob(f"{ref}*") if (p / "state.json").is_file())
        if not matches:
            raise UsageError(f"no pipeline run {ref} (runs are listed by `mlops pipeline runs`)")
        if len(matches) > 1:
            raise UsageError(f"pipeline run {ref!r} is ambiguous: {', '.join(m[:12] for m in matches[:5])}")
        return matches[0]

    def list_states(self, pipeline: str | None = None) -> list[RunState]:
        """Every run, newest first; a record that cannot be read is skipped (it is being written)."""
        states = []
        if not self.runs.is_dir():
            return []
        for entry in self.runs.iterdir():
            try:
                state = RunState.from_json(json.loads((entry / "state.json").read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if pipeline is None or state.pipeline == pipeline:
                states.append(state)
        return sorted(states, key=lambda s: s.created_at, reverse=True)

    def cache_get(self, key: str) -> tuple[str, dict[str, OutputRecord]] | None:
        """(the run that produced them, the outputs) for a cache key, or None."""
        if self._db is None and not self.cache_db.is_file():
            return None  # nothing cached yet: do not create the database just to look
        try:
            row = self._connection().execute("SELECT run_id, outputs FROM step_cache WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None  # an unreadable cache is a miss: the step runs again
        if row is None:
            return None
        try:
            return str(row[0]), {k: OutputRecord(**v) for k, v in json.loads(row[1]).items()}
        except (ValueError, TypeError, AttributeError):
            return None

    def cache_put_many(self, entries: Iterable[CacheEntry]) -> None:
        """Record several steps' outputs in one transaction."""
        rows = [
            (key, run_id, json.dumps({k: vars(v) for k, v in outputs.items()}, separators=(",", ":")))
            for key, run_id, outputs in entries
        ]
        if not rows:
            return
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO step_cache (key, run_id, outputs) VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise StoreError(f"cannot write the step cache {self.cache_db}: {exc}") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.cache_db.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(str(self.cache_db), timeout=CACHE_BUSY_TIMEOUT_S, isolation_level=None)
                # WAL: readers (another run planning) never wait for the driver; NORMAL: a commit is not
                # fsynced, so a power cut may forget the last entries, which only means running those steps again.
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_CACHE_SCHEMA)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot open the step cache {self.cache_db}: {exc}") from None
            self._db = db
        return self._db


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # dumps, not dump: dump streams through json's pure-Python encoder, several times slower.
            handle.write(json.dumps(data, separators=(",", ":"), default=str))
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
