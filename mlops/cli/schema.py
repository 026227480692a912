"""`mlops schema export|check`."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def schema() -> None:
    """JSON Schemas of the manifest kinds (for editors and other tools)."""


@schema.command("export")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("schemas"), show_default=True)
def export(out: Path) -> None:
    """Write schemas/<Kind>.schema.json for every kind."""
    from mlops.services.schemas import export_schemas, generate_schemas

    written = export_schemas(out)
    click.echo(f"{len(written)} of {len(generate_schemas())} schemas updated in {out}")


@schema.command("check")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
)
def check(directory: Path) -> None:
    """Exit 1 when the checked-in schemas differ from the models."""
    from mlops.services.schemas import stale_schemas

    stale = stale_schemas(directory)
    for name in stale:
        click.echo(f"{directory / name}: out of date; run `mlops schema export --out {directory}`", err=True)
    sys.exit(1 if stale else 0)
