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
    """Whether git can name a committer here: config, GIT_COMMITTER_* and GIT_CONFIG_* all count, as for git."""
    import git

    try:
        git.Repo(root).git.var("GIT_COMMITTER_IDENT")
    except git.GitCommandError:
        return False
    return True


def current_branch(root: Path) -> str | None:
    import git

    repo = git.Repo(root)
    return None if repo.head.is_detached else str(repo.active_branch.name)


def head_commit(root: Path) -> str | None:
    import git

    repo = git.Repo(root)
    try:
        return str(repo.head.commit.hexsha)
    except ValueError:  # no commits yet
        return None


def create_branch(root: Path, name: str) -> None:
    import git

    repo = git.Repo(root)
    if name in [h.name for h in repo.heads]:
        raise GitError(f"branch {name!r} already exists; choose another name or check it out first")
    try:
        repo.git.checkout("-b", name)
    except git.GitCommandError as exc:
        raise GitError(f"cannot create branch {name!r}: {_first_line(exc)}") from None


def checkout(root: Path, name: str) -> None:
    import git

    git.Repo(root).git.checkout(name)


def delete_branch(root: Path, name: str) -> None:
    import git

    git.Repo(root).git.branch("-D", name)


def commit_only(root: Path, paths: list[str], message: str) -> str:
    """Commit exactly ``paths`` (new or changed), leaving whatever else is staged or modified alone."""
    import git

    repo = git.Repo(root)
    try:
        repo.git.add("--", *paths)
        if repo.head.is_valid():
            repo.git.commit("-m", message, "--only", "--", *paths)
        else:  # the first commit of a repository: --only has no HEAD to start from
            repo.git.commit("-m", message)
    except git.GitCommandError as exc:
        raise GitError(f"cannot commit {', '.join(paths)}: {_first_line(exc)}") from None
    return str(repo.head.commit.hexsha)


def push(root: Path, branch: str, remote: str = "origin") -> None:
    import git

    try:
        git.Repo(root).git.push("--set-upstream", remote, branch)
    except git.GitCommandError as exc:
        raise GitError(f"cannot push {branch} to {remote}: {_first_line(exc)}") from None


def remote_url(root: Path, remote: str = "origin") -> str | None:
    import git

    repo = git.Repo(root)
    try:
        return str(repo.remote(remote).url)
    except ValueError:
        return None


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "stderr", "") or exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1].removeprefix("stderr: ").strip("'") if lines else type(exc).__name__


def git_identity(root: Path) -> str | None:
    """The committer's e-mail (how policies name people), or None when git has none configured."""
    import git

    try:
        ident = str(git.Repo(root).git.var("GIT_COMMITTER_IDENT"))  # honours GIT_COMMITTER_* like git does
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError):
        return None
    start, end = ident.find("<"), ident.find(">")
    return ident[start + 1 : end] or None if 0 <= start < end else None
