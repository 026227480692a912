"""`mlops status` and `mlops rollout`: what an environment runs, and control of a rollout in progress."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.appliers.cluster import ClusterUnavailable, connected
from mlops.appliers.serve import ServeApi, reason_of
from mlops.appliers.state import StateClient
from mlops.errors import UsageError
from mlops.planner.plan import (
    make_plan,
    router_routes,
)
from mlops.services.reconcile import desired_of, load_head, locate, observe, operator_of

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
    desired = desired_of(head, where, live)
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
        result = client.call("control", action, operator_of(head.root), reason) if client.exists else None
    if not result or not result.get("ok"):
        raise UsageError(f"no rollout in progress in {environment} (nothing to {action})")
    rollout: dict[str, Any] = result["rollout"]
    return rollout
