"""Who may start which run in a project (UC-15; pure: the Project manifest and the run's plan in, reasons out).

A run must belong to a project its user is a member of (leads and members run; viewers only read).
Datasets it reads must be allowed by the project, by name or exact version, and of an allowed data
class (``allowedDataClasses``), or of a class that ``reviewRequired.dataClasses`` lets reviewed
experiments read. An experiment needs review when it reads a data class listed in ``reviewRequired.dataClasses``
or expects more compute than ``reviewRequired.overBudgetShare`` of the budget; reviewed means listed in
``spec.experiments`` with ``approvedBy`` naming a lead of the project — approval is the pull request that
adds it. A project whose budget for the period is used up starts no more runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mlops.manifests.base import parse_versioned_uri
from mlops.manifests.dataset import DataClass
from mlops.manifests.project import Project, ProjectRole


@dataclass(frozen=True)
class RunPlan:
    user: str | None
    experiment: str
    datasets: Mapping[str, DataClass | None] = field(default_factory=dict)  # dataset://NAME@N -> its class
    expected_cpu_hours: float | None = None
    expected_gpu_hours: float | None = None
    used_cpu_hours: float = 0.0
    used_gpu_hours: float = 0.0


def _approval_hint(project: Project, path: str, experiment: str) -> str:
    leads = [m.user for m in project.spec.members if m.role is ProjectRole.LEAD]
    return (
        f"approval is a pull request that adds {{name: {experiment}, approvedBy: [{leads[0] if leads else 'LEAD'}]}} "
        f"to spec.experiments in {path}, approved by a lead"
    )


def approved(project: Project, experiment: str) -> tuple[bool, str]:
    leads = {m.user for m in project.spec.members if m.role is ProjectRole.LEAD}
    for entry in project.spec.experiments:
        if entry.name == experiment:
            if not entry.approvedBy:
                return False, "it is listed in spec.experiments without approvedBy"
            if not leads & set(entry.approvedBy):
                return False, f"approvedBy names {', '.join(entry.approvedBy)}, none of them a lead of the project"
            return True, ""
    return False, "it is not listed in spec.experiments"


def review_reasons(project: Project, plan: RunPlan) -> list[str]:
    """Why this run's experiment needs review (empty when it does not)."""
    reasons: list[str] = []
    rule = project.spec.reviewRequired
    for uri, data_class in sorted(plan.datasets.items()):
        if data_class is not None and data_class in rule.dataClasses:
            reasons.append(f"it reads {data_class.value} data ({uri})")
    budget = project.spec.budget
    if rule.overBudgetShare is not None:
        for what, expected, limit in (
            ("CPU", plan.expected_cpu_hours, budget.cpuHours),
            ("GPU", plan.expected_gpu_hours, budget.gpuHours),
        ):
            if expected is not None and limit is not None and expected > rule.overBudgetShare * limit:
                reasons.append(
                    f"it expects {expected:g} {what} hours, more than {rule.overBudgetShare:.0%} of the "
                    f"{budget.period}ly budget of {limit:g}"
                )
    return reasons


def run_refusals(project: Project, plan: RunPlan, path: str) -> list[str]:
    """Every reason the run may not start (empty: it may). ``path`` names the project file in messages."""
    name = project.metadata.name
    refusals: list[str] = []
    if plan.user is None:
        return [
            f"cannot tell who is starting this run in project {name!r}: configure git (user.email) or set MLOPS_USER"
        ]
    member = next((m for m in project.spec.members if m.user == plan.user), None)
    if member is None:
        members = ", ".join(m.user for m in project.spec.members)
        refusals.append(
            f"{plan.user} is not a member of project {name!r} (members: {members}); a lead adds members in {path} "
            "through a pull request"
        )
    elif member.role is ProjectRole.VIEWER:
        refusals.append(f"{plan.user} is a viewer of project {name!r}: viewers read runs but cannot start them")
    allowed = set(project.spec.allowedDatasets)
    for uri, data_class in sorted(plan.datasets.items()):
        try:
            _, dataset, _version = parse_versioned_uri(uri)
        except ValueError:
            refusals.append(f"input {uri!r}: expected a dataset address dataset://NAME@VERSION")
            continue
        if uri not in allowed and dataset not in allowed:
            refusals.append(
                f"dataset {uri} is not allowed in project {name!r} (allowed: "
                f"{', '.join(sorted(allowed)) or 'none'}); add it to spec.allowedDatasets in {path}"
            )
        elif data_class is None:
            refusals.append(f"dataset {uri} is not registered (no registry/datasets/{dataset}/dataset.yaml)")
        elif (
            data_class not in project.spec.allowedDataClasses
            and data_class not in project.spec.reviewRequired.dataClasses
        ):
            refusals.append(
                f"dataset {uri} is {data_class.value} data; project {name!r} allows only "
                f"{', '.join(c.value for c in project.spec.allowedDataClasses)} data (spec.allowedDataClasses)"
            )
    reasons = review_reasons(project, plan)
    if reasons:
        ok, why = approved(project, plan.experiment)
        if not ok:
            refusals.append(
                f"experiment {plan.experiment!r} needs review because {' and '.join(reasons)}, and {why}; "
                + _approval_hint(project, path, plan.experiment)
            )
    budget = project.spec.budget
    for what, used, limit in (
        ("CPU", plan.used_cpu_hours, budget.cpuHours),
        ("GPU", plan.used_gpu_hours, budget.gpuHours),
    ):
        if limit is not None and used >= limit:
            refusals.append(
                f"project {name!r} has used {used:.1f} of its {limit:g} {what} hours this {budget.period}; "
                f"raise spec.budget in {path} or wait for the next {budget.period}"
            )
    return refusals
