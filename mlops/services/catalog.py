"""Reading the registry: list models, show a model or version, search versions (UC-01 postcondition)."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlops.errors import UsageError
from mlops.manifests import Environment, Model, ModelVersion
from mlops.manifests.base import version_key
from mlops.services.repository import load_index
from mlops.validation.index import RepoIndex


@dataclass(frozen=True)
class ModelSummary:
    model: Model
    versions: list[ModelVersion]
    deployed: dict[int, list[str]]  # version -> environments serving it


@dataclass(frozen=True)
class VersionDetail:
    model: Model | None
    version: ModelVersion
    path: str
    environments: list[str]


@dataclass(frozen=True)
class SearchQuery:
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)  # "auc>=0.8"
    owner: str | None = None
    flavor: str | None = None
    format: str | None = None
    task: str | None = None
    environment: str | None = None


def _deployments(index: RepoIndex) -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for _, env in index.of(Environment):
        for deployment in env.spec.deployments:
            where.setdefault(deployment.version_key, []).append(env.metadata.name)
    return where


def list_models(root: Path) -> list[ModelSummary]:
    index = load_index(root)
    where = _deployments(index)
    out = []
    for _, model in sorted(index.of(Model), key=lambda item: item[1].metadata.name):
        versions = sorted(
            (v for _, v in index.of(ModelVersion) if v.metadata.name == model.metadata.name),
            key=lambda v: v.spec.version,
        )
        deployed = {v.spec.version: where[v.key] for v in versions if v.key in where}
        out.append(ModelSummary(model, versions, deployed))
    return out


def show(root: Path, ref: str) -> ModelSummary | VersionDetail:
    name, _, number = ref.partition("@")
    summaries = {s.model.metadata.name: s for s in list_models(root)}
    if name not in summaries:
        known = ", ".join(sorted(summaries)) or "none"
        raise UsageError(f"no model {name!r} in the registry (models: {known})")
    summary = summaries[name]
    if not number:
        return summary
    if not number.isdigit():
        raise UsageError(f"expected NAME or NAME@VERSION, got {ref!r}")
    version = next((v for v in summary.versions if v.spec.version == int(number)), None)
    if version is None:
        have = ", ".join(str(v.spec.version) for v in summary.versions) or "none"
        raise UsageError(f"{ref} is not registered; {name} has versions {have}")
    path = f"registry/models/{name}/versions/{number}.yaml"
    return VersionDetail(summary.model, version, path, summary.deployed.get(int(number), []))


_COMPARISON = re.compile(r"^\s*(?P<metric>[A-Za-z0-9_.-]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>-?[0-9.eE+-]+)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


def _metric_filters(expressions: list[str]) -> list[tuple[str, Callable[[float, float], bool], float]]:
    filters = []
    for expression in expressions:
        match = _COMPARISON.match(expression)
        if match is None:
            raise UsageError(f"cannot read metric filter {expression!r}; write it like 'auc>=0.8'")
        try:
            value = float(match["value"])
        except ValueError:
            raise UsageError(f"cannot read the number in {expression!r}") from None
        filters.append((match["metric"], _OPS[match["op"]], value))
    return filters


def search(root: Path, query: SearchQuery) -> list[VersionDetail]:
    index = load_index(root)
    where = _deployments(index)
    filters = _metric_filters(query.metrics)
    results = []
    for path, version in index.of(ModelVersion):
        model = index.find(Model, version.metadata.name)
        if any(
            version.spec.tags.get(k) != v and (model is None or model.spec.tags.get(k) != v)
            for k, v in query.tags.items()
        ):
            continue
        if query.owner and (model is None or query.owner.lower() not in model.spec.owner.lower()):
            continue
        if query.flavor and (model is None or model.spec.flavor != query.flavor):
            continue
        if query.task and (model is None or model.spec.task.value != query.task):
            continue
        if query.format and version.spec.artifact.format.value != query.format:
            continue
        if query.environment and query.environment not in where.get(version.key, []):
            continue
        metrics = version.spec.metrics
        if any(m not in metrics or not op(metrics[m], value) for m, op, value in filters):
            continue
        results.append(VersionDetail(model, version, path, where.get(version.key, [])))
    return sorted(results, key=lambda d: (d.version.metadata.name, d.version.spec.version))


def key_of(detail: VersionDetail) -> str:
    return version_key(detail.version.metadata.name, detail.version.spec.version)
