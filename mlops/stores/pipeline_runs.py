"""Pipeline runs and the step cache, as files under ``.mlops/pipelines/`` (the embedded default).

::

    runs/<run id>/plan.json        what the run does (mlops.planner.pipeline_run.RunPlan), written once
    runs/<run id>/state.json       where it is (mlops.planner.pipeline_state.RunState), rewritten by the driver
    runs/<run id>/logs/<step>.<attempt>.log
    runs/<run id>/src/             the pipeline's code at the run's commit (a git worktree)
    cache/<key>.json               a step's outputs by cache key: digests of blobs in the artifact store

Every write goes to a temporary file and is renamed into place, so a killed driver leaves the old
record or the new one. State files are not fsynced: after a power cut a run may look less advanced
than it was, and ``mlops pipeline resume`` redoes that work; the outputs themselves are durable blobs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mlops.errors import InputError, UsageError
from mlops.planner.pipeline_state import OutputRecord, RunState

RUN_ID_CHARS = frozenset("0123456789abcdef")


class PipelineRunStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runs = folder / "runs"
        self.cache = folder / "cache"

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
        try:
            data = json.loads(self._cache_path(key).read_text(encoding="utf-8"))
            return str(data["run_id"]), {k: OutputRecord(**v) for k, v in data["outputs"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def cache_put(self, key: str, run_id: str, outputs: dict[str, OutputRecord]) -> None:
        payload = {"run_id": run_id, "outputs": {k: vars(v) for k, v in outputs.items()}}
        _write_json(self._cache_path(key), payload)

    def _cache_path(self, key: str) -> Path:
        return self.cache / (key.removeprefix("sha256:") + ".json")


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
