"""Tracked runs for the CLI and the tracking API: open the store, govern, list, show, compare (UC-13/14/15).

Orchestration only: the SQL is in :mod:`mlops.stores.tracking`, the filter language in
:mod:`mlops.analysis.run_filter`, the statistics in :mod:`mlops.analysis.run_compare`, the rules of
who may run what in :mod:`mlops.validation.run_policy`.

Honest states: a run whose process died without saying so (SIGKILL, a power cut, an OOM kill) stays
"running" in the database. Every reader here checks: a run whose heartbeat is older than three of its
heartbeat intervals (plus slack), or whose process is gone on this very host, is marked crashed, and
what it logged before stays, marked partial.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.analysis.run_filter import RunView, parse_filter
from mlops.errors import InputError, MlopsError, UsageError, ValidationFailed
from mlops.loader.config import load_settings
from mlops.stores.tracking import MetricPoint, RunRecord, RunStatus, TrackingStore, open_tracking_store

if TYPE_CHECKING:  # scipy, pydantic and the manifests stay unimported until needed: `runs list` must start fast
    from mlops.analysis.run_compare import RunComparison, RunSample
    from mlops.manifests.dataset import DataClass
    from mlops.manifests.project import Project

CRASH_SLACK_S = 2.0
HOST = socket.gethostname()


class RunRefused(MlopsError):
    """start_run refused by the project's governance (UC-15 4a); one line per reason."""

    exit_code = 1

    def __init__(self, project: str, reasons: Sequence[str]) -> None:
        super().__init__(f"run refused by project {project!r}: {reasons[0]}")
        self.reasons = list(reasons)

    def lines(self) -> list[str]:
        return [self.message, *(f"  also: {r}" for r in self.reasons[1:])]


class NotComparable(MlopsError):
    exit_code = 1

    def __init__(self, problems: Sequence[str], suggestions: Sequence[RunRecord]) -> None:
        super().__init__(f"runs are not comparable: {problems[0]}")
        self.problems = list(problems)
        self.suggestions = list(suggestions)

    def lines(self) -> list[str]:
        out = [self.message, *(f"  also: {p}" for p in self.problems[1:])]
        if self.suggestions:
            out.append("  comparable runs: " + ", ".join(f"{r.run_id[:12]} ({r.experiment})" for r in self.suggestions))
        return out


# --------------------------------------------------------------------------- the repository and its store


def find_repo(start: Path | None = None) -> Path:
    """The state repository holding ``start`` (default: MLOPS_REPO, else the working directory or a parent)."""
    explicit = os.environ.get("MLOPS_REPO")
    here = Path(explicit) if explicit and start is None else (start or Path.cwd())
    here = here.resolve()
    for folder in (here, *here.parents):
        if (folder / "registry").is_dir():
            return folder
    raise InputError(
        f"{here}: not inside an mlops repository (no registry/ here or above); pass repo=... to start_run, "
        "set MLOPS_REPO, or run from the repository"
    )


def tracking_store(root: Path, create: bool = True) -> TrackingStore | None:
    return open_tracking_store(load_settings(root).tracking, root, create=create)


def open_store(root: Path) -> TrackingStore:
    store = tracking_store(root, create=True)
    assert store is not None
    return store


def load_project(root: Path, name: str) -> tuple[Project, str]:
    from mlops.manifests.base import check_name
    from mlops.manifests.project import Project

    try:
        check_name(name)
    except ValueError as exc:
        raise UsageError(f"project: {exc}") from None
    rel = f"registry/experiments/{name}.yaml"
    path = root / rel
    if not path.is_file():
        known = sorted(p.stem for p in (root / "registry" / "experiments").glob("*.yaml"))
        hint = get_close_matches(name, known, n=1)
        raise InputError(
            f"project {name!r} does not exist: no {rel} in {root}"
            + (f" (did you mean {hint[0]!r}?)" if hint else f"; projects: {', '.join(known) or 'none'}")
        )
    manifest = _read_manifest(path, rel)
    if not isinstance(manifest, Project):
        raise InputError(f"{rel}: expected kind Project")
    return manifest, rel


def _read_manifest(path: Path, rel: str) -> object:
    from mlops.loader.yaml_read import read_manifest
    from mlops.validation.schema import validate_document

    try:
        data, problems = read_manifest(rel, path.read_bytes())
    except OSError as exc:
        raise InputError(f"{rel}: cannot read: {exc.strerror}") from None
    if problems:
        raise ValidationFailed(problems)
    manifest, problems = validate_document(rel, data)
    if problems or manifest is None:
        raise ValidationFailed(problems)
    return manifest


def dataset_classes(root: Path, uris: Sequence[str]) -> dict[str, DataClass | None]:
    from mlops.manifests.base import parse_versioned_uri
    from mlops.manifests.dataset import Dataset

    classes: dict[str, DataClass | None] = {}
    for uri in uris:
        try:
            _, name, _version = parse_versioned_uri(uri)
        except ValueError:
            classes[uri] = None
            continue
        path = root / "registry" / "datasets" / name / "dataset.yaml"
        if not path.is_file():
            classes[uri] = None
            continue
        manifest = _read_manifest(path, f"registry/datasets/{name}/dataset.yaml")
        classes[uri] = manifest.spec.dataClass if isinstance(manifest, Dataset) else None
    return classes


def authorize_run(
    root: Path,
    store: TrackingStore,
    project: str,
    experiment: str,
    user: str | None,
    datasets: Sequence[str],
    expected_cpu_hours: float | None = None,
    expected_gpu_hours: float | None = None,
    now: float | None = None,
) -> Project:
    """The project, or :class:`RunRefused` with every reason this run may not start."""
    from mlops.manifests.base import parse_versioned_uri
    from mlops.validation.run_policy import RunPlan, run_refusals

    manifest, rel = load_project(root, project)
    for uri in datasets:
        if uri.startswith("dataset://"):
            try:
                parse_versioned_uri(uri)
            except ValueError as exc:
                raise UsageError(f"input {uri!r}: {exc}") from None
    cpu, gpu = 0.0, 0.0
    if manifest.spec.budget.cpuHours is not None or manifest.spec.budget.gpuHours is not None:
        period_start = budget_period_start(manifest.spec.budget.period, now or time.time())
        cpu, gpu = compute_used(store.list_runs(project=project), period_start, now or time.time())
    plan = RunPlan(
        user=user,
        experiment=experiment,
        datasets=dataset_classes(root, [d for d in datasets if d.startswith("dataset://")]),
        expected_cpu_hours=expected_cpu_hours,
        expected_gpu_hours=expected_gpu_hours,
        used_cpu_hours=cpu,
        used_gpu_hours=gpu,
    )
    refusals = run_refusals(manifest, plan, rel)
    if refusals:
        raise RunRefused(project, refusals)
    return manifest


# --------------------------------------------------------------------------- compute accounting


def budget_period_start(period: str, now: float) -> float:
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    if period == "year":
        start = moment.replace(month=1, day=1)
    elif period == "quarter":
        start = moment.replace(month=3 * ((moment.month - 1) // 3) + 1, day=1)
    else:
        start = moment.replace(day=1)
    return start.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def budget_period_end(period: str, now: float) -> float:
    start = dt.datetime.fromtimestamp(budget_period_start(period, now), dt.UTC)
    months = {"year": 12, "quarter": 3}.get(period, 1)
    month = start.month - 1 + months
    return start.replace(year=start.year + month // 12, month=month % 12 + 1).timestamp()


def run_compute(run: RunRecord, since: float = 0.0, now: float | None = None) -> tuple[float, float]:
    """CPU and GPU hours a run used after ``since``: its wall time times the CPUs / GPUs it declared."""
    end = run.end_time if run.end_time is not None else (run.heartbeat or now or time.time())
    start = max(run.start_time, since)
    hours = max(0.0, end - start) / 3600
    resources = run.environment.get("resources", {}) if isinstance(run.environment, dict) else {}
    cpus = float(resources.get("cpus", 1) or 0) if isinstance(resources, dict) else 1.0
    gpus = float(resources.get("gpus", 0) or 0) if isinstance(resources, dict) else 0.0
    return hours * cpus, hours * gpus


def compute_used(runs: Sequence[RunRecord], since: float, now: float) -> tuple[float, float]:
    cpu = gpu = 0.0
    for run in runs:
        c, g = run_compute(run, since, now)
        cpu += c
        gpu += g
    return cpu, gpu


# --------------------------------------------------------------------------- honest states


def _process_gone(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


def is_crashed(run: RunRecord, now: float) -> bool:
    if run.status is not RunStatus.RUNNING:
        return False
    last = run.heartbeat if run.heartbeat is not None else run.start_time
    if now - last > 3 * run.heartbeat_interval + CRASH_SLACK_S:
        return True
    return run.host == HOST and run.source == "mlops" and _process_gone(run.pid)


def refresh_states(store: TrackingStore, runs: list[RunRecord], now: float | None = None) -> list[RunRecord]:
    """Mark runs whose heartbeat is lost as crashed (in the store too) and return the list updated."""
    now = now or time.time()
    lost = [run for run in runs if is_crashed(run, now)]
    if lost:
        store.mark_crashed([run.run_id for run in lost], now)
        for run in lost:
            run.status = RunStatus.CRASHED
            run.partial = True
            run.end_time = run.heartbeat if run.heartbeat is not None else run.start_time
            run.error = "heartbeat lost"
    return runs


# --------------------------------------------------------------------------- list, show


def run_view(run: RunRecord) -> RunView:
    return {
        "metrics": run.metrics,
        "params": run.params,
        "tags": run.tags,
        "attributes": {
            "status": run.status.value,
            "project": run.project,
            "experiment": run.experiment,
            "user": run.user,
            "name": run.name,
            "run_id": run.run_id,
            "source": run.source,
            "start_time": run.start_time,
            "end_time": run.end_time,
            "duration": run.duration,
        },
    }


@dataclass(frozen=True)
class RunListing:
    runs: list[RunRecord]
    total: int  # runs in scope before the filter
    warnings: list[str] = field(default_factory=list)


def list_runs(
    root: Path,
    project: str | None = None,
    experiment: str | None = None,
    filter_text: str | None = None,
    limit: int | None = None,
) -> RunListing:
    run_filter = parse_filter(filter_text) if filter_text else None  # a bad filter fails before any I/O
    store = tracking_store(root, create=False)
    if store is None:
        return RunListing([], 0, [f"no runs tracked yet ({load_settings(root).tracking} does not exist)"])
    try:
        runs = refresh_states(store, store.list_runs(project=project, experiment=experiment))
    finally:
        store.close()
    warnings: list[str] = []
    if run_filter is not None:
        for wanted in run_filter.fields:
            if wanted.section in ("metrics", "params", "tags"):
                known = {k for run in runs for k in getattr(run, wanted.section)}
                if runs and wanted.key not in known:
                    hint = get_close_matches(wanted.key, sorted(known), n=1)
                    warnings.append(
                        f"no run in scope has {wanted}"
                        + (f" (did you mean {wanted.section}.{hint[0]}?)" if hint else "")
                    )
        total = len(runs)
        runs = [run for run in runs if run_filter.matches(run_view(run))]
    else:
        total = len(runs)
    if limit is not None:
        runs = runs[:limit]
    return RunListing(runs, total, warnings)


@dataclass(frozen=True)
class RunDetail:
    run: RunRecord
    history: dict[str, list[MetricPoint]]


def _existing_store(root: Path) -> TrackingStore:
    store = tracking_store(root, create=False)
    if store is None:
        raise InputError(f"no runs tracked yet: {load_settings(root).tracking} does not exist")
    return store


def show_run(root: Path, ref: str) -> RunDetail:
    store = _existing_store(root)
    try:
        run = store.get_run(store.resolve(ref))
        assert run is not None
        refresh_states(store, [run])
        return RunDetail(run, store.metric_history(run.run_id))
    finally:
        store.close()


# --------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class RunComparisonView:
    comparison: RunComparison
    records: list[RunRecord]
    warnings: list[str]


def sample_of(run: RunRecord, history: dict[str, list[MetricPoint]] | None = None) -> RunSample:
    from mlops.analysis.run_compare import RunSample

    return RunSample(
        run_id=run.run_id,
        label=run.run_id[:8] + (f" ({run.name})" if run.name else ""),
        project=run.project,
        experiment=run.experiment,
        params=dict(run.params),
        metrics=dict(run.metrics),
        curves={k: [(p.step, p.value) for p in points] for k, points in (history or {}).items()},
    )


def compare_tracked_runs(
    root: Path,
    refs: Sequence[str],
    metrics: Sequence[str] = (),
    group_by: Sequence[str] = (),
    alpha: float = 0.05,
) -> RunComparisonView:
    from mlops.analysis.run_compare import alignment_problems, common_metrics, compare_runs, suggest_runs

    if len(refs) < 2:
        raise UsageError("runs compare needs at least two runs")
    store = _existing_store(root)
    try:
        ids = list(dict.fromkeys(store.resolve(ref) for ref in refs))
        records = refresh_states(store, store.list_runs(run_ids=ids))
        by_id = {r.run_id: r for r in records}
        records = [by_id[i] for i in ids]
        samples = [sample_of(r) for r in records]
        chosen = list(dict.fromkeys(m.strip() for m in metrics if m.strip())) or common_metrics(samples)
        problems = alignment_problems(samples, chosen)
        if problems:
            projects = [r.project for r in records]
            project = max(dict.fromkeys(projects), key=projects.count)  # the majority; the first run's on a tie
            experiments = [r.experiment for r in records if r.project == project]
            candidates = sorted(
                store.list_runs(project=project),
                key=lambda r: (r.experiment not in experiments, -r.start_time),
            )
            wanted = chosen or sorted({m for r in records if r.project == project for m in r.metrics})[:1]
            suggestions = suggest_runs([sample_of(c) for c in candidates], project, wanted, ids)
            raise NotComparable(problems, [c for c in candidates if c.run_id in {s.run_id for s in suggestions}])
        histories = {r.run_id: store.metric_history(r.run_id, chosen) for r in records}
    finally:
        store.close()
    samples = [sample_of(r, histories[r.run_id]) for r in records]
    warnings = [
        f"{r.run_id[:8]} is {r.status.value}: its metrics are partial"
        for r in records
        if r.status is not RunStatus.FINISHED
    ]
    return RunComparisonView(compare_runs(samples, chosen, group_by or None, alpha), records, warnings)


# --------------------------------------------------------------------------- lineage for `model register --run`


@dataclass(frozen=True)
class TrackedLineage:
    run_id: str
    params: dict[str, str | int | float | bool]
    metrics: dict[str, float]
    datasets: tuple[str, ...]
    commit: str | None


def lineage_of_run(root: Path, run_ref: str | None) -> TrackedLineage | None:
    """What the tracking store knows about a run (None when there is no store or no such run)."""
    from mlops.manifests.base import parse_versioned_uri

    if not run_ref:
        return None
    store = tracking_store(root, create=False)
    if store is None:
        return None
    try:
        try:
            run_id = store.resolve(run_ref)
        except (InputError, UsageError):
            return None
        run = store.get_run(run_id)
    finally:
        store.close()
    if run is None:
        return None
    git = run.environment.get("git", {})
    commit = git.get("commit") if isinstance(git, dict) else None
    datasets = []
    for uri in run.inputs:
        try:
            scheme, _, _ = parse_versioned_uri(uri)
        except ValueError:
            continue
        if scheme == "dataset":
            datasets.append(uri)
    return TrackedLineage(
        run_id=run.run_id,
        params=dict(run.params),
        metrics=dict(run.metrics),
        datasets=tuple(datasets),
        commit=commit if isinstance(commit, str) and commit else None,
    )
