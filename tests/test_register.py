"""`mlops model register`: formats from the bytes, bad input refused with the repository and store unchanged,
storage faults retried, commits pushed to a real remote and pull requests opened through a local GitHub API."""

from __future__ import annotations

import json
import pickle
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import numpy as np
import pytest
import yaml
from conftest import SEED, Result, git, run_mlops
from s3_server import FaultyProxy, moto_s3_bucket

Tree = dict[str, bytes]


def tree(root: Path) -> Tree:
    """Every file under root (git refs and the artifact store included, the parse cache not: it is no one's
    state), to prove a failed command changed nothing."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "objects" not in p.parts and p.name != "index" and "cache" not in p.parts
    }


def register(repo: Path, path: Path | str, *extra: str) -> Result:
    return run_mlops("model", "register", str(path), "--name", "churn", "--repo", str(repo), *extra)


def assert_nothing_changed(repo: Path, before: Tree, result: Result) -> None:
    assert "Traceback" not in result.out + result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert tree(repo) == before
    assert git(repo, "status", "--porcelain") == ""


def test_registers_onnx_with_its_signature_and_metadata(example_repo: Path) -> None:
    result = register(example_repo, SEED / "churn-3.onnx", "--description", "same bytes as v3", "--tag", "team=growth")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == (
        "registered churn@4 (onnx, 22,492 bytes) as registry/models/churn/versions/4.yaml"
    )
    data = yaml.safe_load((example_repo / "registry/models/churn/versions/4.yaml").read_text())
    spec = data["spec"]
    assert spec["artifact"]["digest"] == "sha256:d7dabec5b366ac9015289256d35d3284e79205ef4a6fd722277cf98220f56e37"
    assert spec["artifact"]["metadata"]["estimator"] == "GradientBoostingClassifier"
    assert spec["signature"]["inputs"] == [{"name": "features", "dtype": "float32", "shape": [-1, 4]}]
    assert spec["tags"] == {"team": "growth"}
    assert git(example_repo, "log", "-1", "--format=%s") == "Register churn@4"
    assert run_mlops("validate", "--repo", str(example_repo)).code == 0


def test_registers_skops_with_its_hyperparameters(example_repo: Path) -> None:
    result = run_mlops("model", "register", str(SEED / "ltv-2.skops"), "--name", "ltv", "--repo", str(example_repo))
    assert result.code == 0, result.err
    spec = yaml.safe_load((example_repo / "registry/models/ltv/versions/3.yaml").read_text())["spec"]
    assert spec["artifact"]["format"] == "skops"
    assert spec["params"]["n_estimators"] == 50 and spec["params"]["max_depth"] == 3


def test_user_metrics_and_params_win_over_what_the_artifact_says(example_repo: Path, tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"auc": 0.91}))
    (tmp_path / "params.yaml").write_text("max_depth: 7\n")
    skops_result = run_mlops(
        "model",
        "register",
        str(SEED / "ltv-2.skops"),
        "--name",
        "ltv",
        "--repo",
        str(example_repo),
        "--metrics",
        str(tmp_path / "metrics.json"),
        "--params",
        str(tmp_path / "params.yaml"),
    )
    assert skops_result.code == 0, skops_result.err
    spec = yaml.safe_load((example_repo / "registry/models/ltv/versions/3.yaml").read_text())["spec"]
    assert spec["metrics"] == {"auc": 0.91}
    assert spec["params"]["max_depth"] == 7 and spec["params"]["n_estimators"] == 50


def test_registers_an_mlflow_model_directory(example_repo: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "mlruns" / "0" / "abc123" / "artifacts" / "model"
    model_dir.mkdir(parents=True)
    shutil.copy(SEED / "churn-2.onnx", model_dir / "model.onnx")
    (model_dir / "MLmodel").write_text(
        "artifact_path: model\nflavors:\n  onnx: {onnx_version: 1.16.0, data: model.onnx}\n"
        "  python_function: {loader_module: mlflow.onnx}\nrun_id: abc123\n"
        'signature:\n  inputs: \'[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]},'
        ' "name": "features"}]\'\n  outputs: null\n'
    )
    run_dir = model_dir.parent.parent
    (run_dir / "meta.yaml").write_text("run_id: abc123\n")
    (run_dir / "metrics").mkdir()
    (run_dir / "metrics" / "auc").write_text("1700000000000 0.79 0\n1700000001000 0.81 1\n")
    (run_dir / "params").mkdir()
    (run_dir / "params" / "max_depth").write_text("5")
    result = register(example_repo, model_dir)
    assert result.code == 0, result.err
    spec = yaml.safe_load((example_repo / "registry/models/churn/versions/4.yaml").read_text())["spec"]
    assert spec["artifact"]["format"] == "mlflow"
    assert spec["lineage"]["run"] == "abc123"
    assert spec["metrics"] == {"auc": 0.81} and spec["params"] == {"max_depth": "5"}
    assert spec["signature"]["inputs"] == [{"name": "features", "dtype": "float32", "shape": [-1, 4]}]
    # The directory is stored as one deterministic archive: registering it again gives the same digest.
    again = register(example_repo, model_dir, "--no-commit")
    assert again.code == 0
    assert spec["artifact"]["digest"] in again.out


def test_refuses_pickle_with_the_supported_formats(example_repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"  # the extension lies; the bytes decide
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    before = tree(example_repo)
    result = register(example_repo, path)
    assert result.code == 2
    assert result.err.startswith(f"error: {path}: a pickle file; loading it runs code from the file, so it is refused.")
    assert "Supported: ONNX (.onnx), scikit-learn saved with skops (.skops)" in result.err
    assert_nothing_changed(example_repo, before, result)
    assert not (example_repo / ".mlops" / "store" / "tmp").exists() or not any(
        (example_repo / ".mlops" / "store" / "tmp").iterdir()
    )


def test_pickle_allowed_by_a_policy_exception_is_registered_and_counted(example_repo: Path, tmp_path: Path) -> None:
    policy = example_repo / "policies" / "artifacts.yaml"
    policy.write_text(
        policy.read_text().replace(
            "exceptions: []", "exceptions:\n    - {model: churn, formats: [pickle], reason: legacy batch scorer}"
        )
    )
    git(example_repo, "commit", "-qam", "Allow pickle for churn")
    path = tmp_path / "legacy.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    result = register(example_repo, path)
    assert result.code == 0, result.err
    assert "note: pickle allowed for churn by policy artifacts: legacy batch scorer" in result.out
    validated = run_mlops("validate", "--repo", str(example_repo))
    assert validated.code == 0
    assert "warning: spec.artifact.format: churn@4 uses pickle under an exception" in validated.out
    assert validated.lines[-1].endswith("0 errors, 1 warning")


def test_refuses_a_truncated_onnx_file(example_repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.onnx"
    path.write_bytes((SEED / "churn-3.onnx").read_bytes()[:5000])
    before = tree(example_repo)
    result = register(example_repo, path)
    assert result.code == 2
    assert result.err.startswith(f"error: {path}: not a valid ONNX model (truncated or damaged")
    assert_nothing_changed(example_repo, before, result)


def test_refuses_a_directory_that_is_not_a_model(example_repo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "outputs"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    before = tree(example_repo)
    result = register(example_repo, folder)
    assert result.code == 2
    assert result.err.startswith(f"error: {folder}: a directory that is not a model (no MLmodel file); supported:")
    assert_nothing_changed(example_repo, before, result)


def test_refuses_random_bytes(example_repo: Path, tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    before = tree(example_repo)
    result = register(example_repo, path)
    assert result.code == 2 and "unrecognised model format" in result.err
    assert_nothing_changed(example_repo, before, result)


def test_duplicate_version_suggests_the_next_free_one(example_repo: Path) -> None:
    before = tree(example_repo)
    result = register(example_repo, SEED / "churn-3.onnx", "--version", "2")
    assert result.code == 1
    assert result.err == (
        "error: churn@2 is already registered; the next free version is 4 (use --version 4 or --version auto)\n"
    )
    assert_nothing_changed(example_repo, before, result)


def test_skops_types_must_be_trusted_by_policy_not_by_the_file(example_repo: Path) -> None:
    policy = example_repo / "policies" / "artifacts.yaml"
    policy.write_text(
        policy.read_text().replace("trustedSkopsTypes: [sklearn.tree._tree.Tree]", "trustedSkopsTypes: []")
    )
    git(example_repo, "commit", "-qam", "Trust nothing extra")
    before = tree(example_repo)
    result = run_mlops("model", "register", str(SEED / "ltv-2.skops"), "--name", "ltv", "--repo", str(example_repo))
    assert result.code == 2
    assert "needs types no policy trusts: sklearn.tree._tree.Tree" in result.err
    assert_nothing_changed(example_repo, before, result)


def test_new_model_needs_a_task(example_repo: Path) -> None:
    before = tree(example_repo)
    result = run_mlops("model", "register", str(SEED / "churn-1.onnx"), "--name", "fraud", "--repo", str(example_repo))
    assert result.code == 2 and "model 'fraud' does not exist yet; pass --task" in result.err
    assert_nothing_changed(example_repo, before, result)
    created = run_mlops(
        "model",
        "register",
        str(SEED / "churn-1.onnx"),
        "--name",
        "fraud",
        "--task",
        "classification",
        "--repo",
        str(example_repo),
    )
    assert created.code == 0, created.err
    assert (example_repo / "registry/models/fraud/model.yaml").is_file()
    assert run_mlops("validate", "--repo", str(example_repo)).code == 0


@pytest.mark.parametrize("name", ["../evil", "Churn", "has space", "a/b"])
def test_names_that_could_escape_their_folder_are_refused(example_repo: Path, name: str) -> None:
    before = tree(example_repo)
    result = run_mlops("model", "register", str(SEED / "churn-1.onnx"), "--name", name, "--repo", str(example_repo))
    assert result.code == 2 and f"invalid name {name!r}" in result.err
    assert_nothing_changed(example_repo, before, result)


def test_no_commit_and_branch(example_repo: Path) -> None:
    written = register(example_repo, SEED / "churn-1.onnx", "--no-commit")
    assert written.code == 0 and "written, not committed" in written.out
    assert git(example_repo, "status", "--porcelain") == "?? registry/models/churn/versions/4.yaml"
    (example_repo / "registry/models/churn/versions/4.yaml").unlink()
    branched = register(example_repo, SEED / "churn-1.onnx", "--branch", "register-churn-4")
    assert branched.code == 0, branched.err
    assert git(example_repo, "rev-parse", "--abbrev-ref", "HEAD") == "register-churn-4"
    assert git(example_repo, "log", "-1", "--format=%s", "main") == "Example state"


def test_existing_branch_is_refused_and_nothing_changes(example_repo: Path) -> None:
    git(example_repo, "branch", "taken")
    before = tree(example_repo)
    result = register(example_repo, SEED / "churn-1.onnx", "--branch", "taken")
    assert result.code == 2 and "branch 'taken' already exists" in result.err
    assert_nothing_changed(example_repo, before, result)


# ---------------------------------------------------------------------------------------------- storage faults


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_bucket("team-store") as endpoint:
        yield endpoint


def test_store_failing_twice_then_succeeding_registers_once(example_repo: Path, s3_endpoint: str) -> None:
    with FaultyProxy(s3_endpoint, fail_puts=2) as proxy:
        env = {"MLOPS_STORE": "s3://team-store/ml", "MLOPS_S3_ENDPOINT_URL": proxy.url}
        result = run_mlops(
            "model", "register", str(SEED / "churn-1.onnx"), "--name", "churn", "--repo", str(example_repo), env=env
        )
        assert result.code == 0, result.err
        assert proxy.failed == 2 and proxy.forwarded_puts == 1
    key = "ml/sha256/5b/e92f10dede2ff4b23cc1b7251cfef12ec5ad13c40e1fa5ab1dd007ca85d827"
    assert (
        boto3.client("s3", endpoint_url=s3_endpoint).head_object(Bucket="team-store", Key=key)["ContentLength"] == 717
    )


def test_store_that_keeps_failing_leaves_repository_and_store_as_they_were(
    example_repo: Path, s3_endpoint: str
) -> None:
    before = tree(example_repo)
    with FaultyProxy(s3_endpoint, fail_puts=-1) as proxy:
        env = {"MLOPS_STORE": "s3://team-store/down", "MLOPS_S3_ENDPOINT_URL": proxy.url}
        result = run_mlops(
            "model", "register", str(SEED / "churn-1.onnx"), "--name", "churn", "--repo", str(example_repo), env=env
        )
    assert result.code == 1
    assert result.err.startswith("error: uploading ") and "failed after 3 attempts" in result.err
    assert_nothing_changed(example_repo, before, result)
    listing = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="team-store", Prefix="down/")
    assert listing.get("KeyCount", 0) == 0


# ------------------------------------------------------------------------------------------ push and pull request


class FakeGitHub:
    """A local HTTP server speaking the one GitHub endpoint we use to open pull requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, object], str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(("POST", self.path, body, self.headers.get("Authorization", "")))
                answer = json.dumps({"number": 7, "html_url": "https://github.example/acme/ml-state/pull/7"}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_push_and_pull_request(example_repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(example_repo, "remote", "add", "origin", str(remote))
    git(example_repo, "push", "-q", "origin", "main")
    github = FakeGitHub()
    try:
        env = {"GITHUB_TOKEN": "t0ken", "GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": "acme/ml-state"}
        result = run_mlops(
            "model",
            "register",
            str(SEED / "churn-1.onnx"),
            "--name",
            "churn",
            "--description",
            "retrained baseline",
            "--branch",
            "register-churn-4",
            "--pr",
            "--repo",
            str(example_repo),
            env=env,
        )
    finally:
        github.close()
    assert result.code == 0, result.err
    assert "pull request: https://github.example/acme/ml-state/pull/7" in result.out
    assert git(remote, "log", "-1", "--format=%s", "register-churn-4") == "Register churn@4"
    [(method, path, body, auth)] = github.requests
    assert (method, path, auth) == ("POST", "/repos/acme/ml-state/pulls", "Bearer t0ken")
    assert body["head"] == "register-churn-4" and body["base"] == "main" and body["title"] == "Register churn@4"
    assert "retrained baseline" in str(body["body"])


def test_pull_request_without_a_token_is_a_clear_error(example_repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(example_repo, "remote", "add", "origin", str(remote))
    result = register(example_repo, SEED / "churn-1.onnx", "--branch", "b", "--pr")
    assert result.code == 2
    assert (
        result.err.strip() == "error: no GitHub token: set GITHUB_TOKEN (or MLOPS_GITHUB_TOKEN) to open pull requests"
    )
