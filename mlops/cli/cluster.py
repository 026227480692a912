"""`mlops cluster up|status|down`: the embedded local Ray cluster."""

from __future__ import annotations

import sys
import time

import click


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.group()
def cluster() -> None:
    """The embedded local Ray cluster (state in MLOPS_CLUSTER_DIR, default ~/.mlops/cluster)."""


@cluster.command()
@click.option("--num-cpus", type=float, help="Logical CPUs the head offers (default: max(8, cores)).")
@click.option("--serve-port", type=int, help="Port of Serve's HTTP endpoint (default 8000, or a free one).")
@click.option("--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for the head.")
def up(num_cpus: float | None, serve_port: int | None, timeout: float) -> None:
    """Start a Ray head on 127.0.0.1 that outlives this command (token auth on)."""
    from mlops.services.cluster import cluster_up

    result = cluster_up(num_cpus=num_cpus, serve_port=serve_port, timeout=timeout, progress=_say)
    verb = "started" if result.started else "already running"
    click.echo(f"local Ray cluster {verb}")
    _describe(result.target.ray_address, result.target.dashboard_url, result.target.serve_url, result.state_dir)
    if result.info is not None:
        click.echo(f"  token      {result.info.token_file}")
    click.echo("stop it with `mlops cluster down`")


@cluster.command()
def status() -> None:
    """Whether the local cluster runs, its addresses, and its Serve applications (exit 1 when it does not run)."""
    from mlops.services.cluster import cluster_status

    found = cluster_status()
    local = found.local
    if not local.running or local.info is None:
        click.echo(f"no local Ray cluster is running ({local.reason}); start one with `mlops cluster up`", err=True)
        sys.exit(1)
    info = local.info
    uptime = time.time() - info.started_at
    click.echo(f"local Ray cluster running (pid {info.pid}, up {uptime:.0f} s, {info.num_cpus:g} CPUs, Ray "
               f"{info.ray_version})")
    _describe(info.gcs_address, info.dashboard_url, f"http://127.0.0.1:{info.serve_port}", str(local.state_dir))
    click.echo(f"  token      {info.token_file}")
    if found.error:
        click.echo(f"  serve      unreadable: {found.error}")
    elif found.applications:
        for name, state in sorted(found.applications.items()):
            click.echo(f"  app        {name}: {state}")
    else:
        click.echo("  apps       none")


@cluster.command()
def down() -> None:
    """Stop the local cluster and every process it started."""
    from mlops.services.cluster import cluster_down

    info, state_dir = cluster_down()
    if info is None:
        click.echo(f"no local Ray cluster was running (state folder {state_dir})")
        return
    click.echo(f"stopped the local Ray cluster (pid {info.pid}, {info.gcs_address})")


def _describe(address: str, dashboard: str, serve: str, state_dir: str) -> None:
    click.echo(f"  address    {address}")
    click.echo(f"  dashboard  {dashboard}")
    click.echo(f"  serve      {serve}")
    click.echo(f"  state      {state_dir}")
