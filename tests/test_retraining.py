"""Retraining policies (UC-06): validation against the repository, trigger evaluation, `mlops retrain check`.

Validation cases rewrite ``policies/retrain-churn.yaml`` in a real copy of the example repository and check the
exact ``path:line:col: field: message`` lines; evaluation cases replay recorded signals through the pure
``evaluate``; CLI cases run `mlops retrain check` through the real entry point, with its exit codes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Result

from mlops.analysis.retraining import (
    DatasetVersionSeen,
    DriftObservation,
    MetricObservation,
    PipelineRunSummary,
    Signals,
    evaluate,
)
from mlops.errors import InputError
from mlops.manifests import RetrainingPolicy
from mlops.manifests.retraining import cron_problem, latest_fire_time, next_fire_time
from mlops.planner.pipeline_state import RunState
from mlops.services.pipelines import run_store
from mlops.services.retrain import (
    RecordedRunHistory,
    RecordedSignals,
    SignalsUnreadable,
    StoredRunHistory,
    check_retraining_now,
    read_signals_file,
)

Run = Callable[..., Result]
UTC = dt.UTC
POLICY_PATH = "policies/retrain-churn.yaml"

# Line numbers are part of the expected messages below: keep the template's shape.
TEMPLATE = """\
apiVersion: mlops/v1
kind: RetrainingPolicy
metadata:
  name: {name}
spec:
  pipeline: {pipeline}
  triggers:
    - schedule: "{cron}"
    - metric:
        environment: {metric_env}
        deployment: {metric_deployment}
        name: {metric}
        {direction}: {threshold}
        window: 7d
        minSamples: 200
    - drift:
        environment: production
        deployment: {drift_deployment}
        statistic: {statistic}
        above: {drift_above}
    - datasetVersion:
        dataset: {dataset}
  cooldown: {cooldown}
  limits:
    maxRunsPerDay: {max_runs}
    skipWhileActive: true
  result:
    pullRequest: {pull_request}
    autoMerge: {auto_merge}
    environment: {environment}
"""

DEFAULTS: dict[str, Any] = {
    "name": "retrain-churn",
    "pipeline": "train-churn",
    "cron": "0 3 * * 1",
    "metric_env": "production",
    "metric_deployment": "churn",
    "metric": "auc",
    "direction": "below",
    "threshold": 0.75,
    "drift_deployment": "churn",
    "statistic": "psi",
    "drift_above": 0.2,
    "dataset": "customers",
    "cooldown": "24h",
    "max_runs": 1,
    "pull_request": "true",
    "auto_merge": "false",
    "environment": "production",
}


def policy_text(**changes: Any) -> str:
    unknown = set(changes) - set(DEFAULTS)
    assert not unknown, unknown
    return TEMPLATE.format(**{**DEFAULTS, **changes})


def write_policy(repo: Path, rel: str = POLICY_PATH, **changes: Any) -> None:
    (repo / rel).write_text(policy_text(**changes), encoding="utf-8")


def validate(mlops: Run, repo: Path) -> Result:
    return mlops("validate", "--repo", str(repo))


def problems(result: Result) -> list[str]:
    return [line for line in result.out.splitlines() if line.split("/", 1)[0] in {"policies", "pipelines"}]


def assert_problems(result: Result, code: int, *expected: str) -> None:
    """Exactly these problem lines (each given whole), the exit code, and never a traceback."""
    assert "Traceback" not in result.out + result.err
    assert problems(result) == list(expected), result.out + result.err
    assert result.code == code, result.out + result.err


# --- validation: the example and the template ----------------------------------------------------------------------


def test_the_example_policy_and_the_template_validate(example_repo: Path, mlops: Run) -> None:
    result = validate(mlops, example_repo)
    assert_problems(result, 0)
    write_policy(example_repo)
    result = validate(mlops, example_repo)
    assert_problems(result, 0)
    assert result.lines[-1] == "ok: 21 manifests: 0 errors, 0 warnings"


# --- thresholds (UC-06 2a) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"threshold": 1.5},
            "policies/retrain-churn.yaml:13:9: spec.triggers[1].metric.below: auc below 1.5 fires always: "
            "auc is in [0, 1]; a usual threshold is between 0.6 and 0.9",
        ),
        (
            {"threshold": 0},
            "policies/retrain-churn.yaml:13:9: spec.triggers[1].metric.below: auc below 0 can never be reached: "
            "auc is in [0, 1]; a usual threshold is between 0.6 and 0.9",
        ),
        (
            {"metric": "accuracy", "threshold": -0.2},
            "policies/retrain-churn.yaml:13:9: spec.triggers[1].metric.below: accuracy below -0.2 can never be "
            "reached: accuracy is in [0, 1]; a usual threshold is between 0.7 and 0.95",
        ),
        (
            {"metric": "error_rate", "direction": "above", "threshold": 1.2},
            "policies/retrain-churn.yaml:13:9: spec.triggers[1].metric.above: error_rate above 1.2 can never be "
            "reached: error_rate is in [0, 1]; a usual threshold is between 0.01 and 0.1",
        ),
        (
            {"metric": "error_rate", "direction": "above", "threshold": 0},
            "policies/retrain-churn.yaml:13:9: spec.triggers[1].metric.above: error_rate above 0 fires always: "
            "error_rate is in [0, 1]; a usual threshold is between 0.01 and 0.1",
        ),
        (
            {"drift_above": 0},
            "policies/retrain-churn.yaml:20:9: spec.triggers[2].drift.above: psi above 0 fires always: "
            "psi is in [0, inf); a usual threshold is between 0.1 and 0.25",
        ),
        (
            {"statistic": "ks", "drift_above": 1},
            "policies/retrain-churn.yaml:20:9: spec.triggers[2].drift.above: ks above 1 can never be reached: "
            "ks is in [0, 1]; a usual threshold is between 0.1 and 0.3",
        ),
        (
            {"statistic": "js", "drift_above": 1.5},
            "policies/retrain-churn.yaml:20:9: spec.triggers[2].drift.above: js above 1.5 can never be reached: "
            "js is in [0, 1]; a usual threshold is between 0.1 and 0.2",
        ),
        (
            {"statistic": "wasserstein", "drift_above": -1},
            "policies/retrain-churn.yaml:20:9: spec.triggers[2].drift.above: wasserstein above -1 fires always: "
            "wasserstein is in [0, inf); choose a threshold from the values you observe (it is in the feature's "
            "units)",
        ),
        (
            {"metric": "aucc"},
            "policies/retrain-churn.yaml:12:9: spec.triggers[1].metric.name: unknown metric 'aucc'; known metrics: "
            "auc, accuracy, precision, recall, f1, r2, error_rate, logloss, mae, rmse, mape",
        ),
    ],
    ids=[
        "auc-below-1.5",
        "auc-below-0",
        "accuracy-below-negative",
        "error-rate-above-1.2",
        "error-rate-above-0",
        "psi-above-0",
        "ks-above-1",
        "js-above-1.5",
        "wasserstein-negative",
        "unknown-metric",
    ],
)
def test_threshold_out_of_range_suggests_a_range(
    example_repo: Path, mlops: Run, changes: dict[str, Any], expected: str
) -> None:
    write_policy(example_repo, **changes)
    assert_problems(validate(mlops, example_repo), 1, expected)


def test_threshold_in_range_is_fine_even_when_unusual(example_repo: Path, mlops: Run) -> None:
    write_policy(example_repo, threshold=0.3, statistic="ks", drift_above=0.9)
    assert_problems(validate(mlops, example_repo), 0)


def test_a_metric_watched_the_wrong_way_is_a_warning(example_repo: Path, mlops: Run) -> None:
    write_policy(example_repo, direction="above", threshold=0.8)
    assert_problems(
        validate(mlops, example_repo),
        0,
        "policies/retrain-churn.yaml:13:9: warning: spec.triggers[1].metric.above: auc is better when higher: "
        "'above' retrains when the model does well; did you mean 'below'?",
    )


def test_threshold_that_is_not_a_number_is_a_schema_error(example_repo: Path, mlops: Run) -> None:
    write_policy(example_repo, threshold="low")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn.yaml:13:9: spec.triggers[1].metric.below: expected a number, got 'low' (string)",
    )


# --- schedules, limits, result ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "invalid cron expression '61 * * * *': the minute field '61' is not valid; expected 5 fields"),
        ("0 3 * * 9", "invalid cron expression '0 3 * * 9': the day-of-week field '9' is not valid; expected 5 fields"),
        ("0 3 * *", "invalid cron expression '0 3 * *': 4 fields; expected 5 fields: minute hour day-of-month month"),
        ("0 0 3 * * 1", "invalid cron expression '0 0 3 * * 1': 6 fields; expected 5 fields"),
        ("every monday", "invalid cron expression 'every monday': 2 fields; expected 5 fields"),
    ],
)
def test_bad_cron(example_repo: Path, mlops: Run, cron: str, message: str) -> None:
    write_policy(example_repo, cron=cron)
    result = validate(mlops, example_repo)
    lines = problems(result)
    assert result.code == 1
    assert len(lines) == 1, result.out
    assert lines[0].startswith(f"policies/retrain-churn.yaml:8:7: spec.triggers[0].schedule: {message}"), lines[0]


def test_cron_helpers() -> None:
    assert cron_problem("0 3 * * 1") is None
    assert cron_problem("@daily") is None
    assert cron_problem("*/15 8-18 * * mon-fri") is None
    monday_3am = dt.datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
    # due exactly now, and within the minute, counts; a second before does not
    assert latest_fire_time("0 3 * * 1", monday_3am) == monday_3am
    assert latest_fire_time("0 3 * * 1", monday_3am + dt.timedelta(seconds=30)) == monday_3am
    assert latest_fire_time("0 3 * * 1", monday_3am - dt.timedelta(seconds=1)) == monday_3am - dt.timedelta(days=7)
    assert next_fire_time("0 3 * * 1", monday_3am) == monday_3am + dt.timedelta(days=7)


def test_schema_rules_of_the_kind(example_repo: Path, mlops: Run) -> None:
    write_policy(example_repo, pull_request="false", max_runs=0, cooldown="1 day")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn.yaml:23:3: spec.cooldown: must match pattern '^[0-9]+(m|h|d)$', got '1 day'",
        "policies/retrain-churn.yaml:25:5: spec.limits.maxRunsPerDay: must be greater than or equal to 1, got 0",
        "policies/retrain-churn.yaml:28:5: spec.result.pullRequest: pullRequest must be true: a retrained model is "
        "proposed in a pull request, never written to main",
    )


def test_a_trigger_is_exactly_one_kind(example_repo: Path, mlops: Run) -> None:
    schedule = '    - schedule: "0 3 * * 1"\n'
    text = policy_text().replace(schedule, schedule + "      datasetVersion: {dataset: customers}\n")
    (example_repo / POLICY_PATH).write_text(text, encoding="utf-8")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn.yaml:8:7: spec.triggers[0]: a trigger needs exactly one of schedule, metric, drift, "
        "datasetVersion (got schedule and datasetVersion)",
    )


def test_metric_trigger_needs_exactly_one_threshold(example_repo: Path, mlops: Run) -> None:
    text = policy_text().replace("        below: 0.75\n", "        below: 0.75\n        above: 0.95\n")
    (example_repo / POLICY_PATH).write_text(text, encoding="utf-8")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn.yaml:9:7: spec.triggers[1].metric: a metric trigger needs exactly one of 'below' "
        "or 'above'",
    )


# --- references and monitoring setup (UC-06 4a) ----------------------------------------------------------------------


def test_unknown_pipeline_environment_and_dataset(example_repo: Path, mlops: Run) -> None:
    write_policy(example_repo, pipeline="train-chrun", metric_env="prod", dataset="customer", environment="qa")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn.yaml:6:3: spec.pipeline: pipeline 'train-chrun' does not exist "
        "(did you mean 'train-churn'?)",
        "policies/retrain-churn.yaml:10:9: spec.triggers[1].metric.environment: environment 'prod' does not exist",
        "policies/retrain-churn.yaml:22:9: spec.triggers[3].datasetVersion.dataset: dataset 'customer' does not exist "
        "(did you mean 'customers'?)",
        "policies/retrain-churn.yaml:30:5: spec.result.environment: environment 'qa' does not exist",
    )


def test_unknown_deployment_and_a_deployment_of_another_model(example_repo: Path, mlops: Run) -> None:
    write_policy(example_repo, metric_deployment="churnn", drift_deployment="ltv")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn.yaml:11:9: spec.triggers[1].metric.deployment: environment production has no "
        "deployment 'churnn' (its deployments: churn, ltv); nothing would be monitored",
        "policies/retrain-churn.yaml:18:9: spec.triggers[2].drift.deployment: deployment ltv in production serves "
        "model ltv, but pipeline train-churn retrains churn: its signals say nothing about the model retrained",
    )


def test_a_pipeline_that_registers_nothing(example_repo: Path, mlops: Run) -> None:
    path = example_repo / "pipelines/train-churn/pipeline.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("  registers:")], encoding="utf-8")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn.yaml:7:3: spec.pipeline: pipeline train-churn registers no model (spec.registers), "
        "so a retraining run has nothing to propose",
    )


def test_a_dataset_the_pipeline_does_not_read_is_a_warning(example_repo: Path, mlops: Run, tmp_path: Path) -> None:
    dataset = example_repo / "registry/datasets/customers/dataset.yaml"
    other = example_repo / "registry/datasets/events/dataset.yaml"
    other.parent.mkdir(parents=True)
    other.write_text(dataset.read_text(encoding="utf-8").replace("name: customers", "name: events"), "utf-8")
    write_policy(example_repo, dataset="events")
    assert_problems(
        validate(mlops, example_repo),
        0,
        "policies/retrain-churn.yaml:22:9: warning: spec.triggers[3].datasetVersion.dataset: pipeline train-churn "
        "does not read dataset events (it reads customers): a new version would retrain on the same data",
    )


# --- auto-merge against the promotion policy ------------------------------------------------------------------------


def test_auto_merge_where_the_promotion_policy_requires_approvals(example_repo: Path, mlops: Run) -> None:
    write_policy(example_repo, auto_merge="true")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn.yaml:29:5: spec.result.autoMerge: autoMerge is not allowed for production: "
        "policies/promotion-production.yaml requires 2 approvals; set autoMerge: false (the pull request then waits "
        "for its reviewers)",
    )
    write_policy(example_repo, auto_merge="true", environment="staging")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn.yaml:29:5: spec.result.autoMerge: autoMerge is not allowed for staging: "
        "policies/promotion-staging.yaml requires 1 approval; set autoMerge: false (the pull request then waits "
        "for its reviewers)",
    )


def test_auto_merge_where_nothing_requires_approvals(example_repo: Path, mlops: Run) -> None:
    write_policy(example_repo, auto_merge="true", environment="development")  # no promotion policy gates it
    assert_problems(validate(mlops, example_repo), 0)
    path = example_repo / "policies/promotion-staging.yaml"
    text = path.read_text(encoding="utf-8").replace("count: 1", "count: 0")
    path.write_text(text, encoding="utf-8")
    write_policy(example_repo, auto_merge="true", environment="staging")
    assert_problems(validate(mlops, example_repo), 0)


# --- conflicts (UC-06 5a) -------------------------------------------------------------------------------------------


def test_two_policies_for_the_same_pipeline_name_each_other(example_repo: Path, mlops: Run) -> None:
    write_policy(example_repo)
    write_policy(example_repo, "policies/retrain-churn-2.yaml", name="retrain-churn-2", cooldown="6h")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn-2.yaml:6:3: spec.pipeline: conflicts with policies/retrain-churn.yaml: both retrain "
        "model churn for production with pipeline train-churn (different cooldowns 6h vs 24h); merge them into one "
        "policy",
        "policies/retrain-churn.yaml:6:3: spec.pipeline: conflicts with policies/retrain-churn-2.yaml: both retrain "
        "model churn for production with pipeline train-churn (different cooldowns 24h vs 6h); merge them into one "
        "policy",
    )


def test_two_pipelines_that_register_the_same_model_into_the_same_environment(example_repo: Path, mlops: Run) -> None:
    shutil.copytree(example_repo / "pipelines/train-churn", example_repo / "pipelines/train-churn-gbm")
    copy = example_repo / "pipelines/train-churn-gbm/pipeline.yaml"
    copy.write_text(copy.read_text(encoding="utf-8").replace("name: train-churn", "name: train-churn-gbm"), "utf-8")
    write_policy(example_repo)
    write_policy(example_repo, "policies/retrain-churn-gbm.yaml", name="retrain-churn-gbm", pipeline="train-churn-gbm")
    assert_problems(
        validate(mlops, example_repo),
        1,
        "policies/retrain-churn-gbm.yaml:6:3: spec.pipeline: conflicts with policies/retrain-churn.yaml: both "
        "retrain model churn for production, with pipelines train-churn-gbm and train-churn (identical settings); "
        "merge them into one policy",
        "policies/retrain-churn.yaml:6:3: spec.pipeline: conflicts with policies/retrain-churn-gbm.yaml: both "
        "retrain model churn for production, with pipelines train-churn and train-churn-gbm (identical settings); "
        "merge them into one policy",
    )
    # The same model proposed for different environments does not conflict.
    write_policy(
        example_repo,
        "policies/retrain-churn-gbm.yaml",
        name="retrain-churn-gbm",
        pipeline="train-churn-gbm",
        environment="staging",
    )
    assert_problems(validate(mlops, example_repo), 0)


# --- evaluation with recorded signals --------------------------------------------------------------------------------

NOW = dt.datetime(2026, 1, 7, 12, 0, tzinfo=UTC)  # a Wednesday; '0 3 * * 1' last came due Mon 2026-01-05 03:00
DUE = dt.datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


def make_policy(*triggers: dict[str, Any], cooldown: str = "24h", max_runs: int = 2, skip_active: bool = True) -> Any:
    return RetrainingPolicy.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "RetrainingPolicy",
            "metadata": {"name": "retrain-churn"},
            "spec": {
                "pipeline": "train-churn",
                "triggers": list(triggers),
                "cooldown": cooldown,
                "limits": {"maxRunsPerDay": max_runs, "skipWhileActive": skip_active},
                "result": {"environment": "production"},
            },
        }
    )


SCHEDULE = {"schedule": "0 3 * * 1"}
AUC = {"metric": {"environment": "production", "deployment": "churn", "name": "auc", "below": 0.75, "minSamples": 100}}
PSI = {"drift": {"environment": "production", "deployment": "churn", "statistic": "psi", "above": 0.2}}
CUSTOMERS = {"datasetVersion": {"dataset": "customers"}}


def ago(**delta: float) -> dt.datetime:
    return NOW - dt.timedelta(**delta)


def run(run_id: str, state: str, started: dt.datetime, pipeline: str = "train-churn") -> PipelineRunSummary:
    finished = None if state in ("running", "queued", "pending") else started + dt.timedelta(minutes=20)
    return PipelineRunSummary(pipeline, run_id, state, started, finished)


def auc(value: float, samples: int, at: dt.datetime, deployment: str = "churn") -> MetricObservation:
    return MetricObservation("production", deployment, "auc", value, samples, at)


def psi(feature: str, value: float, at: dt.datetime) -> DriftObservation:
    return DriftObservation("production", "churn", feature, "psi", value, at)


def only(decision: Any) -> Any:
    assert len(decision.triggers) == 1
    return decision.triggers[0]


def test_schedule_fires_when_its_time_came_since_the_last_run() -> None:
    before_due = run("r1", "succeeded", DUE - dt.timedelta(days=2))  # after the previous due time, before this one
    decision = evaluate(make_policy(SCHEDULE), Signals(runs=(before_due,)), NOW)
    assert only(decision).fires
    assert only(decision).reason == "came due Mon 2026-01-05 03:00 UTC, after run r1 started Sat 2026-01-03 03:00 UTC"
    assert decision.fires and decision.blockers == ()
    # a minute later than the due time is a run of this time: nothing more to do
    on_time = run("r2", "succeeded", DUE + dt.timedelta(minutes=1))
    assert not evaluate(make_policy(SCHEDULE), Signals(runs=(before_due, on_time)), NOW).fires


def test_schedule_does_not_fire_when_a_run_started_after_its_time() -> None:
    after_due = run("r2", "failed", DUE + dt.timedelta(minutes=5))
    decision = evaluate(make_policy(SCHEDULE), Signals(runs=(after_due,)), NOW)
    assert not only(decision).fires
    assert only(decision).reason == (
        "last came due Mon 2026-01-05 03:00 UTC; run r2 started Mon 2026-01-05 03:05 UTC; next Mon 2026-01-12 03:00 UTC"
    )
    assert not decision.fires


def test_schedule_with_no_run_recorded_fires() -> None:
    decision = evaluate(make_policy(SCHEDULE), Signals(), NOW)
    assert only(decision).fires
    assert only(decision).reason == "came due Mon 2026-01-05 03:00 UTC and no run of train-churn is recorded"


def test_runs_of_other_pipelines_and_after_now_are_ignored() -> None:
    other = run("x", "succeeded", ago(hours=1), pipeline="train-ltv")
    signals = Signals(runs=(other, run("later", "running", NOW + dt.timedelta(hours=1))))
    decision = evaluate(make_policy(SCHEDULE), signals, NOW)
    assert only(decision).fires and decision.blockers == ()


def test_metric_below_threshold_fires_with_the_evidence() -> None:
    signals = Signals(metrics=(auc(0.70, 212, ago(days=1)), auc(0.72, 200, ago(days=2)), auc(0.99, 5000, ago(days=8))))
    decision = evaluate(make_policy(AUC), signals, NOW)
    outcome = only(decision)
    assert outcome.fires
    # (0.70*212 + 0.72*200) / 412 = 0.7097; the observation 8 days old is outside the 7d window
    assert outcome.reason == "auc 0.71 < 0.75 over 412 predictions in the last 7d"
    assert outcome.description == "metric auc below 0.75 on production/churn"


def test_metric_above_threshold_does_not_fire() -> None:
    decision = evaluate(make_policy(AUC), Signals(metrics=(auc(0.81, 412, ago(hours=3)),)), NOW)
    assert not only(decision).fires
    assert only(decision).reason == "auc 0.81 is not below 0.75 over 412 predictions in the last 7d"


def test_metric_with_too_few_samples_does_not_fire() -> None:
    decision = evaluate(make_policy(AUC), Signals(metrics=(auc(0.5, 40, ago(hours=3)),)), NOW)
    assert not only(decision).fires
    assert only(decision).reason == (
        "auc 0.5 over 40 predictions in the last 7d: fewer than minSamples 100, too few to decide"
    )


def test_metric_of_another_deployment_or_none_at_all() -> None:
    decision = evaluate(make_policy(AUC), Signals(metrics=(auc(0.1, 999, ago(hours=3), deployment="ltv"),)), NOW)
    assert not only(decision).fires
    assert only(decision).reason == "no auc observations for production/churn in the last 7d"


def test_metric_above_trigger() -> None:
    error_rate = {
        "metric": {"environment": "production", "deployment": "churn", "name": "error_rate", "above": 0.05,
                   "minSamples": 0}
    }
    observation = MetricObservation("production", "churn", "error_rate", 0.08, 1000, ago(hours=1))
    decision = evaluate(make_policy(error_rate), Signals(metrics=(observation,)), NOW)
    assert only(decision).fires
    assert only(decision).reason == "error_rate 0.08 > 0.05 over 1,000 predictions in the last 7d"


def test_drift_fires_on_the_features_over_the_threshold() -> None:
    at = ago(hours=2)
    signals = Signals(drift=(psi("tenure", 0.31, at), psi("charges", 0.24, at), psi("age", 0.05, at)))
    outcome = only(evaluate(make_policy(PSI), signals, NOW))
    assert outcome.fires
    assert outcome.reason == "psi > 0.2 on 2 features: tenure 0.31, charges 0.24 (latest in the last 1d)"


def test_drift_uses_the_latest_observation_per_feature_and_ignores_stale_ones() -> None:
    signals = Signals(
        drift=(
            psi("tenure", 0.40, ago(hours=6)),  # superseded by the newer, lower value
            psi("tenure", 0.12, ago(hours=1)),
            psi("charges", 0.90, ago(days=2)),  # outside the 1d window
        )
    )
    outcome = only(evaluate(make_policy(PSI), signals, NOW))
    assert not outcome.fires
    assert outcome.reason == "highest psi 0.12 (tenure) is not above 0.2 over 1 feature in the last 1d"


def test_drift_on_one_feature_only() -> None:
    trigger = {"drift": {**PSI["drift"], "feature": "age"}}
    signals = Signals(drift=(psi("tenure", 0.5, ago(hours=1)), psi("age", 0.1, ago(hours=1))))
    outcome = only(evaluate(make_policy(trigger), signals, NOW))
    assert not outcome.fires
    assert outcome.description == "drift psi above 0.2 on production/churn, feature age"
    empty = only(evaluate(make_policy(trigger), Signals(), NOW))
    assert empty.reason == "no psi observations for production/churn (feature age) in the last 1d"


def test_dataset_version_after_the_last_successful_run_fires() -> None:
    signals = Signals(
        datasets=(DatasetVersionSeen("customers", 1, ago(days=30)), DatasetVersionSeen("customers", 2, ago(days=1))),
        runs=(run("ok", "succeeded", ago(days=3)), run("bad", "failed", ago(hours=30))),
    )
    outcome = only(evaluate(make_policy(CUSTOMERS), signals, NOW))
    assert outcome.fires
    assert outcome.reason == (
        "customers@2 appeared Tue 2026-01-06 12:00 UTC, after the last successful run ok started "
        "Sun 2026-01-04 12:00 UTC"
    )


def test_dataset_version_before_the_last_successful_run_does_not_fire() -> None:
    signals = Signals(
        datasets=(DatasetVersionSeen("customers", 1, ago(days=30)), DatasetVersionSeen("other", 9, ago(hours=1))),
        runs=(run("ok", "succeeded", ago(days=3)),),
    )
    outcome = only(evaluate(make_policy(CUSTOMERS), signals, NOW))
    assert not outcome.fires
    assert outcome.reason == (
        "newest is customers@1 (Mon 2025-12-08 12:00 UTC), before the last successful run ok started "
        "Sun 2026-01-04 12:00 UTC"
    )


def test_dataset_version_with_no_successful_run_fires_and_no_version_does_not() -> None:
    seen = Signals(
        datasets=(DatasetVersionSeen("customers", 1, ago(days=30)),), runs=(run("bad", "failed", ago(days=3)),)
    )
    assert only(evaluate(make_policy(CUSTOMERS), seen, NOW)).fires
    outcome = only(evaluate(make_policy(CUSTOMERS), Signals(), NOW))
    assert not outcome.fires and outcome.reason == "no version of customers recorded"


def test_cooldown_blocks_a_trigger_that_fires() -> None:
    signals = Signals(metrics=(auc(0.6, 500, ago(hours=1)),), runs=(run("r7", "failed", ago(hours=10)),))
    decision = evaluate(make_policy(AUC, cooldown="24h"), signals, NOW)
    assert decision.triggered and not decision.fires
    assert [(b.kind, b.reason) for b in decision.blockers] == [
        ("cooldown", "cooldown 24h until Thu 2026-01-08 02:00 UTC (run r7 started Wed 2026-01-07 02:00 UTC)")
    ]
    assert decision.blockers[0].until == dt.datetime(2026, 1, 8, 2, 0, tzinfo=UTC)
    # once the cooldown is over the same signals fire
    assert evaluate(make_policy(AUC, cooldown="6h"), signals, NOW).fires


def test_daily_limit_blocks() -> None:
    runs = (
        run("a", "failed", ago(hours=11)),
        run("b", "failed", ago(hours=5)),
        run("yesterday", "failed", ago(hours=13)),
    )
    signals = Signals(metrics=(auc(0.6, 500, ago(hours=1)),), runs=runs)
    decision = evaluate(make_policy(AUC, cooldown="1h", max_runs=2), signals, NOW)
    assert not decision.fires
    assert [(b.kind, b.reason) for b in decision.blockers] == [
        ("limit", "2 runs today of max 2 (until Thu 2026-01-08 00:00 UTC)")
    ]
    assert evaluate(make_policy(AUC, cooldown="1h", max_runs=3), signals, NOW).fires


def test_an_active_run_blocks_unless_told_otherwise() -> None:
    signals = Signals(metrics=(auc(0.6, 500, ago(hours=1)),), runs=(run("abc123", "running", ago(days=2)),))
    decision = evaluate(make_policy(AUC), signals, NOW)
    assert not decision.fires
    assert [(b.kind, b.reason) for b in decision.blockers] == [
        ("active", "run abc123 is running (started Mon 2026-01-05 12:00 UTC)")
    ]
    assert evaluate(make_policy(AUC, skip_active=False), signals, NOW).fires


def test_every_trigger_is_listed_in_order() -> None:
    signals = Signals(metrics=(auc(0.6, 500, ago(hours=1)),))
    decision = evaluate(make_policy(SCHEDULE, AUC, PSI, CUSTOMERS), signals, NOW)
    assert [(t.index, t.kind, t.fires) for t in decision.triggers] == [
        (0, "schedule", True),
        (1, "metric", True),
        (2, "drift", False),
        (3, "datasetVersion", False),
    ]


def test_now_must_carry_a_time_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        evaluate(make_policy(SCHEDULE), Signals(), NOW.replace(tzinfo=None))


# --- the signals file -------------------------------------------------------------------------------------------------


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def signals_json(**lists: list[dict[str, Any]]) -> str:
    return json.dumps(lists, indent=2)


def test_signals_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "signals.json"
    path.write_text(
        signals_json(
            metrics=[{"environment": "production", "deployment": "churn", "metric": "auc", "value": 0.7,
                      "samples": 10, "at": "2026-01-07T10:00:00+01:00"}],
            drift=[{"environment": "production", "deployment": "churn", "feature": "tenure", "statistic": "ks",
                    "value": 0.2, "at": iso(NOW)}],
            datasetVersions=[{"dataset": "customers", "version": 2, "at": iso(NOW)}],
            runs=[{"pipeline": "train-churn", "runId": "r1", "state": "running", "startedAt": iso(NOW)}],
        ),
        encoding="utf-8",
    )
    signals = read_signals_file(path)
    assert signals.metrics == (auc(0.7, 10, dt.datetime(2026, 1, 7, 9, 0, tzinfo=UTC)),)
    assert signals.metrics[0].at.tzinfo is UTC
    assert signals.drift == (DriftObservation("production", "churn", "tenure", "ks", 0.2, NOW),)
    assert signals.datasets == (DatasetVersionSeen("customers", 2, NOW),)
    assert signals.runs == (PipelineRunSummary("train-churn", "r1", "running", NOW, None),)
    recorded = RecordedSignals.from_file(path)
    assert recorded.collect([], NOW).runs == ()
    assert recorded.history().runs("train-churn") == list(signals.runs)
    assert RecordedRunHistory(signals.runs).runs("train-ltv") == []


@pytest.mark.parametrize(
    ("content", "lines"),
    [
        (
            signals_json(
                runs=[{"pipeline": "train-churn", "runId": "r1", "state": "runing", "startedAt": iso(NOW)}]
            ),
            ["runs[0].state: must be 'pending', 'queued', 'running', 'retrying', 'succeeded', 'failed' or 'cancelled'"],
        ),
        (
            signals_json(datasetVersions=[{"dataset": "customers", "version": 2, "at": "2026-01-07T10:00:00"}]),
            ["datasetVersions[0].at: must have timezone info"],
        ),
        (
            signals_json(metrics=[{"environment": "production", "deployment": "churn", "metric": "auc", "value": "0.7",
                                   "samples": 10, "at": "2026-01-07T10:00:00Z", "sample": 3}]),
            ["metrics[0].value: must be a valid number", "metrics[0].sample: unknown field"],
        ),
        (json.dumps({"metric": []}), ["metric: unknown field"]),
        (json.dumps([1, 2]), ["the file: must be a JSON object with metrics, drift, datasetVersions and runs lists"]),
    ],
    ids=["bad-state", "naive-time", "string-number-and-typo", "unknown-list", "not-an-object"],
)
def test_signals_file_problems_are_all_reported(tmp_path: Path, content: str, lines: list[str]) -> None:
    path = tmp_path / "signals.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SignalsUnreadable) as caught:
        read_signals_file(path)
    assert caught.value.lines() == [f"{path}: cannot read the signals file", *(f"  {line}" for line in lines)]


def test_signals_file_that_is_not_json_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "signals.json"
    path.write_text('{\n  "metrics": [,]\n}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"signals.json:2:15: invalid JSON: Expecting value"):
        read_signals_file(path)
    with pytest.raises(InputError, match="no such signals file"):
        read_signals_file(tmp_path / "missing.json")


# --- dataset versions from git, and the service ----------------------------------------------------------------------


def commit_at(repo: Path, when: dt.datetime, message: str) -> None:
    stamp = iso(when)
    env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo, check=True, env=env)


def add_customers_v2(repo: Path) -> None:
    folder = repo / "registry/datasets/customers/versions"
    text = (folder / "1.yaml").read_text(encoding="utf-8")
    (folder / "2.yaml").write_text(text.replace("version: 1", "version: 2"), encoding="utf-8")


LATER = dt.datetime(2030, 3, 13, 12, 0, tzinfo=UTC)  # after the example's commit; a Wednesday
POLICY_DATASET_ONLY = """\
apiVersion: mlops/v1
kind: RetrainingPolicy
metadata:
  name: retrain-churn
spec:
  pipeline: train-churn
  triggers:
    - datasetVersion: {dataset: customers}
  result: {environment: production}
"""


def test_dataset_versions_appear_when_committed(example_repo: Path, tmp_path: Path) -> None:
    (example_repo / POLICY_PATH).write_text(POLICY_DATASET_ONLY, encoding="utf-8")
    commit_at(example_repo, LATER - dt.timedelta(days=10), "dataset trigger only")
    signals = tmp_path / "signals.json"
    signals.write_text(
        signals_json(runs=[{"pipeline": "train-churn", "runId": "r1", "state": "succeeded",
                            "startedAt": iso(LATER - dt.timedelta(days=5))}]),
        encoding="utf-8",
    )
    add_customers_v2(example_repo)  # not committed yet: not seen
    check = check_retraining_now(example_repo, signals_file=signals, now=LATER)
    assert not check.fires
    assert check.decisions[0].triggers[0].reason.startswith("newest is customers@1 (")

    commit_at(example_repo, LATER - dt.timedelta(days=2), "customers@2")
    check = check_retraining_now(example_repo, signals_file=signals, now=LATER)
    assert check.fires
    assert check.decisions[0].triggers[0].reason == (
        "customers@2 appeared Mon 2030-03-11 12:00 UTC, after the last successful run r1 started "
        "Fri 2030-03-08 12:00 UTC"
    )
    assert check.paths == {"retrain-churn": POLICY_PATH}
    # replayed as of a time before the commit, the version has not appeared
    assert not check_retraining_now(example_repo, signals_file=signals, now=LATER - dt.timedelta(days=3)).fires


def test_custom_sources_and_run_history(example_repo: Path) -> None:
    """The interfaces monitoring and the run store will implement: any object with collect() / runs()."""

    class Monitoring:
        def collect(self, policies: Any, now: dt.datetime) -> Signals:
            assert [p.metadata.name for p in policies] == ["retrain-churn"]
            return Signals(metrics=(MetricObservation("production", "churn", "auc", 0.6, 900, now),))

    class Store:
        def runs(self, pipeline: str) -> list[PipelineRunSummary]:
            return [PipelineRunSummary(pipeline, "r9", "running", LATER - dt.timedelta(hours=1))]

    check = check_retraining_now(example_repo, now=LATER, sources=[Monitoring()])
    metric = check.decisions[0].triggers[1]
    assert metric.fires and metric.reason == "auc 0.6 < 0.75 over 900 predictions in the last 7d"
    blocked = check_retraining_now(example_repo, now=LATER, sources=[Monitoring()], history=Store())
    assert not blocked.fires and [b.kind for b in blocked.decisions[0].blockers] == ["active", "cooldown", "limit"]


# --- the CLI ---------------------------------------------------------------------------------------------------------


def quiet_signals(path: Path) -> Path:
    """A healthy model, a recent successful run: nothing in the example policy fires at LATER."""
    path.write_text(
        signals_json(
            metrics=[{"environment": "production", "deployment": "churn", "metric": "auc", "value": 0.86,
                      "samples": 640, "at": iso(LATER - dt.timedelta(hours=2))}],
            drift=[{"environment": "production", "deployment": "churn", "feature": "tenure", "statistic": "psi",
                    "value": 0.04, "at": iso(LATER - dt.timedelta(hours=2))}],
            runs=[{"pipeline": "train-churn", "runId": "r-0042", "state": "succeeded",
                   "startedAt": iso(LATER - dt.timedelta(days=3)), "finishedAt": iso(LATER - dt.timedelta(days=3))}],
        ),
        encoding="utf-8",
    )
    return path


def retrain_check(mlops: Run, repo: Path, *args: str) -> Result:
    return mlops("retrain", "check", "--repo", str(repo), "--now", iso(LATER), *args)


def test_cli_nothing_fires_exit_0(example_repo: Path, mlops: Run, tmp_path: Path) -> None:
    result = retrain_check(mlops, example_repo, "--signals", str(quiet_signals(tmp_path / "s.json")))
    assert result.code == 0, result.out + result.err
    assert result.out.splitlines() == [
        "retrain-churn: quiet (pipeline train-churn; result: a pull request for production, reviewed)",
        "  quiet  schedule '0 4 1 * *': last came due Fri 2030-03-01 04:00 UTC; run r-0042 started "
        "Sun 2030-03-10 12:00 UTC; next Mon 2030-04-01 04:00 UTC",
        "  quiet  metric auc below 0.75 on production/churn: auc 0.86 is not below 0.75 over 640 predictions in the "
        "last 7d",
        "  quiet  drift psi above 0.2 on production/churn, any feature: highest psi 0.04 (tenure) is not above 0.2 "
        "over 1 feature in the last 1d",
        "  quiet  new version of dataset customers: newest is customers@1 ("
        + result.out.split("newest is customers@1 (", 1)[1].split(")", 1)[0]
        + "), before the last successful run r-0042 started Sun 2030-03-10 12:00 UTC",
        "nothing fires: 0 of 1 policy at Wed 2030-03-13 12:00 UTC",
    ]


def test_cli_a_firing_trigger_exits_2_and_says_why(example_repo: Path, mlops: Run, tmp_path: Path) -> None:
    path = quiet_signals(tmp_path / "s.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["metrics"][0].update(value=0.71, samples=412)
    path.write_text(json.dumps(data), encoding="utf-8")
    result = retrain_check(mlops, example_repo, "--signals", str(path))
    assert result.code == 2, result.out + result.err
    assert result.out.splitlines()[0] == (
        "retrain-churn: WOULD FIRE (pipeline train-churn; result: a pull request for production, reviewed)"
    )
    fired = "  fires  metric auc below 0.75 on production/churn: auc 0.71 < 0.75 over 412 predictions in the last 7d"
    assert fired in result.out.splitlines()
    assert result.out.splitlines()[-1] == "would fire: 1 of 1 policy at Wed 2030-03-13 12:00 UTC"

    as_json = json.loads(retrain_check(mlops, example_repo, "--signals", str(path), "--format", "json").out)
    assert as_json["now"] == "2030-03-13T12:00:00Z" and as_json["fires"] is True
    (policy,) = as_json["policies"]
    assert policy["policy"] == "retrain-churn" and policy["path"] == POLICY_PATH
    assert policy["result"] == {"pullRequest": True, "autoMerge": False, "environment": "production"}
    assert [(t["kind"], t["fires"]) for t in policy["triggers"]] == [
        ("schedule", False),
        ("metric", True),
        ("drift", False),
        ("datasetVersion", False),
    ]
    assert policy["triggers"][1]["reason"] == "auc 0.71 < 0.75 over 412 predictions in the last 7d"
    assert policy["blockers"] == [] and as_json["warnings"] == []


def test_cli_a_blocked_trigger_exits_0_and_says_what_blocks(example_repo: Path, mlops: Run, tmp_path: Path) -> None:
    path = quiet_signals(tmp_path / "s.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["metrics"][0].update(value=0.71, samples=412)
    data["runs"].append({"pipeline": "train-churn", "runId": "abc123", "state": "running",
                         "startedAt": iso(LATER - dt.timedelta(hours=1))})
    path.write_text(json.dumps(data), encoding="utf-8")
    result = retrain_check(mlops, example_repo, "--signals", str(path), "--format", "json")
    assert result.code == 0, result.out + result.err
    (policy,) = json.loads(result.out)["policies"]
    assert policy["triggered"] is True and policy["fires"] is False
    assert policy["blockers"] == [
        {"kind": "active", "reason": "run abc123 is running (started Wed 2030-03-13 11:00 UTC)", "until": None},
        {"kind": "cooldown", "reason": "cooldown 24h until Thu 2030-03-14 11:00 UTC (run abc123 started "
         "Wed 2030-03-13 11:00 UTC)", "until": "2030-03-14T11:00:00Z"},
        {"kind": "limit", "reason": "1 run today of max 1 (until Thu 2030-03-14 00:00 UTC)",
         "until": "2030-03-14T00:00:00Z"},
    ]
    text = retrain_check(mlops, example_repo, "--signals", str(path))
    assert "  block  active: run abc123 is running (started Wed 2030-03-13 11:00 UTC)" in text.out.splitlines()
    assert text.out.splitlines()[0].startswith("retrain-churn: triggered, blocked (")


def test_cli_selects_one_policy(example_repo: Path, mlops: Run, tmp_path: Path) -> None:
    write_policy(
        example_repo, "policies/retrain-churn-staging.yaml", name="retrain-churn-staging", environment="staging"
    )
    # two policies for one pipeline conflict: the check refuses to evaluate either of them
    result = retrain_check(mlops, example_repo, "--policy", "retrain-churn")
    assert result.code == 1
    assert result.err.splitlines()[0] == "error: 1 problem in retraining policies; fix them first (`mlops validate`)"
    assert result.err.splitlines()[1].startswith(
        "  policies/retrain-churn.yaml:7:3: spec.pipeline: conflicts with policies/retrain-churn-staging.yaml: "
        "both retrain pipeline train-churn (results for production vs staging"
    )
    (example_repo / "policies/retrain-churn-staging.yaml").unlink()
    signals = str(quiet_signals(tmp_path / "s.json"))
    result = retrain_check(mlops, example_repo, "--policy", "retrain-churn", "--signals", signals)
    assert result.code == 0, result.out + result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--policy", "retrain-ltv"), "error: no retraining policy 'retrain-ltv' (retraining policies: retrain-churn); "
                                      "it lives at policies/retrain-ltv.yaml"),
        (("--signals", "missing.json"), "error: missing.json: no such signals file"),
        (("--format", "xml"), "Error: Invalid value for '--format': 'xml' is not one of 'text', 'json'."),
        (("--now", "yesterday"), "Error: Invalid value for '--now': expected an ISO 8601 time such as "
                                 "2026-01-05T10:00:00Z, got 'yesterday'"),
        (("--now", "2030-03-13T12:00"), "Error: Invalid value for '--now': '2030-03-13T12:00' has no time zone"),
        (("--frmat", "json"), "Error: No such option '--frmat'"),
    ],
    ids=["unknown-policy", "missing-signals", "bad-format", "bad-now", "naive-now", "unknown-option"],
)
def test_cli_errors_exit_1_with_one_message(
    example_repo: Path, mlops: Run, args: tuple[str, ...], message: str
) -> None:
    result = mlops("retrain", "check", "--repo", str(example_repo), *args, cwd=example_repo)
    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.out + result.err
    assert result.err.splitlines()[0].startswith(message), result.err


def test_cli_refuses_a_policy_that_does_not_validate(example_repo: Path, mlops: Run) -> None:
    write_policy(example_repo, auto_merge="true", threshold=2)
    result = retrain_check(mlops, example_repo)
    assert result.code == 1
    assert result.out == ""
    assert result.err.splitlines() == [
        "error: 2 problems in retraining policies; fix them first (`mlops validate`)",
        "  policies/retrain-churn.yaml:13:9: spec.triggers[1].metric.below: auc below 2 fires always: auc is in "
        "[0, 1]; a usual threshold is between 0.6 and 0.9",
        "  policies/retrain-churn.yaml:29:5: spec.result.autoMerge: autoMerge is not allowed for production: "
        "policies/promotion-production.yaml requires 2 approvals; set autoMerge: false (the pull request then waits "
        "for its reviewers)",
    ]
    (example_repo / POLICY_PATH).write_text("kind: RetrainingPolicy\nspec: [\n", encoding="utf-8")
    result = retrain_check(mlops, example_repo)
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.splitlines()[1].startswith("  policies/retrain-churn.yaml:3:1: invalid YAML"), result.err


def test_cli_without_policies(example_repo: Path, mlops: Run) -> None:
    (example_repo / POLICY_PATH).unlink()
    result = retrain_check(mlops, example_repo)
    assert result.code == 0
    assert result.out.splitlines() == [
        "no retraining policies (kind RetrainingPolicy in policies/)",
        "nothing fires: 0 of 0 policies at Wed 2030-03-13 12:00 UTC",
    ]


# --- runs recorded by `mlops pipeline run` ---------------------------------------------------------------------------

STORED_RUN = "0123456789abcdef0123456789abcdef"


def record_run(
    repo: Path,
    status: str,
    created: dt.datetime,
    started: dt.datetime | None = None,
    finished: dt.datetime | None = None,
    run_id: str = STORED_RUN,
    pipeline: str = "train-churn",
) -> None:
    """Write (or rewrite) a run record the way `mlops pipeline run` and its driver do (no Ray involved)."""
    state = RunState(
        run_id=run_id,
        pipeline=pipeline,
        commit="c" * 40,
        params={"max_depth": 3, "n_estimators": 40},
        status=status,
        created_at=created.timestamp(),
        started_at=started.timestamp() if started else None,
        finished_at=finished.timestamp() if finished else None,
    )
    store = run_store(repo)
    if (store.runs / run_id / "state.json").is_file():
        store.write_state(state)
    else:
        store.create(state, {"pipeline": pipeline})


def test_stored_runs_as_the_evaluation_sees_them(example_repo: Path) -> None:
    created = LATER - dt.timedelta(hours=2)
    record_run(example_repo, "queued", created)
    record_run(example_repo, "succeeded", created - dt.timedelta(days=2), created - dt.timedelta(days=2, seconds=-5),
               created - dt.timedelta(days=2, seconds=-65), run_id="ab" * 16)
    record_run(example_repo, "running", created, created, run_id="cd" * 16, pipeline="train-ltv")
    runs = StoredRunHistory(example_repo).runs("train-churn")
    assert runs == [
        # a queued run has not started yet: it counts from when it was requested
        PipelineRunSummary("train-churn", STORED_RUN[:12], "queued", created, None),
        PipelineRunSummary("train-churn", "abababababab", "succeeded", created - dt.timedelta(days=2, seconds=-5),
                           created - dt.timedelta(days=2, seconds=-65)),
    ]
    assert runs[0].active and not runs[1].active and runs[1].succeeded
    assert all(r.started_at.tzinfo is UTC for r in runs)
    record_run(example_repo, "failed", created, created, created + dt.timedelta(minutes=3))
    (failed,) = [r for r in StoredRunHistory(example_repo).runs("train-churn") if r.run_id == STORED_RUN[:12]]
    assert (failed.state, failed.active, failed.finished_at) == ("failed", False, created + dt.timedelta(minutes=3))


def test_cli_sees_the_runs_in_the_run_store(example_repo: Path, mlops: Run, tmp_path: Path) -> None:
    """An active run blocks; once it ends, its start still holds the cooldown; after the cooldown it fires."""
    path = quiet_signals(tmp_path / "s.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["metrics"][0].update(value=0.71, samples=412)  # the metric trigger fires
    path.write_text(json.dumps(data), encoding="utf-8")
    started = LATER - dt.timedelta(hours=20)  # yesterday: no daily limit today, cooldown 24h until 16:00
    record_run(example_repo, "running", started - dt.timedelta(seconds=30), started)

    result = retrain_check(mlops, example_repo, "--signals", str(path), "--format", "json")
    assert result.code == 0, result.out + result.err
    (policy,) = json.loads(result.out)["policies"]
    assert policy["triggered"] is True and policy["fires"] is False
    assert policy["blockers"] == [
        {"kind": "active", "reason": "run 0123456789ab is running (started Tue 2030-03-12 16:00 UTC)", "until": None},
        {"kind": "cooldown", "reason": "cooldown 24h until Wed 2030-03-13 16:00 UTC (run 0123456789ab started "
         "Tue 2030-03-12 16:00 UTC)", "until": "2030-03-13T16:00:00Z"},
    ]

    record_run(example_repo, "succeeded", started - dt.timedelta(seconds=30), started,
               started + dt.timedelta(minutes=20))
    text = retrain_check(mlops, example_repo, "--signals", str(path))
    assert text.code == 0, text.out + text.err
    lines = text.out.splitlines()
    assert lines[0].startswith("retrain-churn: triggered, blocked (")
    assert not any("active" in line for line in lines)
    assert ("  block  cooldown: cooldown 24h until Wed 2030-03-13 16:00 UTC (run 0123456789ab started "
            "Tue 2030-03-12 16:00 UTC)") in lines
    # the stored run is the last one (the file's r-0042 is older): the schedule and dataset triggers name it
    assert ("  quiet  schedule '0 4 1 * *': last came due Fri 2030-03-01 04:00 UTC; run 0123456789ab started "
            "Tue 2030-03-12 16:00 UTC; next Mon 2030-04-01 04:00 UTC") in lines

    after = mlops("retrain", "check", "--repo", str(example_repo), "--now", iso(LATER + dt.timedelta(hours=5)),
                  "--signals", str(path))
    assert after.code == 2, after.out + after.err
    assert after.out.splitlines()[0].startswith("retrain-churn: WOULD FIRE (")

    # without a signals file the store alone is the run history
    alone = retrain_check(mlops, example_repo, "--format", "json")
    assert alone.code == 0, alone.out + alone.err
    (policy,) = json.loads(alone.out)["policies"]
    assert [b["kind"] for b in policy["blockers"]] == ["cooldown"]
    assert policy["triggers"][0]["reason"].endswith("run 0123456789ab started Tue 2030-03-12 16:00 UTC; "
                                                    "next Mon 2030-04-01 04:00 UTC")
