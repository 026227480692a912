"""Pipeline runs as text and JSON: the runs table, one run in detail, and progress lines while it runs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlops.planner.pipeline_run import RunPlan
from mlops.planner.pipeline_state import RunState, StepState

MARKS = {
    "succeeded": "ok",
    "cached": "cached",
    "failed": "FAILED",
    "skipped": "skipped",
    "running": "running",
    "retrying": "retrying",
    "pending": "pending",
}


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 120 else f"{value / 60:.1f}m"


def run_duration(state: RunState) -> float | None:
    if state.started_at is None:
        return None
    return (state.finished_at or dt.datetime.now(dt.UTC).timestamp()) - state.started_at


def step_line(step: StepState) -> str:
    """One progress line for a step that changed (what CI logs show while a run goes)."""
    text = f"step {step.name}: {MARKS.get(step.state, step.state)}"
    if step.state in ("running", "retrying") and step.attempts:
        text += f" (attempt {len(step.attempts)})"
    if step.state == "retrying" and step.attempts and step.attempts[-1].error:
        text += f" after: {step.attempts[-1].error}"
    if step.state == "cached" and step.cached_from:
        text += f" (outputs of run {step.cached_from[:12]})"
    if step.state in ("succeeded",) and step.duration is not None:
        text += f" in {_seconds(step.duration)}"
    if step.state in ("failed", "skipped") and step.failure:
        text += f": {step.failure}"
    return text


def render_runs(states: Sequence[RunState], output_format: str) -> str:
    if output_format == "json":
        return json.dumps([_run_json(s) for s in states], indent=2)
    if not states:
        return "no pipeline runs yet (start one with `mlops pipeline run NAME`)"
    rows = [("RUN", "PIPELINE", "STATUS", "STARTED", "DURATION", "STEPS", "TRIGGER")]
    for s in states:
        counts = s.counts()
        steps = " ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        rows.append(
            (s.run_id[:12], s.pipeline, s.status, _when(s.created_at), _seconds(run_duration(s)), steps, s.trigger)
        )
    return _table(rows)


def render_run(state: RunState, plan: RunPlan, folder: Path, output_format: str) -> str:
    if output_format == "json":
        return json.dumps({**_run_json(state), "plan": plan.to_json(), "folder": str(folder)}, indent=2)
    lines = [
        f"pipeline run {state.run_id} ({state.pipeline})",
        f"  status:   {state.status}" + (f": {state.error}" if state.error else ""),
        f"  commit:   {state.commit[:12]}    trigger: {state.trigger}    user: {state.user or '-'}",
        f"  started:  {_when(state.started_at)}    duration: {_seconds(run_duration(state))}",
        "  params:   " + (", ".join(f"{k}={v}" for k, v in sorted(state.params.items())) or "-"),
    ]
    if state.resumed_from:
        lines.append(f"  resumes:  {state.resumed_from[:12]}")
    if state.tracking_run:
        lines.append(f"  tracked:  run {state.tracking_run[:12]} (mlops runs show {state.tracking_run[:12]})")
    if state.job:
        lines.append(f"  ray job:  {state.job}")
    rows = [("STEP", "STATE", "ATTEMPTS", "DURATION", "RESOURCES", "OUTPUTS")]
    for step in plan.steps:
        record = state.steps.get(step.name, StepState(name=step.name))
        outputs = " ".join(f"{k}={v.digest.removeprefix('sha256:')[:12]}" for k, v in record.outputs.items())
        resources = f"{step.cpus:g} CPU" + (f", {step.gpus:g} GPU" if step.gpus else "")
        rows.append(
            (
                step.name,
                MARKS.get(record.state, record.state),
                str(len(record.attempts)),
                _seconds(record.duration),
                resources,
                outputs or "-",
            )
        )
    lines += ["", _table(rows)]
    problems = [s for s in state.steps.values() if s.state in ("failed", "skipped") or any(a.error for a in s.attempts)]
    for record in problems:
        lines.append("")
        lines.append(f"{record.name}: {record.failure or record.state}")
        for attempt in record.attempts:
            status = attempt.error or "ok"
            lines.append(f"  attempt {attempt.number}: {status}  (log: {folder / attempt.log})")
    if state.registration is not None:
        reg = state.registration
        lines.append("")
        if reg.error:
            lines.append(f"registration of {reg.model} FAILED: {reg.error}")
            lines.append(f"  the artifact is in the store; register it by hand: {reg.by_hand}")
        else:
            lines.append(f"registered {reg.version_key} on branch {reg.branch} (commit {reg.commit[:12]})")
            if reg.pull_request:
                lines.append(f"  pull request: {reg.pull_request}")
    return "\n".join(lines)


def _run_json(state: RunState) -> dict[str, Any]:
    data = state.to_json()
    data["duration"] = run_duration(state)
    return data


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def render_schedules(status: dict[str, Any], output_format: str) -> str:
    if output_format == "json":
        return json.dumps(status, indent=2, default=str)
    env = status.get("environment", "")
    if not status.get("running"):
        return f"{env}: the cluster ({status.get('cluster')}) is not running; nothing fires until it is reconciled"
    schedules = status.get("schedules") or {}
    if not schedules:
        return f"{env}: no pipeline is scheduled (list pipelines under spec.pipelines and run `mlops reconcile`)"
    rows = [("PIPELINE", "CRON", "NEXT", "ACTIVE", "COMMIT")]
    for name, item in sorted(schedules.items()):
        rows.append(
            (
                name,
                str(item.get("cron")),
                _when(item.get("next")),
                "yes" if item.get("active") else "no",
                str(item.get("commit", ""))[:12],
            )
        )
    lines = [_table(rows)]
    history = status.get("history") or []
    if history:
        lines += ["", "recent events:"]
        lines += [f"  {_when(e['at'])}  {e['pipeline']}: {e['event']} {e['detail']}" for e in history[-10:]]
    return "\n".join(lines)
