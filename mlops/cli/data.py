"""`mlops data snapshot|list|show|diff|get|validate`: dataset versions and their quality (UC-16, UC-18)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from mlops.cli.options import (
    commit_options,
    commit_settings,
    describe_publication,
    parse_tags,
    parse_version,
    repo_option,
)
from mlops.cli.progress import progress_printer

_VERSION_REF = re.compile(r"^(dataset://)?[a-z0-9][a-z0-9-]{0,62}@[0-9]+$")


@click.group()
def data() -> None:
    """Datasets: immutable snapshots in the store, versions in git, quality rules beside them."""


def _echo_deliveries(deliveries: list[object], messages: list[str]) -> None:
    for line in messages:
        click.echo(line)
    for delivery in deliveries:
        if not getattr(delivery, "ok", True):
            click.echo(
                f"warning: notification to {getattr(delivery, 'target', '?')} failed: {getattr(delivery, 'error', '')}",
                err=True,
            )


@data.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Dataset name (lower-case letters, digits, '-').")
@click.option("--version", "version", default="auto", show_default=True, help="A number, or 'auto' for the next.")
@click.option("--description")
@click.option("--tag", "tags", multiple=True, metavar="K=V")
@click.option("--owner", help="Owner of a dataset that does not exist yet (default: your git e-mail).")
@click.option("--no-profile", is_flag=True, help="Store the files only: no table profile, no quality rules.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="Processes that hash small files (default: one per CPU, when there are enough files to share).",
)
@repo_option
@commit_options
def snapshot(
    path: Path,
    name: str,
    version: str,
    description: str | None,
    tags: tuple[str, ...],
    owner: str | None,
    no_profile: bool,
    jobs: int | None,
    repo: Path,
    no_commit: bool,
    branch: str | None,
    push_: bool,
    pull_request: bool,
    remote: str,
) -> None:
    """Snapshot the file or folder at PATH as a new, immutable version of dataset NAME."""
    # Only the light first half of a snapshot is imported here: it starts hashing before the rest loads.
    from mlops.services.snapshot import SnapshotRequest
    from mlops.services.snapshot import snapshot as take_snapshot

    request = SnapshotRequest(
        path=path,
        name=name,
        version=parse_version(version),
        description=description,
        tags=parse_tags(tags),
        owner=owner,
        profile=not no_profile,
    )
    result = take_snapshot(
        repo,
        request,
        commit_settings(no_commit, branch, push_, pull_request, remote),
        hash_progress=progress_printer("hashing"),
        store_progress=progress_printer("storing"),
        jobs=jobs,
    )
    from mlops.reports.datasets import render_snapshot

    for line in render_snapshot(result):
        click.echo(line)
    from mlops.cli.main import request_fast_exit

    request_fast_exit()  # nothing left to clean up; tearing down 10,000 file records would cost more than the work
    _echo_deliveries(list(result.deliveries), result.messages)
    if result.publication is not None:
        for line in describe_publication(result.publication):
            click.echo(line)
    if result.quality is not None and result.quality.status.value in ("failed", "quarantined"):
        click.echo(
            f"error: {result.key} is registered as {result.quality.status.value}: `mlops validate` refuses pipelines "
            "that read it and deployments beyond the first environment of models trained on it",
            err=True,
        )
        sys.exit(1)


@data.command("list")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="Only versions with this tag (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@repo_option
def list_(tags: tuple[str, ...], as_json: bool, repo: Path) -> None:
    """Registered datasets with their versions, sizes and quality."""
    from mlops.reports.datasets import list_json, render_list
    from mlops.services.datasets import list_datasets

    found = list_datasets(repo, parse_tags(tags))
    click.echo(list_json(found) if as_json else render_list(found))


@data.command()
@click.argument("ref", metavar="NAME[@N]")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@repo_option
def show(ref: str, output_format: str, repo: Path) -> None:
    """A dataset with its versions, or one version in detail (files, schema, statistics, quality, users)."""
    from mlops.reports.datasets import detail_json, list_json, render_detail, render_summary
    from mlops.services.datasets import VersionDetail
    from mlops.services.datasets import show as show_ref

    found = show_ref(repo, ref)
    if isinstance(found, VersionDetail):
        click.echo(detail_json(found) if output_format == "json" else render_detail(found))
    else:
        click.echo(list_json([found]) if output_format == "json" else render_summary(found))


@data.command()
@click.argument("ref_a", metavar="NAME@A")
@click.argument("ref_b", metavar="NAME@B")
@click.option("--key", help="Column that identifies rows (default: a column unique in both versions).")
@click.option("--no-rows", is_flag=True, help="Compare files, schema and statistics only; do not read the tables.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@repo_option
def diff(ref_a: str, ref_b: str, key: str | None, no_rows: bool, output_format: str, repo: Path) -> None:
    """What changed between two versions: files, rows, schema and statistics."""
    from mlops.reports.datasets import diff_json, render_diff
    from mlops.services.datasets import diff as run_diff

    result = run_diff(repo, ref_a, ref_b, key=key, rows=not no_rows)
    click.echo(diff_json(result) if output_format == "json" else render_diff(result))


@data.command()
@click.argument("ref", metavar="NAME@N")
@click.argument("dest", type=click.Path(path_type=Path))
@repo_option
def get(ref: str, dest: Path, repo: Path) -> None:
    """Write a version's files under DEST (a new or empty folder), every byte verified."""
    from mlops.reports.datasets import render_get
    from mlops.services.datasets import get as fetch_version

    click.echo(render_get(fetch_version(repo, ref, dest, progress_printer("fetching"))))


@data.command()
@click.argument("target", metavar="NAME@N|PATH")
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A QualityRules file (needed for PATH; for NAME@N the dataset's quality.yaml is the default).",
)
@click.option("--format", "output_format", type=click.Choice(["text", "json", "markdown", "html"]), default="text")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the report to a file.")
@repo_option
@commit_options
def validate(
    target: str,
    rules_file: Path | None,
    output_format: str,
    output: Path | None,
    repo: Path,
    no_commit: bool,
    branch: str | None,
    push_: bool,
    pull_request: bool,
    remote: str,
) -> None:
    """Run quality rules on a registered version (and record the outcome) or on files at PATH.

    Exit 0 when the data is validated, 1 when it failed or is quarantined.
    """
    from mlops.reports.datasets import render_quality
    from mlops.services.data_quality import validate_path, validate_version

    if _VERSION_REF.match(target):
        run = validate_version(
            repo, target, commit_settings(no_commit, branch, push_, pull_request, remote), rules_file=rules_file
        )
    else:
        if rules_file is None:
            raise click.UsageError(f"{target} is not NAME@N: checking files needs --rules FILE")
        run = validate_path(repo, Path(target), rules_file)
    report = render_quality(run, output_format)
    if output is not None:
        from mlops.loader.atomic import atomic_write_text

        atomic_write_text(output, report)
        click.echo(f"{run.target}: {run.result.status.value}, score {run.result.score:.2f}; report written to {output}")
    else:
        click.echo(report.rstrip("\n"))
    _echo_deliveries(list(run.deliveries), run.messages)
    if run.publication is not None:
        for line in describe_publication(run.publication):
            click.echo(line)
    elif run.recorded is not None:
        click.echo(f"{run.recorded} already records this outcome; nothing to commit")
    sys.exit(0 if run.result.status.value == "validated" else 1)
