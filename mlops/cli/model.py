"""`mlops model register|list|show|search|compare`."""

from __future__ import annotations

from pathlib import Path

import click

from mlops.cli.options import commit_options, commit_settings, describe_publication, repo_option


@click.group()
def model() -> None:
    """The model registry: versions in git, artifacts in the store."""


def _version_option(value: str) -> int | None:
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"expected a positive whole number or 'auto', got {value!r}")
    return int(value)


def _tags(values: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--tag")
        tags[key] = value
    return tags


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
        version=_version_option(version),
        description=description,
        tags=_tags(tags),
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
