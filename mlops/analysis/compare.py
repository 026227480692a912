"""Paired statistical comparison of two models scored on the same rows (pure: arrays in, result values out).

Both models predict every row of one evaluation set, so every test here is a *paired* test: the
rows are the unit of resampling and of pairing, which removes the between-row variance that an
unpaired comparison of two summary numbers would drown in.

* accuracy: McNemar's test on the rows where exactly one model is right (exact binomial below 25
  such rows, chi-square with continuity correction above, as statsmodels recommends);
* AUC: DeLong's test for two correlated AUCs, with Sun & Xu's (2014) O(n log n) midrank algorithm;
* every other metric: a paired bootstrap (rows resampled jointly for both models, percentile CI,
  seeded generator so a report can be reproduced);
* regression: a paired t-test (primary) and Wilcoxon's signed-rank test on per-row absolute errors
  (mae) or squared errors (rmse, r2; r2 differences are MSE differences scaled by the label's variance).

Differences are always B - A. A metric's verdict comes from its primary test; p-values are per
metric and not adjusted for multiple comparisons (the reports say so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from difflib import get_close_matches
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from mlops.errors import InputError, UsageError
from mlops.manifests.common import Signature, Task, TensorSpec

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Side = Literal["A", "B"]

# Below these sizes the tests still run, but the result says the sample is too small (UC-03 3a).
MIN_ROWS = 10
SMALL_SAMPLE_ROWS = 30
MCNEMAR_EXACT_BELOW = 25
MIN_ROWS_PER_CLASS = 10
POWER = 0.8
# One bootstrap chunk holds at most this many weights, so memory stays flat for large evaluation sets.
_BOOTSTRAP_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class MetricInfo:
    name: str
    task: Task
    higher_is_better: bool
    title: str


METRICS: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo("auc", Task.CLASSIFICATION, True, "area under the ROC curve"),
        MetricInfo("accuracy", Task.CLASSIFICATION, True, "share of rows classified right"),
        MetricInfo("f1", Task.CLASSIFICATION, True, "F1 score of the positive class"),
        MetricInfo("log_loss", Task.CLASSIFICATION, False, "mean negative log-likelihood"),
        MetricInfo("precision", Task.CLASSIFICATION, True, "precision of the positive class"),
        MetricInfo("recall", Task.CLASSIFICATION, True, "recall of the positive class"),
        MetricInfo("rmse", Task.REGRESSION, False, "root mean squared error"),
        MetricInfo("mae", Task.REGRESSION, False, "mean absolute error"),
        MetricInfo("r2", Task.REGRESSION, True, "coefficient of determination"),
    )
}
DEFAULT_METRICS: dict[Task, tuple[str, ...]] = {
    Task.CLASSIFICATION: ("auc", "accuracy", "f1", "log_loss"),
    Task.REGRESSION: ("rmse", "mae", "r2"),
}
COMPARABLE_TASKS = frozenset(DEFAULT_METRICS)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ModelSide:
    """One of the two compared versions, as the registry describes it."""

    ref: str
    task: Task
    signature: Signature | None = None
    registered_metrics: Mapping[str, float] = field(default_factory=dict)
    artifact_format: str = ""


@dataclass(frozen=True, eq=False)
class Predictions:
    """What one model said about every row: labels (or values), and for classifiers P(label = 1)."""

    values: FloatArray
    scores: FloatArray | None = None


@dataclass(frozen=True)
class SignificanceTest:
    name: str
    statistic: float | None
    p_value: float
    detail: str = ""


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    method: str

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    higher_is_better: bool
    value_a: float
    value_b: float
    difference: float
    ci: Interval
    test: SignificanceTest
    other_tests: tuple[SignificanceTest, ...] = ()
    better: Side | None = None
    verdict: str = ""

    @property
    def significant(self) -> bool:
        return self.better is not None


@dataclass(frozen=True, eq=False)
class EvaluationSample:
    """The scored rows, kept for charts (ROC/PR curves, residuals); reports never print them."""

    y_true: FloatArray
    a: Predictions
    b: Predictions


@dataclass(frozen=True)
class ComparisonResult:
    a: ModelSide
    b: ModelSide
    task: Task | None
    rows: int
    alpha: float
    resamples: int
    seed: int
    metrics: tuple[MetricComparison, ...]
    warnings: tuple[str, ...]
    verdict: str
    sample: EvaluationSample | None = field(default=None, compare=False, repr=False)

    @property
    def comparable(self) -> bool:
        return self.task is not None

    def ref_of(self, side: Side) -> str:
        return self.a.ref if side == "A" else self.b.ref


@dataclass(frozen=True)
class BootstrapDifference:
    observed: float
    ci: Interval
    p_value: float
    differences: FloatArray = field(compare=False, repr=False)


@dataclass(frozen=True)
class DeLongResult:
    auc_a: float
    auc_b: float
    difference: float
    variance: float
    z: float | None
    p_value: float
    ci: Interval


# --------------------------------------------------------------------------- comparability


def comparability_warnings(a: ModelSide, b: ModelSide) -> list[str]:
    """What makes the two versions' metrics not (fully) comparable (UC-03 2a); the caller decides what to do."""
    if a.task != b.task:
        # Nothing else matters then: no metric is shared, so signatures need no comparing.
        return [
            f"tasks differ: {a.ref} is a {a.task.value} model and {b.ref} a {b.task.value} model; "
            "their metrics are not comparable, so no tests were run"
        ]
    warnings: list[str] = []
    for side in (a, b):
        if side.signature is None or not side.signature.inputs:
            warnings.append(f"{side.ref} has no signature: cannot check that both models take the same inputs")
    if a.signature is not None and b.signature is not None and a.signature.inputs and b.signature.inputs:
        inputs_a, inputs_b = _tensors_text(a.signature.inputs), _tensors_text(b.signature.inputs)
        if inputs_a != inputs_b:
            warnings.append(
                f"signatures differ: {a.ref} takes {inputs_a}, {b.ref} takes {inputs_b}; "
                "both were fed the same columns, so check that they expect the same features in the same order"
            )
        outputs_a, outputs_b = _tensors_text(a.signature.outputs), _tensors_text(b.signature.outputs)
        if outputs_a != outputs_b:
            warnings.append(f"output signatures differ: {a.ref} returns {outputs_a}, {b.ref} returns {outputs_b}")
    return warnings


def _tensors_text(tensors: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in tensors) or "nothing"


def resolve_metrics(task: Task, requested: Sequence[str] | None) -> tuple[str, ...]:
    """The metrics to compare for ``task``: the defaults, or the requested ones checked against the task."""
    if task not in DEFAULT_METRICS:
        raise UsageError(
            f"comparing {task.value} models is not supported; compare works on "
            f"{' and '.join(sorted(t.value for t in COMPARABLE_TASKS))} models"
        )
    if not requested:
        return DEFAULT_METRICS[task]
    valid = [name for name, info in METRICS.items() if info.task is task]
    chosen: list[str] = []
    for name in requested:
        metric = name.strip().lower()
        if metric in METRICS and metric not in valid:
            raise UsageError(
                f"--metric {name}: a {METRICS[metric].task.value} metric, but these are {task.value} models; "
                f"{task.value} metrics are {', '.join(valid)}"
            )
        if metric not in valid:
            hint = get_close_matches(metric, valid, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise UsageError(
                f"--metric {name}: unknown metric{suggestion}; {task.value} metrics are {', '.join(valid)}"
            )
        if metric not in chosen:
            chosen.append(metric)
    return tuple(chosen)


def not_comparable(
    a: ModelSide, b: ModelSide, rows: int, warnings: Sequence[str], alpha: float = 0.05
) -> ComparisonResult:
    """The result when the two versions cannot be compared at all (different tasks): warnings, no tests."""
    return ComparisonResult(
        a=a,
        b=b,
        task=None,
        rows=rows,
        alpha=alpha,
        resamples=0,
        seed=0,
        metrics=(),
        warnings=tuple(warnings),
        verdict=f"not comparable: {a.ref} is a {a.task.value} model, {b.ref} a {b.task.value} model",
    )


# --------------------------------------------------------------------------- the comparison


def compare_predictions(
    a: ModelSide,
    b: ModelSide,
    y_true: npt.ArrayLike,
    predictions_a: Predictions,
    predictions_b: Predictions,
    metrics: Sequence[str] | None = None,
    *,
    label: str = "label",
    resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    warnings: Sequence[str] = (),
) -> ComparisonResult:
    """Compare two models' predictions of the same rows: values, differences, CIs, tests, warnings, verdict."""
    if a.task != b.task:
        raise ValueError("compare_predictions needs two models of the same task; use not_comparable()")
    if not 0 < alpha < 1:
        raise UsageError(f"alpha must be between 0 and 1, got {alpha}")
    if resamples < 1:
        raise UsageError(f"the number of bootstrap resamples must be positive, got {resamples}")
    task = a.task
    chosen = resolve_metrics(task, metrics)
    y = _as_float(y_true, "labels")
    n = y.size
    if n < MIN_ROWS:
        raise InputError(
            f"only {n} rows to compare on; at least {MIN_ROWS} are needed (and several hundred are better)"
        )
    for side, preds in (("A", predictions_a), ("B", predictions_b)):
        _check_predictions(preds, n, a.ref if side == "A" else b.ref, task)
    all_warnings = list(warnings)
    if n < SMALL_SAMPLE_ROWS:
        all_warnings.append(
            f"only {n} rows: too few for reliable paired tests (use at least {SMALL_SAMPLE_ROWS}, preferably "
            "several hundred); recommend validating on more data"
        )
    level = 1 - alpha
    if task is Task.CLASSIFICATION:
        positives = _check_binary(y, label)
        negatives = n - positives
        if min(positives, negatives) < MIN_ROWS_PER_CLASS:
            all_warnings.append(
                f"only {positives} positive and {negatives} negative rows: AUC and the other classification "
                f"metrics are unstable with fewer than {MIN_ROWS_PER_CLASS} of each class; recommend validating "
                "on more data"
            )
    # AUC has DeLong's interval; every other metric gets a bootstrap CI, all from the same resamples.
    boots = bootstrap_differences(
        [m for m in chosen if m != "auc"], y, predictions_a, predictions_b, resamples=resamples, seed=seed, level=level
    )
    results: list[MetricComparison] = []
    for metric in chosen:
        info = METRICS[metric]
        if metric == "auc":
            comparison = _compare_auc(y, predictions_a, predictions_b, level)
        elif metric == "accuracy":
            comparison = _compare_accuracy(y, predictions_a, predictions_b, boots[metric])
        elif info.task is Task.CLASSIFICATION:
            comparison = _compare_by_bootstrap(metric, y, predictions_a, predictions_b, boots[metric])
        else:
            comparison = _compare_regression(metric, y, predictions_a, predictions_b, boots[metric])
        comparison = _with_verdict(comparison, info, a.ref, b.ref, alpha)
        results.append(comparison)
        if metric == "accuracy":
            all_warnings.extend(_mcnemar_power_warning(y, predictions_a, predictions_b))
        all_warnings.extend(_power_warnings(comparison, n, alpha))
    return ComparisonResult(
        a=a,
        b=b,
        task=task,
        rows=n,
        alpha=alpha,
        resamples=resamples,
        seed=seed,
        metrics=tuple(results),
        warnings=tuple(all_warnings),
        verdict=overall_verdict(a.ref, b.ref, results, alpha),
        sample=EvaluationSample(y, predictions_a, predictions_b),
    )


def _as_float(values: npt.ArrayLike, what: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise InputError(f"the {what} contain missing or infinite values")
    return array


def _check_predictions(preds: Predictions, n: int, ref: str, task: Task) -> None:
    arrays = [("predictions", preds.values)]
    if task is Task.CLASSIFICATION:
        if preds.scores is None:
            raise InputError(f"{ref} gave no class probabilities; AUC and log_loss need them")
        arrays.append(("probabilities", preds.scores))
    for what, array in arrays:
        if array.shape != (n,):
            raise ValueError(f"{ref}: {what} have shape {array.shape}, expected ({n},)")
        if not np.all(np.isfinite(array)):
            raise InputError(f"{ref} returned missing or infinite {what} for {int(np.sum(~np.isfinite(array)))} rows")


def _check_binary(y: FloatArray, label: str) -> int:
    values = np.unique(y)
    if not set(values.tolist()) <= {0.0, 1.0}:
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise InputError(
            f"label '{label}' is not binary 0/1: found values {shown}; classifiers are compared on 0/1 labels"
        )
    positives = int(np.sum(y == 1))
    negatives = y.size - positives
    if min(positives, negatives) < 2:
        raise InputError(
            f"label '{label}' has {positives} positive and {negatives} negative rows; "
            "comparing classifiers needs at least 2 of each"
        )
    return positives


# --------------------------------------------------------------------------- per-metric comparisons


def _compare_auc(y: FloatArray, a: Predictions, b: Predictions, level: float) -> MetricComparison:
    assert a.scores is not None and b.scores is not None
    result = delong_test(y, a.scores, b.scores, level=level)
    return MetricComparison(
        metric="auc",
        higher_is_better=True,
        value_a=result.auc_a,
        value_b=result.auc_b,
        difference=result.difference,
        ci=result.ci,
        test=SignificanceTest("DeLong", result.z, result.p_value, f"variance of the difference {result.variance:.3g}"),
    )


def _compare_accuracy(y: FloatArray, a: Predictions, b: Predictions, boot: BootstrapDifference) -> MetricComparison:
    correct_a, correct_b = a.values == y, b.values == y
    return MetricComparison(
        metric="accuracy",
        higher_is_better=True,
        value_a=float(np.mean(correct_a)),
        value_b=float(np.mean(correct_b)),
        difference=boot.observed,
        ci=boot.ci,
        test=mcnemar_test(correct_a, correct_b),
    )


def _compare_by_bootstrap(
    metric: str, y: FloatArray, a: Predictions, b: Predictions, boot: BootstrapDifference
) -> MetricComparison:
    value_a, value_b = metric_value(metric, y, a), metric_value(metric, y, b)
    return MetricComparison(
        metric=metric,
        higher_is_better=METRICS[metric].higher_is_better,
        value_a=value_a,
        value_b=value_b,
        difference=boot.observed,
        ci=boot.ci,
        test=SignificanceTest(
            "paired bootstrap",
            None,
            boot.p_value,
            f"{boot.differences.size} resamples; p from the resampled differences",
        ),
    )


def _compare_regression(
    metric: str, y: FloatArray, a: Predictions, b: Predictions, boot: BootstrapDifference
) -> MetricComparison:
    kind: Literal["absolute", "squared"] = "absolute" if metric == "mae" else "squared"
    loss_a, loss_b = per_row_errors(y, a.values, kind), per_row_errors(y, b.values, kind)
    return MetricComparison(
        metric=metric,
        higher_is_better=METRICS[metric].higher_is_better,
        value_a=metric_value(metric, y, a),
        value_b=metric_value(metric, y, b),
        difference=boot.observed,
        ci=boot.ci,
        test=paired_t_test(loss_a, loss_b, what=f"{kind} errors"),
        other_tests=(wilcoxon_test(loss_a, loss_b, what=f"{kind} errors"),),
    )


def _with_verdict(
    comparison: MetricComparison, info: MetricInfo, ref_a: str, ref_b: str, alpha: float
) -> MetricComparison:
    better: Side | None = None
    if comparison.test.p_value < alpha and comparison.difference != 0:
        b_wins = (comparison.difference > 0) == info.higher_is_better
        better = "B" if b_wins else "A"
    p_text = format_p(comparison.test.p_value)
    if better is None:
        verdict = f"no significant difference on {info.name} ({p_text})"
    else:
        verdict = f"{ref_b if better == 'B' else ref_a} is better on {info.name} ({p_text})"
    return replace(comparison, better=better, verdict=verdict)


def format_p(p_value: float) -> str:
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3g}"


def overall_verdict(ref_a: str, ref_b: str, results: Sequence[MetricComparison], alpha: float) -> str:
    b_wins = [r.metric for r in results if r.better == "B"]
    a_wins = [r.metric for r in results if r.better == "A"]
    ties = [r.metric for r in results if r.better is None]
    if b_wins and a_wins:
        return f"mixed: {ref_b} is better on {', '.join(b_wins)}; {ref_a} is better on {', '.join(a_wins)}"
    if not b_wins and not a_wins:
        return f"no significant difference between {ref_a} and {ref_b} on {', '.join(ties)} (alpha={alpha:g})"
    winner, loser, wins = (ref_b, ref_a, b_wins) if b_wins else (ref_a, ref_b, a_wins)
    text = f"{winner} is better than {loser} on {', '.join(wins)}"
    if ties:
        text += f"; no significant difference on {', '.join(ties)}"
    return text


def _mcnemar_power_warning(y: FloatArray, a: Predictions, b: Predictions) -> list[str]:
    discordant = int(np.sum((a.values == y) != (b.values == y)))
    if discordant == 0 or discordant >= MCNEMAR_EXACT_BELOW:  # none: the models agree on every row
        return []
    return [
        f"accuracy: the models disagree on only {discordant} rows; McNemar's test has little power with fewer "
        f"than {MCNEMAR_EXACT_BELOW} disagreements; recommend validating on more data"
    ]


def _power_warnings(comparison: MetricComparison, n: int, alpha: float) -> list[str]:
    """Say when the sample is too small for the observed effect (UC-03 3a), with a rough size that would do."""
    warnings: list[str] = []
    if comparison.significant:
        return warnings
    z_alpha = float(stats.norm.ppf(1 - alpha / 2))
    standard_error = comparison.ci.width / (2 * z_alpha)
    if not math.isfinite(standard_error) or standard_error <= 0:
        return warnings
    detectable = (z_alpha + float(stats.norm.ppf(POWER))) * standard_error
    observed = abs(comparison.difference)
    if observed >= detectable:
        return warnings
    text = (
        f"{comparison.metric}: the difference ({comparison.difference:+.3g}) is smaller than the "
        f"{detectable:.3g} that {n} rows can detect with {POWER:.0%} power"
    )
    if observed > 0:
        needed = n * (detectable / observed) ** 2
        size = f"about {math.ceil(needed):,} rows" if needed <= 100 * n else "more than 100 times as many rows"
        text += f"; {size} would be needed to tell the models apart; recommend validating on more data"
    else:
        text += "; the models score the same on these rows"
    warnings.append(text)
    return warnings


# --------------------------------------------------------------------------- metrics


def per_row_errors(y: FloatArray, predicted: FloatArray, kind: Literal["absolute", "squared"]) -> FloatArray:
    residuals = predicted - y
    return np.abs(residuals) if kind == "absolute" else residuals * residuals


def per_row_log_loss(y: FloatArray, scores: FloatArray) -> FloatArray:
    # sklearn clips with the machine epsilon of the probabilities' dtype; they arrive as float64 here.
    eps = np.finfo(np.float64).eps
    p = np.clip(scores, eps, 1 - eps)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


WeightedMetric = Callable[[FloatArray], FloatArray]


def weighted_metric(metric: str, y: FloatArray, preds: Predictions) -> WeightedMetric:
    """The metric as a function of row weights (k, n) -> (k,).

    All-ones weights give the metric itself; resampled row counts give bootstrap replicates.
    """
    n = y.size
    if metric == "accuracy":
        correct = (preds.values == y).astype(np.float64)
        return lambda w: (w @ correct) / n
    if metric in ("precision", "recall", "f1"):
        predicted_pos = (preds.values == 1).astype(np.float64)
        actual_pos = (y == 1).astype(np.float64)
        true_pos = predicted_pos * actual_pos

        def counts_metric(w: FloatArray) -> FloatArray:
            tp, pp, ap = w @ true_pos, w @ predicted_pos, w @ actual_pos
            numerator, denominator = {
                "precision": (tp, pp),
                "recall": (tp, ap),
                "f1": (2 * tp, pp + ap),
            }[metric]
            # A resample with no predicted (or actual) positives scores 0, as sklearn's zero_division=0 does.
            safe = np.where(denominator > 0, denominator, 1.0)
            return np.where(denominator > 0, numerator / safe, 0.0)

        return counts_metric
    if metric == "log_loss":
        if preds.scores is None:
            raise InputError("log_loss needs class probabilities")
        losses = per_row_log_loss(y, preds.scores)
        return lambda w: (w @ losses) / n
    if metric in ("rmse", "mae"):
        errors = per_row_errors(y, preds.values, "absolute" if metric == "mae" else "squared")
        if metric == "mae":
            return lambda w: (w @ errors) / n
        return lambda w: np.sqrt((w @ errors) / n)
    if metric == "r2":
        squared = per_row_errors(y, preds.values, "squared")
        y_squared = y * y

        def r2(w: FloatArray) -> FloatArray:
            total = w @ y_squared - (w @ y) ** 2 / n
            # A resample whose labels are all equal has no variance to explain: r2 is undefined there.
            safe = np.where(total > 0, total, 1.0)
            return np.where(total > 0, 1 - (w @ squared) / safe, np.nan)

        return r2
    if metric == "auc":
        raise ValueError("auc is compared with DeLong's test, not through row weights")
    raise ValueError(f"unknown metric {metric!r}")


def metric_value(metric: str, y_true: npt.ArrayLike, preds: Predictions) -> float:
    """One metric of one model on all rows (the same numbers as scikit-learn's metrics)."""
    y = np.asarray(y_true, dtype=np.float64)
    if metric == "auc":
        if preds.scores is None:
            raise InputError("auc needs class probabilities")
        return auc_score(y, preds.scores)
    return float(weighted_metric(metric, y, preds)(np.ones((1, y.size)))[0])


def auc_score(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """AUC as the Mann-Whitney statistic with midranks (ties count one half)."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    positives = y == 1
    m, n = int(positives.sum()), int((~positives).sum())
    ranks = stats.rankdata(s)
    return float((ranks[positives].sum() - m * (m + 1) / 2) / (m * n))


# --------------------------------------------------------------------------- tests


def mcnemar_test(correct_a: npt.ArrayLike, correct_b: npt.ArrayLike) -> SignificanceTest:
    """McNemar's test on paired right/wrong outcomes.

    Only discordant rows carry information: ``a_only`` (A right, B wrong) and ``b_only``. Under the
    null each is Binomial(a_only + b_only, 1/2). Below 25 discordant rows the exact two-sided binomial
    p-value is used (statistic = min(a_only, b_only)); otherwise the chi-square statistic with
    continuity correction (|a_only - b_only| - 1)^2 / (a_only + b_only) on 1 degree of freedom.
    """
    right_a = np.asarray(correct_a, dtype=bool)
    right_b = np.asarray(correct_b, dtype=bool)
    a_only = int(np.sum(right_a & ~right_b))
    b_only = int(np.sum(~right_a & right_b))
    discordant = a_only + b_only
    detail = f"{discordant} discordant rows: {a_only} only A right, {b_only} only B right"
    if discordant < MCNEMAR_EXACT_BELOW:
        p_value = min(1.0, 2 * float(stats.binom.cdf(min(a_only, b_only), discordant, 0.5)))
        return SignificanceTest("McNemar (exact binomial)", float(min(a_only, b_only)), p_value, detail)
    statistic = (abs(a_only - b_only) - 1) ** 2 / discordant
    return SignificanceTest(
        "McNemar (chi-square, continuity corrected)", float(statistic), float(stats.chi2.sf(statistic, 1)), detail
    )


def delong_test(
    y_true: npt.ArrayLike, scores_a: npt.ArrayLike, scores_b: npt.ArrayLike, level: float = 0.95
) -> DeLongResult:
    """DeLong's test of AUC_B - AUC_A for two scores of the same rows (Sun & Xu 2014, O(n log n)).

    With m positives and n negatives, the midranks of each model's scores among the positives (tx),
    among the negatives (ty) and among all rows (tz) give every structural component at once:
    V10 (one per positive) = (tz_pos - tx) / n and V01 (one per negative) = 1 - (tz_neg - ty) / m.
    AUC_k is the mean of its V10; Var(AUC_B - AUC_A) = c' (S10/m + S01/n) c with c = (-1, 1) and
    S10, S01 the 2x2 sample covariances of the components across the two models.
    """
    y = np.asarray(y_true, dtype=np.float64)
    positives = y == 1
    m, n = int(positives.sum()), int((~positives).sum())
    if m < 2 or n < 2:
        raise InputError(f"DeLong's test needs at least 2 positive and 2 negative rows, got {m} and {n}")
    v10 = np.empty((2, m))
    v01 = np.empty((2, n))
    aucs = np.empty(2)
    for k, raw in enumerate((scores_a, scores_b)):
        s = np.asarray(raw, dtype=np.float64)
        pos, neg = s[positives], s[~positives]
        tx = stats.rankdata(pos)
        ty = stats.rankdata(neg)
        tz = stats.rankdata(np.concatenate([pos, neg]))
        aucs[k] = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
        v10[k] = (tz[:m] - tx) / n
        v01[k] = 1 - (tz[m:] - ty) / m
    s10 = np.cov(v10)
    s01 = np.cov(v01)
    contrast = np.array([-1.0, 1.0])
    variance = float(contrast @ (s10 / m + s01 / n) @ contrast)
    difference = float(aucs[1] - aucs[0])
    z_crit = float(stats.norm.ppf(0.5 + level / 2))
    if variance > 0:
        se = math.sqrt(variance)
        z: float | None = difference / se
        p_value = float(2 * stats.norm.sf(abs(difference / se)))
    else:
        # Identical rankings (e.g. the same model twice) have no variance: equal AUCs are no evidence of a difference.
        se = 0.0
        z = 0.0 if difference == 0 else None
        p_value = 1.0 if difference == 0 else 0.0
    ci = Interval(difference - z_crit * se, difference + z_crit * se, level, "DeLong (normal approximation)")
    return DeLongResult(float(aucs[0]), float(aucs[1]), difference, variance, z, p_value, ci)


def paired_t_test(loss_a: npt.ArrayLike, loss_b: npt.ArrayLike, what: str = "errors") -> SignificanceTest:
    """Paired t-test of mean(loss_a - loss_b) = 0 (scipy.stats.ttest_rel), defined also when all differences agree."""
    a = np.asarray(loss_a, dtype=np.float64)
    b = np.asarray(loss_b, dtype=np.float64)
    differences = a - b
    name = f"paired t-test on {what}"
    if np.ptp(differences) == 0:
        # Constant differences: the t statistic divides by zero. Equal is no evidence; a constant shift is total.
        return SignificanceTest(name, 0.0 if differences[0] == 0 else None, 1.0 if differences[0] == 0 else 0.0)
    result = stats.ttest_rel(a, b)
    return SignificanceTest(name, float(result.statistic), float(result.pvalue), f"{a.size - 1} degrees of freedom")


def wilcoxon_test(loss_a: npt.ArrayLike, loss_b: npt.ArrayLike, what: str = "errors") -> SignificanceTest:
    """Wilcoxon's signed-rank test on paired losses (scipy.stats.wilcoxon: exact for small samples, zeros dropped)."""
    a = np.asarray(loss_a, dtype=np.float64)
    b = np.asarray(loss_b, dtype=np.float64)
    differences = a - b
    name = f"Wilcoxon signed-rank on {what}"
    nonzero = int(np.count_nonzero(differences))
    if nonzero == 0:
        return SignificanceTest(name, 0.0, 1.0, "every row has the same error under both models")
    result = stats.wilcoxon(differences)
    return SignificanceTest(name, float(result.statistic), float(result.pvalue), f"{nonzero} non-zero differences")


def resample_weights(rows: int, resamples: int, seed: int) -> Iterator[FloatArray]:
    """Bootstrap resamples as row counts, yielded in chunks of at most a few million cells.

    Drawing ``rows`` row indices with replacement and counting them is the same resample as indexing,
    but lets every metric be a weighted sum, and both models see the very same rows (a paired bootstrap).
    Chunks are yielded, not kept, so memory stays flat however many rows and resamples there are.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // max(rows, 1))
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        picks = rng.integers(0, rows, size=(size, rows))
        flat = picks + (np.arange(size) * rows)[:, None]
        counts = np.bincount(flat.reshape(-1), minlength=size * rows).reshape(size, rows)
        yield counts.astype(np.float64)
        done += size


def bootstrap_differences(
    metrics: Sequence[str],
    y_true: npt.ArrayLike,
    a: Predictions,
    b: Predictions,
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, BootstrapDifference]:
    """Paired bootstrap of metric(B) - metric(A) for several metrics over the same resamples.

    Each resample is drawn once and scored for every metric (drawing dominates the cost). The
    p-value is the percentile-bootstrap one, 2 * min(share of differences <= 0, share >= 0) with the
    +1 correction, so it agrees with the CI (below 1 - level when the CI excludes zero, up to
    resampling granularity) and is never exactly zero.
    """
    y = np.asarray(y_true, dtype=np.float64)
    scorers = {m: (weighted_metric(m, y, a), weighted_metric(m, y, b)) for m in metrics}
    ones = np.ones((1, y.size))
    parts: dict[str, list[FloatArray]] = {m: [] for m in metrics}
    for weights in resample_weights(y.size, resamples, seed):
        for metric, (metric_a, metric_b) in scorers.items():
            parts[metric].append(metric_b(weights) - metric_a(weights))
    results = {}
    for metric, (metric_a, metric_b) in scorers.items():
        observed = float(metric_b(ones)[0] - metric_a(ones)[0])
        results[metric] = _percentile_summary(observed, np.concatenate(parts[metric]), level, resamples)
    return results


def bootstrap_difference(
    metric: str,
    y_true: npt.ArrayLike,
    a: Predictions,
    b: Predictions,
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapDifference:
    """Paired bootstrap of one metric's difference B - A (see :func:`bootstrap_differences`)."""
    return bootstrap_differences([metric], y_true, a, b, resamples=resamples, seed=seed, level=level)[metric]


def _percentile_summary(observed: float, differences: FloatArray, level: float, resamples: int) -> BootstrapDifference:
    method = f"paired bootstrap (percentile, {resamples} resamples)"
    finite = differences[np.isfinite(differences)]
    if finite.size == 0:
        return BootstrapDifference(observed, Interval(math.nan, math.nan, level, method), 1.0, differences)
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    at_or_below = int(np.sum(finite <= 0))
    at_or_above = int(np.sum(finite >= 0))
    p_value = min(1.0, 2 * (min(at_or_below, at_or_above) + 1) / (finite.size + 1))
    return BootstrapDifference(observed, Interval(float(low), float(high), level, method), p_value, differences)


# --------------------------------------------------------------------------- curves for charts


def roc_points(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(false positive rates, true positive rates) at every distinct threshold, from (0, 0) to (1, 1)."""
    tps, fps = _threshold_counts(y_true, scores)
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def precision_recall_points(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(recall, precision) at every distinct threshold, from the highest threshold down."""
    tps, fps = _threshold_counts(y_true, scores)
    return tps / tps[-1], tps / (tps + fps)


def average_precision(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    recall, precision = precision_recall_points(y_true, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _threshold_counts(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_each_threshold = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last_of_each_threshold]
    fps = 1.0 + last_of_each_threshold - tps
    return tps, fps
