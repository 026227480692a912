"""Recording a decision in git: branch, write, commit, push, pull request; undone if any step fails.

Register, promote and rollback all change the repository this way, so each of
them is one commit with a message that says what and why.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from mlops.loader.atomic import atomic_write_bytes
from mlops.loader.gitwrite import (
    checkout,
    commit_only,
    create_branch,
    current_branch,
    delete_branch,
    push,
    remote_url,
)


@dataclass(frozen=True)
class CommitOptions:
    commit: bool = True
    branch: str | None = None
    push: bool = False
    pull_request: bool = False
    remote: str = "origin"
    base: str | None = None  # the pull request's target branch (default: the branch the change started from)


@dataclass(frozen=True)
class Publication:
    paths: list[str]
    commit: str | None = None
    branch: str | None = None
    pushed: bool = False
    pull_request: str | None = None


def publish(root: Path, changes: dict[str, str], message: str, options: CommitOptions) -> Publication:
    """Write ``changes`` (repository path -> new text) and record them as ``options`` say.

    If anything fails before the commit exists, the files are put back as they were and
    a branch made for the change is removed: the repository is left as it was found.
    """
    if options.pull_request and not options.push:
        options = CommitOptions(options.commit, options.branch, True, True, options.remote, options.base)
    # The branch to come back to if making a new one fails; without one, commit_only names the branch committed on.
    original_branch = current_branch(root) if options.commit and options.branch else None
    if options.branch:
        create_branch(root, options.branch)
    originals = {rel: _read_or_none(root / rel) for rel in changes}
    paths = list(changes)
    try:
        for rel, text in changes.items():
            atomic_write_bytes(root / rel, text.encode("utf-8"))
        if not options.commit:
            return Publication(paths)
        sha, on_branch = commit_only(root, paths, message)
    except BaseException:
        _restore(root, originals)
        if options.branch and original_branch:
            with contextlib.suppress(Exception):
                checkout(root, original_branch)
                delete_branch(root, options.branch)
        raise
    branch = options.branch or on_branch
    pushed = False
    pr_url = None
    if options.push and branch:
        push(root, branch, options.remote)
        pushed = True
    if options.pull_request and branch:
        from mlops.forge.github import GitHub  # urllib's HTTP client only when a pull request is asked for

        github = GitHub.from_environment(remote_url(root, options.remote))
        title, _, body = message.partition("\n")
        base = options.base or (original_branch if options.branch else on_branch) or "main"
        pr_url = github.open_pull_request(branch, base, title, body.strip())
    return Publication(paths, sha, branch, pushed, pr_url)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _restore(root: Path, originals: dict[str, bytes | None]) -> None:
    for rel, original in originals.items():
        path = root / rel
        with contextlib.suppress(OSError):
            if original is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write_bytes(path, original)
