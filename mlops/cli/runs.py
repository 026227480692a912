"""`mlops runs list|show|compare|import-mlflow` and `mlops projects report` (UC-13, UC-14, UC-15)."""

from __future__ import annotations

from pathlib import Path

import click

from mlops.cli.options import repo_option

COMPARE_FORMATS = ("text", "json", "markdown", "html")  # kept here so `mlops --help` imports no scipy


@click.group()
def runs() -> None:
    """Tracked experiment runs: list, show, compare, import from MLflow."""


@runs.command("list")
@click.option("--project", help="Only runs of this project.")
@click.option("--experiment", help="Only runs of this experiment.")
@click.option(
    "--filter",
    "filter_text",
    metavar="EXPR",
    help="e.g. \"metrics.auc > 0.9 and params.depth == 6\"; also status, user, tags.K, in (...), like 'glob*'.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many (newest first).")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@repo_option
def list_(
    project: str | None,
    experiment: str | None,
    filter_text: str | None,
    limit: int | None,
    output_format: str,
    repo: Path,
) -> None:
    """Runs, newest first; runs whose heartbeat stopped are marked crashed."""
    from mlops.reports.runs import render_run_list
    from mlops.services.runs import list_runs

    click.echo(render_run_list(list_runs(repo, project, experiment, filter_text, limit), output_format))


@runs.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@repo_option
def show(run_ref: str, output_format: str, repo: Path) -> None:
    """One run: state, environment, params, metrics with their curves, inputs, artifacts."""
    from mlops.reports.runs import render_run_detail
    from mlops.services.runs import show_run

    click.echo(render_run_detail(show_run(repo, run_ref), output_format))


@runs.command()
@click.argument("run_refs", metavar="RUN...", nargs=-1, required=True)
@click.option(
    "--metric", "metrics", multiple=True, metavar="NAME", help="Metric to compare (repeatable). Default: all shared."
)
@click.option(
    "--group-by",
    "group_by",
    multiple=True,
    metavar="PARAM",
    help="Group runs by these params (default: every param that differs, except seeds).",
)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True)
@click.option("--format", "output_format", type=click.Choice(COMPARE_FORMATS), default="text", show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the report to a file (html needs it)."
)
@repo_option
def compare(
    run_refs: tuple[str, ...],
    metrics: tuple[str, ...],
    group_by: tuple[str, ...],
    alpha: float,
    output_format: str,
    out: Path | None,
    repo: Path,
) -> None:
    """Side by side params and metrics, curves, and for groups of seeds: mean, CI, Welch / Mann-Whitney tests."""
    from mlops.errors import UsageError
    from mlops.loader.atomic import atomic_write_text
    from mlops.reports.runs import render_comparison
    from mlops.services.runs import compare_tracked_runs

    if output_format == "html" and out is None:
        raise click.UsageError("--format html writes a file: add --out FILE")
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    split = tuple(m.strip() for value in metrics for m in value.split(",") if m.strip())
    view = compare_tracked_runs(repo, run_refs, split, tuple(group_by), alpha)
    report = render_comparison(view, output_format)
    if out is None:
        click.echo(report)
    else:
        atomic_write_text(out, report)
        significant = sum(1 for t in view.comparison.tests if t.significant)
        click.echo(f"compared {len(view.comparison.runs)} runs: {significant} significant difference(s)")
        click.echo(f"wrote the {output_format} report to {out}")


@runs.command("import-mlflow")
@click.argument("uri")
@click.option("--project", required=True, help="Project the runs join (registry/experiments/<project>.yaml).")
@click.option("--experiment", help="Put every run in this experiment (default: MLflow's experiment names).")
@repo_option
def import_mlflow(uri: str, project: str, experiment: str | None, repo: Path) -> None:
    """Import runs from an mlruns folder, an MLflow SQLite database (sqlite:///mlflow.db) or a tracking server URL."""
    from mlops.manifests.base import check_name
    from mlops.services.runs import open_store
    from mlops.tracking.mlflow_import import import_runs

    if experiment is not None:
        try:
            check_name(experiment)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--experiment") from None
    store = open_store(repo)
    try:
        summary = import_runs(repo, uri, project, store, experiment)
    finally:
        store.close()
    click.echo(
        f"imported {len(summary.imported)} run(s) into project {project} ({summary.metric_points:,} metric points, "
        f"{summary.artifacts} artifact(s)); {len(summary.skipped)} already there"
    )
    for note in summary.notes:
        click.echo(f"note: {note}")


@click.group()
def projects() -> None:
    """Experiment projects (registry/experiments/<project>.yaml): analytics and governance."""


@projects.command()
@click.argument("project")
@click.option("--metric", help="Rank runs by this metric (default: each experiment's most logged metric).")
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True
)
@repo_option
def report(project: str, metric: str | None, output_format: str, repo: Path) -> None:
    """Runs per member and week, compute against the budget with a forecast, best run per experiment."""
    from mlops.reports.runs import render_project_report
    from mlops.services.projects import project_report

    click.echo(render_project_report(project_report(repo, project, metric), output_format))
