"""`mlops pipeline run|resume|runs|show`: plan a run, take what the cache has, submit the rest to Ray.

A run is submitted as a Ray job (``python -m mlops.cli.pipeline_job ROOT RUN``), so it survives the
CLI: ``--wait`` follows its record, and ``mlops pipeline show`` reads it later. The job connects to the
cluster, drives the DAG (:mod:`mlops.appliers.pipeline_driver`), records a tracked run, and registers
the model the pipeline produces on a branch of its own (:mod:`mlops.services.pipeline_job`).

When every step's outputs are already in the cache nothing is submitted: the run is recorded as
succeeded at once (a fully cached re-run takes well under a second).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlops.appliers.cluster import ClusterTarget
from mlops.errors import MlopsError, Problem, Severity, UsageError
from mlops.loader.config import load_settings
from mlops.loader.gitwrite import current_branch, git_identity, head_commit
from mlops.loader.worktrees import add_worktree, resolve_commit, tree_id, uncommitted
from mlops.manifests import DatasetVersion, Environment, Pipeline
from mlops.manifests.dataset_version import DataFile
from mlops.planner.pipeline_run import RunPlan, build_run_plan, cache_key, datasets_read, parse_param_overrides
from mlops.planner.pipeline_state import (
    CACHED,
    FAILED,
    PENDING,
    RUN_FAILED,
    RUN_FINAL,
    RUN_QUEUED,
    RUN_SUCCEEDED,
    SKIPPED,
    RunState,
    StepState,
)
from mlops.services.data_versions import version_files
from mlops.services.repository import load_index, repo_root
from mlops.services.store import repo_store
from mlops.stores.artifacts import ArtifactStore
from mlops.stores.pipeline_runs import PipelineRunStore
from mlops.validation.index import RepoIndex

POLL_S = 0.2
# What a run's job needs from the submitting shell: git identity, and GitHub access for --push / --pr.
FORWARDED_ENV = (
    "GITHUB_TOKEN",
    "MLOPS_GITHUB_TOKEN",
    "GITHUB_API_URL",
    "GITHUB_REPOSITORY",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "HOME",
)


class PipelineRefused(MlopsError):
    """The pipeline has errors and cannot run or be activated (UC-04 6a)."""

    def __init__(self, name: str, problems: list[Problem]) -> None:
        lines = [str(p) for p in problems]
        super().__init__(f"pipeline {name} has {len(problems)} error(s) and cannot run:\n" + "\n".join(lines))
        self.problems = problems


class PipelineRunFailed(MlopsError):
    exit_code = 1


@dataclass(frozen=True)
class RunRequest:
    pipeline: str
    params: Mapping[str, str] = field(default_factory=dict)
    environment: str | None = None
    allow_dirty: bool = False
    trigger: str = "manual"
    at: str | None = None  # plan from this commit instead of HEAD and the working tree (scheduled runs)
    push: bool = False
    pull_request: bool = False


def run_store(root: Path) -> PipelineRunStore:
    return PipelineRunStore(root / ".mlops" / "pipelines")


def absolute_settings(root: Path) -> dict[str, str]:
    """MLOPS_STORE and MLOPS_TRACKING_URI as absolute addresses, so the job and its worktree use the same ones."""
    root = root.resolve()
    settings = load_settings(root)
    store = settings.store
    if "://" not in store or store.startswith("file://"):
        path = Path(store.removeprefix("file://"))
        store = str(path if path.is_absolute() else root / path)
    tracking = settings.tracking
    if tracking.startswith("sqlite:///") and not tracking.startswith("sqlite:////"):
        tracking = f"sqlite:///{root / tracking.removeprefix('sqlite:///')}"
    return {"MLOPS_STORE": store, "MLOPS_TRACKING_URI": tracking}


# --------------------------------------------------------------------------- planning


def pipeline_problems(root: Path, name: str) -> list[Problem]:
    """`mlops validate`'s errors in the pipeline's folder (and references to it that are broken)."""
    from mlops.services.validate import validate_repository

    report = validate_repository(root, check_store=False)
    prefix = f"pipelines/{name}/"
    return [p for p in report.problems if p.severity is Severity.ERROR and p.path.startswith(prefix)]


def find_pipeline(root: Path, name: str, index: RepoIndex | None = None) -> Pipeline:
    index = load_index(root) if index is None else index
    found = index.find(Pipeline, name)
    if found is None:
        known = sorted(e.key for e in index.entries("Pipeline"))
        raise UsageError(f"no pipeline {name!r} (pipelines: {', '.join(known) or 'none'})")
    return found


def plan_run(root: Path, request: RunRequest) -> tuple[RunPlan, list[str]]:
    """The run's plan at HEAD (or at ``request.at``), and the pipeline folder's uncommitted files (allow_dirty)."""
    root = repo_root(root)
    folder = f"pipelines/{request.pipeline}"
    dirty: list[str] = []
    if request.at is not None:  # a scheduled run: the commit that was applied, whatever the checkout holds now
        from mlops.services.validate import verdict_at

        commit = resolve_commit(root, request.at)
        verdict = verdict_at(root, commit)
        index = verdict.index
        pipeline = find_pipeline(root, request.pipeline, index)
        problems = [p for p in verdict.problems if p.severity is Severity.ERROR and p.path.startswith(folder + "/")]
        if problems:
            raise PipelineRefused(request.pipeline, problems)
    else:
        index = load_index(root)
        pipeline = find_pipeline(root, request.pipeline, index)
        problems = pipeline_problems(root, request.pipeline)
        if problems:
            raise PipelineRefused(request.pipeline, problems)
        dirty = uncommitted(root, folder)
        if dirty and not request.allow_dirty:
            raise UsageError(
                f"{folder} has uncommitted changes ({', '.join(dirty[:3])}{' ...' if len(dirty) > 3 else ''}): "
                "a run records the commit its code came from, so commit them first (or pass --allow-dirty)"
            )
        head = head_commit(root)
        if head is None:
            raise UsageError("the repository has no commits yet: commit the pipeline first")
        commit = head
    code = tree_id(root, commit, folder)
    if dirty:
        code = f"{code}+dirty-{uuid.uuid4().hex}"  # uncommitted code is never the same as anything cached
    overrides = parse_param_overrides(pipeline, request.params)
    store = repo_store(root)
    datasets: dict[str, tuple[DatasetVersion, list[DataFile]]] = {}
    for key in datasets_read(pipeline):
        version = index.find(DatasetVersion, key)
        if version is None:
            raise UsageError(f"pipeline {pipeline.name} reads dataset {key}, which is not registered")
        datasets[key] = (version, version_files(store, version))
    return build_run_plan(pipeline, commit, code, overrides, datasets), dirty


def settle_from_cache(plan: RunPlan, state: RunState, runs: PipelineRunStore, store: ArtifactStore) -> bool:
    """Mark every step whose outputs the cache has; True when that is all of them (nothing to submit)."""
    for step in plan.steps:
        record = state.steps.setdefault(step.name, StepState(name=step.name))
        if record.state in (CACHED, "succeeded"):
            continue
        upstream: dict[tuple[str, str], str] = {}
        for item in step.inputs.values():
            if item.upstream is not None:
                source = state.steps[item.upstream[0]].outputs.get(item.upstream[1])
                if source is not None:
                    upstream[item.upstream] = source.digest
        key = cache_key(plan, step, upstream)
        if not step.cache or key is None:
            return False
        hit = runs.cache_get(key)
        if hit is None or set(hit[1]) != set(step.outputs) or store.missing([o.digest for o in hit[1].values()]):
            return False
        record.state, record.cache_key, record.cached_from, record.outputs = CACHED, key, hit[0], hit[1]
    return True


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Submitted:
    state: RunState
    submitted: bool  # False: everything came from the cache


def start_run(
    root: Path,
    request: RunRequest,
    inline: bool = False,
    resume_of: RunState | None = None,
    plan: RunPlan | None = None,
) -> Submitted:
    """Record a new run and submit it (a Ray job; ``inline``: drive it in this process, which must be connected)."""
    root = repo_root(root).resolve()
    if plan is None:
        plan, _ = plan_run(root, request)
    runs = run_store(root)
    store = repo_store(root)
    state = RunState(
        run_id=uuid.uuid4().hex,
        pipeline=plan.pipeline,
        commit=plan.commit,
        params=dict(plan.params),
        created_at=time.time(),
        user=os.environ.get("MLOPS_USER") or git_identity(root) or "",
        trigger=request.trigger,
        resumed_from=resume_of.run_id if resume_of else None,
        status=RUN_QUEUED,
        environment=request.environment,
        branch=current_branch(root),
    )
    if resume_of is not None:  # what succeeded before is kept, whatever its cache setting
        for name, old in resume_of.steps.items():
            if old.state in (CACHED, "succeeded"):
                state.steps[name] = StepState(
                    name=name, state=CACHED, outputs=old.outputs, cache_key=old.cache_key, cached_from=resume_of.run_id
                )
    for step in plan.steps:
        state.steps.setdefault(step.name, StepState(name=step.name))
    if settle_from_cache(plan, state, runs, store):
        state.status = RUN_SUCCEEDED
        state.started_at = state.finished_at = time.time()
        runs.create(state, plan.to_json())
        return Submitted(state, submitted=False)
    folder = runs.create(state, plan.to_json())
    add_worktree(root, folder / "src", plan.commit)
    if request.allow_dirty:
        _copy_uncommitted(root, folder / "src", f"pipelines/{plan.pipeline}")
    options = {"push": request.push, "pull_request": request.pull_request}
    if inline:
        from mlops.services.pipeline_job import run_job

        return Submitted(run_job(root, state.run_id, options), submitted=True)
    state.job = _submit_job(root, request, state.run_id, options)
    runs.write_state(state)
    return Submitted(state, submitted=True)


def _copy_uncommitted(root: Path, worktree: Path, folder: str) -> None:
    import shutil

    for rel in uncommitted(root, folder):
        source = root / rel
        target = worktree / rel
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        else:
            target.unlink(missing_ok=True)


def _submit_job(root: Path, request: RunRequest, run_id: str, options: Mapping[str, bool]) -> str:
    from mlops.appliers.pipeline_jobs import submit_job

    target = cluster_for(root, request.environment)
    env = {**absolute_settings(root), "MLOPS_USER": os.environ.get("MLOPS_USER", "")}
    for name in FORWARDED_ENV:
        if os.environ.get(name):
            env[name] = os.environ[name]
    flags = [f"--{k.replace('_', '-')}" for k, v in options.items() if v]
    entrypoint = [sys.executable, "-m", "mlops.cli.pipeline_job", str(root), run_id, *flags]
    return submit_job(target, entrypoint, env, f"mlops-pipeline-{run_id[:12]}")


def cluster_address(root: Path, environment: str | None) -> str:
    """The address of the environment's cluster (``local`` without an environment)."""
    if environment is None:
        return "local"
    found = load_index(root).find(Environment, environment)
    if found is None:
        raise UsageError(f"no environment {environment!r}")
    return found.spec.cluster.address


def cluster_for(root: Path, environment: str | None) -> ClusterTarget:
    """The cluster a run goes to: the environment's, or the embedded local one (started if need be)."""
    from mlops.appliers.cluster import LocalCluster, resolve_target

    remote = resolve_target(cluster_address(root, environment))
    if remote is not None:
        return remote
    target, _ = LocalCluster().up()
    return target


def resume_run(root: Path, ref: str, inline: bool = False) -> Submitted:
    """Re-run a failed run from its failed steps; what succeeded is reused (same commit and parameters)."""
    root = repo_root(root)
    runs = run_store(root)
    old = runs.read_state(runs.resolve(ref))
    if old.status == RUN_SUCCEEDED:
        raise UsageError(f"pipeline run {old.run_id[:12]} succeeded: there is nothing to resume")
    if old.status not in RUN_FINAL:
        raise UsageError(f"pipeline run {old.run_id[:12]} is still {old.status}: wait for it, then resume")
    plan = RunPlan.from_json(runs.read_plan(old.run_id))
    request = RunRequest(pipeline=old.pipeline, trigger=f"resume of {old.run_id[:12]}")
    return start_run(root, request, inline=inline, resume_of=old, plan=plan)


def follow(root: Path, run_id: str, on_change: Callable[[RunState], None], timeout: float | None = None) -> RunState:
    """Poll the run's record until it is final, calling ``on_change`` whenever it moved."""
    runs = run_store(repo_root(root))
    deadline = None if timeout is None else time.monotonic() + timeout
    last: object = None
    while True:
        state = runs.read_state(run_id)
        fingerprint = (state.status, tuple((s.state, len(s.attempts)) for s in state.steps.values()))
        if fingerprint != last:
            last = fingerprint
            on_change(state)
        if state.status in RUN_FINAL:
            return state
        if state.job and _job_ended(root, state):
            state = runs.read_state(run_id)
            if state.status not in RUN_FINAL:
                state.status = RUN_FAILED
                state.error = state.error or "the run's Ray job ended before the run did (see its job log)"
                runs.write_state(state)
            on_change(state)
            return state
        if deadline is not None and time.monotonic() > deadline:
            return state
        time.sleep(POLL_S)


def _job_ended(root: Path, state: RunState) -> bool:
    """Whether the Ray job behind a run has stopped (checked now and then: it needs the dashboard)."""
    from mlops.appliers.pipeline_jobs import job_finished

    now = time.monotonic()
    if now - _job_checked.get(state.run_id, 0.0) < 5.0:
        return False
    _job_checked[state.run_id] = now
    assert state.job is not None
    return job_finished(cluster_for(root, state.environment), state.job)


_job_checked: dict[str, float] = {}


def list_runs(root: Path, pipeline: str | None = None, limit: int = 20) -> list[RunState]:
    return run_store(repo_root(root)).list_states(pipeline)[:limit]


def show_run(root: Path, ref: str) -> tuple[RunState, RunPlan, Path]:
    runs = run_store(repo_root(root))
    run_id = runs.resolve(ref)
    return runs.read_state(run_id), RunPlan.from_json(runs.read_plan(run_id)), runs.run_dir(run_id)


def step_summary(state: RunState) -> str:
    counts = state.counts()
    order = ["succeeded", CACHED, "running", "retrying", PENDING, FAILED, SKIPPED]
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))
