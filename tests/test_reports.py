"""Golden-file tests of the validation renderers: text, JSON, GitHub annotations, Markdown summary.

The report comes from a small real repository (written here, independent of the example state)
with known problems and a known change against its base branch. Paths that depend on the temporary
folder, the store URL and the base commit are normalised before rendering.

Regenerate the golden files after a deliberate change of the output with::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_reports.py
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result, git

from mlops.errors import Category, Problem, Severity
from mlops.reports.validation import render_github, render_json, render_markdown, render_text
from mlops.services.validate import ValidationReport, validate_repository
from mlops.validation.changes import Action, Change

Run = Callable[..., Result]
GOLDEN = Path(__file__).resolve().parent / "golden"

STORE_URL = "file:///srv/mlops/store"
ROOT_SHOWN = Path("shop")
BASE_SHA = "c0ffee00"


def check_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/<name>; with UPDATE_GOLDEN=1, (re)write it instead."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    assert path.is_file(), f"{path} is missing: run the tests with UPDATE_GOLDEN=1 to create it"
    expected = path.read_bytes().decode("utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                f"golden/{name}",
                "rendered",
            )
        )
        pytest.fail(f"output differs from golden/{name} (UPDATE_GOLDEN=1 regenerates it):\n{diff}")


# --- the small repository -----------------------------------------------------------------------

ARTIFACT_V1 = b"iris v1: onnx bytes\n"
ARTIFACT_V2 = b"iris v2: pickle bytes\n"
MISSING_DIGEST = "sha256:" + "0" * 64

MODEL = """\
apiVersion: mlops/v1
kind: Model
metadata:
  name: iris
spec:
  owner: flowers@example.com
  task: classification
  flavor: sklearn
"""


def version(n: int, digest: str, fmt: str, auc: float, description: str = "") -> str:
    return f"""\
apiVersion: mlops/v1
kind: ModelVersion
metadata:
  name: iris
spec:
  version: {n}
  description: "{description or f"iris v{n}"}"
  artifact:
    digest: {digest}
    size: 20
    format: {fmt}
  metrics:
    auc: {auc}
"""


def environment(name: str, deployments: list[tuple[str, int]]) -> str:
    text = f"apiVersion: mlops/v1\nkind: Environment\nmetadata:\n  name: {name}\nspec:\n  deployments:\n"
    for deployment_name, number in deployments:
        text += f"    - name: {deployment_name}\n      model: iris\n      version: {number}\n"
    return text if deployments else text.replace("deployments:\n", "deployments: []\n")


ARTIFACT_POLICY = """\
apiVersion: mlops/v1
kind: ArtifactPolicy
metadata:
  name: artifacts
spec:
  exceptions:
    - model: iris
      formats: [pickle]
      reason: "batch job: needs 100% of sklearn, for now"
"""


def promotion(count: int) -> str:
    return f"""\
apiVersion: mlops/v1
kind: PromotionPolicy
metadata:
  name: promotion-production
spec:
  environment: production
  metrics:
    - {{metric: auc, min: 0.9}}
  approvals:
    count: {count}
"""


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def make_shop(tmp_path: Path, mlops: Run) -> Path:
    """Base (main): iris@1 everywhere. Head (branch): a change with known problems, committed."""
    root = tmp_path / "shop"
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "v1.onnx").write_bytes(ARTIFACT_V1)
    (blobs / "v2.pkl").write_bytes(ARTIFACT_V2)
    write(root, {"pyproject.toml": '[tool.mlops]\nstore = ".mlops/store"\n', ".gitignore": ".mlops/\n"})
    added = mlops("store", "add", str(blobs), "--repo", str(root))
    assert added.code == 0, added.err
    digests = {Path(line.split()[2]).name: line.split()[0] for line in added.out.splitlines()}
    d1, d2 = digests["v1.onnx"], digests["v2.pkl"]
    write(
        root,
        {
            "registry/models/iris/model.yaml": MODEL,
            "registry/models/iris/versions/1.yaml": version(1, d1, "onnx", 0.93),
            "environments/development.yaml": environment("development", [("iris", 1)]),
            "environments/production.yaml": environment("production", [("iris", 1)]),
            "policies/artifacts.yaml": ARTIFACT_POLICY,
            "policies/promotion-production.yaml": promotion(1),
        },
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    git(root, "checkout", "-q", "-b", "change")
    write(
        root,
        {
            # allowed: a new description; not allowed: new metrics for a registered version
            "registry/models/iris/versions/1.yaml": version(1, d1, "onnx", 0.95, "iris v1 | the baseline"),
            # pickle under the policy's exception (a warning), and below production's floor
            "registry/models/iris/versions/2.yaml": version(2, d2, "pickle", 0.88),
            # an artifact nobody put into the store
            "registry/models/iris/versions/3.yaml": version(3, MISSING_DIGEST, "onnx", 0.97),
            "environments/production.yaml": environment("production", [("iris", 2)]),
            "environments/development.yaml": environment("development", [("iris", 1), ("iris-next", 7)]),
            "policies/promotion-production.yaml": promotion(2),
            # a typo: broken file, reported once
            "registry/datasets/flowers/dataset.yaml": (
                "apiVersion: mlops/v1\nkind: Dataset\nmetadata:\n  name: flowers\nspec:\n  ownr: flowers@example.com\n"
            ),
        },
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "change")
    return root


def normalised(report: ValidationReport) -> ValidationReport:
    """The same report, with nothing that depends on the temporary folder or the commit's hash."""
    assert report.store_url is not None
    real_url = report.store_url
    base = re.sub(r"\([0-9a-f]{8}\)$", f"({BASE_SHA})", report.base or "")
    problems = [dataclasses.replace(p, message=p.message.replace(real_url, STORE_URL)) for p in report.problems]
    return dataclasses.replace(report, root=ROOT_SHOWN, base=base, store_url=STORE_URL, problems=problems)


def normalise_text(text: str, root: Path, report: ValidationReport) -> str:
    assert report.store_url is not None and report.base is not None
    text = text.replace(report.store_url, STORE_URL).replace(str(root), str(ROOT_SHOWN))
    return text.replace(report.base, re.sub(r"\([0-9a-f]{8}\)$", f"({BASE_SHA})", report.base))


@pytest.fixture
def shop(tmp_path: Path, mlops: Run) -> Path:
    return make_shop(tmp_path, mlops)


@pytest.fixture
def report(shop: Path) -> ValidationReport:
    return normalised(validate_repository(shop, base="main", use_cache=False))


def test_the_report_holds_the_known_problems_and_changes(report: ValidationReport) -> None:
    assert report.exit_code == 1
    assert report.documents == 9
    assert [(p.path, p.code, p.severity.value) for p in report.problems] == [
        ("environments/development.yaml", "dangling-reference", "error"),
        ("environments/production.yaml", "metric-floor", "error"),
        ("environments/production.yaml", "promotion-gate", "error"),
        ("registry/datasets/flowers/dataset.yaml", "missing", "error"),
        ("registry/datasets/flowers/dataset.yaml", "extra_forbidden", "error"),
        ("registry/models/iris/versions/1.yaml", "immutable-version", "error"),
        ("registry/models/iris/versions/2.yaml", "format-exception", "warning"),
        ("registry/models/iris/versions/3.yaml", "missing-blob", "error"),
    ]
    assert [(c.action, c.text) for c in report.changes] == [
        (Action.DEPLOY, "deploy iris@7 to development as iris-next"),
        (Action.PROMOTE, "promote iris 1 -> 2 in production"),
        (Action.MODIFY, "changed model version iris@1"),
        (Action.ADD, "new version iris@2"),
        (Action.ADD, "new version iris@3"),
        (Action.MODIFY, "changed policy promotion-production"),
    ]


def test_text_golden(report: ValidationReport) -> None:
    check_golden("validate_report.text.txt", render_text(report) + "\n")


def test_json_golden(report: ValidationReport) -> None:
    text = render_json(report)
    json.loads(text)
    check_golden("validate_report.json.txt", text + "\n")


def test_github_golden(report: ValidationReport) -> None:
    check_golden("validate_report.github.txt", render_github(report) + "\n")


def test_markdown_golden(report: ValidationReport) -> None:
    check_golden("validate_report.markdown.txt", render_markdown(report))


def test_cli_text_output_is_the_rendered_report(shop: Path, mlops: Run, report: ValidationReport) -> None:
    """What the command prints is the renderer's output: the golden files cover the CLI too."""
    result = mlops("validate", "--repo", str(shop), "--base", "main", "--no-cache")
    assert result.code == 1
    raw = validate_repository(shop, base="main", use_cache=False)
    assert normalise_text(result.out, shop, raw) == render_text(report) + "\n"


def test_github_format_appends_markdown_summary(
    shop: Path, mlops: Run, report: ValidationReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "step-summary.md"
    summary.write_text("## an earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = mlops("validate", "--repo", str(shop), "--base", "main", "--format", "github")
    assert result.code == 1
    raw = validate_repository(shop, base="main", use_cache=False)
    assert normalise_text(result.out, shop, raw) == render_github(report) + "\n"
    written = summary.read_text(encoding="utf-8")
    assert written.startswith("## an earlier step\n## ❌ mlops validate\n")
    assert normalise_text(written, shop, raw) == "## an earlier step\n" + render_markdown(report)
    # A second run appends again (GitHub collects every step's summary in one file).
    mlops("validate", "--repo", str(shop), "--base", "main", "--format", "github")
    assert summary.read_text(encoding="utf-8") == written + written.removeprefix("## an earlier step\n")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_other_formats_leave_the_step_summary_alone(
    shop: Path, mlops: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    summary = tmp_path / "step-summary.md"
    summary.write_text("untouched\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert mlops("validate", "--repo", str(shop), "--format", fmt).code == 1
    assert summary.read_text(encoding="utf-8") == "untouched\n"


# --- escaping -----------------------------------------------------------------------------------


def _report(*problems: Problem, changes: tuple[Change, ...] = (), base: str | None = None) -> ValidationReport:
    return ValidationReport(
        root=ROOT_SHOWN, documents=1, problems=list(problems), changes=list(changes), base=base, store_url=STORE_URL
    )


def test_github_annotation_escapes_properties_and_data() -> None:
    problem = Problem(
        "odd:dir,x/50%.yaml",
        "first line 100%\nsecond: line, with\r\ncarriage",
        field=("spec", "a"),
        line=3,
        col=None,
        code="code:with,comma%",
    )
    lines = render_github(_report(problem)).splitlines()
    assert lines[0] == (
        "::error file=odd%3Adir%2Cx/50%25.yaml,line=3,col=1,title=code%3Awith%2Ccomma%25::"
        "spec.a: first line 100%25%0Asecond: line, with%0D%0Acarriage"
    )
    # The message (data) keeps ':' and ',' : only properties escape them.
    assert lines[1] == "failed: 1 manifest: 1 error, 0 warnings"
    assert len(lines) == 2


def test_github_annotation_without_position_or_code() -> None:
    warning = Problem("policies/a.yaml", "careful", severity=Severity.WARNING, category=Category.POLICY)
    notice = Problem("policies/b.yaml", "fyi", severity=Severity.NOTICE, category=Category.POLICY)
    assert render_github(_report(warning, notice)).splitlines() == [
        "::warning file=policies/a.yaml,title=mlops validate::careful",
        "::notice file=policies/b.yaml,title=mlops validate::fyi",
        "ok: 1 manifest: 0 errors, 1 warning",
    ]


def test_markdown_cells_survive_pipes_and_newlines() -> None:
    problem = Problem("registry/x.yaml", "a | b\nc", field=("spec",), line=2, col=None)
    markdown = render_markdown(_report(problem, base="main (c0ffee00)"))
    row = markdown.splitlines()[-1]
    assert row == "| `registry/x.yaml` | 2:1 | error | `spec`: a \\| b<br>c |"
    assert "- nothing in the managed manifests" in markdown


def test_text_and_json_of_a_clean_report() -> None:
    clean = _report()
    assert render_text(clean) == "ok: 1 manifest: 0 errors, 0 warnings"
    data = json.loads(render_json(clean))
    assert data == {
        "ok": True,
        "exitCode": 0,
        "repository": "shop",
        "manifests": 1,
        "base": None,
        "store": STORE_URL,
        "problems": [],
        "changes": [],
        "summary": {"errors": 0, "warnings": 0},
    }
