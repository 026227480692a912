"""Reusing the last verdict: a warm `validate` says exactly what a run without any cache says, edit after edit.

Each scenario starts from a copy of the example repository that was validated once (so a verdict is
recorded), then applies edits one at a time; after each edit the warm report (cache on) must equal the
report of ``validate_repository(root, use_cache=False)``, and the warm run must have reused the recorded
verdict exactly when the edit allows it (``ValidationReport.reused``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SEED

from mlops.loader.cache import ParseCache, blob_id
from mlops.manifests import ModelVersion
from mlops.services import validate as service
from mlops.services.validate import ValidationReport, validate_repository
from mlops.stores.factory import open_artifact_store
from mlops.validation.index import Entry
from mlops.validation.reuse import RecordedVerdict, plan_reuse

V1 = "registry/models/churn/versions/1.yaml"  # no rule reads it in full: nothing is deployed from it
V2 = "registry/models/churn/versions/2.yaml"  # deployed in staging and production: rules read its metrics
DATASET = "registry/datasets/customers/dataset.yaml"
PRODUCTION = "environments/production.yaml"
STEPS = "pipelines/train-churn/steps.py"
V1_DIGEST = "sha256:5be92f10dede2ff4b23cc1b7251cfef12ec5ad13c40e1fa5ab1dd007ca85d827"

Edit = Callable[[Path], None]


def replace(rel: str, old: str, new: str) -> Edit:
    def apply(root: Path) -> None:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{rel}: expected exactly one {old!r}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    return apply


def describe(rel: str, text: str) -> Edit:
    """Set the first ``description:`` of ``rel`` (facts stay the same)."""

    def apply(root: Path) -> None:
        path = root / rel
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("description:"))
        indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
        lines[at] = f"{indent}description: {text}\n"
        path.write_text("".join(lines), encoding="utf-8")

    return apply


def insert_line_above(rel: str, anchor: str, line: str) -> Edit:
    def apply(root: Path) -> None:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        assert text.count(anchor) == 1
        path.write_text(text.replace(anchor, line + "\n" + anchor), encoding="utf-8")

    return apply


def delete(rel: str) -> Edit:
    return lambda root: (root / rel).unlink()


def add_version_4(root: Path) -> None:
    versions = root / "registry" / "models" / "churn" / "versions"
    text = (versions / "3.yaml").read_text(encoding="utf-8")
    (versions / "4.yaml").write_text(text.replace("version: 3", "version: 4", 1), encoding="utf-8")


def move(rel: str, to: str) -> Edit:
    def apply(root: Path) -> None:
        (root / to).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).rename(root / to)

    return apply


def both(*edits: Edit) -> Edit:
    def apply(root: Path) -> None:
        for edit in edits:
            edit(root)

    return apply


def nothing(root: Path) -> None:
    pass


Summary = tuple[int, int, str | None, list[tuple[Any, ...]]]


def summary(report: ValidationReport) -> Summary:
    problems = [(p.path, p.line, p.col, p.message, p.severity, p.code) for p in report.problems]
    return int(report.exit_code), report.documents, report.store_url, problems


def codes(report: ValidationReport) -> list[str]:
    return [p.code for p in report.problems]


def warm_equals_cold(root: Path) -> ValidationReport:
    warm = validate_repository(root)
    cold = validate_repository(root, use_cache=False)
    assert not cold.reused
    assert summary(warm) == summary(cold)
    return warm


# (edit, whether the warm run after it reuses the verdict, a problem code the report must have or None)
Step = tuple[Edit, bool, str | None]

SCENARIOS: dict[str, list[Step]] = {
    "description edits reuse, repeatedly": [
        (describe(V1, "Baseline, described again."), True, None),
        (describe(V1, "Baseline, described a third time."), True, None),
        (describe(DATASET, "Customers, described again."), True, None),
        (nothing, True, None),
    ],
    "an environment's pointed version is read in full": [
        (replace(PRODUCTION, "model: churn\n      version: 2", "model: churn\n      version: 3"), False, None),
        (describe(PRODUCTION, "Production, described again."), False, None),
        (describe(V1, "Baseline, described again."), True, None),
    ],
    "a deployed version's metrics are read by the promotion floor": [
        (replace(V2, "auc: 0.7913", "auc: 0.70"), False, "metric-floor"),
        (describe(V1, "Baseline, described again."), True, "metric-floor"),
        (replace(V2, "auc: 0.70", "auc: 0.7913"), False, None),
    ],
    "a dangling reference appears, moves, stays and goes": [
        (replace(V1, "dataset://customers@1", "dataset://customers@9"), False, "dangling-reference"),
        # Lines move above the problem, in its own file: it is placed again, on the fast path.
        (
            both(
                insert_line_above(V1, "  lineage:", "  # lineage as recorded when it was trained"),
                describe(V1, "Baseline, described again."),
            ),
            True,
            "dangling-reference",
        ),
        # Another file changes: the problem keeps the position recorded for it.
        (describe(DATASET, "Customers, described again."), True, "dangling-reference"),
        (replace(V1, "dataset://customers@9", "dataset://customers@1"), False, None),
        (describe(V1, "Baseline, described once more."), True, None),
    ],
    "files are deleted and added": [
        (delete(V1), False, None),
        (describe(DATASET, "Customers, described again."), True, None),
        (add_version_4, False, None),
        (describe("registry/models/churn/versions/4.yaml", "Version four."), True, None),
    ],
    "a file becomes schema-invalid, then valid again": [
        (replace(V1, "auc: 0.7882", "auc: high"), False, "schema"),
        (describe(DATASET, "Customers, described again."), True, "schema"),
        (replace(V1, "auc: high", "auc: 0.7882"), False, None),
        (describe(V1, "Baseline, described again."), True, None),
    ],
    "a policy is edited": [
        (replace("policies/promotion-production.yaml", "min: 0.78,", "min: 0.80,"), False, "metric-floor"),
        (describe(V1, "Baseline, described again."), True, "metric-floor"),
    ],
    "a pipeline's step code loses a callable": [
        (replace(STEPS, "def train(", "def fit("), False, "missing-callable"),
        (describe(V1, "Baseline, described again."), True, "missing-callable"),
        (replace(STEPS, "def fit(", "def train("), False, None),
    ],
    "a pipeline module moves away, then into a package": [
        (move(STEPS, "pipelines/train-churn/other.py"), False, "missing-callable"),
        (describe(V1, "Baseline, described again."), True, "missing-callable"),
        (move("pipelines/train-churn/other.py", "pipelines/train-churn/steps/__init__.py"), False, None),
        (describe(V1, "Baseline, described once more."), True, None),
    ],
}


@pytest.mark.parametrize("steps", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_a_warm_run_says_what_a_run_without_cache_says(example_repo: Path, steps: list[Step]) -> None:
    first = warm_equals_cold(example_repo)
    assert not first.reused  # nothing recorded yet
    for i, (edit, reused, code) in enumerate(steps):
        edit(example_repo)
        report = warm_equals_cold(example_repo)
        assert report.reused is reused, f"step {i}: reused {report.reused}, expected {reused}"
        if code is None:
            assert not report.problems, f"step {i}: {report.problems}"
        elif code == "schema":
            assert any(p.category.value == "schema" for p in report.problems), f"step {i}"
        else:
            assert code in codes(report), f"step {i}: {codes(report)}"


def test_positions_in_a_changed_file_follow_its_lines(example_repo: Path) -> None:
    replace(V1, "dataset://customers@1", "dataset://customers@9")(example_repo)
    [before] = validate_repository(example_repo).problems
    insert_line_above(V1, "apiVersion:", "# a comment")(example_repo)
    describe(V1, "Baseline, described again.")(example_repo)
    after = validate_repository(example_repo)
    assert after.reused
    [moved] = after.problems
    assert (moved.code, moved.line, moved.col) == ("dangling-reference", (before.line or 0) + 1, before.col)


def test_a_blob_gone_from_the_store_is_reported_on_the_fast_path(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not validate_repository(example_repo).problems
    # The same store without churn-1.onnx: what a store that lost that blob holds.
    smaller = example_repo / ".mlops" / "store-without-churn-1"
    store = open_artifact_store(str(smaller), example_repo)
    for file in sorted(SEED.iterdir()):
        if file.name not in ("churn-1.onnx", "manifest.json"):
            store.put_file(file)
    assert store.missing([V1_DIGEST]) == {V1_DIGEST}
    monkeypatch.setenv("MLOPS_STORE", str(smaller))
    for edit in (nothing, describe(V1, "Baseline, described again.")):
        edit(example_repo)
        report = warm_equals_cold(example_repo)
        assert report.reused
        assert [(p.path, p.code) for p in report.problems] == [(V1, "missing-blob")]
        assert report.problems[0].line is not None


def verdict_files(root: Path) -> list[Path]:
    return sorted((root / ".mlops" / "cache").rglob("verdict-*.marshal"))


def test_a_damaged_verdict_is_ignored(example_repo: Path) -> None:
    replace(V1, "dataset://customers@1", "dataset://customers@9")(example_repo)
    validate_repository(example_repo)
    [file] = verdict_files(example_repo)
    file.write_bytes(file.read_bytes()[:-7] + b"garbage")
    describe(V1, "Baseline, described again.")(example_repo)
    report = warm_equals_cold(example_repo)
    assert not report.reused
    assert codes(report) == ["dangling-reference"]
    assert warm_equals_cold(example_repo).reused  # recorded again


def test_a_verdict_of_other_rules_is_not_reused(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    validate_repository(example_repo)
    monkeypatch.setattr(service, "rules_version", lambda schema: "other rules")
    assert not validate_repository(example_repo).reused


def test_base_and_no_cache_runs_neither_reuse_nor_record(example_repo: Path) -> None:
    assert not validate_repository(example_repo, use_cache=False).reused
    assert not verdict_files(example_repo)
    assert not validate_repository(example_repo, base="main").reused
    assert not verdict_files(example_repo)
    validate_repository(example_repo)
    assert not validate_repository(example_repo, base="main").reused


def test_the_fast_path_validates_only_the_changed_documents(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    validate_repository(example_repo)
    describe(V1, "Baseline, described again.")(example_repo)
    seen: list[list[str]] = []
    real = service.build_index

    def spy(documents: Any) -> Any:
        documents = list(documents)
        seen.append([doc.path for doc in documents])
        return real(documents)

    monkeypatch.setattr(service, "build_index", spy)
    assert validate_repository(example_repo).reused
    assert seen == [[V1]]


def test_what_blocks_reuse_is_said() -> None:
    recorded = RecordedVerdict(
        rules="r",
        blobs={"a.yaml": "1", "b.yaml": "2", "c.yaml": "3", "d.yaml": None},
        accessed=frozenset({"b.yaml"}),
        broken=frozenset({"c.yaml"}),
        code=(),
        problems=(),
        located=(),
        artifacts=(),
    )
    facts = {"1": ("facts",), "2": ("facts",), "x": ("facts",)}
    same = dict(recorded.blobs)
    assert plan_reuse(recorded, {**same, "d.yaml": "4"}, facts) == "d.yaml did not validate before"
    same["d.yaml"] = None
    assert plan_reuse(recorded, same, facts) == "d.yaml cannot be read"
    same = {"a.yaml": "1", "b.yaml": "2", "c.yaml": "3", "d.yaml": "x"}
    recorded = RecordedVerdict(**{**recorded.__dict__, "blobs": same})
    assert plan_reuse(recorded, same, facts) == []
    assert plan_reuse(recorded, {**same, "a.yaml": "9"}, facts) == ["a.yaml"]
    assert plan_reuse(recorded, {**same, "a.yaml": "9"}, {**facts, "1": None}) == (
        "a.yaml: the facts of its previous content are not known any more"
    )
    assert plan_reuse(recorded, same, {"1": ("facts",), "2": ("facts",)}) == "d.yaml: its facts are not cached any more"
    assert plan_reuse(recorded, {**same, "b.yaml": "9"}, facts) == "b.yaml was read in full by a rule"
    assert plan_reuse(recorded, {**same, "c.yaml": "9"}, facts) == "c.yaml did not validate before"
    assert plan_reuse(recorded, {"a.yaml": "1"}, facts) == "files were added or removed"


def test_an_entry_knows_whether_its_content_was_read(example_repo: Path) -> None:
    data = yaml.safe_load((example_repo / V1).read_text(encoding="utf-8"))
    fresh = Entry(V1, ModelVersion.model_validate(data))
    cached = Entry(V1, facts=fresh.facts, data=data)
    for entry in (fresh, cached):
        assert not entry.accessed
        assert entry.facts.key == "churn@1" and not entry.accessed  # facts are not the content
        assert isinstance(entry.manifest, ModelVersion)
        assert entry.accessed


def test_a_copied_verdict_folder_is_harmless(example_repo: Path, tmp_path: Path) -> None:
    """Another clone with the same files but its own inodes: stats differ, blob ids do not."""
    validate_repository(example_repo)
    clone = tmp_path / "clone"
    shutil.copytree(example_repo, clone)
    describe(V1, "Baseline, described again.")(clone)
    assert warm_equals_cold(clone).reused


def test_recent_cache_entries_are_kept_beside_the_maps_and_a_damaged_file_of_them_is_ignored(
    example_repo: Path,
) -> None:
    validate_repository(example_repo)
    describe(V1, "Baseline, described again.")(example_repo)
    assert validate_repository(example_repo).reused
    cache = next((example_repo / ".mlops" / "cache").iterdir())
    [recent] = cache.glob("facts-*.recent.marshal")  # the new blob's facts, without rewriting every file's
    assert ParseCache.for_repo(example_repo).facts_for(blob_id((example_repo / V1).read_bytes()))
    recent.write_bytes(b"garbage")
    describe(V1, "Baseline, described a third time.")(example_repo)
    assert warm_equals_cold(example_repo).reused
