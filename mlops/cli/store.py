"""`mlops store add|has`."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def store() -> None:
    """The content-addressed artifact store (.mlops/store by default)."""


@store.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=True, path_type=Path))
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path(), show_default=True)
def add(files: tuple[Path, ...], repo: Path) -> None:
    """Put files (or every file under a folder) into the store and print their digests."""
    from mlops.services.store import add_files

    for path, digest, size in add_files(repo, list(files)):
        click.echo(f"{digest}  {size:>10}  {path}")


@store.command("has")
@click.argument("digests", nargs=-1, required=True)
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path(), show_default=True)
def has(digests: tuple[str, ...], repo: Path) -> None:
    """Exit 1 and name the digests the store does not hold."""
    from mlops.services.store import missing_digests

    missing = missing_digests(repo, list(digests))
    for digest in missing:
        click.echo(f"missing: {digest}", err=True)
    sys.exit(1 if missing else 0)
