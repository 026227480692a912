"""`mlops model register|list|show|search|compare`."""

from __future__ import annotations

from pathlib import Path

import click

from mlops.cli.compare import compare
from mlops.cli.options import (
    commit_options,
    commit_settings,
    describe_publication,
    parse_tags,
    parse_version,
    repo_option,
)


@click.group()
def model() -> None:
    """The model registry: versions in git, artifacts in the store."""


model.add_command(compare)


@model.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, help="Model name (lower-case letters, digits, '-').")
@click.option("--version", "version", default="auto", show_default=True, help="A number, or 'auto' for the next.")
@click.option("--description")
@click.option("--tag", "tags", multiple=True, metavar="K=V")
@click.option(
    "--metrics",
    "metrics_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON or YAML mapping of metric: value.",
)
@click.option(
    "--params",
    "params_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON or YAML mapping of parameter: value.",
)
@click.option("--run", "run_id", help="Tracking run that produced the artifact (lineage).")
@click.option("--dataset", "datasets", multiple=True, metavar="dataset://NAME@N", help="Training data (lineage).")
@click.option("--task", help="Needed when the model is new: classification, regression, ...")
@click.option("--model-class", help="module:Class that loads safetensors / npz weights.")
@repo_option
@commit_options
def register(
    path: Path,
    name: str,
    version: str,
    description: str | None,
    tags: tuple[str, ...],
    metrics_file: Path | None,
    params_file: Path | None,
    run_id: str | None,
    datasets: tuple[str, ...],
    task: str | None,
    model_class: str | None,
    repo: Path,
    no_commit: bool,
    branch: str | None,
    push_: bool,
    pull_request: bool,
    remote: str,
) -> None:
    """Register the model artifact at PATH as a new version."""
    from mlops.services.register import RegisterRequest, register_model

    request = RegisterRequest(
        path=path,
        name=name,
        version=parse_version(version),
        description=description,
        tags=parse_tags(tags),
        metrics_file=metrics_file,
        params_file=params_file,
        run_id=run_id,
        task=task,
        datasets=datasets,
        model_class=model_class,
    )
    result = register_model(repo, request, commit_settings(no_commit, branch, push_, pull_request, remote))
    click.echo(f"registered {result.key} ({result.format.value}, {result.size:,} bytes) as {result.path}")
    click.echo(f"artifact {result.digest}")
    for note in result.notes:
        click.echo(f"note: {note}")
    for line in describe_publication(result.publication):
        click.echo(line)


@model.command("list")
@repo_option
def list_(repo: Path) -> None:
    """Registered models, their versions, and where they are deployed."""
    from mlops.reports.catalog import render_models
    from mlops.services.catalog import list_models

    click.echo(render_models(list_models(repo)))


@model.command()
@click.argument("ref", metavar="NAME[@N]")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@repo_option
def show(ref: str, output_format: str, repo: Path) -> None:
    """A model with its versions, or one version in detail."""
    from mlops.reports.catalog import render_detail, render_summary, versions_json
    from mlops.services.catalog import VersionDetail
    from mlops.services.catalog import show as show_ref

    found = show_ref(repo, ref)
    if isinstance(found, VersionDetail):
        click.echo(versions_json([found]) if output_format == "json" else render_detail(found))
    else:
        click.echo(render_summary(found))


@model.command()
@click.option("--tag", "tags", multiple=True, metavar="K=V")
@click.option("--metric", "metrics", multiple=True, metavar="EXPR", help="e.g. 'auc>=0.8' (repeatable).")
@click.option("--owner")
@click.option("--flavor")
@click.option("--format", "artifact_format", help="Artifact format: onnx, skops, ...")
@click.option("--task")
@click.option("--env", "environment", help="Only versions an environment points at.")
@click.option("--json", "as_json", is_flag=True)
@repo_option
def search(
    tags: tuple[str, ...],
    metrics: tuple[str, ...],
    owner: str | None,
    flavor: str | None,
    artifact_format: str | None,
    task: str | None,
    environment: str | None,
    as_json: bool,
    repo: Path,
) -> None:
    """Find versions by tag, metric threshold, owner, flavor, format, task or environment."""
    from mlops.reports.catalog import render_versions, versions_json
    from mlops.services.catalog import SearchQuery
    from mlops.services.catalog import search as run_search

    query = SearchQuery(
        tags=parse_tags(tags),
        metrics=list(metrics),
        owner=owner,
        flavor=flavor,
        format=artifact_format,
        task=task,
        environment=environment,
    )
    found = run_search(repo, query)
    click.echo(versions_json(found) if as_json else render_versions(found))
