"""`mlops plan`, `mlops reconcile`, `mlops status` and `mlops rollout pause|resume|abort`.

Exit codes (``mlops.errors.ExitCode``): ``plan`` 0 no changes, 2 changes, 1 error (Terraform's
-detailed-exitcode); ``reconcile`` 0 applied or nothing to do, 1 refused, failed or rolled back.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from mlops.cli.options import repo_option
from mlops.errors import ExitCode


def _say(message: str) -> None:
    click.echo(message, err=True)


F = TypeVar("F", bound=Callable[..., Any])


def _env_option(func: F) -> F:
    return click.option("--env", "environment", required=True, metavar="ENV", help="The environment.")(func)


@click.command()
@_env_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan (JSON) here.")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True)
@click.option("--prune", is_flag=True, help="Plan to delete deployments the repository no longer has.")
@repo_option
def plan(environment: str, out: Path | None, output_format: str, prune: bool, repo: Path) -> None:
    """Desired (git HEAD) vs live (the cluster): exit 0 no changes, 2 changes, 1 error."""
    from mlops.reports.plan import render_plan
    from mlops.services.reconcile import plan_environment, save_plan

    result = plan_environment(repo, environment, prune=prune)
    if out is not None:
        save_plan(result.plan, out)
    click.echo(render_plan(result.plan, output_format))
    if out is not None:
        _say(f"plan saved to {out}; apply it with `mlops reconcile --env {environment} --plan {out}`")
    sys.exit(ExitCode.PLAN_HAS_CHANGES if result.plan.has_changes else ExitCode.OK)


@click.command()
@_env_option
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Apply this saved plan (refused if the repository or the cluster moved since).")
@click.option("--prune", is_flag=True, help="Delete deployments the repository no longer has.")
@click.option("--watch", is_flag=True, help="Keep reconciling: apply new commits and heal drift.")
@click.option("--interval", type=float, default=10.0, show_default=True, help="Seconds between --watch rounds.")
@click.option("--iterations", type=int, hidden=True, help="Stop --watch after N rounds (tests).")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait for Serve to bring a change up before restoring the last good config.")
@click.option("--break-lock", is_flag=True, help="Break a stale lock left by a reconciler that is gone.")
@click.option("--push", "push_", is_flag=True, help="Push an automatic rollback commit to the remote.")
@repo_option
def reconcile(
    environment: str,
    plan_path: Path | None,
    prune: bool,
    watch: bool,
    interval: float,
    iterations: int | None,
    timeout: float,
    break_lock: bool,
    push_: bool,
    repo: Path,
) -> None:
    """Apply the environment at git HEAD to its cluster; a second run changes nothing."""
    from mlops.errors import MlopsError
    from mlops.reports.plan import render_reconcile
    from mlops.services.reconcile import ReconcileResult
    from mlops.services.reconcile import reconcile as run_reconcile
    from mlops.services.reconcile import watch as run_watch

    if watch:
        if plan_path is not None:
            raise click.UsageError("--plan applies one saved plan; it cannot be combined with --watch")

        def report(outcome: ReconcileResult | MlopsError) -> None:
            if isinstance(outcome, MlopsError):
                for line in outcome.lines():
                    click.echo(f"error: {line}" if not line.startswith(" ") else line, err=True)
            else:
                for line in render_reconcile(outcome):
                    click.echo(line)

        _say(f"watching {environment} every {interval:g} s (Ctrl-C stops)")
        with _terminate_as_interrupt():
            run_watch(repo, environment, prune, interval, timeout, iterations, push_, _say, report)
        return
    with _terminate_as_interrupt():
        result = run_reconcile(
            repo,
            environment,
            plan_path=plan_path,
            prune=prune,
            timeout=timeout,
            break_lock=break_lock,
            push=push_,
            progress=_say,
        )
    for line in render_reconcile(result):
        click.echo(line)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, `kill`) ends a reconcile like Ctrl-C: the lock is released and the rollout in
    progress is marked interrupted, instead of the process vanishing with the lock held."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@_env_option
@repo_option
def status(environment: str, repo: Path) -> None:
    """Each deployment's version, health, replicas, endpoint and an example curl."""
    from mlops.reports.plan import render_status
    from mlops.services.environment_status import environment_status

    click.echo(render_status(environment_status(repo, environment)))


@click.group()
def rollout() -> None:
    """Manual intervention in a blue-green rollout in progress (UC-08 6a)."""


def _control(action: str, environment: str, reason: str, repo: Path) -> None:
    from mlops.services.environment_status import rollout_control

    state = rollout_control(repo, environment, action, reason)
    click.echo(
        f"{action} requested for {state.get('deployment')}: {state.get('model')}@{state.get('from')} -> "
        f"{state.get('model')}@{state.get('to')} at {state.get('weight', 0)}%; the reconciler running it acts on it"
    )


@rollout.command()
@_env_option
@click.option("--reason", default="", help="Why (recorded in the environment's events).")
@repo_option
def pause(environment: str, reason: str, repo: Path) -> None:
    """Hold the current traffic weights."""
    _control("pause", environment, reason, repo)


@rollout.command()
@_env_option
@click.option("--reason", default="", help="Why (recorded in the environment's events).")
@repo_option
def resume(environment: str, reason: str, repo: Path) -> None:
    """Go on with the next step (also past a gate that is waiting for traffic)."""
    _control("resume", environment, reason, repo)


@rollout.command()
@_env_option
@click.option("--reason", default="", help="Why (goes into the rollback commit).")
@repo_option
def abort(environment: str, reason: str, repo: Path) -> None:
    """Route all traffic back to the old version, remove the new one, pin the environment back in git."""
    _control("abort", environment, reason, repo)
