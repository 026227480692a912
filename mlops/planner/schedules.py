"""Pipeline schedules of an environment, desired vs live (pure): which to create, change or stop.

An environment activates a pipeline by listing it under ``spec.pipelines`` (GitOps: the pull request
that adds it is the activation, UC-04). A schedule changes when its cron, its parameters or the
pipeline's code (the git tree of its folder) change; a new commit that leaves the pipeline alone is not
a change, so ``mlops plan`` stays quiet about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops.manifests import Environment, Pipeline
from mlops.planner.desired import ManifestLookup, PlanningError
from mlops.planner.plan import Action, FieldChange, PlanItem, field_diff

COMPARED = ("cron", "code", "params")


@dataclass(frozen=True)
class DesiredSchedule:
    pipeline: str
    cron: str
    code: str  # the git tree id of pipelines/<name> at the commit
    params: dict[str, Any] = field(default_factory=dict)

    def record(self, commit: str, root: str, env: Mapping[str, str]) -> dict[str, Any]:
        """What the cluster's scheduler keeps (see :mod:`mlops.appliers.scheduler`)."""
        return {
            "pipeline": self.pipeline,
            "cron": self.cron,
            "code": self.code,
            "params": dict(self.params),
            "commit": commit,
            "root": root,
            "env": dict(env),
        }


def desired_schedules(
    environment: Environment, lookup: ManifestLookup, codes: Mapping[str, str]
) -> tuple[DesiredSchedule, ...]:
    """The environment's schedules; ``codes`` maps each pipeline to its folder's tree id."""
    env = environment.metadata.name
    out = []
    for scheduled in environment.spec.pipelines:
        pipeline = lookup.find(Pipeline, scheduled.name)
        if pipeline is None:
            raise PlanningError(f"environments/{env}.yaml: pipeline {scheduled.name} does not exist")
        cron = scheduled.schedule or pipeline.spec.schedule
        if not cron:
            raise PlanningError(
                f"environments/{env}.yaml: pipeline {scheduled.name} has no schedule: give one here "
                f"(schedule: '0 3 * * 1') or in pipelines/{scheduled.name}/pipeline.yaml"
            )
        out.append(DesiredSchedule(scheduled.name, cron, codes[scheduled.name], dict(scheduled.params)))
    return tuple(out)


def schedule_items(desired: tuple[DesiredSchedule, ...], live: Mapping[str, Mapping[str, Any]]) -> list[PlanItem]:
    """One plan item per schedule, desired or live: create, update (with the field diff), noop, or delete."""
    items = []
    wanted = {s.pipeline: s for s in desired}
    for name, schedule in wanted.items():
        after = {"cron": schedule.cron, "code": schedule.code, "params": dict(schedule.params)}
        current = live.get(name)
        target = f"schedule/{name}"
        if current is None:
            items.append(PlanItem(Action.CREATE, target, "schedule", name, f"schedule {name} at '{schedule.cron}'"))
            continue
        before = {key: current.get(key) for key in COMPARED}
        changes: tuple[FieldChange, ...] = field_diff(before, after)
        if changes:
            items.append(
                PlanItem(Action.UPDATE, target, "schedule", name, f"reschedule {name} at '{schedule.cron}'", changes)
            )
        else:
            items.append(
                PlanItem(Action.NOOP, target, "schedule", name, f"{name} stays scheduled at '{schedule.cron}'")
            )
    for name, current in sorted(live.items()):
        if name not in wanted:
            items.append(
                PlanItem(
                    Action.DELETE,
                    f"schedule/{name}",
                    "schedule",
                    name,
                    f"stop scheduling {name} (was '{current.get('cron')}')",
                    note="the pipeline is no longer listed in the environment",
                )
            )
    return items
