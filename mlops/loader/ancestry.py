"""Questions the reconciler asks git: is this commit a descendant of that one, what did a file say at a commit,
and does the working tree still match it."""

from __future__ import annotations

from pathlib import Path

from mlops.errors import GitError
from mlops.loader.git import open_repo


def resolve_commit(root: Path, ref: str = "HEAD") -> str:
    import git

    repo = open_repo(root)
    try:
        return str(repo.commit(ref).hexsha)
    except (git.BadName, git.BadObject, ValueError, git.GitCommandError):
        if ref == "HEAD":
            raise GitError(f"{root}: the repository has no commits yet; commit the environment first") from None
        raise GitError(f"unknown revision {ref!r} in {root}") from None


def is_ancestor(root: Path, older: str, newer: str) -> bool | None:
    """Whether ``older`` is ``newer`` or one of its ancestors; None when ``older`` is not in this repository
    (e.g. a commit of a branch that was never fetched)."""
    import git

    repo = open_repo(root)
    try:
        repo.commit(older)
    except (git.BadName, git.BadObject, ValueError, git.GitCommandError):
        return None
    try:
        repo.git.merge_base("--is-ancestor", older, newer)
    except git.GitCommandError as exc:
        if exc.status == 1:
            return False
        raise GitError(f"cannot compare commits {older[:12]} and {newer[:12]}: {exc}") from None
    return True


def text_at(root: Path, commit: str, path: str) -> str | None:
    """A file's text at a commit, or None when the commit has no such file."""
    repo = open_repo(root)
    try:
        blob = repo.commit(commit).tree / path
    except KeyError:
        return None
    data: bytes = blob.data_stream.read()
    return data.decode("utf-8")


def worktree_matches(root: Path, commit: str, path: str) -> bool:
    """Whether the file on disk is byte-identical to the file at ``commit``."""
    committed = text_at(root, commit, path)
    try:
        on_disk = (root / path).read_text(encoding="utf-8")
    except OSError:
        return committed is None
    return committed == on_disk


def current_branch_or_none(root: Path) -> str | None:
    repo = open_repo(root)
    return None if repo.head.is_detached else str(repo.active_branch.name)
