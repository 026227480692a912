"""kind: DatasetVersion — an immutable snapshot of a dataset's files.

Lives at ``registry/datasets/<name>/versions/<n>.yaml`` and is addressed as
``dataset://<name>@<n>``. Every file's bytes are in the content-addressed store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from mlops.manifests.base import (
    ArtifactRef,
    Digest,
    Manifest,
    Reference,
    StrictModel,
    TextEnum,
    VersionNumber,
    version_key,
)


class QualityStatus(TextEnum):
    UNVALIDATED = "unvalidated"
    VALIDATED = "validated"
    FAILED = "failed"
    QUARANTINED = "quarantined"


class Fingerprint(StrictModel):
    algorithm: Literal["sha256-tree-v1"] = Field(
        description="sha256 over the sorted (path, digest, size) list; named so it can change later"
    )
    digest: Digest


def _check_relative_path(value: str) -> str:
    parts = value.split("/")
    if not value or value.startswith("/") or "\\" in value or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid file path {value!r}: use a relative path with '/' and no '.' or '..' parts")
    return value


class DataFile(StrictModel):
    path: Annotated[str, AfterValidator(_check_relative_path)]
    digest: Digest
    size: Annotated[int, Field(ge=0)]


class Column(StrictModel):
    name: str
    type: str
    nullable: bool = True


class Quality(StrictModel):
    status: QualityStatus = QualityStatus.UNVALIDATED
    score: Annotated[float, Field(ge=0, le=1)] | None = None
    rules: str | None = Field(default=None, description="Repository path of the rules that were applied")
    checkedAt: str | None = None


class DatasetVersionSpec(StrictModel):
    version: VersionNumber
    description: str = ""
    fingerprint: Fingerprint
    size: Annotated[int, Field(ge=0)]
    fileCount: Annotated[int, Field(ge=0)]
    files: list[DataFile] = Field(default_factory=list)
    format: str | None = None
    rows: Annotated[int, Field(ge=0)] | None = None
    columns: list[Column] = Field(default_factory=list)
    quality: Quality = Field(default_factory=Quality)
    tags: dict[str, str] = Field(default_factory=dict)
    createdBy: str | None = None
    createdAt: str | None = None


def tree_fingerprint(files: list[DataFile]) -> str:
    """sha256 over the sorted ``path<TAB>digest<TAB>size`` lines: names, contents and sizes all count."""
    lines = "".join(f"{f.path}\t{f.digest}\t{f.size}\n" for f in sorted(files, key=lambda f: f.path))
    return "sha256:" + hashlib.sha256(lines.encode("utf-8")).hexdigest()


class DatasetVersion(Manifest):
    KIND: ClassVar[str] = "DatasetVersion"
    kind: Literal["DatasetVersion"]
    spec: DatasetVersionSpec

    @property
    def key(self) -> str:
        return version_key(self.metadata.name, self.spec.version)

    @property
    def uri(self) -> str:
        return f"dataset://{self.key}"

    def references(self) -> Iterator[Reference]:
        yield Reference("Dataset", self.metadata.name, ("metadata", "name"))

    def artifacts(self) -> Iterator[ArtifactRef]:
        for i, data_file in enumerate(self.spec.files):
            yield ArtifactRef(data_file.digest, ("spec", "files", i, "digest"))
