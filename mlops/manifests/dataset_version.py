"""kind: DatasetVersion — an immutable snapshot of a dataset's files.

Lives at ``registry/datasets/<name>/versions/<n>.yaml`` and is addressed as
``dataset://<name>@<n>``. Every file's bytes are in the content-addressed store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated, ClassVar, Literal, Protocol

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


class ColumnStats(StrictModel):
    """What a snapshot measured in one column; ``mlops data diff`` compares these between versions."""

    nulls: Annotated[int, Field(ge=0)] = 0
    distinct: Annotated[int, Field(ge=0)] | None = None
    min: float | str | None = Field(default=None, description="Numbers; ISO 8601 text for dates")
    max: float | str | None = None
    mean: float | None = Field(default=None, description="Numbers; the share of true values for booleans")
    std: float | None = None


class Column(StrictModel):
    name: str
    type: str
    nullable: bool = True
    stats: ColumnStats | None = None


class Quality(StrictModel):
    status: QualityStatus = QualityStatus.UNVALIDATED
    score: Annotated[float, Field(ge=0, le=1)] | None = None
    rules: str | None = Field(default=None, description="Repository path of the rules that were applied")
    threshold: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="The rules' threshold when they were applied"
    )
    failed: list[str] = Field(default_factory=list, description="Checks that failed (column.check)")
    checkedAt: str | None = None


class DatasetVersionSpec(StrictModel):
    version: VersionNumber
    description: str = ""
    fingerprint: Fingerprint
    size: Annotated[int, Field(ge=0)]
    fileCount: Annotated[int, Field(ge=0)]
    files: list[DataFile] = Field(default_factory=list)
    filesIndex: Digest | None = Field(
        default=None,
        description=(
            "For trees too large to list here: the store blob holding every file as 'path TAB digest TAB size' "
            "lines, sorted by path (the very bytes the fingerprint hashes, so its digest is the fingerprint's)"
        ),
    )
    format: str | None = None
    rows: Annotated[int, Field(ge=0)] | None = None
    columns: list[Column] = Field(default_factory=list)
    quality: Quality = Field(default_factory=Quality)
    tags: dict[str, str] = Field(default_factory=dict)
    createdBy: str | None = None
    createdAt: str | None = None


class ListedFile(Protocol):
    """What the file list is made of: a :class:`DataFile`, or a lighter record of the same three fields."""

    @property
    def path(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...


def tree_fingerprint(files: Sequence[ListedFile]) -> str:
    """sha256 over the sorted ``path<TAB>digest<TAB>size`` lines: names, contents and sizes all count."""
    return index_fingerprint(files_index_bytes(files))


def index_fingerprint(index: bytes) -> str:
    """The fingerprint of a tree whose :func:`files_index_bytes` are ``index`` (the index blob's own digest)."""
    return "sha256:" + hashlib.sha256(index).hexdigest()


def files_index_bytes(files: Sequence[ListedFile]) -> bytes:
    """The sorted ``path<TAB>digest<TAB>size`` lines the fingerprint hashes (also the ``filesIndex`` blob)."""
    return sorted_index_bytes((f.path, f.digest, f.size) for f in sorted(files, key=lambda f: f.path))


def sorted_index_bytes(rows: Iterable[tuple[str, str, int]]) -> bytes:
    """:func:`files_index_bytes` of ``(path, digest, size)`` rows already sorted by path (a scan's order), without
    a record per file: for 10,000 files the records cost twice what the lines do."""
    return "".join([f"{path}\t{digest}\t{size}\n" for path, digest, size in rows]).encode("utf-8")


def parse_files_index(data: bytes) -> list[DataFile]:
    """The inverse of :func:`files_index_bytes`; ValueError for bytes that are not such a list."""
    files = []
    lines = data.decode("utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    for number, line in enumerate(lines, 1):
        parts = line.split("\t")
        if len(parts) != 3 or not parts[2].isdigit():
            raise ValueError(f"line {number}: expected 'path TAB digest TAB size'")
        files.append(DataFile(path=parts[0], digest=parts[1], size=int(parts[2])))
    return files


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
        if self.spec.filesIndex is not None:
            yield ArtifactRef(self.spec.filesIndex, ("spec", "filesIndex"))
        for i, data_file in enumerate(self.spec.files):
            yield ArtifactRef(data_file.digest, ("spec", "files", i, "digest"))
