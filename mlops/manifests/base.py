"""The envelope every manifest shares, and the small types kinds are built from.

Models are strict (no silent coercion: ``"3"`` is not an integer, ``"no"`` is not
a boolean) and forbid unknown fields, so a typo is an error rather than a
setting that quietly does nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, StringConstraints
from pydantic_core import core_schema

from mlops.errors import FieldPath

API_VERSION = "mlops/v1"
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_NAME_RE = re.compile(NAME_PATTERN)
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
_DIGEST_RE = re.compile(DIGEST_PATTERN)


DATASET_URI_PATTERN = r"^dataset://[a-z0-9][a-z0-9-]{0,62}@[1-9][0-9]*$"


def _name_problem(value: str) -> str:
    return (
        f"invalid name {value!r}: use 1-63 lower-case letters, digits and '-', starting with a "
        "letter or digit (names become folder names, so '/', '..', spaces and capitals are refused)"
    )


def _digest_problem(value: str) -> str:
    return f"invalid digest {value!r}: expected 'sha256:' followed by 64 lower-case hex digits"


def _dataset_uri_problem(value: str) -> str:
    return f"invalid address {value!r}: expected a dataset address 'dataset://NAME@VERSION'"


# Patterns are checked by pydantic's Rust core (fast on 10,000 files); these say what a failed match means.
PATTERN_PROBLEMS = {
    NAME_PATTERN: _name_problem,
    DIGEST_PATTERN: _digest_problem,
    DATASET_URI_PATTERN: _dataset_uri_problem,
}


def check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(_name_problem(value))
    return value


def check_digest(value: str) -> str:
    if not _DIGEST_RE.match(value):
        raise ValueError(_digest_problem(value))
    return value


Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Digest = Annotated[str, StringConstraints(pattern=DIGEST_PATTERN)]
VersionNumber = Annotated[int, Field(ge=1, le=1_000_000)]
Scalar = str | bool | int | float
# Metrics are numbers; strict mode still accepts an int where a float is wanted.
Metrics = dict[str, float]


class TextEnum(StrEnum):
    """A closed set of words, written as plain strings in YAML even though models are strict."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.literal_schema([member.value for member in cls]),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda member: member.value),
        )


class StrictModel(BaseModel):
    # defer_build: a model's validator is built when it first validates, not at import. A warm
    # `mlops validate` takes unchanged manifests from the cache and validates only a few kinds, so
    # building all 75 models at import was a fifth of its time.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True, defer_build=True)


class Metadata(StrictModel):
    name: Name
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Reference(NamedTuple):  # a tuple: the validate cache rebuilds tens of thousands of these per run
    """A pointer from one manifest to another: ``kind``/``key`` of the target and where it is written."""

    kind: str
    key: str
    field: FieldPath
    # Some pointers may dangle on purpose (an archived dataset the store still has); those say so.
    required: bool = True


class ArtifactRef(NamedTuple):
    """A digest a manifest promises the artifact store holds."""

    digest: str
    field: FieldPath


class Manifest(StrictModel):
    """Base of every kind: ``apiVersion / kind / metadata / spec``."""

    KIND: ClassVar[str] = ""

    apiVersion: Literal["mlops/v1"]
    kind: str
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def key(self) -> str:
        """How other manifests and messages name this one (``churn``, ``churn@3``)."""
        return self.metadata.name

    def references(self) -> Iterator[Reference]:
        return iter(())

    def artifacts(self) -> Iterator[ArtifactRef]:
        return iter(())


def version_key(name: str, version: int) -> str:
    return f"{name}@{version}"


_URI_RE = re.compile(r"^(?P<scheme>dataset|model)://(?P<name>[a-z0-9][a-z0-9-]{0,62})@(?P<version>[1-9][0-9]*)$")


def parse_versioned_uri(value: str) -> tuple[str, str, int]:
    """``dataset://customers@1`` -> ("dataset", "customers", 1)."""
    match = _URI_RE.match(value)
    if match is None:
        raise ValueError(f"invalid address {value!r}: expected 'dataset://NAME@VERSION' or 'model://NAME@VERSION'")
    return match["scheme"], match["name"], int(match["version"])


DatasetUri = Annotated[str, StringConstraints(pattern=DATASET_URI_PATTERN)]
