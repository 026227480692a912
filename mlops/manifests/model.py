"""kind: Model — a model's identity: owner, task, flavor, risk tier, signature.

Lives at ``registry/models/<name>/model.yaml``; its versions live beside it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mlops.manifests.base import Manifest, StrictModel
from mlops.manifests.common import RiskTier, Signature, Task


class ModelSpec(StrictModel):
    owner: str = Field(min_length=1, description="Team or person accountable for the model")
    description: str = ""
    task: Task
    flavor: str = Field(min_length=1, description="Framework the model is built with (sklearn, xgboost, torch, ...)")
    riskTier: RiskTier = RiskTier.MEDIUM
    signature: Signature | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    dataClasses: list[str] = Field(default_factory=list, description="Classes of data the model consumes (pii, ...)")


class Model(Manifest):
    KIND: ClassVar[str] = "Model"
    kind: Literal["Model"]
    spec: ModelSpec
