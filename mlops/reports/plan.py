"""Plans, reconcile results and environment status as text, JSON and Markdown (the PR comment)."""

from __future__ import annotations

import json
import time
from typing import Any

from mlops.planner.plan import Action, Plan

_SYMBOLS = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-", Action.NOOP: "="}
_VALUE_WIDTH = 100


def _value(value: Any, width: int = _VALUE_WIDTH) -> str:
    if isinstance(value, list) and value and all(isinstance(v, dict) and {"app", "weight"} <= set(v) for v in value):
        return ", ".join(f"{v['app']} {v['weight']}%" for v in value)  # a router's routes
    text = "null" if value is None else json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 3] + "..."


def _summary_counts(plan: Plan) -> str:
    counts = plan.counts()
    return (
        f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete, "
        f"{counts['noop']} unchanged"
    )


def _header(plan: Plan) -> str:
    where = plan.cluster if plan.cluster_running else f"{plan.cluster}: every application would be created"
    return f"plan for {plan.environment} at commit {plan.commit[:8]} against {where}"


def render_plan_text(plan: Plan, show_noop: bool = True) -> str:
    lines = [_header(plan)]
    width = max((len(item.target) for item in plan.items), default=10)
    for item in plan.items:
        if item.action is Action.NOOP and not show_noop:
            continue
        note = f"  [{item.note}]" if item.note else ""
        lines.append(f"  {_SYMBOLS[item.action]} {item.action.value:<6} {item.target:<{width}}  {item.summary}{note}")
        if item.action is Action.UPDATE:
            for change in item.changes:
                lines.append(f"        {change.path}: {_value(change.before)} -> {_value(change.after)}")
    if plan.rollouts:
        lines.append("rollouts:")
        for rollout in plan.rollouts:
            lines.append(f"  {rollout.deployment}: {rollout.describe}")
            for step in rollout.steps:
                if step.weight >= 100:
                    continue
                gate = ""
                if step.analysis:
                    gate = ", gate " + ", ".join(f"{k} {v}" for k, v in sorted(step.analysis.items()))
                lines.append(f"    {step.weight}% for {step.pause_s:g} s{gate}")
    verdict = "changes" if plan.has_changes else "no changes"
    lines.append(f"{verdict}: {_summary_counts(plan)}")
    return "\n".join(lines)


def render_plan_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2, sort_keys=True)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_plan_markdown(plan: Plan) -> str:
    """What a pull request comment shows."""
    lines = [f"### mlops plan: `{plan.environment}`", ""]
    state = "**no changes**" if not plan.has_changes else f"**{_summary_counts(plan)}**"
    where = plan.cluster if plan.cluster_running else f"{plan.cluster} (every application would be created)"
    lines.append(f"Commit `{plan.commit[:8]}` against {_md(where)}: {state}.")
    lines.append("")
    changed = plan.changes
    if changed:
        lines += ["| action | application | what |", "|---|---|---|"]
        for item in changed:
            note = f" ({_md(item.note)})" if item.note else ""
            lines.append(f"| {item.action.value} | `{item.target}` | {_md(item.summary)}{note} |")
        lines.append("")
    if plan.rollouts:
        lines.append("**Rollouts**")
        lines.append("")
        for rollout in plan.rollouts:
            lines.append(f"- `{rollout.deployment}`: {_md(rollout.describe)}")
            for step in rollout.steps:
                if step.weight >= 100:
                    continue
                gate = ""
                if step.analysis:
                    gate = "; gate " + ", ".join(f"{k} {v}" for k, v in sorted(step.analysis.items()))
                lines.append(f"  - {step.weight}% for {step.pause_s:g} s{gate}")
        lines.append("")
    updates = [item for item in changed if item.action is Action.UPDATE and item.changes]
    if updates:
        lines += ["<details><summary>Field changes</summary>", ""]
        for item in updates:
            lines += [f"`{item.target}`", "", "| field | before | after |", "|---|---|---|"]
            for change in item.changes:
                before, after = _md(_value(change.before, 60)), _md(_value(change.after, 60))
                lines.append(f"| `{change.path}` | `{before}` | `{after}` |")
            lines.append("")
        lines += ["</details>", ""]
    unchanged = [item for item in plan.items if item.action is Action.NOOP]
    if unchanged:
        lines.append(f"<details><summary>{len(unchanged)} unchanged</summary>")
        lines.append("")
        lines += [f"- `{item.target}`: {_md(item.summary)}" + (f" ({_md(item.note)})" if item.note else "")
                  for item in unchanged]
        lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_plan(plan: Plan, output_format: str) -> str:
    if output_format == "json":
        return render_plan_json(plan)
    if output_format == "markdown":
        return render_plan_markdown(plan)
    return render_plan_text(plan)


# --------------------------------------------------------------------------- reconcile and status


def render_reconcile(result: Any) -> list[str]:
    """Lines for a :class:`mlops.services.reconcile.ReconcileResult`."""
    plan: Plan = result.plan
    if result.outcome == "no changes":
        return [f"{plan.environment} is up to date at {result.commit[:8]} on {result.cluster}: no changes "
                f"({result.seconds:.2f} s)"]
    lines = [f"reconciled {plan.environment} to {result.commit[:8]} on {result.cluster} in {result.seconds:.1f} s: "
             f"{_summary_counts(plan)}"]
    for report in result.rollouts:
        when = f", 100% of traffic after {report.switched_after_s:.1f} s" if report.switched_after_s is not None else ""
        lines.append(f"  {report.deployment}: {report.description}{when}")
    for name, url in sorted(result.endpoints.items()):
        lines.append(f"  endpoint {name}: {url}")
    return lines


def render_status(status: Any) -> str:
    """Text for a :class:`mlops.services.environment_status.EnvironmentStatus`."""
    lines = [f"environment {status.environment} on {status.cluster}"]
    applied = status.applied_commit[:8] if status.applied_commit else "nothing yet"
    sync = "in sync" if status.in_sync else "out of sync: `mlops plan` shows the difference"
    lines.append(f"HEAD {status.head_commit[:8]}, applied {applied}: {sync}")
    if status.lock:
        age = time.time() - float(status.lock.get("since", time.time()))
        lines.append(f"reconciling now: {status.lock.get('who')} (pid {status.lock.get('pid')}, {age:.0f} s)")
    rollout = status.rollout
    if rollout and rollout.get("phase") not in (None, "complete"):
        lines.append(
            f"rollout {rollout.get('deployment')}: {rollout.get('model')}@{rollout.get('from')} -> "
            f"{rollout.get('model')}@{rollout.get('to')} {rollout.get('phase')} at {rollout.get('weight', 0)}%"
            + (f" ({rollout['reason']})" if rollout.get("reason") else "")
        )
    for row in status.deployments:
        serving = ", ".join(f"{row.model}@{v} {w}%" for v, w in row.serving) or "nothing"
        lines.append("")
        lines.append(f"{row.name}: {serving} (HEAD wants {row.model}@{row.desired_version})")
        lines.append(f"  health    {row.health}" + (f": {row.message}" if row.message and row.health != "healthy"
                                                    else ""))
        lines.append(f"  replicas  {row.replicas}")
        lines.append(f"  endpoint  {row.endpoint}")
        lines.append(f"  try       {row.curl}")
    if status.events:
        lines.append("")
        lines.append("recent events:")
        for event in status.events[-5:]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(event.get("at", 0))))
            lines.append(f"  {when}  {event.get('kind')}: {event.get('message')}")
    if status.orphans:
        lines.append("")
        lines.append(f"no longer in the repository (reconcile --prune deletes them): {', '.join(status.orphans)}")
    return "\n".join(lines)
