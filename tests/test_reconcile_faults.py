"""Faults: an unreachable cluster, a damaged artifact, a change that does not fit, two reconcilers at once (and
pause / resume / abort of the rollout the first one runs), a reconcile killed mid-apply, stale plans and a
checkout whose history does not contain what was applied. Real local Ray, real HTTP, real git."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import git
from test_serve_support import (  # noqa: F401
    ENV_FILE,
    Load,
    RayCluster,
    add_version,
    background,
    commit_env,
    environment,
    fresh_serve_fixture,
    post,
    ray_cluster_fixture,
    serve_churn_3,
)

from mlops.appliers.cluster import free_port

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CHURN_3 = "sha256:d7dabec5b366ac9015289256d35d3284e79205ef4a6fd722277cf98220f56e37"


def test_an_unreachable_cluster_is_one_clear_error_and_nothing_changes(example_repo: Path, mlops) -> None:
    port = free_port()
    text = (example_repo / ENV_FILE).read_text(encoding="utf-8").replace("address: local",
                                                                          f"address: http://127.0.0.1:{port}")
    (example_repo / ENV_FILE).write_text(text, encoding="utf-8")
    git(example_repo, "commit", "-qam", "development on a cluster that is not there")
    head = git(example_repo, "rev-parse", "HEAD")
    for command in ("plan", "reconcile", "status"):
        result = mlops(command, "--env", "development", "--repo", str(example_repo))
        assert result.code == 1, (command, result.out, result.err)
        assert result.err.startswith(
            f"error: cannot reach the Ray dashboard of http://127.0.0.1:{port} at http://127.0.0.1:{port}: "
        ), result.err
        assert "Traceback" not in result.err and len(result.err.splitlines()) == 1
    assert git(example_repo, "rev-parse", "HEAD") == head
    assert git(example_repo, "status", "--porcelain") == ""


def test_without_a_local_cluster_plan_shows_what_would_be_created(
    example_repo: Path, mlops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_CLUSTER_DIR", str(tmp_path / "no-cluster"))
    planned = mlops("plan", "--env", "development", "--repo", str(example_repo))
    assert planned.code == 2, planned.out + planned.err
    assert "local (not running; state folder" in planned.out and "every application would be created" in planned.out
    shown = mlops("status", "--env", "development", "--repo", str(example_repo))
    assert shown.code == 0 and "health    not running" in shown.out
    paused = mlops("rollout", "pause", "--env", "development", "--repo", str(example_repo))
    assert paused.code == 1 and "the cluster is not running" in paused.err
    down = mlops("cluster", "status")
    assert down.code == 1 and "no local Ray cluster is running" in down.err


def test_damaged_artifact_and_what_does_not_fit_are_refused_before_any_traffic_moves(
    example_repo: Path, fresh_serve: RayCluster, mlops
) -> None:
    blob = example_repo / ".mlops" / "store" / "sha256" / CHURN_3[7:9] / CHURN_3[9:]
    original = blob.read_bytes()
    blob.chmod(0o644)
    blob.write_bytes(original[:-1] + b"!")
    result = mlops("reconcile", "--env", "development", "--repo", str(example_repo))
    assert result.code == 1, result.out + result.err
    lines = result.err.splitlines()
    at = lines.index("error: development: refused before any traffic moved (1 problem(s)); nothing was changed")
    assert lines[at + 1:] == [lines[at + 1]], "one problem, one line"
    assert lines[at + 1].startswith(f"  churn: churn@3: {CHURN_3}: the stored bytes hash to sha256:")
    assert lines[at + 1].endswith("is damaged")
    assert fresh_serve.apps() == {}
    blob.write_bytes(original)

    # UC-07 2a: a change that does not fit the cluster is refused, with what would fit.
    text = (example_repo / ENV_FILE).read_text(encoding="utf-8").replace(
        "      routePrefix: /churn\n", "      routePrefix: /churn\n      replicas: 4\n      resources: {cpus: 3}\n")
    (example_repo / ENV_FILE).write_text(text, encoding="utf-8")
    git(example_repo, "commit", "-qam", "churn asks for more than the cluster has")
    big = mlops("reconcile", "--env", "development", "--repo", str(example_repo))
    assert big.code == 1, big.out + big.err
    assert "development does not fit: it needs 13.2 CPUs while switching versions" in big.err
    assert "the cluster has 8. What would fit: resources.cpus churn 3 -> 1.8, ltv 1 -> 0.6; or fewer replicas" in (
        big.err
    ), big.err
    assert fresh_serve.apps() == {}


def test_second_reconciler_is_refused_while_the_first_one_is_paused_resumed_and_aborted(
    example_repo: Path, fresh_serve: RayCluster, mlops
) -> None:
    serve_churn_3(example_repo, mlops)
    add_version(example_repo, "churn", 4, like=3)
    commit_env(example_repo, environment(4, pause="300s"), "Promote churn@4 to development")
    repo = str(example_repo)
    with Load(fresh_serve.serve_port, "/churn", clients=3) as load:
        load.wait_for(30)
        job = background("reconcile", "--env", "development", cwd=example_repo)
        job.wait_line("churn@4 10%, churn@3 90%")

        second = mlops("reconcile", "--env", "development", "--repo", repo)
        assert second.code == 1, second.out + second.err
        assert second.err.startswith(f"error: development is being reconciled by author@example.com (pid "
                                     f"{job.process.pid} on ")
        assert "--break-lock" in second.err and "stale" not in second.err

        paused = mlops("rollout", "pause", "--env", "development", "--reason", "looking at it", "--repo", repo)
        assert paused.code == 0, paused.err
        assert paused.out.startswith("pause requested for churn: churn@3 -> churn@4 at 10%")
        job.wait_line("churn: paused by author@example.com at 10%")
        shown = mlops("status", "--env", "development", "--repo", repo)
        assert "rollout churn: churn@3 -> churn@4 paused at 10%" in shown.out, shown.out
        assert "reconciling now: author@example.com" in shown.out
        assert mlops("rollout", "resume", "--env", "development", "--repo", repo).code == 0
        job.wait_line("churn: resumed by author@example.com")

        aborted = mlops("rollout", "abort", "--env", "development", "--reason", "wrong model", "--repo", repo)
        assert aborted.code == 0, aborted.err
        back = job.wait_line("all traffic back on churn@3")
        assert job.finish() == 1, job.text
        load.wait_for(len(load.samples) + 60)
    assert load.failures() == [], load.failures()[:5]
    assert "rolled back churn" in job.text and "aborted by author@example.com: wrong model" in job.text
    assert set(load.mix(back + 0.5, float("inf"))) == {"churn@3"}
    message = git(example_repo, "log", "-1", "--format=%B")
    assert message.startswith("Roll back churn 4 -> 3 in development (automatic)")
    assert "Reason: aborted by author@example.com: wrong model" in message
    assert set(fresh_serve.apps()) == {"development.churn", "development.churn.v3"}
    nothing = mlops("rollout", "resume", "--env", "development", "--repo", repo)
    assert nothing.code == 2 and "no rollout in progress in development" in nothing.err


def test_a_reconcile_killed_mid_apply_converges_when_run_again(
    example_repo: Path, fresh_serve: RayCluster, mlops
) -> None:
    repo = str(example_repo)
    job = background("reconcile", "--env", "development", cwd=example_repo)
    job.wait_line("deploying development.churn.v3")
    os.kill(job.process.pid, signal.SIGKILL)
    job.finish()

    refused = mlops("reconcile", "--env", "development", "--repo", repo)
    assert refused.code == 1
    assert f"pid {job.process.pid} no longer runs on this host, so the lock is stale" in refused.err
    assert "run `mlops reconcile --env development --break-lock`" in refused.err
    rerun = mlops("reconcile", "--env", "development", "--repo", repo, "--break-lock")
    assert rerun.code == 0, rerun.out + rerun.err
    assert f"broke the lock held by author@example.com (pid {job.process.pid}" in rerun.err
    assert post(fresh_serve.url("/churn"), [[59.9, 12, 1, 34]])[1]["x-model-version"] == "churn@3"
    assert post(fresh_serve.url("/ltv"), [[59.9, 12, 1, 34]])[1]["x-model-version"] == "ltv@2"
    again = mlops("reconcile", "--env", "development", "--repo", repo)
    assert again.code == 0 and "no changes" in again.out


def test_stale_plans_and_foreign_history_are_refused(
    example_repo: Path, fresh_serve: RayCluster, mlops, tmp_path: Path
) -> None:
    repo = str(example_repo)
    commit_env(example_repo, environment(3), "development serves churn@3 only")
    first = tmp_path / "first.json"
    assert mlops("plan", "--env", "development", "--repo", repo, "--out", str(first)).code == 2
    applied = mlops("reconcile", "--env", "development", "--repo", repo, "--plan", str(first))
    assert applied.code == 0, applied.out + applied.err

    # The cluster moved since the plan was made (it was applied): refused.
    stale = mlops("reconcile", "--env", "development", "--repo", repo, "--plan", str(first))
    assert stale.code == 1
    assert stale.err.startswith("error: the cluster changed since the plan was made")

    # The repository moved since the plan was made: refused.
    second = tmp_path / "second.json"
    assert mlops("plan", "--env", "development", "--repo", repo, "--out", str(second)).code == 0
    text = (example_repo / ENV_FILE).read_text(encoding="utf-8")
    (example_repo / ENV_FILE).write_text(text.replace("spec:\n", "spec:\n  description: moved\n"), encoding="utf-8")
    git(example_repo, "commit", "-qam", "describe development")
    moved = mlops("reconcile", "--env", "development", "--repo", repo, "--plan", str(second))
    assert moved.code == 1
    assert moved.err.startswith("error: the plan was made at commit ")
    assert "the repository moved" in moved.err
    recorded = mlops("reconcile", "--env", "development", "--repo", repo)
    assert recorded.code == 0 and "no changes" in recorded.out
    applied_commit = git(example_repo, "rev-parse", "HEAD")

    # A checkout whose history does not contain the applied commit would undo what it has not seen.
    git(example_repo, "checkout", "-q", "-b", "elsewhere", "HEAD~1")
    (example_repo / ENV_FILE).write_text(text.replace("spec:\n", "spec:\n  description: other\n"), encoding="utf-8")
    git(example_repo, "commit", "-qam", "another description")
    foreign = mlops("reconcile", "--env", "development", "--repo", repo)
    assert foreign.code == 1
    assert foreign.err.startswith(
        f"error: HEAD ({git(example_repo, 'rev-parse', 'HEAD')[:8]}) is not a descendant of {applied_commit[:8]}, "
        "the commit last applied to development"
    )
