"""Would a retraining policy start its pipeline now, and why (pure; UC-06).

The input is a :class:`Signals` value: what monitoring observed (metric and drift observations), when
dataset versions appeared, and the pipeline's runs. Where the signals come from (a recorded JSON file,
git history, the monitoring store, the pipeline run store) is the services layer's business; here they
are plain values, so every decision can be replayed from recorded signals.

:func:`evaluate` lists every trigger with whether it fires and why, in words, and everything that blocks
a run (cooldown, the daily limit, an active run). A policy *fires* when at least one trigger fires and
nothing blocks it.

Semantics, in one place:

* schedule: fires when the cron expression's latest time at or before ``now`` came after the start of the
  pipeline's last run (any state), or when no run is recorded;
* metric: the observations of the deployment's metric in the window ``(now - window, now]`` are combined
  into one value, weighted by their sample counts (each observation covers its own batch of predictions);
  fewer samples than ``minSamples`` never fire;
* drift: the latest observation per feature in the window; fires when any watched feature's statistic is
  above the threshold;
* datasetVersion: fires when a version of the dataset appeared after the start of the pipeline's last
  successful run (or when there is no successful run yet);
* blockers: a cooldown counts from the start of the last run (failed runs too: a failing pipeline must not
  restart in a loop); the daily limit counts runs started on ``now``'s UTC day; with ``skipWhileActive``
  a pending, queued or running run blocks.

Observations stamped after ``now`` are ignored, so ``--now`` replays the past exactly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mlops.manifests.retraining import (
    DriftCondition,
    MetricCondition,
    RetrainingPolicy,
    latest_fire_time,
    next_fire_time,
    parse_duration,
)

ACTIVE_STATES = frozenset({"pending", "queued", "running", "retrying"})
SUCCEEDED_STATES = frozenset({"succeeded"})
FINISHED_STATES = frozenset({"succeeded", "failed", "cancelled"})
RUN_STATES = ACTIVE_STATES | FINISHED_STATES


@dataclass(frozen=True)
class MetricObservation:
    """A metric of one deployment over one batch of ``samples`` labelled predictions, observed ``at``."""

    environment: str
    deployment: str
    metric: str
    value: float
    samples: int
    at: dt.datetime


@dataclass(frozen=True)
class DriftObservation:
    """A drift statistic of one input feature of one deployment, observed ``at``."""

    environment: str
    deployment: str
    feature: str
    statistic: str
    value: float
    at: dt.datetime


@dataclass(frozen=True)
class DatasetVersionSeen:
    """Version ``version`` of ``dataset`` became available ``at`` (e.g. when its manifest was committed)."""

    dataset: str
    version: int
    at: dt.datetime


@dataclass(frozen=True)
class PipelineRunSummary:
    """One run of a pipeline: ``state`` is one of RUN_STATES."""

    pipeline: str
    run_id: str
    state: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def succeeded(self) -> bool:
        return self.state in SUCCEEDED_STATES


@dataclass(frozen=True)
class Signals:
    """Everything the triggers of retraining policies are evaluated on."""

    metrics: tuple[MetricObservation, ...] = ()
    drift: tuple[DriftObservation, ...] = ()
    datasets: tuple[DatasetVersionSeen, ...] = ()
    runs: tuple[PipelineRunSummary, ...] = ()

    def merge(self, other: Signals) -> Signals:
        return Signals(
            self.metrics + other.metrics,
            self.drift + other.drift,
            self.datasets + other.datasets,
            self.runs + other.runs,
        )


@dataclass(frozen=True)
class TriggerOutcome:
    index: int
    kind: str
    description: str
    fires: bool
    reason: str


@dataclass(frozen=True)
class Blocker:
    kind: str  # "active" | "cooldown" | "limit"
    reason: str
    until: dt.datetime | None = None


@dataclass(frozen=True)
class Decision:
    policy: str
    pipeline: str
    environment: str
    auto_merge: bool
    now: dt.datetime
    triggers: tuple[TriggerOutcome, ...]
    blockers: tuple[Blocker, ...] = field(default=())

    @property
    def triggered(self) -> bool:
        return any(t.fires for t in self.triggers)

    @property
    def fires(self) -> bool:
        """A retraining run would start now: a trigger fires and nothing blocks it."""
        return self.triggered and not self.blockers


def when(moment: dt.datetime) -> str:
    """``Mon 2026-01-05 03:00 UTC``: how decisions name times."""
    return moment.astimezone(dt.UTC).strftime("%a %Y-%m-%d %H:%M UTC")


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def evaluate(policy: RetrainingPolicy, signals: Signals, now: dt.datetime) -> Decision:
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    now = now.astimezone(dt.UTC)
    spec = policy.spec
    runs = sorted(
        (r for r in signals.runs if r.pipeline == spec.pipeline and r.started_at <= now),
        key=lambda r: (r.started_at, r.run_id),
    )
    outcomes = []
    for i, trigger in enumerate(spec.triggers):
        if trigger.schedule is not None:
            outcome = _schedule(trigger.schedule, spec.pipeline, runs, now)
        elif trigger.metric is not None:
            outcome = _metric(trigger.metric, signals.metrics, now)
        elif trigger.drift is not None:
            outcome = _drift(trigger.drift, signals.drift, now)
        else:
            assert trigger.datasetVersion is not None
            outcome = _dataset(trigger.datasetVersion.dataset, spec.pipeline, signals.datasets, runs, now)
        description, fires, reason = outcome
        outcomes.append(TriggerOutcome(i, trigger.kind, description, fires, reason))
    return Decision(
        policy=policy.metadata.name,
        pipeline=spec.pipeline,
        environment=spec.result.environment,
        auto_merge=spec.result.autoMerge,
        now=now,
        triggers=tuple(outcomes),
        blockers=tuple(_blockers(policy, runs, now)),
    )


def _schedule(
    expression: str, pipeline: str, runs: Sequence[PipelineRunSummary], now: dt.datetime
) -> tuple[str, bool, str]:
    description = f"schedule {expression!r}"
    due = latest_fire_time(expression, now)
    following = next_fire_time(expression, now)
    if not runs:
        return description, True, f"came due {when(due)} and no run of {pipeline} is recorded"
    last = runs[-1]
    if last.started_at < due:
        return description, True, f"came due {when(due)}, after run {last.run_id} started {when(last.started_at)}"
    return (
        description,
        False,
        f"last came due {when(due)}; run {last.run_id} started {when(last.started_at)}; next {when(following)}",
    )


def _in_window(at: dt.datetime, now: dt.datetime, window: dt.timedelta) -> bool:
    return now - window < at <= now


def _metric(
    condition: MetricCondition, observations: Iterable[MetricObservation], now: dt.datetime
) -> tuple[str, bool, str]:
    name, threshold, direction = condition.name, condition.threshold, condition.direction
    where = f"{condition.environment}/{condition.deployment}"
    description = f"metric {name} {direction} {_number(threshold)} on {where}"
    window = parse_duration(condition.window)
    found = [
        o
        for o in observations
        if (o.environment, o.deployment, o.metric) == (condition.environment, condition.deployment, name)
        and _in_window(o.at, now, window)
    ]
    if not found:
        return description, False, f"no {name} observations for {where} in the last {condition.window}"
    samples = sum(o.samples for o in found)
    if samples > 0:
        value = sum(o.value * o.samples for o in found) / samples
    else:
        value = sum(o.value for o in found) / len(found)
    over = f"over {samples:,} prediction{'s' if samples != 1 else ''} in the last {condition.window}"
    if samples < condition.minSamples:
        return (
            description,
            False,
            f"{name} {_number(value)} {over}: fewer than minSamples {condition.minSamples:,}, too few to decide",
        )
    crossed = value < threshold if direction == "below" else value > threshold
    if crossed:
        sign = "<" if direction == "below" else ">"
        return description, True, f"{name} {_number(value)} {sign} {_number(threshold)} {over}"
    return description, False, f"{name} {_number(value)} is not {direction} {_number(threshold)} {over}"


def _drift(
    condition: DriftCondition, observations: Iterable[DriftObservation], now: dt.datetime
) -> tuple[str, bool, str]:
    statistic = condition.statistic.value
    where = f"{condition.environment}/{condition.deployment}"
    feature = f"feature {condition.feature}" if condition.feature is not None else "any feature"
    description = f"drift {statistic} above {_number(condition.above)} on {where}, {feature}"
    window = parse_duration(condition.window)
    latest: dict[str, DriftObservation] = {}
    for o in observations:
        if (
            (o.environment, o.deployment, o.statistic) == (condition.environment, condition.deployment, statistic)
            and (condition.feature is None or o.feature == condition.feature)
            and _in_window(o.at, now, window)
            and (o.feature not in latest or latest[o.feature].at <= o.at)
        ):
            latest[o.feature] = o
    if not latest:
        return description, False, f"no {statistic} observations for {where} ({feature}) in the last {condition.window}"
    ranked = sorted(latest.values(), key=lambda o: (-o.value, o.feature))
    over = [o for o in ranked if o.value > condition.above]
    if over:
        listed = ", ".join(f"{o.feature} {_number(o.value)}" for o in over[:5])
        more = f" and {len(over) - 5} more" if len(over) > 5 else ""
        count = f"{len(over)} feature{'s' if len(over) != 1 else ''}"
        return (
            description,
            True,
            f"{statistic} > {_number(condition.above)} on {count}: {listed}{more} "
            f"(latest in the last {condition.window})",
        )
    worst = ranked[0]
    return (
        description,
        False,
        f"highest {statistic} {_number(worst.value)} ({worst.feature}) is not above {_number(condition.above)} "
        f"over {len(ranked)} feature{'s' if len(ranked) != 1 else ''} in the last {condition.window}",
    )


def _dataset(
    dataset: str,
    pipeline: str,
    seen: Iterable[DatasetVersionSeen],
    runs: Sequence[PipelineRunSummary],
    now: dt.datetime,
) -> tuple[str, bool, str]:
    description = f"new version of dataset {dataset}"
    versions = sorted((v for v in seen if v.dataset == dataset and v.at <= now), key=lambda v: (v.at, v.version))
    if not versions:
        return description, False, f"no version of {dataset} recorded"
    successes = [r for r in runs if r.succeeded]
    if not successes:
        newest = versions[-1]
        return (
            description,
            True,
            f"{dataset}@{newest.version} appeared {when(newest.at)} and no successful run of {pipeline} is recorded",
        )
    last = successes[-1]
    new = [v for v in versions if v.at > last.started_at]
    if new:
        names = ", ".join(f"{dataset}@{v.version}" for v in new)
        return (
            description,
            True,
            f"{names} appeared {when(new[-1].at)}, after the last successful run {last.run_id} "
            f"started {when(last.started_at)}",
        )
    newest = versions[-1]
    return (
        description,
        False,
        f"newest is {dataset}@{newest.version} ({when(newest.at)}), before the last successful run "
        f"{last.run_id} started {when(last.started_at)}",
    )


def _blockers(policy: RetrainingPolicy, runs: Sequence[PipelineRunSummary], now: dt.datetime) -> list[Blocker]:
    spec = policy.spec
    out = []
    if spec.limits.skipWhileActive:
        for run in runs:
            if run.active:
                out.append(Blocker("active", f"run {run.run_id} is {run.state} (started {when(run.started_at)})"))
    if runs:
        last = runs[-1]
        until = last.started_at + parse_duration(spec.cooldown)
        if until > now:
            out.append(
                Blocker(
                    "cooldown",
                    f"cooldown {spec.cooldown} until {when(until)} (run {last.run_id} started {when(last.started_at)})",
                    until,
                )
            )
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = [r for r in runs if r.started_at >= midnight]
    limit = spec.limits.maxRunsPerDay
    if len(today) >= limit:
        tomorrow = midnight + dt.timedelta(days=1)
        out.append(
            Blocker(
                "limit",
                f"{len(today)} run{'s' if len(today) != 1 else ''} today of max {limit} (until {when(tomorrow)})",
                tomorrow,
            )
        )
    return out
