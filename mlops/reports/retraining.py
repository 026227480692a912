"""`mlops retrain check` results as text and JSON."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from mlops.analysis.retraining import Decision, TriggerOutcome, when
from mlops.errors import Problem
from mlops.services.retrain import RetrainCheck


def _status(decision: Decision) -> str:
    if decision.fires:
        return "WOULD FIRE"
    if decision.triggered:
        return "triggered, blocked"
    return "quiet"


def render_text(check: RetrainCheck) -> str:
    lines = [str(p) for p in check.warnings]
    if not check.decisions:
        lines.append("no retraining policies (kind RetrainingPolicy in policies/)")
    for decision in check.decisions:
        merge = "auto-merge" if decision.auto_merge else "reviewed"
        lines.append(
            f"{decision.policy}: {_status(decision)} (pipeline {decision.pipeline}; result: a pull request for "
            f"{decision.environment}, {merge})"
        )
        for trigger in decision.triggers:
            mark = "fires" if trigger.fires else "quiet"
            lines.append(f"  {mark:<5}  {trigger.description}: {trigger.reason}")
        for blocker in decision.blockers:
            lines.append(f"  block  {blocker.kind}: {blocker.reason}")
    firing = sum(d.fires for d in check.decisions)
    total = len(check.decisions)
    verdict = "would fire" if firing else "nothing fires"
    lines.append(f"{verdict}: {firing} of {total} polic{'ies' if total != 1 else 'y'} at {when(check.now)}")
    return "\n".join(lines)


def _time(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


def _problem(problem: Problem) -> dict[str, Any]:
    return {
        "path": problem.path,
        "line": problem.line,
        "col": problem.col,
        "field": problem.field_text or None,
        "severity": problem.severity.value,
        "code": problem.code,
        "message": problem.message,
    }


def _trigger(trigger: TriggerOutcome) -> dict[str, Any]:
    return {
        "index": trigger.index,
        "kind": trigger.kind,
        "description": trigger.description,
        "fires": trigger.fires,
        "reason": trigger.reason,
    }


def to_json(check: RetrainCheck) -> dict[str, Any]:
    return {
        "now": _time(check.now),
        "fires": check.fires,
        "policies": [
            {
                "policy": d.policy,
                "path": check.paths.get(d.policy),
                "pipeline": d.pipeline,
                "result": {"pullRequest": True, "autoMerge": d.auto_merge, "environment": d.environment},
                "fires": d.fires,
                "triggered": d.triggered,
                "triggers": [_trigger(t) for t in d.triggers],
                "blockers": [{"kind": b.kind, "reason": b.reason, "until": _time(b.until)} for b in d.blockers],
            }
            for d in check.decisions
        ],
        "warnings": [_problem(p) for p in check.warnings],
    }


def render_json(check: RetrainCheck) -> str:
    return json.dumps(to_json(check), indent=2)
