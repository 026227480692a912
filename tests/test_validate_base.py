"""`mlops validate --base REF`: what a change does, in words, judged in real git repositories."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, Result, git, make_example_repo

from mlops.manifests import ModelVersion
from mlops.validation.changes import describe_changes, immutability_problems
from mlops.validation.index import Entry, RepoIndex

Run = Callable[..., Result]


def edit(repo: Path, rel: str, old: str, new: str) -> None:
    path = repo / rel
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{rel}: expected exactly one {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def without_promotion_gates(repo: Path) -> None:
    """Drop the promotion policies on main: these tests are about what a change says, not whether it may pass.

    The gates themselves are tested in tests/test_promotion_gates.py.
    """
    for policy in ("promotion-staging", "promotion-production"):
        (repo / "policies" / f"{policy}.yaml").unlink()
    git(repo, "commit", "-q", "-am", "No promotion gates")


@pytest.fixture
def example_repo(example_repo: Path) -> Path:
    without_promotion_gates(example_repo)
    return example_repo


def commit_on_branch(repo: Path, branch: str, message: str = "change") -> None:
    """Commit every change of the working tree on a new branch (main keeps the example state)."""
    git(repo, "checkout", "-q", "-b", branch)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def changes_of(result: Result) -> list[str]:
    """The indented lines under "changes since ...:"."""
    lines = result.out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("changes since main ("))
    return [line.strip() for line in lines[start + 1 :] if line.startswith("  ")]


def validate_base(mlops: Run, repo: Path, *args: str) -> Result:
    return mlops("validate", "--repo", str(repo), "--base", "main", *args)


def store_artifact(mlops: Run, repo: Path, path: Path, content: bytes) -> tuple[str, int]:
    """Put a file into the repository's store through the CLI; its digest and size."""
    path.write_bytes(content)
    result = mlops("store", "add", str(path), "--repo", str(repo))
    assert result.code == 0, result.err
    digest, size, _ = result.out.split()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    return digest, int(size)


_CHURN_IN_PRODUCTION = "model: churn\n      version: 2"
_CHURN_IN_DEVELOPMENT = "model: churn\n      version: 3"
_LTV_IN_STAGING = "    - name: ltv\n      model: ltv\n      version: 2\n      routePrefix: /ltv\n"


def test_no_change(example_repo: Path, mlops: Run) -> None:
    result = validate_base(mlops, example_repo)
    assert result.code == 0
    sha = git(example_repo, "rev-parse", "main")[:8]
    assert result.lines == [f"no changes since main ({sha})", "ok: 19 manifests: 0 errors, 0 warnings"]


def test_promotion(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "environments/production.yaml", _CHURN_IN_PRODUCTION, "model: churn\n      version: 3")
    commit_on_branch(example_repo, "promote-churn-3")
    result = validate_base(mlops, example_repo)
    assert result.code == 0, result.out
    assert changes_of(result) == ["promote churn 2 -> 3 in production"]
    assert result.lines[-1] == "ok: 19 manifests: 0 errors, 0 warnings"


def test_rollback(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "environments/development.yaml", _CHURN_IN_DEVELOPMENT, "model: churn\n      version: 2")
    commit_on_branch(example_repo, "rollback")
    result = validate_base(mlops, example_repo)
    assert result.code == 0, result.out
    assert changes_of(result) == ["roll back churn 3 -> 2 in development"]


def test_uncommitted_change_is_judged_too(example_repo: Path, mlops: Run) -> None:
    """--base compares with the working tree: what the author is about to commit."""
    edit(example_repo, "environments/production.yaml", _CHURN_IN_PRODUCTION, "model: churn\n      version: 1")
    result = validate_base(mlops, example_repo)
    assert changes_of(result) == ["roll back churn 2 -> 1 in production"]


def test_new_version(example_repo: Path, mlops: Run, tmp_path: Path) -> None:
    digest, size = store_artifact(mlops, example_repo, tmp_path / "churn-4.onnx", b"churn v4: not a real model\n")
    text = (example_repo / "registry/models/churn/versions/3.yaml").read_text(encoding="utf-8")
    text = text.replace("version: 3", "version: 4")
    text = re.sub(r"digest: sha256:[0-9a-f]{64}", f"digest: {digest}", text)
    text = text.replace("size: 22492", f"size: {size}").replace("churn-3.onnx", "churn-4.onnx")
    (example_repo / "registry/models/churn/versions/4.yaml").write_text(text, encoding="utf-8")
    commit_on_branch(example_repo, "register-churn-4")
    result = validate_base(mlops, example_repo)
    assert result.code == 0, result.out
    assert changes_of(result) == ["new version churn@4"]
    assert result.lines[-1] == "ok: 20 manifests: 0 errors, 0 warnings"


def test_new_version_whose_artifact_is_not_in_the_store(example_repo: Path, mlops: Run) -> None:
    text = (example_repo / "registry/models/churn/versions/3.yaml").read_text(encoding="utf-8")
    text = text.replace("version: 3", "version: 4")
    text = re.sub(r"digest: sha256:[0-9a-f]{64}", "digest: sha256:" + "ab" * 32, text)
    (example_repo / "registry/models/churn/versions/4.yaml").write_text(text, encoding="utf-8")
    commit_on_branch(example_repo, "register-churn-4")
    result = validate_base(mlops, example_repo)
    assert result.code == 1
    assert result.lines[0].startswith(
        "registry/models/churn/versions/4.yaml:10:5: spec.artifact.digest: sha256:abab"
    ), result.lines[0]
    assert changes_of(result) == ["new version churn@4"]


def test_new_deployment(example_repo: Path, mlops: Run) -> None:
    edit(
        example_repo,
        "environments/staging.yaml",
        "  pipelines:\n",
        "    - name: churn-canary\n      model: churn\n      version: 3\n  pipelines:\n",
    )
    commit_on_branch(example_repo, "canary")
    result = validate_base(mlops, example_repo)
    assert result.code == 0, result.out
    assert changes_of(result) == ["deploy churn@3 to staging as churn-canary"]


def test_removed_deployment(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "environments/staging.yaml", _LTV_IN_STAGING, "")
    commit_on_branch(example_repo, "drop-ltv")
    result = validate_base(mlops, example_repo)
    assert result.code == 0, result.out
    assert changes_of(result) == ["remove deployment ltv (ltv@2) from staging"]


def test_policy_change(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "policies/access.yaml", "approvals: 1", "approvals: 2")
    commit_on_branch(example_repo, "stricter-staging")
    result = validate_base(mlops, example_repo)
    assert result.code == 0, result.out
    assert changes_of(result) == ["changed policy access"]


def test_several_changes_in_one_pull_request(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "environments/production.yaml", _CHURN_IN_PRODUCTION, "model: churn\n      version: 3")
    edit(example_repo, "environments/development.yaml", _CHURN_IN_DEVELOPMENT, "model: churn\n      version: 2")
    edit(example_repo, "environments/staging.yaml", _LTV_IN_STAGING, "")
    edit(example_repo, "policies/access.yaml", "approvals: 1", "approvals: 2")
    (example_repo / "registry/experiments/retention.yaml").unlink()
    commit_on_branch(example_repo, "many")
    result = validate_base(mlops, example_repo)
    assert result.code == 0, result.out
    assert changes_of(result) == [
        "changed policy access",  # changes are listed by kind, then key: AccessPolicy sorts first
        "roll back churn 3 -> 2 in development",
        "promote churn 2 -> 3 in production",
        "remove deployment ltv (ltv@2) from staging",
        "removed project retention",
    ]


# --- immutability of registered versions --------------------------------------------------------

_V1 = "registry/models/churn/versions/1.yaml"
_V1_DIGEST = "sha256:5be92f10dede2ff4b23cc1b7251cfef12ec5ad13c40e1fa5ab1dd007ca85d827"
_V2_DIGEST = "sha256:5e1ed69555c1083772102ab54480dfee2c7f56373d2b7b404b2f17f9b050c3dd"


def test_changing_the_artifact_digest_of_a_registered_version(example_repo: Path, mlops: Run) -> None:
    # The new digest is in the store (churn@2's artifact): only immutability is broken.
    edit(example_repo, _V1, _V1_DIGEST, _V2_DIGEST)
    commit_on_branch(example_repo, "swap-artifact")
    result = validate_base(mlops, example_repo)
    assert result.code == 1
    assert result.lines[0] == (
        f"{_V1}:10:5: spec.artifact.digest: churn@1 is registered and immutable: "
        f"was '{_V1_DIGEST}', now '{_V2_DIGEST}'; register a new version instead"
    )
    assert changes_of(result) == ["changed model version churn@1"]
    assert result.lines[-1] == "failed: 19 manifests: 1 error, 0 warnings"


def test_changing_metrics_of_a_registered_version(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, _V1, "auc: 0.7882", "auc: 0.91")
    edit(example_repo, _V1, "    log_loss: 0.4272\n", "")
    commit_on_branch(example_repo, "better-numbers")
    result = validate_base(mlops, example_repo)
    assert result.code == 1
    assert [line for line in result.lines if line.startswith(_V1)] == [
        # A removed metric points at the mapping that held it.
        f"{_V1}:14:3: spec.metrics.log_loss: churn@1 is registered and immutable: was 0.4272, now nothing; "
        "register a new version instead",
        f"{_V1}:15:5: spec.metrics.auc: churn@1 is registered and immutable: was 0.7882, now 0.91; "
        "register a new version instead",
    ]


def test_version_broken_in_head_is_not_described_as_removed(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, _V1, "auc: 0.7882", "auc: high")
    commit_on_branch(example_repo, "typo")
    result = validate_base(mlops, example_repo)
    assert result.code == 1
    assert result.lines[0].startswith(f"{_V1}:15:5: spec.metrics.auc: expected a number, got 'high'")
    sha = git(example_repo, "rev-parse", "main")[:8]
    assert f"no changes since main ({sha})" in result.lines
    assert "removed" not in result.out


def test_fixing_a_version_broken_in_base_is_not_a_new_version(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, _V1, "auc: 0.7882", "auc: high")
    git(example_repo, "commit", "-q", "-am", "broken on main")
    edit(example_repo, _V1, "auc: high", "auc: 0.7882")
    commit_on_branch(example_repo, "fix")
    result = validate_base(mlops, example_repo)
    assert result.code == 0, result.out
    assert changes_of(result) == ["changed model version churn@1"]


def test_unchanged_nan_metric_is_no_change(example_repo: Path, mlops: Run) -> None:
    """nan != nan, yet a version whose nan metric was not touched has not changed."""
    edit(example_repo, _V1, "log_loss: 0.4272", "log_loss: .nan")
    git(example_repo, "commit", "-q", "-am", "a metric that could not be computed")
    edit(example_repo, "policies/access.yaml", "approvals: 1", "approvals: 2")
    commit_on_branch(example_repo, "policy")
    result = validate_base(mlops, example_repo)
    assert result.code == 0, result.out
    assert changes_of(result) == ["changed policy access"]


def test_distinct_nan_objects_are_no_change_either() -> None:
    """The same check without the YAML reader (which happens to reuse one nan object): two parses, two nans."""
    data = yaml.safe_load((ROOT / _V1).read_text(encoding="utf-8"))

    def index() -> RepoIndex:
        copy = json.loads(json.dumps(data))
        copy["spec"]["metrics"]["log_loss"] = float("nan")
        return RepoIndex([Entry(_V1, ModelVersion.model_validate(copy))])

    base, head = index(), index()
    assert describe_changes(base, head) == []
    assert list(immutability_problems(base, head)) == []


def test_changing_description_and_status_is_allowed(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, _V1, "Logistic regression baseline on four", "Baseline (kept for comparison) on four")
    edit(example_repo, _V1, "  createdBy:", "  status: archived\n  createdBy:")
    commit_on_branch(example_repo, "archive-v1")
    result = validate_base(mlops, example_repo)
    assert result.code == 0, result.out
    assert changes_of(result) == ["archive model version churn@1"]


def test_dataset_quality_may_change_but_its_files_may_not(example_repo: Path, mlops: Run) -> None:
    rel = "registry/datasets/customers/versions/1.yaml"
    edit(example_repo, rel, "status: validated", "status: failed")
    edit(example_repo, rel, "rows: 2000", "rows: 1999")
    commit_on_branch(example_repo, "dataset")
    result = validate_base(mlops, example_repo)
    assert result.code == 1
    immutable = [line for line in result.lines if "immutable" in line]
    assert immutable == [
        f"{rel}:19:3: spec.rows: customers@1 is registered and immutable: was 2000, now 1999; "
        "register a new version instead"
    ]


# --- refs and repositories that cannot be read --------------------------------------------------


def test_unknown_ref_is_exit_2_and_one_line(example_repo: Path, mlops: Run) -> None:
    result = mlops("validate", "--repo", str(example_repo), "--base", "origin/nope")
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == [
        f"error: unknown revision 'origin/nope' in {example_repo} (fetch it first, e.g. `git fetch origin main`)"
    ]


def test_base_in_folder_that_is_not_a_git_repository(tmp_path: Path, mlops: Run) -> None:
    repo = make_example_repo(tmp_path / "state")
    shutil.rmtree(repo / ".git")
    result = mlops("validate", "--repo", str(repo), "--base", "main")
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == [
        f"error: {repo}: not a git repository (needed for --base; run `git init` or drop --base)"
    ]
    # Without --base the same folder validates.
    assert mlops("validate", "--repo", str(repo)).code == 0


def test_base_may_be_a_commit_sha(example_repo: Path, mlops: Run) -> None:
    sha = git(example_repo, "rev-parse", "HEAD")
    edit(example_repo, "environments/production.yaml", _CHURN_IN_PRODUCTION, "model: churn\n      version: 3")
    commit_on_branch(example_repo, "promote")
    result = mlops("validate", "--repo", str(example_repo), "--base", sha[:12])
    assert result.code == 0
    assert f"changes since {sha[:12]} ({sha[:8]}):" in result.lines
    assert "  promote churn 2 -> 3 in production" in result.out.splitlines()


# --- JSON ---------------------------------------------------------------------------------------


def test_json_lists_changes_with_their_fields(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, "environments/production.yaml", _CHURN_IN_PRODUCTION, "model: churn\n      version: 3")
    edit(example_repo, "environments/development.yaml", _CHURN_IN_DEVELOPMENT, "model: churn\n      version: 2")
    edit(example_repo, "environments/staging.yaml", _LTV_IN_STAGING, "")
    edit(
        example_repo,
        "environments/staging.yaml",
        "  pipelines:\n",
        "    - name: churn-canary\n      model: churn\n      version: 3\n  pipelines:\n",
    )
    commit_on_branch(example_repo, "json")
    result = validate_base(mlops, example_repo, "--format", "json")
    assert result.code == 0
    data = json.loads(result.out)
    sha = git(example_repo, "rev-parse", "main")[:8]
    assert data["ok"] is True
    assert data["exitCode"] == 0
    assert data["base"] == f"main ({sha})"
    picked = [
        {k: c[k] for k in ("action", "environment", "model", "from_version", "to_version", "text")}
        for c in data["changes"]
    ]
    assert picked == [
        {
            # The pointer moved down: reads as a rollback, judged as a promotion (gates honour real rollbacks).
            "action": "promote",
            "environment": "development",
            "model": "churn",
            "from_version": 3,
            "to_version": 2,
            "text": "roll back churn 3 -> 2 in development",
        },
        {
            "action": "promote",
            "environment": "production",
            "model": "churn",
            "from_version": 2,
            "to_version": 3,
            "text": "promote churn 2 -> 3 in production",
        },
        {
            "action": "deploy",
            "environment": "staging",
            "model": "churn",
            "from_version": None,
            "to_version": 3,
            "text": "deploy churn@3 to staging as churn-canary",
        },
        {
            "action": "undeploy",
            "environment": "staging",
            "model": "ltv",
            "from_version": 2,
            "to_version": None,
            "text": "remove deployment ltv (ltv@2) from staging",
        },
    ]
    assert all(c["kind"] == "Environment" and c["path"].startswith("environments/") for c in data["changes"])


def test_json_reports_immutability_problem_with_position(example_repo: Path, mlops: Run) -> None:
    edit(example_repo, _V1, _V1_DIGEST, _V2_DIGEST)
    commit_on_branch(example_repo, "swap")
    result = validate_base(mlops, example_repo, "--format", "json")
    assert result.code == 1
    data = json.loads(result.out)
    assert data["ok"] is False
    assert data["exitCode"] == 1
    assert data["problems"] == [
        {
            "path": _V1,
            "line": 10,
            "col": 5,
            "field": "spec.artifact.digest",
            "severity": "error",
            "category": "policy",
            "code": "immutable-version",
            "message": f"churn@1 is registered and immutable: was '{_V1_DIGEST}', now '{_V2_DIGEST}'; "
            "register a new version instead",
        }
    ]
    assert [c["action"] for c in data["changes"]] == ["modify"]


@pytest.mark.parametrize("fmt", ["text", "github"])
def test_changes_also_in_other_formats(example_repo: Path, mlops: Run, fmt: str) -> None:
    edit(example_repo, "environments/production.yaml", _CHURN_IN_PRODUCTION, "model: churn\n      version: 3")
    commit_on_branch(example_repo, "promote")
    result = validate_base(mlops, example_repo, "--format", fmt)
    assert result.code == 0
    if fmt == "text":
        assert "  promote churn 2 -> 3 in production" in result.out.splitlines()
    else:
        # Annotations only for problems; the change itself goes to the step summary (see test_reports).
        assert result.out.splitlines()[-1] == "ok: 19 manifests: 0 errors, 0 warnings"
