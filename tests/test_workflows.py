"""The CI gate's workflow files are valid GitHub workflows, and run `mlops validate --base` on pull requests.

Checked against the public GitHub workflow schema (SchemaStore) that check-jsonschema vendors, both
in-process with jsonschema and through the `check-jsonschema` command CI users run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from jsonschema import validators
from ruamel.yaml import YAML

REPO_WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
STARTER_WORKFLOWS = sorted((ROOT / "mlops/templates/starter/github/workflows").glob("*.yml"))
WORKFLOWS = REPO_WORKFLOWS + STARTER_WORKFLOWS
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

GOOD = """\
name: ok
on:
  pull_request:
jobs:
  validate:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: mlops validate
"""
BROKEN = {
    "no-on": GOOD.replace("on:\n  pull_request:\n", ""),
    "runs-on-misspelled": GOOD.replace("runs-on:", "run-on:"),
    "step-without-action": GOOD.replace("      - run: mlops validate\n", "      - name: nothing to do\n"),
    "unknown-event": GOOD.replace("pull_request:", "pull-request:"),
}


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def load_workflow(text: str) -> Any:
    """YAML 1.2, as GitHub reads it: `on` is the string "on", not the boolean PyYAML would make of it."""
    return YAML(typ="safe", pure=True).load(text)


@pytest.fixture(scope="module")
def workflow_schema() -> Any:
    data = resources.files("check_jsonschema.builtin_schemas").joinpath("vendor/github-workflows.json").read_text()
    schema = json.loads(data)
    assert schema["$id"] == "https://json.schemastore.org/github-workflow.json"
    return schema


def schema_errors(schema: Any, document: Any) -> list[str]:
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    return [f"{e.json_path}: {e.message}" for e in cls(schema).iter_errors(document)]


def check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_there_are_workflows_to_check() -> None:
    assert [p.name for p in REPO_WORKFLOWS] == ["reconcile.yml", "validate.yml"]
    assert [p.name for p in STARTER_WORKFLOWS] == ["validate.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=rel)
def test_workflow_matches_github_schema(path: Path, workflow_schema: Any) -> None:
    document = load_workflow(path.read_text(encoding="utf-8"))
    assert "on" in document
    assert schema_errors(workflow_schema, document) == []


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_workflow_fails_the_same_check(name: str, workflow_schema: Any) -> None:
    assert schema_errors(workflow_schema, load_workflow(GOOD)) == []
    assert schema_errors(workflow_schema, load_workflow(BROKEN[name])) != []


def test_check_jsonschema_command_accepts_the_workflows() -> None:
    result = check_jsonschema(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_command_rejects_broken_workflows(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(GOOD, encoding="utf-8")
    assert check_jsonschema(good).returncode == 0
    for name in ("no-on", "runs-on-misspelled"):
        path = tmp_path / f"{name}.yml"
        path.write_text(BROKEN[name], encoding="utf-8")
        result = check_jsonschema(path)
        assert result.returncode == 1, f"{name}: {result.stdout}"
    result = check_jsonschema(tmp_path / "no-on.yml")
    assert "'on' is a required property" in result.stdout


def _steps(document: Any) -> list[dict[str, Any]]:
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if p.name == "validate.yml"], ids=rel)
def test_validate_workflow_runs_validate_base_on_pull_requests(path: Path) -> None:
    document = load_workflow(path.read_text(encoding="utf-8"))
    assert "pull_request" in document["on"], "the gate must run on every pull request"
    steps = _steps(document)
    gate = [s for s in steps if "mlops validate --base" in s.get("run", "")]
    assert len(gate) == 1, gate
    step = gate[0]
    # It runs for pull requests, against the pull request's base branch, with annotations.
    assert step.get("if", "pull_request") == "github.event_name == 'pull_request'"
    assert '--base "origin/${{ github.base_ref }}"' in step["run"]
    assert "--format github" in step["run"]
    # --base needs the base branch's history in the checkout.
    checkout = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert checkout.get("with", {}).get("fetch-depth") == 0
    # A gate may read, not write.
    assert document["permissions"]["contents"] == "read"
