"""`mlops plan`, `mlops reconcile`, `mlops status`, `mlops rollout`: orchestration, no printing.

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

from mlops.appliers.cluster import ClusterTarget, ClusterUnavailable, LocalCluster, connected, resolve_target
from mlops.appliers.serve import AppStatus, DeployFailed, ServeApi, call_deployment, reason_of
from mlops.appliers.state import StateClient
from mlops.errors import InputError, MlopsError, Severity, StoreError, UsageError, ValidationFailed
from mlops.loader.ancestry import is_ancestor, resolve_commit, text_at, worktree_matches
from mlops.loader.atomic import atomic_write_text
from mlops.loader.cache import ParseCache
from mlops.loader.config import load_settings
from mlops.loader.git import snapshot_at
from mlops.loader.gitwrite import git_identity
from mlops.loader.history import commits_between, trailers
from mlops.loader.manifest_io import edited_text
from mlops.loader.snapshot import load_documents
from mlops.manifests import ArtifactPolicy, Environment, ModelVersion
from mlops.manifests.base import version_key
from mlops.planner.desired import (
    ROUTER_DEPLOYMENT,
    SERVER_DEPLOYMENT,
    DesiredState,
    ServeSettings,
    desired_state,
    parse_app_name,
)
from mlops.planner.fit import compatibility_problems, resource_problems
from mlops.planner.gates import judge_step
from mlops.planner.plan import (
    Action,
    LiveApp,
    LiveState,
    Plan,
    PlanItem,
    Rollout,
    canonical,
    find_app,
    make_plan,
    remove_app,
    replace_app,
    router_routes,
    with_routes,
)
from mlops.services.publish import CommitOptions, publish
from mlops.services.repository import repo_root
from mlops.services.schedules import apply_schedule_plan, live_schedules_of, plan_schedules
from mlops.stores.factory import open_artifact_store
from mlops.stores.predictions import prediction_log_address
from mlops.validation import build_index, check_repository
from mlops.validation.index import RepoIndex

Progress = Callable[[str], None]
DEFAULT_TIMEOUT = 300.0
POLL = 0.5


def _quiet(_message: str) -> None:
    return None


# --------------------------------------------------------------------------- errors


class LockHeld(MlopsError):
    exit_code = 1


class StalePlan(MlopsError):
    exit_code = 1


class NotDescendant(MlopsError):
    exit_code = 1


class DeploymentRefused(MlopsError):
    """Refused before any traffic moved; every reason is a line."""

    exit_code = 1

    def __init__(self, headline: str, problems: list[str]) -> None:
        super().__init__(headline)
        self.problems = problems

    def lines(self) -> list[str]:
        return [self.message, *(f"  {p}" for p in self.problems)]


class RolloutFailed(MlopsError):
    """The new version was refused by its health check or a gate (or aborted); traffic is back on the old one."""

    exit_code = 1

    def __init__(self, headline: str, details: list[str]) -> None:
        super().__init__(headline)
        self.details = details

    def lines(self) -> list[str]:
        return [self.message, *(f"  {d}" for d in self.details)]


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


def _desired(head: Head, where: Where, live: LiveState) -> DesiredState:
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
    desired = _desired(head, where, live)
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
class RolloutReport:
    deployment: str
    description: str
    switched_after_s: float | None = None
    outcome: str = "complete"


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


def _who(root: Path) -> str:
    """Who acts, as policies name people: the committer's e-mail (the environment first, as git itself does)."""
    return os.environ.get("GIT_COMMITTER_EMAIL") or git_identity(root) or getpass.getuser()


def _holder(head: Head) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "who": _who(head.root),
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
    desired = _desired(head, where, live)
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
        recorded = _router_user_config(app.config)
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


# --------------------------------------------------------------------------- apply


class _Aborted(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Applier:
    """Runs one plan: stage the new versions, move traffic step by step, clean up after the grace period."""

    def __init__(
        self,
        head: Head,
        plan: Plan,
        live: LiveState,
        api: ServeApi,
        state: StateClient,
        holder: dict[str, Any],
        timeout: float,
        push: bool,
        progress: Progress,
    ) -> None:
        self.head = head
        self.plan = plan
        self.live = live
        self.api = api
        self.state = state
        self.holder = holder
        self.timeout = timeout
        self.push = push
        self.say = progress
        self.started = time.monotonic()
        self.initial = self._live_config()
        self.working = dict(self.initial)
        self.reports: list[RolloutReport] = []

    # ------------------------------------------------------------------ configs

    def _live_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"applications": [app.config for _, app in sorted(self.live.apps.items())]}
        if "http_options" in self.plan.config:
            config["http_options"] = self.plan.config["http_options"]
        return config

    def _env_names(self, config: Mapping[str, Any]) -> list[str]:
        out = []
        for app in config.get("applications", []):
            parsed = parse_app_name(app["name"])
            if parsed is not None and parsed[0] == self.plan.environment:
                out.append(app["name"])
        return out

    def _send(self, config: dict[str, Any], what: str, wait_for: list[str] | None = None) -> None:
        """Send a whole config and wait for it; ``what`` is said before a long wait (new applications)
        and after a short one (traffic weights), so a line about weights means they are in effect."""
        before = set(self._env_names(self.working))
        after = self._env_names(config)
        published = self._publish_weights(config)
        try:
            sent = self.api.deploy(config)
        except BaseException:
            if published:
                self._republish_serve_weights(published)
            raise
        self.working = config
        if wait_for is None:
            self.say(what)
        expected = after if wait_for is None else wait_for
        self.api.wait(expected, absent=sorted(before - set(after)), timeout=self.timeout, progress=self.say,
                      sent_at=sent)
        if wait_for is not None:
            self.say(what)

    def _publish_weights(self, config: Mapping[str, Any]) -> list[str]:
        """Hand the routers whose only change is their weights the new ones directly (through the state actor
        they watch), before Serve's controller, which takes seconds with many applications, delivers the same
        config; returns the routers published. Only versions already sent and waited for may get traffic."""
        ready = {app["name"] for app in self.working.get("applications", [])}
        changed: dict[str, dict[str, Any]] = {}
        for app in config.get("applications", []):
            parsed = parse_app_name(app["name"])
            current = find_app(self.working, app["name"])
            if parsed is None or parsed[0] != self.plan.environment or parsed[2] is not None or current is None:
                continue
            weights = _router_user_config(app)
            if weights is None or canonical(weights) == canonical(_router_user_config(current)):
                continue
            if canonical(_without_weights(app)) != canonical(_without_weights(current)):
                continue  # more than the weights changes: the whole change is Serve's to make, weights included
            if any(a not in ready for a, _, w in router_routes(app) if w > 0):
                continue
            changed[app["name"]] = weights
        if not changed:
            return []
        try:
            self.state.call("publish_routes", changed)
        except MlopsError:
            return []  # an older state actor: Serve's reconfigure alone moves the traffic, as before
        return sorted(changed)

    def _republish_serve_weights(self, routers: list[str]) -> None:
        """The config did not reach Serve after its weights were published: the routers go back to what Serve
        records, so they never serve weights the cluster's config does not show."""
        with contextlib.suppress(Exception):
            apps = self.api.applications()
            recorded = {name: _router_user_config(apps[name].config) for name in routers if name in apps}
            self.state.call("publish_routes", {name: w for name, w in recorded.items() if w is not None})

    def _staged(self) -> dict[str, Any]:
        """The final config, but every switching deployment keeps its router and its running versions."""
        staged = dict(self.plan.config)
        for rollout in self.plan.rollouts:
            live_router = self.live.apps.get(rollout.router_app)
            if live_router is None:
                continue
            staged = replace_app(staged, live_router.config)
            for app, _, _ in router_routes(live_router.config):
                if app in self.live.apps and find_app(staged, app) is None:
                    staged = replace_app(staged, self.live.apps[app].config)
        return staged

    # ------------------------------------------------------------------ the run

    def run(self) -> list[RolloutReport]:
        self._prepare()
        pending = [r for r in self.plan.rollouts if r.from_app is not None]
        for position, rollout in enumerate(pending):
            try:
                self._rollout(rollout)
            except _Aborted as stop:
                self._roll_back([rollout, *pending[position + 1 :]], stop.reason)
            except DeployFailed as exc:
                self._roll_back([rollout, *pending[position + 1 :]], f"{rollout.to_app}: {exc.message}")
        self._finish()
        return self.reports

    def _prepare(self) -> None:
        staged = self._staged()
        if same_applications(staged, self.initial) and all(
            app.status == "RUNNING" for name, app in self.live.environment_apps(self.plan.environment).items()
        ):
            return  # every version the rollouts need already runs (a rollback to a version kept running)
        new_apps = [
            item.target for item in self.plan.items if item.role == "model" and item.action in (Action.CREATE,
                                                                                                 Action.UPDATE)
        ]
        described = ", ".join(new_apps[:4]) + (f" and {len(new_apps) - 4} more" if len(new_apps) > 4 else "")
        described = described or "configuration"
        try:
            self._send(staged, f"deploying {described} (traffic unchanged until healthy)")
            for app in new_apps:
                report = call_deployment(app, SERVER_DEPLOYMENT, "health", timeout=60)
                if not report.get("healthy"):
                    raise DeployFailed(f"{app}: health check failed: {report.get('error')}", {app: "unhealthy"})
                self.say(f"{app} healthy: canary prediction {report.get('canary_output')}")
        except DeployFailed as exc:
            failed = set(exc.failed) or set(new_apps)
            affected = [r for r in self.plan.rollouts if r.to_app in failed or r.router_app in failed]
            self._restore_after_failed_start(failed, exc)
            reason = exc.message
            pinned = [r for r in affected if r.from_app is not None]
            others = [r for r in self.plan.rollouts if r.from_app is not None and r not in pinned]
            commit = self._record_rollback(pinned + others, reason) if pinned else None
            details = [f"reason: {reason}", "traffic stayed on the running versions; the failed ones were removed"]
            if commit:
                details.append(f"recorded in git as {commit[:8]}: the environment is pinned back")
            raise RolloutFailed(f"{self.plan.environment}: the new version did not start healthy", details) from None
        for rollout in self.plan.rollouts:
            if rollout.from_app is None:
                self.reports.append(RolloutReport(rollout.deployment, rollout.describe, self._elapsed(), "complete"))

    def _restore_after_failed_start(self, failed: set[str], exc: DeployFailed) -> None:
        """UC-07 5a / 6a: back to the configuration the cluster ran before this reconcile (its last good one)."""
        self.say(f"restoring the last good configuration ({exc.message})")
        self._send(dict(self.initial), "restored the last good configuration")

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    # ------------------------------------------------------------------ one rollout

    def _set_routes(self, rollout: Rollout, to_weight: int, shadow: bool) -> None:
        router = find_app(self.working, rollout.router_app)
        assert router is not None and rollout.from_app is not None and rollout.from_version is not None
        routes = [(rollout.from_app, rollout.from_version, 100 - to_weight), (rollout.to_app, rollout.to_version,
                                                                              to_weight)]
        updated = replace_app(self.working, with_routes(router, rollout.model, routes, shadow))
        # Versions the router no longer names (an interrupted earlier rollout) stay until the end.
        self._send(updated, f"{rollout.deployment}: {rollout.model}@{rollout.to_version} {to_weight}%, "
                            f"{rollout.model}@{rollout.from_version} {100 - to_weight}%",
                   wait_for=[rollout.router_app])

    def _rollout(self, rollout: Rollout) -> None:
        self.say(f"{rollout.deployment}: {rollout.describe}")
        record = {
            "deployment": rollout.deployment,
            "model": rollout.model,
            "from": rollout.from_version,
            "to": rollout.to_version,
            "kind": rollout.kind,
            "steps": [s.weight for s in rollout.steps],
            "phase": "progressing",
            "step": 0,
            "weight": 0,
            "commit": self.head.commit,
            "control": None,
        }
        self.state.call("set_rollout", record)
        for index, step in enumerate(rollout.steps):
            self._check_control(rollout, record, wait_if_paused=True)
            shadow = bool(step.analysis and step.analysis.get("minAgreement") is not None)
            self._set_routes(rollout, step.weight, shadow and step.weight < 100)
            record.update(step=index, weight=step.weight)
            self.state.call("set_rollout", record)
            if step.weight >= 100:
                break
            self._reset_stats(rollout)
            self._pause(rollout, record, step.pause_s, step.analysis)
        switched = self._elapsed()
        self.say(f"{rollout.deployment}: {rollout.model}@{rollout.to_version} takes 100% of traffic "
                 f"({switched:.1f} s after the start)")
        record.update(phase="complete", weight=100)
        self.state.call("set_rollout", record)
        self.state.call("event", "switched", f"{rollout.deployment}: {rollout.model}@{rollout.to_version} has all "
                                             f"traffic ({rollout.kind}, {switched:.1f} s)")
        if rollout.to_app in self.live.retained:
            # Back on a version kept for an earlier grace period (a rollback): it serves again, so that period
            # no longer applies, and switching away from it later keeps it for that switch's own grace period.
            self.state.call("forget", rollout.to_app)
        if rollout.grace_s > 0 and rollout.from_app is not None:
            self.state.call("retain", rollout.from_app, time.time() + rollout.grace_s)
        self.reports.append(RolloutReport(rollout.deployment, rollout.describe, switched, "complete"))

    def _reset_stats(self, rollout: Rollout) -> None:
        with contextlib.suppress(Exception):
            call_deployment(rollout.router_app, ROUTER_DEPLOYMENT, "stats", True, timeout=10)

    def _stats(self, rollout: Rollout) -> dict[str, Any]:
        try:
            stats: dict[str, Any] = call_deployment(rollout.router_app, ROUTER_DEPLOYMENT, "stats", False, timeout=10)
        except Exception:
            return {}
        return dict(stats.get("versions", {}).get(str(rollout.to_version), {}))

    def _pause(self, rollout: Rollout, record: dict[str, Any], pause_s: float, analysis: dict[str, Any] | None) -> None:
        deadline = time.monotonic() + pause_s
        next_note = time.monotonic() + 10
        waiting_noted = ""
        while True:
            resumed = self._check_control(rollout, record, wait_if_paused=True)
            final = time.monotonic() >= deadline
            verdict = judge_step(analysis, self._stats(rollout), final)
            if verdict.state == "fail":
                raise _Aborted(f"analysis gate at {record['weight']}%: {verdict.text}")
            if final and (verdict.state == "pass" or resumed):
                if analysis:
                    self.say(f"{rollout.deployment}: gate at {record['weight']}% passed ({verdict.text or 'resumed'})")
                return
            if final and verdict.state == "wait":
                if not waiting_noted or (verdict.text != waiting_noted and time.monotonic() >= next_note):
                    self.say(f"{rollout.deployment}: holding at {record['weight']}%: {verdict.text} "
                             f"(`mlops rollout resume --env {self.plan.environment}` goes on without them)")
                    waiting_noted = verdict.text
                    next_note = time.monotonic() + 10
            elif time.monotonic() >= next_note:
                self.say(f"{rollout.deployment}: at {record['weight']}%, {max(0.0, deadline - time.monotonic()):.0f} s "
                         "of the pause left")
                next_note = time.monotonic() + 10
            time.sleep(POLL)

    def _check_control(self, rollout: Rollout, record: dict[str, Any], wait_if_paused: bool) -> bool:
        """Act on pause / resume / abort; True when a resume was received (go on without a verdict)."""
        resumed = False
        announced = False
        while True:
            snapshot = self.state.snapshot().get("rollout") or {}
            control = snapshot.get("control") or {}
            action = control.get("action")
            if action == "abort":
                who = control.get("who", "someone")
                why = f": {control['reason']}" if control.get("reason") else ""
                raise _Aborted(f"aborted by {who}{why}")
            if action == "resume":
                record["control"] = None
                record["phase"] = "progressing"
                self.state.call("set_rollout", {**record, "control": None})
                if announced:
                    self.say(f"{rollout.deployment}: resumed by {control.get('who')}")
                return True
            if action != "pause" or not wait_if_paused:
                return resumed
            if not announced:
                self.say(f"{rollout.deployment}: paused by {control.get('who')} at {record['weight']}% "
                         f"(`mlops rollout resume|abort --env {self.plan.environment}`)")
                record["phase"] = "paused"
                self.state.call("set_rollout", {**record, "control": control})
                announced = True
            time.sleep(POLL)

    # ------------------------------------------------------------------ rolling back

    def _roll_back(self, rollouts: list[Rollout], reason: str) -> None:
        """All traffic back to the old versions at once, the new ones removed, git pinned back; then raise."""
        self.say(f"rolling back: {reason}")
        for rollout in rollouts:
            router = find_app(self.working, rollout.router_app)
            if router is None or rollout.from_app is None or rollout.from_version is None:
                continue
            back = replace_app(self.working, with_routes(router, rollout.model,
                                                         [(rollout.from_app, rollout.from_version, 100)], False))
            self._send(back, f"{rollout.deployment}: all traffic back on {rollout.model}@{rollout.from_version}",
                       wait_for=[rollout.router_app])
        for rollout in rollouts:
            if find_app(self.working, rollout.to_app) is not None:
                self._send(remove_app(self.working, rollout.to_app), f"removed {rollout.to_app}")
        self.state.call("set_rollout", {"deployment": rollouts[0].deployment, "phase": "failed", "reason": reason,
                                        "commit": self.head.commit, "control": None})
        commit = self._record_rollback(rollouts, reason)
        with contextlib.suppress(Exception):
            self.state.call("event", "rolled-back", f"{', '.join(r.deployment for r in rollouts)}: {reason}")
        details = [f"reason: {reason}", "the old version kept running and has all traffic again"]
        if commit:
            details.append(f"recorded in git as {commit[:8]}: the environment is pinned back")
        raise RolloutFailed(f"{self.plan.environment}: rolled back {', '.join(r.deployment for r in rollouts)}",
                            details)

    def _record_rollback(self, rollouts: list[Rollout], reason: str) -> str | None:
        pins = {r.deployment: r for r in rollouts if r.from_version is not None}
        if not pins:
            return None
        path = f"environments/{self.plan.environment}.yaml"
        root = self.head.root
        try:
            head_now = resolve_commit(root, "HEAD")
            if not worktree_matches(root, head_now, path):
                self.say(f"not recorded in git: {path} has uncommitted changes; pin the versions back by hand")
                return None
            text = text_at(root, head_now, path)
            if text is None:
                return None

            def change(tree: Any) -> None:
                for deployment in tree.get("spec", {}).get("deployments", []):
                    pinned = pins.get(str(deployment.get("name")))
                    if pinned is not None:
                        deployment["version"] = pinned.from_version

            new_text = edited_text(text, change)
            title = ", ".join(f"{r.model} {r.to_version} -> {r.from_version}" for r in pins.values())
            lines = [f"Roll back {title} in {self.plan.environment} (automatic)", "", f"Reason: {reason}", "",
                     f"The reconcile of {self.head.commit[:12]} routed all traffic back to the running version; "
                     "this commit pins the environment to what the cluster serves."]
            lines.append("")
            lines += [f"Mlops-Rollback: {r.model}@{r.to_version} -> {r.model}@{r.from_version}" for r in pins.values()]
            lines.append("Mlops-Automatic-Rollback: true")
            publication = publish(root, {path: new_text}, "\n".join(lines), CommitOptions(commit=True, push=self.push))
        except MlopsError as exc:
            self.say(f"not recorded in git: {exc.message}")
            return None
        if publication.commit:
            self.state.call("record_applied", publication.commit, {"applications": self._env_apps(self.working)},
                            self.holder["id"])
        return publication.commit

    def interrupted(self) -> None:
        """Say in the cluster that the rollout in progress has no reconciler any more (the next one resumes it)."""
        with contextlib.suppress(Exception):
            record = self.state.snapshot().get("rollout") or {}
            if record.get("phase") in ("progressing", "paused") and record.get("commit") == self.head.commit:
                self.state.call("set_rollout", {**record, "phase": "interrupted", "control": None})

    def _env_apps(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        names = set(self._env_names(config))
        return [a for a in config.get("applications", []) if a["name"] in names]

    # ------------------------------------------------------------------ the end

    def _finish(self) -> None:
        graced = [r for r in self.plan.rollouts if r.grace_s > 0 and r.from_app is not None]
        if graced:
            deadline = time.monotonic() + max(r.grace_s for r in graced)
            self.say(f"keeping {', '.join(str(r.from_app) for r in graced)} for the grace period "
                     f"({max(r.grace_s for r in graced):g} s)")
            next_note = time.monotonic() + 15
            while time.monotonic() < deadline:
                snapshot = self.state.snapshot().get("rollout") or {}
                control = snapshot.get("control") or {}
                if control.get("action") == "abort":
                    who = control.get("who", "someone")
                    self._roll_back(graced, f"aborted by {who} during the grace period")
                if time.monotonic() >= next_note:
                    self.say(f"grace period: {deadline - time.monotonic():.0f} s left")
                    next_note = time.monotonic() + 15
                time.sleep(POLL)
        final = dict(self.plan.config)
        if not same_applications(final, self.working):
            self._send(final, "removing what the environment no longer runs" if graced or self.plan.rollouts
                       else "applying the configuration")
        for rollout in graced:
            self.state.call("forget", rollout.from_app)
        self.state.call("record_applied", self.head.commit, {"applications": self._env_apps(final)},
                        self.holder["id"])


def _router_user_config(app: Mapping[str, Any] | None) -> dict[str, Any] | None:
    for deployment in (app or {}).get("deployments", []):
        if deployment.get("name") == ROUTER_DEPLOYMENT:
            user = deployment.get("user_config")
            return dict(user) if isinstance(user, Mapping) else None
    return None


def _without_weights(app: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(app)
    out["deployments"] = [
        {k: v for k, v in d.items() if k != "user_config"} if d.get("name") == ROUTER_DEPLOYMENT else d
        for d in app.get("deployments", [])
    ]
    return out


def same_applications(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    def by_name(config: Mapping[str, Any]) -> dict[str, Any]:
        return {app["name"]: app for app in config.get("applications", [])}

    return canonical(by_name(a)) == canonical(by_name(b))


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


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class DeploymentStatus:
    name: str
    model: str
    desired_version: int
    serving: list[tuple[int, int]]
    health: str
    replicas: str
    endpoint: str
    curl: str
    message: str = ""


@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    cluster: str
    running: bool
    head_commit: str
    applied_commit: str | None
    in_sync: bool
    deployments: list[DeploymentStatus]
    lock: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def environment_status(root: Path, environment: str) -> EnvironmentStatus:
    head = load_head(root, environment)
    where = locate(head, start=False)
    live, record = observe(where, environment)
    desired = _desired(head, where, live)
    plan = make_plan(desired, live, now=time.time(),
                     http_options=where.target.http_options() if where.target else None)
    serve_url = where.target.serve_url if where.target is not None else "http://127.0.0.1:8000"
    rows = []
    for deployment in desired.deployments:
        router = live.apps.get(deployment.router_app)
        routes = router_routes(router.config if router else None)
        serving = [(version, weight) for _, version, weight in routes if weight > 0]
        apps = [router] if router else []
        apps += [live.apps[a] for a, _, w in routes if w > 0 and a in live.apps]
        if not live.running:
            health = "not running"
        elif router is None:
            health = "not deployed"
        elif any(a.status in ("DEPLOY_FAILED", "UNHEALTHY") for a in apps):
            health = "unhealthy"
        elif all(a.status == "RUNNING" and all(s == "HEALTHY" for s in a.deployments.values()) for a in apps):
            health = "healthy"
        else:
            health = "deploying"
        model_apps = [live.apps[a] for a, _, w in routes if w > 0 and a in live.apps]
        running = sum(a.running_replicas for a in model_apps)
        wanted = sum(a.target_replicas for a in model_apps) or deployment.replicas
        endpoint = f"{serve_url}{deployment.route_prefix}"
        example = _example(deployment.model_config)
        curl = (f"curl -s -i -X POST {endpoint} -H 'Content-Type: application/json' "
                f"-d '{json.dumps({'inputs': example})}'")
        message = next((reason_of(a.message) for a in apps if a.message), "")
        rows.append(
            DeploymentStatus(deployment.name, deployment.model, deployment.version, serving, health,
                             f"{running}/{wanted}", endpoint, curl, message)
        )
    orphans = [i.target for i in plan.items if i.note.endswith("--prune deletes it")]
    return EnvironmentStatus(
        environment=environment,
        cluster=where.label,
        running=live.running,
        head_commit=head.commit,
        applied_commit=live.applied_commit,
        in_sync=live.running and not plan.has_changes and not plan.rollouts,
        deployments=rows,
        lock=record.get("lock"),
        rollout=record.get("rollout"),
        events=list(record.get("events") or []),
        orphans=orphans,
    )


def _example(model_config: Mapping[str, Any]) -> list[list[float]]:
    signature = (model_config.get("args") or {}).get("signature") or {}
    example = signature.get("example")
    if example:
        return [list(row) for row in example]
    inputs = signature.get("inputs") or [{}]
    shape = inputs[0].get("shape") or [-1, 1]
    width = shape[1] if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0 else 1
    return [[0.0] * width]


# --------------------------------------------------------------------------- rollout control


def rollout_control(root: Path, environment: str, action: str, reason: str = "") -> dict[str, Any]:
    if action not in ("pause", "resume", "abort"):
        raise UsageError(f"unknown rollout action {action!r}")
    head = load_head(root, environment)
    where = locate(head, start=False)
    if where.target is None:
        raise ClusterUnavailable(f"{environment}: the cluster is not running ({where.label}); no rollout to {action}")
    ServeApi(where.target).details()
    with connected(where.target):
        client = StateClient(environment, create=False)
        result = client.call("control", action, _who(head.root), reason) if client.exists else None
    if not result or not result.get("ok"):
        raise UsageError(f"no rollout in progress in {environment} (nothing to {action})")
    rollout: dict[str, Any] = result["rollout"]
    return rollout

