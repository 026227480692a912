"""`mlops cluster up|status|down`: a real local Ray head that outlives the command, with token auth."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_serve_support import MLOPS

from mlops.appliers.cluster import LocalCluster, _descendants, _pid_alive, free_port, resolve_target

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MLOPS), *args], env=env, capture_output=True, text=True, timeout=300)


def test_up_status_down_with_token_auth(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["MLOPS_CLUSTER_DIR"] = str(state)
    port = str(free_port())

    before = _cli("cluster", "status", env=env)
    assert before.returncode == 1 and "no local Ray cluster is running" in before.stderr

    up = _cli("cluster", "up", "--serve-port", port, "--num-cpus", "2", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert up.stdout.startswith("local Ray cluster started")
        info = json.loads((state / "cluster.json").read_text())
        # The head outlives the command that started it.
        assert _pid_alive(info["pid"])
        token_file = Path(info["token_file"])
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) == 64

        # Token auth: the dashboard refuses a request without the token and answers one with it.
        assert _get(f"{info['dashboard_url']}/api/serve/applications/") == 401
        assert _get(f"{info['dashboard_url']}/api/serve/applications/", "not-the-token") == 403
        assert _get(f"{info['dashboard_url']}/api/serve/applications/", token) == 200

        # A Ray driver authenticates with the variables the CLI sets: ray.init works, without them it does not.
        probe = (
            "import ray, sys\n"
            f"ray.init(address={info['gcs_address']!r}, logging_level='ERROR', log_to_driver=False)\n"
            "print(int(ray.cluster_resources()['CPU']))\n"
        )
        allowed = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
        ok = subprocess.run([sys.executable, "-c", probe], env=allowed, capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0 and ok.stdout.strip() == "2", ok.stderr[-2000:]
        wrong = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}
        refused = subprocess.run([sys.executable, "-c", probe], env=wrong, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0

        again = _cli("cluster", "up", env=env)
        assert again.returncode == 0 and again.stdout.startswith("local Ray cluster already running")
        status = _cli("cluster", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith(f"local Ray cluster running (pid {info['pid']}")
        assert f"serve      http://127.0.0.1:{port}" in status.stdout
        assert f"token      {token_file}" in status.stdout
        assert "apps       none" in status.stdout
        tree = [info["pid"], *_descendants(info["pid"])]
        assert len(tree) > 3
    finally:
        down = _cli("cluster", "down", env=env)
    assert down.returncode == 0 and down.stdout.startswith("stopped the local Ray cluster"), down.stderr
    assert not any(_pid_alive(pid) for pid in tree), "a process of the head outlived `mlops cluster down`"
    assert not (state / "cluster.json").exists()
    after = _cli("cluster", "status", env=env)
    assert after.returncode == 1
    assert _cli("cluster", "down", env=env).stdout.startswith("no local Ray cluster was running")
    assert LocalCluster(state).status().running is False


def test_addresses_select_the_cluster() -> None:
    assert resolve_target("local", {}) is None
    remote = resolve_target("ray://ray-prod.internal:10001", {"RAY_AUTH_TOKEN": "abc"})
    assert remote is not None
    assert (remote.ray_address, remote.dashboard_url, remote.serve_url) == (
        "ray://ray-prod.internal:10001", "http://ray-prod.internal:8265", "http://ray-prod.internal:8000")
    assert remote.auth_headers() == {"Authorization": "Bearer abc"}
    assert remote.ray_environment() == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "abc"}
    from_env = resolve_target("local", {"RAY_ADDRESS": "10.0.0.5:6379", "MLOPS_SERVE_URL": "http://lb:80"})
    assert from_env is not None and from_env.ray_address == "10.0.0.5:6379" and from_env.serve_url == "http://lb:80"
    explicit = resolve_target("http://head:8265", {"RAY_ADDRESS": "elsewhere:6379", "RAY_AUTH_MODE": "disabled"})
    assert explicit is not None and explicit.dashboard_url == "http://head:8265" and explicit.token is None
