"""Progress for long work: a bar on a terminal, a few plain lines in CI logs."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

BAR_WIDTH = 30


def bar(done: int, total: int) -> str:
    """``[#####.....]`` for ``done`` out of ``total``."""
    filled = BAR_WIDTH * done // max(total, 1)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]"


def progress_printer(label: str, minimum: int = 1000) -> Callable[[int, int], None]:
    """A callback ``(done, total)``; silent for small jobs, where progress would only be noise."""
    tty = sys.stderr.isatty()
    last_quarter = [-1]

    def report(done: int, total: int) -> None:
        if total < minimum:
            return
        if tty:
            click.echo(f"\r{label} {bar(done, total)} {done}/{total}", err=True, nl=False)
            if done == total:
                click.echo("", err=True)
            return
        quarter = 4 * done // total
        if quarter != last_quarter[0]:
            last_quarter[0] = quarter
            click.echo(f"{label}: {done}/{total}", err=True)

    return report
