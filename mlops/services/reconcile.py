"""`mlops plan` and `mlops reconcile`: orchestration, no printing.

Applying an accepted plan to Serve is :mod:`mlops.services.rollout`; `mlops status` and `mlops rollout`
are :mod:`mlops.services.environment_status`.

::

    load(git HEAD) -> validate -> observe(cluster) -> plan [pure] -> preflight -> apply -> record

* **load** reads the manifests of the commit at HEAD (not the working tree: what is deployed is what was
  committed) and validates them; an environment that does not validate is never applied.
* **observe** reads Serve's status and deployed config over the dashboard's REST API, and the environment's
  record (lock, last applied commit, rollout, grace periods) from its state actor in the cluster.
* **preflight** refuses, before any traffic moves, a model version that cannot be served here (format,
  task, signature), a change that does not fit the cluster's resources (saying what would fit), and an
  artifact whose bytes no longer hash to the digest in git.
* **apply** sends whole declarative configs only: first every new version next to the running one (traffic
  unchanged), waiting for RUNNING (the model server's health check includes a canary prediction), then each
  rollout's steps as router weights (user_config, no restart) with analysis gates, then, after the grace
  period, the config without the old versions. New weights are first published in the environment's state
  actor, which the routers watch, so they take effect within milliseconds; the config that carries them
  follows at once and is waited for as before (Serve's controller needs seconds for a config of dozens of
  applications).
* **record**: the applied commit and the config go to the state actor. A failed health check or gate, or
  an abort, routes all traffic back at once and writes a commit that pins the environment back, with the
  reason, so git and the cluster agree.

One reconciler per environment: the state actor's lock (holder, commit, time) is taken first and released
last; a stale lock is broken only on request (``--break-lock``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.appliers.cluster import ClusterTarget, LocalCluster, connected, resolve_target
from mlops.appliers.serve import AppStatus, ServeApi
from mlops.appliers.state import StateClient
from mlops.errors import DetailedError, InputError, MlopsError, Severity, StoreError, UsageError, ValidationFailed
from mlops.loader.ancestry import is_ancestor, resolve_commit
from mlops.loader.atomic import atomic_write_text
from mlops.loader.cache import ParseCache
from mlops.loader.config import load_settings
from mlops.loader.git import snapshot_at
from mlops.loader.gitwrite import git_identity
from mlops.loader.history import commits_between, trailers
from mlops.loader.snapshot import load_documents
from mlops.manifests import ArtifactPolicy, Environment, ModelVersion
from mlops.manifests.base import version_key
from mlops.planner.desired import (
    DesiredState,
    ServeSettings,
    desired_state,
)
from mlops.planner.fit import compatibility_problems, resource_problems
from mlops.planner.plan import (
    Action,
    LiveApp,
    LiveState,
    Plan,
    PlanItem,
    canonical,
    find_app,
    make_plan,
    replace_app,
    router_routes,
)
from mlops.services.repository import repo_root
from mlops.services.rollout import Applier, Progress, RolloutReport, router_user_config, same_applications
from mlops.services.schedules import apply_schedule_plan, live_schedules_of, plan_schedules
from mlops.stores.factory import open_artifact_store
from mlops.stores.predictions import prediction_log_address
from mlops.validation import build_index, check_repository
from mlops.validation.index import RepoIndex

DEFAULT_TIMEOUT = 300.0


def _quiet(_message: str) -> None:
    return None


# --------------------------------------------------------------------------- errors


class LockHeld(MlopsError):
    exit_code = 1


class StalePlan(MlopsError):
    exit_code = 1


class NotDescendant(MlopsError):
    exit_code = 1


class DeploymentRefused(DetailedError):
    """Refused before any traffic moved; every reason is a line."""


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Head:
    root: Path
    commit: str
    index: RepoIndex
    environment: Environment

    @property
    def name(self) -> str:
        return self.environment.metadata.name


def load_head(root: Path, environment: str) -> Head:
    """The validated manifests of the commit at HEAD, and the environment's."""
    root = repo_root(root)
    commit = resolve_commit(root, "HEAD")
    snapshot = snapshot_at(root, commit)
    verdict = check_repository(build_index(load_documents(snapshot, ParseCache.for_repo(root))))
    errors = [p for p in verdict.problems if p.severity is Severity.ERROR]
    if errors:
        raise ValidationFailed(errors)
    env = verdict.index.find(Environment, environment)
    if env is None:
        known = ", ".join(sorted(verdict.index.keys("Environment"))) or "none"
        raise UsageError(
            f"no environment {environment!r} at HEAD ({commit[:8]}); environments: {known} "
            f"(an environment lives at environments/{environment}.yaml and must be committed)"
        )
    return Head(root, commit, verdict.index, env)


def serve_settings(head: Head, target: ClusterTarget | None) -> ServeSettings:
    settings = load_settings(head.root)
    store = settings.store
    if "://" not in store or store.startswith("file://"):
        path = Path(store.removeprefix("file://"))
        store = str((path if path.is_absolute() else head.root / path).absolute())
    local = target is None or target.local
    cache = os.environ.get("MLOPS_SERVE_CACHE") or (
        str((head.root / ".mlops" / "serve-cache").absolute()) if local else "/tmp/mlops-model-cache"
    )
    predictions = prediction_log_address(head.root) if local else os.environ.get("MLOPS_PREDICTIONS")
    trusted = sorted({t for _, policy in head.index.of(ArtifactPolicy) for t in policy.spec.trustedSkopsTypes})
    return ServeSettings(store=store, cache_dir=cache, predictions=predictions, trusted_skops_types=tuple(trusted))


# --------------------------------------------------------------------------- where: the cluster


@dataclass(frozen=True)
class Where:
    label: str
    target: ClusterTarget | None
    local: LocalCluster | None = None
    started: bool = False


def locate(head: Head, start: bool, progress: Progress = _quiet) -> Where:
    """The environment's cluster; the embedded one is started when ``start`` and it does not run."""
    remote = resolve_target(head.environment.spec.cluster.address)
    if remote is not None:
        return Where(remote.label, remote)
    local = LocalCluster()
    if start:
        target, started = local.up(progress=progress)
        return Where(target.label, target, local, started)
    status = local.status()
    if status.running:
        target = local.target()
        return Where(target.label, target, local)
    return Where(f"local (not running; state folder {local.state_dir})", None, local)


def live_state(label: str, apps: Mapping[str, AppStatus], record: Mapping[str, Any]) -> LiveState:
    applied = record.get("applied") or {}
    return LiveState(
        cluster=label,
        running=True,
        apps={
            name: LiveApp(
                name=name,
                status=app.status,
                config=app.config,
                message=app.message,
                deployments=dict(app.deployments),
                running_replicas=app.running_replicas,
                target_replicas=app.target_replicas,
            )
            for name, app in apps.items()
        },
        applied_commit=applied.get("commit"),
        retained={str(k): float(v) for k, v in (record.get("retained") or {}).items()},
    )


def observe(where: Where, environment: str) -> tuple[LiveState, dict[str, Any]]:
    if where.target is None:
        return LiveState(cluster=where.label, running=False), {}
    apps = ServeApi(where.target).applications()
    with connected(where.target):
        record = StateClient(environment, create=False).snapshot()
    return live_state(where.target.label, apps, record), record


def rollbacks_since(head: Head, applied: str | None) -> set[str]:
    """Deployments whose change since the applied commit is a rollback (a commit with an Mlops-Rollback
    trailer naming the version HEAD asks for): those switch at once, without blue-green steps."""
    try:
        if applied and is_ancestor(head.root, applied, head.commit):
            messages = [m for _, _, m in commits_between(head.root, applied, head.commit)]
        else:
            messages = [m for _, _, m in commits_between(head.root, f"{head.commit}~1", head.commit)]
    except MlopsError:
        messages = []
    wanted = {}
    for message in messages:
        for value in trailers(message, "Mlops-Rollback"):
            _, _, target = value.partition("->")
            wanted[target.strip()] = True
    return {d.name for d in head.environment.spec.deployments if version_key(d.model, d.version) in wanted}


def desired_of(head: Head, where: Where, live: LiveState) -> DesiredState:
    settings = serve_settings(head, where.target)
    desired = desired_state(head.environment, head.index, head.commit, settings)
    # Reading git history for rollback commits costs subprocesses: only when some version would change.
    switching = any(
        d.router_app in live.apps and (d.model_app, d.version, 100) not in router_routes(live.apps[d.router_app].config)
        for d in desired.deployments
    )
    if not switching:
        return desired
    return desired_state(head.environment, head.index, head.commit, settings,
                         rollbacks=rollbacks_since(head, live.applied_commit))


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    head: Head
    where: Where


def plan_environment(root: Path, environment: str, prune: bool = False) -> PlanResult:
    head = load_head(root, environment)
    where = locate(head, start=False)
    live, _ = observe(where, environment)
    desired = desired_of(head, where, live)
    http = where.target.http_options() if where.target is not None else None
    plan = make_plan(desired, live, prune=prune, now=time.time(), http_options=http)
    live_schedules: dict[str, dict[str, Any]] = {}
    if where.target is not None:
        with connected(where.target):
            live_schedules = live_schedules_of(environment)
    plan = with_items(plan, plan_schedules(head, where, live_schedules).items)
    return PlanResult(plan, head, where)


def with_items(plan: Plan, items: list[PlanItem]) -> Plan:
    """``plan`` with more items to show (schedules); the Serve config it sends is unchanged."""
    return dataclasses.replace(plan, items=plan.items + tuple(items))


def save_plan(plan: Plan, path: Path) -> None:
    atomic_write_text(path, json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n")


def load_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such plan file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a plan file: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a plan file")
    return Plan.from_json(data)


# --------------------------------------------------------------------------- reconcile


@dataclass
class ReconcileResult:
    plan: Plan
    outcome: str  # no changes | applied
    commit: str
    cluster: str
    seconds: float
    started_cluster: bool = False
    rollouts: list[RolloutReport] = field(default_factory=list)
    broken_lock: dict[str, Any] | None = None
    endpoints: dict[str, str] = field(default_factory=dict)


def operator_of(root: Path) -> str:
    """Who acts, as policies name people: the committer's e-mail (the environment first, as git itself does)."""
    return os.environ.get("GIT_COMMITTER_EMAIL") or git_identity(root) or getpass.getuser()


def _holder(head: Head) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "who": operator_of(head.root),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "commit": head.commit,
    }


def describe_lock(lock: Mapping[str, Any], environment: str) -> str:
    age = time.time() - float(lock.get("since", time.time()))
    host = str(lock.get("host", "?"))
    pid = int(lock.get("pid", 0) or 0)
    stale = ""
    if host == socket.gethostname() and pid and not _pid_running(pid):
        stale = f"; pid {pid} no longer runs on this host, so the lock is stale"
    return (
        f"{environment} is being reconciled by {lock.get('who')} (pid {pid} on {host}, commit "
        f"{str(lock.get('commit', ''))[:8]}, for {age:.0f} s){stale}; wait for it to finish, or, if that "
        f"reconciler is gone, run `mlops reconcile --env {environment} --break-lock`"
    )


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reconcile(
    root: Path,
    environment: str,
    plan_path: Path | None = None,
    prune: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    break_lock: bool = False,
    push: bool = False,
    progress: Progress = _quiet,
) -> ReconcileResult:
    started = time.monotonic()
    head = load_head(root, environment)
    saved = load_plan(plan_path) if plan_path is not None else None
    if saved is not None:
        if saved.environment != environment:
            raise UsageError(f"the plan is for environment {saved.environment}, not {environment}")
        if saved.commit != head.commit:
            raise StalePlan(
                f"the plan was made at commit {saved.commit[:8]} but HEAD is {head.commit[:8]}: the repository "
                "moved; make a new plan (`mlops plan --out`) and review it"
            )
        prune = saved.prune
    where = locate(head, start=True, progress=progress)
    assert where.target is not None
    target = where.target
    ServeApi(target).details()  # an unreachable cluster fails here, fast and clearly, before any connection
    with connected(target):
        state = StateClient(environment)
        broken = None
        if break_lock:
            broken = state.call("break_lock")
            if broken:
                who, pid, host = broken.get("who"), broken.get("pid"), broken.get("host")
                progress(f"broke the lock held by {who} (pid {pid} on {host})")
        holder = _holder(head)
        got = state.call("acquire", holder)
        if not got["ok"]:
            raise LockHeld(describe_lock(got["lock"], environment))
        try:
            result = _reconcile_locked(head, where, state, holder, saved, prune, timeout, push, progress)
        finally:
            with contextlib.suppress(Exception):
                state.call("release", holder["id"])
    result.seconds = time.monotonic() - started
    result.started_cluster = where.started
    result.broken_lock = broken
    return result


def _reconcile_locked(
    head: Head,
    where: Where,
    state: StateClient,
    holder: dict[str, Any],
    saved: Plan | None,
    prune: bool,
    timeout: float,
    push: bool,
    progress: Progress,
) -> ReconcileResult:
    assert where.target is not None
    api = ServeApi(where.target)
    record = state.snapshot()
    live = live_state(where.target.label, api.applications(), record)
    _check_descendant(head, live.applied_commit)
    desired = desired_of(head, where, live)
    plan = make_plan(desired, live, prune=prune, now=time.time(), http_options=where.target.http_options())
    if saved is not None and (
        saved.live_fingerprint != plan.live_fingerprint or not same_applications(saved.config, plan.config)
    ):
        raise StalePlan(
            f"the cluster changed since the plan was made ({where.target.label}): make a new plan "
            "(`mlops plan --out`) and review it"
        )
    schedules = plan_schedules(head, where, live_schedules_of(head.name))
    if schedules.changed:
        apply_schedule_plan(head.name, schedules)
        for item in schedules.items:
            if item.action is not Action.NOOP:
                progress(item.summary)
    _realign_published_weights(head.name, live, record, state, progress)
    serve_changes = plan.has_changes or bool(plan.rollouts)
    plan = with_items(plan, schedules.items)
    if not serve_changes:
        unsettled = sorted(n for n, a in live.environment_apps(head.name).items() if a.status != "RUNNING")
        if unsettled:
            # An earlier reconcile (interrupted, perhaps) sent this config: see it through before saying "done".
            progress(f"waiting for {', '.join(unsettled)} to be RUNNING")
            api.wait(unsettled, timeout=timeout, progress=progress)
        if live.applied_commit != head.commit:
            state.call("record_applied", head.commit, {"applications": plan.environment_apps()}, holder["id"])
        outcome = "applied" if schedules.changed else "no changes"
        return ReconcileResult(plan, outcome, head.commit, where.target.label, 0.0)
    preflight(head, desired, plan, live, progress)
    applier = Applier(head, plan, live, api, state, holder, timeout, push, progress)
    try:
        reports = applier.run()
    except (KeyboardInterrupt, SystemExit):
        applier.interrupted()
        raise
    endpoints = {d.name: f"{where.target.serve_url}{d.route_prefix}" for d in desired.deployments}
    return ReconcileResult(plan, "applied", head.commit, where.target.label, 0.0, rollouts=reports,
                           endpoints=endpoints)


def _realign_published_weights(
    environment: str, live: LiveState, record: Mapping[str, Any], state: StateClient, progress: Progress
) -> None:
    """Routers follow the weights published in the state actor as well as Serve's config; Serve re-sends a config
    only when it changes, so weights published by a reconciler that died before its config reached Serve would
    stay in effect. Publishing Serve's record again puts those routers back on what the cluster shows."""
    published = record.get("routes") or {}
    drifted: dict[str, dict[str, Any]] = {}
    for name, app in live.environment_apps(environment).items():
        entry = published.get(name)
        recorded = router_user_config(app.config)
        if entry is not None and recorded is not None and canonical(entry.get("config")) != canonical(recorded):
            drifted[name] = recorded
    if drifted:
        state.call("publish_routes", drifted)
        progress(f"{', '.join(sorted(drifted))}: router weights realigned with Serve's config (a reconcile had "
                 "published others and stopped before Serve recorded them)")


def _check_descendant(head: Head, applied: str | None) -> None:
    if not applied or applied == head.commit:
        return
    verdict = is_ancestor(head.root, applied, head.commit)
    if verdict is None:
        raise NotDescendant(
            f"{applied[:8]}, the commit last applied to {head.name}, is not in this repository: fetch and pull "
            "first (`git pull`), then reconcile again"
        )
    if not verdict:
        raise NotDescendant(
            f"HEAD ({head.commit[:8]}) is not a descendant of {applied[:8]}, the commit last applied to "
            f"{head.name}: this checkout would undo changes it has not seen; pull first (`git pull`)"
        )


# --------------------------------------------------------------------------- preflight


def preflight(head: Head, desired: DesiredState, plan: Plan, live: LiveState, progress: Progress = _quiet) -> None:
    """Refuse, before any traffic moves, what cannot be served here or does not fit."""
    starting = {
        item.deployment for item in plan.items if item.role == "model" and item.action in (Action.CREATE, Action.UPDATE)
    }
    problems = compatibility_problems(desired, head.index, only=starting)
    peak = peak_config(plan, live)
    from mlops.appliers.cluster import cluster_resources

    problems += resource_problems(head.name, peak, cluster_resources())
    problems += _digest_problems(head, desired, starting, progress)
    if problems:
        raise DeploymentRefused(
            f"{head.name}: refused before any traffic moved ({len(problems)} problem(s)); nothing was changed",
            problems,
        )


def peak_config(plan: Plan, live: LiveState) -> dict[str, Any]:
    """The final config plus the versions kept running while traffic switches."""
    peak = dict(plan.config)
    for rollout in plan.rollouts:
        for app, _, _ in router_routes(live.apps[rollout.router_app].config if rollout.router_app in live.apps else {}):
            if app in live.apps and find_app(peak, app) is None:
                peak = replace_app(peak, live.apps[app].config)
    return peak


def _digest_problems(head: Head, desired: DesiredState, starting: set[str], progress: Progress) -> list[str]:
    settings = desired.settings
    store = open_artifact_store(settings.store, head.root)
    problems = []
    checked: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="mlops-preflight-") as folder:
        for deployment in desired.deployments:
            if deployment.name not in starting:
                continue
            version = head.index.find(ModelVersion, version_key(deployment.model, deployment.version))
            if version is None or version.spec.artifact.digest in checked:
                continue
            digest = version.spec.artifact.digest
            checked.add(digest)
            try:
                store.get_file(digest, Path(folder) / digest.removeprefix("sha256:"))
            except StoreError as exc:
                problems.append(f"{deployment.name}: {deployment.ref}: {exc.message}")
            else:
                progress(f"verified {deployment.ref}: {digest[:19]}... matches its bytes in {store.url}")
    return problems


# --------------------------------------------------------------------------- watch


def watch(
    root: Path,
    environment: str,
    prune: bool,
    interval: float,
    timeout: float,
    iterations: int | None,
    push: bool,
    progress: Progress,
    on_result: Callable[[ReconcileResult | MlopsError], None],
) -> None:
    """Reconcile every ``interval`` seconds: new commits are applied and drift in the cluster is healed."""
    done = 0
    while iterations is None or done < iterations:
        try:
            on_result(reconcile(root, environment, prune=prune, timeout=timeout, push=push, progress=progress))
        except MlopsError as exc:
            on_result(exc)
        done += 1
        if iterations is not None and done >= iterations:
            return
        time.sleep(interval)
