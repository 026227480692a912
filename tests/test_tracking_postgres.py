"""The PostgreSQL backend against a real server these tests start (skipped, saying why, without the binaries)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.stores.tracking import RunEnd, RunRecord, RunStatus, WriteBatch
from mlops.stores.tracking_postgres import PostgresTrackingStore


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found and name in ("initdb", "postgres"):
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, postgres = _bin("initdb"), _bin("postgres")
    if not initdb or not postgres:
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install -y postgresql)")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the 'postgres' user
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without a 'postgres' user to start the server as")
        shutil.chown(folder, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    server = subprocess.Popen(
        [*prefix, postgres, "-D", str(data), "-k", str(folder), "-p", str(port), "-h", "127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"postgres did not start: {server.stderr.read() if server.stderr else b''!r}"
                ) from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_postgres_backend_stores_and_reads_runs(postgres_url: str) -> None:
    store = PostgresTrackingStore(postgres_url)
    run = RunRecord(
        "a" * 32,
        "retention",
        "churn-gbm",
        user="lead@example.com",
        start_time=100.0,
        heartbeat=100.0,
        params={"depth": 6, "model": "gbm"},
        tags={"team": "growth"},
        inputs=["dataset://customers@1"],
    )
    store.create_run(run)
    store.write(WriteBatch(run.run_id, metrics=[("loss", s, 100.0 + s, 1 / (s + 1)) for s in range(5000)]))
    store.write(
        WriteBatch(run.run_id, metrics=[("loss", 3, 200.0, 9.0)], end=RunEnd(run.run_id, RunStatus.KILLED, 300.0))
    )
    again = PostgresTrackingStore(postgres_url)  # another process's view
    record = again.get_run(again.resolve("aaaa"))
    assert record is not None and record.status is RunStatus.KILLED and record.partial
    assert record.params == {"depth": 6, "model": "gbm"} and record.inputs == ["dataset://customers@1"]
    assert record.metrics["loss"] == pytest.approx(1 / 5000) and record.metric_counts["loss"] == 5001
    history = again.metric_history(run.run_id)["loss"]
    assert len(history) == 5001 and history[0].step == 0
    assert [r.run_id for r in again.list_runs(project="retention")] == [run.run_id]
    store.close()
    again.close()


def test_start_run_and_the_cli_use_postgres_by_url(
    postgres_url: str, example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import run_mlops

    from mlops.tracking import start_run

    monkeypatch.setenv("MLOPS_TRACKING_URI", postgres_url)
    monkeypatch.setenv("MLOPS_USER", "lead@example.com")
    monkeypatch.chdir(example_repo)
    with start_run(project="retention", experiment="pg-exp", params={"depth": 4}) as run:
        for step in range(1000):
            run.log_metric("loss", 1 / (step + 1), step=step)
        run.log_metric("auc", 0.9)
    result = run_mlops(
        "runs", "list", "--filter", "experiment == pg-exp and metrics.auc >= 0.9", "--repo", str(example_repo)
    )
    assert result.code == 0 and run.run_id[:12] in result.out and "finished" in result.out
    assert not (example_repo / ".mlops" / "tracking.db").exists()


def test_an_unreachable_server_is_one_clear_line(example_repo: Path) -> None:
    from conftest import run_mlops

    result = run_mlops(
        "runs",
        "list",
        "--repo",
        str(example_repo),
        env={"MLOPS_TRACKING_URI": f"postgresql://nobody@127.0.0.1:{_free_port()}/x"},
    )
    assert result.code == 2 and result.err.startswith("error: tracking postgresql://nobody@127.0.0.1")
    assert "cannot connect" in result.err and len(result.err.strip().splitlines()) == 1
