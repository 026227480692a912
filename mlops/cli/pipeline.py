"""`mlops pipeline validate|run|resume|runs|show`.

Exit codes: ``validate`` 0 clean, 1 errors; ``run`` / ``resume`` 0 submitted (or, with ``--wait``,
succeeded), 1 failed or refused; ``runs`` / ``show`` 0.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlops.cli.options import repo_option
from mlops.cli.progress import bar
from mlops.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from mlops.planner.pipeline_state import RunState


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def pipeline() -> None:
    """Training pipelines (pipelines/<name>/pipeline.yaml): validate, run on Ray, resume, inspect runs."""


@pipeline.command("validate")
@click.argument("name")
@click.option("--env", "environment", metavar="ENV", help="Check resources against this environment's cluster.")
@repo_option
def validate_cmd(name: str, environment: str | None, repo: Path) -> None:
    """Repository checks, then import every step's code and fit its resources to the cluster's nodes."""
    from mlops.services.pipeline_checks import check_pipeline_fully

    result = check_pipeline_fully(repo, name, environment)
    for problem in result.problems:
        click.echo(str(problem))
    for note in result.notes:
        _say(note)
    errors = len(result.errors)
    if errors:
        _say(f"pipeline {name}: {errors} error(s); it cannot run or be activated until they are fixed")
        sys.exit(ExitCode.VIOLATIONS)
    _say(f"ok: pipeline {name}")


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: expected NAME=VALUE")
        out[key] = value
    return out


@pipeline.command("run")
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="K=V", help="Override a pipeline parameter.")
@click.option("--env", "environment", metavar="ENV", help="Run on this environment's cluster (default: local).")
@click.option("--wait/--no-wait", default=False, help="Follow the run until it ends (it runs on without the CLI).")
@click.option("--allow-dirty", is_flag=True, help="Run uncommitted changes of the pipeline's folder (never cached).")
@click.option("--push", "push_", is_flag=True, help="Push the branch the model is registered on.")
@click.option("--pr", "pull_request", is_flag=True, help="Open a pull request for the registered model.")
@click.option("--at", "at", metavar="COMMIT", help="Run the pipeline as of COMMIT (what reconcile applied).")
@click.option("--trigger", default="manual", show_default=True, help="Why it runs (recorded with the run).")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@repo_option
def run_cmd(
    name: str,
    params: tuple[str, ...],
    environment: str | None,
    wait: bool,
    allow_dirty: bool,
    push_: bool,
    pull_request: bool,
    at: str | None,
    trigger: str,
    output_format: str,
    repo: Path,
) -> None:
    """Run the pipeline's DAG on Ray; unchanged steps come from the cache."""
    from mlops.services.pipelines import RunRequest, start_run

    request = RunRequest(
        pipeline=name,
        params=_params(params),
        environment=environment,
        allow_dirty=allow_dirty,
        push=push_,
        pull_request=pull_request,
        at=at,
        trigger=trigger,
    )
    submitted = start_run(repo, request)
    _after_start(repo, submitted.state.run_id, submitted.submitted, wait, output_format)


@pipeline.command("resume")
@click.argument("run")
@click.option("--wait/--no-wait", default=False, help="Follow the run until it ends.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@repo_option
def resume_cmd(run: str, wait: bool, output_format: str, repo: Path) -> None:
    """Re-run a failed run from its failed steps, reusing what succeeded."""
    from mlops.services.pipelines import resume_run

    submitted = resume_run(repo, run)
    _after_start(repo, submitted.state.run_id, submitted.submitted, wait, output_format)


def _after_start(repo: Path, run_id: str, submitted: bool, wait: bool, output_format: str) -> None:
    from mlops.reports.pipelines import render_run
    from mlops.services.pipelines import follow, show_run

    if not submitted:
        _say(f"pipeline run {run_id[:12]}: every step's outputs were in the cache; nothing to run")
    elif not wait:
        _say(f"pipeline run {run_id[:12]} submitted; follow it with `mlops pipeline show {run_id[:12]}`")
    else:
        follow(repo, run_id, _progress_printer())
    state, plan, folder = show_run(repo, run_id)
    click.echo(render_run(state, plan, folder, output_format))
    if state.status == "failed" or (state.registration is not None and state.registration.error):
        sys.exit(ExitCode.VIOLATIONS)


def _progress_printer() -> Callable[[RunState], None]:
    from mlops.reports.pipelines import step_line

    seen: dict[str, tuple[str, int]] = {}
    tty = sys.stderr.isatty()

    def on_change(state: RunState) -> None:
        for name, step in state.steps.items():
            mark = (step.state, len(step.attempts))
            if seen.get(name) != mark:
                seen[name] = mark
                if step.state != "pending":
                    if tty:
                        click.echo("\r\033[K", err=True, nl=False)
                    _say(step_line(step))
        if tty:
            done = sum(1 for s in state.steps.values() if s.state in ("succeeded", "cached", "failed", "skipped"))
            click.echo(f"\r{bar(done, len(state.steps))} {done}/{len(state.steps)} steps", err=True, nl=False)
            if state.status in ("succeeded", "failed"):
                click.echo("", err=True)

    return on_change


@pipeline.command("runs")
@click.argument("name", required=False)
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@repo_option
def runs_cmd(name: str | None, limit: int, output_format: str, repo: Path) -> None:
    """Pipeline runs, newest first."""
    from mlops.reports.pipelines import render_runs
    from mlops.services.pipelines import list_runs

    click.echo(render_runs(list_runs(repo, name, limit), output_format))


@pipeline.command("show")
@click.argument("run")
@click.option("--log", "log_step", metavar="STEP", help="Print the log of STEP's last attempt instead.")
@click.option("--follow", is_flag=True, help="Follow the run until it ends first (progress lines per step).")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@repo_option
def show_cmd(run: str, log_step: str | None, follow: bool, output_format: str, repo: Path) -> None:
    """One run: per step its state, attempts, duration, resources, output digests and logs."""
    from mlops.reports.pipelines import render_run
    from mlops.services.pipelines import follow as follow_run
    from mlops.services.pipelines import show_run

    state, plan, folder = show_run(repo, run)
    if follow:
        follow_run(repo, state.run_id, _progress_printer())
        state, plan, folder = show_run(repo, state.run_id)
    if log_step is not None:
        record = state.steps.get(log_step)
        if record is None:
            raise UsageError(f"run {state.run_id[:12]} has no step {log_step!r} (steps: {', '.join(state.steps)})")
        if not record.attempts:
            raise UsageError(f"step {log_step} has not run in {state.run_id[:12]} ({record.state})")
        click.echo((folder / record.attempts[-1].log).read_text(encoding="utf-8", errors="replace"), nl=False)
        return
    click.echo(render_run(state, plan, folder, output_format))


@pipeline.command("schedules")
@click.option("--env", "environment", required=True, metavar="ENV", help="The environment.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@repo_option
def schedules_cmd(environment: str, output_format: str, repo: Path) -> None:
    """The pipelines ENV's cluster runs on a schedule (applied by `mlops reconcile`): next time, recent events."""
    from mlops.reports.pipelines import render_schedules
    from mlops.services.schedules import environment_schedules

    click.echo(render_schedules(environment_schedules(repo, environment), output_format))
