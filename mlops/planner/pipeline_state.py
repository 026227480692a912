"""The record of one pipeline run (pure): per step its state, attempts, outputs and failures.

The driver on the cluster is the only writer; the CLI reads it to show progress (``--wait``,
``mlops pipeline show``) and to resume. Step states::

    pending -> running -> succeeded | failed          (failed: attempts used up, a check failed, or a timeout)
            -> cached                                  (outputs taken from an earlier run with the same cache key)
            -> skipped                                 (something it needs failed)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

STATE_FORMAT = 1

PENDING = "pending"
RUNNING = "running"
RETRYING = "retrying"
SUCCEEDED = "succeeded"
FAILED = "failed"
CACHED = "cached"
SKIPPED = "skipped"
DONE_STATES = frozenset({SUCCEEDED, CACHED})
FINAL_STATES = frozenset({SUCCEEDED, CACHED, FAILED, SKIPPED})

RUN_QUEUED = "queued"
RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_FINAL = frozenset({RUN_SUCCEEDED, RUN_FAILED})


@dataclass
class OutputRecord:
    digest: str
    size: int
    type: str
    filename: str
    summary: dict[str, Any] = field(default_factory=dict)  # rows, columns, metrics: what checks looked at


@dataclass
class Attempt:
    number: int
    started_at: float
    finished_at: float | None = None
    error: str = ""
    log: str = ""  # path of the attempt's log, relative to the run folder
    node: str = ""


@dataclass
class StepState:
    name: str
    state: str = PENDING
    attempts: list[Attempt] = field(default_factory=list)
    outputs: dict[str, OutputRecord] = field(default_factory=dict)
    cache_key: str | None = None
    cached_from: str | None = None  # the run whose outputs were reused
    failure: str = ""  # why the step failed, in words (a failed check names the check)
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        spans = [a.finished_at - a.started_at for a in self.attempts if a.finished_at is not None]
        return sum(spans) if spans else None


@dataclass
class Registration:
    model: str
    version_key: str = ""
    branch: str = ""
    commit: str = ""
    pull_request: str = ""
    error: str = ""
    by_hand: str = ""  # the command that registers the stored artifact when registration failed


def _step_json(step: StepState) -> dict[str, Any]:
    return {
        "name": step.name,
        "state": step.state,
        "attempts": [vars(a).copy() for a in step.attempts],
        "outputs": {k: {**vars(v), "summary": dict(v.summary)} for k, v in step.outputs.items()},
        "cache_key": step.cache_key,
        "cached_from": step.cached_from,
        "failure": step.failure,
        "resources": dict(step.resources),
    }


@dataclass
class RunState:
    run_id: str
    pipeline: str
    commit: str
    params: dict[str, Any]
    status: str = RUN_QUEUED
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    error: str = ""
    resumed_from: str | None = None
    tracking_run: str | None = None
    job: str | None = None  # the Ray job that runs it, when submitted as one
    trigger: str = "manual"
    user: str = ""
    environment: str | None = None  # whose cluster runs it (None: the embedded local one)
    branch: str | None = None  # the branch the run started from: where a registered model's pull request goes
    registration: Registration | None = None
    format: int = STATE_FORMAT

    @property
    def failed_steps(self) -> list[str]:
        return [name for name, step in self.steps.items() if step.state == FAILED]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for step in self.steps.values():
            out[step.state] = out.get(step.state, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        # By hand rather than dataclasses.asdict: the driver writes this often and asdict deep-copies everything.
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("steps", "registration")}
        data["params"] = dict(self.params)
        data["steps"] = {name: _step_json(step) for name, step in self.steps.items()}
        data["registration"] = vars(self.registration).copy() if self.registration is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunState:
        steps = {}
        for name, raw in data.get("steps", {}).items():
            steps[name] = StepState(
                name=raw["name"],
                state=raw["state"],
                attempts=[Attempt(**a) for a in raw.get("attempts", [])],
                outputs={k: OutputRecord(**v) for k, v in raw.get("outputs", {}).items()},
                cache_key=raw.get("cache_key"),
                cached_from=raw.get("cached_from"),
                failure=raw.get("failure", ""),
                resources=dict(raw.get("resources", {})),
            )
        registration = data.get("registration")
        fields = {k: v for k, v in data.items() if k not in ("steps", "registration")}
        return cls(
            **fields,
            steps=steps,
            registration=Registration(**registration) if registration else None,
        )
