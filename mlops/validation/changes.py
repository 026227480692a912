"""What a change between two repository states does, in words (pure).

``validate --base`` prints these; promotion gates and access checks are decided
on the same :class:`Change` values, so what a reviewer reads is what was judged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from mlops.errors import Category, Problem
from mlops.manifests import DatasetVersion, Environment, ModelVersion
from mlops.manifests.environment import Deployment
from mlops.validation.index import RepoIndex


class Action(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    MODIFY = "modify"
    PROMOTE = "promote"
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
_MUTABLE_VERSION_FIELDS = {"description", "tags", "status", "quality"}


def describe_changes(base: RepoIndex, head: RepoIndex) -> list[Change]:
    changes: list[Change] = []
    kinds = sorted({e.manifest.kind for e in base.entries()} | {e.manifest.kind for e in head.entries()})
    for kind in kinds:
        for key in sorted(set(base.keys(kind)) | set(head.keys(kind))):
            before, after = base.get(kind, key), head.get(kind, key)
            if before is None and after is not None:
                changes.append(Change(Action.ADD, kind, key, after.path, _added_text(kind, key)))
            elif before is not None and after is None:
                changes.append(Change(Action.REMOVE, kind, key, before.path, f"removed {_noun(kind)} {key}"))
            elif before is not None and after is not None and before.manifest != after.manifest:
                if isinstance(before.manifest, Environment) and isinstance(after.manifest, Environment):
                    changes.extend(_environment_changes(after.path, before.manifest, after.manifest))
                else:
                    changes.append(Change(Action.MODIFY, kind, key, after.path, f"changed {_noun(kind)} {key}"))
    return changes


def immutability_problems(base: RepoIndex, head: RepoIndex) -> Iterator[Problem]:
    """A registered version's content is fixed: a new artifact or dataset is a new version."""
    pairs: list[tuple[str, ModelVersion | DatasetVersion, ModelVersion | DatasetVersion | None]] = [
        (path, after, base.find(ModelVersion, after.key)) for path, after in head.of(ModelVersion)
    ]
    pairs += [(path, after, base.find(DatasetVersion, after.key)) for path, after in head.of(DatasetVersion)]
    for path, after, before in pairs:
        if before is None:
            continue
        old = before.spec.model_dump()
        new = after.spec.model_dump()
        for field in sorted(set(old) | set(new)):
            if field in _MUTABLE_VERSION_FIELDS or old.get(field) == new.get(field):
                continue
            yield Problem(
                path,
                f"{after.key} is registered and immutable: '{field}' changed; register a new version instead",
                field=("spec", field),
                category=Category.POLICY,
                code="immutable-version",
            )


def _environment_changes(path: str, before: Environment, after: Environment) -> Iterator[Change]:
    env = after.metadata.name
    old = {d.name: d for d in before.spec.deployments}
    new = {d.name: d for d in after.spec.deployments}
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None and b is not None:
            yield _deploy_change(Action.DEPLOY, path, env, b, None, f"deploy {b.version_key} to {env} as {name}")
        elif a is not None and b is None:
            yield _deploy_change(
                Action.UNDEPLOY,
                path,
                env,
                a,
                a.version,
                f"remove deployment {name} ({a.version_key}) from {env}",
            )
        elif a is not None and b is not None and a != b:
            if a.model == b.model and a.version != b.version:
                word = "roll back" if b.version < a.version else "promote"
                yield _deploy_change(
                    Action.PROMOTE,
                    path,
                    env,
                    b,
                    a.version,
                    f"{word} {b.model} {a.version} -> {b.version} in {env}",
                )
            if a.model != b.model:
                yield _deploy_change(
                    Action.PROMOTE,
                    path,
                    env,
                    b,
                    None,
                    f"deployment {name} in {env} now serves {b.version_key} instead of {a.version_key}",
                )
            rest = {k for k, v in a.model_dump().items() if b.model_dump().get(k) != v} - {"model", "version"}
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
    action: Action, path: str, env: str, deployment: Deployment, from_version: int | None, text: str
) -> Change:
    return Change(
        action,
        "Environment",
        env,
        path,
        text,
        environment=env,
        model=deployment.model,
        from_version=from_version,
        to_version=deployment.version,
    )


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
    }
    if kind in words:
        return words[kind]
    return "policy" if kind.endswith("Policy") else kind
