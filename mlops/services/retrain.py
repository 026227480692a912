"""`mlops retrain check`: evaluate the retraining policies' triggers now, from signals gathered at the edges.

Signals come from :class:`SignalSource` implementations and pipeline runs from a :class:`RunHistory`;
both are small Protocols so that monitoring (live metrics and drift from the prediction log) and the
pipeline run store plug in without changing the evaluation, which is pure
(:mod:`mlops.analysis.retraining`). What exists today:

* :class:`RecordedSignals`: a JSON file (``--signals FILE``), for replaying and testing decisions;
* :class:`RepoDatasetVersions`: when each dataset version appeared, read from git (the commit that added
  its manifest; an uncommitted version has not appeared yet);
* :class:`StoredRunHistory`: the runs recorded in the repository's pipeline run store
  (``.mlops/pipelines/runs``, written by ``mlops pipeline run``): the default run history;
* :class:`RecordedRunHistory`: the runs listed in the signals file (merged with the stored ones).

The signals file is one JSON object; every list is optional, every time is ISO 8601 with a time zone::

    {
      "metrics": [{"environment": "production", "deployment": "churn", "metric": "auc",
                   "value": 0.71, "samples": 412, "at": "2026-01-05T10:00:00Z"}],
      "drift": [{"environment": "production", "deployment": "churn", "feature": "tenure",
                 "statistic": "psi", "value": 0.31, "at": "2026-01-05T10:00:00Z"}],
      "datasetVersions": [{"dataset": "customers", "version": 2, "at": "2026-01-04T09:00:00Z"}],
      "runs": [{"pipeline": "train-churn", "runId": "r-0042", "state": "succeeded",
                "startedAt": "2026-01-01T03:00:00Z", "finishedAt": "2026-01-01T03:20:00Z"}]
    }

A metric observation covers its own batch of ``samples`` labelled predictions (an hour, a day); a
trigger combines the batches in its window, weighted by samples. ``statistic`` is one of psi, ks,
wasserstein, js; a run's ``state`` one of pending, queued, running, retrying, succeeded, failed, cancelled.
Unknown fields are errors, so a typo never silently drops a signal.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from mlops.analysis.retraining import (
    DatasetVersionSeen,
    Decision,
    DriftObservation,
    MetricObservation,
    PipelineRunSummary,
    Signals,
    evaluate,
)
from mlops.errors import (
    DetailedError,
    GitError,
    InputError,
    Problem,
    Severity,
    UsageError,
    ValidationFailed,
    format_field,
)
from mlops.loader.cache import ParseCache
from mlops.loader.snapshot import WorktreeSnapshot, load_documents
from mlops.manifests import RetrainingPolicy
from mlops.planner.pipeline_state import RUN_FINAL, RunState
from mlops.services.repository import repo_root
from mlops.validation import SourceDocument, build_index
from mlops.validation.index import RepoIndex
from mlops.validation.references import check_references
from mlops.validation.retraining import check_retraining


class SignalSource(Protocol):
    """Something that observes the world: it returns the signals relevant to ``policies`` as of ``now``."""

    def collect(self, policies: Sequence[RetrainingPolicy], now: dt.datetime) -> Signals: ...


class RunHistory(Protocol):
    """The runs of a pipeline (the pipeline run store implements this)."""

    def runs(self, pipeline: str) -> list[PipelineRunSummary]: ...


class SignalsUnreadable(DetailedError, InputError):
    """A signals file that cannot be used; one line per thing wrong with it (exit 2, as unreadable input)."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: cannot read the signals file", problems)


# --- the signals file ------------------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class _Metric(_In):
    environment: str
    deployment: str
    metric: str
    value: float
    samples: Annotated[int, Field(ge=0)]
    at: AwareDatetime


class _Drift(_In):
    environment: str
    deployment: str
    feature: str
    statistic: Literal["psi", "ks", "wasserstein", "js"]
    value: float
    at: AwareDatetime


class _DatasetVersion(_In):
    dataset: str
    version: Annotated[int, Field(ge=1)]
    at: AwareDatetime


class _Run(_In):
    pipeline: str
    runId: str = Field(min_length=1)
    state: Literal["pending", "queued", "running", "retrying", "succeeded", "failed", "cancelled"]
    startedAt: AwareDatetime
    finishedAt: AwareDatetime | None = None


class _SignalsFile(_In):
    metrics: list[_Metric] = Field(default_factory=list)
    drift: list[_Drift] = Field(default_factory=list)
    datasetVersions: list[_DatasetVersion] = Field(default_factory=list)
    runs: list[_Run] = Field(default_factory=list)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC)


def read_signals_file(path: Path) -> Signals:
    """The signals a JSON file recorded; every problem with it is reported at once."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such signals file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the signals file: {exc}") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    try:
        data = _SignalsFile.model_validate_json(text)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            where = format_field(tuple(error["loc"])) or "the file"
            message = str(error["msg"]).replace("Input should ", "must ")
            if error["type"] == "extra_forbidden":
                message = "unknown field"
            elif error["type"] == "json_type" or (error["type"] == "model_type" and not error["loc"]):
                message = "must be a JSON object with metrics, drift, datasetVersions and runs lists"
            problems.append(f"{where}: {message}")
        raise SignalsUnreadable(path, problems) from None
    return Signals(
        metrics=tuple(
            MetricObservation(m.environment, m.deployment, m.metric, m.value, m.samples, _utc(m.at))
            for m in data.metrics
        ),
        drift=tuple(
            DriftObservation(d.environment, d.deployment, d.feature, d.statistic, d.value, _utc(d.at))
            for d in data.drift
        ),
        datasets=tuple(DatasetVersionSeen(v.dataset, v.version, _utc(v.at)) for v in data.datasetVersions),
        runs=tuple(
            PipelineRunSummary(
                r.pipeline, r.runId, r.state, _utc(r.startedAt), _utc(r.finishedAt) if r.finishedAt else None
            )
            for r in data.runs
        ),
    )


class RecordedSignals:
    """Metrics, drift and dataset versions recorded in a signals file (its runs: :class:`RecordedRunHistory`)."""

    def __init__(self, signals: Signals) -> None:
        self.signals = signals

    @classmethod
    def from_file(cls, path: Path) -> RecordedSignals:
        return cls(read_signals_file(path))

    def collect(self, policies: Sequence[RetrainingPolicy], now: dt.datetime) -> Signals:
        return Signals(self.signals.metrics, self.signals.drift, self.signals.datasets)

    def history(self) -> RecordedRunHistory:
        return RecordedRunHistory(self.signals.runs)


class RecordedRunHistory:
    def __init__(self, runs: Sequence[PipelineRunSummary] = ()) -> None:
        self._runs = tuple(runs)

    def runs(self, pipeline: str) -> list[PipelineRunSummary]:
        return [r for r in self._runs if r.pipeline == pipeline]


# --- pipeline runs from the run store --------------------------------------------------------------------------------

# A run record's status -> a run state of mlops.analysis.retraining (queued and running are active).
_RUN_STATES = {"queued": "queued", "running": "running", "succeeded": "succeeded", "failed": "failed"}


class StoredRunHistory:
    """The runs ``mlops pipeline run`` recorded in the repository (``.mlops/pipelines/runs``).

    A run starts when it was requested (a queued run has no start time yet, and still counts for the
    cooldown and the daily limit); times in the record are epoch seconds. Runs are named by the first
    12 characters of their id, as ``mlops pipeline runs`` shows them.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def runs(self, pipeline: str) -> list[PipelineRunSummary]:
        from mlops.services.pipelines import run_store

        return [run_summary(state) for state in run_store(self.root).list_states(pipeline)]


def run_summary(state: RunState) -> PipelineRunSummary:
    """A run record as the retraining evaluation sees it (a status it does not know counts as failed)."""
    started = state.started_at if state.started_at is not None else state.created_at
    finished = state.finished_at if state.status in RUN_FINAL else None
    return PipelineRunSummary(
        pipeline=state.pipeline,
        run_id=state.run_id[:12],
        state=_RUN_STATES.get(state.status, "failed"),
        started_at=_from_epoch(started),
        finished_at=_from_epoch(finished) if finished is not None else None,
    )


def _from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class MergedRunHistory:
    """The runs of several histories; a run two of them know (same pipeline and id) is listed once."""

    def __init__(self, *histories: RunHistory) -> None:
        self.histories = histories

    def runs(self, pipeline: str) -> list[PipelineRunSummary]:
        seen: set[str] = set()
        out = []
        for history in self.histories:
            for run in history.runs(pipeline):
                if run.run_id not in seen:
                    seen.add(run.run_id)
                    out.append(run)
        return out


# --- dataset versions from git ---------------------------------------------------------------------------------------


class RepoDatasetVersions:
    """When each dataset version appeared: the time of the commit that added its manifest (HEAD's history)."""

    def __init__(self, root: Path, index: RepoIndex) -> None:
        self.root = root
        self.index = index

    def collect(self, policies: Sequence[RetrainingPolicy], now: dt.datetime) -> Signals:
        wanted = {
            t.datasetVersion.dataset for p in policies for t in p.spec.triggers if t.datasetVersion is not None
        }
        if not wanted:
            return Signals()
        versions = {
            entry.path: (entry.facts.name, entry.facts.version)
            for entry in self.index.entries("DatasetVersion")
            if entry.facts.name in wanted
        }
        added = _first_added(self.root, [f"registry/datasets/{name}/versions" for name in sorted(wanted)])
        seen = []
        for path, (name, version) in sorted(versions.items()):
            if path in added and version is not None:
                seen.append(DatasetVersionSeen(name, version, added[path]))
        return Signals(datasets=tuple(seen))


def _first_added(root: Path, folders: list[str]) -> dict[str, dt.datetime]:
    """Path -> time of the earliest commit (reachable from HEAD) that added it."""
    from mlops.loader.git import open_repo  # GitPython only when a dataset trigger asks for history

    try:
        repo = open_repo(root)
    except GitError:
        raise InputError(
            f"{root}: not a git repository; dataset versions appear when their manifests are committed"
        ) from None
    if not repo.head.is_valid():
        return {}  # no commit yet: nothing has appeared
    log: str = repo.git.log("HEAD", "--diff-filter=A", "--format=%x1e%ct", "--name-only", "--", *folders)
    added: dict[str, dt.datetime] = {}
    for record in log.split("\x1e"):
        lines = [line for line in record.splitlines() if line.strip()]
        if not lines:
            continue
        moment = dt.datetime.fromtimestamp(int(lines[0]), dt.UTC)
        for path in lines[1:]:
            if path not in added or moment < added[path]:
                added[path] = moment
    return added


# --- the check -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainCheck:
    now: dt.datetime
    decisions: list[Decision]
    paths: dict[str, str] = field(default_factory=dict)  # policy name -> file
    warnings: list[Problem] = field(default_factory=list)

    @property
    def fires(self) -> bool:
        return any(d.fires for d in self.decisions)


def check_retraining_now(
    root: Path,
    *,
    policy: str | None = None,
    signals_file: Path | None = None,
    now: dt.datetime | None = None,
    sources: Sequence[SignalSource] | None = None,
    history: RunHistory | None = None,
) -> RetrainCheck:
    """Evaluate every retraining policy (or the one named) against the signals as of ``now``.

    ``sources`` default to the signals file (if any) and the dataset versions in git; ``history`` defaults
    to the runs recorded in the repository's pipeline run store, plus those listed in the signals file. A
    policy that does not validate is not evaluated: its problems are raised, one per line, with their positions.
    """
    if now is not None and now.tzinfo is None:
        raise UsageError("the time needs a time zone, e.g. 2026-01-05T10:00:00Z")
    root = repo_root(root)
    moment = _utc(now) if now is not None else dt.datetime.now(dt.UTC)
    worktree = WorktreeSnapshot(root)
    documents = load_documents(worktree, ParseCache.for_repo(root))
    verdict = build_index(documents)
    index = verdict.index
    policies = sorted(index.of(RetrainingPolicy))
    broken = _broken_policy_files(documents, index, policy, worktree.read)
    if policy is not None:
        policies = [(path, p) for path, p in policies if p.metadata.name == policy]
        if not policies and not broken:
            known = ", ".join(sorted(index.keys(RetrainingPolicy.KIND))) or "none"
            raise UsageError(
                f"no retraining policy {policy!r} (retraining policies: {known}); it lives at policies/{policy}.yaml"
            )
    paths = {path for path, _ in policies} | broken
    problems = [p for p in verdict.problems if p.path in paths]
    problems += [p for p in check_references(index) if p.path in paths]
    problems += [p for p in check_retraining(index) if p.path in paths]
    warnings: list[Problem] = []
    if problems:
        from mlops.loader.positions import locate

        located = sorted(locate(problems, worktree.read), key=lambda p: (p.path, p.line or 0, p.col or 0, p.message))
        errors = [p for p in located if p.severity is Severity.ERROR]
        if errors:
            raise PolicyInvalid(errors)
        warnings = located
    selected = [p for _, p in policies]
    if sources is None:
        recorded = RecordedSignals.from_file(signals_file) if signals_file is not None else None
        sources = [s for s in (recorded, RepoDatasetVersions(root, index)) if s is not None]
        if history is None and recorded is not None:
            history = MergedRunHistory(StoredRunHistory(root), recorded.history())
    elif signals_file is not None:
        raise UsageError("give either signal sources or a signals file, not both")
    signals = Signals()
    for source in sources:
        signals = signals.merge(source.collect(selected, moment))
    signals = Signals(signals.metrics, signals.drift, _earliest(signals.datasets), signals.runs)
    runs = history if history is not None else StoredRunHistory(root)
    decisions = []
    for p in selected:
        with_runs = Signals(signals.metrics, signals.drift, signals.datasets, tuple(runs.runs(p.spec.pipeline)))
        decisions.append(evaluate(p, with_runs, moment))
    return RetrainCheck(
        now=moment,
        decisions=decisions,
        paths={p.metadata.name: path for path, p in policies},
        warnings=warnings,
    )


def _broken_policy_files(
    documents: Sequence[SourceDocument], index: RepoIndex, policy: str | None, read: Callable[[str], bytes]
) -> set[str]:
    """Files that declare a RetrainingPolicy (or are where the named one lives) but do not validate."""
    out = set()
    for doc in documents:
        if doc.path not in index.broken_paths:
            continue
        if policy is not None:
            if doc.path == f"policies/{policy}.yaml":
                out.add(doc.path)
        elif isinstance(doc.data, dict):
            if doc.data.get("kind") == RetrainingPolicy.KIND:
                out.add(doc.path)
        elif doc.path.startswith("policies/") and _mentions_kind(read, doc.path):
            out.add(doc.path)  # unreadable YAML: the text still says what it was meant to be
    return out


def _mentions_kind(read: Callable[[str], bytes], path: str) -> bool:
    try:
        return re.search(rb"^kind:\s*[\"']?RetrainingPolicy\b", read(path), re.MULTILINE) is not None
    except OSError:
        return False


def _earliest(seen: Sequence[DatasetVersionSeen]) -> tuple[DatasetVersionSeen, ...]:
    """One entry per dataset version (git and a recorded file may both know it): the earliest."""
    first: dict[tuple[str, int], DatasetVersionSeen] = {}
    for item in seen:
        key = (item.dataset, item.version)
        if key not in first or item.at < first[key].at:
            first[key] = item
    return tuple(first[k] for k in sorted(first))


class PolicyInvalid(ValidationFailed):
    """A retraining policy that does not validate is not evaluated."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(problems)
        count = len(problems)
        self.message = (
            f"{count} problem{'s' if count != 1 else ''} in retraining policies; fix them first (`mlops validate`)"
        )

    def lines(self) -> list[str]:
        return [self.message, *(f"  {p}" for p in self.problems)]


__all__ = [
    "MergedRunHistory",
    "PolicyInvalid",
    "RecordedRunHistory",
    "RecordedSignals",
    "RepoDatasetVersions",
    "RetrainCheck",
    "RunHistory",
    "SignalSource",
    "SignalsUnreadable",
    "StoredRunHistory",
    "check_retraining_now",
    "read_signals_file",
    "run_summary",
]
