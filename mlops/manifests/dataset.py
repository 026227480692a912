"""kind: Dataset — a dataset's identity: owner, data class, quality rules.

Lives at ``registry/datasets/<name>/dataset.yaml``; its versions live beside it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mlops.manifests.base import Manifest, StrictModel, TextEnum


class DataClass(TextEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


class DatasetSpec(StrictModel):
    owner: str = Field(min_length=1)
    description: str = ""
    dataClass: DataClass = DataClass.INTERNAL
    containsPii: bool = False
    source: str | None = Field(default=None, description="Where the data comes from (system, export, vendor)")
    tags: dict[str, str] = Field(default_factory=dict)


class Dataset(Manifest):
    KIND: ClassVar[str] = "Dataset"
    kind: Literal["Dataset"]
    spec: DatasetSpec
