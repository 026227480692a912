"""Shared by the tests that run a real local Ray cluster (no tests here).

Test modules import ``ray_cluster_fixture`` and ``fresh_serve_fixture`` and ask for ``ray_cluster`` /
``fresh_serve``.

* ``ray_cluster``: one embedded cluster per test module (``mlops cluster up`` semantics, in a temporary
  state folder with its own ports), stopped at the end of the module.
* ``fresh_serve``: before a test, every Serve application and every environment's state actor is removed,
  so tests of one module do not see each other's deployments.
* :class:`Load`: closed-loop HTTP clients (each sends its next request when the previous answer came) that
  record status, version header and errors per request, for zero-downtime checks.
* :func:`background`: a CLI command in a subprocess whose stderr lines are time-stamped as they arrive.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import git

from mlops.appliers.cluster import ClusterTarget, LocalCluster, connected, free_port
from mlops.appliers.serve import ServeApi

MLOPS = Path(sys.executable).parent / "mlops"
ENV_FILE = "environments/development.yaml"


@dataclass
class RayCluster:
    state_dir: Path
    local: LocalCluster
    target: ClusterTarget
    serve_port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.serve_port}{path}"

    def api(self) -> ServeApi:
        return ServeApi(self.target)

    def apps(self) -> dict[str, str]:
        return {name: app.status for name, app in self.api().applications().items()}

    def reset(self) -> None:
        """No applications, no environment records: as if nothing had ever been reconciled."""
        api = self.api()
        if api.applications():
            api.deploy({"applications": [], "http_options": self.target.http_options()})
            api.wait([], absent=list(api.applications()), timeout=120)
        import ray

        with connected(self.target):
            for actor in ray.util.list_named_actors(all_namespaces=True):
                if actor["name"].startswith("mlops-env-"):
                    with contextlib.suppress(Exception):
                        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]))


@pytest.fixture(scope="module", name="ray_cluster")
def ray_cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    state_dir = tmp_path_factory.mktemp("ray-cluster")
    previous = os.environ.get("MLOPS_CLUSTER_DIR")
    os.environ["MLOPS_CLUSTER_DIR"] = str(state_dir)
    local = LocalCluster(state_dir)
    port = free_port()
    try:
        target, _ = local.up(num_cpus=8, serve_port=port, timeout=300)
        yield RayCluster(state_dir, local, target, port)
    finally:
        local.down()
        if previous is None:
            os.environ.pop("MLOPS_CLUSTER_DIR", None)
        else:
            os.environ["MLOPS_CLUSTER_DIR"] = previous


@pytest.fixture(name="fresh_serve")
def fresh_serve_fixture(ray_cluster: RayCluster) -> RayCluster:
    ray_cluster.reset()
    return ray_cluster


# --------------------------------------------------------------------------- HTTP


def post(url: str, inputs: Any, timeout: float = 30) -> tuple[int, dict[str, str], Any]:
    parsed = url.removeprefix("http://")
    host_port, _, path = parsed.partition("/")
    host, _, port = host_port.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", "/" + path, json.dumps({"inputs": inputs}), {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        try:
            document = json.loads(body)
        except ValueError:
            document = body.decode(errors="replace")
        return response.status, headers, document
    finally:
        conn.close()


@dataclass(frozen=True)
class Sample:
    started: float
    status: int  # -1: no answer (connection error, timeout)
    version: str | None
    error: str = ""


@dataclass
class Load:
    """``clients`` closed-loop HTTP clients on one route, each with a keep-alive connection."""

    port: int
    path: str
    clients: int = 4
    samples: list[Sample] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            row = [round(rng.uniform(10, 120), 1), rng.randint(1, 60), rng.randint(0, 6), rng.randint(18, 80)]
            body = json.dumps({"inputs": [row]})
            started = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                sample = Sample(started, response.status, response.getheader("X-Model-Version"))
            except Exception as exc:
                sample = Sample(started, -1, None, f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
            with self._lock:
                self.samples.append(sample)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while len(self.samples) < count and time.time() < deadline:
            time.sleep(0.1)

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.status != 200]

    def mix(self, start: float, end: float) -> Counter[str]:
        return Counter(str(s.version) for s in self.samples if start <= s.started < end and s.status == 200)


# --------------------------------------------------------------------------- background CLI


@dataclass
class Background:
    process: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)

    def wait_line(self, text: str, timeout: float = 300) -> float:
        """The time the first stderr line containing ``text`` arrived."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for at, line in list(self.lines):
                if text in line:
                    return at
            if self.process.poll() is not None:
                time.sleep(0.5)
                for at, line in list(self.lines):
                    if text in line:
                        return at
                raise AssertionError(f"exited {self.process.returncode} without {text!r}:\n{self.text}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{self.text}")

    def finish(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        time.sleep(0.2)
        return code

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def background(*args: str, cwd: Path) -> Background:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    process = subprocess.Popen(
        [str(MLOPS), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    job = Background(process)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            job.lines.append((time.time(), line.rstrip("\n")))

    threading.Thread(target=pump, daemon=True).start()
    return job


def run(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return subprocess.run([str(MLOPS), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- repository edits


def set_env_file(repo: Path, text: str) -> None:
    (repo / ENV_FILE).write_text(text, encoding="utf-8")


def add_version(repo: Path, model: str, version: int, like: int, example: list[list[float]] | None = None,
                digest_of: int | None = None) -> None:
    """Register ``model@version`` as a copy of version ``like`` (optionally another signature example, or the
    artifact of version ``digest_of``)."""
    import re

    folder = repo / "registry" / "models" / model / "versions"
    text = (folder / f"{like}.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^  version: \d+$", f"  version: {version}", text)
    if example is not None:
        text = re.sub(r"(?m)^    example: .*$", f"    example: {json.dumps(example)}", text)
    if digest_of is not None:
        other = (folder / f"{digest_of}.yaml").read_text(encoding="utf-8")
        for key in ("digest", "size", "format", "filename"):
            found = re.search(rf"(?m)^    {key}: .*$", other)
            assert found is not None
            text = re.sub(rf"(?m)^    {key}: .*$", found.group(0), text)
    (folder / f"{version}.yaml").write_text(text, encoding="utf-8")


ENV_HEAD = """\
apiVersion: mlops/v1
kind: Environment
metadata:
  name: development
spec:
  cluster:
    address: local
  deployments:
    - name: churn
      model: churn
      version: {version}
      routePrefix: /churn
      resources: {{cpus: 0.5}}
"""
BLUE_GREEN = """\
      strategy:
        type: blue-green
        steps:
          - {{weight: 10, pause: {pause}, analysis: {{maxErrorRate: 0.01, minAgreement: {agreement}, minRequests: 30}}}}
          - {{weight: 50, pause: {pause}, analysis: {{maxErrorRate: 0.01}}}}
          - {{weight: 100}}
        gracePeriod: {grace}
"""


def environment(version: int, pause: str = "6s", agreement: float = 0.9, grace: str = "3s") -> str:
    return ENV_HEAD.format(version=version) + BLUE_GREEN.format(pause=pause, agreement=agreement, grace=grace)


def commit_env(repo: Path, text: str, message: str) -> None:
    set_env_file(repo, text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def serve_churn_3(repo: Path, mlops) -> None:
    commit_env(repo, environment(3), "development serves churn@3 only")
    result = mlops("reconcile", "--env", "development", "--repo", str(repo))
    assert result.code == 0, result.out + result.err
