"""Two timings of the reconciler on a real local Ray cluster:

(a) a no-op reconcile of an environment with 20 deployments (40 Serve applications: 20 model servers and 20
    routers), goal under 1 s. Measured three ways: the reconcile call in a process that stays connected to the
    cluster (what ``mlops reconcile --watch`` repeats), the same call connecting and disconnecting each time,
    and the whole CLI command in a fresh process (interpreter start and imports included);
(b) the time from ``mlops rollback`` to 100% of traffic on the old version, goal under 5 s: the rollback
    commit, then ``mlops reconcile`` in a fresh process, while a client polls the endpoint until every answer
    carries the old version (20 in a row). Measured ``--repeat`` times while the old version still runs (within
    its grace period: a weight change; the goal is judged on the median, every run is printed) and once after
    it was removed (it must start again).

Every CLI run includes interpreter start-up, imports and ``ray.init``, as a user pays them. Python keeps its
bytecode cache as it does by default: a ``PYTHONDONTWRITEBYTECODE`` set in the calling shell is not passed on
(with it, every run would compile mlops' own modules again, which no user's second run pays).

::

    .venv/bin/python benchmarks/reconcile.py                 # ~5-10 minutes on 2 cores (40 replicas to start)
    .venv/bin/python benchmarks/reconcile.py --deployments 5 --repeat 3
    .venv/bin/python benchmarks/reconcile.py --fail-on-miss
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MLOPS = Path(sys.executable).parent / "mlops"
sys.path.insert(0, str(ROOT / "tests"))


def _background_reconcile(repo: Path, env: dict[str, str], read_stderr: bool) -> subprocess.Popen[str]:
    """`mlops reconcile --env development` running on its own; its stderr readable line by line if asked."""
    return subprocess.Popen(
        [str(MLOPS), "reconcile", "--env", "development"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if read_stderr else subprocess.DEVNULL,
        text=True,
    )


def _cli(*args: str, cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(MLOPS), *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"mlops {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def _environment(name: str, deployments: list[str]) -> str:
    return f"apiVersion: mlops/v1\nkind: Environment\nmetadata:\n  name: {name}\nspec:\n  deployments:\n" + "".join(
        deployments
    )


def _version(port: int, path: str) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, json.dumps({"inputs": [[59.9, 12, 1, 34]]}), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.getheader("X-Model-Version") if response.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def noop_reconcile(repo: Path, env: dict[str, str], deployments: int, repeat: int) -> dict[str, float]:
    from conftest import git

    from mlops.appliers.cluster import LocalCluster, connected
    from mlops.services.reconcile import reconcile

    lines = [
        f"    - {{name: d{i:02d}, model: churn, version: 3, routePrefix: /d{i:02d}, resources: {{cpus: 0.05}}}}\n"
        for i in range(deployments)
    ]
    (repo / "environments" / "bench.yaml").write_text(_environment("bench", lines), encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"bench: {deployments} deployments")
    print(f"(a) reconciling {deployments} deployments ({2 * deployments} applications) ...", flush=True)
    started = time.perf_counter()
    _cli("reconcile", "--env", "bench", "--timeout", "1200", cwd=repo, env=env)
    print(f"    first reconcile (everything created): {time.perf_counter() - started:.1f} s", flush=True)
    target = LocalCluster().target()
    connected_times, fresh_times, cli_times = [], [], []
    with connected(target):
        for _ in range(repeat):
            t = time.perf_counter()
            result = reconcile(repo, "bench")
            connected_times.append(time.perf_counter() - t)
            assert result.outcome == "no changes", result.outcome
    for _ in range(repeat):
        t = time.perf_counter()
        assert reconcile(repo, "bench").outcome == "no changes"
        fresh_times.append(time.perf_counter() - t)
    for _ in range(repeat):
        t = time.perf_counter()
        out = _cli("reconcile", "--env", "bench", cwd=repo, env=env).stdout
        cli_times.append(time.perf_counter() - t)
        assert "no changes" in out, out
    return {
        "connected": statistics.median(connected_times),
        "fresh": statistics.median(fresh_times),
        "cli": statistics.median(cli_times),
    }


def rollback_to_full_traffic(repo: Path, env: dict[str, str], port: int, grace: str) -> float:
    """Serve churn@3, switch to churn@4 (gracePeriod ``grace``), then time rollback + reconcile until every
    answer comes from churn@3."""
    from conftest import git
    from test_serve_support import add_version

    if not (repo / "registry/models/churn/versions/4.yaml").exists():
        add_version(repo, "churn", 4, like=3)

    def churn(version: int) -> str:
        return _environment(
            "development",
            [
                f"    - name: churn\n      model: churn\n      version: {version}\n      routePrefix: /churn\n"
                "      resources: {cpus: 0.5}\n"
                f"      strategy: {{steps: [{{weight: 100}}], gracePeriod: {grace}}}\n"
            ],
        )

    def serve(version: int, message: str) -> None:
        (repo / "environments" / "development.yaml").write_text(churn(version), encoding="utf-8")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", message)
        _cli("reconcile", "--env", "development", cwd=repo, env=env)

    serve(3, "serve churn@3")
    if grace != "0s":
        # Keep the reconcile that switches to churn@4 from waiting out the grace period itself: it runs in the
        # background and is stopped once churn@4 has all traffic, so churn@3 still runs.
        (repo / "environments" / "development.yaml").write_text(churn(4), encoding="utf-8")
        git(repo, "commit", "-qam", "promote churn@4")
        job = _background_reconcile(repo, env, read_stderr=True)
        assert job.stderr is not None
        for line in job.stderr:
            if "keeping development.churn.v3 for the grace period" in line:
                break
        job.terminate()
        job.wait()
        _cli("reconcile", "--env", "development", "--break-lock", cwd=repo, env=env, check=False)
    else:
        serve(4, "promote churn@4")
    assert _version(port, "/churn") == "churn@4"
    started = time.perf_counter()
    _cli("rollback", "--env", "development", "--to", "3", cwd=repo, env=env)
    job = _background_reconcile(repo, env, read_stderr=False)
    streak = 0
    while streak < 20:
        streak = streak + 1 if _version(port, "/churn") == "churn@3" else 0
    elapsed = time.perf_counter() - started
    job.wait(timeout=600)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fail-on-miss", action="store_true")
    options = parser.parse_args()

    from conftest import make_example_repo

    from mlops.appliers.cluster import LocalCluster, free_port

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-reconcile-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["MLOPS_CLUSTER_DIR"] = os.environ["MLOPS_CLUSTER_DIR"] = str(work / "cluster")
    for role in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{role}_NAME"] = os.environ[f"GIT_{role}_NAME"] = "bench"
        env[f"GIT_{role}_EMAIL"] = os.environ[f"GIT_{role}_EMAIL"] = "bench@example.com"
    local = LocalCluster(work / "cluster")
    port = free_port()
    try:
        print(f"starting a local Ray cluster (state {work / 'cluster'}) ...", flush=True)
        local.up(num_cpus=8, serve_port=port)
        repo = make_example_repo(work / "repo")
        noop = noop_reconcile(repo, env, options.deployments, options.repeat)
        print("(b) rollback to 100% of traffic ...", flush=True)
        warm_runs = []
        for run in range(options.repeat):
            warm_runs.append(rollback_to_full_traffic(repo, env, port, grace="10m"))
            print(f"    old version still running, run {run + 1}: {warm_runs[-1]:.2f} s", flush=True)
        warm = statistics.median(warm_runs)
        cold = rollback_to_full_traffic(repo, env, port, grace="0s")
        print()
        print(f"(a) no-op reconcile, {options.deployments} deployments (median of {options.repeat}):")
        print(
            f"    connected process (--watch)   {noop['connected']:6.2f} s   goal < 1 s   "
            f"{'PASS' if noop['connected'] < 1 else 'MISS'}"
        )
        print(f"    connect + disconnect           {noop['fresh']:6.2f} s")
        print(f"    CLI, fresh process             {noop['cli']:6.2f} s   (interpreter, imports, ray.init included)")
        print("(b) `mlops rollback` -> 100% of traffic on the old version (rollback commit + reconcile):")
        print(
            f"    old version still running      {warm:6.2f} s   goal < 5 s   {'PASS' if warm < 5 else 'MISS'}   "
            f"(median of {len(warm_runs)}: {', '.join(f'{t:.2f}' for t in warm_runs)})"
        )
        print(f"    old version removed            {cold:6.2f} s   (it starts again)")
        missed = noop["connected"] >= 1 or warm >= 5
        return 1 if options.fail_on_miss and missed else 0
    finally:
        local.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
