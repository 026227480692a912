"""kind: ModelVersion — one immutable, registered version of a model.

Lives at ``registry/models/<name>/versions/<n>.yaml``. The artifact itself is in
the content-addressed store; git holds its digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from mlops.manifests.base import (
    ArtifactRef,
    DatasetUri,
    Digest,
    Manifest,
    Metrics,
    Name,
    Reference,
    Scalar,
    StrictModel,
    TextEnum,
    VersionNumber,
    parse_versioned_uri,
    version_key,
)
from mlops.manifests.common import ArtifactFormat, Signature


class VersionStatus(TextEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


class Artifact(StrictModel):
    digest: Digest
    size: Annotated[int, Field(ge=0)]
    format: ArtifactFormat
    filename: str | None = Field(default=None, description="Name the file had when registered")
    modelClass: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$",
        description="module:Class from the repository that loads safetensors or npz weights",
    )
    metadata: dict[str, str] = Field(default_factory=dict, description="What the artifact says about itself")


class Lineage(StrictModel):
    datasets: list[DatasetUri] = Field(default_factory=list)
    pipeline: Name | None = None
    run: str | None = Field(default=None, description="Tracking run id that produced the artifact")
    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,40}$")


class Evaluation(StrictModel):
    """A recorded comparison with another version: the evidence promotion gates read."""

    against: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*@[1-9][0-9]*$", description="NAME@N compared with")
    metric: str
    data: str = Field(description="What was scored: a dataset address or a file digest")
    rows: Annotated[int, Field(ge=0)]
    candidate: float
    baseline: float
    difference: float = Field(description="candidate - baseline")
    higherIsBetter: bool = True
    ciLow: float
    ciHigh: float
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    test: str
    pValue: Annotated[float, Field(ge=0, le=1)] | None = None
    report: str | None = Field(default=None, description="Digest of the full comparison report in the store")
    at: str | None = None


class ModelVersionSpec(StrictModel):
    version: VersionNumber
    description: str = ""
    artifact: Artifact
    metrics: Metrics = Field(default_factory=dict)
    params: dict[str, Scalar] = Field(default_factory=dict)
    signature: Signature | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    status: VersionStatus = VersionStatus.ACTIVE
    evaluations: list[Evaluation] = Field(default_factory=list)
    createdBy: str | None = None
    createdAt: str | None = Field(default=None, description="ISO 8601 time of registration")


class ModelVersion(Manifest):
    KIND: ClassVar[str] = "ModelVersion"
    kind: Literal["ModelVersion"]
    spec: ModelVersionSpec

    @property
    def key(self) -> str:
        return version_key(self.metadata.name, self.spec.version)

    def references(self) -> Iterator[Reference]:
        yield Reference("Model", self.metadata.name, ("metadata", "name"))
        for i, uri in enumerate(self.spec.lineage.datasets):
            _, name, version = parse_versioned_uri(uri)
            yield Reference("DatasetVersion", version_key(name, version), ("spec", "lineage", "datasets", i))
        if self.spec.lineage.pipeline is not None:
            yield Reference("Pipeline", self.spec.lineage.pipeline, ("spec", "lineage", "pipeline"))

    def artifacts(self) -> Iterator[ArtifactRef]:
        yield ArtifactRef(self.spec.artifact.digest, ("spec", "artifact", "digest"))
