"""Writing to git: init, stage, commit. Commits are how every decision is recorded."""

from __future__ import annotations

from pathlib import Path

from mlops.errors import GitError


def ensure_repo(root: Path) -> None:
    import git

    try:
        git.Repo(root)
    except git.InvalidGitRepositoryError:
        git.Repo.init(root, initial_branch="main")
    except git.NoSuchPathError:
        raise GitError(f"{root}: no such folder") from None


def has_identity(root: Path) -> bool:
    import git

    reader = git.Repo(root).config_reader()
    return bool(reader.get_value("user", "name", "")) and bool(reader.get_value("user", "email", ""))


def commit_files(root: Path, paths: list[str], message: str) -> str:
    import git

    repo = git.Repo(root)
    try:
        repo.index.add(paths)
        commit = repo.index.commit(message)
    except (git.GitCommandError, OSError) as exc:
        raise GitError(f"{root}: cannot commit: {exc}") from None
    return str(commit.hexsha)
