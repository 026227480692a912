"""Value types shared by several kinds (signatures, resources, risk tiers)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mlops.manifests.base import StrictModel, TextEnum


class RiskTier(TextEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(RiskTier).index(self)


class Task(TextEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    RANKING = "ranking"
    FORECASTING = "forecasting"
    CLUSTERING = "clustering"
    GENERATION = "generation"
    OTHER = "other"


class ArtifactFormat(TextEnum):
    """How an artifact's bytes are laid out; the safe ones load without running code from the file."""

    ONNX = "onnx"
    SKOPS = "skops"
    MLFLOW = "mlflow"
    SAFETENSORS = "safetensors"
    NPZ = "npz"
    PICKLE = "pickle"
    JOBLIB = "joblib"
    CLOUDPICKLE = "cloudpickle"

    @property
    def safe(self) -> bool:
        return self not in UNSAFE_FORMATS


UNSAFE_FORMATS = frozenset({ArtifactFormat.PICKLE, ArtifactFormat.JOBLIB, ArtifactFormat.CLOUDPICKLE})


class TensorSpec(StrictModel):
    name: str
    dtype: str
    shape: list[int] = Field(default_factory=list, description="-1 marks a dimension of any size")


class Signature(StrictModel):
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    example: list[list[float]] | None = Field(
        default=None, description="A valid input, used for canary predictions after a deploy"
    )


Quantity = Annotated[float, Field(ge=0)]


class Resources(StrictModel):
    cpus: Quantity = 1
    gpus: Quantity = 0
    memory: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")
