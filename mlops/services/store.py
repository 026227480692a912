"""Store operations behind `mlops store`."""

from __future__ import annotations

from pathlib import Path

from mlops.errors import InputError
from mlops.loader.config import load_settings
from mlops.stores.artifacts import ArtifactStore
from mlops.stores.factory import open_artifact_store


def repo_store(root: Path) -> ArtifactStore:
    return open_artifact_store(load_settings(root).store, root)


def add_files(root: Path, paths: list[Path]) -> list[tuple[Path, str, int]]:
    store = repo_store(root)
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()))
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: not a file or folder")
    return [(path, *store.put_file(path)) for path in files]


def missing_digests(root: Path, digests: list[str]) -> list[str]:
    from mlops.manifests.base import check_digest  # the pydantic models are not needed to open a store

    for digest in digests:
        try:
            check_digest(digest)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    missing = repo_store(root).missing(digests)
    return [d for d in digests if d in missing]
