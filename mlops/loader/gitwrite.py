"""Writing to git: init, stage, commit. Commits are how every decision is recorded.

These run the ``git`` command directly rather than through GitPython: each is one or two
git invocations either way, and importing GitPython costs about 0.15 s, which every
writing command (``data snapshot``, ``model register``, ``promote``) would otherwise pay
before doing anything. Reading history stays with GitPython (loader.git, loader.history).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mlops.errors import GitError


class _GitFailed(Exception):
    def __init__(self, stderr: str, returncode: int) -> None:
        super().__init__(stderr)
        self.stderr = stderr
        self.returncode = returncode


def _git(root: Path, *args: str) -> str:
    """Output of ``git args`` run in ``root`` (trailing newline removed); :class:`_GitFailed` when git fails."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as exc:
        if not root.is_dir():
            raise GitError(f"{root}: no such folder") from None
        raise GitError(f"cannot run git ({exc.strerror}); install git and make sure it is on PATH") from None
    except NotADirectoryError:
        raise GitError(f"{root}: not a folder") from None
    except OSError as exc:  # a folder we may not enter, a git we may not run
        raise GitError(f"cannot run git in {root}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise _GitFailed(done.stderr, done.returncode)
    return done.stdout.removesuffix("\n")


def ensure_repo(root: Path) -> None:
    """A git repository whose top level is ``root``, created (branch main) when there is none."""
    if not root.is_dir():
        raise GitError(f"{root}: no such folder")
    try:
        top = _git(root, "rev-parse", "--show-toplevel")
    except _GitFailed:
        top = ""
    if top and os.path.realpath(top) == os.path.realpath(root):
        return
    try:
        _git(root, "init", "--quiet", "--initial-branch=main")
    except _GitFailed as exc:
        raise GitError(f"cannot create a git repository in {root}: {_first_line(exc)}") from None


def has_identity(root: Path) -> bool:
    """Whether git can name a committer here: config, GIT_COMMITTER_* and GIT_CONFIG_* all count, as for git."""
    try:
        _git(root, "var", "GIT_COMMITTER_IDENT")
    except _GitFailed:
        return False
    return True


def current_branch(root: Path) -> str | None:
    """The checked-out branch, or None when HEAD is detached."""
    try:
        return _git(root, "symbolic-ref", "--quiet", "--short", "HEAD")
    except _GitFailed as exc:
        if exc.returncode == 1:  # detached
            return None
        raise GitError(f"cannot read the current branch in {root}: {_first_line(exc)}") from None


def head_commit(root: Path) -> str | None:
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}") or None
    except _GitFailed as exc:
        if exc.returncode == 1:  # no commits yet
            return None
        raise GitError(f"cannot read HEAD in {root}: {_first_line(exc)}") from None


def create_branch(root: Path, name: str) -> None:
    try:
        _git(root, "show-ref", "--verify", "--quiet", f"refs/heads/{name}")
    except _GitFailed:
        pass
    else:
        raise GitError(f"branch {name!r} already exists; choose another name or check it out first")
    try:
        _git(root, "checkout", "-b", name)
    except _GitFailed as exc:
        raise GitError(f"cannot create branch {name!r}: {_first_line(exc)}") from None


def checkout(root: Path, name: str) -> None:
    try:
        _git(root, "checkout", name)
    except _GitFailed as exc:
        raise GitError(f"cannot check out {name!r}: {_first_line(exc)}") from None


def delete_branch(root: Path, name: str) -> None:
    try:
        _git(root, "branch", "-D", name)
    except _GitFailed as exc:
        raise GitError(f"cannot delete branch {name!r}: {_first_line(exc)}") from None


# After each commit git starts `git maintenance run --auto` (a process of its own, a third of a commit's time) to
# see whether the repository needs packing. The user's own commits still do; one of ours need not.
_NO_HOUSEKEEPING = ("-c", "maintenance.auto=false", "-c", "gc.auto=0")


def commit_only(root: Path, paths: list[str], message: str) -> tuple[str, str | None]:
    """Commit exactly ``paths`` (new or changed), leaving whatever else is staged or modified alone.

    Returns the new commit and the branch it is on (None on a detached HEAD): three git processes in all,
    since each costs a few milliseconds of a command that registers a dataset or a model.
    """
    try:
        _git(root, "add", "--", *paths)
        try:
            _git(root, *_NO_HOUSEKEEPING, "commit", "--quiet", "-m", message, "--only", "--", *paths)
        except _GitFailed:
            if head_commit(root) is not None:
                raise
            _git(root, *_NO_HOUSEKEEPING, "commit", "--quiet", "-m", message)  # a git refusing a partial first commit
        sha, _, ref = _git(root, "rev-parse", "HEAD", "--symbolic-full-name", "HEAD").partition("\n")
    except _GitFailed as exc:
        raise GitError(f"cannot commit {', '.join(paths)}: {_first_line(exc)}") from None
    return sha, ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None


def push(root: Path, branch: str, remote: str = "origin") -> None:
    try:
        _git(root, "push", "--set-upstream", remote, branch)
    except _GitFailed as exc:
        raise GitError(f"cannot push {branch} to {remote}: {_first_line(exc)}") from None


def remote_url(root: Path, remote: str = "origin") -> str | None:
    try:
        return _git(root, "remote", "get-url", remote) or None
    except _GitFailed:
        return None


def _first_line(exc: _GitFailed) -> str:
    """git's own reason: the last non-empty line of what it printed (the first is often a hint)."""
    lines = [line.strip() for line in exc.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"git exited with status {exc.returncode}"


def git_identity(root: Path) -> str | None:
    """The committer's e-mail (how policies name people), or None when git has none configured."""
    try:
        ident = _git(root, "var", "GIT_COMMITTER_IDENT")  # honours GIT_COMMITTER_* like git does
    except (_GitFailed, GitError):
        return None
    start, end = ident.find("<"), ident.find(">")
    return ident[start + 1 : end] or None if 0 <= start < end else None
