"""Reading a state repository for commands that act on it (register, promote, show)."""

from __future__ import annotations

from pathlib import Path

from mlops.loader.cache import ParseCache
from mlops.loader.config import repo_root as repo_root
from mlops.loader.snapshot import WorktreeSnapshot, load_documents
from mlops.validation import build_index
from mlops.validation.index import RepoIndex


def load_index(root: Path) -> RepoIndex:
    """The valid manifests of the working tree, by kind and key."""
    root = repo_root(root)
    return build_index(load_documents(WorktreeSnapshot(root), ParseCache.for_repo(root))).index


def registered_versions(root: Path, model: str) -> list[int]:
    """Version numbers that have a file, valid or not: a number with a file is taken."""
    folder = root / "registry" / "models" / model / "versions"
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.glob("*.yaml") if p.stem.isdigit())
