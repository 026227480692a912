"""Deploy the example's development environment onto a real local Ray cluster and query it over real HTTP."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from conftest import git
from test_serve_support import ENV_FILE, RayCluster, fresh_serve_fixture, post, ray_cluster_fixture  # noqa: F401

from mlops.appliers.cluster import connected
from mlops.appliers.state import StateClient

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def _records(repo: Path, wanted: int, timeout: float = 20) -> list[tuple[object, ...]]:
    db = repo / ".mlops" / "predictions.db"
    deadline = time.time() + timeout
    rows: list[tuple[object, ...]] = []
    while time.time() < deadline:
        if db.is_file():
            with sqlite3.connect(db) as conn:
                rows = conn.execute(
                    "SELECT id, environment, deployment, model, version, commit_sha, inputs, outputs, latency_ms, "
                    "status FROM predictions ORDER BY time"
                ).fetchall()
            if len(rows) >= wanted:
                return rows
        time.sleep(0.3)
    return rows


def test_deploy_development_then_predict_with_version_header(
    example_repo: Path, fresh_serve: RayCluster, mlops
) -> None:
    repo = str(example_repo)
    planned = mlops("plan", "--env", "development", "--repo", repo)
    assert planned.code == 2, planned.out + planned.err
    assert "+ create development.churn.v3" in planned.out
    assert "+ create development.ltv" in planned.out

    applied = mlops("reconcile", "--env", "development", "--repo", repo)
    assert applied.code == 0, applied.out + applied.err
    assert f"reconciled development to {_head(example_repo)[:8]}" in applied.out
    assert "development.churn.v3 healthy: canary prediction" in applied.err

    status, headers, body = post(fresh_serve.url("/churn"), [[59.9, 12, 1, 34], [10.0, 1, 5, 20]])
    assert status == 200, body
    assert headers["x-model-version"] == "churn@3"
    assert headers["x-prediction-id"] == body["id"]
    assert headers["x-environment"] == "development"
    assert body["predictions"] in ([0, 1], [0, 0], [1, 1], [1, 0]) and len(body["probabilities"]) == 2
    status, headers, body = post(fresh_serve.url("/ltv"), [[59.9, 12, 1, 34]])
    assert status == 200 and headers["x-model-version"] == "ltv@2"
    assert isinstance(body["predictions"][0], float)

    status, _, body = post(fresh_serve.url("/churn"), [[1, 2, 3]])
    assert status == 400
    assert "takes 4 feature columns, was given 3" in body["error"]

    # Each served prediction is in the log: id, version, environment, commit, inputs, output, latency.
    rows = _records(example_repo, 3)
    assert len(rows) == 3
    first = rows[0]
    assert first[1:6] == ("development", "churn", "churn", 3, _head(example_repo))
    assert "59.9" in str(first[6]) and "probabilities" in str(first[7])
    assert float(str(first[8])) >= 0 and first[9] == 200
    assert rows[2][9] == 400

    again = mlops("reconcile", "--env", "development", "--repo", repo)
    assert again.code == 0, again.out + again.err
    assert "no changes" in again.out
    quiet = mlops("plan", "--env", "development", "--repo", repo)
    assert quiet.code == 0, quiet.out + quiet.err
    assert "no changes: 0 to create, 0 to update, 0 to delete, 4 unchanged" in quiet.out

    shown = mlops("status", "--env", "development", "--repo", repo)
    assert shown.code == 0, shown.out + shown.err
    assert "in sync" in shown.out
    assert "churn: churn@3 100% (HEAD wants churn@3)" in shown.out
    assert shown.out.count("health    healthy") == 2
    assert f"endpoint  {fresh_serve.url('/churn')}" in shown.out
    assert f"curl -s -i -X POST {fresh_serve.url('/ltv')}" in shown.out


def test_drift_is_healed_and_removed_deployments_need_prune(example_repo: Path, fresh_serve: RayCluster, mlops) -> None:
    repo = str(example_repo)
    assert mlops("reconcile", "--env", "development", "--repo", repo).code == 0

    # Someone deletes the ltv router by hand: the plan shows the drift, a watch round heals it.
    api = fresh_serve.api()
    apps = api.applications()
    config = {"applications": [a.config for n, a in apps.items() if n != "development.ltv"]}
    api.deploy(config)
    api.wait([n for n in apps if n != "development.ltv"], absent=["development.ltv"], timeout=120)
    drift = mlops("plan", "--env", "development", "--repo", repo)
    assert drift.code == 2 and "+ create development.ltv " in drift.out, drift.out
    healed = mlops("reconcile", "--env", "development", "--repo", repo, "--watch", "--iterations", "1")
    assert healed.code == 0, healed.out + healed.err
    assert post(fresh_serve.url("/ltv"), [[59.9, 12, 1, 34]])[0] == 200

    # ltv leaves the repository: kept (and said so) until --prune.
    text = (example_repo / ENV_FILE).read_text(encoding="utf-8")
    (example_repo / ENV_FILE).write_text(text[: text.index("    - name: ltv")], encoding="utf-8")
    git(example_repo, "commit", "-qam", "development no longer serves ltv")
    kept = mlops("plan", "--env", "development", "--repo", repo)
    assert kept.code == 0, kept.out
    assert "deployment ltv is no longer in the repository; --prune deletes it" in kept.out
    assert mlops("reconcile", "--env", "development", "--repo", repo).code == 0
    assert post(fresh_serve.url("/ltv"), [[59.9, 12, 1, 34]])[0] == 200
    pruning = mlops("plan", "--env", "development", "--repo", repo, "--prune")
    assert pruning.code == 2 and "- delete development.ltv" in pruning.out
    pruned = mlops("reconcile", "--env", "development", "--repo", repo, "--prune")
    assert pruned.code == 0, pruned.out + pruned.err
    assert not any(name.startswith("development.ltv") for name in fresh_serve.apps())
    assert post(fresh_serve.url("/ltv"), [[59.9, 12, 1, 34]])[0] == 404
    assert post(fresh_serve.url("/churn"), [[59.9, 12, 1, 34]])[0] == 200


def test_published_weights_switch_the_router_at_once_and_reconcile_realigns_them(
    example_repo: Path, fresh_serve: RayCluster, mlops
) -> None:
    repo = str(example_repo)
    assert mlops("reconcile", "--env", "development", "--repo", repo).code == 0
    recorded = fresh_serve.apps()
    # A route only the weights published in the state actor name (churn@3's application, labelled version 99):
    # the router answers with it without any Serve deploy, so it came from the state actor.
    odd = {"model": "churn", "routes": [{"app": "development.churn.v3", "version": 99, "weight": 100}], "shadow": False}
    with connected(fresh_serve.target):
        state = StateClient("development", create=False)
        deadline = time.time() + 60
        seen = None
        while seen != "churn@99" and time.time() < deadline:
            state.call("publish_routes", {"development.churn": odd})  # again: the replica may not be watching yet
            status, headers, _ = post(fresh_serve.url("/churn"), [[59.9, 12, 1, 34]])
            seen = headers.get("x-model-version") if status == 200 else None
    assert seen == "churn@99", "the router did not follow the published weights"
    config = fresh_serve.api().applications()["development.churn"].config
    assert config["deployments"][0]["user_config"]["routes"][0]["version"] == 3, "Serve was not asked for this"
    assert fresh_serve.apps() == recorded
    assert all(
        post(fresh_serve.url("/churn"), [[59.9, 12, 1, 34]])[1]["x-model-version"] == "churn@99" for _ in range(10)
    )

    # As if a reconcile published weights and died before sending Serve the config: the next one, which has
    # nothing to change in Serve, puts the router back on the weights Serve records.
    healed = mlops("reconcile", "--env", "development", "--repo", repo)
    assert healed.code == 0, healed.out + healed.err
    assert "no changes" in healed.out
    assert "development.churn: router weights realigned with Serve's config" in healed.err
    assert all(
        post(fresh_serve.url("/churn"), [[59.9, 12, 1, 34]])[1]["x-model-version"] == "churn@3" for _ in range(10)
    )
    again = mlops("reconcile", "--env", "development", "--repo", repo)
    assert again.code == 0 and "realigned" not in again.err, again.out + again.err
