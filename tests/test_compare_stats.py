"""The statistics of `mlops model compare`, checked against established implementations and published values.

References used:
* statsmodels' McNemar (exact and chi-square), and R's documented mcnemar.test example (Agresti's table);
* scipy.stats.ttest_rel / wilcoxon, and R's documented t.test (Student's sleep data) and wilcox.test examples;
* scikit-learn's metrics (roc_auc_score, accuracy, f1, precision, recall, log_loss, rmse, mae, r2, curves);
* DeLong: an independent O(n^2) implementation of DeLong et al. (1988) written here from the paper's
  formulas, and pROC's own test values for roc.test on its aSAH data set (Z, p and CI), reproduced exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from statsmodels.stats.contingency_tables import mcnemar as statsmodels_mcnemar

from mlops.analysis.compare import (
    MCNEMAR_EXACT_BELOW,
    ModelSide,
    Predictions,
    auc_score,
    average_precision,
    bootstrap_difference,
    comparability_warnings,
    compare_predictions,
    delong_test,
    mcnemar_test,
    metric_value,
    paired_t_test,
    precision_recall_points,
    resample_weights,
    resolve_metrics,
    roc_points,
    wilcoxon_test,
)
from mlops.errors import InputError, UsageError
from mlops.manifests.common import Signature, Task, TensorSpec

CLASSIFIER_A = ModelSide("m@1", Task.CLASSIFICATION)
CLASSIFIER_B = ModelSide("m@2", Task.CLASSIFICATION)
REGRESSOR_A = ModelSide("r@1", Task.REGRESSION)
REGRESSOR_B = ModelSide("r@2", Task.REGRESSION)


def synthetic_classifiers(n: int, seed: int, strength_a: float = 0.3, strength_b: float = 0.45):
    """Labels and two correlated probability scores with ties (rounded), and the labels they imply."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    shared = rng.normal(size=n)
    score_a = 1 / (1 + np.exp(-(strength_a * 4 * (y - 0.3) + shared + 0.7 * rng.normal(size=n))))
    score_b = 1 / (1 + np.exp(-(strength_b * 4 * (y - 0.3) + shared + 0.7 * rng.normal(size=n))))
    score_a, score_b = np.round(score_a, 2), np.round(score_b, 2)  # ties, as real models produce
    return y, Predictions((score_a > 0.5).astype(float), score_a), Predictions((score_b > 0.5).astype(float), score_b)


def correct_from_table(table: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right/wrong per row for A and B from a 2x2 table: rows A right/wrong, columns B right/wrong."""
    (both, a_only), (b_only, neither) = table
    a = np.r_[np.ones(both), np.ones(a_only), np.zeros(b_only), np.zeros(neither)].astype(bool)
    b = np.r_[np.ones(both), np.zeros(a_only), np.ones(b_only), np.zeros(neither)].astype(bool)
    return a, b


# --------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize(
    "table",
    [
        [[10, 3], [9, 20]],  # 12 discordant: exact
        [[50, 0], [0, 40]],  # no discordant rows
        [[30, 12], [12, 30]],  # 24 discordant, balanced: exact
        [[30, 5], [19, 30]],  # 24 discordant: the last exact case
        [[30, 5], [20, 30]],  # 25 discordant: the first chi-square case
        [[100, 40], [20, 300]],
        [[794, 150], [86, 570]],
    ],
)
def test_mcnemar_matches_statsmodels(table: list[list[int]]) -> None:
    correct_a, correct_b = correct_from_table(table)
    ours = mcnemar_test(correct_a, correct_b)
    discordant = table[0][1] + table[1][0]
    exact = discordant < MCNEMAR_EXACT_BELOW
    reference = statsmodels_mcnemar(np.array(table), exact=exact, correction=True)
    assert ours.name.startswith("McNemar (exact" if exact else "McNemar (chi-square")
    assert ours.p_value == pytest.approx(float(reference.pvalue), rel=1e-12, abs=1e-15)
    assert ours.statistic == pytest.approx(float(reference.statistic), rel=1e-12)


def test_mcnemar_reproduces_r_documented_example() -> None:
    # R's ?mcnemar.test: Agresti (1990) presidential approval, 1600 people surveyed twice:
    # "McNemar's chi-squared = 16.818, df = 1, p-value = 4.115e-05".
    result = mcnemar_test(*correct_from_table([[794, 150], [86, 570]]))
    assert round(result.statistic or 0, 3) == 16.818
    assert f"{result.p_value:.3e}" == "4.115e-05"


# --------------------------------------------------------------------------- DeLong


def slow_delong(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeLong, DeLong & Clarke-Pearson (1988), straight from the paper, O(m n).

    psi(X, Y) = 1 if X > Y, 1/2 if X = Y, 0 otherwise. For each model: V10(X_i) = mean_j psi(X_i, Y_j)
    over the n negatives, V01(Y_j) = mean_i psi(X_i, Y_j) over the m positives; AUC = mean V10.
    S10 and S01 are the sample covariance matrices of the components; S = S10/m + S01/n.
    """
    positives, negatives = y == 1, y == 0
    v10, v01, aucs = [], [], []
    for score in (score_a, score_b):
        x, z = score[positives], score[negatives]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = int(positives.sum()), int(negatives.sum())
    covariance = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    return np.array(aucs), covariance, np.array(v10)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_delong_matches_slow_structural_components_and_sklearn_auc(seed: int) -> None:
    y, a, b = synthetic_classifiers(300, seed)
    assert a.scores is not None and b.scores is not None
    aucs, covariance, _ = slow_delong(y, a.scores, b.scores)
    result = delong_test(y, a.scores, b.scores)
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    assert result.auc_a == pytest.approx(skm.roc_auc_score(y, a.scores), rel=1e-12)
    assert result.auc_b == pytest.approx(skm.roc_auc_score(y, b.scores), rel=1e-12)
    assert (result.auc_a, result.auc_b) == pytest.approx(tuple(aucs), rel=1e-12)
    assert result.variance == pytest.approx(variance, rel=1e-9)
    z = (aucs[1] - aucs[0]) / math.sqrt(variance)
    assert result.z == pytest.approx(z, rel=1e-9)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


# pROC's tests/testthat/helper-deLongPlacementsCpp-expected.R gives DeLong's placements (structural
# components) of three markers of its aSAH data set (41 "Poor" outcomes, 72 "Good"), in patient order.
# Stored here as 144 * V10 for the 41 cases and 82 * V01 for the 72 controls, which are whole numbers.
WFNS_CASES = [117, 94, 128, 140, 140, 140, 140, 94, 140, 94, 37, 94, 140, 128, 128, 94, 140, 140, 140, 94, 140, 94,
              140, 94, 128, 140, 128, 128, 37, 128, 128, 94, 94, 140, 140, 94, 94, 140, 140, 140, 140]  # fmt: skip
WFNS_CONTROLS = [80, 80, 80, 80, 18, 80, 66, 66, 80, 66, 66, 80, 80, 80, 66, 80, 66, 80, 80, 53, 44, 80, 44, 80, 18,
                 18, 80, 80, 66, 44, 80, 80, 66, 66, 80, 66, 80, 66, 66, 80, 80, 80, 80, 66, 80, 66, 80, 80, 53, 66,
                 44, 66, 80, 44, 80, 80, 18, 44, 66, 66, 80, 80, 80, 53, 80, 66, 66, 44, 44, 80, 80, 80]  # fmt: skip
S100B_CASES = [81, 63, 103, 78, 130, 144, 140, 26, 123, 50, 26, 128, 126, 139, 144, 118, 144, 144, 144, 26, 144, 120,
               0, 50, 116, 144, 118, 144, 38, 118, 81, 63, 74, 116, 144, 88, 144, 121, 144, 144, 130]  # fmt: skip
S100B_CONTROLS = [58, 55, 66, 80, 28, 52, 66, 66, 80, 73, 80, 70, 63, 77, 52, 77, 63, 58, 52, 80, 53, 55, 36, 70, 24,
                  28, 53, 77, 32, 28, 63, 73, 70, 73, 80, 58, 66, 55, 54, 80, 80, 70, 80, 70, 73, 53, 70, 73, 37, 63,
                  42, 77, 66, 39, 77, 80, 48, 34, 66, 54, 73, 55, 66, 77, 80, 52, 54, 28, 52, 54, 24, 27]  # fmt: skip
NDKA_CASES = [116, 90, 98, 110, 6, 40, 74, 134, 140, 134, 134, 58, 104, 124, 24, 36, 102, 2, 144, 124, 62, 74, 80,
              102, 128, 93, 124, 36, 142, 109, 6, 49, 124, 6, 48, 134, 76, 104, 138, 74, 110]  # fmt: skip
NDKA_CONTROLS = [82, 68, 72, 58, 74, 33, 74, 26, 42, 26, 28, 6, 66, 74, 48, 74, 74, 2, 46, 62, 62, 26, 80, 72, 74, 63,
                 44, 72, 34, 8, 72, 74, 48, 66, 72, 44, 16, 18, 60, 50, 4, 74, 28, 62, 58, 58, 34, 80, 28, 48, 66, 58,
                 26, 58, 50, 72, 62, 58, 16, 68, 48, 45, 8, 52, 48, 66, 16, 60, 38, 18, 74, 42]  # fmt: skip


def scores_from_placements(cases: list[int], controls: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Scores of 41 positives then 72 negatives whose case/control orderings give exactly these placements.

    AUC and DeLong's test depend on the scores only through how each positive ranks against each
    negative, which the placements fix: a control with more cases above it scores lower, and a case
    sits above (or ties with, for a half count) as many controls as its placement says.
    """
    m, n = len(cases), len(controls)
    control_scores = -np.array(controls, dtype=float)  # -(2 m V01): more cases above, lower score
    levels, counts = np.unique(control_scores, return_counts=True)
    below = np.r_[0, np.cumsum(counts)]  # controls strictly below level k
    case_scores = []
    for doubled in cases:
        target = doubled / 2  # n V10 = controls below + half the controls tied
        k = int(np.searchsorted(below, target))
        if k < below.size and below[k] == target:
            low = levels[k - 1] if k > 0 else levels[0] - 2
            high = levels[k] if k < levels.size else levels[-1] + 2
            case_scores.append((low + high) / 2)
        else:
            assert below[k - 1] + counts[k - 1] / 2 == target
            case_scores.append(levels[k - 1])
    y = np.r_[np.ones(m), np.zeros(n)]
    return y, np.r_[case_scores, control_scores]


@pytest.fixture(scope="module")
def asah() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        "wfns": scores_from_placements(WFNS_CASES, WFNS_CONTROLS),
        "s100b": scores_from_placements(S100B_CASES, S100B_CONTROLS),
        "ndka": scores_from_placements(NDKA_CASES, NDKA_CONTROLS),
    }


def test_reconstructed_asah_scores_give_proc_placements(asah: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    cases_controls = {
        "wfns": (WFNS_CASES, WFNS_CONTROLS),
        "s100b": (S100B_CASES, S100B_CONTROLS),
        "ndka": (NDKA_CASES, NDKA_CONTROLS),
    }
    for marker, (y, scores) in asah.items():
        positives, negatives = scores[y == 1], scores[y == 0]
        psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
        cases, controls = cases_controls[marker]
        np.testing.assert_allclose(psi.mean(axis=1) * 144, cases, atol=1e-9)
        np.testing.assert_allclose(psi.mean(axis=0) * 82, controls, atol=1e-9)


# pROC tests/testthat/test-roc.test.R, "roc.test statistic and p are as expected with defaults":
# roc.test(r.wfns, r.s100b), roc.test(r.wfns, r.ndka) and roc.test(r.ndka, r.s100b), tested on first - second.
# (first, second): (AUC of first, Z, p-value, 95% CI low, 95% CI high)
# fmt: off
PROC_ROC_TESTS = {
    ("wfns", "s100b"): (0.823678861788618, 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
    ("wfns", "ndka"): (
        0.823678861788618, 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566
    ),
    ("ndka", "s100b"): (
        0.611957994579946, -1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094
    ),
}
# fmt: on


@pytest.mark.parametrize(("first", "second"), list(PROC_ROC_TESTS))
def test_delong_reproduces_proc_roc_test(
    asah: dict[str, tuple[np.ndarray, np.ndarray]], first: str, second: str
) -> None:
    auc_first, z, p_value, ci_low, ci_high = PROC_ROC_TESTS[first, second]
    y, scores_first = asah[first]
    _, scores_second = asah[second]
    # Our difference is B - A, pROC's is first - second: pass second as A.
    result = delong_test(y, scores_second, scores_first)
    assert result.auc_b == pytest.approx(auc_first, abs=1e-12)
    assert result.z == pytest.approx(z, rel=1e-9)
    assert result.p_value == pytest.approx(p_value, rel=1e-9)
    assert result.ci.low == pytest.approx(ci_low, rel=1e-9)
    assert result.ci.high == pytest.approx(ci_high, rel=1e-9)


def test_delong_of_identical_scores_is_z0_p1(asah: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    # pROC: "DeLong roc.test works when curves are identical": p = 1, Z = 0.
    y, scores = asah["wfns"]
    result = delong_test(y, scores, scores)
    assert (result.z, result.p_value, result.difference) == (0.0, 1.0, 0.0)


# --------------------------------------------------------------------------- paired t and Wilcoxon


def test_paired_t_reproduces_students_sleep_data() -> None:
    # R: t.test(extra ~ group, data = sleep, paired = TRUE) -> t = -4.0621, df = 9, p-value = 0.002833.
    group1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    group2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    result = paired_t_test(group1, group2)
    assert round(result.statistic or 0, 4) == -4.0621
    assert round(result.p_value, 6) == 0.002833
    assert result.detail == "9 degrees of freedom"


def test_wilcoxon_reproduces_r_documented_example() -> None:
    # R's ?wilcox.test (Hollander & Wolfe, depression scale before/after):
    # wilcox.test(x, y, paired = TRUE, alternative = "greater") -> V = 40, p-value = 0.01953.
    x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    result = wilcoxon_test(x, y)
    assert result.statistic == 45 - 40  # two-sided: min(V+, V-), with 9 * 10 / 2 = 45 rank sum in all
    assert result.p_value == pytest.approx(2 * 0.01953125, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_tests_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    loss_a = np.abs(rng.normal(size=200))
    loss_b = np.abs(rng.normal(scale=0.9, size=200))
    loss_b[:10] = loss_a[:10]  # zero differences, which Wilcoxon drops
    t_ref = stats.ttest_rel(loss_a, loss_b)
    w_ref = stats.wilcoxon(loss_a, loss_b)
    t, w = paired_t_test(loss_a, loss_b), wilcoxon_test(loss_a, loss_b)
    assert (t.statistic, t.p_value) == pytest.approx((float(t_ref.statistic), float(t_ref.pvalue)), rel=1e-12)
    assert (w.statistic, w.p_value) == pytest.approx((float(w_ref.statistic), float(w_ref.pvalue)), rel=1e-12)


def test_paired_tests_of_equal_losses_say_no_difference() -> None:
    losses = np.linspace(0, 1, 50)
    assert paired_t_test(losses, losses).p_value == 1.0
    assert wilcoxon_test(losses, losses).p_value == 1.0


# --------------------------------------------------------------------------- metrics against scikit-learn


@pytest.mark.parametrize("seed", [0, 1])
def test_classification_metrics_match_sklearn(seed: int) -> None:
    y, a, _ = synthetic_classifiers(400, seed)
    assert a.scores is not None
    expected = {
        "auc": skm.roc_auc_score(y, a.scores),
        "accuracy": skm.accuracy_score(y, a.values),
        "f1": skm.f1_score(y, a.values),
        "precision": skm.precision_score(y, a.values),
        "recall": skm.recall_score(y, a.values),
        "log_loss": skm.log_loss(y, a.scores),
    }
    for metric, value in expected.items():
        assert metric_value(metric, y, a) == pytest.approx(value, rel=1e-12), metric


def test_precision_without_predicted_positives_is_zero_like_sklearn() -> None:
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1, 0, 0], dtype=float)
    nothing = Predictions(np.zeros(10), np.full(10, 0.2))
    assert metric_value("precision", y, nothing) == skm.precision_score(y, nothing.values, zero_division=0) == 0
    assert metric_value("f1", y, nothing) == skm.f1_score(y, nothing.values, zero_division=0) == 0


def test_log_loss_clips_like_sklearn() -> None:
    y = np.array([0, 1, 1, 0], dtype=float)
    certain = Predictions(np.array([0, 1, 0, 0], dtype=float), np.array([0.0, 1.0, 0.0, 0.3]))
    assert metric_value("log_loss", y, certain) == pytest.approx(skm.log_loss(y, certain.scores), rel=1e-12)


def test_regression_metrics_and_tests_match_sklearn_and_scipy() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(100, 20, size=300)
    a = Predictions(y + rng.normal(0, 10, size=300))
    b = Predictions(y + rng.normal(0, 8, size=300))
    result = compare_predictions(REGRESSOR_A, REGRESSOR_B, y, a, b, resamples=300)
    by_name = {m.metric: m for m in result.metrics}
    assert by_name["rmse"].value_a == pytest.approx(math.sqrt(skm.mean_squared_error(y, a.values)), rel=1e-12)
    assert by_name["mae"].value_b == pytest.approx(skm.mean_absolute_error(y, b.values), rel=1e-12)
    assert by_name["r2"].value_a == pytest.approx(skm.r2_score(y, a.values), rel=1e-12)
    abs_a, abs_b = np.abs(a.values - y), np.abs(b.values - y)
    sq_a, sq_b = abs_a**2, abs_b**2
    assert by_name["mae"].test.p_value == pytest.approx(float(stats.ttest_rel(abs_a, abs_b).pvalue), rel=1e-12)
    assert by_name["mae"].other_tests[0].p_value == pytest.approx(float(stats.wilcoxon(abs_a, abs_b).pvalue), rel=1e-9)
    assert by_name["rmse"].test.p_value == pytest.approx(float(stats.ttest_rel(sq_a, sq_b).pvalue), rel=1e-12)
    assert by_name["r2"].test.p_value == by_name["rmse"].test.p_value
    assert result.verdict.startswith("r@2 is better than r@1")


def test_curves_match_sklearn() -> None:
    y, a, _ = synthetic_classifiers(250, 9)
    assert a.scores is not None
    fpr, tpr = roc_points(y, a.scores)
    ref_fpr, ref_tpr, _ = skm.roc_curve(y, a.scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    recall, precision = precision_recall_points(y, a.scores)
    ref_precision, ref_recall, _ = skm.precision_recall_curve(y, a.scores)
    np.testing.assert_allclose(recall, ref_recall[:-1][::-1])
    np.testing.assert_allclose(precision, ref_precision[:-1][::-1])
    assert average_precision(y, a.scores) == pytest.approx(skm.average_precision_score(y, a.scores), rel=1e-12)
    assert auc_score(y, a.scores) == pytest.approx(float(np.trapezoid(tpr, fpr)), rel=1e-12)


# --------------------------------------------------------------------------- the paired bootstrap


def test_resample_weights_are_row_counts_of_a_resample() -> None:
    weights = np.concatenate(list(resample_weights(rows=7, resamples=1000, seed=3)))
    assert weights.shape == (1000, 7)
    assert np.all(weights.sum(axis=1) == 7)
    # Each row is drawn with probability 1/7 per pick: its mean count is 1.
    assert weights.mean(axis=0) == pytest.approx(np.ones(7), abs=0.1)


def test_bootstrap_is_reproducible_with_a_seed_and_changes_with_another() -> None:
    y, a, b = synthetic_classifiers(300, 4)
    first = bootstrap_difference("f1", y, a, b, resamples=500, seed=11)
    again = bootstrap_difference("f1", y, a, b, resamples=500, seed=11)
    other = bootstrap_difference("f1", y, a, b, resamples=500, seed=12)
    assert first.ci == again.ci
    np.testing.assert_array_equal(first.differences, again.differences)
    assert first.ci != other.ci
    expected = skm.f1_score(y, b.values) - skm.f1_score(y, a.values)
    assert first.observed == other.observed == pytest.approx(expected, rel=1e-12)


def test_bootstrap_ci_contains_the_true_difference_of_a_known_effect() -> None:
    # A is right with probability 0.75, B with 0.80, independently: the true accuracy difference is 0.05.
    rng = np.random.default_rng(2024)
    n = 4000
    y = (rng.random(n) < 0.5).astype(float)
    a = Predictions(np.where(rng.random(n) < 0.75, y, 1 - y), rng.random(n))
    b = Predictions(np.where(rng.random(n) < 0.80, y, 1 - y), rng.random(n))
    result = bootstrap_difference("accuracy", y, a, b, resamples=2000, seed=0)
    assert result.ci.contains(0.05)
    assert not result.ci.contains(0.0)
    # Its spread agrees with the textbook standard error of a paired difference of proportions.
    paired = (b.values == y).astype(float) - (a.values == y).astype(float)
    assert np.std(result.differences) == pytest.approx(paired.std(ddof=1) / math.sqrt(n), rel=0.08)


def test_bootstrap_ci_covers_the_true_mae_difference_about_95_percent_of_the_time() -> None:
    # Errors N(0, 1) for A and N(0, 0.8) for B: E|e| = sigma * sqrt(2/pi), so the true MAE difference is known.
    true_difference = (0.8 - 1.0) * math.sqrt(2 / math.pi)
    covered = 0
    trials = 200
    for trial in range(trials):
        rng = np.random.default_rng(trial)
        y = rng.normal(size=200)
        a = Predictions(y + rng.normal(0, 1.0, size=200))
        b = Predictions(y + rng.normal(0, 0.8, size=200))
        covered += bootstrap_difference("mae", y, a, b, resamples=400, seed=trial).ci.contains(true_difference)
    assert 0.89 <= covered / trials <= 0.99


# --------------------------------------------------------------------------- verdicts and warnings


def test_verdicts_name_the_better_model_and_respect_lower_is_better() -> None:
    y, a, b = synthetic_classifiers(1500, 7, strength_a=0.1, strength_b=0.6)
    result = compare_predictions(CLASSIFIER_A, CLASSIFIER_B, y, a, b, ["auc", "log_loss"], resamples=300)
    auc, log_loss = result.metrics
    assert auc.better == "B" and auc.verdict.startswith("m@2 is better on auc (p")
    assert log_loss.difference < 0 and log_loss.better == "B"
    assert result.verdict == "m@2 is better than m@1 on auc, log_loss"
    swapped = compare_predictions(CLASSIFIER_A, CLASSIFIER_B, y, b, a, ["log_loss"], resamples=300)
    assert swapped.metrics[0].better == "A" and swapped.verdict == "m@1 is better than m@2 on log_loss"


def test_no_difference_gives_a_plain_verdict_and_a_sample_size_warning() -> None:
    y, a, _ = synthetic_classifiers(400, 8)
    twin = Predictions(a.values.copy(), a.scores.copy() if a.scores is not None else None)
    twin.values[:3] = 1 - twin.values[:3]  # a tiny, undetectable difference
    result = compare_predictions(CLASSIFIER_A, CLASSIFIER_B, y, a, twin, ["accuracy"], resamples=300)
    assert result.metrics[0].better is None
    assert result.verdict.startswith("no significant difference between m@1 and m@2 on accuracy")
    assert any("disagree on only 3 rows" in w for w in result.warnings)


def test_small_samples_warn_and_tiny_ones_are_refused() -> None:
    y, a, b = synthetic_classifiers(20, 1)
    y[:3], y[3:6] = 1, 0  # at least a few of each class
    result = compare_predictions(CLASSIFIER_A, CLASSIFIER_B, y, a, b, resamples=200)
    assert any(w.startswith("only 20 rows: too few") for w in result.warnings)
    with pytest.raises(InputError, match="only 9 rows"):
        nine_a, nine_b = (Predictions(p.values[:9], None if p.scores is None else p.scores[:9]) for p in (a, b))
        compare_predictions(CLASSIFIER_A, CLASSIFIER_B, y[:9], nine_a, nine_b)


def test_non_binary_labels_are_refused_with_the_values_found() -> None:
    y, a, b = synthetic_classifiers(50, 2)
    y[0] = 2
    with pytest.raises(InputError, match=r"label 'churned' is not binary 0/1: found values 0, 1, 2"):
        compare_predictions(CLASSIFIER_A, CLASSIFIER_B, y, a, b, label="churned")


def test_comparability_warnings() -> None:
    float32 = Signature(inputs=[TensorSpec(name="features", dtype="float32", shape=[-1, 4])])
    float64 = Signature(inputs=[TensorSpec(name="features", dtype="float64", shape=[-1, 4])])
    warnings = comparability_warnings(
        ModelSide("churn@2", Task.CLASSIFICATION, float32), ModelSide("ltv@1", Task.REGRESSION, float64)
    )
    assert warnings == [
        "tasks differ: churn@2 is a classification model and ltv@1 a regression model; "
        "their metrics are not comparable, so no tests were run"
    ]
    warnings = comparability_warnings(
        ModelSide("churn@2", Task.CLASSIFICATION, float32), ModelSide("churn-v2@1", Task.CLASSIFICATION, float64)
    )
    assert warnings == [
        "signatures differ: churn@2 takes features float32 [-1, 4], churn-v2@1 takes features float64 [-1, 4]; "
        "both were fed the same columns, so check that they expect the same features in the same order"
    ]
    same = comparability_warnings(
        ModelSide("churn@1", Task.CLASSIFICATION, float32), ModelSide("churn@2", Task.CLASSIFICATION, float32)
    )
    assert same == []
    unsigned = comparability_warnings(ModelSide("a@1", Task.REGRESSION), ModelSide("a@2", Task.REGRESSION, float64))
    assert unsigned == ["a@1 has no signature: cannot check that both models take the same inputs"]


def test_metric_names_are_checked_against_the_task() -> None:
    assert resolve_metrics(Task.REGRESSION, None) == ("rmse", "mae", "r2")
    assert resolve_metrics(Task.CLASSIFICATION, ["AUC", "f1", "auc"]) == ("auc", "f1")
    with pytest.raises(UsageError, match=r"unknown metric \(did you mean auc\?\)"):
        resolve_metrics(Task.CLASSIFICATION, ["aucc"])
    with pytest.raises(UsageError, match="a regression metric, but these are classification models"):
        resolve_metrics(Task.CLASSIFICATION, ["rmse"])
    with pytest.raises(UsageError, match="comparing ranking models is not supported"):
        resolve_metrics(Task.RANKING, None)
