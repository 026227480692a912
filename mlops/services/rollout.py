"""Applying one plan to Serve: stage new versions, move traffic step by step behind gates, clean up.

Split from :mod:`mlops.services.reconcile`, which loads, plans, locks and records; this module only
runs an accepted plan against the cluster and reports what each rollout did.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops.appliers.serve import DeployFailed, ServeApi, call_deployment
from mlops.appliers.state import StateClient
from mlops.errors import DetailedError, MlopsError
from mlops.loader.ancestry import resolve_commit, text_at, worktree_matches
from mlops.loader.manifest_io import edited_text
from mlops.planner.desired import (
    ROUTER_DEPLOYMENT,
    SERVER_DEPLOYMENT,
    parse_app_name,
)
from mlops.planner.gates import judge_step
from mlops.planner.plan import (
    Action,
    LiveState,
    Plan,
    Rollout,
    canonical,
    find_app,
    remove_app,
    replace_app,
    router_routes,
    with_routes,
)
from mlops.services.publish import CommitOptions, publish

if TYPE_CHECKING:
    from mlops.services.reconcile import Head

Progress = Callable[[str], None]
POLL = 0.5


class RolloutFailed(DetailedError):
    """The new version was refused by its health check or a gate (or aborted); traffic is back on the old one."""


@dataclass
class RolloutReport:
    deployment: str
    description: str
    switched_after_s: float | None = None
    outcome: str = "complete"


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
            weights = router_user_config(app)
            if weights is None or canonical(weights) == canonical(router_user_config(current)):
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
            recorded = {name: router_user_config(apps[name].config) for name in routers if name in apps}
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


def router_user_config(app: Mapping[str, Any] | None) -> dict[str, Any] | None:
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
