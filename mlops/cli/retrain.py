"""`mlops retrain check`: which retraining triggers would fire now, and why (UC-06).

Exit codes (like ``plan``'s -detailed-exitcode): 0 nothing would fire, 2 a policy would start its pipeline,
1 any error, including a bad option (so 2 always means "would fire").
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from mlops.cli.options import repo_option
from mlops.errors import ExitCode, MlopsError

WOULD_FIRE = ExitCode.PLAN_HAS_CHANGES  # 2: something to do, as for `mlops plan`


class _OptionError(click.ClickException):
    exit_code = int(ExitCode.VIOLATIONS)


class _ErrorsExitOne(click.Command):
    """A bad option exits 1 here, not click's 2, which this command uses for "would fire"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _OptionError(f"{exc.format_message()} (see `mlops retrain check --help`)") from None


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    """--now: an ISO 8601 time with a time zone (a callback, not a ParamType: those became generic in click 8.2)."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected an ISO 8601 time such as 2026-01-05T10:00:00Z, got {value!r}") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no time zone: add one, e.g. {value}Z for UTC")
    return moment


@click.group()
def retrain() -> None:
    """Automated retraining: policies in policies/ (kind RetrainingPolicy) and their triggers."""


@retrain.command("check", cls=_ErrorsExitOne)
@click.option("--policy", metavar="NAME", help="Only this retraining policy (default: every one).")
@click.option(
    "--signals",
    "signals_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Recorded signals (JSON: metrics, drift, datasetVersions, runs); see the README's Retraining section.",
)
@click.option(
    "--now", "now", metavar="ISO8601", callback=_moment, help="Evaluate as of this time (default: the current time)."
)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@repo_option
def check(
    policy: str | None, signals_file: Path | None, now: dt.datetime | None, output_format: str, repo: Path
) -> None:
    """Evaluate the triggers now: which would fire, why, and what blocks them.

    Exit 0 when nothing would fire, 2 when a policy would start its pipeline (a trigger fires and no
    cooldown, daily limit or active run blocks it), 1 on any error.
    """
    from mlops.reports.retraining import render_json, render_text
    from mlops.services.retrain import check_retraining_now

    try:
        result = check_retraining_now(repo, policy=policy, signals_file=signals_file, now=now)
    except MlopsError as exc:
        exc.exit_code = int(ExitCode.VIOLATIONS)  # 2 means "would fire" here
        raise
    click.echo(render_json(result) if output_format == "json" else render_text(result))
    sys.exit(WOULD_FIRE if result.fires else ExitCode.OK)
