"""The pure parts: the filter language, and the group statistics checked against scipy and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from mlops.analysis.run_compare import (
    RunSample,
    compare_runs,
    group_runs,
    higher_is_better,
    holm,
    summarize,
)
from mlops.analysis.run_filter import FilterError, parse_filter
from mlops.errors import UsageError


def view(**kw: object) -> dict[str, dict[str, object]]:
    return {
        "metrics": kw.get("metrics", {}),  # type: ignore[dict-item]
        "params": kw.get("params", {}),  # type: ignore[dict-item]
        "tags": kw.get("tags", {}),  # type: ignore[dict-item]
        "attributes": {
            "status": "finished",
            "experiment": "churn-gbm",
            "start_time": 1767225600.0,
            **kw.get("attrs", {}),
        },  # type: ignore[dict-item]
    }


RUN = view(
    metrics={"auc": 0.93, "val.loss": 0.2}, params={"depth": "6", "model": "gbm", "gpu": True}, tags={"team": "growth"}
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("metrics.auc > 0.9 and params.depth == 6", True),
        ("metrics.auc > 0.95 or params.model = 'gbm'", True),
        ("not (metrics.auc > 0.9)", False),
        ("params.depth in (4, 6) and params.model not in ('rf')", True),
        ("experiment like 'churn-*' and status == finished", True),
        ("metrics.val.loss <= 0.2", True),
        ("metrics.missing > 0 or metrics.missing <= 0", False),  # absent fields never match
        ("params.gpu == true and tags.team != 'ops'", True),
        ("start_time >= '2026-01-01' and start_time < '2026-01-02'", True),
        ("params.depth > 10", False),  # numeric, not textual ("6" > "10" as text)
    ],
)
def test_filters(text: str, expected: bool) -> None:
    assert parse_filter(text).matches(RUN) is expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("metrics.auc >", "column 14: expected a value"),
        ("metrics.auc 0.9", "expected an operator after metrics.auc"),
        ("score > 1", "unknown run attribute 'score'"),
        ("foo.bar > 1", "unknown field 'foo.bar'"),
        ("(metrics.auc > 1", "expected ')'"),
        ("metrics.auc > 1 $", "unexpected '$'"),
        ("", "empty filter"),
    ],
)
def test_bad_filters_say_where(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")):
        parse_filter(text)


def test_summary_and_tests_match_scipy_and_statsmodels() -> None:
    a, b = [0.80, 0.81, 0.79, 0.805], [0.83, 0.84, 0.825]
    s = summarize(b)
    low, high = stats.t.interval(0.95, len(b) - 1, loc=np.mean(b), scale=stats.sem(b))
    assert (s.mean, s.ci_low, s.ci_high) == pytest.approx((np.mean(b), low, high))
    ps = [0.01, 0.04, 0.03, math.nan, 0.2]
    finite = [p for p in ps if not math.isnan(p)]
    expected = multipletests(finite, method="holm")[1]
    assert [p for p in holm(ps) if not math.isnan(p)] == pytest.approx(list(expected))
    runs = [RunSample(f"a{i}", f"a{i}", "p", "e", {"depth": 4, "seed": i}, {"auc": v}) for i, v in enumerate(a)]
    runs += [RunSample(f"b{i}", f"b{i}", "p", "e", {"depth": 6, "seed": i}, {"auc": v}) for i, v in enumerate(b)]
    result = compare_runs(runs, ["auc"])
    (test,) = result.tests
    welch = stats.ttest_ind(b, a, equal_var=False)
    mw = stats.mannwhitneyu(b, a, alternative="two-sided")
    assert (test.welch_t, test.welch_p, test.mann_whitney_p) == pytest.approx(
        (welch.statistic, welch.pvalue, mw.pvalue)
    )
    assert test.significant and test.better == "depth=6" and result.grouped_by == ("depth",)


def test_direction_of_metrics_and_grouping() -> None:
    assert higher_is_better("auc") and not higher_is_better("val_loss") and not higher_is_better("rmse")
    runs = [RunSample(str(i), str(i), "p", "e", {"lr": 0.1, "seed": i}, {"x": 1.0}) for i in range(3)]
    keys, groups = group_runs(runs)
    assert keys == () and len(groups) == 1
    with pytest.raises(UsageError, match="--group-by depth: no compared run has such a param"):
        group_runs(runs, ["depth"])
    result = compare_runs(runs, ["x"])
    assert not result.tests and "share one configuration" in result.notes[0]
