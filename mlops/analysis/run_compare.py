"""Comparing tracked runs (UC-14; pure: run values in, result values out).

Runs are aligned first: the same project, and the metrics being compared logged by every run
(:func:`alignment_problems` says which runs are not comparable and why; :func:`suggest_runs`
picks runs that are). Then:

* a side-by-side view of params and final metric values, with the params that differ;
* runs are grouped by configuration: their params without seed-like ones (``seed``,
  ``random_state``, ...) or the params named by ``group_by``; each group gets, per metric, the mean,
  the sample standard deviation and a Student-t confidence interval of the mean;
* every pair of groups is tested per metric with Welch's t-test (unequal variances; the primary
  test) and the Mann-Whitney U test (no normality assumed; exact for small groups). p-values are
  adjusted for the whole family of comparisons (all pairs x all metrics) with Holm's step-down
  method, which controls the family-wise error rate without assuming independence.

A difference is called significant when Holm's adjusted Welch p is below alpha. With three runs per
group, Mann-Whitney's smallest possible two-sided p is 0.1: the result says so rather than let an
absent significance be read as evidence of no difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats

from mlops.errors import UsageError

SEED_PARAMS = frozenset({"seed", "random_seed", "random_state", "rng_seed", "np_seed", "torch_seed", "split_seed"})
_LOWER_IS_BETTER_WORDS = ("loss", "error", "err", "rmse", "mse", "mae", "mape", "perplexity", "latency", "time", "wer")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better, from its name (losses and errors are lower-is-better)."""
    words = [w for w in metric.lower().replace("-", "_").replace(".", "_").replace(":", "_").split("_") if w]
    return not any(w in _LOWER_IS_BETTER_WORDS or w.endswith("loss") for w in words)


@dataclass(frozen=True)
class RunSample:
    run_id: str
    label: str
    project: str
    experiment: str
    params: Mapping[str, object]
    metrics: Mapping[str, float]
    curves: Mapping[str, Sequence[tuple[int, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Stats:
    n: int
    mean: float
    std: float  # sample standard deviation (n - 1); nan for one run
    ci_low: float  # nan when n < 2
    ci_high: float


@dataclass(frozen=True)
class Group:
    name: str  # "depth=6, lr=0.1" or "all runs"
    config: Mapping[str, object]
    run_ids: tuple[str, ...]
    stats: Mapping[str, Stats]


@dataclass(frozen=True)
class PairTest:
    metric: str
    group_a: str
    group_b: str
    mean_a: float
    mean_b: float
    difference: float  # mean_b - mean_a
    welch_t: float | None
    welch_p: float
    welch_p_adjusted: float
    mann_whitney_u: float | None
    mann_whitney_p: float
    mann_whitney_p_adjusted: float
    significant: bool
    better: str | None  # the better group's name when significant
    note: str = ""


@dataclass(frozen=True)
class RunComparison:
    runs: tuple[RunSample, ...]
    metrics: tuple[str, ...]
    higher_is_better: Mapping[str, bool]
    params: tuple[str, ...]  # every param name, sorted
    differing_params: tuple[str, ...]
    grouped_by: tuple[str, ...]
    groups: tuple[Group, ...]
    tests: tuple[PairTest, ...]
    alpha: float
    notes: tuple[str, ...]

    @property
    def level(self) -> float:
        return 1 - self.alpha


# --------------------------------------------------------------------------- alignment


def common_metrics(runs: Sequence[RunSample]) -> list[str]:
    if not runs:
        return []
    shared = set(runs[0].metrics)
    for run in runs[1:]:
        shared &= set(run.metrics)
    return sorted(shared)


def alignment_problems(runs: Sequence[RunSample], metrics: Sequence[str]) -> list[str]:
    """Why these runs cannot be compared on ``metrics`` (empty when they can)."""
    problems: list[str] = []
    projects: dict[str, list[str]] = {}
    for run in runs:
        projects.setdefault(run.project, []).append(run.label)
    if len(projects) > 1:
        main = max(projects, key=lambda p: len(projects[p]))
        for project, labels in sorted(projects.items()):
            if project != main:
                problems.append(
                    f"{', '.join(labels)} belong(s) to project {project!r}, the others to {main!r}: runs of different "
                    "projects are not comparable"
                )
    for metric in metrics:
        missing = [run.label for run in runs if metric not in run.metrics]
        if missing:
            problems.append(f"{', '.join(missing)} did not log metric {metric!r}")
    if not metrics:
        problems.append("the runs share no metric name, so there is nothing to compare")
    return problems


def suggest_runs(
    candidates: Sequence[RunSample], project: str, metrics: Sequence[str], exclude: Sequence[str], limit: int = 5
) -> list[RunSample]:
    """Runs of ``project`` that logged every metric in ``metrics``: same experiment first, then the newest."""
    skip = set(exclude)
    return [
        run
        for run in candidates
        if run.project == project and run.run_id not in skip and all(m in run.metrics for m in metrics)
    ][:limit]


# --------------------------------------------------------------------------- statistics


def summarize(values: Sequence[float], level: float = 0.95) -> Stats:
    data = np.asarray(values, dtype=float)
    n = int(data.size)
    if n == 0:
        return Stats(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(np.mean(data))
    if n < 2:
        return Stats(n, mean, math.nan, math.nan, math.nan)
    std = float(np.std(data, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (monotone, capped at 1); NaNs stay NaN and do not count."""
    indexed = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(indexed)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def welch_test(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float, str]:
    """Welch's t statistic and two-sided p, with a note when it cannot be computed as usual."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        return None, math.nan, "needs at least 2 runs in each group"
    if np.var(x, ddof=1) == 0 and np.var(y, ddof=1) == 0:
        same = bool(np.mean(x) == np.mean(y))
        return None, 1.0 if same else 0.0, "no variation within either group"
    result = stats.ttest_ind(y, x, equal_var=False)
    return float(result.statistic), float(result.pvalue), ""


def mann_whitney_test(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float]:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 1 or y.size < 1:
        return None, math.nan
    if np.all(np.concatenate([x, y]) == x[0]):
        return float(x.size * y.size / 2), 1.0
    result = stats.mannwhitneyu(y, x, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def _config_name(config: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(config.items())) or "all runs"


def group_runs(
    runs: Sequence[RunSample], group_by: Sequence[str] | None = None
) -> tuple[tuple[str, ...], list[list[RunSample]]]:
    """Runs with the same configuration together; returns the params used for grouping and the groups in order."""
    all_params = sorted({k for run in runs for k in run.params})
    if group_by:
        unknown = [p for p in group_by if p not in all_params]
        if unknown:
            raise UsageError(
                f"--group-by {', '.join(unknown)}: no compared run has such a param; params are "
                f"{', '.join(all_params) or 'none'}"
            )
        keys = tuple(group_by)
    else:
        keys = tuple(
            p for p in all_params if p.lower() not in SEED_PARAMS and len({_key(run.params.get(p)) for run in runs}) > 1
        )
    groups: dict[tuple[str, ...], list[RunSample]] = {}
    for run in runs:
        groups.setdefault(tuple(_key(run.params.get(k)) for k in keys), []).append(run)
    return keys, list(groups.values())


def _key(value: object) -> str:
    return "<unset>" if value is None else str(value)


def compare_runs(
    runs: Sequence[RunSample],
    metrics: Sequence[str],
    group_by: Sequence[str] | None = None,
    alpha: float = 0.05,
    directions: Mapping[str, bool] | None = None,
) -> RunComparison:
    """Side-by-side values, per-configuration summaries and corrected pairwise tests (see the module)."""
    if len(runs) < 2:
        raise UsageError("compare needs at least two runs")
    problems = alignment_problems(runs, metrics)
    if problems:
        raise UsageError("; ".join(problems))
    direction = {m: (directions or {}).get(m, higher_is_better(m)) for m in metrics}
    params = sorted({k for run in runs for k in run.params})
    differing = tuple(p for p in params if len({_key(run.params.get(p)) for run in runs}) > 1)
    keys, grouped = group_runs(runs, group_by)
    level = 1 - alpha
    groups = tuple(
        Group(
            name=_config_name({k: members[0].params.get(k) for k in keys}),
            config={k: members[0].params.get(k) for k in keys},
            run_ids=tuple(r.run_id for r in members),
            stats={m: summarize([r.metrics[m] for r in members], level) for m in metrics},
        )
        for members in grouped
    )
    notes: list[str] = []
    raw: list[tuple[str, Group, Group, list[float], list[float]]] = []
    if len(groups) > 1:
        for metric in metrics:
            for group_a, group_b in combinations(groups, 2):
                values = {r.run_id: r.metrics[metric] for r in runs}
                raw.append(
                    (
                        metric,
                        group_a,
                        group_b,
                        [values[i] for i in group_a.run_ids],
                        [values[i] for i in group_b.run_ids],
                    )
                )
    welch = [welch_test(a, b) for _, _, _, a, b in raw]
    mann_whitney = [mann_whitney_test(a, b) for _, _, _, a, b in raw]
    welch_adjusted = holm([p for _, p, _ in welch])
    mw_adjusted = holm([p for _, p in mann_whitney])
    tests: list[PairTest] = []
    for (metric, group_a, group_b, a, b), (t, p, note), (u, mw_p), p_adj, mw_adj in zip(
        raw, welch, mann_whitney, welch_adjusted, mw_adjusted, strict=True
    ):
        mean_a, mean_b = float(np.mean(a)), float(np.mean(b))
        significant = not math.isnan(p_adj) and p_adj < alpha and mean_a != mean_b
        better = None
        if significant:
            b_wins = (mean_b > mean_a) == direction[metric]
            better = group_b.name if b_wins else group_a.name
        tests.append(
            PairTest(
                metric=metric,
                group_a=group_a.name,
                group_b=group_b.name,
                mean_a=mean_a,
                mean_b=mean_b,
                difference=mean_b - mean_a,
                welch_t=t,
                welch_p=p,
                welch_p_adjusted=p_adj,
                mann_whitney_u=u,
                mann_whitney_p=mw_p,
                mann_whitney_p_adjusted=mw_adj,
                significant=significant,
                better=better,
                note=note,
            )
        )
    sizes = [len(g.run_ids) for g in groups]
    if len(groups) == 1:
        notes.append(
            "all runs share one configuration (params differ only in seeds), so there are no groups to test "
            "against each other; the summary shows the spread across seeds"
        )
    elif max(sizes) < 2:
        notes.append(
            "every configuration has a single run: no test can separate a real difference from run-to-run noise; "
            "run several seeds per configuration"
        )
    elif min(sizes) < 4:
        notes.append(
            f"groups as small as {min(sizes)} run(s): Mann-Whitney's exact p cannot go below "
            f"{_smallest_mw_p(sorted(sizes)[0], sorted(sizes)[1]):.2g} for the smallest pair, so only Welch's t-test "
            "can show significance; more seeds make both tests stronger"
        )
    if raw:
        notes.append(
            f"p-values are Holm-adjusted over {len(raw)} comparison(s) ({len(metrics)} metric(s) x "
            f"{len(raw) // max(1, len(metrics))} pair(s) of groups); significant means adjusted Welch p < {alpha:g}"
        )
    return RunComparison(
        runs=tuple(runs),
        metrics=tuple(metrics),
        higher_is_better=direction,
        params=tuple(params),
        differing_params=differing,
        grouped_by=keys,
        groups=groups,
        tests=tuple(tests),
        alpha=alpha,
        notes=tuple(notes),
    )


def _smallest_mw_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided exact Mann-Whitney p for groups of these sizes: 2 / C(n_a + n_b, n_a)."""
    return min(1.0, 2 / math.comb(n_a + n_b, n_a))


def best_run(runs: Sequence[RunSample], metric: str, higher: bool | None = None) -> RunSample | None:
    scored = [r for r in runs if metric in r.metrics and math.isfinite(r.metrics[metric])]
    if not scored:
        return None
    better = higher_is_better(metric) if higher is None else higher
    return max(scored, key=lambda r: r.metrics[metric]) if better else min(scored, key=lambda r: r.metrics[metric])
