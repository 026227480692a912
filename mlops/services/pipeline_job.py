"""The body of a pipeline run: drive the DAG, record a tracked run, register the model on a branch.

Runs as a Ray job on the cluster's head (``python -m mlops.cli.pipeline_job ROOT RUN_ID
[--push] [--pull-request]``) or in the caller's process (tests, ``inline``). The job's environment
carries absolute ``MLOPS_STORE`` / ``MLOPS_TRACKING_URI`` so the run's worktree writes where the
repository does.

Registration (UC-05 6a): the model is committed on ``pipeline/<name>/<run>`` in the run's own
worktree (the user's checkout is not touched) with its lineage: pipeline commit, parameters, step
output digests, dataset versions and the tracked run. When that fails the artifact stays in the store
and the run record says how to register it by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlops.appliers.pipeline_driver import Driver, DriverSettings
from mlops.errors import MlopsError
from mlops.loader.worktrees import drop_branch, remove_worktree, start_branch
from mlops.manifests.pipeline import STEP_OUTPUT_RE
from mlops.planner.pipeline_run import RunPlan
from mlops.planner.pipeline_state import RUN_FAILED, RUN_SUCCEEDED, Registration, RunState
from mlops.services.pipelines import absolute_settings, run_store
from mlops.services.store import repo_store
from mlops.stores.artifacts import ArtifactStore


def run_job(root: Path, run_id: str, options: Mapping[str, bool]) -> RunState:
    runs = run_store(root)
    plan = RunPlan.from_json(runs.read_plan(run_id))
    state = runs.read_state(run_id)
    store = repo_store(root)
    folder = runs.run_dir(run_id)
    src = folder / "src" / "pipelines" / plan.pipeline
    settings = DriverSettings(
        root=str(root),
        store=absolute_settings(root)["MLOPS_STORE"],
        src=str(src),
        blob_cache=str(root / ".mlops" / "pipelines" / "inputs"),
    )
    tracked = _start_tracking(root, plan, state)
    driver = Driver(plan, state, runs, store, settings)
    try:
        state = driver.run()
    except BaseException as exc:
        state.status = RUN_FAILED
        state.error = f"the driver stopped: {type(exc).__name__}: {exc}"
        state.finished_at = time.time()
        runs.write_state(state)
        _end_tracking(root, tracked, plan, state, store)
        raise
    if driver.outcome == RUN_SUCCEEDED and plan.registers:
        state.registration = _register(root, folder, plan, state, store, options)
    state.status = driver.outcome
    _end_tracking(root, tracked, plan, state, store)
    # Before the final state: whoever follows the run may check out its branch as soon as it reads
    # "succeeded", and git refuses a branch that a worktree still has checked out.
    with contextlib.suppress(MlopsError, OSError):
        remove_worktree(root, folder / "src")
    runs.write_state(state)
    runs.close()  # the step cache's database connection: an inline run's process lives on
    return state


# --------------------------------------------------------------------------- tracking


def _start_tracking(root: Path, plan: RunPlan, state: RunState) -> str | None:
    """A tracked run for the pipeline run (project ``pipelines``, experiment = the pipeline)."""
    from mlops.services.runs import open_store
    from mlops.stores.tracking import RunRecord

    try:
        tracking = open_store(root)
    except MlopsError:
        return None
    run_id = uuid.uuid4().hex
    record = RunRecord(
        run_id=run_id,
        project="pipelines",
        experiment=plan.pipeline,
        name=f"{plan.pipeline} {state.run_id[:12]}",
        user=state.user,
        start_time=time.time(),
        heartbeat=time.time(),
        environment={"git": {"commit": plan.commit}, "pipeline_code": plan.code_digest},
        params=dict(plan.params),
        tags={"pipeline": plan.pipeline, "pipeline_run": state.run_id, "trigger": state.trigger},
        inputs=[f"dataset://{key}" for key in plan.datasets],
    )
    try:
        tracking.create_run(record)
    except MlopsError:
        return None
    finally:
        tracking.close()
    state.tracking_run = run_id
    return run_id


def _end_tracking(root: Path, tracked: str | None, plan: RunPlan, state: RunState, store: ArtifactStore) -> None:
    if tracked is None:
        return
    from mlops.services.runs import open_store
    from mlops.stores.tracking import RunEnd, RunStatus, WriteBatch

    now = time.time()
    batch = WriteBatch(run_id=tracked)
    for name, step in state.steps.items():
        for output, record in step.outputs.items():
            batch.tags.append((f"output.{name}.{output}", record.digest))
            if record.type == "metrics":
                for key, value in (record.summary.get("metrics") or {}).items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        batch.metrics.append((key, 0, now, float(value)))
        if step.duration is not None:
            batch.metrics.append((f"step.{name}.seconds", 0, now, float(step.duration)))
    status = RunStatus.FINISHED if state.status == RUN_SUCCEEDED else RunStatus.FAILED
    batch.end = RunEnd(run_id=tracked, status=status, end_time=now, error=state.error[:2000])
    with contextlib.suppress(MlopsError):
        tracking = open_store(root)
        try:
            tracking.write(batch)
        finally:
            tracking.close()


# --------------------------------------------------------------------------- registration


def _output(state: RunState, ref: str | None) -> Any:
    if not ref:
        return None
    found = STEP_OUTPUT_RE.match(ref)
    if found is None:
        return None
    return state.steps[found["step"]].outputs.get(found["output"])


def _register(
    root: Path, folder: Path, plan: RunPlan, state: RunState, store: ArtifactStore, options: Mapping[str, bool]
) -> Registration:
    from mlops.services.publish import CommitOptions
    from mlops.services.register import RegisterRequest, register_model

    assert plan.registers is not None
    model = str(plan.registers["model"])
    artifact = _output(state, plan.registers["output"])
    registration = Registration(model=model)
    if artifact is None:
        registration.error = f"the run has no output {plan.registers['output']}"
        return registration
    work = folder / "register"
    path = work / artifact.filename
    registration.by_hand = _by_hand(model, path, plan, state)
    branch = f"pipeline/{plan.pipeline}/{state.run_id[:12]}"
    branched = False
    try:
        store.get_file(artifact.digest, path)
        metrics_file = None
        metrics = _output(state, plan.registers.get("metrics"))
        if metrics is not None:
            metrics_file = work / "metrics.json"
            metrics_file.write_text(json.dumps(metrics.summary.get("metrics") or {}), encoding="utf-8")
        worktree = folder / "src"
        start_branch(worktree, branch)
        branched = True
        lineage = {f"output.{s}.{o}": r.digest for s, step in state.steps.items() for o, r in step.outputs.items()}
        request = RegisterRequest(
            path=path,
            name=model,
            description=f"Trained by pipeline {plan.pipeline}, run {state.run_id[:12]} ({state.trigger}).",
            tags={"pipeline": plan.pipeline, "pipeline-run": state.run_id, **_short(lineage)},
            metrics_file=metrics_file,
            run_id=state.tracking_run,
            datasets=tuple(f"dataset://{key}" for key in plan.datasets),
            commit=plan.commit,
            pipeline=plan.pipeline,
        )
        commit = CommitOptions(
            push=bool(options.get("push")),
            pull_request=bool(options.get("pull_request")),
            base=state.branch or "main",
        )
        with _settings_of(root):  # the worktree has no .mlops/ of its own: use the repository's store and tracking
            result = register_model(worktree, request, commit)
    except MlopsError as exc:
        registration.error = exc.message
        if branched:
            with contextlib.suppress(MlopsError):
                drop_branch(folder / "src", branch)
        return registration
    registration.version_key = result.key
    registration.branch = result.publication.branch or branch
    registration.commit = result.publication.commit or ""
    registration.pull_request = result.publication.pull_request or ""
    registration.by_hand = ""
    return registration


@contextlib.contextmanager
def _settings_of(root: Path) -> Iterator[None]:
    wanted = absolute_settings(root)
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _short(lineage: Mapping[str, str]) -> dict[str, str]:
    return {key: value.removeprefix("sha256:")[:16] for key, value in lineage.items()}


def _by_hand(model: str, path: Path, plan: RunPlan, state: RunState) -> str:
    """The command that registers the run's model by hand (the artifact is kept at ``path`` and in the store)."""
    parts = ["mlops", "model", "register", str(path), "--name", model]
    if state.tracking_run:
        parts += ["--run", state.tracking_run]
    for key in plan.datasets:
        parts += ["--dataset", f"dataset://{key}"]
    parts += ["--branch", f"pipeline/{plan.pipeline}/{state.run_id[:12]}"]
    return shlex.join(parts)
