"""Zero downtime under load (closed-loop HTTP clients) through a blue-green switch, an automatic rollback of a
version whose health check fails, a failed analysis gate, and a manual rollback; with a real local Ray."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import git
from test_serve_support import (  # noqa: F401
    ENV_FILE,
    ENV_HEAD,
    Load,
    RayCluster,
    add_version,
    background,
    commit_env,
    environment,
    fresh_serve_fixture,
    ray_cluster_fixture,
    serve_churn_3,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def share(mix, version: str) -> float:
    total = sum(mix.values())
    assert total >= 20, f"too few answers in the window to judge the weights: {dict(mix)}"
    return mix[version] / total


def test_blue_green_switch_then_manual_rollback_without_a_failed_request(
    example_repo: Path, fresh_serve: RayCluster, mlops
) -> None:
    serve_churn_3(example_repo, mlops)
    add_version(example_repo, "churn", 4, like=3)  # the same model: agreement 1.0
    commit_env(example_repo, environment(4), "Promote churn@4 to development")

    with Load(fresh_serve.serve_port, "/churn", clients=4) as load:
        load.wait_for(50)
        job = background("reconcile", "--env", "development", cwd=example_repo)
        healthy = job.wait_line("development.churn.v4 healthy")
        at_10 = job.wait_line("churn@4 10%, churn@3 90%")
        at_50 = job.wait_line("churn@4 50%, churn@3 50%")
        at_100 = job.wait_line("churn: churn@4 takes 100% of traffic")
        assert job.finish() == 0, job.text
        load.wait_for(len(load.samples) + 100)
    assert load.failures() == [], load.failures()[:5]
    assert "gate at 10% passed" in job.text and "agreement 1.000" in job.text
    # Lines are timestamped when this test reads them, a little after they were printed; the 10% step
    # follows the "healthy" line within milliseconds now (weights are published to the routers directly),
    # so the window ends with the same 0.5 s margin the other windows use.
    before = load.mix(0, healthy - 0.5)
    assert set(before) == {"churn@3"}
    assert 0.02 <= share(load.mix(at_10 + 0.5, at_10 + 5.5), "churn@4") <= 0.3
    assert 0.3 <= share(load.mix(at_50 + 0.5, at_50 + 5.5), "churn@4") <= 0.7
    assert set(load.mix(at_100 + 0.5, float("inf"))) == {"churn@4"}
    assert "development.churn.v3" not in fresh_serve.apps(), "the old version outlived its grace period"

    # UC-09: roll back in git, reconcile: churn@3 takes all traffic at once, still without a failed request.
    rolled = mlops("rollback", "--env", "development", "--to", "3", "--repo", str(example_repo))
    assert rolled.code == 0, rolled.out + rolled.err
    with Load(fresh_serve.serve_port, "/churn", clients=4, seed=1) as load:
        load.wait_for(50)
        job = background("reconcile", "--env", "development", cwd=example_repo)
        back = job.wait_line("churn: churn@3 takes 100% of traffic")
        assert job.finish() == 0, job.text
        load.wait_for(len(load.samples) + 100)
    assert load.failures() == [], load.failures()[:5]
    assert "rollback: switch at once once healthy" in job.text
    assert set(load.mix(back + 0.5, float("inf"))) == {"churn@3"}
    assert "100% of traffic after" in job.text
    assert set(fresh_serve.apps()) == {"development.churn", "development.churn.v3"}


def test_green_failing_its_health_check_is_rolled_back_in_the_cluster_and_in_git(
    example_repo: Path, fresh_serve: RayCluster, mlops
) -> None:
    serve_churn_3(example_repo, mlops)
    # Same artifact, but a signature example of the wrong width: the canary prediction of the health check fails.
    add_version(example_repo, "churn", 4, like=3, example=[[1.0, 2.0, 3.0]])
    commit_env(example_repo, environment(4), "Promote churn@4 to development")
    promoted = git(example_repo, "rev-parse", "HEAD")

    with Load(fresh_serve.serve_port, "/churn", clients=4) as load:
        load.wait_for(50)
        job = background("reconcile", "--env", "development", cwd=example_repo)
        code = job.finish()
        load.wait_for(len(load.samples) + 100)
    assert code == 1, job.text
    assert load.failures() == [], load.failures()[:5]
    assert {s.version for s in load.samples} == {"churn@3"}
    assert "the new version did not start healthy" in job.text
    assert "canary prediction on the signature's example failed" in job.text, job.text
    assert "takes 4 feature columns, was given 3" in job.text

    # Git and the cluster agree: a commit pins the environment back, with the reason.
    assert git(example_repo, "rev-parse", "HEAD~1") == promoted
    message = git(example_repo, "log", "-1", "--format=%B")
    assert message.startswith("Roll back churn 4 -> 3 in development (automatic)")
    assert "Reason: " in message and "canary prediction" in message
    assert "Mlops-Rollback: churn@4 -> churn@3" in message
    assert "version: 3" in git(example_repo, "show", f"HEAD:{ENV_FILE}")
    assert "development.churn.v4" not in fresh_serve.apps()
    settled = mlops("plan", "--env", "development", "--repo", str(example_repo))
    assert settled.code == 0, settled.out + settled.err


def test_failed_agreement_gate_routes_all_traffic_back_at_once(
    example_repo: Path, fresh_serve: RayCluster, mlops
) -> None:
    serve_churn_3(example_repo, mlops)
    # churn@4 is churn@1's model: it agrees with churn@3 on about 90% of these customers, the gate asks 98%.
    add_version(example_repo, "churn", 4, like=3, digest_of=1)
    commit_env(example_repo, environment(4, pause="20s", agreement=0.98), "Promote churn@4 to development")

    with Load(fresh_serve.serve_port, "/churn", clients=4) as load:
        load.wait_for(50)
        job = background("reconcile", "--env", "development", cwd=example_repo)
        at_10 = job.wait_line("churn@4 10%, churn@3 90%")
        back = job.wait_line("all traffic back on churn@3")
        code = job.finish()
        load.wait_for(len(load.samples) + 100)
    assert code == 1, job.text
    assert load.failures() == [], load.failures()[:5]
    assert "analysis gate at 10%: agreement with the current version" in job.text
    assert load.mix(at_10 + 0.5, back)["churn@4"] > 0
    assert set(load.mix(back + 0.5, float("inf"))) == {"churn@3"}
    message = git(example_repo, "log", "-1", "--format=%B")
    assert message.startswith("Roll back churn 4 -> 3 in development (automatic)")
    assert "agreement with the current version" in message
    assert set(fresh_serve.apps()) == {"development.churn", "development.churn.v3"}


def test_a_version_rolled_back_to_within_its_grace_period_is_not_kept_for_it_afterwards(
    example_repo: Path, fresh_serve: RayCluster, mlops
) -> None:
    def serving(version: int, grace: str) -> str:
        return (
            ENV_HEAD.format(version=version) + f"      strategy: {{steps: [{{weight: 100}}], gracePeriod: {grace}}}\n"
        )

    commit_env(example_repo, serving(3, "10m"), "development serves churn@3")
    assert mlops("reconcile", "--env", "development", "--repo", str(example_repo)).code == 0
    add_version(example_repo, "churn", 4, like=3)
    commit_env(example_repo, serving(4, "10m"), "Promote churn@4 to development")
    job = background("reconcile", "--env", "development", cwd=example_repo)
    job.wait_line("keeping development.churn.v3 for the grace period")
    job.process.send_signal(signal.SIGTERM)  # stop waiting out the 10 minutes: churn@3 stays, kept for them
    assert job.finish() == 130, job.text  # SIGTERM stops it like Ctrl-C: the lock is released
    settled = mlops("reconcile", "--env", "development", "--repo", str(example_repo))
    assert settled.code == 0, settled.out + settled.err
    assert set(fresh_serve.apps()) == {"development.churn", "development.churn.v3", "development.churn.v4"}

    rolled = mlops("rollback", "--env", "development", "--to", "3", "--repo", str(example_repo))
    assert rolled.code == 0, rolled.out + rolled.err
    back = mlops("reconcile", "--env", "development", "--repo", str(example_repo))
    assert back.code == 0, back.out + back.err
    assert "churn: churn@3 takes 100% of traffic" in back.err
    assert set(fresh_serve.apps()) == {"development.churn", "development.churn.v3"}

    # churn@3 serves again: its old grace period is over for good, a switch without one removes it at once.
    commit_env(example_repo, serving(4, "0s"), "Promote churn@4 to development again, no grace period")
    again = mlops("reconcile", "--env", "development", "--repo", str(example_repo))
    assert again.code == 0, again.out + again.err
    assert "kept for the grace period" not in again.out + again.err
    assert set(fresh_serve.apps()) == {"development.churn", "development.churn.v4"}
