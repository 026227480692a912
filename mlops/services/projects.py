"""`mlops projects report PROJECT`: project analytics for a research lead (UC-15 step 7 and 7a).

Runs per member and per ISO week, run states, compute used in the current budget period against the
budget with a forecast for the period's end, and the best run of each experiment.

The forecast is the rate so far, carried to the period's end: ``used / elapsed * period length``
(with under a day elapsed, the last 28 days' daily rate is used instead, so a fresh month is not
extrapolated from a few hours). It is a planning number, and the report says how it was made.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mlops.analysis.run_compare import best_run, higher_is_better
from mlops.services.runs import (
    budget_period_end,
    budget_period_start,
    compute_used,
    load_project,
    refresh_states,
    run_compute,
    sample_of,
    tracking_store,
)
from mlops.stores.tracking import RunRecord, RunStatus

DAY = 86400.0


@dataclass(frozen=True)
class BudgetLine:
    resource: str  # "CPU" or "GPU"
    used: float
    limit: float | None
    forecast: float
    method: str

    @property
    def share(self) -> float | None:
        return None if not self.limit else self.used / self.limit


@dataclass(frozen=True)
class BestRun:
    experiment: str
    metric: str
    higher_is_better: bool
    run_id: str
    value: float
    runs: int


@dataclass
class ProjectReport:
    project: str
    description: str
    period: str
    period_start: float
    period_end: float
    now: float
    runs: int
    by_status: dict[str, int] = field(default_factory=dict)
    by_member: dict[str, int] = field(default_factory=dict)
    by_week: list[tuple[str, int, float]] = field(default_factory=list)  # ISO week, runs, CPU hours
    members_without_runs: list[str] = field(default_factory=list)
    budget: list[BudgetLine] = field(default_factory=list)
    best: list[BestRun] = field(default_factory=list)
    needs_review: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _week(ts: float) -> str:
    year, week, _ = dt.datetime.fromtimestamp(ts, dt.UTC).isocalendar()
    return f"{year}-W{week:02d}"


def _forecast(runs: list[RunRecord], used: float, start: float, end: float, now: float, gpu: bool) -> tuple[float, str]:
    elapsed = now - start
    length = end - start
    if elapsed >= DAY:
        return used / elapsed * length, f"the rate so far this period ({used / elapsed * DAY:.2f} h/day) to its end"
    recent_cpu, recent_gpu = compute_used(runs, now - 28 * DAY, now)
    rate = (recent_gpu if gpu else recent_cpu) / (28 * DAY)
    return used + rate * (end - now), f"the last 28 days' rate ({rate * DAY:.2f} h/day) to the period's end"


def project_report(root: Path, project: str, metric: str | None = None, now: float | None = None) -> ProjectReport:
    manifest, _rel = load_project(root, project)
    now = now or time.time()
    store = tracking_store(root, create=False)
    runs: list[RunRecord] = []
    if store is not None:
        try:
            runs = refresh_states(store, store.list_runs(project=project), now)
        finally:
            store.close()
    budget = manifest.spec.budget
    start = budget_period_start(budget.period, now)
    end = budget_period_end(budget.period, now)
    report = ProjectReport(
        project=project,
        description=manifest.spec.description,
        period=budget.period,
        period_start=start,
        period_end=end,
        now=now,
        runs=len(runs),
    )
    report.by_status = dict(Counter(r.status.value for r in runs).most_common())
    report.by_member = dict(Counter(r.user or "unknown" for r in runs).most_common())
    report.members_without_runs = [m.user for m in manifest.spec.members if m.user not in report.by_member]
    weeks: dict[str, tuple[int, float]] = {}
    for run in runs:
        count, hours = weeks.get(_week(run.start_time), (0, 0.0))
        weeks[_week(run.start_time)] = (count + 1, hours + run_compute(run, 0.0, now)[0])
    report.by_week = [(week, count, hours) for week, (count, hours) in sorted(weeks.items())]
    cpu, gpu = compute_used(runs, start, now)
    for resource, used, limit, is_gpu in (("CPU", cpu, budget.cpuHours, False), ("GPU", gpu, budget.gpuHours, True)):
        if limit is None and used == 0:
            continue
        forecast, method = _forecast(runs, used, start, end, now, is_gpu)
        report.budget.append(BudgetLine(resource, used, limit, forecast, method))
        if limit is not None and forecast > limit:
            report.notes.append(
                f"at this rate the project will use {forecast:.1f} of its {limit:g} {resource} hours this "
                f"{budget.period}: {forecast - limit:.1f} h over budget"
            )
    by_experiment: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_experiment.setdefault(run.experiment, []).append(run)
    for experiment, members in sorted(by_experiment.items()):
        finished = [r for r in members if r.status is RunStatus.FINISHED] or members
        wanted = metric
        if wanted is None:
            counts = Counter(k for r in finished for k in r.metrics)
            if not counts:
                continue
            wanted = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[0][0]
        best = best_run([sample_of(r) for r in finished], wanted)
        if best is not None:
            report.best.append(
                BestRun(experiment, wanted, higher_is_better(wanted), best.run_id, best.metrics[wanted], len(members))
            )
    listed = {e.name: e for e in manifest.spec.experiments}
    for experiment in sorted(by_experiment):
        entry = listed.get(experiment)
        if entry is not None and not entry.approvedBy:
            report.needs_review.append(experiment)
    return report
