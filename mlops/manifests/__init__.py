"""Pydantic models of every manifest kind, and where each kind lives in a repository."""

from __future__ import annotations

from mlops.manifests.base import API_VERSION, ArtifactRef, Manifest, Metadata, Reference, version_key
from mlops.manifests.dataset import Dataset
from mlops.manifests.dataset_version import DatasetVersion
from mlops.manifests.environment import Environment
from mlops.manifests.model import Model
from mlops.manifests.model_version import ModelVersion
from mlops.manifests.pipeline import Pipeline
from mlops.manifests.policies import AccessPolicy, ArtifactPolicy, PromotionPolicy, RiskPolicy
from mlops.manifests.project import Project
from mlops.manifests.quality import QualityRules
from mlops.manifests.retraining import RetrainingPolicy

KINDS: dict[str, type[Manifest]] = {
    cls.KIND: cls
    for cls in (
        Model,
        ModelVersion,
        Dataset,
        DatasetVersion,
        QualityRules,
        Pipeline,
        Environment,
        Project,
        PromotionPolicy,
        AccessPolicy,
        ArtifactPolicy,
        RiskPolicy,
        RetrainingPolicy,
    )
}
POLICY_KINDS = frozenset(k for k in KINDS if k.endswith("Policy"))

__all__ = [
    "API_VERSION",
    "KINDS",
    "POLICY_KINDS",
    "AccessPolicy",
    "ArtifactPolicy",
    "ArtifactRef",
    "Dataset",
    "DatasetVersion",
    "Environment",
    "Manifest",
    "Metadata",
    "Model",
    "ModelVersion",
    "Pipeline",
    "Project",
    "PromotionPolicy",
    "QualityRules",
    "Reference",
    "RetrainingPolicy",
    "RiskPolicy",
    "version_key",
]
