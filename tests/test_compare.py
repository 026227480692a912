"""`mlops model compare` end to end on the example's real models and held-out rows."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import pytest
import skops.io
from click.testing import CliRunner
from conftest import SEED, Result, git, run_mlops
from scipy import stats
from sklearn import metrics as skm

from mlops.cli.compare import compare
from mlops.errors import InputError, UsageError
from mlops.inspect.loading import ModelLoadError, UnsafeFormatRefused, load_scorer
from mlops.manifests.common import ArtifactFormat, Task
from mlops.services.compare import CompareRequest, compare_versions

FEATURES = ["monthly_spend", "tenure_months", "support_tickets", "age"]
FEATURES_OPTION = ",".join(FEATURES)
HELD_OUT = slice(1500, 2000)  # rows 1501-2000 of customers-v1.csv: what the example models did not train on


@pytest.fixture
def held_out(tmp_path: Path) -> Path:
    path = tmp_path / "eval" / "held-out.csv"
    path.parent.mkdir()
    pd.read_csv(SEED / "customers-v1.csv").iloc[HELD_OUT].to_csv(path, index=False)
    return path


@pytest.fixture
def compare_cli() -> Iterator[Callable[..., Result]]:
    """`mlops model compare ...` through the real entry point and error boundary."""
    import click

    from mlops.cli.main import cli

    group = cli.get_command(click.Context(cli), "model")
    assert getattr(group, "commands", {}).get("compare") is compare
    yield lambda *args: run_mlops("model", "compare", *args)


def onnx_predictions(name: str, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and P(churn) straight from onnxruntime, independently of mlops.inspect."""
    session = onnxruntime.InferenceSession(str(SEED / name), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"features": features.astype(np.float32)})
    return np.asarray(labels), np.asarray(probabilities)[:, 1].astype(np.float64)


def run_request(repo: Path, a: str, b: str, data: Path, label: str, **options: object) -> object:
    return compare_versions(repo, CompareRequest(a, b, data, label, **options))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the service on the real models


def test_churn_comparison_matches_sklearn_on_the_same_predictions(example_repo: Path, held_out: Path) -> None:
    run = compare_versions(
        example_repo,
        CompareRequest("churn@1", "churn@2", held_out, "churned", features=tuple(FEATURES), resamples=500),
    )
    table = pd.read_csv(held_out)
    y = table["churned"].to_numpy()
    labels_1, proba_1 = onnx_predictions("churn-1.onnx", table[FEATURES].to_numpy())
    labels_2, proba_2 = onnx_predictions("churn-2.onnx", table[FEATURES].to_numpy())
    expected = {
        "auc": (skm.roc_auc_score(y, proba_1), skm.roc_auc_score(y, proba_2)),
        "accuracy": (skm.accuracy_score(y, labels_1), skm.accuracy_score(y, labels_2)),
        "f1": (skm.f1_score(y, labels_1), skm.f1_score(y, labels_2)),
        "log_loss": (skm.log_loss(y, proba_1), skm.log_loss(y, proba_2)),
    }
    result = run.result
    assert result.rows == 500 and result.task is Task.CLASSIFICATION
    assert [m.metric for m in result.metrics] == list(expected)
    for metric in result.metrics:
        value_1, value_2 = expected[metric.metric]
        assert metric.value_a == pytest.approx(value_1, rel=1e-9), metric.metric
        assert metric.value_b == pytest.approx(value_2, rel=1e-9), metric.metric
        assert metric.difference == pytest.approx(value_2 - value_1, rel=1e-9, abs=1e-12)
        # The registered metrics were measured on these very rows (examples/make_seed.py), to 4 decimals.
        assert round(metric.value_a, 4) == result.a.registered_metrics[metric.metric]
        assert round(metric.value_b, 4) == result.b.registered_metrics[metric.metric]
    accuracy = next(m for m in result.metrics if m.metric == "accuracy")
    right_1, right_2 = labels_1 == y, labels_2 == y
    only_1, only_2 = int(np.sum(right_1 & ~right_2)), int(np.sum(~right_1 & right_2))
    assert accuracy.test.statistic == pytest.approx((abs(only_1 - only_2) - 1) ** 2 / (only_1 + only_2))
    assert run.features == tuple(FEATURES) and run.features_from == "--features"
    assert run.data_digest.startswith("sha256:")
    assert result.verdict == (
        "no significant difference between churn@1 and churn@2 on auc, accuracy, f1, log_loss (alpha=0.05)"
    )


def test_ltv_regression_comparison_matches_sklearn_and_scipy(example_repo: Path, held_out: Path) -> None:
    run = compare_versions(
        example_repo,
        CompareRequest("ltv@1", "ltv@2", held_out, "lifetime_value", features=tuple(FEATURES), resamples=500),
    )
    table = pd.read_csv(held_out)
    y = table["lifetime_value"].to_numpy()
    x = table[FEATURES].to_numpy(dtype=np.float64)
    # Loading ltv@2 needs sklearn.tree._tree.Tree trusted, which the example's ArtifactPolicy does.
    trusted = ["sklearn.tree._tree.Tree"]
    models = [skops.io.load(SEED / name, trusted=trusted) for name in ("ltv-1.skops", "ltv-2.skops")]
    predicted = [model.predict(x) for model in models]
    by_name = {m.metric: m for m in run.result.metrics}
    assert by_name["rmse"].value_a == pytest.approx(math.sqrt(skm.mean_squared_error(y, predicted[0])), rel=1e-9)
    assert by_name["mae"].value_b == pytest.approx(skm.mean_absolute_error(y, predicted[1]), rel=1e-9)
    assert by_name["r2"].value_b == pytest.approx(skm.r2_score(y, predicted[1]), rel=1e-9)
    absolute = [np.abs(p - y) for p in predicted]
    assert by_name["mae"].test.p_value == pytest.approx(float(stats.ttest_rel(*absolute).pvalue), rel=1e-9)
    assert by_name["mae"].other_tests[0].p_value == pytest.approx(float(stats.wilcoxon(*absolute).pvalue), rel=1e-6)
    assert run.result.verdict == "ltv@2 is better than ltv@1 on rmse, mae, r2"


def test_parquet_gives_the_same_result_as_csv(example_repo: Path, held_out: Path) -> None:
    parquet = held_out.with_suffix(".parquet")
    pd.read_csv(held_out).to_parquet(parquet)
    options = {"features": tuple(FEATURES), "resamples": 200}
    from_csv = compare_versions(example_repo, CompareRequest("churn@1", "churn@3", held_out, "churned", **options))
    from_parquet = compare_versions(example_repo, CompareRequest("churn@1", "churn@3", parquet, "churned", **options))
    assert from_csv.result.metrics == from_parquet.result.metrics


def test_comparing_a_classifier_with_a_regressor_warns_that_tasks_differ(
    example_repo: Path, held_out: Path, compare_cli: Callable[..., Result]
) -> None:
    run = compare_versions(example_repo, CompareRequest("churn@2", "ltv@1", held_out, "churned"))
    assert not run.result.comparable and run.result.metrics == ()
    assert run.result.warnings[0].startswith("tasks differ: churn@2 is a classification model and ltv@1 a regression")
    result = compare_cli("churn@2", "ltv@1", "--data", str(held_out), "--label", "churned", "--repo", str(example_repo))
    assert result.code == 0
    assert "warning: tasks differ: churn@2 is a classification model and ltv@1 a regression model" in result.out
    assert "verdict: not comparable" in result.out


def test_a_20_row_sample_warns_that_it_is_too_small(example_repo: Path, held_out: Path) -> None:
    small = held_out.with_name("small.csv")
    pd.read_csv(held_out).head(20).to_csv(small, index=False)
    run = compare_versions(
        example_repo, CompareRequest("churn@1", "churn@2", small, "churned", features=tuple(FEATURES), resamples=300)
    )
    assert run.result.rows == 20
    assert any(w.startswith("only 20 rows: too few for reliable paired tests") for w in run.result.warnings)
    assert any("recommend validating on more data" in w for w in run.result.warnings)


def test_default_features_come_from_a_features_tag(example_repo: Path, held_out: Path) -> None:
    model_file = example_repo / "registry/models/churn/model.yaml"
    assert f"features: {FEATURES_OPTION}" in model_file.read_text(encoding="utf-8")  # the example carries the tag
    run = compare_versions(example_repo, CompareRequest("churn@1", "churn@2", held_out, "churned", resamples=200))
    assert run.features == tuple(FEATURES)
    assert run.features_from == "the 'features' tag of churn@1"


# --------------------------------------------------------------------------- the command and its reports


def invoke(repo: Path, data: Path, *extra: str) -> str:
    args = ["churn@1", "churn@2", "--data", str(data), "--label", "churned", "--features", FEATURES_OPTION]
    result = CliRunner().invoke(compare, [*args, "--repo", str(repo), "--bootstrap", "300", *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_text_report(example_repo: Path, held_out: Path) -> None:
    out = invoke(example_repo, held_out)
    lines = out.splitlines()
    assert lines[0] == "churn@1 (A) vs churn@2 (B): classification, 500 rows of held-out.csv, label 'churned'"
    assert re.search(r"^auc\s+0\.7882\s+0\.7913\s+\+0\.0031\s+\[-0\.02\d\d, \+0\.02\d\d\]\s+DeLong\s", out, re.M)
    assert re.search(r"^accuracy\s+0\.8320\s+0\.8180\s+-0\.0140 .*McNemar \(chi-square, continuity corr", out, re.M)
    assert "verdict: no significant difference between churn@1 and churn@2" in out
    assert "note: p-values are per metric, not adjusted for multiple comparisons" in out


def test_json_report_parses_and_carries_the_numbers(example_repo: Path, held_out: Path) -> None:
    report = json.loads(invoke(example_repo, held_out, "--format", "json", "--metric", "auc,accuracy"))
    assert [m["metric"] for m in report["metrics"]] == ["auc", "accuracy"]
    auc = report["metrics"][0]
    assert round(auc["a"], 4) == 0.7882 and round(auc["b"], 4) == 0.7913
    assert auc["test"]["name"] == "DeLong" and 0 < auc["test"]["pValue"] <= 1
    assert auc["ci"]["low"] < auc["difference"] < auc["ci"]["high"]
    assert report["a"]["ref"] == "churn@1" and report["bootstrap"] == {"resamples": 300, "seed": 0}
    assert report["data"]["rows"] == 500 and report["data"]["digest"].startswith("sha256:")


def test_markdown_report(example_repo: Path, held_out: Path) -> None:
    out = invoke(example_repo, held_out, "--format", "markdown")
    assert out.startswith("### Model comparison: churn@1 (A) vs churn@2 (B)")
    assert "| metric | A | B | B - A | 95% CI | test | p | result |" in out
    assert "| auc | 0.7882 | 0.7913 | +0.0031 |" in out


def test_html_report_is_self_contained_and_deterministic(example_repo: Path, held_out: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first.html", tmp_path / "second.html"
    out = invoke(example_repo, held_out, "--format", "html", "--out", str(first))
    invoke(example_repo, held_out, "--format", "html", "--out", str(second))
    assert f"wrote the html report to {first}" in out
    page = first.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page and "<link" not in page
    assert page.count("<svg") == 2  # the forest plot, and the ROC and PR curves
    assert "ROC curve" in page and "Precision-recall curve" in page
    assert first.read_bytes() == second.read_bytes()


def test_regression_html_report_has_residual_plots(example_repo: Path, held_out: Path, tmp_path: Path) -> None:
    out = tmp_path / "ltv.html"
    args = ["ltv@1", "ltv@2", "--data", str(held_out), "--label", "lifetime_value", "--features", FEATURES_OPTION]
    result = CliRunner().invoke(
        compare, [*args, "--repo", str(example_repo), "--bootstrap", "200", "--format", "html", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "Residuals of ltv@1" in page and "Residual distribution" in page


def test_pdf_report(example_repo: Path, held_out: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "report.pdf", tmp_path / "again.pdf"
    invoke(example_repo, held_out, "--format", "pdf", "--out", str(first))
    invoke(example_repo, held_out, "--format", "pdf", "--out", str(second))
    data = first.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(data) > 5 * 1024
    assert re.findall(rb"/Count (\d+)", data) == [b"3"]  # the text page, the forest plot, the curves
    assert b"/Title (Model comparison: churn@1" in data
    assert data == second.read_bytes()


def test_html_and_pdf_need_out(example_repo: Path, held_out: Path, compare_cli: Callable[..., Result]) -> None:
    base = ["churn@1", "churn@2", "--data", str(held_out), "--label", "churned", "--repo", str(example_repo)]
    result = compare_cli(*base, "--format", "pdf")
    assert result.code == 2
    assert "--format pdf writes a file: add --out FILE" in result.err


# --------------------------------------------------------------------------- user errors: one line, nothing changed


def test_missing_label_column_is_one_line_exit_2_and_changes_nothing(
    example_repo: Path, held_out: Path, tmp_path: Path, compare_cli: Callable[..., Result]
) -> None:
    report = tmp_path / "report.html"
    before = git(example_repo, "status", "--porcelain", "--ignored")
    result = compare_cli(
        "churn@1", "churn@2", "--data", str(held_out), "--label", "churnd",
        "--repo", str(example_repo), "--format", "html", "--out", str(report),
    )  # fmt: skip
    assert result.code == 2
    assert result.out == ""
    assert result.lines == [
        f"error: {held_out}: no label column 'churnd' (did you mean 'churned'?); columns present: customer_id, "
        "signup_date, plan, monthly_spend, tenure_months, support_tickets, age, region, churned, lifetime_value"
    ]
    assert not report.exists()
    assert git(example_repo, "status", "--porcelain", "--ignored") == before


def test_feature_width_mismatch_names_the_chosen_columns(
    example_repo: Path, held_out: Path, compare_cli: Callable[..., Result]
) -> None:
    model_file = example_repo / "registry/models/churn/model.yaml"
    text = model_file.read_text(encoding="utf-8")
    tag = "  tags:\n    features: monthly_spend,tenure_months,support_tickets,age   # column order of the input\n"
    assert tag in text
    model_file.write_text(text.replace(tag, ""))
    base = ["churn@1", "churn@2", "--data", str(held_out), "--label", "churned", "--repo", str(example_repo)]
    result = compare_cli(*base)
    assert result.code == 2
    assert result.lines == [
        "error: churn@1 takes 4 input columns but the numeric columns other than the label are 5: monthly_spend, "
        "tenure_months, support_tickets, age, lifetime_value; name the 4 columns in order with --features"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["churn@9", "churn@2"], "error: churn@9 is not registered; churn has versions 1, 2, 3"),
        (["churn2", "churn@2"], "error: 'churn2': expected NAME@VERSION, e.g. churn@2"),
        (["churn@1", "churn@2", "--metric", "rmse"], "error: --metric rmse: a regression metric, but these are"),
        (["churn@1", "churn@2", "--features", "monthly_spend,age"], "error: churn@1 takes 4 input columns but"),
        (["churn@1", "churn@2", "--features", "monthly_spend,plan,age,region"], "error: "),
    ],
)
def test_bad_options_are_one_line_exit_2(
    example_repo: Path, held_out: Path, compare_cli: Callable[..., Result], args: list[str], message: str
) -> None:
    result = compare_cli(*args, "--data", str(held_out), "--label", "churned", "--repo", str(example_repo))
    assert result.code == 2
    assert len(result.lines) == 1 and result.lines[0].startswith(message), result.lines


def test_unreadable_data_is_one_line_exit_2(
    example_repo: Path, tmp_path: Path, compare_cli: Callable[..., Result]
) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    for data, message in [
        (tmp_path / "missing.csv", "no such file"),
        (broken, "cannot read as Parquet"),
        (tmp_path / "data.xlsx", "unsupported file type; use a .csv or .parquet file"),
    ]:
        base = ["churn@1", "churn@2", "--data", str(data), "--label", "churned", "--repo", str(example_repo)]
        result = compare_cli(*base)
        assert result.code == 2, result
        assert len(result.lines) == 1 and message in result.lines[0], result.lines


def test_missing_values_and_text_labels_are_refused(example_repo: Path, held_out: Path) -> None:
    table = pd.read_csv(held_out)
    table.loc[[3, 7], "age"] = None
    gaps = held_out.with_name("gaps.csv")
    table.to_csv(gaps, index=False)
    with pytest.raises(InputError, match=r"2 row\(s\) have missing values in age; drop or fill them first"):
        run_request(example_repo, "churn@1", "churn@2", gaps, "churned", features=tuple(FEATURES))
    with pytest.raises(InputError, match=r"label column 'plan' holds text .* needs 0/1"):
        run_request(example_repo, "churn@1", "churn@2", held_out, "plan", features=tuple(FEATURES))
    with pytest.raises(InputError, match="label 'support_tickets' is not binary 0/1"):
        other_columns = ("monthly_spend", "tenure_months", "age", "lifetime_value")
        run_request(example_repo, "churn@1", "churn@2", held_out, "support_tickets", features=other_columns)


def test_skops_types_no_policy_trusts_are_refused(
    example_repo: Path, held_out: Path, compare_cli: Callable[..., Result]
) -> None:
    policy = example_repo / "policies/artifacts.yaml"
    policy.write_text(re.sub(r"\n\s*trustedSkopsTypes:.*", "", policy.read_text(encoding="utf-8")), encoding="utf-8")
    result = compare_cli(
        "ltv@1", "ltv@2", "--data", str(held_out), "--label", "lifetime_value", "--features", FEATURES_OPTION,
        "--repo", str(example_repo),
    )  # fmt: skip
    assert result.code == 1
    assert result.lines == [
        "error: ltv@2: the skops file needs types that are not trusted: sklearn.tree._tree.Tree; "
        "if you trust them, list them in spec.trustedSkopsTypes of an ArtifactPolicy"
    ]


# --------------------------------------------------------------------------- loading


def test_pickle_is_refused_by_manifest_and_by_bytes(tmp_path: Path) -> None:
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.")
    with pytest.raises(UnsafeFormatRefused, match="pickle artifacts run code from the file when loaded"):
        load_scorer(pickled, ArtifactFormat.PICKLE, Task.CLASSIFICATION, ref="m@1")
    with pytest.raises(UnsafeFormatRefused, match="the manifest says onnx but the file is pickle"):
        load_scorer(pickled, ArtifactFormat.ONNX, Task.CLASSIFICATION, ref="m@1")


def test_scorer_uses_the_signature_dtype_and_positive_class(tmp_path: Path) -> None:
    model = tmp_path / "churn-2.onnx"
    shutil.copy(SEED / "churn-2.onnx", model)
    scorer = load_scorer(model, ArtifactFormat.ONNX, Task.CLASSIFICATION, ref="churn@2")
    assert scorer.input_dtype is np.float32 and scorer.input_width == 4
    rows = pd.read_csv(SEED / "customers-v1.csv").iloc[HELD_OUT][FEATURES].to_numpy()
    labels, proba = onnx_predictions("churn-2.onnx", rows)
    np.testing.assert_array_equal(scorer.predict(rows), labels)
    np.testing.assert_allclose(scorer.predict_proba(rows), proba)
    with pytest.raises(ModelLoadError, match="takes 4 feature columns, was given 3"):
        scorer.predict(rows[:, :3])
    with pytest.raises(ModelLoadError, match="the manifest says skops but the file is onnx"):
        load_scorer(model, ArtifactFormat.SKOPS, Task.CLASSIFICATION, ref="churn@2")


def test_unknown_version_in_the_service(example_repo: Path, held_out: Path) -> None:
    with pytest.raises(UsageError, match="no model 'nope' is registered"):
        run_request(example_repo, "nope@1", "churn@2", held_out, "churned")


def test_signature_dtype_that_the_onnx_graph_refuses_is_reported(tmp_path: Path) -> None:
    from mlops.manifests.common import Signature, TensorSpec

    model = tmp_path / "churn-1.onnx"
    shutil.copy(SEED / "churn-1.onnx", model)
    wrong = Signature(inputs=[TensorSpec(name="features", dtype="float64", shape=[-1, 4])])
    with pytest.raises(ModelLoadError, match="the signature says float64 but the ONNX graph takes float32"):
        load_scorer(model, ArtifactFormat.ONNX, Task.CLASSIFICATION, wrong, ref="churn@1")


@pytest.mark.parametrize("zipmap", [True, False])
def test_onnx_classifiers_with_and_without_zipmap(tmp_path: Path, zipmap: bool) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int)
    classifier = LogisticRegression().fit(x, y)
    path = tmp_path / "model.onnx"
    path.write_bytes(to_onnx(classifier, x[:1], options={id(classifier): {"zipmap": zipmap}}).SerializeToString())
    scorer = load_scorer(path, ArtifactFormat.ONNX, Task.CLASSIFICATION, ref="m@1")
    np.testing.assert_allclose(scorer.predict_proba(x), classifier.predict_proba(x)[:, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scorer.predict(x), classifier.predict(x))


def test_skops_classifier_gives_the_positive_class_probability(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 2))
    y = (x[:, 1] > 0).astype(int)
    classifier = LogisticRegression().fit(x, y)
    path = tmp_path / "model.skops"
    skops.io.dump(classifier, path)
    scorer = load_scorer(path, ArtifactFormat.SKOPS, Task.CLASSIFICATION, ref="m@1")
    assert scorer.input_width == 2 and scorer.input_dtype is np.float64
    np.testing.assert_allclose(scorer.predict_proba(x), classifier.predict_proba(x)[:, 1])
    np.testing.assert_array_equal(scorer.predict(x), classifier.predict(x))
