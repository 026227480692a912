"""The planner (pure): desired state from the example repository, plans against hand-made live states, golden
files of the renderers, JSON round trips, and the property that applying a plan then planning again gives only
noops. No Ray here.

Regenerate the golden files after a deliberate change of the output with::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_planner.py
"""

from __future__ import annotations

import difflib
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from mlops.manifests import Environment
from mlops.planner.desired import (
    PlanningError,
    ServeSettings,
    desired_state,
    duration_seconds,
    memory_bytes,
    model_app_name,
    parse_app_name,
    router_app_name,
)
from mlops.planner.fit import compatibility_problems, resource_problems
from mlops.planner.gates import judge_step
from mlops.planner.plan import Action, LiveApp, LiveState, Plan, make_plan, router_routes
from mlops.reports.plan import render_plan_json, render_plan_markdown, render_plan_text
from mlops.services.repository import load_index
from mlops.validation.index import RepoIndex

COMMIT = "c0ffee" + "0" * 34
NEXT_COMMIT = "beef00" + "1" * 34
SETTINGS = ServeSettings(
    store="/srv/state/.mlops/store",
    cache_dir="/srv/state/.mlops/serve-cache",
    predictions="/srv/state/.mlops/predictions.db",
    trusted_skops_types=("sklearn.tree._tree.Tree",),
)


@pytest.fixture(scope="module")
def index() -> RepoIndex:
    return load_index(ROOT)


def env(index: RepoIndex, name: str) -> Environment:
    found = index.find(Environment, name)
    assert found is not None
    return found


def make_env(name: str, deployments: list[dict[str, Any]]) -> Environment:
    return Environment.model_validate(
        {"apiVersion": "mlops/v1", "kind": "Environment", "metadata": {"name": name},
         "spec": {"cluster": {"address": "local"}, "deployments": deployments}}
    )


def edited(manifest: Any, change: Any) -> Any:
    """A changed copy of a (frozen) manifest: ``change`` edits its JSON form."""
    data = manifest.model_dump(mode="json", exclude_none=True)
    change(data)
    return type(manifest).model_validate(data)


def set_field(path: tuple[Any, ...], value: Any) -> Any:
    def change(data: Any) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value

    return change


def applied(plan: Plan, commit: str | None = None) -> LiveState:
    """The cluster after the plan was applied: every application of its config RUNNING."""
    return LiveState(
        cluster=plan.cluster,
        running=True,
        apps={a["name"]: LiveApp(a["name"], "RUNNING", a) for a in plan.config["applications"]},
        applied_commit=commit or plan.commit,
    )


EMPTY = LiveState(cluster="local (test)", running=True)
GOLDEN = Path(__file__).resolve().parent / "golden"


def check_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/<name>; with UPDATE_GOLDEN=1, (re)write it instead."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
        return
    assert path.is_file(), f"{path} is missing: run the tests with UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), name, "rendered"))
        pytest.fail(f"output differs from golden/{name} (UPDATE_GOLDEN=1 regenerates it):\n{diff}")


def test_names_parse_back() -> None:
    assert model_app_name("development", "churn", 3) == "development.churn.v3"
    assert router_app_name("development", "churn") == "development.churn"
    assert parse_app_name("development.churn.v3") == ("development", "churn", 3)
    assert parse_app_name("development.churn") == ("development", "churn", None)
    assert parse_app_name("default") is None
    assert parse_app_name("my-app.v2") == ("my-app", "v2", None)
    assert duration_seconds("5m") == 300 and duration_seconds("250ms") == 0.25
    assert memory_bytes("1Gi") == 2**30 and memory_bytes("500M") == 500 * 10**6 and memory_bytes(None) is None


def test_development_desired_state(index: RepoIndex) -> None:
    desired = desired_state(env(index, "development"), index, COMMIT, SETTINGS)
    churn, ltv = desired.deployments
    assert (churn.model_app, churn.router_app, churn.route_prefix) == ("development.churn.v3", "development.churn",
                                                                       "/churn")
    args = churn.model_config["args"]
    assert args["digest"].startswith("sha256:d7dabec5") and args["format"] == "onnx"
    assert args["task"] == "classification" and args["signature"]["example"] == [[59.9, 12.0, 1.0, 34.0]]
    assert ltv.model_config["args"]["format"] == "skops"
    assert ltv.model_config["args"]["trusted_skops_types"] == ["sklearn.tree._tree.Tree"]
    # The model application is not exposed over HTTP; the router is, at the route prefix.
    assert churn.model_config["route_prefix"] is None
    server = churn.model_config["deployments"][0]
    assert server["ray_actor_options"] == {"num_cpus": 1.0} and server["num_replicas"] == 1


def test_first_plan_creates_everything_golden(index: RepoIndex) -> None:
    desired = desired_state(env(index, "development"), index, COMMIT, SETTINGS)
    plan = make_plan(desired, LiveState(cluster="local (not running)", running=False),
                     http_options={"host": "127.0.0.1", "port": 8000})
    assert [(i.action, i.target) for i in plan.items] == [
        (Action.CREATE, "development.churn.v3"),
        (Action.CREATE, "development.churn"),
        (Action.CREATE, "development.ltv.v2"),
        (Action.CREATE, "development.ltv"),
    ]
    assert plan.has_changes and plan.config["http_options"] == {"host": "127.0.0.1", "port": 8000}
    check_golden("plan_development_new.text.txt", render_plan_text(plan) + "\n")
    check_golden("plan_development_new.markdown.txt", render_plan_markdown(plan))


def _production_live(index: RepoIndex) -> LiveState:
    """production running churn@2 and ltv@1 (what its file says), plus another tool's application."""
    desired = desired_state(env(index, "production"), index, COMMIT, SETTINGS)
    live = applied(make_plan(desired, EMPTY), COMMIT)
    other = {"name": "default", "route_prefix": "/other", "import_path": "their.app:app"}
    apps = dict(live.apps)
    apps["default"] = LiveApp("default", "RUNNING", other)
    return LiveState(live.cluster, True, apps, COMMIT)


def test_blue_green_promotion_plan_golden(index: RepoIndex) -> None:
    live = _production_live(index)
    promoted = edited(env(index, "production"), set_field(("spec", "deployments", 0, "version"), 3))
    promoted = edited(promoted, set_field(("spec", "deployments", 1, "replicas"), 3))  # and someone scales ltv up
    desired = desired_state(promoted, index, NEXT_COMMIT, SETTINGS)
    plan = make_plan(desired, live, now=1000.0)
    actions = {(i.action, i.target) for i in plan.changes}
    assert actions == {
        (Action.CREATE, "production.churn.v3"),
        (Action.UPDATE, "production.churn"),
        (Action.DELETE, "production.churn.v2"),
        (Action.UPDATE, "production.ltv.v1"),
    }
    (rollout,) = plan.rollouts
    assert (rollout.kind, rollout.from_version, rollout.to_version) == ("blue-green", 2, 3)
    assert [s.weight for s in rollout.steps] == [10, 50, 100]
    assert rollout.steps[0].pause_s == 300 and rollout.steps[0].analysis == {
        "maxErrorRate": 0.01, "maxP99LatencyMs": 250.0, "minAgreement": 0.9, "minRequests": 20}
    assert rollout.grace_s == 900
    # Serve deletes what a config leaves out: the other tool's application is sent as it runs.
    assert {"name": "default", "route_prefix": "/other", "import_path": "their.app:app"} in plan.config["applications"]
    scaled = next(i for i in plan.items if i.target == "production.ltv.v1")
    assert [(c.path, c.before, c.after) for c in scaled.changes] == [("deployments[ModelServer].num_replicas", 2, 3)]
    assert scaled.summary == "reconfigure ltv@1"
    check_golden("plan_production_blue_green.text.txt", render_plan_text(plan) + "\n")
    check_golden("plan_production_blue_green.markdown.txt", render_plan_markdown(plan))
    check_golden("plan_production_blue_green.json.txt", render_plan_json(plan) + "\n")


def test_plan_json_round_trip(index: RepoIndex) -> None:
    live = _production_live(index)
    promoted = edited(env(index, "production"), set_field(("spec", "deployments", 0, "version"), 3))
    plan = make_plan(desired_state(promoted, index, NEXT_COMMIT, SETTINGS), live, prune=True)
    again = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    with pytest.raises(PlanningError, match="unsupported plan format"):
        Plan.from_json({**plan.to_json(), "format": 99})


def test_fingerprint_moves_with_the_live_config(index: RepoIndex) -> None:
    live = _production_live(index)
    app = live.apps["production.ltv"]
    changed_config = json.loads(json.dumps(app.config))
    changed_config["deployments"][0]["num_replicas"] = 2
    moved = LiveState(live.cluster, True, {**live.apps, "production.ltv": LiveApp(app.name, "RUNNING", changed_config)},
                      live.applied_commit)
    assert moved.fingerprint != live.fingerprint
    assert LiveState(live.cluster, True, dict(live.apps), "other").fingerprint != live.fingerprint
    # Serve echoes 5 as 5.0: the same setting, the same fingerprint.
    assert LiveState("x", True, {"a": LiveApp("a", "RUNNING", {"n": 5})}).fingerprint == LiveState(
        "x", True, {"a": LiveApp("a", "RUNNING", {"n": 5.0})}).fingerprint


def test_orphans_are_kept_until_prune_and_retained_versions_until_their_grace_ends(index: RepoIndex) -> None:
    live = _production_live(index)
    only_churn = edited(env(index, "production"), lambda d: d["spec"].update(deployments=d["spec"]["deployments"][:1]))
    desired = desired_state(only_churn, index, NEXT_COMMIT, SETTINGS)
    kept = make_plan(desired, live)
    assert not kept.has_changes
    assert {i.target for i in kept.items if "--prune deletes it" in i.note} == {"production.ltv", "production.ltv.v1"}
    assert any(a["name"] == "production.ltv" for a in kept.config["applications"])
    pruned = make_plan(desired, live, prune=True)
    assert {(i.action, i.target) for i in pruned.changes} == {(Action.DELETE, "production.ltv"),
                                                               (Action.DELETE, "production.ltv.v1")}
    assert not any(a["name"].startswith("production.ltv") for a in pruned.config["applications"])

    # After a switch, the old version stays for its grace period, and the plan says so.
    old = live.apps["production.churn.v2"]
    extra = LiveApp("production.churn.v1", "RUNNING", {**old.config, "name": "production.churn.v1"})
    graced = LiveState(live.cluster, True, {**live.apps, "production.churn.v1": extra}, live.applied_commit,
                       retained={"production.churn.v1": 500.0})
    during = make_plan(desired_state(env(index, "production"), index, COMMIT, SETTINGS), graced, now=100.0)
    item = next(i for i in during.items if i.target == "production.churn.v1")
    assert item.action is Action.NOOP and item.note == "kept for the grace period, 400 s more"
    after = make_plan(desired_state(env(index, "production"), index, COMMIT, SETTINGS), graced, now=600.0)
    assert next(i for i in after.items if i.target == "production.churn.v1").action is Action.DELETE


def test_rollbacks_and_versions_still_running_switch_at_once(index: RepoIndex) -> None:
    live = _production_live(index)
    promoted = edited(env(index, "production"), set_field(("spec", "deployments", 0, "version"), 3))
    rollback = make_plan(desired_state(promoted, index, NEXT_COMMIT, SETTINGS, rollbacks={"churn"}), live)
    assert rollback.rollouts[0].kind == "rollback" and [s.weight for s in rollback.rollouts[0].steps] == [100]
    unstrategic = env(index, "staging")
    staging_live = applied(make_plan(desired_state(unstrategic, index, COMMIT, SETTINGS), EMPTY))
    unstrategic = edited(unstrategic, set_field(("spec", "deployments", 0, "version"), 3))
    switch = make_plan(desired_state(unstrategic, index, NEXT_COMMIT, SETTINGS), staging_live)
    assert switch.rollouts[0].kind == "switch" and switch.rollouts[0].grace_s == 0


def test_a_running_version_keeps_the_commit_it_was_deployed_from(index: RepoIndex) -> None:
    desired = desired_state(env(index, "development"), index, COMMIT, SETTINGS)
    live = applied(make_plan(desired, EMPTY))
    later = make_plan(desired_state(env(index, "development"), index, NEXT_COMMIT, SETTINGS), live)
    assert not later.has_changes
    churn = next(a for a in later.config["applications"] if a["name"] == "development.churn.v3")
    assert churn["args"]["commit"] == COMMIT


def test_apply_then_plan_again_gives_only_noops(index: RepoIndex) -> None:
    """Property: for random environments and random live states, the cluster after applying a plan needs no
    further change (idempotence of reconcile), and every plan survives its JSON round trip."""
    rng = random.Random(20261127)
    versions = {"churn": [1, 2, 3], "ltv": [1, 2]}
    for case in range(150):
        env_name = rng.choice(["development", "staging", "qa"])

        def random_env(commit_seed: int, env_name: str = env_name) -> Environment:
            deployments = []
            for i, name in enumerate(rng.sample(["churn", "ltv", "churn-b", "ltv-b", "scoring"], rng.randint(0, 4))):
                model = "ltv" if name.startswith("ltv") else "churn"
                deployment: dict[str, Any] = {
                    "name": name, "model": model, "version": rng.choice(versions[model]),
                    "replicas": rng.randint(1, 3), "resources": {"cpus": rng.choice([0.1, 0.5, 1])},
                }
                if rng.random() < 0.5:
                    deployment["routePrefix"] = f"/p{i}-{commit_seed}"
                if rng.random() < 0.4:
                    deployment["strategy"] = {"steps": [{"weight": 20, "pause": "1s"}, {"weight": 100}],
                                              "gracePeriod": rng.choice(["0s", "30s"])}
                deployments.append(deployment)
            return make_env(env_name, deployments)

        before = desired_state(random_env(0), index, COMMIT, SETTINGS)
        live = applied(make_plan(before, EMPTY)) if rng.random() < 0.7 else EMPTY
        apps = dict(live.apps)
        if rng.random() < 0.3:  # another environment and another tool share the cluster
            apps["other.churn"] = LiveApp("other.churn", "RUNNING", {"name": "other.churn", "import_path": "x:y"})
        if apps and rng.random() < 0.3:  # drift: someone scaled or removed something by hand
            victim = rng.choice(sorted(apps))
            if rng.random() < 0.5:
                del apps[victim]
            else:
                apps[victim] = LiveApp(victim, "RUNNING", {**apps[victim].config, "runtime_env": {"pip": ["x"]}})
        live = LiveState("local (test)", True, apps, live.applied_commit)
        desired = desired_state(random_env(1), index, NEXT_COMMIT, SETTINGS)
        prune = rng.random() < 0.5
        plan = make_plan(desired, live, prune=prune, now=0.0)
        assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan, case
        after = applied(plan)
        again = make_plan(desired, after, prune=prune, now=0.0)
        assert not again.has_changes, (case, [(i.action, i.target, i.changes) for i in again.changes])
        assert not again.rollouts, (case, again.rollouts)
        for deployment in desired.deployments:
            assert router_routes(after.apps[deployment.router_app].config) == [
                (deployment.model_app, deployment.version, 100)]
        if "other.churn" in live.apps:
            assert "other.churn" in after.apps, "another environment's application was dropped"


def test_same_route_prefix_twice_is_refused(index: RepoIndex) -> None:
    twice = make_env("development", [
        {"name": "a", "model": "churn", "version": 3, "routePrefix": "/x"},
        {"name": "b", "model": "churn", "version": 2, "routePrefix": "/x"},
    ])
    with pytest.raises(PlanningError, match="both use route prefix /x"):
        desired_state(twice, index, COMMIT, SETTINGS)


def test_what_would_fit_is_said(index: RepoIndex) -> None:
    big = make_env("development", [
        {"name": "churn", "model": "churn", "version": 3, "replicas": 4, "resources": {"cpus": 2, "gpus": 1}},
    ])
    desired = desired_state(big, index, COMMIT, SETTINGS)
    plan = make_plan(desired, EMPTY)
    problems = resource_problems("development", plan.config, {"CPU": 4.0, "memory": 8 * 2**30})
    cpu, gpu = problems
    assert cpu.startswith("development does not fit: it needs 8.1 CPUs while switching versions (model servers 8, "
                          "routers 0.1, other applications 0); the cluster has 4.")
    assert "What would fit: resources.cpus churn 2 -> 0.9; or fewer replicas" in cpu
    assert "mlops cluster up --num-cpus 9" in cpu
    assert gpu.startswith("development does not fit: it needs 4 GPUs") and "resources.gpus: 0" in gpu
    assert resource_problems("development", plan.config, {"CPU": 16.0, "GPU": 4.0}) == []


def test_formats_the_model_server_cannot_load_are_refused_with_alternatives(index: RepoIndex) -> None:
    production = env(index, "production")
    desired = desired_state(production, index, COMMIT, SETTINGS)
    assert compatibility_problems(desired, index) == []
    from mlops.manifests import ModelVersion

    version = index.find(ModelVersion, "churn@2")
    assert version is not None
    pickled = edited(version, set_field(("spec", "artifact", "format"), "pickle"))

    class Lookup:
        def find(self, cls: Any, key: str) -> Any:
            return pickled if key == "churn@2" else index.find(cls, key)

    problems = compatibility_problems(desired, Lookup())
    assert problems == [
        "churn: churn@2 is a pickle artifact; the model server loads onnx and skops (convert it, e.g. with "
        "skl2onnx, and register the result as a new version)"
    ]


def test_analysis_gates() -> None:
    gate = {"maxErrorRate": 0.01, "maxP99LatencyMs": 200, "minAgreement": 0.9, "minRequests": 20}
    assert judge_step(None, None, final=True).state == "pass"
    assert judge_step(gate, {"requests": 5, "errors": 5}, final=False).state == "wait"
    waiting = judge_step(gate, {"requests": 5, "errors": 0, "compared": 5, "agreed": 5}, final=True)
    assert waiting.state == "wait" and waiting.text == (
        "5 of 20 requests seen; 5 of 20 requests compared with the current version")
    failed = judge_step(gate, {"requests": 100, "errors": 3, "p99_ms": 250.0, "compared": 50, "agreed": 40},
                        final=False)
    assert failed.state == "fail"
    assert failed.reasons == (
        "error rate 0.030 > 0.01 (3 of 100 requests)",
        "p99 latency 250.0 ms > 200 ms over 100 requests",
        "agreement with the current version 0.800 < 0.9 (50 requests compared)",
    )
    passed = judge_step(gate, {"requests": 100, "errors": 0, "p99_ms": 12.5, "compared": 60, "agreed": 60}, final=True)
    assert passed.state == "pass" and passed.text == "100 requests; error rate 0.000; p99 12.5 ms; agreement 1.000"


def test_rendered_plan_without_changes(index: RepoIndex) -> None:
    desired = desired_state(env(index, "development"), index, COMMIT, SETTINGS)
    plan = make_plan(desired, applied(make_plan(desired, EMPTY)))
    assert render_plan_text(plan).splitlines()[-1] == "no changes: 0 to create, 0 to update, 0 to delete, 4 unchanged"
    assert "**no changes**" in render_plan_markdown(plan)
