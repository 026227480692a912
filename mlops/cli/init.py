"""`mlops init`."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--no-commit", is_flag=True, help="Write the files but do not commit them.")
def init(path: Path, no_commit: bool) -> None:
    """Create a state repository at PATH: folders, starter environments and policies, the CI gate."""
    from mlops.services.init import init_repository

    result = init_repository(path, commit=not no_commit)
    click.echo(f"initialized {result.root} with {len(result.files)} files")
    if result.commit:
        click.echo(f"committed {result.commit[:8]}: Initialize mlops state repository")
    if result.note:
        click.echo(f"note: {result.note}")
    click.echo(f"next: cd {result.root} && mlops validate")
