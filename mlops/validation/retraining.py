"""Retraining policies make sense against the rest of the repository (pure; UC-06).

* thresholds (2a): a metric or drift threshold the value can never cross, or always crosses, is an
  error that says the value's range and a usual threshold; an unknown metric says which are known;
* schedules: the cron expression is valid (5 fields, UTC);
* monitoring setup (4a): the deployments that metric and drift triggers watch exist in their
  environments and serve the model the pipeline retrains; the pipeline registers a model at all;
  (pipelines, environments and datasets that do not exist are reported by the reference check);
* results: ``autoMerge`` only where the target environment's promotion policy needs no approvals;
* conflicts (5a): two policies for the same pipeline, or for pipelines that register the same model
  into the same environment, are reported on both files, each naming the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from mlops.errors import Category, FieldPath, Problem, Severity
from mlops.manifests import Environment, Pipeline, PromotionPolicy, RetrainingPolicy
from mlops.manifests.retraining import DriftCondition, DriftStatistic, MetricCondition, cron_problem
from mlops.validation.index import RepoIndex


@dataclass(frozen=True)
class ValueRange:
    """Where a monitored value can lie, which way is better, and where thresholds usually sit."""

    low: float
    high: float
    higher_is_better: bool | None
    usual: tuple[float, float] | None
    note: str = ""

    def span(self) -> str:
        low = "-inf" if self.low == -math.inf else f"{self.low:g}"
        high = "inf" if self.high == math.inf else f"{self.high:g}"
        return f"[{low}, {high}]" if self.high != math.inf else f"[{low}, {high})"


# Metrics a monitor can compute from logged predictions and their labels.
METRICS: dict[str, ValueRange] = {
    "auc": ValueRange(0, 1, True, (0.6, 0.9)),
    "accuracy": ValueRange(0, 1, True, (0.7, 0.95)),
    "precision": ValueRange(0, 1, True, (0.5, 0.9)),
    "recall": ValueRange(0, 1, True, (0.5, 0.9)),
    "f1": ValueRange(0, 1, True, (0.5, 0.9)),
    "r2": ValueRange(-math.inf, 1, True, (0.5, 0.9)),
    "error_rate": ValueRange(0, 1, False, (0.01, 0.1)),
    "logloss": ValueRange(0, math.inf, False, None, "it depends on the base rate"),
    "mae": ValueRange(0, math.inf, False, None, "it is in the target's units"),
    "rmse": ValueRange(0, math.inf, False, None, "it is in the target's units"),
    "mape": ValueRange(0, math.inf, False, (0.1, 0.3)),
}

DRIFT: dict[DriftStatistic, ValueRange] = {
    DriftStatistic.PSI: ValueRange(0, math.inf, None, (0.1, 0.25)),
    DriftStatistic.KS: ValueRange(0, 1, None, (0.1, 0.3)),
    DriftStatistic.JS: ValueRange(0, 1, None, (0.1, 0.2)),
    DriftStatistic.WASSERSTEIN: ValueRange(0, math.inf, None, None, "it is in the feature's units"),
}


def _problem(
    path: str, message: str, field: FieldPath, code: str, severity: Severity = Severity.ERROR
) -> Problem:
    return Problem(path, message, field=field, category=Category.POLICY, code=code, severity=severity)


def check_retraining(index: RepoIndex) -> Iterator[Problem]:
    policies = sorted(index.of(RetrainingPolicy))
    for path, policy in policies:
        yield from _triggers(index, path, policy)
        yield from _pipeline(index, path, policy)
        yield from _auto_merge(index, path, policy)
    yield from _conflicts(index, policies)


def _usual(name: str, values: ValueRange) -> str:
    if values.usual is not None:
        low, high = values.usual
        return f"a usual threshold is between {low:g} and {high:g}"
    return f"choose a threshold from the values you observe ({values.note})" if values.note else ""


def threshold_problem(name: str, values: ValueRange, direction: str, threshold: float) -> str | None:
    """Why ``name <direction> <threshold>`` never or always fires, or None when it can go either way."""
    if math.isnan(threshold):
        return f"{name} {direction} nan can never be decided; {_usual(name, values)}"
    never = (direction == "below" and threshold <= values.low) or (direction == "above" and threshold >= values.high)
    always = (direction == "below" and threshold >= values.high) or (direction == "above" and threshold <= values.low)
    if not (never or always):
        return None
    outcome = "can never be reached" if never else "fires always"
    usual = _usual(name, values)
    return f"{name} {direction} {threshold:g} {outcome}: {name} is in {values.span()}" + (f"; {usual}" if usual else "")


def _triggers(index: RepoIndex, path: str, policy: RetrainingPolicy) -> Iterator[Problem]:
    for i, trigger in enumerate(policy.spec.triggers):
        at: FieldPath = ("spec", "triggers", i)
        if trigger.schedule is not None:
            message = cron_problem(trigger.schedule)
            if message is not None:
                yield _problem(path, message, (*at, "schedule"), "bad-cron")
        if trigger.metric is not None:
            yield from _metric(path, trigger.metric, (*at, "metric"))
            yield from _watched(index, path, policy, trigger.metric, (*at, "metric"))
        if trigger.drift is not None:
            yield from _drift(path, trigger.drift, (*at, "drift"))
            yield from _watched(index, path, policy, trigger.drift, (*at, "drift"))
        if trigger.datasetVersion is not None:
            yield from _dataset(index, path, policy, trigger.datasetVersion.dataset, (*at, "datasetVersion", "dataset"))


def _metric(path: str, metric: MetricCondition, at: FieldPath) -> Iterator[Problem]:
    values = METRICS.get(metric.name)
    if values is None:
        yield _problem(
            path,
            f"unknown metric {metric.name!r}; known metrics: {', '.join(METRICS)}",
            (*at, "name"),
            "unknown-metric",
        )
        return
    message = threshold_problem(metric.name, values, metric.direction, metric.threshold)
    if message is not None:
        yield _problem(path, message, (*at, metric.direction), "threshold-range")
        return
    if values.higher_is_better is not None and values.higher_is_better != (metric.direction == "below"):
        better = "higher" if values.higher_is_better else "lower"
        other = "below" if metric.direction == "above" else "above"
        yield _problem(
            path,
            f"{metric.name} is better when {better}: '{metric.direction}' retrains when the model does well; "
            f"did you mean '{other}'?",
            (*at, metric.direction),
            "threshold-direction",
            Severity.WARNING,
        )


def _drift(path: str, drift: DriftCondition, at: FieldPath) -> Iterator[Problem]:
    values = DRIFT[drift.statistic]
    message = threshold_problem(drift.statistic.value, values, "above", drift.above)
    if message is not None:
        yield _problem(path, message, (*at, "above"), "threshold-range")


def _watched(
    index: RepoIndex,
    path: str,
    policy: RetrainingPolicy,
    condition: MetricCondition | DriftCondition,
    at: FieldPath,
) -> Iterator[Problem]:
    """The watched deployment exists and serves the model this policy retrains (UC-06 4a)."""
    env = index.find(Environment, condition.environment)
    if env is None:
        return  # a dangling reference, reported by the reference check
    deployments = {d.name: d for d in env.spec.deployments}
    deployment = deployments.get(condition.deployment)
    if deployment is None:
        known = ", ".join(deployments) or "none"
        yield _problem(
            path,
            f"environment {condition.environment} has no deployment {condition.deployment!r} "
            f"(its deployments: {known}); nothing would be monitored",
            (*at, "deployment"),
            "unknown-deployment",
        )
        return
    pipeline = index.find(Pipeline, policy.spec.pipeline)
    registers = pipeline.spec.registers if pipeline is not None else None
    if registers is not None and deployment.model != registers.model:
        yield _problem(
            path,
            f"deployment {deployment.name} in {condition.environment} serves model {deployment.model}, but pipeline "
            f"{policy.spec.pipeline} retrains {registers.model}: its signals say nothing about the model retrained",
            (*at, "deployment"),
            "model-not-deployed",
        )


def _dataset(index: RepoIndex, path: str, policy: RetrainingPolicy, dataset: str, at: FieldPath) -> Iterator[Problem]:
    pipeline = index.find(Pipeline, policy.spec.pipeline)
    if pipeline is None or index.get("Dataset", dataset) is None:
        return
    read = sorted({ref.key.split("@", 1)[0] for ref in pipeline.references() if ref.kind == "DatasetVersion"})
    # An address the pipeline check refuses (dataset://customers, no version) still says which dataset is read.
    named = any(
        isinstance(value, str) and value.split("@", 1)[0] == f"dataset://{dataset}"
        for step in pipeline.spec.steps
        for value in step.inputs.values()
    )
    if dataset not in read and not named:
        reads = f"it reads {', '.join(read)}" if read else "it reads no dataset"
        yield _problem(
            path,
            f"pipeline {policy.spec.pipeline} does not read dataset {dataset} ({reads}): "
            "a new version would retrain on the same data",
            at,
            "dataset-not-read",
            Severity.WARNING,
        )


def _pipeline(index: RepoIndex, path: str, policy: RetrainingPolicy) -> Iterator[Problem]:
    pipeline = index.find(Pipeline, policy.spec.pipeline)
    if pipeline is not None and pipeline.spec.registers is None:
        yield _problem(
            path,
            f"pipeline {policy.spec.pipeline} registers no model (spec.registers), "
            "so a retraining run has nothing to propose",
            ("spec", "pipeline"),
            "pipeline-registers-nothing",
        )


def _auto_merge(index: RepoIndex, path: str, policy: RetrainingPolicy) -> Iterator[Problem]:
    result = policy.spec.result
    if not result.autoMerge:
        return
    for policy_path, promotion in sorted(index.of(PromotionPolicy)):
        approvals = promotion.spec.approvals.count
        if promotion.spec.environment == result.environment and approvals > 0:
            yield _problem(
                path,
                f"autoMerge is not allowed for {result.environment}: {policy_path} requires "
                f"{approvals} approval{'s' if approvals != 1 else ''}; set autoMerge: false "
                "(the pull request then waits for its reviewers)",
                ("spec", "result", "autoMerge"),
                "auto-merge-not-allowed",
            )


def _retrained_model(index: RepoIndex, policy: RetrainingPolicy) -> str | None:
    pipeline = index.find(Pipeline, policy.spec.pipeline)
    if pipeline is None or pipeline.spec.registers is None:
        return None
    return pipeline.spec.registers.model


def _conflicts(index: RepoIndex, policies: list[tuple[str, RetrainingPolicy]]) -> Iterator[Problem]:
    for a, (path_a, policy_a) in enumerate(policies):
        for b, (path_b, policy_b) in enumerate(policies):
            if a == b:
                continue
            what = _conflict(index, policy_a, policy_b)
            if what is None:
                continue
            differences = _differences(policy_a, policy_b)
            detail = f" ({'; '.join(differences)})" if differences else " (identical settings)"
            yield _problem(
                path_a,
                f"conflicts with {path_b}: {what}{detail}; merge them into one policy",
                ("spec", "pipeline"),
                "policy-conflict",
            )


def _conflict(index: RepoIndex, a: RetrainingPolicy, b: RetrainingPolicy) -> str | None:
    model_a, model_b = _retrained_model(index, a), _retrained_model(index, b)
    same_environment = a.spec.result.environment == b.spec.result.environment
    if a.spec.pipeline == b.spec.pipeline:
        if model_a is not None and same_environment:
            return f"both retrain model {model_a} for {a.spec.result.environment} with pipeline {a.spec.pipeline}"
        return f"both retrain pipeline {a.spec.pipeline}"
    if model_a is not None and model_a == model_b and same_environment:
        return (
            f"both retrain model {model_a} for {a.spec.result.environment}, "
            f"with pipelines {a.spec.pipeline} and {b.spec.pipeline}"
        )
    return None


def _differences(a: RetrainingPolicy, b: RetrainingPolicy) -> list[str]:
    out = []
    if a.spec.cooldown != b.spec.cooldown:
        out.append(f"different cooldowns {a.spec.cooldown} vs {b.spec.cooldown}")
    if a.spec.limits.maxRunsPerDay != b.spec.limits.maxRunsPerDay:
        out.append(f"maxRunsPerDay {a.spec.limits.maxRunsPerDay} vs {b.spec.limits.maxRunsPerDay}")
    if a.spec.result.autoMerge != b.spec.result.autoMerge:
        out.append(f"autoMerge {str(a.spec.result.autoMerge).lower()} vs {str(b.spec.result.autoMerge).lower()}")
    if a.spec.result.environment != b.spec.result.environment:
        out.append(f"results for {a.spec.result.environment} vs {b.spec.result.environment}")
    kinds_a = [t.kind for t in a.spec.triggers]
    kinds_b = [t.kind for t in b.spec.triggers]
    if kinds_a != kinds_b:
        out.append(f"triggers {', '.join(kinds_a)} vs {', '.join(kinds_b)}")
    return out
