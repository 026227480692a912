"""Options shared by commands that record a decision in git (register, promote, rollback)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def repo_option(func: F) -> F:
    return click.option(
        "--repo",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(),
        show_default=True,
        help="The state repository.",
    )(func)


def commit_options(func: F) -> F:
    for option in reversed(
        [
            click.option("--no-commit", is_flag=True, help="Only write the files; do not commit."),
            click.option("--branch", metavar="B", help="Create and check out branch B first, and commit there."),
            click.option("--push", "push_", is_flag=True, help="Push the branch to the remote after committing."),
            click.option(
                "--pr",
                "pull_request",
                is_flag=True,
                help="Open a pull request (GitHub API; needs GITHUB_TOKEN). Implies --push.",
            ),
            click.option("--remote", default="origin", show_default=True),
        ]
    ):
        func = option(func)
    return func


def commit_settings(no_commit: bool, branch: str | None, push_: bool, pull_request: bool, remote: str) -> Any:
    from mlops.services.publish import CommitOptions

    return CommitOptions(commit=not no_commit, branch=branch, push=push_, pull_request=pull_request, remote=remote)


def describe_publication(publication: Any) -> list[str]:
    lines = []
    if publication.commit:
        lines.append(f"committed {publication.commit[:8]} on {publication.branch}")
    else:
        lines.append("written, not committed: " + ", ".join(publication.paths))
    if publication.pushed:
        lines.append(f"pushed {publication.branch}")
    if publication.pull_request:
        lines.append(f"pull request: {publication.pull_request}")
    return lines


def parse_version(value: str) -> int | None:
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"expected a positive whole number or 'auto', got {value!r}")
    return int(value)


def parse_tags(values: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--tag")
        tags[key] = value
    return tags
