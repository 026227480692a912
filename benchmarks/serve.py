"""Requests per second and p50 / p99 latency of churn@3 served through our router and model server, against the
same model as a bare Ray Serve deployment, measured in the same run on the same local Ray cluster.

::

    .venv/bin/python benchmarks/serve.py                  # ~3 minutes: 3 rounds x 2 targets x 15 s
    .venv/bin/python benchmarks/serve.py --seconds 30 --clients 8 --rounds 5
    .venv/bin/python benchmarks/serve.py --fail-on-miss   # exit 1 when a goal is missed

What runs where: a temporary embedded cluster (its own state folder and ports, stopped at the end), a temporary
copy of the example repository whose ``development`` environment serves churn@3 only, reconciled with
``mlops reconcile`` (router application at ``/churn`` + model server application), and next to it a bare
deployment at ``/bare`` (this file's :class:`Bare`: the same artifact, the same scoring code
``mlops.inspect.loading.load_scorer``, one replica with the same CPUs, no router, no prediction log, no
headers). Both get the same closed-loop HTTP clients (processes with keep-alive connections, each sending its
next request when the answer came); rounds alternate between the two targets, and the medians are compared.

Goals: throughput through the router >= 0.85x the bare deployment's; p50 latency <= 1.2x.

``--throughput-optimized`` starts the cluster with Ray Serve's ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (user code
on the replica's event loop, gRPC between deployments, direct ingress), for both sides alike.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MLOPS = Path(sys.executable).parent / "mlops"
ROW = [[59.9, 12, 1, 34]]


# --------------------------------------------------------------------------- the bare deployment (runs in Serve)


class Bare:
    def __init__(self, path: str, signature: dict[str, Any]) -> None:
        from mlops.inspect.loading import load_scorer
        from mlops.manifests.common import ArtifactFormat, Signature, Task

        self.scorer = load_scorer(Path(path), ArtifactFormat.ONNX, Task.CLASSIFICATION,
                                  Signature.model_validate(signature))

    async def __call__(self, request: Any) -> Any:
        import numpy as np
        from starlette.responses import JSONResponse

        matrix = np.asarray((await request.json())["inputs"], dtype=np.float64)
        return JSONResponse({
            "predictions": [int(v) for v in self.scorer.predict(matrix)],
            "probabilities": [round(float(v), 6) for v in self.scorer.predict_proba(matrix)],
        })


def bare_app(args: dict[str, Any]) -> Any:
    from ray import serve

    return serve.deployment(name="Bare")(Bare).bind(args["path"], args["signature"])


# --------------------------------------------------------------------------- load


def _client(port: int, path: str, seconds: float, out: Any) -> None:
    import http.client

    body = json.dumps({"inputs": ROW})
    latencies: list[float] = []
    errors = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        started = time.perf_counter()
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors += 1
        except Exception:
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        latencies.append(time.perf_counter() - started)
    out.put((latencies, errors))


def measure(port: int, path: str, clients: int, seconds: float) -> dict[str, float]:
    queue: Any = mp.Queue()
    procs = [mp.Process(target=_client, args=(port, path, seconds, queue)) for _ in range(clients)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join()
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    n = len(latencies)
    return {
        "requests": n,
        "errors": errors,
        "rps": n / seconds,
        "p50_ms": latencies[n // 2] * 1000 if n else float("nan"),
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
    }


# --------------------------------------------------------------------------- setup


def _run(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([str(MLOPS), *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"mlops {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def make_repo(dest: Path, cpus: float) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import git, make_example_repo

    repo = make_example_repo(dest)
    (repo / "environments" / "development.yaml").write_text(
        "apiVersion: mlops/v1\nkind: Environment\nmetadata:\n  name: development\nspec:\n  deployments:\n"
        f"    - {{name: churn, model: churn, version: 3, routePrefix: /churn, resources: {{cpus: {cpus}}}}}\n",
        encoding="utf-8",
    )
    git(repo, "commit", "-qam", "development serves churn@3 only")
    return repo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=float, default=0.5, help="CPUs of each model replica (both sides)")
    parser.add_argument("--throughput-optimized", action="store_true",
                        help="start the cluster with RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (both sides)")
    parser.add_argument("--fail-on-miss", action="store_true")
    options = parser.parse_args()
    if options.throughput_optimized:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"  # passed to the head, so to every replica

    from mlops.appliers.cluster import LocalCluster, free_port
    from mlops.appliers.serve import ServeApi

    work = Path(tempfile.mkdtemp(prefix="mlops-bench-serve-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["MLOPS_CLUSTER_DIR"] = str(work / "cluster")
    os.environ["MLOPS_CLUSTER_DIR"] = env["MLOPS_CLUSTER_DIR"]
    local = LocalCluster(work / "cluster")
    port = free_port()
    try:
        print(f"starting a local Ray cluster (state {work / 'cluster'}) ...", flush=True)
        target, _ = local.up(num_cpus=4, serve_port=port)
        repo = make_repo(work / "repo", options.cpus)
        print("reconciling development (router + model server for churn@3) ...", flush=True)
        _run("reconcile", "--env", "development", cwd=repo, env=env)
        api = ServeApi(target)
        apps = api.applications()
        digest = "d7dabec5b366ac9015289256d35d3284e79205ef4a6fd722277cf98220f56e37"
        signature = apps["development.churn.v3"].config["args"]["signature"]
        bare = {
            "name": "bare",
            "route_prefix": "/bare",
            "import_path": "serve:bare_app",
            "runtime_env": {"env_vars": {"PYTHONPATH": str(ROOT / "benchmarks")}},
            "args": {"path": str(repo / ".mlops" / "store" / "sha256" / digest[:2] / digest[2:]),
                     "signature": signature},
            "deployments": [{"name": "Bare", "num_replicas": 1, "max_ongoing_requests": 64,
                             "ray_actor_options": {"num_cpus": options.cpus}}],
        }
        config = {"http_options": target.http_options(), "applications": [a.config for a in apps.values()] + [bare]}
        print("deploying the bare deployment at /bare next to it ...", flush=True)
        api.deploy(config)
        api.wait([*apps, "bare"], timeout=300)
        results: dict[str, list[dict[str, float]]] = {"/churn": [], "/bare": []}
        for path in results:  # warm both up
            measure(port, path, options.clients, 3)
        for round_number in range(options.rounds):
            for path in (["/churn", "/bare"] if round_number % 2 == 0 else ["/bare", "/churn"]):
                result = measure(port, path, options.clients, options.seconds)
                results[path].append(result)
                print(f"round {round_number + 1} {path:7} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                      f"p99 {result['p99_ms']:7.2f} ms  ({int(result['requests'])} requests, "
                      f"{int(result['errors'])} errors)", flush=True)
        ours = {k: statistics.median(r[k] for r in results["/churn"]) for k in ("rps", "p50_ms", "p99_ms")}
        base = {k: statistics.median(r[k] for r in results["/bare"]) for k in ("rps", "p50_ms", "p99_ms")}
        throughput = ours["rps"] / base["rps"]
        p50 = ours["p50_ms"] / base["p50_ms"]
        print()
        print(f"{'':24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}   (medians of {options.rounds} rounds, "
              f"{options.clients} clients, {options.seconds:g} s each)")
        print(f"{'router + model server':24}{ours['rps']:10.1f}{ours['p50_ms']:10.2f}{ours['p99_ms']:10.2f}")
        print(f"{'bare Serve deployment':24}{base['rps']:10.1f}{base['p50_ms']:10.2f}{base['p99_ms']:10.2f}")
        ok_rps = throughput >= 0.85
        ok_p50 = p50 <= 1.2
        print(f"throughput ratio = {throughput:.2f}   goal >= 0.85   {'PASS' if ok_rps else 'MISS'}")
        print(f"p50 ratio        = {p50:.2f}   goal <= 1.20   {'PASS' if ok_p50 else 'MISS'}")
        errors = sum(int(r["errors"]) for rs in results.values() for r in rs)
        print(f"errors: {errors}")
        return 1 if options.fail_on_miss and not (ok_rps and ok_p50) else 0
    finally:
        local.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
