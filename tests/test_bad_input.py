"""Every error a user can cause: one line `path:line:col: what is wrong` per problem, all of them in one run,
exit 1 for violations and 2 for unreadable input or usage, and no traceback.

Each test writes manifests into a copy of the example repository (``write``), runs ``mlops validate`` through
the real CLI entry point and checks the exact problem lines. The manifests below are written out in full so
that every ``line:col`` asserted here can be counted by hand from the text in this file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result

from mlops.loader.yaml_read import MAX_DEPTH, MAX_MANIFEST_BYTES, read_manifest
from mlops.manifests import Model
from mlops.validation.schema import validate_document

Write = Callable[[str, str | bytes], Path]
Run = Callable[..., Result]

MODEL_PATH = "registry/models/demo/model.yaml"
VERSION_PATH = "registry/models/demo/versions/1.yaml"
DATASET_PATH = "registry/datasets/demo-data/dataset.yaml"

# A valid Model. Line numbers are on the right; columns are 1-based.
MODEL = (
    "apiVersion: mlops/v1\n"  # 1
    "kind: Model\n"  # 2
    "metadata:\n"  # 3
    "  name: demo\n"  # 4
    "  labels:\n"  # 5
    "    team: growth\n"  # 6
    "spec:\n"  # 7
    "  owner: growth-ml@example.com\n"  # 8
    "  description: A small demo classifier.\n"  # 9
    "  task: classification\n"  # 10
    "  flavor: sklearn\n"  # 11
    "  riskTier: low\n"  # 12
)

# A valid ModelVersion of it (the digest is one the example's seeded store holds).
DIGEST = "sha256:5e1ed69555c1083772102ab54480dfee2c7f56373d2b7b404b2f17f9b050c3dd"
VERSION = (
    "apiVersion: mlops/v1\n"  # 1
    "kind: ModelVersion\n"  # 2
    "metadata:\n"  # 3
    "  name: demo\n"  # 4
    "spec:\n"  # 5
    "  version: 1\n"  # 6
    "  description: First demo version.\n"  # 7
    "  artifact:\n"  # 8
    f"    digest: {DIGEST}\n"  # 9
    "    size: 38573\n"  # 10
    "    format: onnx\n"  # 11
    "  metrics:\n"  # 12
    "    auc: 0.79\n"  # 13
    "  lineage:\n"  # 14
    "    datasets: [dataset://customers@1]\n"  # 15
    "    pipeline: train-churn\n"  # 16
)

# A valid Dataset.
DATASET = (
    "apiVersion: mlops/v1\n"  # 1
    "kind: Dataset\n"  # 2
    "metadata:\n"  # 3
    "  name: demo-data\n"  # 4
    "spec:\n"  # 5
    "  owner: data-eng@example.com\n"  # 6
    "  description: Demo data.\n"  # 7
    "  containsPii: false\n"  # 8
)

_PROBLEM_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): ")


def swap(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced (failing loudly if the template changed)."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def validate(mlops: Run, repo: Path, *extra: str) -> Result:
    return mlops(*extra, "validate", "--repo", str(repo))


def problem_lines(result: Result) -> list[str]:
    return [line for line in result.lines if not line.startswith(("ok: ", "failed: "))]


def expect(result: Result, code: int, *problems: tuple[str, str]) -> list[str]:
    """Exactly these problems (``path:line:col:`` and a key part of the message), in this order, and this exit code.

    Nothing else may be reported: the example's other (valid) files must not produce spurious errors.
    """
    text = result.out + result.err
    assert "Traceback" not in text
    lines = problem_lines(result)
    assert result.code == code, text
    assert len(lines) == len(problems), text
    for line, (where, fragment) in zip(lines, problems, strict=True):
        assert line.startswith(f"{where} "), line
        assert fragment in line, line
        assert _PROBLEM_LINE.match(line), line
    summary = result.lines[-1]
    assert summary.startswith("failed: "), summary
    count = len(problems)
    assert f": {count} error{'s' if count != 1 else ''}," in summary, summary
    return lines


def test_the_templates_are_valid(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, MODEL)
    write(VERSION_PATH, VERSION)
    write(DATASET_PATH, DATASET)
    result = validate(mlops, example_repo)
    assert result.code == 0, result.out + result.err
    assert result.lines[-1].startswith("ok: 24 manifests: 0 errors")


# -- unreadable files: exit 2 ----------------------------------------------------------------------------------------


def test_yaml_syntax_error(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "  description: First demo version.", "  description: First: demo version."))
    write(MODEL_PATH, MODEL)
    expect(
        validate(mlops, example_repo),
        2,
        (f"{VERSION_PATH}:7:21:", "invalid YAML: mapping values are not allowed here"),
    )


def test_unclosed_flow_list(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "[dataset://customers@1]", "[dataset://customers@1"))
    write(MODEL_PATH, MODEL)
    # The list runs on into line 16, where the parser meets "pipeline:" and gives up at its colon.
    expect(validate(mlops, example_repo), 2, (f"{VERSION_PATH}:16:13:", "invalid YAML: expected ',' or ']'"))


def test_tab_in_indentation(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "  description: First", "\tdescription: First"))
    write(MODEL_PATH, MODEL)
    expect(validate(mlops, example_repo), 2, (f"{VERSION_PATH}:7:1:", "tab character: use spaces"))


def test_tab_after_a_colon(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "  task: classification", "  task:\tclassification"))
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:10:8:", "tab character"))


def test_duplicate_key(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "  description: First demo version.\n", "  description: First.\n  version: 2\n"))
    write(MODEL_PATH, MODEL)
    expect(
        validate(mlops, example_repo),
        2,
        (f"{VERSION_PATH}:8:3:", "duplicate key 'version': each key may appear once in a mapping"),
    )


def test_duplicate_key_in_a_flow_mapping(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "  labels:\n    team: growth\n", "  labels: {team: growth, team: risk}\n"))
    # line 5 is now "  labels: {team: growth, team: risk}"; the second "team" starts at column 26
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:5:26:", "duplicate key 'team'"))


def test_empty_file(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, "")
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:1:1:", "empty file: expected a manifest"))


def test_file_with_only_comments_is_empty(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, "# yaml-language-server: $schema=../../../schemas/Model.schema.json\n---\n")
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:1:1:", "empty file"))


def test_non_utf8_bytes(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "A small demo", "Café demo").encode("latin-1"))
    # line 9 is "  description: Caf\xe9 demo": 15 characters, then "Caf", so the byte 0xe9 is column 19
    expect(
        validate(mlops, example_repo),
        2,
        (f"{MODEL_PATH}:9:19:", "not UTF-8 text: byte 0xe9 cannot be decoded; save the file as UTF-8"),
    )


def test_non_utf8_column_counts_characters(example_repo: Path, write: Write, mlops: Run) -> None:
    text = swap(MODEL, "A small demo", "Über-demo \udcff").encode("utf-8", "surrogateescape")
    write(MODEL_PATH, text)
    # "  description: Über-demo " is 25 characters (26 bytes): the bad byte is character 26
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:9:26:", "byte 0xff"))


def test_control_character(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "A small demo", "A small\x00demo"))
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:9:23:", "character U+0000 (NUL) is not allowed"))


def test_alias_bomb_is_refused_without_expanding(example_repo: Path, write: Write, mlops: Run) -> None:
    # "Billion laughs": 9 levels of 10 aliases each, 10**9 "lol"s if anything expanded it.
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        aliases = ", ".join([f"*lol{level - 1}"] * 10)
        lines.append(f"lol{level}: &lol{level} [{aliases}]")
    write(MODEL_PATH, "\n".join(lines) + "\n")
    expect(
        validate(mlops, example_repo),
        2,
        (f"{MODEL_PATH}:1:7:", "YAML anchor '&lol0': anchors and aliases are not allowed in manifests"),
    )


def test_anchor_in_a_real_manifest(example_repo: Path, write: Write, mlops: Run) -> None:
    text = swap(MODEL, "    team: growth\n", "    team: &team growth\n    group: *team\n")
    write(MODEL_PATH, text)
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:6:11:", "YAML anchor '&team'"))


def test_huge_file(example_repo: Path, write: Write, mlops: Run) -> None:
    padding = "# " + "x" * 98 + "\n"
    text = MODEL + padding * (MAX_MANIFEST_BYTES // len(padding) + 1)
    assert len(text.encode()) > MAX_MANIFEST_BYTES
    write(MODEL_PATH, text)
    expect(
        validate(mlops, example_repo),
        2,
        (f"{MODEL_PATH}:1:1:", f"file is {len(text.encode()):,} bytes; manifests are limited to 1,048,576 bytes"),
    )


def test_python_object_tag(example_repo: Path, write: Write, mlops: Run) -> None:
    text = swap(MODEL, "A small demo classifier.", '!!python/object/apply:os.system ["echo pwned"]')
    write(MODEL_PATH, text)
    expect(
        validate(mlops, example_repo),
        2,
        (f"{MODEL_PATH}:9:16:", "YAML tag '!!python/object/apply:os.system' is not allowed"),
    )


def test_custom_tag(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "  flavor: sklearn", "  flavor: !sk sklearn"))
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:11:11:", "YAML tag '!sk' is not allowed"))


def test_explicit_bool_tag_on_yes_is_not_silently_a_boolean(example_repo: Path, write: Write, mlops: Run) -> None:
    write(DATASET_PATH, swap(DATASET, "containsPii: false", "containsPii: !!bool yes"))
    expect(validate(mlops, example_repo), 2, (f"{DATASET_PATH}:8:16:", "'yes' is not a valid !!bool"))


def test_two_documents_in_one_file(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, MODEL + "---\n" + MODEL)
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:13:1:", "a second YAML document ('---')"))


def test_yaml_1_1_directive(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, "%YAML 1.1\n---\n" + MODEL)
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:1:1:", "%YAML 1.1 directive"))


def test_merge_key(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "    team: growth\n", "    <<: {team: growth}\n"))
    expect(validate(mlops, example_repo), 2, (f"{MODEL_PATH}:6:5:", "merge key '<<'"))


def test_too_deep(example_repo: Path, write: Write, mlops: Run) -> None:
    deep = "[" * 10_000 + "]" * 10_000
    write(MODEL_PATH, swap(MODEL, "  flavor: sklearn", f"  flavor: {deep}"))
    expect(
        validate(mlops, example_repo),
        2,
        # the mapping, spec and 62 lists make 64 levels; the 63rd "[" (column 10 + 63) is one too many
        (f"{MODEL_PATH}:11:{10 + MAX_DEPTH - 1}:", f"nested more than {MAX_DEPTH} levels deep"),
    )


# -- violations: exit 1 ----------------------------------------------------------------------------------------------


def test_a_list_instead_of_a_mapping(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, "- apiVersion: mlops/v1\n- kind: Model\n")
    expect(
        validate(mlops, example_repo),
        1,
        (f"{MODEL_PATH}:1:1:", "expected a mapping with apiVersion, kind, metadata and spec; got a list"),
    )


def test_a_null_document(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, "~\n")
    expect(validate(mlops, example_repo), 1, (f"{MODEL_PATH}:1:1:", "expected a mapping with apiVersion"))


def test_wrong_type(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "    auc: 0.79", "    auc: high"))
    write(MODEL_PATH, MODEL)
    expect(
        validate(mlops, example_repo),
        1,
        (f"{VERSION_PATH}:13:5:", "spec.metrics.auc: expected a number, got 'high' (string)"),
    )


def test_number_where_text_is_wanted(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "  flavor: sklearn", "  flavor: 1.10"))
    expect(
        validate(mlops, example_repo),
        1,
        (f"{MODEL_PATH}:11:3:", "spec.flavor: expected a string, got 1.1 (number); quote the value if you meant text"),
    )


def test_quoted_number_where_a_number_is_wanted(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "    size: 38573", '    size: "38573"'))
    write(MODEL_PATH, MODEL)
    expect(
        validate(mlops, example_repo),
        1,
        (f"{VERSION_PATH}:10:5:", "spec.artifact.size: expected an integer, got '38573' (string); write the number"),
    )


def test_missing_required_field(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "    format: onnx\n", ""))
    write(MODEL_PATH, MODEL)
    # A missing field points at the mapping that should hold it: the "artifact:" key on line 8.
    expect(
        validate(mlops, example_repo), 1, (f"{VERSION_PATH}:8:3:", "spec.artifact.format: required field is missing")
    )


def test_missing_spec(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, MODEL.split("spec:\n")[0])
    expect(validate(mlops, example_repo), 1, (f"{MODEL_PATH}:1:1:", "spec: required field is missing"))


def test_empty_required_value(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "  owner: growth-ml@example.com", "  owner:"))
    expect(
        validate(mlops, example_repo), 1, (f"{MODEL_PATH}:8:3:", "spec.owner: expected a string, got an empty value")
    )


def test_unknown_field_with_did_you_mean(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "  riskTier: low", "  riskTeir: low"))
    expect(
        validate(mlops, example_repo),
        1,
        (f"{MODEL_PATH}:12:3:", "spec.riskTeir: unknown field 'riskTeir' (did you mean 'riskTier'?)"),
    )


def test_unknown_field_lists_what_is_allowed(example_repo: Path, write: Write, mlops: Run) -> None:
    write(DATASET_PATH, swap(DATASET, "  containsPii: false", "  containsPii: false\n  zzz: 1"))
    expect(
        validate(mlops, example_repo),
        1,
        (f"{DATASET_PATH}:9:3:", "spec.zzz: unknown field 'zzz'; allowed here: containsPii, dataClass, description"),
    )


def test_non_text_key(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "    team: growth", "    2024: growth"))
    expect(
        validate(mlops, example_repo), 1, (f"{MODEL_PATH}:6:5:", "key 2024 is read as integer, but keys here are text")
    )


def test_dangling_dataset_reference(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "dataset://customers@1", "dataset://customers@9"))
    write(MODEL_PATH, MODEL)
    expect(
        validate(mlops, example_repo),
        1,
        (f"{VERSION_PATH}:15:16:", "spec.lineage.datasets[0]: dataset version 'customers@9' does not exist"),
    )


def test_dangling_pipeline_reference_with_did_you_mean(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "pipeline: train-churn", "pipeline: train-chrun"))
    write(MODEL_PATH, MODEL)
    expect(
        validate(mlops, example_repo),
        1,
        (f"{VERSION_PATH}:16:5:", "pipeline 'train-chrun' does not exist (did you mean 'train-churn'?)"),
    )


def test_version_of_a_model_that_does_not_exist(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, VERSION)  # no registry/models/demo/model.yaml
    expect(validate(mlops, example_repo), 1, (f"{VERSION_PATH}:4:3:", "metadata.name: model 'demo' does not exist"))


@pytest.mark.parametrize(
    "name",
    ["../../etc", "demo/../../x", "Demo", "DEMO", "my demo", "'demo '", "-demo", "démo", "'.'", "'..'", "''"],
)
def test_invalid_name(example_repo: Path, write: Write, mlops: Run, name: str) -> None:
    write(MODEL_PATH, swap(MODEL, "  name: demo\n", f"  name: {name}\n"))
    expect(validate(mlops, example_repo), 1, (f"{MODEL_PATH}:4:3:", "metadata.name: invalid name"))


def test_invalid_name_says_why(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "  name: demo\n", "  name: ../../etc\n"))
    (line,) = expect(validate(mlops, example_repo), 1, (f"{MODEL_PATH}:4:3:", "invalid name '../../etc'"))
    assert "lower-case letters, digits and '-'" in line
    assert "'/', '..', spaces and capitals are refused" in line


def test_invalid_folder_name(example_repo: Path, write: Write, mlops: Run) -> None:
    write("registry/models/My Model/model.yaml", swap(MODEL, "  name: demo\n", "  name: My Model\n"))
    expect(validate(mlops, example_repo), 1, ("registry/models/My Model/model.yaml:4:3:", "invalid name 'My Model'"))


def test_wrong_api_version(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "apiVersion: mlops/v1", "apiVersion: mlops/v2"))
    expect(
        validate(mlops, example_repo),
        1,
        (f"{MODEL_PATH}:1:1:", "apiVersion: unsupported apiVersion 'mlops/v2'; expected 'mlops/v1'"),
    )


def test_unknown_kind_with_did_you_mean(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "kind: Model", "kind: Modle"))
    (line,) = expect(
        validate(mlops, example_repo), 1, (f"{MODEL_PATH}:2:1:", "kind: unknown kind 'Modle' (did you mean 'Model'?)")
    )
    assert "known kinds: Model, ModelVersion" in line


def test_name_does_not_match_its_folder(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, swap(MODEL, "  name: demo\n", "  name: other\n"))
    expect(
        validate(mlops, example_repo),
        1,
        (f"{MODEL_PATH}:4:3:", "metadata.name: name 'other' does not match its path, which says 'demo'"),
    )


def test_version_does_not_match_its_file_name(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "  version: 1\n", "  version: 2\n"))
    write(MODEL_PATH, MODEL)
    expect(
        validate(mlops, example_repo),
        1,
        (f"{VERSION_PATH}:6:3:", "spec.version: version 2 does not match the file name 1.yaml"),
    )


def test_kind_in_the_wrong_place(example_repo: Path, write: Write, mlops: Run) -> None:
    write("registry/models/demo/versions/1.yaml", MODEL)
    expect(
        validate(mlops, example_repo),
        1,
        (f"{VERSION_PATH}:2:1:", "kind: a Model does not belong here: this path holds ModelVersion"),
    )


def test_file_where_no_manifest_belongs(example_repo: Path, write: Write, mlops: Run) -> None:
    write("registry/models/demo/notes.yaml", MODEL)
    expect(
        validate(mlops, example_repo),
        1,
        (
            "registry/models/demo/notes.yaml:1:1:",
            "not a place for a manifest; Model manifests live at registry/models/<name>/model.yaml",
        ),
    )


def test_yml_extension(example_repo: Path, write: Write, mlops: Run) -> None:
    write("registry/models/demo/model.yml", MODEL)
    expect(
        validate(mlops, example_repo),
        1,
        ("registry/models/demo/model.yml:1:1:", "manifests use the .yaml extension; rename this file"),
    )


# -- the YAML 1.1 traps ----------------------------------------------------------------------------------------------


def test_no_in_an_enum_field_is_an_error_naming_the_allowed_values(
    example_repo: Path, write: Write, mlops: Run
) -> None:
    write(MODEL_PATH, swap(MODEL, "  riskTier: low", "  riskTier: no"))
    expect(
        validate(mlops, example_repo),
        1,
        (f"{MODEL_PATH}:12:3:", "spec.riskTier: must be 'low', 'medium', 'high' or 'critical', got 'no'"),
    )


def test_on_and_no_in_text_fields_stay_text(example_repo: Path, write: Write, mlops: Run) -> None:
    text = swap(MODEL, "    team: growth", "    team: on\n    reviewed: no")
    text = swap(text, "A small demo classifier.", "on")
    write(MODEL_PATH, text)
    result = validate(mlops, example_repo)
    assert result.code == 0, result.out + result.err
    data, problems = read_manifest(MODEL_PATH, (example_repo / MODEL_PATH).read_bytes())
    assert problems == []
    assert data["metadata"]["labels"] == {"team": "on", "reviewed": "no"}
    manifest, problems = validate_document(MODEL_PATH, data)
    assert problems == []
    assert isinstance(manifest, Model)
    assert manifest.spec.description == "on"
    assert manifest.metadata.labels == {"team": "on", "reviewed": "no"}


def test_1e3_in_an_integer_field_is_an_error_that_says_what_to_write(
    example_repo: Path, write: Write, mlops: Run
) -> None:
    # YAML 1.2 reads 1e3 as the float 1000.0; integer fields are strict, so it is refused with the fix spelled out.
    write(VERSION_PATH, swap(VERSION, "    size: 38573", "    size: 1e3"))
    write(MODEL_PATH, MODEL)
    expect(
        validate(mlops, example_repo),
        1,
        (
            f"{VERSION_PATH}:10:5:",
            "spec.artifact.size: expected an integer, got 1000.0 (number); write the whole number 1000",
        ),
    )


def test_1e3_in_a_number_field_is_a_number(example_repo: Path, write: Write, mlops: Run) -> None:
    write(VERSION_PATH, swap(VERSION, "    auc: 0.79", "    auc: 79e-2"))
    write(MODEL_PATH, MODEL)
    assert validate(mlops, example_repo).code == 0


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "ON"])
def test_yes_in_a_boolean_field_says_to_write_true_or_false(
    example_repo: Path, write: Write, mlops: Run, word: str
) -> None:
    write(DATASET_PATH, swap(DATASET, "containsPii: false", f"containsPii: {word}"))
    expect(
        validate(mlops, example_repo),
        1,
        (
            f"{DATASET_PATH}:8:3:",
            f"spec.containsPii: expected true or false, got '{word}' (string); "
            "YAML 1.2 reads yes/no/on/off as text: write true or false",
        ),
    )


def test_quoted_false_in_a_boolean_field(example_repo: Path, write: Write, mlops: Run) -> None:
    write(DATASET_PATH, swap(DATASET, "containsPii: false", 'containsPii: "false"'))
    expect(validate(mlops, example_repo), 1, (f"{DATASET_PATH}:8:3:", "write false without quotes"))


def test_true_in_a_boolean_field_is_fine(example_repo: Path, write: Write, mlops: Run) -> None:
    write(DATASET_PATH, swap(DATASET, "containsPii: false", "containsPii: True"))
    assert validate(mlops, example_repo).code == 0


# -- valid after all -------------------------------------------------------------------------------------------------


def test_bom_prefixed_file_is_valid(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, b"\xef\xbb\xbf" + MODEL.encode())
    result = validate(mlops, example_repo)
    assert result.code == 0, result.out + result.err


def test_bom_does_not_shift_positions(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, b"\xef\xbb\xbf" + swap(MODEL, "kind: Model", "kind: Modle").encode())
    expect(validate(mlops, example_repo), 1, (f"{MODEL_PATH}:2:1:", "unknown kind 'Modle'"))


def test_crlf_line_endings_are_valid_and_positions_hold(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, MODEL.replace("\n", "\r\n").encode())
    assert validate(mlops, example_repo).code == 0
    write(MODEL_PATH, swap(MODEL, "  riskTier: low", "  riskTier: huge").replace("\n", "\r\n").encode())
    expect(validate(mlops, example_repo), 1, (f"{MODEL_PATH}:12:3:", "got 'huge'"))


def test_ampersand_and_star_in_text_are_not_anchors(example_repo: Path, write: Write, mlops: Run) -> None:
    text = swap(MODEL, "A small demo classifier.", "R&D *beta* model for A&B tests")
    text = swap(text, "    team: growth", '    team: "growth\tand risk"')  # a tab inside quotes is fine
    write(MODEL_PATH, text)
    result = validate(mlops, example_repo)
    assert result.code == 0, result.out + result.err
    data, _ = read_manifest(MODEL_PATH, text.encode())
    assert data["spec"]["description"] == "R&D *beta* model for A&B tests"
    assert data["metadata"]["labels"]["team"] == "growth\tand risk"


# -- all problems in one run -----------------------------------------------------------------------------------------


def test_all_problems_in_one_run_sorted_by_path_and_line(example_repo: Path, write: Write, mlops: Run) -> None:
    write(DATASET_PATH, swap(DATASET, "containsPii: false", "containsPii: yes"))
    model = swap(MODEL, "  riskTier: low", "  riskTeir: low")
    model = swap(model, "  owner: growth-ml@example.com", "  owner: 42")
    write(MODEL_PATH, model)
    write(VERSION_PATH, swap(VERSION, "  description: First", "\tdescription: First"))
    write("registry/models/churn/versions/9.yaml", swap(VERSION, "  name: demo", "  name: churn"))
    write("environments/qa.yaml", "kind: Environment\n")
    lines = expect(
        validate(mlops, example_repo),
        2,  # an unreadable file makes it 2, even with violations beside it
        ("environments/qa.yaml:1:1:", "missing required field 'apiVersion' (use mlops/v1)"),
        (f"{DATASET_PATH}:8:3:", "spec.containsPii: expected true or false, got 'yes'"),
        ("registry/models/churn/versions/9.yaml:6:3:", "version 1 does not match the file name 9.yaml"),
        (f"{MODEL_PATH}:8:3:", "spec.owner: expected a string, got 42 (integer)"),
        (f"{MODEL_PATH}:12:3:", "spec.riskTeir: unknown field"),
        (f"{VERSION_PATH}:7:1:", "tab character"),
    )
    keys = []
    for line in lines:
        match = _PROBLEM_LINE.match(line)
        assert match is not None
        keys.append((match["path"], int(match["line"]), int(match["col"])))
    assert keys == sorted(keys)


def test_violations_only_exit_1_and_json_has_the_same_positions(example_repo: Path, write: Write, mlops: Run) -> None:
    write(DATASET_PATH, swap(DATASET, "containsPii: false", "containsPii: yes"))
    write(MODEL_PATH, swap(MODEL, "  riskTier: low", "  riskTier: no"))
    expect(
        validate(mlops, example_repo),
        1,
        (f"{DATASET_PATH}:8:3:", "spec.containsPii"),
        (f"{MODEL_PATH}:12:3:", "spec.riskTier"),
    )
    report = json.loads(mlops("validate", "--repo", str(example_repo), "--format", "json").out)
    assert report["exitCode"] == 1
    assert [(p["path"], p["line"], p["col"], p["field"]) for p in report["problems"]] == [
        (DATASET_PATH, 8, 3, "spec.containsPii"),
        (MODEL_PATH, 12, 3, "spec.riskTier"),
    ]


def test_traceback_flag_is_accepted_and_changes_nothing_for_violations(
    example_repo: Path, write: Write, mlops: Run
) -> None:
    write(MODEL_PATH, swap(MODEL, "  riskTier: low", "  riskTier: no"))
    write(VERSION_PATH, swap(VERSION, "    auc: 0.79", "    auc: high"))
    plain = validate(mlops, example_repo)
    traced = validate(mlops, example_repo, "--traceback")
    expected = (
        (f"{MODEL_PATH}:12:3:", "spec.riskTier: must be"),
        (f"{VERSION_PATH}:13:5:", "spec.metrics.auc: expected a number"),
    )
    expect(plain, 1, *expected)
    expect(traced, 1, *expected)
    assert traced.out == plain.out
    assert traced.err == plain.err


def test_traceback_flag_with_unreadable_input(example_repo: Path, write: Write, mlops: Run) -> None:
    write(MODEL_PATH, "")
    traced = validate(mlops, example_repo, "--traceback")
    expect(traced, 2, (f"{MODEL_PATH}:1:1:", "empty file"))


# -- usage: exit 2 ---------------------------------------------------------------------------------------------------


def test_repository_that_does_not_exist(tmp_path: Path, mlops: Run) -> None:
    result = mlops("validate", "--repo", str(tmp_path / "nowhere"))
    assert result.code == 2
    assert result.lines == [f"error: {tmp_path / 'nowhere'}: no such directory"]


def test_directory_that_is_not_a_repository(tmp_path: Path, mlops: Run) -> None:
    result = mlops("validate", "--repo", str(tmp_path))
    assert result.code == 2
    assert len(result.lines) == 1
    assert "not an mlops repository" in result.lines[0]
    assert "Traceback" not in result.out + result.err


@pytest.mark.parametrize("args", [("--bogus",), ("--format", "xml"), ("--base",)])
def test_bad_options(example_repo: Path, mlops: Run, args: tuple[str, ...]) -> None:
    result = mlops("validate", "--repo", str(example_repo), *args)
    assert result.code == 2
    assert "Traceback" not in result.out + result.err
    assert result.lines[-1].startswith("Error: ")
