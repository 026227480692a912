"""`mlops model compare NAME@A NAME@B --data EVAL --label COL`: paired statistical comparison (UC-03)."""

from __future__ import annotations

from pathlib import Path

import click

from mlops.cli.options import commit_options, commit_settings, describe_publication, repo_option

# Kept here, not imported from mlops.reports.comparison, so `mlops --help` does not import numpy and scipy.
REPORT_FORMATS = ("text", "json", "markdown", "html", "pdf")
FILE_ONLY_FORMATS = ("html", "pdf")


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


@click.command("compare")
@click.argument("version_a", metavar="NAME@A")
@click.argument("version_b", metavar="NAME@B")
@click.option(
    "--data",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Evaluation rows: a .csv or .parquet file the models did not train on.",
)
@click.option("--label", required=True, help="Column holding the true label (0/1) or value.")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="Metric to compare (repeatable, or comma-separated). Default: auc, accuracy, f1, log_loss for "
    "classifiers; rmse, mae, r2 for regressors. Also: precision, recall.",
)
@click.option(
    "--features",
    metavar="COL,COL,...",
    help="Feature columns in the order the models take them. Default: the versions' 'features' tag, "
    "else every numeric column but the label.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(REPORT_FORMATS),
    default="text",
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file (needed for html and pdf).",
)
@click.option(
    "--bootstrap",
    "resamples",
    type=click.IntRange(min=100),
    default=2000,
    show_default=True,
    help="Paired bootstrap resamples for the confidence intervals.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap (same seed, same report).")
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Significance level; CIs are at 1 - alpha.",
)
@click.option("--record", is_flag=True, help="Record the result in B's manifest as promotion evidence (a commit).")
@repo_option
@commit_options
def compare(
    version_a: str,
    version_b: str,
    data: Path,
    label: str,
    metrics: tuple[str, ...],
    features: str | None,
    output_format: str,
    out: Path | None,
    resamples: int,
    seed: int,
    alpha: float,
    record: bool,
    repo: Path,
    no_commit: bool,
    branch: str | None,
    push_: bool,
    pull_request: bool,
    remote: str,
) -> None:
    """Score NAME@A and NAME@B on the same rows and test whether their metrics differ.

    Paired tests: McNemar for accuracy, DeLong for AUC, a paired bootstrap CI for every difference,
    paired t and Wilcoxon on errors for regressors. Warns when the versions are not comparable or the
    sample is too small for the difference seen.
    """
    from mlops.errors import UsageError
    from mlops.loader.atomic import atomic_write_bytes
    from mlops.reports.comparison import render
    from mlops.services.compare import CompareRequest, compare_versions

    if output_format in FILE_ONLY_FORMATS and out is None:
        raise click.UsageError(f"--format {output_format} writes a file: add --out FILE")
    if out is not None and not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    request = CompareRequest(
        version_a=version_a,
        version_b=version_b,
        data=data,
        label=label,
        metrics=_split(metrics),
        features=_split((features,)) if features else (),
        resamples=resamples,
        seed=seed,
        alpha=alpha,
    )
    run = compare_versions(repo, request)
    report = render(run, output_format)
    if out is None:
        click.echo(report if isinstance(report, str) else report.decode())
    else:
        atomic_write_bytes(out, report.encode() if isinstance(report, str) else report)
        click.echo(f"verdict: {run.result.verdict}")
        for warning in run.result.warnings:
            click.echo(f"warning: {warning}")
        click.echo(f"wrote the {output_format} report to {out}")
    if record:
        from mlops.services.evaluations import evaluations_of, record_evaluations

        candidate, evaluations = evaluations_of(run)
        publication = record_evaluations(
            repo, candidate, evaluations, commit_settings(no_commit, branch, push_, pull_request, remote)
        )
        click.echo(f"recorded {len(evaluations)} evaluation(s) in {candidate}", err=output_format == "json")
        for line in describe_publication(publication):
            click.echo(line, err=output_format == "json")
