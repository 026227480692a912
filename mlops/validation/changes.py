"""What a change between two repository states does, in words (pure).

``validate --base`` prints these; promotion gates and access checks are decided
on the same :class:`Change` values, so what a reviewer reads is what was judged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mlops.errors import Category, FieldPath, Problem
from mlops.manifests import DatasetVersion, Environment, Manifest, ModelVersion
from mlops.manifests.model_version import VersionStatus
from mlops.validation.index import RepoIndex


class Action(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    MODIFY = "modify"
    PROMOTE = "promote"
    ARCHIVE = "archive"
    RESTORE = "restore"
    DEPLOY = "deploy"
    UNDEPLOY = "undeploy"


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str
    key: str
    path: str
    text: str
    environment: str | None = None
    model: str | None = None
    from_version: int | None = None
    to_version: int | None = None


# Fields of a registered version that may change after registration; anything else makes it a new version.
_MUTABLE_VERSION_FIELDS = {"description", "tags", "status", "quality", "evaluations"}


def describe_changes(base: RepoIndex, head: RepoIndex) -> list[Change]:
    changes: list[Change] = []
    kinds = sorted({e.kind for e in base.entries()} | {e.kind for e in head.entries()})
    for kind in kinds:
        for key in sorted(set(base.keys(kind)) | set(head.keys(kind))):
            before, after = base.get(kind, key), head.get(kind, key)
            if before is None and after is not None and after.path in base.broken_paths:
                # Broken at base, valid now: a repair, not a new manifest.
                changes.append(Change(Action.MODIFY, kind, key, after.path, f"changed {_noun(kind)} {key}"))
            elif before is None and after is not None:
                model, number = _version_of(after.manifest)
                changes.append(
                    Change(Action.ADD, kind, key, after.path, _added_text(kind, key), model=model, to_version=number)
                )
            elif before is not None and after is None and before.path in head.broken_paths:
                continue  # still there but broken: its problems are reported, it was not removed
            elif before is not None and after is None:
                model, number = _version_of(before.manifest)
                text = f"removed {_noun(kind)} {key}"
                changes.append(Change(Action.REMOVE, kind, key, before.path, text, model=model, from_version=number))
            elif before is not None and after is not None and _differs(before.manifest, after.manifest):
                if isinstance(before.manifest, Environment) and isinstance(after.manifest, Environment):
                    changes.extend(_environment_changes(after.path, before.manifest, after.manifest))
                elif isinstance(before.manifest, ModelVersion) and isinstance(after.manifest, ModelVersion):
                    changes.append(_version_change(after.path, before.manifest, after.manifest))
                else:
                    changes.append(Change(Action.MODIFY, kind, key, after.path, f"changed {_noun(kind)} {key}"))
    return changes


def immutability_problems(base: RepoIndex, head: RepoIndex) -> Iterator[Problem]:
    """A registered version's content is fixed: a new artifact or dataset is a new version.

    Each changed value is reported at its own field (``spec.artifact.digest``, ``spec.metrics.auc``),
    so the annotation lands on the line that must be put back.
    """
    pairs: list[tuple[str, ModelVersion | DatasetVersion, ModelVersion | DatasetVersion | None]] = [
        (path, after, base.find(ModelVersion, after.key)) for path, after in head.of(ModelVersion)
    ]
    pairs += [(path, after, base.find(DatasetVersion, after.key)) for path, after in head.of(DatasetVersion)]
    for path, after, before in pairs:
        if before is None:
            continue
        old = before.spec.model_dump(mode="json")
        new = after.spec.model_dump(mode="json")
        for field in sorted(set(old) | set(new)):
            if field in _MUTABLE_VERSION_FIELDS:
                continue
            for sub, was, now in _differences(old.get(field), new.get(field), (field,)):
                yield Problem(
                    path,
                    f"{after.key} is registered and immutable: was {_brief(was)}, now {_brief(now)}; "
                    "register a new version instead",
                    field=("spec", *sub),
                    category=Category.POLICY,
                    code="immutable-version",
                )


def _differences(old: Any, new: Any, at: FieldPath) -> Iterator[tuple[FieldPath, Any, Any]]:
    """Leaf paths where two dumped values differ (mappings are compared key by key, lists as a whole)."""
    if old == new or (isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new)):
        return  # (nan != nan, yet an unchanged nan metric is unchanged)
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from _differences(old.get(key), new.get(key), (*at, key))
        return
    yield at, old, new


def _differs(before: Manifest, after: Manifest) -> bool:
    if before == after:
        return False
    return any(True for _ in _differences(before.model_dump(mode="json"), after.model_dump(mode="json"), ()))


def _brief(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."  # room for a whole sha256 digest


def _environment_changes(path: str, before: Environment, after: Environment) -> Iterator[Change]:
    env = after.metadata.name
    old = {d.name: d for d in before.spec.deployments}
    new = {d.name: d for d in after.spec.deployments}
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None and b is not None:
            yield _deploy_change(
                Action.DEPLOY, path, env, b.model, None, b.version, f"deploy {b.version_key} to {env} as {name}"
            )
        elif a is not None and b is None:
            # Nothing is deployed afterwards: to_version stays empty, from_version says what is taken down.
            yield _deploy_change(
                Action.UNDEPLOY,
                path,
                env,
                a.model,
                a.version,
                None,
                f"remove deployment {name} ({a.version_key}) from {env}",
            )
        elif a is not None and b is not None and a != b:
            if a.model == b.model and a.version != b.version:
                # A lower number reads as a rollback, but only history proves one: the action stays PROMOTE,
                # so the promotion gates (services/gates.py) judge it and honour it when the version served there.
                word = "roll back" if b.version < a.version else "promote"
                yield _deploy_change(
                    Action.PROMOTE,
                    path,
                    env,
                    b.model,
                    a.version,
                    b.version,
                    f"{word} {b.model} {a.version} -> {b.version} in {env}",
                )
            if a.model != b.model:
                yield _deploy_change(
                    Action.PROMOTE,
                    path,
                    env,
                    b.model,
                    None,
                    b.version,
                    f"deployment {name} in {env} now serves {b.version_key} instead of {a.version_key}",
                )
            old_fields, new_fields = a.model_dump(), b.model_dump()
            rest = {k for k, v in old_fields.items() if new_fields.get(k) != v} - {"model", "version"}
            if rest:
                yield Change(
                    Action.MODIFY,
                    "Environment",
                    env,
                    path,
                    f"change {', '.join(sorted(rest))} of deployment {name} in {env}",
                    environment=env,
                )
    if before.spec.model_dump(exclude={"deployments"}) != after.spec.model_dump(exclude={"deployments"}):
        yield Change(Action.MODIFY, "Environment", env, path, f"change settings of environment {env}", environment=env)


def _deploy_change(
    action: Action,
    path: str,
    env: str,
    model: str,
    from_version: int | None,
    to_version: int | None,
    text: str,
) -> Change:
    return Change(
        action,
        "Environment",
        env,
        path,
        text,
        environment=env,
        model=model,
        from_version=from_version,
        to_version=to_version,
    )


def _version_change(path: str, before: ModelVersion, after: ModelVersion) -> Change:
    """Archiving and restoring are the changes a registered version may go through; say which."""
    was, now = before.spec.status, after.spec.status
    if was is not now and now is VersionStatus.ARCHIVED:
        action, text = Action.ARCHIVE, f"archive model version {after.key}"
    elif was is not now and now is VersionStatus.ACTIVE:
        action, text = Action.RESTORE, f"restore archived model version {after.key}"
    else:
        action, text = Action.MODIFY, f"changed model version {after.key}"
    number = after.spec.version
    return Change(
        action, "ModelVersion", after.key, path, text, model=after.metadata.name, from_version=number, to_version=number
    )


def _version_of(manifest: Manifest) -> tuple[str | None, int | None]:
    """Model name and version number of a model version (the JSON output carries them); else nothing."""
    if isinstance(manifest, ModelVersion):
        return manifest.metadata.name, manifest.spec.version
    return None, None


def _added_text(kind: str, key: str) -> str:
    if kind in ("ModelVersion", "DatasetVersion"):
        return f"new version {key}"
    return f"new {_noun(kind)} {key}"


def _noun(kind: str) -> str:
    words = {
        "ModelVersion": "model version",
        "DatasetVersion": "dataset version",
        "Model": "model",
        "Dataset": "dataset",
        "Pipeline": "pipeline",
        "Environment": "environment",
        "Project": "project",
        "QualityRules": "quality rules of dataset",
        "RetrainingPolicy": "retraining policy",
    }
    if kind in words:
        return words[kind]
    return "policy" if kind.endswith("Policy") else kind
