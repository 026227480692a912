"""The tracking API for real: subprocesses running an instrumented script, real signals, the real SQLite file."""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Result

import mlops
from mlops.errors import UsageError
from mlops.services.runs import RunRefused
from mlops.stores.tracking import InvalidValue, ParamConflict, RunStatus, StoreUnavailable
from mlops.stores.tracking_sqlite import SqliteTrackingStore

SCRIPT = Path(__file__).parent / "fixtures" / "train_script.py"


@pytest.fixture
def repo(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("MLOPS_TRACKING_URI", "MLOPS_PARAMS", "MLOPS_REPO", "MLOPS_HEARTBEAT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLOPS_USER", "lead@example.com")
    monkeypatch.chdir(example_repo)
    yield example_repo


def db(repo: Path) -> sqlite3.Connection:
    return sqlite3.connect(repo / ".mlops" / "tracking.db")


def run_row(repo: Path, run_id: str) -> tuple[str, int, str]:
    with db(repo) as conn:
        row = conn.execute("SELECT status, partial, error FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def steps(repo: Path, run_id: str, key: str = "loss") -> list[int]:
    with db(repo) as conn:
        return [
            r[0]
            for r in conn.execute("SELECT step FROM metrics WHERE run_id = ? AND key = ? ORDER BY step", (run_id, key))
        ]


def start_script(repo: Path, mode: str, marker: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), mode, str(marker)],
        cwd=repo,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(path: Path, proc: subprocess.Popen[bytes], limit: float = 60) -> str:
    deadline = time.monotonic() + limit
    while not path.exists() or not path.read_text():
        if proc.poll() is not None:
            raise AssertionError(f"script ended early: {proc.stderr.read().decode() if proc.stderr else ''}")
        assert time.monotonic() < deadline, "the script never reached step 50"
        time.sleep(0.05)
    return path.read_text()


# --------------------------------------------------------------------------- honest end states


@pytest.mark.parametrize("signum, state", [(signal.SIGTERM, "killed"), (signal.SIGINT, "killed")])
def test_a_script_stopped_by_a_signal_halfway_is_killed_and_keeps_its_metrics(
    repo: Path, tmp_path: Path, signum: int, state: str
) -> None:
    marker = tmp_path / "marker"
    proc = start_script(repo, "wait", marker)
    run_id = wait_for(marker, proc)
    proc.send_signal(signum)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    status, partial, error = run_row(repo, run_id)
    assert (status, partial) == (state, 1)
    assert "signal" in error or "KeyboardInterrupt" in error
    logged = steps(repo, run_id)
    assert len(logged) > 50 and logged == list(range(len(logged)))  # everything up to the signal, in order


def test_a_script_that_raises_is_failed_with_the_reason_and_keeps_what_it_logged(repo: Path, tmp_path: Path) -> None:
    proc = start_script(repo, "raise", tmp_path / "marker")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and b"training diverged" in err
    with db(repo) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM runs").fetchone()
    status, partial, error = run_row(repo, run_id)
    assert (status, partial) == ("failed", 1)
    assert error == "RuntimeError: training diverged at step 30"
    assert steps(repo, run_id) == list(range(31))


def test_a_killed_process_is_marked_crashed_by_the_next_reader(
    repo: Path, tmp_path: Path, mlops: Callable[..., Result]
) -> None:
    marker = tmp_path / "marker"
    proc = start_script(repo, "wait", marker, {"MLOPS_HEARTBEAT_SECONDS": "0.2"})
    run_id = wait_for(marker, proc)
    time.sleep(0.5)  # let a batch or two land
    proc.kill()
    proc.wait(timeout=30)
    assert run_row(repo, run_id)[0] == "running"  # nobody said otherwise yet
    result = mlops("runs", "show", run_id[:10], "--format", "json", "--repo", str(repo))
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    assert shown["status"] == "crashed" and shown["partial"] is True
    assert shown["history"]["loss"], "what was flushed before the kill is kept"
    assert run_row(repo, run_id)[:2] == ("crashed", 1)  # written back for every later reader


def test_finished_runs_record_environment_params_metrics_and_artifacts(repo: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07" * 100)
    big = tmp_path / "predictions.csv"
    big.write_text("id,score\n" + "".join(f"{i},0.5\n" for i in range(300_000)), encoding="utf-8")
    with mlops.start_run(
        project="retention",
        experiment="churn-gbm",
        params={"depth": 6},
        tags={"team": "growth"},
        datasets=["dataset://customers@1"],
    ) as run:
        run.log_metric("loss", 0.31, step=10)
        run.log_metrics({"auc": 0.91, "accuracy": 0.87})
        run.log_metric("auc", 0.92)  # no step: the next one for this key
        small = run.log_artifact(model)
        packed = run.log_artifact(big)
    assert run.status == "finished"
    store = SqliteTrackingStore(repo / ".mlops" / "tracking.db")
    record = store.get_run(run.run_id)
    store.close()
    assert record is not None
    assert record.status is RunStatus.FINISHED and not record.partial
    assert record.params == {"depth": 6} and record.tags == {"team": "growth"}
    assert record.metrics == {"loss": 0.31, "auc": 0.92, "accuracy": 0.87}
    assert record.metric_steps["auc"] == 1
    assert record.inputs == ["dataset://customers@1"]
    env = record.environment
    assert env["git"]["commit"] and env["git"]["dirty"] is False
    assert env["python"]["version"].startswith("3.") and env["packages"]["count"] > 10
    assert env["packages"]["digest"].startswith("sha256:") and env["packages"]["lock_blob"].startswith("sha256:")
    assert env["host"] and env["cpu"]["count"] >= 1 and env["command"][0] == sys.executable
    assert {a.name for a in record.artifacts} == {"model.onnx", "predictions.csv"}
    assert small.compression == "" and small.blob == small.digest
    assert packed.compression == "gzip" and packed.stored_size < packed.size / 3
    blob = repo / ".mlops" / "store" / "sha256" / packed.blob[7:9] / packed.blob[9:]
    assert gzip.decompress(blob.read_bytes()) == big.read_bytes()


def test_a_dirty_tree_is_recorded_with_a_digest_of_the_diff(repo: Path) -> None:
    (repo / "registry" / "experiments" / "retention.yaml").write_text(
        (repo / "registry" / "experiments" / "retention.yaml").read_text() + "# edited\n"
    )
    with mlops.start_run(project="retention", experiment="churn-gbm") as first:
        pass
    (repo / "scratch.py").write_text("x = 1\n")
    with mlops.start_run(project="retention", experiment="churn-gbm") as second:
        pass
    git_a, git_b = first.environment["git"], second.environment["git"]
    assert git_a["dirty"] is True and git_b["dirty"] is True
    assert git_a["diff_digest"] != git_b["diff_digest"]


def test_the_user_overrides_params_with_mlops_params(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_PARAMS", "depth=8,lr=0.05")
    with mlops.start_run(project="retention", experiment="churn-gbm", params={"depth": 6, "lr": 0.1, "seed": 1}) as run:
        assert run.params == {"depth": 8, "lr": 0.05, "seed": 1}
    monkeypatch.setenv("MLOPS_PARAMS", '{"depth": 3}')
    with mlops.start_run(project="retention", experiment="churn-gbm", params={"depth": 6}) as run2:
        assert run2.params == {"depth": 3}
    store = SqliteTrackingStore(repo / ".mlops" / "tracking.db")
    record = store.get_run(run.run_id)
    store.close()
    assert record is not None and record.tags["mlops.params.overridden"] == "depth,lr"


# --------------------------------------------------------------------------- bad input


def test_bad_values_are_refused_at_once_and_nothing_else_is_lost(repo: Path) -> None:
    with mlops.start_run(project="retention", experiment="churn-gbm", params={"depth": 6}) as run:
        run.log_metric("loss", 0.5, step=0)
        for bad in (math.nan, math.inf, -math.inf, "high"):
            with pytest.raises(InvalidValue, match="not a"):
                run.log_metric("loss", bad, step=1)  # type: ignore[arg-type]
        with pytest.raises(InvalidValue, match="not a finite number"):
            run.log_metrics({"auc": 0.9, "loss": math.nan}, step=1)  # all or nothing
        run.log_param("depth", 6)  # the same value again is fine
        with pytest.raises(ParamConflict, match=r"already 6 .* cannot become 7"):
            run.log_param("depth", 7)
        with pytest.raises(ParamConflict):
            run.log_param("depth", "6")  # another type is another value
        for name in ("train/loss", "../etc/passwd", "..", ".hidden", "a b", "", "a\\b"):
            with pytest.raises(InvalidValue, match="name"):
                run.log_metric(name, 1.0)
            with pytest.raises(InvalidValue, match="name"):
                run.log_param(name, 1)
        with pytest.raises(InvalidValue, match="artifact name"):
            run.log_artifact(repo / "pyproject.toml", name="../../outside")
        run.log_metric("loss", 0.4, step=1)
    store = SqliteTrackingStore(repo / ".mlops" / "tracking.db")
    record = store.get_run(run.run_id)
    history = store.metric_history(run.run_id)
    store.close()
    assert record is not None and record.status is RunStatus.FINISHED
    assert [(p.step, p.value) for p in history["loss"]] == [(0, 0.5), (1, 0.4)]
    assert "auc" not in history and record.params == {"depth": 6}


@pytest.mark.parametrize("project", ["../retention", "retention/x", "Retention", ""])
def test_project_names_cannot_escape(repo: Path, project: str) -> None:
    with pytest.raises(UsageError, match="invalid name"):
        mlops.start_run(project=project, experiment="churn-gbm")


def test_a_database_locked_by_another_writer_is_a_clear_error_and_nothing_is_lost(repo: Path) -> None:
    run = mlops.start_run(project="retention", experiment="churn-gbm", flush_timeout=3.0)  # > the 2 s busy timeout
    run.log_metric("loss", 1.0, step=0)
    run.flush()
    other = sqlite3.connect(repo / ".mlops" / "tracking.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        for step in range(1, 1001):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        with pytest.raises(StoreUnavailable, match="locked by another writer") as caught:
            run.end()
        assert "1,000 logged value(s) could not be written" in caught.value.message
        assert "call run.flush() to try again" in caught.value.message
        assert steps(repo, run.run_id) == [0]  # what was committed before is intact
    finally:
        other.execute("ROLLBACK")
        other.close()
    run.flush(timeout=30)
    assert steps(repo, run.run_id) == list(range(1001))
    assert run_row(repo, run.run_id)[:2] == ("finished", 0)


def test_a_run_started_while_another_process_writes_waits_for_the_lock(repo: Path) -> None:
    mlops.start_run(project="retention", experiment="churn-gbm").end()  # the database exists
    other = sqlite3.connect(repo / ".mlops" / "tracking.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # held longer than one busy timeout (2 s)
    release = threading.Timer(3.5, lambda: other.execute("ROLLBACK"))
    release.start()
    try:
        run = mlops.start_run(project="retention", experiment="churn-gbm")
        assert not release.is_alive()  # it really waited for the other writer
        run.end()
    finally:
        release.join()
        other.close()
    assert run_row(repo, run.run_id)[:2] == ("finished", 0)


def test_a_run_started_while_another_process_holds_the_database_exclusively_waits(repo: Path) -> None:
    # Exclusive locking mode keeps even readers out: opening the store and reading the budget meet the lock
    # too, not only creating the run (a sweep's runs starting together on a loaded CI machine).
    mlops.start_run(project="retention", experiment="churn-gbm").end()
    other = sqlite3.connect(repo / ".mlops" / "tracking.db", isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA locking_mode = EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("COMMIT")  # the lock stays with the connection until it closes
    release = threading.Timer(3.5, other.close)
    release.start()
    try:
        run = mlops.start_run(project="retention", experiment="churn-gbm")
        assert not release.is_alive()  # it really waited
        run.end()
    finally:
        release.join()
    assert run_row(repo, run.run_id)[:2] == ("finished", 0)


def test_a_full_disk_is_a_clear_error_and_nothing_is_lost(repo: Path) -> None:
    store = SqliteTrackingStore(repo / ".mlops" / "tracking.db")
    run = mlops.start_run(project="retention", experiment="churn-gbm", store=store, flush_timeout=1.0)
    run.log_metric("loss", 1.0, step=0)
    run.flush()
    raw = store._connection().raw  # the disk "fills up": SQLite may not grow the file any more
    pages = raw.execute("PRAGMA page_count").fetchone()[0]
    raw.execute(f"PRAGMA max_page_count = {pages}")
    for step in range(1, 20_001):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    with pytest.raises(StoreUnavailable, match="disk is full"):
        run.flush()
    assert steps(repo, run.run_id) == [0]
    raw.execute("PRAGMA max_page_count = 1073741823")  # space freed
    run.end()
    assert steps(repo, run.run_id) == list(range(20_001))
    store.close()


# --------------------------------------------------------------------------- governance (UC-15)


def test_a_non_member_is_refused_with_the_reason(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_USER", "intruder@example.com")
    with pytest.raises(RunRefused, match=r"intruder@example.com is not a member of project 'retention'"):
        mlops.start_run(project="retention", experiment="churn-gbm")


def test_an_unknown_project_is_refused_with_a_suggestion(repo: Path) -> None:
    with pytest.raises(Exception, match=r"project 'retension' does not exist.*did you mean 'retention'"):
        mlops.start_run(project="retension", experiment="churn-gbm")


def _project(repo: Path, extra: str) -> None:
    path = repo / "registry" / "experiments" / "retention.yaml"
    path.write_text(path.read_text() + extra)


def test_data_and_budget_rules_need_review_and_approval_is_a_change_to_the_project_file(repo: Path) -> None:
    (repo / "registry" / "datasets" / "customers" / "dataset.yaml").write_text(
        (repo / "registry" / "datasets" / "customers" / "dataset.yaml").read_text().replace("internal", "confidential")
    )
    with pytest.raises(RunRefused, match="needs review because it reads confidential data") as caught:
        mlops.start_run(project="retention", experiment="churn-big", datasets=["dataset://customers@1"])
    assert "spec.experiments in registry/experiments/retention.yaml" in caught.value.message
    with pytest.raises(RunRefused, match="expects 200 CPU hours, more than 25%"):
        mlops.start_run(project="retention", experiment="churn-big", expected_cpu_hours=200)
    with pytest.raises(RunRefused, match="dataset dataset://other@1 is not allowed"):
        mlops.start_run(project="retention", experiment="churn-big", datasets=["dataset://other@1"])
    _project(repo, "  experiments:\n    - {name: churn-big, approvedBy: [growth-ml@example.com]}\n")
    with pytest.raises(RunRefused, match="none of them a lead"):
        mlops.start_run(project="retention", experiment="churn-big", expected_cpu_hours=200)
    text = (repo / "registry" / "experiments" / "retention.yaml").read_text()
    (repo / "registry" / "experiments" / "retention.yaml").write_text(
        text.replace("growth-ml@example.com]}", "lead@example.com]}")
    )
    with mlops.start_run(
        project="retention", experiment="churn-big", expected_cpu_hours=200, datasets=["dataset://customers@1"]
    ) as run:
        run.log_metric("auc", 0.9)
    assert run.status == "finished"


def test_viewers_cannot_start_runs(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = repo / "registry" / "experiments" / "retention.yaml"
    path.write_text(path.read_text().replace("role: member}", "role: viewer}"))
    monkeypatch.setenv("MLOPS_USER", "growth-ml@example.com")
    with pytest.raises(RunRefused, match="is a viewer"):
        mlops.start_run(project="retention", experiment="churn-gbm")


def test_an_exhausted_budget_refuses_new_runs(repo: Path) -> None:
    path = repo / "registry" / "experiments" / "retention.yaml"
    path.write_text(path.read_text().replace("cpuHours: 500", "cpuHours: 0.001"))
    with mlops.start_run(project="retention", experiment="churn-gbm", cpus=64) as run:
        time.sleep(0.2)  # 64 CPUs x 0.2 s > 0.001 h
    assert run.status == "finished"
    with pytest.raises(RunRefused, match=r"has used .* of its 0.001 CPU hours this month"):
        mlops.start_run(project="retention", experiment="churn-gbm")


def test_import_mlops_stays_cheap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys, mlops; print(sorted(m for m in sys.modules if m.startswith('mlops')))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "['mlops']"
    assert callable(mlops.start_run) and mlops.Run.__name__ == "Run"
