"""The JSON Schemas of the kinds: generated from the models, checked in, valid, and true of every example."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, Result
from jsonschema import Draft202012Validator

from mlops.manifests import KINDS
from mlops.services.schemas import SCHEMA_DIALECT, generate_schemas, schema_file_name

Run = Callable[..., Result]

GENERATED = generate_schemas()
SCHEMA_HINT = re.compile(r"^# yaml-language-server: \$schema=(?P<path>\S+)$")
MANAGED = ("registry", "pipelines", "environments", "policies")


def example_manifests(root: Path) -> list[Path]:
    return sorted(p for top in MANAGED for p in (root / top).rglob("*.yaml"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# Every manifest of the example, and of the starter repository `mlops init` writes (its templates).
EXAMPLES = example_manifests(ROOT)
STARTER = sorted((ROOT / "mlops/templates/starter").rglob("*.yaml"))
ALL_MANIFESTS = EXAMPLES + STARTER


def test_there_are_examples_of_every_kind() -> None:
    kinds = {load(p)["kind"] for p in EXAMPLES}
    assert kinds == set(KINDS)
    assert len(STARTER) >= 8


def test_one_schema_per_kind() -> None:
    assert sorted(GENERATED) == sorted(schema_file_name(kind) for kind in KINDS)
    on_disk = sorted(p.name for p in (ROOT / "schemas").glob("*.schema.json"))
    assert on_disk == sorted(GENERATED), "run `mlops schema export` (schemas/ holds stale or missing files)"


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_checked_in_schema_is_byte_identical_to_the_generated_one(name: str) -> None:
    path = ROOT / "schemas" / name
    assert path.is_file(), f"schemas/{name} is missing: run `mlops schema export`"
    assert path.read_bytes() == GENERATED[name].encode("utf-8"), (
        f"schemas/{name} differs from the pydantic models: run `mlops schema export` and commit the result"
    )


def test_generation_is_deterministic() -> None:
    assert generate_schemas() == GENERATED


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = json.loads(GENERATED[name])
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == SCHEMA_DIALECT
    kind = name.removesuffix(".schema.json")
    assert schema["title"] == kind
    assert schema["$id"].endswith(f"/{name}")
    assert schema["properties"]["kind"]["const"] == kind
    assert schema["additionalProperties"] is False


def test_schema_check_command_agrees(mlops: Run) -> None:
    result = mlops("schema", "check", "--dir", str(ROOT / "schemas"))
    assert result.code == 0, result.err


def test_schema_check_command_names_a_stale_schema(tmp_path: Path, mlops: Run) -> None:
    for name, text in GENERATED.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "Model.schema.json").write_text("{}\n", encoding="utf-8")
    result = mlops("schema", "check", "--dir", str(tmp_path))
    assert result.code == 1
    assert result.err.splitlines() == [
        f"{tmp_path / 'Model.schema.json'}: out of date; run `mlops schema export --out {tmp_path}`"
    ]
    # export repairs exactly that file
    result = mlops("schema", "export", "--out", str(tmp_path))
    assert result.lines == [f"1 of {len(GENERATED)} schemas updated in {tmp_path}"]
    assert (tmp_path / "Model.schema.json").read_text(encoding="utf-8") == GENERATED["Model.schema.json"]


def validator_for(kind: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(GENERATED[schema_file_name(kind)]))


@pytest.mark.parametrize("path", ALL_MANIFESTS, ids=rel)
def test_example_validates_against_its_json_schema_and_pydantic(path: Path) -> None:
    data = load(path)
    kind = data["kind"]
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator_for(kind).iter_errors(data)]
    assert errors == [], f"{rel(path)} breaks {schema_file_name(kind)}"
    manifest = KINDS[kind].model_validate(data)
    assert manifest.kind == kind


@pytest.mark.parametrize("path", EXAMPLES, ids=rel)
def test_example_starts_with_a_schema_hint_that_resolves(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = SCHEMA_HINT.match(first)
    assert match, f"{rel(path)}: first line must be '# yaml-language-server: $schema=...', is {first!r}"
    target = (path.parent / match["path"]).resolve()
    assert target.is_file(), f"{rel(path)}: {match['path']} does not exist"
    assert target.parent == (ROOT / "schemas").resolve()
    assert target.name == schema_file_name(load(path)["kind"])


def test_starter_manifests_start_with_a_schema_hint_that_resolves_after_init(tmp_path: Path, mlops: Run) -> None:
    root = tmp_path / "fresh"
    assert mlops("init", str(root), "--no-commit").code == 0
    manifests = example_manifests(root)
    assert len(manifests) == 8
    for path in manifests:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        match = SCHEMA_HINT.match(first)
        assert match, f"{path.relative_to(root)}: no schema hint on the first line"
        target = (path.parent / match["path"]).resolve()
        assert target.is_file(), f"{path.relative_to(root)}: {match['path']} does not exist"
        assert target.name == schema_file_name(load(path)["kind"])


# The schemas must also say no: a permissive schema ({}) would pass every test above.


def _churn_version() -> dict[str, Any]:
    data: dict[str, Any] = load(ROOT / "registry/models/churn/versions/2.yaml")
    return data


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["spec"].update(metrcs={}), "Additional properties are not allowed ('metrcs' was unexpected)"),
        (lambda d: d["spec"]["metrics"].update(auc="high"), "'high' is not of type 'number'"),
        (lambda d: d["spec"]["artifact"].update(digest="sha256:xyz"), "does not match"),
        (lambda d: d["spec"]["artifact"].update(format="exe"), "'exe' is not one of"),
        (lambda d: d["metadata"].update(name="../etc"), "does not match"),
        (lambda d: d.update(kind="Model"), "'ModelVersion' was expected"),
        (lambda d: d["spec"].pop("artifact"), "'artifact' is a required property"),
    ],
    ids=["typo", "type", "digest", "format", "name", "kind", "missing"],
)
def test_schema_rejects_what_pydantic_rejects(mutate: Callable[[dict[str, Any]], object], fragment: str) -> None:
    data = copy.deepcopy(_churn_version())
    mutate(data)
    messages = [e.message for e in validator_for("ModelVersion").iter_errors(data)]
    assert any(fragment in m for m in messages), messages
    with pytest.raises(ValueError):
        KINDS["ModelVersion"].model_validate(data)
