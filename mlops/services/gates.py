"""Gathering the evidence promotion gates judge: git history, recorded evaluations, approvals.

``mlops promote`` runs the gate locally (approvals are pending until review);
``mlops validate --base`` runs the same gate in CI with the pull request's
approvals, so both judge the same facts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.forge.github import GitHub
from mlops.loader.gitwrite import remote_url
from mlops.loader.history import commits_between, identity, pointer_history, trailers
from mlops.manifests import AccessPolicy, Environment, Model, ModelVersion, PromotionPolicy, RiskPolicy
from mlops.manifests.base import version_key
from mlops.validation.index import RepoIndex
from mlops.validation.promotion import Approval, GateEvidence, GateResult, Stint, evaluate_gate, stints_from


@dataclass(frozen=True)
class ChangeContext:
    """Who made a change and who approved it (empty when judging a local, unreviewed change)."""

    authors: list[str]
    approvals: list[Approval]
    check_approvals: bool


def policy_for(index: RepoIndex, environment: str) -> PromotionPolicy | None:
    for _, policy in index.of(PromotionPolicy):
        if policy.spec.environment == environment:
            return policy
    return None


def current_version(index: RepoIndex, environment: str, model: str) -> int | None:
    env = index.find(Environment, environment)
    if env is None:
        return None
    for deployment in env.spec.deployments:
        if deployment.model == model:
            return deployment.version
    return None


def stints(root: Path, environment: str, model: str, rev: str = "HEAD") -> list[Stint]:
    history = pointer_history(root, environment, model, rev)
    return stints_from((p.commit, p.time, p.version) for p in history)


def judge(
    root: Path,
    index: RepoIndex,
    policy: PromotionPolicy,
    candidate: ModelVersion,
    incumbent_version: int | None,
    context: ChangeContext,
    rev: str = "HEAD",
    now: dt.datetime | None = None,
) -> GateResult:
    previous = policy.spec.previousEnvironment
    model_name = candidate.metadata.name
    previous_stints = stints(root, previous, model_name, rev) if previous else []
    incumbent = (
        index.find(ModelVersion, version_key(model_name, incumbent_version)) if incumbent_version is not None else None
    )
    evidence = GateEvidence(
        candidate=candidate,
        model=index.find(Model, model_name),
        incumbent=incumbent,
        previous_stints=previous_stints,
        approvals=context.approvals,
        authors=context.authors,
        now=now or dt.datetime.now(dt.UTC),
        access=[p for _, p in index.of(AccessPolicy)],
        risk=[p for _, p in index.of(RiskPolicy)],
        check_approvals=context.check_approvals,
    )
    return evaluate_gate(policy, evidence)


def review_context(root: Path, base: str) -> ChangeContext:
    """Authors of base..HEAD and the approvals of the change: GitHub reviews in CI, else Approved-by trailers."""
    commits = commits_between(root, base)
    authors = sorted({author for _, author, _ in commits})
    approvals = _github_approvals(root)
    if approvals is None:
        approvals = [
            Approval(identity(value), f"Approved-by trailer in {sha[:8]}")
            for sha, _, message in commits
            for value in trailers(message, "Approved-by")
        ]
    else:
        pull = _event().get("pull_request")
        user = pull.get("user") if isinstance(pull, dict) else None
        if isinstance(user, dict) and isinstance(user.get("login"), str):
            authors.append(user["login"])
    return ChangeContext(authors, approvals, check_approvals=True)


def _event() -> dict[str, Any]:
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _github_approvals(root: Path) -> list[Approval] | None:
    """Approvals from the pull request's reviews when running in a GitHub workflow for a pull request."""
    event = _event()
    pull = event.get("pull_request")
    if not isinstance(pull, dict) or not isinstance(pull.get("number"), int):
        return None
    github = GitHub.from_environment(remote_url(root))
    latest: dict[str, str] = {}
    for review in github.reviews(int(pull["number"])):
        user = review.get("user") or {}
        login = user.get("login") if isinstance(user, dict) else None
        state = review.get("state")
        if (
            isinstance(login, str)
            and isinstance(state, str)
            and state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED")
        ):
            latest[login] = state
    return [Approval(login, "github review") for login, state in sorted(latest.items()) if state == "APPROVED"]
