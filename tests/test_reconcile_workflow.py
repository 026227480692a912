"""`.github/workflows/reconcile.yml`: plan on pull requests (the Markdown plan as a comment), reconcile on merge to
main per environment behind the GitHub environment's protection; valid against GitHub's workflow schema."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from conftest import ROOT
from jsonschema import validators
from ruamel.yaml import YAML

WORKFLOW = ROOT / ".github" / "workflows" / "reconcile.yml"


def _workflow() -> Any:
    return YAML(typ="safe", pure=True).load(WORKFLOW.read_text(encoding="utf-8"))


def test_reconcile_workflow_matches_githubs_schema() -> None:
    data = resources.files("check_jsonschema.builtin_schemas").joinpath("vendor/github-workflows.json").read_text()
    schema = json.loads(data)
    cls = validators.validator_for(schema)
    assert [e.message for e in cls(schema).iter_errors(_workflow())] == []


def test_plan_on_pull_requests_reconcile_on_main_behind_the_environment_gate() -> None:
    document = _workflow()
    assert {"pull_request", "push"} <= set(document["on"])
    assert document["on"]["push"]["branches"] == ["main"]
    plan, reconcile = document["jobs"]["plan"], document["jobs"]["reconcile"]
    assert "github.event_name == 'pull_request'" in plan["if"]
    plan_run = next(s["run"] for s in plan["steps"] if "mlops plan" in s.get("run", ""))
    assert '--env "${{ matrix.environment }}" --format markdown' in plan_run
    assert 'test "$code" -ne 1' in plan_run  # 0 and 2 are answers, 1 is an error
    comment = next(s for s in plan["steps"] if "gh pr comment" in s.get("run", ""))
    assert comment["if"] == "steps.plan.outputs.exit_code == '2'"
    assert plan["permissions"]["pull-requests"] == "write"

    assert "refs/heads/main" in reconcile["if"]
    assert reconcile["environment"] == "${{ matrix.environment }}"  # required reviewers: the second gate
    assert reconcile["strategy"]["max-parallel"] == 1
    assert reconcile["strategy"]["matrix"]["environment"] == plan["strategy"]["matrix"]["environment"]
    run = next(s["run"] for s in reconcile["steps"] if "mlops reconcile" in s.get("run", ""))
    assert 'mlops reconcile --env "${{ matrix.environment }}" --push' in run
    assert reconcile["permissions"]["contents"] == "write"  # automatic rollbacks are commits
    for job in (plan, reconcile):
        checkout = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@"))
        assert checkout["with"]["fetch-depth"] == 0  # the descendant check reads history
