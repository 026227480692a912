"""kind: Environment — what runs where: cluster, deployments, rollout strategy.

Lives at ``environments/<name>.yaml``. Stage = environment: a version is "in
production" because ``environments/production.yaml`` points at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from mlops.manifests.base import Manifest, Name, Reference, StrictModel, VersionNumber, version_key
from mlops.manifests.common import Resources

DURATION_PATTERN = r"^[0-9]+(ms|s|m|h|d)$"


class Cluster(StrictModel):
    address: str = Field(
        default="local",
        description="'local' starts an embedded Ray head on 127.0.0.1; otherwise a Ray address (ray://host:10001)",
    )
    namespace: str | None = None


class Analysis(StrictModel):
    maxErrorRate: Annotated[float, Field(ge=0, le=1)] | None = None
    maxP99LatencyMs: Annotated[float, Field(gt=0)] | None = None
    minAgreement: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="Share of requests where the new version agrees with the current one"
    )
    minRequests: Annotated[int, Field(ge=0)] = 20


class RolloutStep(StrictModel):
    weight: Annotated[int, Field(ge=0, le=100)]
    pause: str = Field(default="30s", pattern=DURATION_PATTERN)
    analysis: Analysis | None = None


class Strategy(StrictModel):
    type: Literal["blue-green", "replace"] = "blue-green"
    steps: list[RolloutStep] = Field(default_factory=list)
    gracePeriod: str = Field(default="60s", pattern=DURATION_PATTERN)

    @model_validator(mode="after")
    def _weights_grow_to_100(self) -> Strategy:
        weights = [s.weight for s in self.steps]
        if weights and (weights != sorted(weights) or weights[-1] != 100):
            raise ValueError(f"step weights must not decrease and must end at 100, got {weights}")
        return self


class Deployment(StrictModel):
    name: Name
    model: Name
    version: VersionNumber
    replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    resources: Resources = Field(default_factory=Resources)
    routePrefix: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9/_-]*$")
    strategy: Strategy | None = None

    @property
    def version_key(self) -> str:
        return version_key(self.model, self.version)


class ScheduledPipeline(StrictModel):
    name: Name
    schedule: str | None = Field(default=None, description="cron expression; defaults to the pipeline's own")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)


class EnvironmentSpec(StrictModel):
    description: str = ""
    cluster: Cluster = Field(default_factory=Cluster)
    deployments: list[Deployment] = Field(default_factory=list)
    pipelines: list[ScheduledPipeline] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> EnvironmentSpec:
        for label, names in (
            ("deployment", [d.name for d in self.deployments]),
            ("pipeline", [p.name for p in self.pipelines]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{label} name {name!r} is used twice")
                seen.add(name)
        return self


class Environment(Manifest):
    KIND: ClassVar[str] = "Environment"
    kind: Literal["Environment"]
    spec: EnvironmentSpec

    def references(self) -> Iterator[Reference]:
        for i, deployment in enumerate(self.spec.deployments):
            yield Reference("ModelVersion", deployment.version_key, ("spec", "deployments", i, "version"))
        for i, scheduled in enumerate(self.spec.pipelines):
            yield Reference("Pipeline", scheduled.name, ("spec", "pipelines", i, "name"))
