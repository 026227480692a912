"""`mlops model register`: store an artifact, write its ModelVersion, record it in git (UC-01)."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlops.errors import InputError, UsageError
from mlops.inspect.formats import SUPPORTED, ArtifactInfo, UnsupportedArtifact, inspect_artifact, pack_directory
from mlops.loader.gitwrite import git_identity
from mlops.loader.manifest_io import render_manifest
from mlops.manifests import ArtifactPolicy, Model, ModelVersion
from mlops.manifests.base import check_name, version_key
from mlops.manifests.common import ArtifactFormat, Task
from mlops.services.new_version import VersionConflict, check_version, first_manifest_text, manifest_data
from mlops.services.publish import CommitOptions, Publication, publish
from mlops.services.repository import load_index, registered_versions, repo_root
from mlops.services.runs import lineage_of_run
from mlops.services.store import repo_store
from mlops.validation.index import RepoIndex


@dataclass(frozen=True)
class RegisterRequest:
    path: Path
    name: str
    version: int | None = None  # None: the next free number
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metrics_file: Path | None = None
    params_file: Path | None = None
    run_id: str | None = None
    task: str | None = None
    datasets: tuple[str, ...] = ()
    model_class: str | None = None
    commit: str | None = None  # the code's git commit (lineage); filled from the tracked run
    pipeline: str | None = None  # the pipeline that trained it (lineage)


@dataclass(frozen=True)
class RegisterResult:
    key: str
    path: str
    digest: str
    size: int
    format: ArtifactFormat
    publication: Publication
    notes: list[str]


def register_model(root: Path, request: RegisterRequest, options: CommitOptions) -> RegisterResult:
    root = repo_root(root)
    try:
        check_name(request.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    index = load_index(root)
    version = _pick_version(root, request)
    info = inspect_artifact(request.path)
    notes = _check_format_allowed(index, request, info)
    changes: dict[str, str] = {}
    model = index.find(Model, request.name)
    if model is None:
        changes[f"registry/models/{request.name}/model.yaml"] = _new_model_text(root, request, info)
    version_path = f"registry/models/{request.name}/versions/{version}.yaml"
    user_metrics = _read_mapping(request.metrics_file, "metrics")
    user_params = _read_mapping(request.params_file, "params")
    tracked = lineage_of_run(root, request.run_id)  # None unless the tracking store knows the run
    if tracked is not None:  # the run's values, under what the user states explicitly
        user_metrics = {**tracked.metrics, **user_metrics}
        user_params = {**tracked.params, **user_params}
        request = replace(
            request,
            run_id=tracked.run_id,
            datasets=request.datasets or tracked.datasets,
            commit=request.commit or tracked.commit,
        )
    # Validate everything before anything is stored or written.
    draft = _version_data(root, request, version, info, "sha256:" + "0" * 64, 0, user_metrics, user_params)
    check_version(ModelVersion, version_path, draft)
    digest, size = _store(root, request.path)
    data = _version_data(root, request, version, info, digest, size, user_metrics, user_params)
    check_version(ModelVersion, version_path, data)
    changes[version_path] = render_manifest(version_path, data)
    key = version_key(request.name, version)
    publication = publish(root, changes, _message(key, data, request), options)
    return RegisterResult(key, version_path, digest, size, info.format, publication, notes)


def _pick_version(root: Path, request: RegisterRequest) -> int:
    taken = registered_versions(root, request.name)
    next_free = (max(taken) + 1) if taken else 1
    if request.version is None:
        return next_free
    if request.version in taken:
        raise VersionConflict(
            f"{version_key(request.name, request.version)} is already registered; the next free version is "
            f"{next_free} (use --version {next_free} or --version auto)"
        )
    return request.version


def _check_format_allowed(index: RepoIndex, request: RegisterRequest, info: ArtifactInfo) -> list[str]:
    policies = [p for _, p in index.of(ArtifactPolicy)]
    allowed = (
        {f for p in policies for f in p.spec.allowedFormats} if policies else {f for f in ArtifactFormat if f.safe}
    )
    notes = []
    if info.format not in allowed:
        granted = [
            (p.metadata.name, e.reason)
            for p in policies
            for e in p.spec.exceptions
            if e.model == request.name and info.format in e.formats
        ]
        if not granted:
            raise UnsupportedArtifact(
                f"{request.path}: a {info.format.value} file; loading it runs code from the file, so it is refused. "
                f"Supported: {SUPPORTED}. A policy may allow it for one model: add an exception for "
                f"{request.name!r} to an ArtifactPolicy in policies/"
            )
        notes.append(f"{info.format.value} allowed for {request.name} by policy {granted[0][0]}: {granted[0][1]}")
    if info.format in (ArtifactFormat.SAFETENSORS, ArtifactFormat.NPZ) and not request.model_class:
        raise UsageError(
            f"{request.path}: {info.format.value} holds weights only; name the model class from this repository "
            "with --model-class module:Class"
        )
    trusted = {t for p in policies for t in p.spec.trustedSkopsTypes}
    untrusted = [t for t in info.untrusted_types if t not in trusted]
    if untrusted:
        raise UnsupportedArtifact(
            f"{request.path}: the skops file needs types no policy trusts: {', '.join(untrusted)}; "
            "trusted types come from policy (ArtifactPolicy spec.trustedSkopsTypes), never from the artifact"
        )
    return notes


def _read_mapping(path: Path | None, what: str) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from None
    try:
        import yaml

        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise InputError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: {what} must be a mapping of name: value")
    return data


def _store(root: Path, path: Path) -> tuple[str, int]:
    store = repo_store(root)
    if path.is_dir():
        with tempfile.TemporaryDirectory(prefix="mlops-pack-") as tmp:
            packed = Path(tmp) / f"{path.name}.tar"
            packed.write_bytes(pack_directory(path))
            return store.put_file(packed)
    return store.put_file(path)


def _version_data(
    root: Path,
    request: RegisterRequest,
    version: int,
    info: ArtifactInfo,
    digest: str,
    size: int,
    user_metrics: dict[str, Any],
    user_params: dict[str, Any],
) -> dict[str, Any]:
    artifact: dict[str, Any] = {"digest": digest, "size": size, "format": info.format.value}
    artifact["filename"] = request.path.name
    if request.model_class:
        artifact["modelClass"] = request.model_class
    if info.metadata:
        artifact["metadata"] = dict(sorted(info.metadata.items()))
    spec: dict[str, Any] = {"version": version}
    if request.description:
        spec["description"] = request.description
    spec["artifact"] = artifact
    metrics = {**info.metrics, **user_metrics}  # what the user states wins over what the artifact carries
    if metrics:
        spec["metrics"] = metrics
    params = {**info.params, **user_params}
    if params:
        spec["params"] = params
    if info.signature is not None and (info.signature.inputs or info.signature.outputs):
        spec["signature"] = info.signature.model_dump(exclude_none=True, exclude_defaults=True)
    if request.tags:
        spec["tags"] = dict(request.tags)
    lineage: dict[str, Any] = {}
    if request.datasets:
        lineage["datasets"] = list(request.datasets)
    if request.pipeline:
        lineage["pipeline"] = request.pipeline
    if request.commit:
        lineage["commit"] = request.commit
    run = request.run_id or info.run_id
    if run:
        lineage["run"] = run
    if lineage:
        spec["lineage"] = lineage
    who = git_identity(root)
    if who:
        spec["createdBy"] = who
    spec["createdAt"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return manifest_data(ModelVersion, request.name, spec)


def _new_model_text(root: Path, request: RegisterRequest, info: ArtifactInfo) -> str:
    if request.task is None:
        raise UsageError(
            f"model {request.name!r} does not exist yet; pass --task ({', '.join(t.value for t in Task)}) "
            "to create it with this first version"
        )
    path = f"registry/models/{request.name}/model.yaml"
    spec: dict[str, Any] = {
        "owner": git_identity(root) or "unknown",
        "task": request.task,
        "flavor": info.flavor or info.format.value,
    }
    if info.signature is not None and info.signature.inputs:
        spec["signature"] = info.signature.model_dump(exclude_none=True, exclude_defaults=True)
    return first_manifest_text(Model, path, request.name, spec, "model")


def _message(key: str, data: dict[str, Any], request: RegisterRequest) -> str:
    spec = data["spec"]
    artifact = spec["artifact"]
    lines = [f"Register {key}", ""]
    if request.description:
        lines += [request.description, ""]
    lines.append(f"artifact: {artifact['digest']} ({artifact['format']}, {artifact['size']:,} bytes)")
    if spec.get("metrics"):
        lines.append("metrics: " + ", ".join(f"{k}={v}" for k, v in spec["metrics"].items()))
    if spec.get("lineage", {}).get("run"):
        lines.append(f"run: {spec['lineage']['run']}")
    return "\n".join(lines)
