"""Cross-file rules of `mlops validate` on a real copy of the example repository.

Each case breaks one rule in a real temporary git repository, runs the CLI through its
error boundary and checks the exact ``path:line:col: field: message`` line and the exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from conftest import Result

from mlops.manifests import Model
from mlops.manifests.base import Reference
from mlops.validation.index import Entry, RepoIndex
from mlops.validation.references import check_references

Run = Callable[..., Result]


def edit(repo: Path, rel: str, old: str, new: str) -> None:
    """Replace one exact occurrence of ``old`` (the test fails if the example no longer has it)."""
    path = repo / rel
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{rel}: expected exactly one {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def validate(mlops: Run, repo: Path, *args: str) -> Result:
    return mlops("validate", "--repo", str(repo), *args)


def problem_lines(result: Result) -> list[str]:
    """Every problem line (they all start with a repository path and a position)."""
    return [line for line in result.out.splitlines() if line.split("/", 1)[0] in _TOPS]


_TOPS = {"registry", "pipelines", "environments", "policies"}


def assert_only(result: Result, *expected: str) -> None:
    """The run reports exactly these problems (each given as the start of its line), in this order."""
    lines = problem_lines(result)
    assert len(lines) == len(expected), "\n".join(lines)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), f"{line!r} does not start with {start!r}"


_CHURN_IN_PRODUCTION = "model: churn\n      version: 2"


# --- references ---------------------------------------------------------------------------------


def test_environment_pointing_at_missing_version_lists_existing_versions(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "environments/production.yaml", _CHURN_IN_PRODUCTION, _CHURN_IN_PRODUCTION.replace("2", "9"))
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "environments/production.yaml:13:7: spec.deployments[0].version: "
        "model version 'churn@9' does not exist; churn has versions 1, 2, 3",
    )
    assert result.lines[-1] == "failed: 21 manifests: 1 error, 0 warnings"


def test_model_lineage_naming_missing_dataset_version(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/models/churn/versions/3.yaml", "dataset://customers@1", "dataset://customers@7")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "registry/models/churn/versions/3.yaml:36:16: spec.lineage.datasets[0]: "
        "dataset version 'customers@7' does not exist; customers has versions 1",
    )


def test_pipeline_input_naming_missing_dataset_version(example_repo: Path, mlops: Run) -> None:
    edit(
        example_repo,
        "pipelines/train-churn/pipeline.yaml",
        "data: dataset://customers@1",
        "data: dataset://customers@5",
    )
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "pipelines/train-churn/pipeline.yaml:16:9: spec.steps[0].inputs.data: "
        "dataset version 'customers@5' does not exist; customers has versions 1",
    )


def test_pipeline_input_with_malformed_dataset_address(example_repo: Path, mlops: Run) -> None:
    # Pipeline.references() cannot parse it and skips it; the pipeline check must report it.
    edit(
        example_repo, "pipelines/train-churn/pipeline.yaml", "data: dataset://customers@1", "data: dataset://customers"
    )
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "pipelines/train-churn/pipeline.yaml:16:9: spec.steps[0].inputs.data: invalid address 'dataset://customers'",
    )


def test_reference_to_broken_file_is_not_reported_again_as_dangling(example_repo: Path, mlops: Run) -> None:
    # churn@2 exists but breaks its schema; environments point at it, and must not add "does not exist".
    edit(example_repo, "registry/models/churn/versions/2.yaml", "auc: 0.7913", "auc: high")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "registry/models/churn/versions/2.yaml:15:5: spec.metrics.auc: expected a number, got 'high' (string)",
    )
    assert "does not exist" not in result.out


def test_reference_to_unparsable_file_is_not_reported_again(example_repo: Path, mlops: Run) -> None:
    (example_repo / "registry/models/churn/model.yaml").write_text(
        "apiVersion: mlops/v1\nkind: Model\nmetadata:\n  name: churn\n spec: [\n", encoding="utf-8"
    )
    result = validate(mlops, example_repo)
    assert result.code == 2  # unreadable input
    lines = problem_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("registry/models/churn/model.yaml:5:2: invalid YAML")
    assert "does not exist" not in result.out


def test_missing_file_is_reported_at_every_pointer(example_repo: Path, mlops: Run) -> None:
    (example_repo / "registry/models/churn/versions/3.yaml").unlink()
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "environments/development.yaml:13:7: spec.deployments[0].version: "
        "model version 'churn@3' does not exist; churn has versions 1, 2",
    )


def test_optional_reference_may_dangle() -> None:
    """A Reference marked required=False (an on-purpose dangling pointer) is not an error; a required one is."""

    class Pointing(Model):
        def references(self) -> Iterator[Reference]:
            yield Reference("ModelVersion", "ghost@1", ("spec",), required=False)
            yield Reference("ModelVersion", "ghost@2", ("metadata", "name"))

    manifest = Pointing.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "Model",
            "metadata": {"name": "pointing"},
            "spec": {"owner": "me", "task": "classification", "flavor": "sklearn"},
        }
    )
    index = RepoIndex([Entry("registry/models/pointing/model.yaml", manifest)])
    problems = list(check_references(index))
    assert [(p.field, p.message) for p in problems] == [
        (("metadata", "name"), "model version 'ghost@2' does not exist; there is no model 'ghost'")
    ]


# --- pipelines ----------------------------------------------------------------------------------

_PIPELINE = "pipelines/train-churn/pipeline.yaml"
_RESOURCES = "      resources: {cpus: 1}\n"  # in step 'train', line 27


def test_pipeline_cycle_shows_the_cycle_path(example_repo: Path, mlops: Run) -> None:
    # evaluate reads train's model; making train need evaluate closes the loop.
    edit(example_repo, _PIPELINE, _RESOURCES, "      needs: [evaluate]\n" + _RESOURCES)
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "pipelines/train-churn/pipeline.yaml:28:7: spec.steps[1].needs: "
        "circular dependency: train -> evaluate -> train",
    )


def test_pipeline_step_needing_unknown_step(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, _PIPELINE, _RESOURCES, "      needs: [prepare, polish]\n" + _RESOURCES)
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "pipelines/train-churn/pipeline.yaml:28:24: spec.steps[1].needs[1]: "
        "needs unknown step 'polish'; steps are prepare, train, evaluate",
    )


def test_pipeline_input_naming_output_nobody_produces(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, _PIPELINE, "test: steps.prepare.outputs.test", "test: steps.prepare.outputs.holdout")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "pipelines/train-churn/pipeline.yaml:35:9: spec.steps[2].inputs.test: "
        "step 'prepare' has no output 'holdout' (it produces train, test)",
    )


def test_pipeline_input_naming_unknown_parameter(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, _PIPELINE, "max_depth: params.max_depth", "max_depth: params.depth")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "pipelines/train-churn/pipeline.yaml:24:9: spec.steps[1].inputs.max_depth: "
        "'params.depth' is not a pipeline parameter (parameters: max_depth, n_estimators)",
    )


# --- artifact formats ---------------------------------------------------------------------------

_PICKLE_EXCEPTION = """  exceptions:
    - model: churn
      formats: [pickle]
      reason: "legacy baseline, kept for comparison (ML-12)"
"""


def test_pickle_without_exception_is_an_error(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/models/churn/versions/1.yaml", "format: onnx", "format: pickle")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "registry/models/churn/versions/1.yaml:12:5: spec.artifact.format: format 'pickle' is not allowed: "
        "it can run code when loaded. Use one of onnx, skops, mlflow, safetensors, npz, "
        "or add an exception for model 'churn' to an ArtifactPolicy",
    )


def test_pickle_with_exception_is_a_counted_warning(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/models/churn/versions/1.yaml", "format: onnx", "format: pickle")
    edit(example_repo, "policies/artifacts.yaml", "  exceptions: []\n", _PICKLE_EXCEPTION)
    result = validate(mlops, example_repo)
    assert result.code == 0, result.out
    assert_only(
        result,
        "registry/models/churn/versions/1.yaml:12:5: warning: spec.artifact.format: churn@1 uses pickle under an "
        "exception in policies/artifacts.yaml (legacy baseline, kept for comparison (ML-12))",
    )
    assert result.lines[-1] == "ok: 21 manifests: 0 errors, 1 warning"


def test_exception_for_another_model_does_not_cover(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/models/churn/versions/1.yaml", "format: onnx", "format: pickle")
    edit(example_repo, "policies/artifacts.yaml", "  exceptions: []\n", _PICKLE_EXCEPTION.replace("churn", "ltv"))
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(result, "registry/models/churn/versions/1.yaml:12:5: spec.artifact.format: format 'pickle' is not")


def test_pickle_allowed_for_every_model_is_still_reported(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/models/churn/versions/1.yaml", "format: onnx", "format: pickle")
    edit(example_repo, "policies/artifacts.yaml", "safetensors, npz]", "safetensors, npz, pickle]")
    result = validate(mlops, example_repo)
    assert result.code == 0
    assert_only(
        result,
        "registry/models/churn/versions/1.yaml:12:5: warning: spec.artifact.format: churn@1 uses pickle, which can "
        "run code when loaded; policies/artifacts.yaml allows it for every model",
    )
    assert result.lines[-1] == "ok: 21 manifests: 0 errors, 1 warning"


# --- promotion policies and risk ----------------------------------------------------------------


def test_metric_below_promotion_floor_in_production(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "policies/promotion-production.yaml", "{metric: auc, min: 0.78,", "{metric: auc, min: 0.8,")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "environments/production.yaml:13:7: spec.deployments[0].version: churn@2 in production: "
        "auc = 0.7913 is below the floor 0.8 (required by policies/promotion-production.yaml)",
    )


def test_nan_metric_does_not_pass_a_floor(example_repo: Path, mlops: Run) -> None:
    # YAML's .nan is a float; NaN compares false with everything, so a plain `value < min` lets it through.
    edit(example_repo, "registry/models/churn/versions/2.yaml", "auc: 0.7913", "auc: .nan")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "environments/production.yaml:13:7: spec.deployments[0].version: churn@2 in production: "
        "auc is not a number (nan), and a floor requires a value (required by policies/promotion-production.yaml)",
        "environments/staging.yaml:13:7: spec.deployments[0].version: churn@2 in staging: "
        "auc is not a number (nan), and a floor requires a value (required by policies/promotion-staging.yaml)",
    )


def test_metric_floor_missing_metric(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "policies/promotion-staging.yaml", "{metric: r2, min: 0.7,", "{metric: mape, max: 0.2,")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "environments/staging.yaml:18:7: spec.deployments[1].version: ltv@2 in staging: metric 'mape' is not "
        "recorded, and a floor requires it (required by policies/promotion-staging.yaml)",
    )


def test_model_risk_tier_above_policy_ceiling(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "policies/promotion-production.yaml", "maxRiskTier: high", "maxRiskTier: medium")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "environments/production.yaml:26:7: spec.deployments[1].version: model ltv is risk tier high; "
        "production accepts at most medium (required by policies/promotion-production.yaml)",
    )


_MODEL_CARD = (
    "  annotations:\n"
    "    # High-tier models must link their model card (policies/risk.yaml).\n"
    "    mlops.dev/model-card: registry/models/ltv/MODEL_CARD.md\n"
)


def test_high_tier_model_without_model_card(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/models/ltv/model.yaml", _MODEL_CARD, "")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "registry/models/ltv/model.yaml:4:1: metadata.annotations: risk tier high requires the annotation "
        "'mlops.dev/model-card' (required by policies/risk.yaml)",
    )


def test_high_tier_model_with_empty_model_card(example_repo: Path, mlops: Run) -> None:
    # A blank link documents nothing: it counts as missing.
    card = "model-card: registry/models/ltv/MODEL_CARD.md"
    edit(example_repo, "registry/models/ltv/model.yaml", card, "model-card: ' '")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(result, "registry/models/ltv/model.yaml:8:3: metadata.annotations: risk tier high requires")


def test_critical_model_beyond_its_max_environment(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/models/ltv/model.yaml", "riskTier: high", "riskTier: critical")
    edit(
        example_repo,
        "registry/models/ltv/model.yaml",
        "MODEL_CARD.md\n",
        "MODEL_CARD.md\n    mlops.dev/risk-assessment: registry/models/ltv/MODEL_CARD.md\n",
    )
    edit(example_repo, "policies/promotion-production.yaml", "maxRiskTier: high", "maxRiskTier: critical")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "environments/production.yaml:25:7: spec.deployments[1].model: model ltv is risk tier critical, "
        "allowed up to staging (required by policies/risk.yaml)",
    )


# --- what environments may point at -------------------------------------------------------------


def test_archived_version_deployed(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/models/churn/versions/2.yaml", "  createdBy:", "  status: archived\n  createdBy:")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert_only(
        result,
        "environments/production.yaml:13:7: spec.deployments[0].version: churn@2 is archived and cannot be deployed",
        "environments/staging.yaml:13:7: spec.deployments[0].version: churn@2 is archived and cannot be deployed",
    )


def test_archived_version_not_deployed_is_fine(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/models/churn/versions/1.yaml", "  createdBy:", "  status: archived\n  createdBy:")
    result = validate(mlops, example_repo)
    assert result.code == 0, result.out


def test_quarantined_dataset_blocks_staging_but_not_development(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/datasets/customers/versions/1.yaml", "status: validated", "status: quarantined")
    result = validate(mlops, example_repo)
    assert result.code == 1
    beyond = "was trained on dataset://customers@1, which is quarantined; it cannot be deployed beyond development"
    assert_only(
        result,
        f"environments/production.yaml:13:7: spec.deployments[0].version: churn@2 {beyond}",
        f"environments/production.yaml:26:7: spec.deployments[1].version: ltv@1 {beyond}",
        f"environments/staging.yaml:13:7: spec.deployments[0].version: churn@2 {beyond}",
        f"environments/staging.yaml:18:7: spec.deployments[1].version: ltv@2 {beyond}",
        "pipelines/train-churn/pipeline.yaml:16:9: spec.steps[0].inputs.data: dataset://customers@1 is quarantined; "
        "a pipeline cannot read it: point at a validated version",
    )
    # development deploys churn@3 and ltv@2, trained on the same dataset: allowed there.
    assert not any(line.startswith("environments/development.yaml") for line in result.lines)


def test_failed_dataset_blocks_staging(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "registry/datasets/customers/versions/1.yaml", "status: validated", "status: failed")
    result = validate(mlops, example_repo)
    assert result.code == 1
    lines = problem_lines(result)
    assert [line.split(": ", 1)[0] for line in lines] == [
        "environments/production.yaml:13:7",
        "environments/production.yaml:26:7",
        "environments/staging.yaml:13:7",
        "environments/staging.yaml:18:7",
        "pipelines/train-churn/pipeline.yaml:16:9",
    ]
    assert all("which is failed; it cannot be deployed beyond development" in line for line in lines[:4])
    assert lines[4].endswith("dataset://customers@1 is failed; a pipeline cannot read it: point at a validated version")


def test_all_problems_in_one_run(example_repo: Path, mlops: Run) -> None:
    """Several broken rules in different files: every one is reported, sorted by path and position."""
    edit(example_repo, "environments/production.yaml", _CHURN_IN_PRODUCTION, _CHURN_IN_PRODUCTION.replace("2", "9"))
    edit(example_repo, _PIPELINE, "max_depth: params.max_depth", "max_depth: params.depth")
    edit(example_repo, "registry/models/churn/versions/1.yaml", "format: onnx", "format: pickle")
    result = validate(mlops, example_repo)
    assert result.code == 1
    assert [line.split(": ", 1)[0] for line in problem_lines(result)] == [
        "environments/production.yaml:13:7",
        "pipelines/train-churn/pipeline.yaml:24:9",
        "registry/models/churn/versions/1.yaml:12:5",
    ]
    assert result.lines[-1] == "failed: 21 manifests: 3 errors, 0 warnings"
