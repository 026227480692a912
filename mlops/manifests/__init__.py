"""Pydantic models of every manifest kind, and where each kind lives in a repository.

A kind's module is imported the first time the kind is asked for (``from mlops.manifests import Pipeline``,
``KINDS["Pipeline"]``): building thirteen kinds' models costs more than a warm ``mlops validate`` of one
changed file spends on everything else it must do, and such a run needs one kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mlops.manifests.base import API_VERSION, ArtifactRef, Manifest, Metadata, Reference, version_key

if TYPE_CHECKING:
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

# kind -> the module that defines it (the class has the kind's name), in the order messages list kinds.
_MODULES = {
    "Model": "model",
    "ModelVersion": "model_version",
    "Dataset": "dataset",
    "DatasetVersion": "dataset_version",
    "QualityRules": "quality",
    "Pipeline": "pipeline",
    "Environment": "environment",
    "Project": "project",
    "PromotionPolicy": "policies",
    "AccessPolicy": "policies",
    "ArtifactPolicy": "policies",
    "RiskPolicy": "policies",
    "RetrainingPolicy": "retraining",
}


def _kind_class(kind: str) -> type[Manifest]:
    cls: type[Manifest] = getattr(importlib.import_module(f"mlops.manifests.{_MODULES[kind]}"), kind)
    return cls


class _Kinds(Mapping[str, type[Manifest]]):
    """kind -> model class, importing a kind's module on first use."""

    def __getitem__(self, kind: str) -> type[Manifest]:
        return _kind_class(kind)

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)

    def __contains__(self, kind: object) -> bool:
        return kind in _MODULES


KINDS: Mapping[str, type[Manifest]] = _Kinds()
POLICY_KINDS = frozenset(k for k in _MODULES if k.endswith("Policy"))


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return _kind_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
