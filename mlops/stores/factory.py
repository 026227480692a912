"""Pick the artifact store backend from a settings string."""

from __future__ import annotations

from pathlib import Path

from mlops.errors import InputError
from mlops.stores.artifacts import ArtifactStore, LocalArtifactStore


def open_artifact_store(spec: str, root: Path) -> ArtifactStore:
    if spec.startswith("s3://"):
        from mlops.stores.s3 import S3ArtifactStore

        return S3ArtifactStore(spec)
    if "://" in spec and not spec.startswith("file://"):
        raise InputError(f"store {spec!r}: expected a folder, file:// or s3:// address")
    path = Path(spec.removeprefix("file://"))
    return LocalArtifactStore(path if path.is_absolute() else root / path)
