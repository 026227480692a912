"""Promotion gates: the pure judgement on evidence, and CI's gate reading real reviews, trailers and history."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import git, run_mlops

from mlops.manifests import AccessPolicy, Model, ModelVersion, PromotionPolicy
from mlops.validation.promotion import Approval, GateEvidence, Stint, evaluate_gate, stints_from

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def policy(**spec: object) -> PromotionPolicy:
    return PromotionPolicy.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "PromotionPolicy",
            "metadata": {"name": "gate"},
            "spec": {"environment": "production", **spec},
        }
    )


def version(
    n: int, metrics: dict[str, float] | None = None, evaluations: list[dict[str, object]] | None = None
) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "ModelVersion",
            "metadata": {"name": "churn"},
            "spec": {
                "version": n,
                "artifact": {"digest": "sha256:" + "a" * 64, "size": 1, "format": "onnx"},
                "metrics": metrics or {},
                "evaluations": evaluations or [],
            },
        }
    )


MODEL = Model.model_validate(
    {
        "apiVersion": "mlops/v1",
        "kind": "Model",
        "metadata": {"name": "churn"},
        "spec": {"owner": "a@example.com", "task": "classification", "flavor": "onnx", "riskTier": "high"},
    }
)
ACCESS = AccessPolicy.model_validate(
    {
        "apiVersion": "mlops/v1",
        "kind": "AccessPolicy",
        "metadata": {"name": "access"},
        "spec": {
            "roles": [
                {"name": "ml-lead", "members": ["lead@example.com", "lee"]},
                {"name": "ml-engineer", "members": ["dev@example.com"]},
            ]
        },
    }
)


def evidence(candidate: ModelVersion, **overrides: object) -> GateEvidence:
    values: dict[str, object] = {
        "candidate": candidate,
        "model": MODEL,
        "incumbent": None,
        "previous_stints": [],
        "approvals": [],
        "authors": [],
        "now": NOW,
        "access": [ACCESS],
        "check_approvals": True,
    }
    values.update(overrides)
    return GateEvidence(**values)  # type: ignore[arg-type]


def evaluation(
    metric: str, difference: float, low: float, high: float, p: float, higher: bool = True
) -> dict[str, object]:
    return {
        "against": "churn@1",
        "metric": metric,
        "data": "sha256:" + "b" * 64,
        "rows": 2000,
        "candidate": 0.5 + difference,
        "baseline": 0.5,
        "difference": difference,
        "higherIsBetter": higher,
        "ciLow": low,
        "ciHigh": high,
        "test": "paired bootstrap",
        "pValue": p,
    }


def test_soak_is_measured_from_the_stint_in_the_previous_environment() -> None:
    gate = policy(previousEnvironment="staging", soak="24h")
    stints = [Stint(2, NOW - dt.timedelta(hours=30), None, "abc12345")]
    passed = evaluate_gate(gate, evidence(version(2), previous_stints=stints, check_approvals=False))
    assert passed.passed
    assert [c.evidence for c in passed.criteria][1] == "30.0 h in staging; the policy asks for 24.0 h"
    short = [Stint(2, NOW - dt.timedelta(hours=3), None, "abc12345")]
    refused = evaluate_gate(gate, evidence(version(2), previous_stints=short, check_approvals=False))
    assert [c.name for c in refused.unmet] == ["soak 24h in staging"]
    never = evaluate_gate(gate, evidence(version(2), previous_stints=[Stint(1, NOW, None, "x")], check_approvals=False))
    assert [c.name for c in never.unmet] == ["served in staging first"]


def test_stints_follow_the_pointer_history() -> None:
    t = [NOW + dt.timedelta(hours=h) for h in range(5)]
    stints = stints_from([("a", t[0], 1), ("b", t[1], 1), ("c", t[2], 2), ("d", t[3], None), ("e", t[4], 1)])
    assert stints == [Stint(1, t[0], t[2], "a"), Stint(2, t[2], t[3], "c"), Stint(1, t[4], None, "e")]


@pytest.mark.parametrize(
    ("test", "record", "met"),
    [
        ("non-inferiority", evaluation("auc", -0.004, -0.008, 0.0, 0.4), True),
        ("non-inferiority", evaluation("auc", -0.004, -0.02, 0.01, 0.4), False),
        ("superiority", evaluation("auc", 0.03, 0.01, 0.05, 0.003), True),
        ("superiority", evaluation("auc", 0.03, -0.01, 0.07, 0.2), False),
        # lower is better: a negative difference in log_loss is a gain
        ("non-inferiority", evaluation("log_loss", 0.004, 0.0, 0.008, 0.3, higher=False), True),
        ("non-inferiority", evaluation("log_loss", 0.01, 0.0, 0.02, 0.3, higher=False), False),
        ("superiority", evaluation("log_loss", -0.02, -0.03, -0.01, 0.001, higher=False), True),
    ],
)
def test_comparison_with_the_current_version(test: str, record: dict[str, object], met: bool) -> None:
    gate = policy(comparison={"metric": record["metric"], "test": test, "margin": 0.01})
    result = evaluate_gate(
        gate, evidence(version(2, evaluations=[record]), incumbent=version(1), check_approvals=False)
    )
    assert result.passed is met, result.criteria


def test_missing_comparison_says_how_to_make_one() -> None:
    gate = policy(comparison={"metric": "auc"})
    result = evaluate_gate(gate, evidence(version(2), incumbent=version(1), check_approvals=False))
    assert result.unmet[0].evidence.endswith(
        "run `mlops model compare churn@1 churn@2 --data EVAL --label COL --record`"
    )


def test_approvals_count_roles_and_refuse_authors() -> None:
    gate = policy(approvals={"count": 2, "roles": ["ml-lead"]})
    approvals = [
        Approval("lead@example.com", "github review"),
        Approval("dev@example.com", "github review"),
        Approval("lee", "github review"),
    ]
    result = evaluate_gate(gate, evidence(version(2), approvals=approvals, authors=["lee"]))
    [criterion] = result.criteria
    assert not criterion.met
    assert criterion.evidence == (
        "approved by lead@example.com; not counted: dev@example.com (not in ml-lead), lee (an author of the change)"
    )


def test_a_risk_tier_can_demand_more_approvals_than_the_policy() -> None:
    from mlops.manifests import RiskPolicy

    risk = RiskPolicy.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "RiskPolicy",
            "metadata": {"name": "risk"},
            "spec": {"tiers": [{"tier": "high", "requiredApprovals": 2}]},
        }
    )
    one = [Approval("lead@example.com", "trailer")]
    result = evaluate_gate(policy(approvals={"count": 1}), evidence(version(2), approvals=one, risk=[risk]))
    assert result.criteria[0].name == "2 approvals" and not result.passed


# ------------------------------------------------------------------ CI: GitHub reviews and concurrent promotions


class FakeGitHubReviews:
    def __init__(self, reviews: list[dict[str, object]]) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.paths.append(self.path)
                body = json.dumps(reviews).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def staged_promotion(example_repo: Path) -> Iterator[Path]:
    """churn@3 promoted to staging (no approvals needed there in this test) on a pull request branch."""
    policy_file = example_repo / "policies" / "promotion-staging.yaml"
    text = policy_file.read_text()
    assert "roles: [ml-engineer, ml-lead]" in text
    policy_file.write_text(text.replace("roles: [ml-engineer, ml-lead]", "roles: [ml-lead]"))
    access = example_repo / "policies" / "access.yaml"
    access.write_text(access.read_text().replace("members: [lead@example.com]", "members: [lead@example.com, lee]"))
    git(example_repo, "commit", "-qam", "Staging needs an ml-lead")
    git(example_repo, "checkout", "-q", "-b", "promote")
    result = run_mlops("promote", "churn@3", "--to", "staging", "--repo", str(example_repo))
    assert result.code == 0, result.err
    yield example_repo


def test_ci_reads_approvals_from_the_pull_request_reviews(staged_promotion: Path, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 12, "user": {"login": "dana"}}}))
    github = FakeGitHubReviews(
        [
            {"user": {"login": "lee"}, "state": "COMMENTED"},
            {"user": {"login": "lee"}, "state": "APPROVED"},
            {"user": {"login": "dana"}, "state": "APPROVED"},
        ]
    )
    env = {
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_TOKEN": "t",
        "GITHUB_API_URL": github.url,
        "GITHUB_REPOSITORY": "acme/ml-state",
    }
    try:
        result = run_mlops("validate", "--repo", str(staged_promotion), "--base", "main", env=env)
    finally:
        github.close()
    assert github.paths == ["/repos/acme/ml-state/pulls/12/reviews"]
    assert result.code == 0, result.out
    assert "met 1 approval from ml-lead: approved by lee; not counted: dana (an author of the change)" in result.out


def test_ci_refuses_a_review_withdrawn_by_a_request_for_changes(staged_promotion: Path, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 3, "user": {"login": "dana"}}}))
    github = FakeGitHubReviews(
        [
            {"user": {"login": "lee"}, "state": "APPROVED"},
            {"user": {"login": "lee"}, "state": "CHANGES_REQUESTED"},
        ]
    )
    env = {
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_TOKEN": "t",
        "GITHUB_API_URL": github.url,
        "GITHUB_REPOSITORY": "acme/ml-state",
    }
    try:
        result = run_mlops("validate", "--repo", str(staged_promotion), "--base", "main", env=env)
    finally:
        github.close()
    assert result.code == 1
    assert "1 approval from ml-lead not met (promotion-staging): approved by nobody yet" in result.out


def test_ci_refuses_a_promotion_whose_base_moved(staged_promotion: Path) -> None:
    repo = staged_promotion
    # Meanwhile someone else changed staging on main.
    git(repo, "checkout", "-q", "main")
    staging = repo / "environments" / "staging.yaml"
    staging.write_text(
        staging.read_text().replace("      model: churn\n      version: 2", "      model: churn\n      version: 1")
    )
    git(repo, "commit", "-qam", "Someone else: churn 1 in staging")
    git(repo, "checkout", "-q", "promote")
    git(repo, "merge", "-q", "-X", "ours", "main", "-m", "Merge main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "Approve\n\nApproved-by: Lee <lead@example.com>")
    result = run_mlops("validate", "--repo", str(repo), "--base", "main")
    assert result.code == 1
    assert (
        "promoted from churn@2 in staging, but the base now serves churn@1: someone else changed staging" in result.out
    )
