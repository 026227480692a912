"""kind: Project — an experiment project: members, roles and governance.

Lives at ``registry/experiments/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from mlops.manifests.base import (
    DatasetUri,
    Manifest,
    Name,
    Reference,
    StrictModel,
    TextEnum,
    parse_versioned_uri,
)
from mlops.manifests.dataset import DataClass


class ProjectRole(TextEnum):
    LEAD = "lead"
    MEMBER = "member"
    VIEWER = "viewer"


class Member(StrictModel):
    user: str = Field(min_length=1, description="git identity (email) or GitHub login")
    role: ProjectRole = ProjectRole.MEMBER


class Budget(StrictModel):
    cpuHours: Annotated[float, Field(ge=0)] | None = None
    gpuHours: Annotated[float, Field(ge=0)] | None = None
    period: Literal["month", "quarter", "year"] = "month"


class ReviewRule(StrictModel):
    dataClasses: list[DataClass] = Field(default_factory=list)
    overBudgetShare: Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="An experiment expected to use more than this share of the budget needs review",
    )


class Experiment(StrictModel):
    name: Name
    description: str = ""
    approvedBy: list[str] = Field(default_factory=list)


class ProjectSpec(StrictModel):
    description: str = ""
    members: list[Member] = Field(min_length=1)
    allowedDatasets: list[DatasetUri | Name] = Field(
        default_factory=list, description="Dataset names or exact versions runs may read"
    )
    allowedDataClasses: list[DataClass] = Field(default_factory=lambda: [DataClass.PUBLIC, DataClass.INTERNAL])
    budget: Budget = Field(default_factory=Budget)
    retentionDays: Annotated[int, Field(ge=1)] = 365
    reviewRequired: ReviewRule = Field(default_factory=ReviewRule)
    experiments: list[Experiment] = Field(default_factory=list)


class Project(Manifest):
    KIND: ClassVar[str] = "Project"
    kind: Literal["Project"]
    spec: ProjectSpec

    def references(self) -> Iterator[Reference]:
        for i, allowed in enumerate(self.spec.allowedDatasets):
            field = ("spec", "allowedDatasets", i)
            if allowed.startswith("dataset://"):
                _, name, version = parse_versioned_uri(allowed)
                yield Reference("DatasetVersion", f"{name}@{version}", field)
            else:
                yield Reference("Dataset", allowed, field)
