"""kind: RetrainingPolicy — when a pipeline retrains a model, how often at most, and what happens to the result.

Lives at ``policies/<name>.yaml`` (UC-06). A policy names a pipeline and the triggers that start it: a
cron schedule, a monitored metric past a threshold, drift past a threshold, or a new version of a dataset.
A cooldown and limits keep triggers from starting runs back to back, and the result of a run is always a
pull request (``autoMerge`` only where the target environment's promotion policy needs no approvals).

The cron and duration helpers live here, beside the fields they interpret, so that validation and the
trigger evaluation (two pure layers that may not import each other) read them the same way. croniter is
imported on first use: reading manifests should not pay for it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mlops.manifests.base import Manifest, Name, Reference, StrictModel, TextEnum
from mlops.manifests.policies import DURATION_PATTERN

_DURATION = re.compile(r"^(?P<n>[0-9]+)(?P<unit>m|h|d)$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class DriftStatistic(TextEnum):
    """How a feature's live distribution is compared with its training distribution."""

    PSI = "psi"  # population stability index
    KS = "ks"  # Kolmogorov-Smirnov statistic
    WASSERSTEIN = "wasserstein"  # earth mover's distance, in the feature's units
    JS = "js"  # Jensen-Shannon distance (base 2)


class MetricCondition(StrictModel):
    """A monitored metric of a deployment past a threshold, over a window of predictions."""

    environment: Name = Field(description="Environment the deployment runs in")
    deployment: Name = Field(description="Deployment (in that environment) whose predictions are monitored")
    name: str = Field(min_length=1, description="Metric, e.g. auc, accuracy, error_rate")
    below: float | None = Field(default=None, description="Fire when the metric is below this value")
    above: float | None = Field(default=None, description="Fire when the metric is above this value")
    window: str = Field(default="7d", pattern=DURATION_PATTERN, description="How far back observations count")
    minSamples: Annotated[int, Field(ge=0)] = Field(
        default=100, description="Fewer predictions than this in the window never fire"
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> MetricCondition:
        if (self.below is None) == (self.above is None):
            raise ValueError("a metric trigger needs exactly one of 'below' or 'above'")
        return self

    @property
    def threshold(self) -> float:
        value = self.below if self.below is not None else self.above
        assert value is not None
        return value

    @property
    def direction(self) -> Literal["below", "above"]:
        return "below" if self.below is not None else "above"


class DriftCondition(StrictModel):
    """Drift of a deployment's inputs past a threshold."""

    environment: Name = Field(description="Environment the deployment runs in")
    deployment: Name = Field(description="Deployment (in that environment) whose inputs are monitored")
    feature: str | None = Field(default=None, min_length=1, description="One input feature; default: any feature")
    statistic: DriftStatistic = DriftStatistic.PSI
    above: float = Field(description="Fire when the statistic is above this value")
    window: str = Field(
        default="1d", pattern=DURATION_PATTERN, description="Observations older than this are stale and ignored"
    )


class DatasetCondition(StrictModel):
    """A new version of a dataset since the pipeline's last successful run."""

    dataset: Name


class Trigger(StrictModel):
    """Exactly one of ``schedule``, ``metric``, ``drift`` or ``datasetVersion``."""

    schedule: str | None = Field(default=None, description="cron expression (5 fields, UTC), e.g. '0 3 * * 1'")
    metric: MetricCondition | None = None
    drift: DriftCondition | None = None
    datasetVersion: DatasetCondition | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        given = [name for name in TRIGGER_KINDS if getattr(self, name) is not None]
        if len(given) != 1:
            found = f"got {' and '.join(given)}" if given else "got none"
            raise ValueError(f"a trigger needs exactly one of {', '.join(TRIGGER_KINDS)} ({found})")
        return self

    @property
    def kind(self) -> str:
        return next(name for name in TRIGGER_KINDS if getattr(self, name) is not None)


TRIGGER_KINDS = ("schedule", "metric", "drift", "datasetVersion")


class Limits(StrictModel):
    maxRunsPerDay: Annotated[int, Field(ge=1, le=1440)] = Field(
        default=1, description="Runs the policy may start per UTC day"
    )
    skipWhileActive: bool = Field(default=True, description="Start nothing while a run of the pipeline is active")


class RetrainingResult(StrictModel):
    """What happens to a better model: always a pull request, merged automatically only where allowed."""

    pullRequest: bool = Field(
        default=True,
        description="Always true: automated changes go through a pull request, never straight to main",
        json_schema_extra={"const": True},
    )
    autoMerge: bool = Field(
        default=False, description="Merge without review; only where the environment's promotion policy allows"
    )
    environment: Name = Field(description="The environment the new version is proposed for")

    @field_validator("pullRequest")
    @classmethod
    def _always_a_pull_request(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "pullRequest must be true: a retrained model is proposed in a pull request, never written to main"
            )
        return value


class RetrainingPolicySpec(StrictModel):
    pipeline: Name = Field(description="The Pipeline that retrains (pipelines/<name>/pipeline.yaml)")
    triggers: list[Trigger] = Field(min_length=1)
    cooldown: str = Field(
        default="24h", pattern=DURATION_PATTERN, description="Minimum time between the starts of two runs"
    )
    limits: Limits = Field(default_factory=Limits)
    result: RetrainingResult


class RetrainingPolicy(Manifest):
    KIND: ClassVar[str] = "RetrainingPolicy"
    kind: Literal["RetrainingPolicy"]
    spec: RetrainingPolicySpec

    def references(self) -> Iterator[Reference]:
        yield Reference("Pipeline", self.spec.pipeline, ("spec", "pipeline"))
        yield Reference("Environment", self.spec.result.environment, ("spec", "result", "environment"))
        for i, trigger in enumerate(self.spec.triggers):
            watched = trigger.metric or trigger.drift
            if watched is not None:
                field = ("spec", "triggers", i, trigger.kind, "environment")
                yield Reference("Environment", watched.environment, field)
            if trigger.datasetVersion is not None:
                at = ("spec", "triggers", i, "datasetVersion", "dataset")
                yield Reference("Dataset", trigger.datasetVersion.dataset, at)


def parse_duration(text: str) -> dt.timedelta:
    """``30m``, ``24h``, ``7d`` -> a timedelta (the manifests' DURATION_PATTERN guarantees the form)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected a number and m, h or d (e.g. 24h)")
    return dt.timedelta(seconds=int(match["n"]) * _UNIT_SECONDS[match["unit"]])


def cron_problem(expression: str) -> str | None:
    """What is wrong with a cron expression, in words, or None when croniter accepts it as 5 UTC fields."""
    from croniter import croniter

    text = expression.strip()
    hint = "expected 5 fields: minute hour day-of-month month day-of-week (UTC), e.g. '0 3 * * 1'"
    if text.lower() in _CRON_MACROS:
        return None
    fields = text.split()
    if len(fields) != 5:
        return f"invalid cron expression {expression!r}: {len(fields)} field{'s' if len(fields) != 1 else ''}; {hint}"
    for i, (label, value) in enumerate(zip(CRON_FIELDS, fields, strict=True)):
        alone = " ".join(value if j == i else "*" for j in range(5))
        if not croniter.is_valid(alone):
            return f"invalid cron expression {expression!r}: the {label} field {value!r} is not valid; {hint}"
    if not croniter.is_valid(text):
        return f"invalid cron expression {expression!r}; {hint}"
    return None


def latest_fire_time(expression: str, now: dt.datetime) -> dt.datetime:
    """The last time at or before ``now`` (UTC) that the schedule named."""
    from croniter import croniter

    # croniter's get_prev is strictly before its start: start one minute after now's minute, so a schedule
    # due exactly now (03:00:00 or 03:00:30 for '0 3 * * *') counts as due.
    start = now.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    found: dt.datetime = croniter(expression, start).get_prev(dt.datetime)
    return found.astimezone(dt.UTC)


def next_fire_time(expression: str, now: dt.datetime) -> dt.datetime:
    """The first time after ``now`` (UTC) that the schedule names."""
    from croniter import croniter

    found: dt.datetime = croniter(expression, now.astimezone(dt.UTC)).get_next(dt.datetime)
    return found.astimezone(dt.UTC)
