"""`mlops promote` and `mlops rollback`."""

from __future__ import annotations

from pathlib import Path

import click

from mlops.cli.options import commit_options, commit_settings, describe_publication, repo_option


@click.command()
@click.argument("ref", metavar="NAME@N")
@click.option("--to", "environment", required=True, metavar="ENV", help="Target environment.")
@click.option("--expect-current", type=int, metavar="N", help="Refuse unless ENV serves version N now.")
@click.option("--reason", help="Why; goes into the commit message.")
@click.option("--deployment", help="Which deployment of the model, when ENV has several.")
@repo_option
@commit_options
def promote(
    ref: str,
    environment: str,
    expect_current: int | None,
    reason: str | None,
    deployment: str | None,
    repo: Path,
    no_commit: bool,
    branch: str | None,
    push_: bool,
    pull_request: bool,
    remote: str,
) -> None:
    """Point ENV at NAME@N after its promotion policy is met; one commit that says what and why."""
    from mlops.services.promote import promote as run_promote

    result = run_promote(
        repo,
        ref,
        environment,
        commit_settings(no_commit, branch, push_, pull_request, remote),
        expect_current=expect_current,
        reason=reason,
        deployment=deployment,
    )
    before = f"{result.previous} -> " if result.previous is not None else ""
    click.echo(f"promoted {result.key} to {result.environment} ({before}{result.key.split('@')[1]})")
    if result.gate is not None:
        for criterion in result.gate.criteria:
            click.echo(f"  [{'x' if criterion.met else ' '}] {criterion.name}: {criterion.evidence}")
        click.echo("  [ ] approvals: checked on the pull request by `mlops validate --base`")
    for line in describe_publication(result.publication):
        click.echo(line)


@click.command()
@click.option("--env", "environment", required=True, metavar="ENV")
@click.option("--to", "to", type=int, metavar="N", help="Version to go back to (default: the previous one).")
@click.option("--model", help="Which model, when ENV serves several.")
@click.option("--reason", help="Why; goes into the commit message.")
@click.option("--list", "list_only", is_flag=True, help="Only show the versions ENV served before.")
@repo_option
@commit_options
def rollback(
    environment: str,
    to: int | None,
    model: str | None,
    reason: str | None,
    list_only: bool,
    repo: Path,
    no_commit: bool,
    branch: str | None,
    push_: bool,
    pull_request: bool,
    remote: str,
) -> None:
    """Point ENV back at a version it served before, as a new commit."""
    from mlops.services.promote import rollback as run_rollback
    from mlops.services.promote import rollback_candidates

    if list_only:
        model_name, offered = rollback_candidates(repo, environment, model)
        if not offered:
            click.echo(f"no earlier version of {model_name} served {environment}")
        for stint in offered:
            until = f" until {stint.until:%Y-%m-%d %H:%M}" if stint.until else ""
            click.echo(
                f"{model_name}@{stint.version}  served from {stint.since:%Y-%m-%d %H:%M}{until} UTC "
                f"(commit {stint.commit[:8]})"
            )
        return
    result = run_rollback(
        repo,
        environment,
        commit_settings(no_commit, branch, push_, pull_request, remote),
        to=to,
        model=model,
        reason=reason,
    )
    served = ", ".join(f"{result.model}@{s.version}" for s in result.offered)
    click.echo(f"rolled back {result.model} {result.previous} -> {result.target} in {result.environment}")
    click.echo(f"versions {result.environment} served before: {served}")
    for line in describe_publication(result.publication):
        click.echo(line)
