"""`mlops cluster up|status|down`: the embedded local Ray head (see :mod:`mlops.appliers.cluster`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlops.appliers.cluster import ClusterTarget, LocalCluster, LocalClusterInfo, LocalStatus
from mlops.appliers.serve import ServeApi
from mlops.errors import MlopsError


@dataclass(frozen=True)
class ClusterUp:
    target: ClusterTarget
    started: bool
    info: LocalClusterInfo | None
    state_dir: str


def cluster_up(
    num_cpus: float | None = None,
    serve_port: int | None = None,
    timeout: float = 180.0,
    progress: Callable[[str], None] | None = None,
) -> ClusterUp:
    local = LocalCluster()
    target, started = local.up(num_cpus=num_cpus, serve_port=serve_port, timeout=timeout, progress=progress)
    return ClusterUp(target, started, local.info(), str(local.state_dir))


def cluster_down() -> tuple[LocalClusterInfo | None, str]:
    local = LocalCluster()
    return local.down(), str(local.state_dir)


@dataclass(frozen=True)
class ClusterStatus:
    local: LocalStatus
    applications: dict[str, str]
    error: str | None = None


def cluster_status() -> ClusterStatus:
    local = LocalCluster()
    status = local.status()
    apps: dict[str, str] = {}
    error = None
    if status.running:
        try:
            apps = {name: app.status for name, app in ServeApi(local.target(), timeout=10).applications().items()}
        except MlopsError as exc:
            error = exc.message
    return ClusterStatus(status, apps, error)


def describe_info(info: LocalClusterInfo) -> dict[str, Any]:
    return {
        "pid": info.pid,
        "gcs": info.gcs_address,
        "dashboard": info.dashboard_url,
        "serve": f"http://127.0.0.1:{info.serve_port}",
        "token": info.token_file,
        "log": info.log_file,
        "cpus": info.num_cpus,
        "ray": info.ray_version,
    }
