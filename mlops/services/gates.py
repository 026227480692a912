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

from mlops.errors import Category, Problem, Severity
from mlops.forge.github import GitHub
from mlops.loader.gitwrite import remote_url
from mlops.loader.history import commits_between, identity, pointer_history, trailers
from mlops.manifests import AccessPolicy, Environment, Model, ModelVersion, PromotionPolicy, RiskPolicy
from mlops.manifests.base import version_key
from mlops.validation.changes import Action, Change
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


def change_gate_problems(
    root: Path, base: str, base_index: RepoIndex, head_index: RepoIndex, changes: list[Change]
) -> list[Problem]:
    """Judge every promotion in a change (base..HEAD) by its environment's policy, as CI's approval gate."""
    problems: list[Problem] = []
    context: ChangeContext | None = None
    commits = commits_between(root, base)
    for change in changes:
        if change.action not in (Action.PROMOTE, Action.DEPLOY) or change.environment is None or change.model is None:
            continue
        env_name, model, version = change.environment, change.model, change.to_version
        policy = policy_for(head_index, env_name)
        candidate = head_index.find(ModelVersion, version_key(model, version)) if version is not None else None
        if policy is None or candidate is None:
            continue
        field = _deployment_field(head_index, env_name, model)
        base_current = current_version(base_index, env_name, model)
        problems.extend(_expectation_problems(change, commits, env_name, model, base_current, field))
        served_before = [s for s in stints(root, env_name, model, base) if s.version == version]
        if served_before:
            since = served_before[-1].since
            problems.append(
                _gate_problem(
                    change,
                    field,
                    f"rollback of {model} to version {version}, which served "
                    f"{env_name} from {since:%Y-%m-%d %H:%M} UTC: promotion gates do not apply",
                    Severity.NOTICE,
                )
            )
            continue
        if context is None:
            context = review_context(root, base)
        gate = judge(root, head_index, policy, candidate, base_current, context)
        for criterion in gate.criteria:
            if criterion.met:
                text = f"{candidate.key} to {env_name}: met {criterion.name}: {criterion.evidence}"
                problems.append(_gate_problem(change, field, text, Severity.NOTICE))
            elif criterion.kind not in ("metric", "risk"):  # those are static policies, reported already
                text = f"{candidate.key} to {env_name}: {criterion.name} not met ({gate.policy}): {criterion.evidence}"
                problems.append(_gate_problem(change, field, text, Severity.ERROR))
    return problems


def _deployment_field(index: RepoIndex, environment: str, model: str) -> tuple[str | int, ...]:
    env = index.find(Environment, environment)
    if env is not None:
        for i, deployment in enumerate(env.spec.deployments):
            if deployment.model == model:
                return ("spec", "deployments", i, "version")
    return ()


def _expectation_problems(
    change: Change,
    commits: list[tuple[str, str, str]],
    environment: str,
    model: str,
    base_current: int | None,
    field: tuple[str | int, ...],
) -> list[Problem]:
    """A promotion made against an older state of the environment is refused (UC-02 5a: optimistic locking)."""
    out = []
    actual = version_key(model, base_current) if base_current is not None else "nothing"
    for sha, _, message in commits:
        for value in trailers(message, "Mlops-Expect-Current"):
            env_name, _, expected = value.partition(" ")
            if env_name != environment or not expected.startswith((f"{model}@", "nothing")):
                continue
            if expected != actual:
                out.append(
                    _gate_problem(
                        change,
                        field,
                        f"commit {sha[:8]} promoted from {expected} in {environment}, "
                        f"but the base now serves {actual}: someone else changed {environment} meanwhile; "
                        "rebase, review their change and promote again",
                        Severity.ERROR,
                    )
                )
    return out


def _gate_problem(change: Change, field: tuple[str | int, ...], message: str, severity: Severity) -> Problem:
    return Problem(
        change.path, message, severity=severity, category=Category.POLICY, field=field, code="promotion-gate"
    )
