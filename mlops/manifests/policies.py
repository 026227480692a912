"""The policy kinds (``policies/*.yaml``): promotion gates, access, artifact formats, risk tiers.

One module per kind would scatter four small models; they share vocabulary
(environments, roles, tiers), so they live together and each stays short.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from mlops.manifests.base import Manifest, Name, Reference, StrictModel
from mlops.manifests.common import ArtifactFormat, RiskTier, Task

DURATION_PATTERN = r"^[0-9]+(m|h|d)$"


class MetricFloor(StrictModel):
    metric: str
    min: float | None = None
    max: float | None = None
    model: Name | None = Field(default=None, description="Only for this model")
    task: Task | None = Field(default=None, description="Only for models of this task")


class Comparison(StrictModel):
    """How a candidate must compare with the version currently in the environment."""

    metric: str
    test: Literal["non-inferiority", "superiority"] = "non-inferiority"
    margin: Annotated[float, Field(ge=0)] = 0.01
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05


class Approvals(StrictModel):
    count: Annotated[int, Field(ge=0, le=20)] = 1
    roles: list[Name] = Field(default_factory=list, description="Roles (from the AccessPolicy) that may approve")
    authorMayApprove: bool = False


class PromotionPolicySpec(StrictModel):
    environment: Name
    previousEnvironment: Name | None = None
    soak: str | None = Field(default=None, pattern=DURATION_PATTERN, description="Time in the previous environment")
    metrics: list[MetricFloor] = Field(default_factory=list)
    comparison: Comparison | None = None
    maxRiskTier: RiskTier | None = None
    approvals: Approvals = Field(default_factory=Approvals)


class PromotionPolicy(Manifest):
    KIND: ClassVar[str] = "PromotionPolicy"
    kind: Literal["PromotionPolicy"]
    spec: PromotionPolicySpec

    def references(self) -> Iterator[Reference]:
        yield Reference("Environment", self.spec.environment, ("spec", "environment"))
        if self.spec.previousEnvironment is not None:
            yield Reference("Environment", self.spec.previousEnvironment, ("spec", "previousEnvironment"))


class Role(StrictModel):
    name: Name
    members: list[str] = Field(default_factory=list, description="git identities (email) or GitHub logins")


class AccessRule(StrictModel):
    paths: list[str] = Field(min_length=1, description="Repository path globs the rule governs")
    roles: list[Name] = Field(min_length=1, description="Roles allowed to change those paths")
    approvals: Annotated[int, Field(ge=0, le=20)] = 0


class AccessPolicySpec(StrictModel):
    roles: list[Role] = Field(default_factory=list)
    rules: list[AccessRule] = Field(default_factory=list)


class AccessPolicy(Manifest):
    KIND: ClassVar[str] = "AccessPolicy"
    kind: Literal["AccessPolicy"]
    spec: AccessPolicySpec


class FormatException(StrictModel):
    model: Name
    formats: list[ArtifactFormat] = Field(min_length=1)
    reason: str = Field(min_length=1)
    expires: str | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class ArtifactPolicySpec(StrictModel):
    allowedFormats: list[ArtifactFormat] = Field(
        default_factory=lambda: [f for f in ArtifactFormat if f.safe],
        description="Formats any model may use; pickle-like formats run code when loaded",
    )
    exceptions: list[FormatException] = Field(default_factory=list)
    trustedSkopsTypes: list[str] = Field(
        default_factory=list,
        description="Types skops may load beyond its defaults (never taken from the artifact)",
    )


class ArtifactPolicy(Manifest):
    KIND: ClassVar[str] = "ArtifactPolicy"
    kind: Literal["ArtifactPolicy"]
    spec: ArtifactPolicySpec

    def references(self) -> Iterator[Reference]:
        for i, exception in enumerate(self.spec.exceptions):
            yield Reference("Model", exception.model, ("spec", "exceptions", i, "model"))


class TierRequirements(StrictModel):
    tier: RiskTier
    maxEnvironment: Name | None = Field(default=None, description="Highest environment the tier may reach")
    requiredApprovals: Annotated[int, Field(ge=0, le=20)] = 0
    requiredDocuments: list[str] = Field(
        default_factory=list, description="Model annotations that must be present (model card, assessment)"
    )


class RiskPolicySpec(StrictModel):
    tiers: list[TierRequirements] = Field(default_factory=list)


class RiskPolicy(Manifest):
    KIND: ClassVar[str] = "RiskPolicy"
    kind: Literal["RiskPolicy"]
    spec: RiskPolicySpec

    def references(self) -> Iterator[Reference]:
        for i, tier in enumerate(self.spec.tiers):
            if tier.maxEnvironment is not None:
                yield Reference("Environment", tier.maxEnvironment, ("spec", "tiers", i, "maxEnvironment"))
