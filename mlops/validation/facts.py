"""What cross-file rules need to know about a manifest, small enough to cache per git blob (pure).

Re-validating 10,000 unchanged manifests with pydantic on every run costs more than
everything else `validate` does. A blob that validated under the same schema version
cannot become invalid, so its :class:`ManifestFacts` (identity, pointers, digests)
are cached by blob id and schema version; the manifest itself is validated again only
when a rule needs its full content (environments, policies: a handful of files).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops.errors import FieldPath
from mlops.manifests import Manifest, ModelVersion
from mlops.manifests.base import ArtifactRef, Reference

FACTS_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ManifestFacts:
    kind: str
    name: str
    key: str
    version: int | None
    references: tuple[Reference, ...]
    artifacts: tuple[ArtifactRef, ...]
    artifact_format: str | None = None

    def dump(self) -> tuple[Any, ...]:
        """A marshal-able tuple of plain values."""
        return (
            FACTS_FORMAT,
            self.kind,
            self.name,
            self.key,
            self.version,
            tuple((r.kind, r.key, r.field, r.required) for r in self.references),
            tuple((a.digest, a.field) for a in self.artifacts),
            self.artifact_format,
        )

    @classmethod
    def load(cls, raw: Any) -> ManifestFacts | None:
        """The facts of :meth:`dump`, or None when ``raw`` is not what this code writes."""
        try:
            fmt, kind, name, key, version, refs, artifacts, artifact_format = raw
            if fmt != FACTS_FORMAT:
                return None
            return cls(
                kind,
                name,
                key,
                version,
                tuple(map(_reference, refs)),
                tuple(map(_artifact, artifacts)),
                artifact_format,
            )
        except (TypeError, ValueError):
            return None


def _reference(raw: tuple[str, str, FieldPath, bool]) -> Reference:
    kind, key, field, required = raw
    return Reference(kind, key, tuple(field), required)


def _artifact(raw: tuple[str, FieldPath]) -> ArtifactRef:
    digest, field = raw
    return ArtifactRef(digest, tuple(field))


def facts_of(manifest: Manifest) -> ManifestFacts:
    spec = getattr(manifest, "spec", None)
    version = getattr(spec, "version", None)
    return ManifestFacts(
        kind=manifest.kind,
        name=manifest.metadata.name,
        key=manifest.key,
        version=version if isinstance(version, int) else None,
        references=tuple(manifest.references()),
        artifacts=tuple(manifest.artifacts()),
        artifact_format=manifest.spec.artifact.format.value if isinstance(manifest, ModelVersion) else None,
    )
