"""Pipeline run plans, cache keys, parameter overrides, run records and output checks (pure; no Ray, no git).

The example pipeline (pipelines/train-churn) is read with the project's loader; the small synthetic pipelines are
built with ``Pipeline.model_validate``. Output checks are compared sentence for sentence: they are what a user reads
when a step fails.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from mlops.analysis.output_checks import check_output
from mlops.errors import UsageError
from mlops.manifests import DatasetVersion, Pipeline
from mlops.manifests.dataset_version import DataFile
from mlops.planner.pipeline_run import (
    RunPlan,
    StepInput,
    StepPlan,
    build_run_plan,
    cache_key,
    datasets_read,
    downstream_of,
    parse_param_overrides,
    topological_order,
)
from mlops.planner.pipeline_state import (
    Attempt,
    OutputRecord,
    Registration,
    RunState,
    StepState,
)
from mlops.services.repository import load_index

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "c0ffee" + "0" * 34
CODE = "tree:1111111111111111111111111111111111111111"
FINGERPRINT = "sha256:" + "a" * 64
FILE_DIGEST = "sha256:" + "b" * 64


# --- helpers ---------------------------------------------------------------------------------------------------------


def pipeline(steps: list[dict[str, Any]], params: dict[str, Any] | None = None, **spec: Any) -> Pipeline:
    return Pipeline.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "Pipeline",
            "metadata": {"name": "synthetic"},
            "spec": {"params": params or {}, "steps": steps, **spec},
        }
    )


def dataset_version(fingerprint: str = FINGERPRINT, name: str = "events", version: int = 3) -> DatasetVersion:
    return DatasetVersion.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "DatasetVersion",
            "metadata": {"name": name},
            "spec": {
                "version": version,
                "fingerprint": {"algorithm": "sha256-tree-v1", "digest": fingerprint},
                "size": 10,
                "fileCount": 1,
                "files": [{"path": "events.csv", "digest": FILE_DIGEST, "size": 10}],
                "format": "csv",
            },
        }
    )


def datasets_for(version: DatasetVersion) -> dict[str, tuple[DatasetVersion, list[DataFile]]]:
    return {f"{version.metadata.name}@{version.spec.version}": (version, list(version.spec.files))}


def three_steps(**changes: Any) -> list[dict[str, Any]]:
    """load -> fit -> score: a dataset, a parameter, a literal and upstream outputs."""
    steps: list[dict[str, Any]] = [
        {"name": "load", "run": "steps:load", "inputs": {"raw": "dataset://events@3"},
         "outputs": {"table": {"type": "table", "checks": {"rows": {"min": 10}}}}},
        {"name": "fit", "run": "steps:fit",
         "inputs": {"table": "steps.load.outputs.table", "depth": "params.depth", "seed": 7},
         "outputs": {"model": {"type": "model"}}},
        {"name": "score", "run": "steps:score",
         "inputs": {"model": "steps.fit.outputs.model", "table": "steps.load.outputs.table"},
         "outputs": {"metrics": {"type": "metrics", "checks": {"metrics": {"auc": {"min": 0.7}}}}}},
    ]
    for name, step_changes in changes.items():
        next(s for s in steps if s["name"] == name).update(step_changes)
    return steps


def synthetic_plan(
    steps: list[dict[str, Any]] | None = None,
    params: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    code: str = CODE,
    fingerprint: str = FINGERPRINT,
) -> RunPlan:
    return build_run_plan(
        pipeline(steps or three_steps(), params if params is not None else {"depth": 3}),
        COMMIT,
        code,
        overrides or {},
        datasets_for(dataset_version(fingerprint)),
    )


UPSTREAM = {("load", "table"): "sha256:" + "1" * 64, ("fit", "model"): "sha256:" + "2" * 64}


def key_of(plan: RunPlan, step: str, upstream: dict[tuple[str, str], str] | None = None) -> str | None:
    return cache_key(plan, plan.step(step), UPSTREAM if upstream is None else upstream)


@pytest.fixture(scope="module")
def example() -> tuple[Pipeline, DatasetVersion]:
    index = load_index(ROOT)
    found = index.find(Pipeline, "train-churn")
    customers = index.find(DatasetVersion, "customers@1")
    assert found is not None and customers is not None
    return found, customers


def example_plan(example: tuple[Pipeline, DatasetVersion], overrides: dict[str, Any] | None = None) -> RunPlan:
    found, customers = example
    datasets = {"customers@1": (customers, list(customers.spec.files))}
    return build_run_plan(found, COMMIT, CODE, overrides or {}, datasets)


# --- the example pipeline --------------------------------------------------------------------------------------------


def test_the_example_pipeline_plans_as_declared(example: tuple[Pipeline, DatasetVersion]) -> None:
    found, customers = example
    plan = example_plan(example)
    assert (plan.pipeline, plan.commit, plan.code_digest) == ("train-churn", COMMIT, CODE)
    assert plan.params == {"max_depth": 3, "n_estimators": 40}
    assert [s.name for s in plan.steps] == ["prepare", "train", "evaluate"]
    assert plan.datasets == ("customers@1",) == tuple(datasets_read(found))
    assert plan.registers == {
        "model": "churn",
        "output": "steps.train.outputs.model",
        "metrics": "steps.evaluate.outputs.metrics",
    }

    prepare, train, evaluate = plan.steps
    assert prepare.needs == () and prepare.run == "steps:prepare" and prepare.command is None
    data = prepare.inputs["data"]
    assert data.kind == "dataset" and data.dataset is not None
    assert data.dataset.key == "customers@1"
    assert data.dataset.fingerprint == customers.spec.fingerprint.digest
    assert data.dataset.format == "csv"
    assert data.dataset.files == tuple((f.path, f.digest, f.size) for f in customers.spec.files)
    assert prepare.outputs["train"] == {
        "type": "table",
        "checks": {"rows": {"min": 1000.0, "max": None}, "columns": ["churned"], "metrics": {}, "signature": False},
    }

    # parameters are resolved to their values; output references become needs
    assert train.inputs == {
        "train": StepInput("output", upstream=("prepare", "train")),
        "max_depth": StepInput("value", value=3),
        "n_estimators": StepInput("value", value=40),
    }
    assert train.needs == ("prepare",)
    assert (train.cpus, train.gpus, train.memory) == (1.0, 0.0, None)
    assert (train.retries, train.backoff_s, train.timeout_s, train.cache) == (2, 5.0, 600.0, True)
    assert evaluate.needs == ("train", "prepare")
    assert (evaluate.retries, evaluate.backoff_s, evaluate.timeout_s) == (0, 2.0, None)


def test_overrides_replace_the_defaults_in_the_plan(example: tuple[Pipeline, DatasetVersion]) -> None:
    found, _ = example
    overrides = parse_param_overrides(found, {"max_depth": "5"})
    plan = example_plan(example, overrides)
    assert plan.params == {"max_depth": 5, "n_estimators": 40}
    assert plan.step("train").inputs["max_depth"] == StepInput("value", value=5)
    with pytest.raises(KeyError):
        plan.step("nope")


def test_downstream_of(example: tuple[Pipeline, DatasetVersion]) -> None:
    plan = example_plan(example)
    assert downstream_of(plan, {"prepare"}) == {"prepare", "train", "evaluate"}
    assert downstream_of(plan, {"train"}) == {"train", "evaluate"}
    assert downstream_of(plan, {"evaluate"}) == {"evaluate"}
    assert downstream_of(plan, set()) == set()


# --- order and needs -------------------------------------------------------------------------------------------------


def test_needs_come_first_and_ready_steps_keep_their_declaration_order() -> None:
    steps = [
        {"name": "report", "run": "s:report", "inputs": {"m": "steps.train.outputs.model"}},
        {"name": "train", "run": "s:train", "inputs": {"t": "steps.load.outputs.table"},
         "outputs": {"model": {}}},
        {"name": "lint", "run": "s:lint"},
        {"name": "load", "run": "s:load", "outputs": {"table": {}}},
        {"name": "notify", "run": "s:notify", "needs": ["report", "lint"]},
    ]
    plan = build_run_plan(pipeline(steps), COMMIT, CODE, {}, {})
    assert [s.name for s in plan.steps] == ["lint", "load", "train", "report", "notify"]
    assert {s.name: s.needs for s in plan.steps} == {
        "report": ("train",),
        "train": ("load",),
        "lint": (),
        "load": (),
        "notify": ("report", "lint"),
    }


def test_needs_from_references_and_explicit_needs_are_merged_without_duplicates() -> None:
    steps = [
        {"name": "a", "run": "s:a", "outputs": {"x": {}, "y": {}}},
        {"name": "b", "run": "s:b", "needs": ["a"],
         "inputs": {"x": "steps.a.outputs.x", "y": "steps.a.outputs.y"}},
        {"name": "c", "run": "s:c", "inputs": {"x": "steps.a.outputs.x"}, "needs": ["b"]},
    ]
    plan = build_run_plan(pipeline(steps), COMMIT, CODE, {}, {})
    assert [(s.name, s.needs) for s in plan.steps] == [("a", ()), ("b", ("a",)), ("c", ("b", "a"))]


def test_topological_order() -> None:
    assert topological_order({"a": [], "b": [], "c": []}) == ["a", "b", "c"]
    assert topological_order({"c": ["a"], "b": [], "a": []}) == ["b", "a", "c"]
    assert topological_order({"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": []}) == ["a", "c", "b", "d"]
    assert topological_order({"a": ["outside"], "b": ["a"]}) == ["a", "b"]  # unknown names are not waited for
    with pytest.raises(ValueError, match="circular dependency among: a, b"):
        topological_order({"a": ["b"], "b": ["a"], "c": []})


# --- cache keys ------------------------------------------------------------------------------------------------------


def test_cache_key_is_stable_for_the_same_inputs() -> None:
    first, second = synthetic_plan(), synthetic_plan()
    for step in ("load", "fit", "score"):
        key = key_of(first, step)
        assert key is not None and key.startswith("sha256:") and len(key) == len("sha256:") + 64
        assert key == key_of(second, step)
    assert len({key_of(first, s) for s in ("load", "fit", "score")}) == 3


def test_cache_key_ignores_dict_order() -> None:
    plan = synthetic_plan()
    fit = plan.step("fit")
    reordered = dataclasses.replace(fit, inputs=dict(reversed(list(fit.inputs.items()))))
    assert list(reordered.inputs) != list(fit.inputs)
    upstream_reversed = dict(reversed(list(UPSTREAM.items())))
    assert cache_key(plan, reordered, upstream_reversed) == cache_key(plan, fit, UPSTREAM)
    # the same pipeline written with its keys in another order
    steps = three_steps()
    steps[1]["inputs"] = {"seed": 7, "depth": "params.depth", "table": "steps.load.outputs.table"}
    steps[2]["outputs"] = {"metrics": {"checks": {"metrics": {"auc": {"min": 0.7}}}, "type": "metrics"}}
    shuffled = synthetic_plan(steps)
    for step in ("load", "fit", "score"):
        assert key_of(shuffled, step) == key_of(plan, step)


def test_cache_key_changes_with_the_code_digest() -> None:
    base, changed = synthetic_plan(), synthetic_plan(code="tree:" + "2" * 40)
    for step in ("load", "fit", "score"):
        assert key_of(changed, step) != key_of(base, step)


def test_cache_key_changes_with_a_parameter_value() -> None:
    base = synthetic_plan()
    overridden = synthetic_plan(overrides={"depth": 4})
    default_changed = synthetic_plan(params={"depth": 5})
    assert key_of(overridden, "fit") != key_of(base, "fit")
    assert key_of(default_changed, "fit") not in (key_of(base, "fit"), key_of(overridden, "fit"))
    # steps that do not read the parameter keep their key
    assert key_of(overridden, "load") == key_of(base, "load")
    assert key_of(overridden, "score") == key_of(base, "score")
    # overriding with the default's value is the same run
    assert key_of(synthetic_plan(overrides={"depth": 3}), "fit") == key_of(base, "fit")


def test_cache_key_changes_with_a_literal_input() -> None:
    base = synthetic_plan()
    changed = synthetic_plan(three_steps(fit={"inputs": {"table": "steps.load.outputs.table", "depth": "params.depth",
                                                         "seed": 8}}))
    assert key_of(changed, "fit") != key_of(base, "fit")


def test_cache_key_changes_with_a_dataset_fingerprint() -> None:
    base = synthetic_plan()
    changed = synthetic_plan(fingerprint="sha256:" + "c" * 64)
    assert key_of(changed, "load") != key_of(base, "load")
    assert key_of(changed, "fit") == key_of(base, "fit")  # downstream keys change through the upstream digests


def test_cache_key_changes_with_an_upstream_output_digest() -> None:
    plan = synthetic_plan()
    for output in (("load", "table"), ("fit", "model")):
        changed = {**UPSTREAM, output: "sha256:" + "9" * 64}
        assert key_of(plan, "score", changed) != key_of(plan, "score")
    assert key_of(plan, "fit", {**UPSTREAM, ("fit", "model"): "sha256:" + "9" * 64}) == key_of(plan, "fit")


def test_cache_key_changes_with_the_callable_or_command() -> None:
    base = synthetic_plan()
    renamed = synthetic_plan(three_steps(fit={"run": "steps:fit_v2"}))
    other_module = synthetic_plan(three_steps(fit={"run": "training:fit"}))
    assert len({key_of(base, "fit"), key_of(renamed, "fit"), key_of(other_module, "fit")}) == 3
    assert key_of(renamed, "load") == key_of(base, "load")
    command = synthetic_plan(three_steps(fit={"run": None, "command": ["python", "fit.py"]}))
    other_command = synthetic_plan(three_steps(fit={"run": None, "command": ["python", "fit.py", "--fast"]}))
    assert len({key_of(base, "fit"), key_of(command, "fit"), key_of(other_command, "fit")}) == 3


def test_cache_key_changes_with_an_output_check() -> None:
    base = synthetic_plan()
    stricter = synthetic_plan(
        three_steps(score={"outputs": {"metrics": {"type": "metrics", "checks": {"metrics": {"auc": {"min": 0.8}}}}}})
    )
    more_rows = synthetic_plan(
        three_steps(load={"outputs": {"table": {"type": "table", "checks": {"rows": {"min": 10, "max": 99}}}}})
    )
    columns = synthetic_plan(
        three_steps(load={"outputs": {"table": {"type": "table", "checks": {"rows": {"min": 10},
                                                                            "columns": ["y"]}}}})
    )
    assert key_of(stricter, "score") != key_of(base, "score")
    assert key_of(stricter, "fit") == key_of(base, "fit")
    assert key_of(more_rows, "load") != key_of(base, "load")
    assert key_of(columns, "load") not in (key_of(base, "load"), key_of(more_rows, "load"))


def test_cache_key_ignores_what_does_not_decide_outputs() -> None:
    base = synthetic_plan()
    tuned = synthetic_plan(
        three_steps(fit={"resources": {"cpus": 2}, "retries": {"max": 3}, "timeout": "5m", "needs": ["load"]})
    )
    assert key_of(tuned, "fit") == key_of(base, "fit")
    assert dataclasses.replace(base, commit="d" * 40).step("fit") == base.step("fit")
    assert cache_key(dataclasses.replace(base, commit="d" * 40), base.step("fit"), UPSTREAM) == key_of(base, "fit")


def test_cache_key_is_none_while_an_upstream_digest_is_unknown() -> None:
    plan = synthetic_plan()
    assert key_of(plan, "load", {}) is not None  # reads no upstream output
    assert key_of(plan, "fit", {}) is None
    assert key_of(plan, "score", {("load", "table"): UPSTREAM[("load", "table")]}) is None
    assert key_of(plan, "score", {("fit", "model"): UPSTREAM[("fit", "model")]}) is None


# --- parameter overrides ---------------------------------------------------------------------------------------------

PARAMS = {"depth": 3, "rate": 0.1, "balanced": False, "loss": "log"}


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ({"depth": "5"}, {"depth": 5}),
        ({"depth": "-1"}, {"depth": -1}),
        ({"rate": "0.25"}, {"rate": 0.25}),
        ({"rate": "1"}, {"rate": 1.0}),
        ({"balanced": "true"}, {"balanced": True}),
        ({"balanced": "Yes"}, {"balanced": True}),
        ({"balanced": "1"}, {"balanced": True}),
        ({"balanced": "FALSE"}, {"balanced": False}),
        ({"balanced": "no"}, {"balanced": False}),
        ({"balanced": "0"}, {"balanced": False}),
        ({"loss": "hinge"}, {"loss": "hinge"}),
        ({"loss": "3"}, {"loss": "3"}),
        ({"loss": ""}, {"loss": ""}),
        ({}, {}),
        ({"depth": "4", "rate": "0.5", "balanced": "true", "loss": "x"},
         {"depth": 4, "rate": 0.5, "balanced": True, "loss": "x"}),
    ],
)
def test_param_overrides_are_typed_like_the_defaults(pairs: dict[str, str], expected: dict[str, Any]) -> None:
    typed = parse_param_overrides(pipeline([{"name": "a", "run": "s:a"}], PARAMS), pairs)
    assert typed == expected
    assert {k: type(v) for k, v in typed.items()} == {k: type(v) for k, v in expected.items()}


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ({"dpeth": "5"}, "--param dpeth: pipeline synthetic has no parameter 'dpeth' "
                         "(parameters: balanced, depth, loss, rate)"),
        ({"depth": "5.5"}, "--param depth=5.5: expected int like the default 3"),
        ({"depth": "three"}, "--param depth=three: expected int like the default 3"),
        ({"rate": "fast"}, "--param rate=fast: expected float like the default 0.1"),
        ({"balanced": "maybe"}, "--param balanced=maybe: expected bool like the default False"),
    ],
)
def test_param_overrides_refuse_unknown_names_and_ill_typed_values(pairs: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_param_overrides(pipeline([{"name": "a", "run": "s:a"}], PARAMS), pairs)
    assert raised.value.message == message


def test_param_overrides_on_a_pipeline_without_parameters() -> None:
    with pytest.raises(UsageError) as raised:
        parse_param_overrides(pipeline([{"name": "a", "run": "s:a"}]), {"depth": "1"})
    assert raised.value.message == "--param depth: pipeline synthetic has no parameter 'depth' (parameters: none)"


# --- records round-trip ----------------------------------------------------------------------------------------------


def through_json(data: Any) -> Any:
    return json.loads(json.dumps(data))


def test_run_plan_round_trips_through_json(example: tuple[Pipeline, DatasetVersion]) -> None:
    for plan in (
        example_plan(example),
        synthetic_plan(),
        synthetic_plan(three_steps(fit={"run": None, "command": ["python", "fit.py"],
                                        "resources": {"cpus": 0.5, "gpus": 1, "memory": "2Gi"}, "cache": False})),
    ):
        data = through_json(plan.to_json())
        again = RunPlan.from_json(data)
        assert again == plan
        assert again.to_json() == plan.to_json()
        assert through_json(again.to_json()) == data
        for step in plan.steps:
            assert StepPlan.from_json_step(through_json(step.to_json())) == step
    planned = synthetic_plan(three_steps(fit={"resources": {"memory": "2Gi"}, "timeout": "90s"})).step("fit")
    assert (planned.memory, planned.timeout_s) == (2 * 1024**3, 90.0)


def test_run_state_round_trips_through_json() -> None:
    state = RunState(
        run_id="0123456789abcdef0123456789abcdef",
        pipeline="train-churn",
        commit=COMMIT,
        params={"max_depth": 3, "rate": 0.5, "flag": True, "name": "x"},
        status="failed",
        created_at=1_900_000_000.25,
        started_at=1_900_000_001.5,
        finished_at=1_900_000_090.0,
        steps={
            "prepare": StepState(
                name="prepare",
                state="cached",
                outputs={"train": OutputRecord("sha256:" + "1" * 64, 1234, "table", "train.parquet",
                                               {"rows": 1500, "columns": ["a", "churned"]})},
                cache_key="sha256:" + "f" * 64,
                cached_from="fedcba9876543210fedcba9876543210",
            ),
            "train": StepState(
                name="train",
                state="failed",
                attempts=[
                    Attempt(1, 1_900_000_002.0, 1_900_000_010.0, "ValueError: boom", "logs/train.1.log", "node-a"),
                    Attempt(2, 1_900_000_015.0, None),
                ],
                failure="attempts used up: ValueError: boom",
                resources={"cpus": 1.0, "gpus": 0.0},
            ),
            "evaluate": StepState(name="evaluate", state="skipped"),
        },
        error="step train failed",
        resumed_from="00000000000000000000000000000000",
        tracking_run="run-7",
        job="raysubmit_abc",
        trigger="resume of 000000000000",
        user="author@example.com",
        environment="staging",
        registration=Registration(model="churn", error="push refused", by_hand="mlops register churn ..."),
    )
    data = through_json(state.to_json())
    again = RunState.from_json(data)
    assert again == state
    assert through_json(again.to_json()) == data
    assert again.failed_steps == ["train"]
    assert again.counts() == {"cached": 1, "failed": 1, "skipped": 1}
    assert again.steps["train"].duration == 8.0
    assert again.steps["evaluate"].duration is None

    fresh = RunState(run_id="ab", pipeline="p", commit=COMMIT, params={})
    assert RunState.from_json(through_json(fresh.to_json())) == fresh


# --- output checks ---------------------------------------------------------------------------------------------------


def spec(**checks: Any) -> dict[str, Any]:
    return {"type": "table", "checks": checks}


TABLE = {"rows": 1500, "columns": ["age", "churned"]}


def test_checks_that_hold_report_nothing() -> None:
    assert check_output("train", spec(rows={"min": 1000, "max": 2000}, columns=["churned"]), TABLE) == []
    assert check_output("train", spec(rows={"min": 1500, "max": 1500}), TABLE) == []  # bounds are inclusive
    assert check_output("m", spec(metrics={"auc": {"min": 0.7}, "loss": {"max": 0.5}}),
                        {"metrics": {"auc": 0.7, "loss": 0.5}}) == []
    assert check_output("model", spec(signature=True), {"signature": {"inputs": ["x"]}}) == []
    assert check_output("any", {"type": "file"}, {}) == []
    assert check_output("any", {"type": "file", "checks": None}, {}) == []
    # the manifest's full form (what a plan carries): nothing declared, nothing checked
    assert check_output("any", spec(rows=None, columns=[], metrics={}, signature=False), {}) == []


def test_rows_min_and_max() -> None:
    assert check_output("train", spec(rows={"min": 2000}), TABLE) == [
        "output train: check rows: rows 1500 is below the minimum 2000"
    ]
    assert check_output("train", spec(rows={"min": None, "max": 1000}), TABLE) == [
        "output train: check rows: rows 1500 is above the maximum 1000"
    ]
    assert check_output("model", spec(rows={"min": 1}), {"signature": True}) == [
        "output model: check rows: the output is not a table"
    ]


def test_missing_columns() -> None:
    assert check_output("train", spec(columns=["churned", "tenure", "plan"]), TABLE) == [
        "output train: check columns: missing tenure, plan (it has age, churned)"
    ]
    assert check_output("m", spec(columns=["a"]), {"metrics": {}}) == [
        "output m: check columns: the output is not a table"
    ]


def test_metric_ranges() -> None:
    metrics = {"metrics": {"auc": 0.65, "log_loss": 0.9, "accuracy": 0.8}}
    assert check_output("metrics", spec(metrics={"auc": {"min": 0.7}, "log_loss": {"max": 0.5},
                                                 "accuracy": {"min": 0.5, "max": 0.9}}), metrics) == [
        "output metrics: check metrics.auc: auc 0.65 is below the minimum 0.7",
        "output metrics: check metrics.log_loss: log_loss 0.9 is above the maximum 0.5",
    ]


def test_missing_and_non_numeric_metrics() -> None:
    assert check_output("metrics", spec(metrics={"f1": {"min": 0.5}}), {"metrics": {"auc": 0.9, "accuracy": 0.8}}) == [
        "output metrics: check metrics.f1: no such metric (metrics: accuracy, auc)"
    ]
    assert check_output("metrics", spec(metrics={"f1": {"min": 0.5}}), {}) == [
        "output metrics: check metrics.f1: no such metric (metrics: none)"
    ]
    assert check_output("metrics", spec(metrics={"auc": {"min": 0.5}}), {"metrics": {"auc": math.nan}}) == [
        "output metrics: check metrics.auc: nan is not a number"
    ]
    assert check_output("metrics", spec(metrics={"auc": {"min": 0.5}}), {"metrics": {"auc": "high"}}) == [
        "output metrics: check metrics.auc: 'high' is not a number"
    ]
    assert check_output("metrics", spec(metrics={"auc": {"min": 0.5}}), {"metrics": {"auc": True}}) == [
        "output metrics: check metrics.auc: True is not a number"
    ]


def test_signature_required() -> None:
    assert check_output("model", spec(signature=True), {}) == [
        "output model: check signature: the model carries no input/output signature"
    ]
    assert check_output("model", spec(signature=True), {"signature": None}) == [
        "output model: check signature: the model carries no input/output signature"
    ]


def test_every_failed_check_is_listed_in_order() -> None:
    checks = spec(rows={"min": 2000}, columns=["x"], metrics={"auc": {"min": 0.9}}, signature=True)
    assert check_output("out", checks, {**TABLE, "metrics": {"auc": 0.5}}) == [
        "output out: check rows: rows 1500 is below the minimum 2000",
        "output out: check columns: missing x (it has age, churned)",
        "output out: check metrics.auc: auc 0.5 is below the minimum 0.9",
        "output out: check signature: the model carries no input/output signature",
    ]
