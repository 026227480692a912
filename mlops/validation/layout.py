"""Where each kind lives, and whether a manifest's identity agrees with its path (pure).

The path is part of a manifest's identity: ``registry/models/churn/versions/3.yaml``
must say ``kind: ModelVersion``, ``name: churn`` and ``version: 3``. A name can
therefore never point outside its folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlops.errors import Category, Problem
from mlops.manifests import POLICY_KINDS, Manifest
from mlops.repo_layout import MANAGED_ROOTS as MANAGED_ROOTS

_SEG = r"(?P<name>[^/]+)"
_RULES: list[tuple[re.Pattern[str], frozenset[str], str]] = [
    (
        re.compile(rf"^registry/models/{_SEG}/model\.yaml$"),
        frozenset({"Model"}),
        "registry/models/<name>/model.yaml",
    ),
    (
        re.compile(rf"^registry/models/{_SEG}/versions/(?P<version>[^/]+)\.yaml$"),
        frozenset({"ModelVersion"}),
        "registry/models/<name>/versions/<n>.yaml",
    ),
    (
        re.compile(rf"^registry/datasets/{_SEG}/dataset\.yaml$"),
        frozenset({"Dataset"}),
        "registry/datasets/<name>/dataset.yaml",
    ),
    (
        re.compile(rf"^registry/datasets/{_SEG}/versions/(?P<version>[^/]+)\.yaml$"),
        frozenset({"DatasetVersion"}),
        "registry/datasets/<name>/versions/<n>.yaml",
    ),
    (
        re.compile(rf"^registry/datasets/{_SEG}/quality\.yaml$"),
        frozenset({"QualityRules"}),
        "registry/datasets/<name>/quality.yaml",
    ),
    (
        re.compile(rf"^registry/experiments/{_SEG}\.yaml$"),
        frozenset({"Project"}),
        "registry/experiments/<name>.yaml",
    ),
    (
        re.compile(rf"^pipelines/{_SEG}/pipeline\.yaml$"),
        frozenset({"Pipeline"}),
        "pipelines/<name>/pipeline.yaml",
    ),
    (re.compile(rf"^environments/{_SEG}\.yaml$"), frozenset({"Environment"}), "environments/<name>.yaml"),
    (re.compile(rf"^policies/{_SEG}\.yaml$"), POLICY_KINDS, "policies/<name>.yaml"),
]


@dataclass(frozen=True)
class Slot:
    kinds: frozenset[str]
    name: str
    version: str | None


def is_manifest_path(path: str) -> bool:
    """Files the loader reads as manifests. Other files under pipelines/<name>/ (step code, configs) are not."""
    if not path.endswith((".yaml", ".yml")):
        return False
    top = path.split("/", 1)[0]
    if top == "pipelines":
        return (path.count("/") == 2 and path.endswith("/pipeline.yaml")) or path.count("/") == 1
    return top in MANAGED_ROOTS


def slot_for(path: str) -> Slot | None:
    for pattern, kinds, _ in _RULES:
        match = pattern.match(path)
        if match:
            return Slot(kinds, match["name"], match.groupdict().get("version"))
    return None


def where_kind_lives(kind: str) -> str:
    for _, kinds, template in _RULES:
        if kind in kinds:
            return template
    return "?"


def path_for(kind: str, key: str) -> str | None:
    """Where the manifest of ``kind`` named ``key`` must live (None for kinds whose file name is free)."""
    name, _, version = key.partition("@")
    paths = {
        "Model": f"registry/models/{name}/model.yaml",
        "ModelVersion": f"registry/models/{name}/versions/{version}.yaml",
        "Dataset": f"registry/datasets/{name}/dataset.yaml",
        "DatasetVersion": f"registry/datasets/{name}/versions/{version}.yaml",
        "QualityRules": f"registry/datasets/{name}/quality.yaml",
        "Project": f"registry/experiments/{name}.yaml",
        "Pipeline": f"pipelines/{name}/pipeline.yaml",
        "Environment": f"environments/{name}.yaml",
    }
    return paths.get(kind)


def check_placement(path: str, manifest: Manifest) -> list[Problem]:
    version = getattr(getattr(manifest, "spec", None), "version", None)
    return check_identity(path, manifest.kind, manifest.metadata.name, version if isinstance(version, int) else None)


def check_identity(path: str, kind: str, name: str, version: int | None) -> list[Problem]:
    """The kind, name and version a manifest declares agree with where it lives."""
    slot = slot_for(path)
    if slot is None:
        return [misplaced(path, kind)]
    problems = []
    if kind not in slot.kinds:
        expected = " or ".join(sorted(slot.kinds)) if len(slot.kinds) < 4 else "a policy kind"
        problems.append(
            Problem(
                path,
                f"a {kind} does not belong here: this path holds {expected}; "
                f"{kind} manifests live at {where_kind_lives(kind)}",
                field=("kind",),
                category=Category.SCHEMA,
                code="misplaced",
            )
        )
    if name != slot.name:
        problems.append(
            Problem(
                path,
                f"name {name!r} does not match its path, which says {slot.name!r}",
                field=("metadata", "name"),
                category=Category.SCHEMA,
                code="name-mismatch",
            )
        )
    if slot.version is not None and version is not None and str(version) != slot.version:
        problems.append(
            Problem(
                path,
                f"version {version} does not match the file name {slot.version}.yaml",
                field=("spec", "version"),
                category=Category.SCHEMA,
                code="version-mismatch",
            )
        )
    return problems


def misplaced(path: str, kind: str | None = None) -> Problem:
    if path.endswith(".yml"):
        message = "manifests use the .yaml extension; rename this file"
    elif kind:
        message = f"not a place for a manifest; {kind} manifests live at {where_kind_lives(kind)}"
    else:
        message = "not a place for a manifest; see `mlops init` for the layout"
    return Problem(path, message, category=Category.SCHEMA, code="misplaced")
