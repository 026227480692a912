"""Reading repository states from git (GitPython is used only here and in the writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops.errors import GitError
from mlops.loader.snapshot import GitSnapshot
from mlops.validation.layout import MANAGED_ROOTS, is_manifest_path

_SYMLINK_MODE = 0o120000


def open_repo(root: Path) -> Any:
    import git  # imported here: plain validation of a working tree should not pay for it

    try:
        return git.Repo(root, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitError(f"{root}: not a git repository (needed for --base; run `git init` or drop --base)") from None


def snapshot_at(root: Path, ref: str) -> GitSnapshot:
    import git

    repo = open_repo(root)
    try:
        commit = repo.commit(ref)
    except (git.BadName, git.BadObject, ValueError, git.GitCommandError):
        raise GitError(f"unknown revision {ref!r} in {root} (fetch it first, e.g. `git fetch origin main`)") from None
    blobs: dict[str, str] = {}
    for top in MANAGED_ROOTS:
        try:
            tree = commit.tree / top
        except KeyError:
            continue
        for item in tree.traverse():
            if item.type == "blob" and is_manifest_path(item.path) and item.mode != _SYMLINK_MODE:
                blobs[item.path] = item.hexsha
    odb = repo.odb

    def read(hexsha: str) -> bytes:
        data: bytes = odb.stream(bytes.fromhex(hexsha)).read()
        return data

    return GitSnapshot(f"{ref} ({commit.hexsha[:8]})", blobs, read)
