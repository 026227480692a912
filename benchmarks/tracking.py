"""Tracking throughput and listing speed, with MLflow's SQLite backend measured in the same run.

    .venv/bin/python benchmarks/tracking.py [--points 100000] [--runs 10000] [--mlflow-python PY] [--mlflow-points 2000]

1. Logging: one run logs ``--points`` metric points with ``run.log_metric`` (one call per point, as a
   training loop does) and ends (everything flushed to the SQLite file). Reported: points/s, and the
   time the training loop itself spent in ``log_metric``.
2. Listing: ``--runs`` runs (5 params, 3 metrics each) are written to the store, then the whole CLI
   ``mlops runs list --filter 'metrics.auc > 0.9 and params.depth == 6'`` runs as a subprocess.
3. MLflow (when a Python with mlflow is given or this one has it): the same loop of ``mlflow.log_metric``
   calls against ``sqlite:///`` (1,000 points by default: it manages tens to a few hundred per second), and
   ``mlflow.search_runs`` with the same filter on ``--mlflow-runs`` runs. Ratios are printed.

Nothing is installed here. For MLflow: ``python -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install mlflow``
then pass ``--mlflow-python /tmp/mlflow-venv/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILTER = "metrics.auc > 0.9 and params.depth == 6"

MLFLOW_SIDE = r"""
import json, os, sys, time, tempfile
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
import mlflow
points, runs = int(sys.argv[1]), int(sys.argv[2])
folder = tempfile.mkdtemp(prefix="mlflow-bench-")
mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
mlflow.set_experiment("bench")
with mlflow.start_run():
    start = time.perf_counter()
    for step in range(points):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    logged = time.perf_counter() - start
client = mlflow.tracking.MlflowClient()
exp = mlflow.get_experiment_by_name("bench").experiment_id
from mlflow.entities import Metric, Param
start = time.perf_counter()
for i in range(runs):
    run = client.create_run(exp)
    now = int(time.time() * 1000)
    metrics = [Metric("auc", 0.8 + (i % 20) / 100, now, 0), Metric("loss", 0.3, now, 0)]
    client.log_batch(run.info.run_id, metrics=metrics,
                     params=[Param("depth", str(4 + i % 4)), Param("lr", "0.1")])
    client.set_terminated(run.info.run_id)
created = time.perf_counter() - start
start = time.perf_counter()
found = mlflow.search_runs([exp], filter_string="metrics.auc > 0.9 and params.depth = '6'", max_results=50000)
searched = time.perf_counter() - start
print(json.dumps({"version": mlflow.__version__, "points": points, "log_s": logged, "runs": runs,
                  "create_s": created, "search_s": searched, "found": len(found)}))
"""


def _repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "registry", repo / "registry")
    (repo / "pyproject.toml").write_text('[tool.mlops]\nstore = ".mlops/store"\n', encoding="utf-8")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "lead@example.com",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "lead@example.com",
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)
    return repo


def ours_logging(repo: Path, points: int) -> dict[str, float]:
    from mlops.tracking import start_run

    here = Path.cwd()
    os.chdir(repo)
    os.environ["MLOPS_USER"] = "lead@example.com"
    os.environ.pop("MLOPS_TRACKING_URI", None)
    total = time.perf_counter()
    with start_run(project="retention", experiment="bench") as run:
        start = time.perf_counter()
        for step in range(points):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        in_loop = time.perf_counter() - start
    total = time.perf_counter() - total
    os.chdir(here)
    return {"loop_s": in_loop, "total_s": total}


def ours_listing(repo: Path, runs: int) -> dict[str, float]:
    from mlops.stores.tracking import RunRecord, RunStatus
    from mlops.stores.tracking_sqlite import SqliteTrackingStore

    store = SqliteTrackingStore(repo / ".mlops" / "tracking.db")
    start = time.perf_counter()
    now = time.time()
    for i in range(runs):
        store.create_run(
            RunRecord(
                uuid.uuid4().hex,
                "retention",
                "sweep",
                user="lead@example.com",
                status=RunStatus.FINISHED,
                start_time=now - i,
                end_time=now - i + 30,
                heartbeat=now - i + 30,
                params={"depth": 4 + i % 4, "lr": 0.1, "seed": i, "model": "gbm", "rows": 2000},
            ),
            points=[("auc", 0, now, 0.8 + (i % 20) / 100), ("loss", 0, now, 0.3), ("accuracy", 0, now, 0.7)],
        )
    created = time.perf_counter() - start
    store.close()
    cli = [str(Path(sys.executable).parent / "mlops"), "runs", "list", "--filter", FILTER, "--format", "json"]
    best = float("inf")
    found = 0
    for _ in range(3):
        start = time.perf_counter()
        out = subprocess.run(cli, cwd=repo, check=True, capture_output=True, text=True).stdout
        best = min(best, time.perf_counter() - start)
        found = len(json.loads(out)["runs"])
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "mlops"), "--help"], check=True, capture_output=True)
    startup = time.perf_counter() - start
    return {"create_s": created, "list_s": best, "found": found, "cli_startup_s": startup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--mlflow-python", help="a Python with mlflow installed (default: this one, if it has it)")
    parser.add_argument("--mlflow-points", type=int, default=1_000)
    parser.add_argument("--mlflow-runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        repo = _repo(Path(tmp))
        log = ours_logging(repo, args.points)
        rate = args.points / log["total_s"]
        print(
            f"mlops   log_metric x {args.points:,}: {log['total_s']:.2f} s with start and flush "
            f"({rate:,.0f} points/s; {log['loop_s']:.2f} s inside the training loop)"
        )
        listing = ours_listing(repo, args.runs)
        print(
            f"mlops   runs list --filter on {args.runs:,} runs (whole CLI, best of 3): {listing['list_s']:.2f} s "
            f"({listing['found']:,} found; CLI start-up alone {listing['cli_startup_s']:.2f} s; goal < 1 s)"
        )
    python = args.mlflow_python
    if python is None:
        try:
            import mlflow  # noqa: F401

            python = sys.executable
        except ImportError:
            print(
                "mlflow: not measured. Install it apart from mlops and point at it:\n"
                "  python -m venv /tmp/mlflow-venv && /tmp/mlflow-venv/bin/pip install mlflow\n"
                "  .venv/bin/python benchmarks/tracking.py --mlflow-python /tmp/mlflow-venv/bin/python"
            )
            return
    result = subprocess.run(
        [python, "-c", MLFLOW_SIDE, str(args.mlflow_points), str(args.mlflow_runs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(
            f"mlflow: failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}"
        )
        return
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    their_rate = theirs["points"] / theirs["log_s"]
    print(
        f"mlflow {theirs['version']} log_metric x {theirs['points']:,} (sqlite): {theirs['log_s']:.2f} s "
        f"({their_rate:,.0f} points/s)"
    )
    print(
        f"mlflow  search_runs with the same filter on {theirs['runs']:,} runs: {theirs['search_s']:.2f} s "
        f"(creating them took {theirs['create_s']:.1f} s)"
    )
    print(f"ratio   logging throughput mlops / mlflow: {rate / their_rate:,.0f}x (goal >= 50x)")


if __name__ == "__main__":
    main()
