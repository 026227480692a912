"""Reconcile's part for pipeline schedules: desired (the environment at HEAD) vs the cluster's scheduler.

The schedules an environment lists are handed to the cluster (:mod:`mlops.appliers.scheduler`) with
the commit they were applied at, the repository's absolute path and the settings a run needs, so a
scheduled run works with nobody's CLI running. Stopping a schedule needs no ``--prune``: it deletes
nothing that was made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.loader.worktrees import tree_id
from mlops.planner.plan import Action, PlanItem
from mlops.planner.schedules import desired_schedules, schedule_items
from mlops.services.pipelines import absolute_settings

if TYPE_CHECKING:
    from mlops.services.reconcile import Head, Where


@dataclass(frozen=True)
class SchedulePlan:
    items: list[PlanItem]
    records: list[dict[str, Any]]

    @property
    def changed(self) -> bool:
        return any(item.action is not Action.NOOP for item in self.items)


def plan_schedules(head: Head, where: Where, live: Mapping[str, Mapping[str, Any]]) -> SchedulePlan:
    env = head.environment
    codes = {p.name: tree_id(head.root, head.commit, f"pipelines/{p.name}") for p in env.spec.pipelines}
    desired = desired_schedules(env, head.index, codes)
    settings = absolute_settings(head.root)
    if where.local is not None:  # the scheduled CLI must find the embedded cluster this reconcile used
        settings["MLOPS_CLUSTER_DIR"] = str(where.local.state_dir)
    for name in ("MLOPS_USER", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        if os.environ.get(name):
            settings[name] = os.environ[name]
    root = str(head.root.resolve())
    records = [schedule.record(head.commit, root, settings) for schedule in desired]
    return SchedulePlan(schedule_items(desired, live), records)


def live_schedules_of(environment: str) -> dict[str, dict[str, Any]]:
    """The scheduler's schedules for ``environment`` (the caller is connected to the cluster)."""
    from mlops.appliers.scheduler import live_schedules

    found: dict[str, dict[str, Any]] = live_schedules(environment)["schedules"]
    return found


def apply_schedule_plan(environment: str, plan: SchedulePlan) -> dict[str, Any]:
    from mlops.appliers.scheduler import apply_schedules

    return apply_schedules(environment, plan.records)


def scheduler_status(environment: str) -> dict[str, Any]:
    from mlops.appliers.scheduler import live_schedules

    return live_schedules(environment)


def environment_schedules(root: Path, environment: str) -> dict[str, Any]:
    """`mlops pipeline schedules --env ENV`: what the environment's cluster has scheduled, next times, history."""
    from mlops.appliers.cluster import connected
    from mlops.services.reconcile import load_head, locate

    head = load_head(root, environment)
    where = locate(head, start=False)
    if where.target is None:
        return {"environment": environment, "cluster": where.label, "schedules": {}, "history": [], "running": False}
    with connected(where.target):
        found = scheduler_status(environment)
    return {**found, "cluster": where.label, "running": True}
