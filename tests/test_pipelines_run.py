"""Pipelines on a real local Ray (UC-04, UC-05): the example trains and registers a model; faults are survived.

Every run goes through the CLI as a user runs it: submitted as a Ray job, followed with ``--wait``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result, git
from test_serve_support import RayCluster, ray_cluster_fixture

from mlops.stores.tracking_sqlite import SqliteTrackingStore

__all__ = ["ray_cluster_fixture"]

FAULT_STEPS = '''
import os, signal, time
from pathlib import Path
import pandas as pd

def _count(markers, name):
    path = Path(markers) / name
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    return n

def source(markers):
    _count(markers, "source")
    return pd.DataFrame({"x": range(20)})

def flaky(table, markers):
    if _count(markers, "flaky") <= 2:
        raise RuntimeError("flaky failure")
    return table

def broken(table, markers):
    _count(markers, "broken")
    if (Path(markers) / "break").exists():
        raise ValueError("broken on purpose")
    return {"auc": 0.9}

def after_broken(metrics):
    return {"auc": metrics["auc"]}

def tiny(markers):
    return pd.DataFrame({"x": [1, 2, 3]})

def never(table, markers):
    _count(markers, "never")
    return table

def killed(markers):
    if _count(markers, "killed") == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"ok": 1.0}

def slow(markers):
    time.sleep(60)
    return {"ok": 1.0}

def after_flaky(table, markers):
    _count(markers, "after_flaky")
    return {"rows": float(len(table))}

def after_killed(m, markers):
    _count(markers, "after_killed")
    return {"ok": m["ok"]}

def after_slow(m, markers):
    _count(markers, "after_slow")
    return m

def same(markers, salt):
    _count(markers, "same")
    return pd.DataFrame({"x": range(5)})

def after_same(table, markers):
    _count(markers, "after_same")
    return {"rows": float(len(table))}

def text_model(context):
    path = Path(context.scratch) / "model.txt"
    path.write_text("not a model")
    return path
'''


def fault_pipeline(name: str, markers: Path, steps: str, registers: str = "") -> str:
    return f"""apiVersion: mlops/v1
kind: Pipeline
metadata:
  name: {name}
spec:
  params:
    markers: {json.dumps(str(markers))}
  steps:
{steps}{registers}"""


RETRIED = """    - name: source
      run: steps:source
      inputs: {markers: params.markers}
      outputs: {table: {type: table}}
    - name: flaky
      run: steps:flaky
      inputs: {table: steps.source.outputs.table, markers: params.markers}
      outputs: {table: {type: table, checks: {rows: {min: 10}}}}
      retries: {max: 2, backoff: 1s}
    - name: after-flaky
      run: steps:after_flaky
      inputs: {table: steps.flaky.outputs.table, markers: params.markers}
      outputs: {m: {type: metrics}}
"""

ALWAYS_FAILS = """    - name: source
      run: steps:source
      inputs: {markers: params.markers}
      outputs: {table: {type: table}}
    - name: broken
      run: steps:broken
      inputs: {table: steps.source.outputs.table, markers: params.markers}
      outputs: {metrics: {type: metrics}}
      retries: {max: 1, backoff: 1s}
    - name: report
      run: steps:after_broken
      inputs: {metrics: steps.broken.outputs.metrics}
      outputs: {metrics: {type: metrics}}
"""

FAILED_CHECK = """    - name: tiny
      run: steps:tiny
      inputs: {markers: params.markers}
      outputs: {table: {type: table, checks: {rows: {min: 10}, columns: [x, y]}}}
      retries: {max: 3, backoff: 1s}
    - name: never
      run: steps:never
      inputs: {table: steps.tiny.outputs.table, markers: params.markers}
      outputs: {table: {type: table}}
"""

KILLED = """    - name: killed
      run: steps:killed
      inputs: {markers: params.markers}
      outputs: {m: {type: metrics}}
      retries: {max: 1, backoff: 1s}
    - name: after-killed
      run: steps:after_killed
      inputs: {m: steps.killed.outputs.m, markers: params.markers}
      outputs: {m: {type: metrics}}
"""

TIMEOUT = """    - name: slow
      run: steps:slow
      inputs: {markers: params.markers}
      outputs: {m: {type: metrics}}
      timeout: 2s
    - name: after-slow
      run: steps:after_slow
      inputs: {m: steps.slow.outputs.m, markers: params.markers}
      outputs: {m: {type: metrics}}
"""

BAD_MODEL = """    - name: model
      run: steps:text_model
      outputs: {model: {type: model}}
"""


@pytest.fixture
def repo(example_repo: Path, ray_cluster: RayCluster) -> Path:
    return example_repo


def add_pipeline(repo: Path, name: str, text: str) -> None:
    folder = repo / "pipelines" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.yaml").write_text(text, encoding="utf-8")
    (folder / "steps.py").write_text(FAULT_STEPS, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"Add pipeline {name}")


def run_json(mlops: Callable[..., Result], repo: Path, *args: str) -> tuple[Result, dict]:
    result = mlops("pipeline", *args, "--format", "json", "--repo", str(repo))
    return result, json.loads(result.out) if result.out.strip().startswith("{") else {}


def counter(markers: Path, name: str) -> int:
    path = markers / name
    return int(path.read_text()) if path.exists() else 0


def test_example_pipeline_trains_checks_and_registers_on_a_branch(repo: Path, mlops: Callable[..., Result]) -> None:
    result, run = run_json(mlops, repo, "run", "train-churn", "--wait")
    assert result.code == 0, result.err + result.out
    assert run["status"] == "succeeded"
    assert {name: step["state"] for name, step in run["steps"].items()} == {
        "prepare": "succeeded",
        "train": "succeeded",
        "evaluate": "succeeded",
    }
    assert "step train: ok" in result.err  # progress lines while it ran
    metrics = run["steps"]["evaluate"]["outputs"]["metrics"]["summary"]["metrics"]
    assert metrics["auc"] >= 0.7  # the check the pipeline declares, met for real
    assert run["steps"]["prepare"]["outputs"]["train"]["summary"]["rows"] == 1500
    # Registered on a branch of its own, with lineage; the user's checkout did not move.
    registration = run["registration"]
    assert registration["error"] == "" and registration["version_key"] == "churn@4"
    branch = registration["branch"]
    assert branch == f"pipeline/train-churn/{run['run_id'][:12]}"
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert not (repo / "registry/models/churn/versions/4.yaml").exists()
    version = git(repo, "show", f"{branch}:registry/models/churn/versions/4.yaml")
    head = git(repo, "rev-parse", "main").strip()
    assert f"commit: {head}" in version and "pipeline: train-churn" in version
    assert "dataset://customers@1" in version
    assert run["steps"]["train"]["outputs"]["model"]["digest"] in version
    assert f"run: {run['tracking_run']}" in version
    # The pipeline run is a tracked run with its metrics and parameters.
    store = SqliteTrackingStore(repo / ".mlops" / "tracking.db")
    tracked = store.get_run(run["tracking_run"])
    store.close()
    assert tracked is not None and tracked.status.value == "finished"
    assert tracked.metrics["auc"] == metrics["auc"] and tracked.params["max_depth"] == 3
    assert tracked.inputs == ["dataset://customers@1"]
    # The validation gate accepts the branch as a pull request would see it.
    git(repo, "checkout", "-q", branch)
    assert mlops("validate", "--repo", str(repo), "--base", "main").code == 0
    git(repo, "checkout", "-q", "main")
    # A re-run with nothing changed comes from the cache without touching the cluster.
    again, cached = run_json(mlops, repo, "run", "train-churn", "--wait")
    assert again.code == 0
    assert "nothing to run" in again.err
    assert {s["state"] for s in cached["steps"].values()} == {"cached"}
    # A changed parameter re-runs the steps it reaches; prepare is unchanged and cached.
    changed, rerun = run_json(mlops, repo, "run", "train-churn", "--param", "max_depth=2", "--wait")
    assert changed.code == 0, changed.err
    states = [rerun["steps"][s]["state"] for s in ("prepare", "train", "evaluate")]
    assert states == ["cached", "succeeded", "succeeded"]
    listed = mlops("pipeline", "runs", "train-churn", "--repo", str(repo))
    assert listed.code == 0 and listed.out.count("train-churn") == 3


def test_a_step_that_fails_twice_is_retried_and_succeeds(
    repo: Path, mlops: Callable[..., Result], tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_pipeline(repo, "retried", fault_pipeline("retried", markers, RETRIED))
    submitted, queued = run_json(mlops, repo, "run", "retried")  # returns once the Ray job is submitted
    assert submitted.code == 0 and queued["status"] in ("queued", "running"), submitted.err
    result, run = run_json(mlops, repo, "show", queued["run_id"], "--follow")  # followed later
    assert result.code == 0, result.err + result.out
    assert run["status"] == "succeeded" and "step flaky: retrying (attempt 1)" in result.err
    flaky = run["steps"]["flaky"]
    assert flaky["state"] == "succeeded" and len(flaky["attempts"]) == 3
    assert [a["error"] for a in flaky["attempts"]][:2] == ["RuntimeError: flaky failure"] * 2
    assert counter(markers, "flaky") == 3 and counter(markers, "source") == 1
    # after_flaky waited in Ray behind each attempt of flaky; the failed ones did not count as its attempts
    after = run["steps"]["after-flaky"]
    assert after["state"] == "succeeded" and len(after["attempts"]) == 1 and counter(markers, "after_flaky") == 1
    assert after["outputs"]["m"]["summary"]["metrics"] == {"rows": 20.0}
    log = mlops("pipeline", "show", run["run_id"][:10], "--log", "flaky", "--repo", str(repo))
    assert "step flaky attempt 3" in log.out


def test_a_step_that_always_fails_keeps_earlier_outputs_and_resume_reruns_only_it(
    repo: Path, mlops: Callable[..., Result], tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / "break").write_text("1")
    add_pipeline(repo, "fails", fault_pipeline("fails", markers, ALWAYS_FAILS))
    result, run = run_json(mlops, repo, "run", "fails", "--wait")
    assert result.code == 1
    assert run["status"] == "failed"
    assert run["steps"]["source"]["state"] == "succeeded" and run["steps"]["source"]["outputs"]["table"]["digest"]
    broken = run["steps"]["broken"]
    assert broken["state"] == "failed" and len(broken["attempts"]) == 2
    assert broken["failure"] == "ValueError: broken on purpose (after 2 attempts)"
    assert run["steps"]["report"]["state"] == "skipped" and run["steps"]["report"]["attempts"] == []
    text = mlops("pipeline", "show", run["run_id"], "--repo", str(repo))
    assert "broken: ValueError: broken on purpose" in text.out
    # The cause goes away; resume redoes the failed step and what follows, not the rest.
    (markers / "break").unlink()
    resumed, again = run_json(mlops, repo, "resume", run["run_id"][:8], "--wait")
    assert resumed.code == 0, resumed.err + resumed.out
    assert again["resumed_from"] == run["run_id"]
    assert again["steps"]["source"]["state"] == "cached"
    assert again["steps"]["source"]["cached_from"] == run["run_id"]
    assert [again["steps"][s]["state"] for s in ("broken", "report")] == ["succeeded", "succeeded"]
    assert counter(markers, "source") == 1 and counter(markers, "broken") == 3
    refused = mlops("pipeline", "resume", again["run_id"], "--repo", str(repo))
    assert refused.code == 2 and "nothing to resume" in refused.err  # a usage error


def test_a_failed_output_check_stops_the_pipeline_before_downstream_runs(
    repo: Path, mlops: Callable[..., Result], tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_pipeline(repo, "checked", fault_pipeline("checked", markers, FAILED_CHECK))
    result, run = run_json(mlops, repo, "run", "checked", "--wait")
    assert result.code == 1
    tiny = run["steps"]["tiny"]
    assert tiny["state"] == "failed" and len(tiny["attempts"]) == 1  # a check is not retried
    assert "output table: check rows: rows 3 is below the minimum 10" in tiny["failure"]
    assert "output table: check columns: missing y" in tiny["failure"]
    assert run["steps"]["never"]["state"] == "skipped"
    assert counter(markers, "never") == 0


def test_a_worker_killed_mid_step_is_retried(repo: Path, mlops: Callable[..., Result], tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_pipeline(repo, "killed", fault_pipeline("killed", markers, KILLED))
    result, run = run_json(mlops, repo, "run", "killed", "--wait")
    assert result.code == 0, result.err + result.out
    attempts = run["steps"]["killed"]["attempts"]
    assert len(attempts) == 2 and attempts[0]["error"] and attempts[1]["error"] == ""
    assert counter(markers, "killed") == 2
    after = run["steps"]["after-killed"]
    assert after["state"] == "succeeded" and len(after["attempts"]) == 1 and counter(markers, "after_killed") == 1


def test_a_step_past_its_timeout_is_stopped(repo: Path, mlops: Callable[..., Result], tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_pipeline(repo, "slow", fault_pipeline("slow", markers, TIMEOUT))
    result, run = run_json(mlops, repo, "run", "slow", "--wait")
    assert result.code == 1
    assert run["steps"]["slow"]["failure"] == "timed out after 2 s"
    # its dependent was waiting behind the cancelled task: skipped, never an attempt of its own
    assert run["steps"]["after-slow"]["state"] == "skipped" and run["steps"]["after-slow"]["attempts"] == []
    assert counter(markers, "after_slow") == 0


def test_a_step_behind_a_rerun_whose_output_did_not_change_comes_from_the_cache(
    repo: Path, mlops: Callable[..., Result], tmp_path: Path
) -> None:
    # after_same is submitted before same finishes, so its cache key (which needs same's output digest)
    # is computed and looked up by its worker: the same output must still mean a cache hit.
    markers = tmp_path / "markers"
    markers.mkdir()
    text = fault_pipeline(
        "same",
        markers,
        """    - name: same
      run: steps:same
      inputs: {markers: params.markers, salt: params.salt}
      outputs: {table: {type: table}}
    - name: after-same
      run: steps:after_same
      inputs: {table: steps.same.outputs.table, markers: params.markers}
      outputs: {m: {type: metrics}}
""",
    ).replace("  params:\n", "  params:\n    salt: 1\n")
    add_pipeline(repo, "same", text)
    first, run1 = run_json(mlops, repo, "run", "same", "--wait")
    assert first.code == 0, first.err + first.out
    second, run2 = run_json(mlops, repo, "run", "same", "--param", "salt=2", "--wait")
    assert second.code == 0, second.err + second.out
    assert run2["steps"]["same"]["state"] == "succeeded" and counter(markers, "same") == 2
    after = run2["steps"]["after-same"]
    assert after["state"] == "cached" and after["cached_from"] == run1["run_id"], after
    assert after["attempts"] == [] and counter(markers, "after_same") == 1
    assert after["outputs"] == run1["steps"]["after-same"]["outputs"]


def test_registration_failure_keeps_the_artifact_and_says_how_to_register_it(
    repo: Path, mlops: Callable[..., Result], tmp_path: Path
) -> None:
    registers = "  registers:\n    model: churn\n    output: steps.model.outputs.model\n"
    add_pipeline(repo, "badmodel", fault_pipeline("badmodel", tmp_path, BAD_MODEL, registers))
    result = mlops("pipeline", "run", "badmodel", "--wait", "--repo", str(repo))
    assert result.code == 1
    assert "registration of churn FAILED" in result.out
    assert "register it by hand: mlops model register" in result.out
    kept = next((repo / ".mlops/pipelines/runs").glob("*/register/model.txt"))
    assert kept.read_text() == "not a model"
    assert git(repo, "branch", "--list", "pipeline/badmodel/*").strip() == ""


def test_pipeline_validate_imports_the_code_and_says_what_would_fit(
    repo: Path, mlops: Callable[..., Result], tmp_path: Path
) -> None:
    steps = """    - name: big
      run: steps:source
      inputs: {markers: params.markers}
      outputs: {table: {type: table}}
      resources: {cpus: 64}
    - name: needs-package
      run: needy:train
      outputs: {m: {type: metrics}}
"""
    add_pipeline(repo, "heavy", fault_pipeline("heavy", tmp_path, steps))
    (repo / "pipelines/heavy/needy.py").write_text("import not_installed_anywhere\n\ndef train():\n    return {}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "needy step")
    result = mlops("pipeline", "validate", "heavy", "--repo", str(repo))
    assert result.code == 1
    lines = result.out.splitlines()
    assert any(
        line.startswith("pipelines/heavy/pipeline.yaml:13:7:")
        and "step big: no node can run it: it asks for 64 CPU, 0 GPU; the largest node has 8 CPU" in line
        for line in lines
    ), result.out
    assert any(
        line.startswith("pipelines/heavy/pipeline.yaml:15:7:")
        and "needy:train: importing needy failed: ModuleNotFoundError" in line
        for line in lines
    ), result.out
    assert "resources checked against" in result.err
    # The repository checks cannot see the cluster: a run starts, and fails those steps at once, not hanging.
    result, run = run_json(mlops, repo, "run", "heavy", "--wait")
    assert result.code == 1
    assert run["steps"]["big"]["failure"].startswith("no node can run it: it asks for 64 CPU")
    assert run["steps"]["big"]["attempts"] == []
    assert "ModuleNotFoundError" in run["steps"]["needs-package"]["failure"]
    ok = mlops("pipeline", "validate", "train-churn", "--repo", str(repo))
    assert ok.code == 0, ok.out + ok.err


SCHEDULED = """    - name: tick
      run: steps:source
      inputs: {markers: params.markers}
      outputs: {table: {type: table}}
      cache: false
"""


def test_a_schedule_applied_by_reconcile_fires_with_no_cli_running(
    repo: Path, mlops: Callable[..., Result], tmp_path: Path
) -> None:
    from mlops.stores.pipeline_runs import PipelineRunStore

    markers = tmp_path / "markers"
    markers.mkdir()
    add_pipeline(repo, "ticker", fault_pipeline("ticker", markers, SCHEDULED))
    environment = """apiVersion: mlops/v1
kind: Environment
metadata:
  name: nightly
spec:
  cluster: {address: local}
  pipelines:
    - name: ticker
      schedule: "* * * * * */4"
"""
    (repo / "environments/nightly.yaml").write_text(environment, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Schedule ticker every 4 s in nightly")
    applied = git(repo, "rev-parse", "HEAD").strip()
    planned = mlops("plan", "--env", "nightly", "--repo", str(repo))
    assert planned.code == 2 and "schedule ticker at '* * * * * */4'" in planned.out, planned.out + planned.err
    result = mlops("reconcile", "--env", "nightly", "--repo", str(repo))
    assert result.code == 0, result.err + result.out
    shown = mlops("pipeline", "schedules", "--env", "nightly", "--repo", str(repo))
    assert shown.code == 0 and "ticker" in shown.out and applied[:12] in shown.out, shown.out + shown.err
    # Move HEAD on: the scheduled runs still use the commit that was applied.
    (repo / "README.md").write_text("later work\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Unrelated work")
    runs = PipelineRunStore(repo / ".mlops" / "pipelines")
    deadline = time.monotonic() + 90
    fired = []
    while time.monotonic() < deadline and not fired:
        fired = [s for s in runs.list_states("ticker") if s.status == "succeeded"]
        time.sleep(1)
    assert fired, "no scheduled run succeeded within 90 s"
    assert fired[0].trigger == "schedule * * * * * */4" and fired[0].commit == applied
    assert counter(markers, "source") >= 1
    again = mlops("reconcile", "--env", "nightly", "--repo", str(repo))
    assert again.code == 0 and "no changes" in again.out + again.err, again.out + again.err
    # Taking the pipeline out of the environment stops the schedule (nothing made is deleted: no --prune).
    (repo / "environments/nightly.yaml").write_text(environment.split("  pipelines:")[0], encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Stop ticker")
    stopped = mlops("reconcile", "--env", "nightly", "--repo", str(repo))
    assert stopped.code == 0 and "stop scheduling ticker" in stopped.out + stopped.err, stopped.out + stopped.err
    time.sleep(6)  # a run already started may finish; none may start after this
    settled = len(runs.list_states("ticker"))
    time.sleep(9)
    assert len(runs.list_states("ticker")) == settled


def test_a_trained_model_is_proposed_as_a_pull_request(
    repo: Path, mlops: Callable[..., Result], tmp_path: Path
) -> None:
    from test_register import FakeGitHub

    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    github = FakeGitHub()
    try:
        env = {"GITHUB_TOKEN": "t0ken", "GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": "acme/ml-state"}
        result = mlops(
            "pipeline", "run", "train-churn", "--param", "n_estimators=10", "--pr", "--wait", "--repo", str(repo),
            env=env,
        )
    finally:
        github.close()
    assert result.code == 0, result.err + result.out
    assert "pull request: https://github.example/acme/ml-state/pull/7" in result.out
    [(_, path, body, _)] = github.requests
    assert path == "/repos/acme/ml-state/pulls" and body["base"] == "main"
    branch = str(body["head"])
    assert branch.startswith("pipeline/train-churn/")
    assert git(remote, "log", "-1", "--format=%s", branch).startswith("Register churn@")
