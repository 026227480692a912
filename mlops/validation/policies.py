"""Policies that can be checked from the repository alone, without a cluster or history (pure).

* artifact formats: a pickle-like artifact needs an exception in an ArtifactPolicy,
  and every exception in use is reported, so it stays visible;
* promotion floors: what an environment points at meets that environment's metric
  floors and risk-tier ceiling;
* risk tiers: a model's tier may cap the environments it may reach;
* pointers: no environment points at an archived version, nor, beyond its first
  environments, at a model trained on a dataset version that is quarantined, failed or scored
  below its quality rules' threshold;
* pipeline inputs: no pipeline reads such a dataset version (UC-18 4a).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from mlops.errors import Category, Problem, Severity
from mlops.manifests import (
    ArtifactPolicy,
    DatasetVersion,
    Environment,
    Model,
    ModelVersion,
    Pipeline,
    PromotionPolicy,
    QualityRules,
    RiskPolicy,
)
from mlops.manifests.base import parse_versioned_uri, version_key
from mlops.manifests.common import ArtifactFormat
from mlops.manifests.dataset_version import QualityStatus
from mlops.manifests.model_version import VersionStatus
from mlops.validation.index import RepoIndex


def _policy(
    path: str,
    message: str,
    field: tuple[str | int, ...] = (),
    code: str = "policy",
    severity: Severity = Severity.ERROR,
) -> Problem:
    return Problem(path, message, field=field, category=Category.POLICY, code=code, severity=severity)


def check_policies(index: RepoIndex) -> Iterator[Problem]:
    yield from _artifact_formats(index)
    yield from _environment_pointers(index)
    yield from _pipeline_inputs(index)
    yield from _promotion_floors(index)
    yield from _risk_tiers(index)


def _artifact_formats(index: RepoIndex) -> Iterator[Problem]:
    policies = list(index.of(ArtifactPolicy))
    # Which policy allows a format for every model (the first that lists it); without a policy, the safe ones.
    allowed: dict[ArtifactFormat, str | None] = {}
    if policies:
        for policy_path, policy in policies:
            for fmt in policy.spec.allowedFormats:
                allowed.setdefault(fmt, policy_path)
    else:
        allowed = dict.fromkeys((f for f in ArtifactFormat if f.safe), None)
    exceptions: dict[tuple[str, ArtifactFormat], tuple[str, str]] = {}
    for path, policy in policies:
        for exception in policy.spec.exceptions:
            for fmt in exception.formats:
                exceptions[(exception.model, fmt)] = (path, exception.reason)
    # Facts, not full manifests: this runs over every registered version (thousands) on every validate.
    for entry in index.entries(ModelVersion.KIND):
        path, name, key = entry.path, entry.facts.name, entry.key
        fmt = ArtifactFormat(entry.facts.artifact_format or "")
        field = ("spec", "artifact", "format")
        if fmt in allowed:
            if not fmt.safe:
                # Allowed for every model: legal, but every use of a code-running format stays visible.
                yield _policy(
                    path,
                    f"{key} uses {fmt.value}, which can run code when loaded; "
                    f"{allowed[fmt]} allows it for every model",
                    field,
                    "unsafe-format-allowed",
                    Severity.WARNING,
                )
            continue
        granted = exceptions.get((name, fmt))
        if granted is None:
            safe = ", ".join(f.value for f in ArtifactFormat if f.safe)
            yield _policy(
                path,
                f"format {fmt.value!r} is not allowed: it can run code when loaded. Use one of {safe}, "
                f"or add an exception for model {name!r} to an ArtifactPolicy",
                field,
                "format-not-allowed",
            )
        else:
            yield _policy(
                path,
                f"{key} uses {fmt.value} under an exception in {granted[0]} ({granted[1]})",
                field,
                "format-exception",
                Severity.WARNING,
            )


def unusable_dataset(index: RepoIndex, dataset: DatasetVersion) -> str | None:
    """Why a dataset version must not feed a pipeline or a model beyond the first environments, or None.

    Read as "<version> <reason>": "is quarantined", "scored 0.80, below the quality threshold 0.95".
    """
    quality = dataset.spec.quality
    if quality.status in (QualityStatus.QUARANTINED, QualityStatus.FAILED):
        return f"is {quality.status.value}"
    rules = index.find(QualityRules, dataset.metadata.name)
    if rules is not None and quality.score is not None and quality.score < rules.spec.threshold:
        return f"scored {quality.score:.2f}, below the quality threshold {rules.spec.threshold:.2f}"
    return None


def _first_environments(index: RepoIndex) -> list[str]:
    """Environments nothing is promoted into (the start of every promotion chain); 'development' without chains."""
    targets = {p.spec.environment for _, p in index.of(PromotionPolicy) if p.spec.previousEnvironment is not None}
    if not targets:
        return ["development"]
    return sorted(e for e in index.keys("Environment") if e not in targets) or ["development"]


def _pipeline_inputs(index: RepoIndex) -> Iterator[Problem]:
    for path, pipeline in index.of(Pipeline):
        for ref in pipeline.references():
            if ref.kind != "DatasetVersion":
                continue
            dataset = index.find(DatasetVersion, ref.key)
            if dataset is None:
                continue  # reported as a dangling reference
            reason = unusable_dataset(index, dataset)
            if reason is not None:
                yield _policy(
                    path,
                    f"dataset://{ref.key} {reason}; a pipeline cannot read it: point at a validated version",
                    ref.field,
                    "dataset-quality",
                )
            elif (
                dataset.spec.quality.status is QualityStatus.UNVALIDATED
                and index.find(QualityRules, dataset.metadata.name) is not None
            ):
                yield _policy(
                    path,
                    f"dataset://{ref.key} has not been checked against its quality rules; "
                    f"run `mlops data validate {ref.key}`",
                    ref.field,
                    "dataset-unvalidated",
                    Severity.WARNING,
                )


def _environment_pointers(index: RepoIndex) -> Iterator[Problem]:
    first = _first_environments(index)
    for path, env in index.of(Environment):
        for i, deployment in enumerate(env.spec.deployments):
            version = index.find(ModelVersion, deployment.version_key)
            if version is None:
                continue  # reported as a dangling reference
            field = ("spec", "deployments", i, "version")
            if version.spec.status is VersionStatus.ARCHIVED:
                yield _policy(path, f"{deployment.version_key} is archived and cannot be deployed", field, "archived")
            for uri in version.spec.lineage.datasets:
                _, name, number = parse_versioned_uri(uri)
                dataset = index.find(DatasetVersion, version_key(name, number))
                if dataset is None:
                    continue
                reason = unusable_dataset(index, dataset)
                if reason is not None and env.metadata.name not in first:
                    yield _policy(
                        path,
                        f"{deployment.version_key} was trained on {uri}, which {reason}; "
                        f"it cannot be deployed beyond {' or '.join(first)}",
                        field,
                        "dataset-quality",
                    )


def _promotion_floors(index: RepoIndex) -> Iterator[Problem]:
    for policy_path, policy in index.of(PromotionPolicy):
        env_entry = index.get("Environment", policy.spec.environment)
        if env_entry is None:
            continue
        env = env_entry.manifest
        assert isinstance(env, Environment)
        for i, deployment in enumerate(env.spec.deployments):
            version = index.find(ModelVersion, deployment.version_key)
            if version is None:
                continue
            field = ("spec", "deployments", i, "version")
            model = index.find(Model, deployment.model)
            for unmet in _unmet_floors(policy, version, model):
                yield _policy(
                    env_entry.path,
                    f"{deployment.version_key} in {env.metadata.name}: {unmet} (required by {policy_path})",
                    field,
                    "metric-floor",
                )
            ceiling = policy.spec.maxRiskTier
            if model is not None and ceiling is not None and model.spec.riskTier.rank > ceiling.rank:
                yield _policy(
                    env_entry.path,
                    f"model {model.metadata.name} is risk tier {model.spec.riskTier.value}; "
                    f"{env.metadata.name} accepts at most {ceiling.value} (required by {policy_path})",
                    field,
                    "risk-tier",
                )


def _unmet_floors(policy: PromotionPolicy, version: ModelVersion, model: Model | None) -> Iterable[str]:
    for floor in policy.spec.metrics:
        if floor.model is not None and floor.model != version.metadata.name:
            continue
        if floor.task is not None and (model is None or model.spec.task is not floor.task):
            continue
        value = version.spec.metrics.get(floor.metric)
        if value is None:
            yield f"metric {floor.metric!r} is not recorded, and a floor requires it"
        elif math.isnan(value):
            # NaN compares false with everything: without this it would pass every floor and ceiling.
            yield f"{floor.metric} is not a number (nan), and a floor requires a value"
        elif floor.min is not None and value < floor.min:
            yield f"{floor.metric} = {value:g} is below the floor {floor.min:g}"
        elif floor.max is not None and value > floor.max:
            yield f"{floor.metric} = {value:g} is above the ceiling {floor.max:g}"


def _risk_tiers(index: RepoIndex) -> Iterator[Problem]:
    order = _environment_order(index)
    for policy_path, policy in index.of(RiskPolicy):
        for tier in policy.spec.tiers:
            for model_path, model in index.of(Model):
                if model.spec.riskTier is not tier.tier:
                    continue
                for doc in tier.requiredDocuments:
                    if not model.metadata.annotations.get(doc, "").strip():  # an empty link documents nothing
                        yield _policy(
                            model_path,
                            f"risk tier {tier.tier.value} requires the annotation {doc!r} (required by {policy_path})",
                            ("metadata", "annotations"),
                            "risk-document",
                        )
                if tier.maxEnvironment is None or tier.maxEnvironment not in order:
                    continue
                limit = order.index(tier.maxEnvironment)
                for env_path, env in index.of(Environment):
                    if env.metadata.name not in order or order.index(env.metadata.name) <= limit:
                        continue
                    for i, deployment in enumerate(env.spec.deployments):
                        if deployment.model == model.metadata.name:
                            yield _policy(
                                env_path,
                                f"model {model.metadata.name} is risk tier {tier.tier.value}, "
                                f"allowed up to {tier.maxEnvironment} (required by {policy_path})",
                                ("spec", "deployments", i, "model"),
                                "risk-tier",
                            )


def _environment_order(index: RepoIndex) -> list[str]:
    """Environments from first to last stage, following promotion policies' previousEnvironment links."""
    previous: dict[str, str] = {}
    for _, policy in index.of(PromotionPolicy):
        if policy.spec.previousEnvironment is not None:
            previous[policy.spec.environment] = policy.spec.previousEnvironment
    ordered: list[str] = []
    for env in sorted(index.keys("Environment")):
        chain = [env]
        while chain[-1] in previous and previous[chain[-1]] not in chain:
            chain.append(previous[chain[-1]])
        for name in reversed(chain):
            if name not in ordered:
                ordered.append(name)
    return ordered
