"""Desired vs live -> Plan (pure).

A :class:`Plan` is a value: per Serve application of the environment an item (create / update / delete /
noop) with the field diff, the rollouts the change needs (which deployment moves from which version to
which, in what steps), the full declarative config to send at the end (Serve deletes applications a
config leaves out, so it always holds every application of the cluster: other environments' and other
tools' applications are copied from the live config untouched), and two fingerprints that make a saved
plan refuse to apply once the repository or the cluster moved: the commit it was made from and a hash of
the live configuration it was compared with.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from mlops.planner.desired import (
    ROUTER_DEPLOYMENT,
    SERVER_DEPLOYMENT,
    DesiredDeployment,
    DesiredState,
    PlanningError,
    duration_seconds,
    final_router_config,
    parse_app_name,
)

PLAN_FORMAT = 1
DEFAULT_GRACE = "60s"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"


# --------------------------------------------------------------------------- live state


@dataclass(frozen=True)
class LiveApp:
    name: str
    status: str
    config: dict[str, Any]
    message: str = ""
    deployments: dict[str, str] = field(default_factory=dict)
    running_replicas: int = 0
    target_replicas: int = 0


@dataclass(frozen=True)
class LiveState:
    """What the cluster runs now, read from Serve's status and deployed config and our state actor."""

    cluster: str
    running: bool
    apps: Mapping[str, LiveApp] = field(default_factory=dict)
    applied_commit: str | None = None
    retained: Mapping[str, float] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        document = {
            "apps": {name: app.config for name, app in sorted(self.apps.items())},
            "applied": self.applied_commit,
        }
        return "sha256:" + hashlib.sha256(canonical(document).encode()).hexdigest()

    def environment_apps(self, environment: str) -> dict[str, LiveApp]:
        out = {}
        for name, app in self.apps.items():
            parsed = parse_app_name(name)
            if parsed is not None and parsed[0] == environment:
                out[name] = app
        return out


def canonical(value: Any) -> str:
    return json.dumps(_normalized(value), sort_keys=True, separators=(",", ":"))


def _normalized(value: Any) -> Any:
    """Numbers as Serve echoes them: 5 and 5.0 are the same setting."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _normalized(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalized(v) for v in value]
    return value


def router_routes(config: Mapping[str, Any] | None) -> list[tuple[str, int, int]]:
    """(application, version, weight) of a router application's config."""
    if not config:
        return []
    for deployment in config.get("deployments", []):
        if deployment.get("name") == ROUTER_DEPLOYMENT:
            user = deployment.get("user_config") or {}
            return [(str(r["app"]), int(r["version"]), int(r["weight"])) for r in user.get("routes", [])]
    return []


# --------------------------------------------------------------------------- the plan value


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class PlanItem:
    action: Action
    target: str
    role: str
    deployment: str
    summary: str
    changes: tuple[FieldChange, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Step:
    weight: int
    pause_s: float
    analysis: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rollout:
    """How one deployment moves its traffic to its new version."""

    deployment: str
    model: str
    kind: str  # new | switch | blue-green | rollback | known-good
    to_version: int
    to_app: str
    router_app: str
    from_version: int | None = None
    from_app: str | None = None
    steps: tuple[Step, ...] = ()
    grace_s: float = 0.0

    @property
    def describe(self) -> str:
        source = f"{self.model}@{self.from_version}" if self.from_version is not None else "nothing"
        target = f"{self.model}@{self.to_version}"
        if self.kind == "blue-green":
            weights = " / ".join(f"{s.weight}%" for s in self.steps)
            return f"{source} -> {target}: blue-green {weights}, old version kept {self.grace_s:g} s after the switch"
        words = {
            "new": "new deployment",
            "switch": "switch at once once healthy",
            "rollback": "rollback: switch at once once healthy",
            "known-good": "switch at once (the version still runs and served here before)",
        }
        return f"{source} -> {target}: {words.get(self.kind, self.kind)}"


@dataclass(frozen=True)
class Plan:
    environment: str
    cluster: str
    commit: str
    live_fingerprint: str
    items: tuple[PlanItem, ...]
    rollouts: tuple[Rollout, ...]
    config: dict[str, Any]
    prune: bool = False
    cluster_running: bool = True
    format: int = PLAN_FORMAT

    @property
    def changes(self) -> list[PlanItem]:
        return [item for item in self.items if item.action is not Action.NOOP]

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for item in self.items:
            out[item.action.value] += 1
        return out

    def environment_apps(self) -> list[dict[str, Any]]:
        return [a for a in self.config.get("applications", []) if _belongs(a["name"], self.environment)]

    # ------------------------------------------------------------------ JSON round trip

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["items"] = [
            {**asdict(item), "action": item.action.value, "changes": [asdict(c) for c in item.changes]}
            for item in self.items
        ]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise PlanningError(f"unsupported plan format {data.get('format')!r} (this mlops writes {PLAN_FORMAT})")
        try:
            items = tuple(
                PlanItem(
                    action=Action(item["action"]),
                    target=item["target"],
                    role=item["role"],
                    deployment=item["deployment"],
                    summary=item["summary"],
                    changes=tuple(FieldChange(**c) for c in item.get("changes", [])),
                    note=item.get("note", ""),
                )
                for item in data["items"]
            )
            rollouts = tuple(
                Rollout(**{**r, "steps": tuple(Step(**s) for s in r.get("steps", []))}) for r in data["rollouts"]
            )
            return cls(
                environment=data["environment"],
                cluster=data["cluster"],
                commit=data["commit"],
                live_fingerprint=data["live_fingerprint"],
                items=items,
                rollouts=rollouts,
                config=dict(data["config"]),
                prune=bool(data.get("prune", False)),
                cluster_running=bool(data.get("cluster_running", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanningError(f"not a plan written by `mlops plan --out`: {exc}") from None


def _belongs(app_name: str, environment: str) -> bool:
    parsed = parse_app_name(app_name)
    return parsed is not None and parsed[0] == environment


# --------------------------------------------------------------------------- diff


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Paths to leaves; lists of named objects (Serve's deployments) are keyed by name."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        if not value and prefix:
            out[prefix] = {}
        for key, child in value.items():
            out.update(flatten(child, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, Mapping) and "name" in v for v in value):
        for child in value:
            out.update(flatten({k: v for k, v in child.items() if k != "name"}, f"{prefix}[{child['name']}]"))
        return out
    out[prefix] = value
    return out


def field_diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> tuple[FieldChange, ...]:
    left = flatten(before or {})
    right = flatten(after or {})
    changes = []
    for path in sorted(set(left) | set(right)):
        a, b = left.get(path), right.get(path)
        if canonical(a) != canonical(b):
            changes.append(FieldChange(path, a, b))
    return tuple(changes)


def same_config(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    return canonical(a) == canonical(b)


# --------------------------------------------------------------------------- planning


def make_plan(
    desired: DesiredState,
    live: LiveState,
    prune: bool = False,
    now: float = 0.0,
    http_options: Mapping[str, Any] | None = None,
) -> Plan:
    env = desired.environment
    env_live = live.environment_apps(env)
    items: list[PlanItem] = []
    rollouts: list[Rollout] = []
    applications: list[dict[str, Any]] = [
        copy.deepcopy(app.config) for name, app in sorted(live.apps.items()) if name not in env_live
    ]
    claimed: set[str] = set()
    for deployment in desired.deployments:
        model_config = sticky_model_config(deployment, env_live.get(deployment.model_app))
        router = final_router_config(env, deployment, desired.settings)
        items.append(_model_item(deployment, model_config, env_live.get(deployment.model_app)))
        live_router = env_live.get(deployment.router_app)
        rollout = _rollout(desired, deployment, live_router, env_live, live, now)
        items.append(_router_item(deployment, router, live_router, rollout))
        if rollout is not None:
            rollouts.append(rollout)
        applications += [model_config, router]
        claimed |= {deployment.model_app, deployment.router_app}
        for name, app in sorted(env_live.items()):
            parsed = parse_app_name(name)
            if name in claimed or parsed is None or parsed[1] != deployment.name:
                continue
            claimed.add(name)
            until = live.retained.get(name, 0.0)
            ref = f"{deployment.model}@{parsed[2]}" if parsed[2] is not None else name
            if until > now:
                items.append(
                    PlanItem(Action.NOOP, name, "model", deployment.name, f"keep {ref}",
                             note=f"kept for the grace period, {until - now:.0f} s more")
                )
                applications.append(copy.deepcopy(app.config))
            else:
                after = _after_switch(rollout)
                items.append(PlanItem(Action.DELETE, name, "model", deployment.name, f"stop {ref}{after}"))
    for name, app in sorted(env_live.items()):
        if name in claimed:
            continue
        parsed = parse_app_name(name)
        deployment_name = parsed[1] if parsed else name
        role = "router" if parsed is not None and parsed[2] is None else "model"
        if prune:
            items.append(PlanItem(Action.DELETE, name, role, deployment_name,
                                  f"delete {name}: deployment {deployment_name} is no longer in the repository"))
        else:
            items.append(
                PlanItem(Action.NOOP, name, role, deployment_name, f"keep {name}",
                         note=f"deployment {deployment_name} is no longer in the repository; --prune deletes it")
            )
            applications.append(copy.deepcopy(app.config))
    config: dict[str, Any] = {"applications": applications}
    if http_options:
        config["http_options"] = dict(http_options)
    return Plan(
        environment=env,
        cluster=live.cluster,
        commit=desired.commit,
        live_fingerprint=live.fingerprint,
        items=tuple(items),
        rollouts=tuple(rollouts),
        config=config,
        prune=prune,
        cluster_running=live.running,
    )


def sticky_model_config(deployment: DesiredDeployment, live: LiveApp | None) -> dict[str, Any]:
    """The model application's config; a running version keeps the commit it was deployed from (it is in
    the args, and a change of args would restart it for nothing)."""
    config = copy.deepcopy(deployment.model_config)
    if live is not None:
        live_commit = (live.config.get("args") or {}).get("commit")
        if live_commit:
            config["args"]["commit"] = live_commit
    return config


def _model_item(deployment: DesiredDeployment, config: dict[str, Any], live: LiveApp | None) -> PlanItem:
    ref = deployment.ref
    size = f"{deployment.replicas} replica{'s' if deployment.replicas != 1 else ''}, {deployment.cpus:g} CPU"
    if live is None:
        return PlanItem(Action.CREATE, deployment.model_app, "model", deployment.name, f"start {ref} ({size})",
                        field_diff(None, config))
    if live.status == "DEPLOY_FAILED":
        return PlanItem(Action.UPDATE, deployment.model_app, "model", deployment.name, f"redeploy {ref}",
                        field_diff(live.config, config), note=f"DEPLOY_FAILED: {_first_line(live.message)}")
    changes = field_diff(live.config, config)
    if changes:
        restart = any(c.path.startswith(("args", "import_path", "runtime_env")) or "ray_actor_options" in c.path
                      for c in changes)
        summary = f"{'restart' if restart else 'reconfigure'} {ref}"
        return PlanItem(Action.UPDATE, deployment.model_app, "model", deployment.name, summary, changes)
    return PlanItem(Action.NOOP, deployment.model_app, "model", deployment.name, f"{ref} unchanged")


def _router_item(
    deployment: DesiredDeployment, config: dict[str, Any], live: LiveApp | None, rollout: Rollout | None
) -> PlanItem:
    how = f" ({rollout.describe})" if rollout is not None else ""
    if live is None:
        return PlanItem(Action.CREATE, deployment.router_app, "router", deployment.name,
                        f"route {deployment.route_prefix} to {deployment.ref}{how}", field_diff(None, config))
    changes = field_diff(live.config, config)
    if not changes:
        return PlanItem(Action.NOOP, deployment.router_app, "router", deployment.name,
                        f"{deployment.route_prefix} -> {deployment.ref} unchanged")
    before = _weights_text(router_routes(live.config), deployment.model)
    after = _weights_text(router_routes(config), deployment.model)
    summary = f"traffic {before} -> {after}{how}" if before != after else f"update the router of {deployment.name}"
    return PlanItem(Action.UPDATE, deployment.router_app, "router", deployment.name, summary, changes)


def _weights_text(routes: list[tuple[str, int, int]], model: str) -> str:
    shown = [f"{model}@{version} {weight}%" for _, version, weight in routes if weight > 0]
    return ", ".join(shown) or "nothing"


def _after_switch(rollout: Rollout | None) -> str:
    if rollout is None:
        return ""
    if rollout.grace_s:
        return f" (after the switch and a grace period of {rollout.grace_s:g} s)"
    return " (after the switch)"


def _rollout(
    desired: DesiredState,
    deployment: DesiredDeployment,
    live_router: LiveApp | None,
    env_live: Mapping[str, LiveApp],
    live: LiveState,
    now: float,
) -> Rollout | None:
    routes = router_routes(live_router.config if live_router else None)
    serving = [(app, version, weight) for app, version, weight in routes if weight > 0]
    if serving == [(deployment.model_app, deployment.version, 100)]:
        return None
    base = {
        "deployment": deployment.name,
        "model": deployment.model,
        "to_version": deployment.version,
        "to_app": deployment.model_app,
        "router_app": deployment.router_app,
    }
    others = sorted((r for r in serving if r[0] != deployment.model_app), key=lambda r: -r[2])
    if not others:
        return Rollout(kind="new", steps=(Step(100, 0.0),), **base)  # type: ignore[arg-type]
    from_app, from_version, _ = others[0]
    base.update(from_version=from_version, from_app=from_app)
    strategy = deployment.strategy
    grace = duration_seconds(strategy.gracePeriod if strategy is not None else "0s")
    target = env_live.get(deployment.model_app)
    if deployment.name in desired.rollbacks:
        return Rollout(kind="rollback", steps=(Step(100, 0.0),), **base)  # type: ignore[arg-type]
    if target is not None and target.status == "RUNNING" and live.retained.get(deployment.model_app, 0.0) > now:
        return Rollout(kind="known-good", steps=(Step(100, 0.0),), **base)  # type: ignore[arg-type]
    if strategy is None or strategy.type == "replace" or not strategy.steps:
        return Rollout(kind="switch", steps=(Step(100, 0.0),), **base)  # type: ignore[arg-type]
    current = next((w for app, _, w in serving if app == deployment.model_app), 0)
    steps = tuple(
        Step(
            s.weight,
            duration_seconds(s.pause) if s.weight < 100 else 0.0,
            s.analysis.model_dump(mode="json", exclude_none=True) if s.analysis is not None else None,
        )
        for s in strategy.steps
        if s.weight > current
    ) or (Step(100, 0.0),)
    return Rollout(kind="blue-green", steps=steps, grace_s=grace, **base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- configs on the way


def replace_app(config: Mapping[str, Any], app: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with ``app`` added, or replacing the application of the same name."""
    out = copy.deepcopy(dict(config))
    apps = [a for a in out.get("applications", []) if a["name"] != app["name"]]
    apps.append(copy.deepcopy(dict(app)))
    out["applications"] = apps
    return out


def remove_app(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    out = copy.deepcopy(dict(config))
    out["applications"] = [a for a in out.get("applications", []) if a["name"] != name]
    return out


def find_app(config: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    return next((a for a in config.get("applications", []) if a["name"] == name), None)


def with_routes(
    router: Mapping[str, Any], model: str, routes: list[tuple[str, int, int]], shadow: bool
) -> dict[str, Any]:
    out = copy.deepcopy(dict(router))
    for deployment in out.get("deployments", []):
        if deployment.get("name") == ROUTER_DEPLOYMENT:
            deployment["user_config"] = {
                "model": model,
                "routes": [{"app": a, "version": v, "weight": w} for a, v, w in routes],
                "shadow": shadow,
            }
    return out


def model_apps(config: Mapping[str, Any]) -> list[str]:
    out = []
    for app in config.get("applications", []):
        parsed = parse_app_name(app["name"])
        if parsed is not None and parsed[2] is not None and any(
            d.get("name") == SERVER_DEPLOYMENT for d in app.get("deployments", [])
        ):
            out.append(app["name"])
    return out


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
