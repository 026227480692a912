"""`mlops promote` and `mlops rollback`: move an environment's pointer, as a commit (UC-02, UC-09).

Stage = environment: promoting churn@3 to production means editing
``environments/production.yaml`` so its churn deployment points at version 3,
after the production promotion policy is satisfied. A rollback writes an earlier
pointer back, chosen from the environment's git history.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.errors import MlopsError, UsageError
from mlops.loader.gitwrite import head_commit
from mlops.loader.manifest_io import edited_text
from mlops.manifests import Environment, ModelVersion
from mlops.manifests.base import version_key
from mlops.manifests.model_version import VersionStatus
from mlops.services.gates import ChangeContext, current_version, judge, policy_for, stints
from mlops.services.publish import CommitOptions, Publication, publish
from mlops.services.repository import load_index, repo_root
from mlops.services.store import repo_store
from mlops.validation.index import RepoIndex
from mlops.validation.promotion import GateResult, Stint


class PromotionRefused(MlopsError):
    """A gate said no; every unmet criterion is a line with its evidence."""

    exit_code = 1

    def __init__(self, headline: str, gate: GateResult | None = None, extra: list[str] | None = None) -> None:
        super().__init__(headline)
        self.gate = gate
        self.extra = extra or []

    def lines(self) -> list[str]:
        out = [self.message]
        if self.gate is not None:
            out += [f"  unmet: {c.name}: {c.evidence}" for c in self.gate.unmet]
        return out + [f"  {line}" for line in self.extra]


@dataclass(frozen=True)
class PromoteResult:
    key: str
    environment: str
    previous: int | None
    gate: GateResult | None
    publication: Publication


@dataclass(frozen=True)
class RollbackResult:
    model: str
    environment: str
    previous: int
    target: int
    offered: list[Stint]
    publication: Publication


def _parse_ref(ref: str) -> tuple[str, int]:
    name, sep, number = ref.partition("@")
    if not sep or not number.isdigit() or int(number) < 1:
        raise UsageError(f"expected NAME@VERSION (e.g. churn@3), got {ref!r}")
    return name, int(number)


def _environment(index: RepoIndex, name: str) -> Environment:
    env = index.find(Environment, name)
    if env is None:
        known = ", ".join(sorted(index.keys("Environment"))) or "none"
        raise UsageError(f"no environment {name!r} (environments: {known}); it lives at environments/{name}.yaml")
    return env


def _pointer_change(model: str, version: int, deployment: str | None) -> Any:
    def change(tree: Any) -> None:
        spec = tree.setdefault("spec", {})
        deployments = spec.setdefault("deployments", [])
        matches = [d for d in deployments if (d.get("name") == deployment if deployment else d.get("model") == model)]
        if len(matches) > 1:
            names = ", ".join(str(d.get("name")) for d in matches)
            raise UsageError(f"{model} has several deployments here ({names}); choose one with --deployment")
        if matches:
            matches[0]["version"] = version
        else:
            deployments.append({"name": deployment or model, "model": model, "version": version})

    return change


def promote(
    root: Path,
    ref: str,
    environment: str,
    options: CommitOptions,
    expect_current: int | None = None,
    reason: str | None = None,
    deployment: str | None = None,
) -> PromoteResult:
    root = repo_root(root)
    model, version = _parse_ref(ref)
    index = load_index(root)
    candidate = index.find(ModelVersion, version_key(model, version))
    if candidate is None:
        raise UsageError(f"{ref} is not registered (register it first with `mlops model register`)")
    if candidate.spec.status is VersionStatus.ARCHIVED:
        raise PromotionRefused(f"{ref} is archived and cannot be promoted")
    _environment(index, environment)
    current = current_version(index, environment, model)
    if expect_current is not None and current != expect_current:
        now_serving = version_key(model, current) if current is not None else "nothing"
        raise PromotionRefused(
            f"{environment} serves {now_serving}, not {version_key(model, expect_current)} as expected: "
            "someone else changed it; pull, look at the change, and promote again",
            extra=_recent_changes(root, environment, model),
        )
    if current == version:
        raise UsageError(f"{environment} already serves {ref}")
    policy = policy_for(index, environment)
    gate = None
    if policy is not None:
        gate = judge(root, index, policy, candidate, current, ChangeContext([], [], check_approvals=False))
        if not gate.passed:
            raise PromotionRefused(f"promotion of {ref} to {environment} refused by {policy.metadata.name}", gate)
    path = f"environments/{environment}.yaml"
    new_text = edited_text((root / path).read_text(encoding="utf-8"), _pointer_change(model, version, deployment))
    before = version_key(model, current) if current is not None else "nothing"
    message = _promote_message(ref, environment, current, gate, reason, head_commit(root), before)
    publication = publish(root, {path: new_text}, message, options)
    return PromoteResult(ref, environment, current, gate, publication)


def _promote_message(
    ref: str,
    environment: str,
    current: int | None,
    gate: GateResult | None,
    reason: str | None,
    base: str | None,
    before: str,
) -> str:
    arrow = f" ({current} -> {ref.split('@')[1]})" if current is not None else ""
    lines = [f"Promote {ref} to {environment}{arrow}", ""]
    if reason:
        lines += [f"Reason: {reason}", ""]
    if gate is not None:
        lines.append(f"Gate {gate.policy}:")
        lines += [f"  [{'x' if c.met else ' '}] {c.name}: {c.evidence}" for c in gate.criteria]
        lines.append("  [ ] approvals: checked by `mlops validate --base` on the pull request")
        lines.append("")
    if base:
        lines.append(f"Mlops-Base: {base}")
    lines.append(f"Mlops-Expect-Current: {environment} {before}")
    return "\n".join(lines)


def _recent_changes(root: Path, environment: str, model: str) -> list[str]:
    history = stints(root, environment, model)
    return [
        f"{version_key(model, s.version)} since {s.since:%Y-%m-%d %H:%M} UTC (commit {s.commit[:8]})"
        for s in history[-3:]
    ]


def rollback_targets(root: Path, environment: str, model: str) -> list[Stint]:
    """Versions that served the environment before, most recent first, without the current one."""
    history = stints(root, environment, model)
    current = history[-1].version if history and history[-1].until is None else None
    seen: set[int] = set()
    out = []
    for stint in reversed(history):
        if stint.version != current and stint.version not in seen:
            seen.add(stint.version)
            out.append(stint)
    return out


def rollback_candidates(root: Path, environment: str, model: str | None) -> tuple[str, list[Stint]]:
    root = repo_root(root)
    index = load_index(root)
    chosen = _served_model(index, environment, model)
    return chosen, rollback_targets(root, environment, chosen)


def _served_model(index: RepoIndex, environment: str, model: str | None) -> str:
    env = _environment(index, environment)
    models = sorted({d.model for d in env.spec.deployments})
    if model is None:
        if len(models) != 1:
            raise UsageError(f"{environment} serves {', '.join(models) or 'nothing'}; choose one with --model")
        return models[0]
    return model


def rollback(
    root: Path,
    environment: str,
    options: CommitOptions,
    to: int | None = None,
    model: str | None = None,
    reason: str | None = None,
) -> RollbackResult:
    root = repo_root(root)
    index = load_index(root)
    model = _served_model(index, environment, model)
    current = current_version(index, environment, model)
    if current is None:
        raise UsageError(f"{environment} does not serve {model}; nothing to roll back")
    offered = rollback_targets(root, environment, model)
    if to is None:
        if not offered:
            raise PromotionRefused(f"no earlier version of {model} served {environment} (per git history)")
        to = offered[0].version
    problem = _unavailable(root, index, model, to)
    if problem:
        alternatives = [
            version_key(model, s.version)
            for s in offered
            if s.version != to and not _unavailable(root, index, model, s.version)
        ]
        raise PromotionRefused(
            f"cannot roll back {environment} to {version_key(model, to)}: {problem}",
            extra=[f"available instead: {', '.join(alternatives) or 'none'}"],
        )
    path = f"environments/{environment}.yaml"
    new_text = edited_text((root / path).read_text(encoding="utf-8"), _pointer_change(model, to, None))
    lines = [f"Roll back {model} {current} -> {to} in {environment}", ""]
    if reason:
        lines += [f"Reason: {reason}", ""]
    served = next((s for s in offered if s.version == to), None)
    if served is not None:
        until = f" until {served.until:%Y-%m-%d %H:%M} UTC" if served.until else ""
        lines.append(
            f"{version_key(model, to)} served {environment} from {served.since:%Y-%m-%d %H:%M} UTC{until} "
            f"(commit {served.commit[:8]})."
        )
    lines.append(f"Mlops-Rollback: {version_key(model, current)} -> {version_key(model, to)}")
    publication = publish(root, {path: new_text}, "\n".join(lines), options)
    return RollbackResult(model, environment, current, to, offered, publication)


def _unavailable(root: Path, index: RepoIndex, model: str, version: int) -> str | None:
    target = index.find(ModelVersion, version_key(model, version))
    if target is None:
        return "it is not registered"
    if target.spec.status is VersionStatus.ARCHIVED:
        return "it is archived"
    if not repo_store(root).has(target.spec.artifact.digest):
        return f"its artifact {target.spec.artifact.digest} is not in the store"
    return None
