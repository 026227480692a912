"""`mlops validate`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from mlops.cli.progress import progress_printer


@click.command()
@click.option(
    "--repo",
    "repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="The state repository.",
)
@click.option("--base", metavar="REF", help="Also judge the change from REF (e.g. origin/main) to the working tree.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
)
@click.option("--no-store-check", is_flag=True, help="Do not check that artifact digests exist in the store.")
@click.option("--no-cache", is_flag=True, help="Parse every file again instead of reusing .mlops/cache.")
def validate(repo: Path, base: str | None, output_format: str, no_store_check: bool, no_cache: bool) -> None:
    """Check schemas, references and policies; with --base, say what the change does.

    Exit 0 when valid, 1 on violations, 2 when input cannot be read.
    """
    from mlops.reports.validation import render_github, render_json, render_markdown, render_text
    from mlops.services.validate import validate_repository

    report = validate_repository(
        repo,
        base=base,
        check_store=not no_store_check,
        use_cache=not no_cache,
        progress=progress_printer("reading manifests") if output_format != "json" else None,
    )
    if output_format == "json":
        click.echo(render_json(report))
    elif output_format == "github":
        click.echo(render_github(report))
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with Path(summary).open("a", encoding="utf-8") as handle:
                handle.write(render_markdown(report))
    else:
        click.echo(render_text(report))
    from mlops.cli.main import request_fast_exit

    request_fast_exit()  # everything is written: the heap of 10,000 manifests need not be freed piece by piece
    sys.exit(report.exit_code)
