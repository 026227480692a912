"""Git for pipeline runs: the code's identity at a commit, uncommitted changes, and private worktrees.

A run executes the pipeline's code as committed (so the commit in its lineage is the truth) from a
worktree of its own: the user's checkout is never switched, and a model the run registers is committed
on a branch made in that worktree.
"""

from __future__ import annotations

from pathlib import Path

from mlops.errors import GitError


def tree_id(root: Path, commit: str, path: str) -> str:
    """The git object id of ``path`` at ``commit``: it changes exactly when something under it changes."""
    import git

    repo = git.Repo(root)
    try:
        return str(repo.git.rev_parse(f"{commit}:{path}"))
    except git.GitCommandError:
        raise GitError(f"{path} is not in commit {commit[:12]}: commit the pipeline first") from None


def resolve_commit(root: Path, ref: str) -> str:
    """The full sha ``ref`` names in ``root``."""
    import git

    try:
        return str(git.Repo(root).commit(ref).hexsha)
    except (git.BadName, git.BadObject, ValueError, git.GitCommandError):
        raise GitError(f"unknown revision {ref!r} in {root}") from None


def uncommitted(root: Path, path: str) -> list[str]:
    """Files under ``path`` that differ from HEAD (modified, staged, untracked)."""
    import git

    repo = git.Repo(root)
    try:
        lines = repo.git.status("--porcelain", "--untracked-files=all", "--", path).splitlines()
    except git.GitCommandError as exc:
        raise GitError(f"git status {path}: {exc.stderr.strip() or exc}") from None
    return [line[3:] for line in lines if line.strip()]


def add_worktree(root: Path, folder: Path, commit: str) -> None:
    import git

    repo = git.Repo(root)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        repo.git.worktree("add", "--detach", "--quiet", str(folder), commit)
    except git.GitCommandError as exc:
        raise GitError(f"cannot check out {commit[:12]} into {folder}: {exc.stderr.strip() or exc}") from None


def start_branch(folder: Path, branch: str) -> None:
    """Make ``branch`` at the worktree's commit and switch the worktree (only) to it."""
    import git

    repo = git.Repo(folder)
    try:
        repo.git.switch("-c", branch)
    except git.GitCommandError as exc:
        raise GitError(f"cannot create branch {branch!r}: {exc.stderr.strip() or exc}") from None


def drop_branch(folder: Path, branch: str) -> None:
    """Undo :func:`start_branch` when nothing was committed on it: detach the worktree, delete the branch."""
    import git

    repo = git.Repo(folder)
    try:
        repo.git.switch("--detach")
        repo.git.branch("-D", branch)
    except git.GitCommandError as exc:
        raise GitError(f"cannot remove branch {branch!r}: {exc.stderr.strip() or exc}") from None


def remove_worktree(root: Path, folder: Path) -> None:
    import git

    repo = git.Repo(root)
    try:
        repo.git.worktree("remove", "--force", str(folder))
    except git.GitCommandError:
        repo.git.worktree("prune")
