"""Answers from git history: what an environment pointed at over time, who changed and who approved.

Git is the audit trail: soak times, rollback targets and approvals are read
from commits, never from a separate database that could disagree with them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from mlops.errors import GitError
from mlops.loader.git import open_repo
from mlops.loader.yaml_read import read_manifest
from mlops.manifests import Environment

_EMAIL = re.compile(r"<([^<>]+)>")


@dataclass(frozen=True)
class Pointer:
    """At ``commit`` (made at ``time``), the environment's deployment of a model served ``version`` (None: none)."""

    commit: str
    time: dt.datetime
    author: str
    subject: str
    version: int | None


def pointer_history(root: Path, environment: str, model: str, rev: str = "HEAD") -> list[Pointer]:
    """Oldest first: every commit that changed environments/<environment>.yaml, with the model's version then."""
    import git

    repo = open_repo(root)
    path = f"environments/{environment}.yaml"
    try:
        log = repo.git.log(rev, "--format=%H%x1f%ct%x1f%ae%x1f%s", "--reverse", "--", path)
    except git.GitCommandError as exc:
        raise GitError(f"cannot read the history of {path}: {str(exc).strip().splitlines()[-1]}") from None
    out: list[Pointer] = []
    for line in filter(None, log.splitlines()):
        sha, stamp, author, subject = line.split("\x1f", 3)
        try:
            data = repo.git.show(f"{sha}:{path}", stdout_as_string=False)
        except git.GitCommandError:
            version = None  # the file was deleted in this commit
        else:
            version = _version_in(path, data, model)
        time = dt.datetime.fromtimestamp(int(stamp), dt.UTC)
        out.append(Pointer(sha, time, author, subject, version))
    return out


def _version_in(path: str, data: bytes, model: str) -> int | None:
    parsed, problems = read_manifest(path, data)
    if problems:
        return None
    try:
        env = Environment.model_validate(parsed)
    except ValueError:
        return None
    for deployment in env.spec.deployments:
        if deployment.model == model:
            return deployment.version
    return None


def commits_between(root: Path, base: str, head: str = "HEAD") -> list[tuple[str, str, str]]:
    """(sha, author e-mail, full message) of the commits in base..head, oldest first."""
    import git

    repo = open_repo(root)
    try:
        log = repo.git.log(f"{base}..{head}", "--reverse", "--format=%H%x1f%ae%x1f%B%x1e")
    except git.GitCommandError as exc:
        raise GitError(f"cannot list commits {base}..{head}: {str(exc).strip().splitlines()[-1]}") from None
    out = []
    for record in log.split("\x1e"):
        record = record.strip("\n")
        if not record:
            continue
        sha, author, message = record.split("\x1f", 2)
        out.append((sha, author, message))
    return out


def trailers(message: str, key: str) -> list[str]:
    """Values of ``Key: value`` trailer lines in a commit message (case-insensitive key)."""
    prefix = key.lower() + ":"
    return [line.split(":", 1)[1].strip() for line in message.splitlines() if line.lower().startswith(prefix)]


def identity(value: str) -> str:
    """``Jane Doe <jane@example.com>`` -> ``jane@example.com``; a bare login or e-mail is kept."""
    match = _EMAIL.search(value)
    return (match.group(1) if match else value).strip()
