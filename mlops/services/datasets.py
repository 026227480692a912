"""`mlops data list|show|get|diff`: registered dataset versions, read back (UC-16).

Snapshots are taken by :mod:`mlops.services.snapshot` and :mod:`mlops.services.snapshot_register`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.errors import InputError, UsageError
from mlops.manifests import Dataset, DatasetVersion, ModelVersion, Pipeline, QualityRules
from mlops.manifests.base import parse_versioned_uri, version_key
from mlops.services.data_tables import table_format
from mlops.services.data_versions import (
    fetch,
    find_version,
    version_files,
    version_path,
    version_table,
)
from mlops.services.repository import load_index, repo_root
from mlops.services.store import repo_store
from mlops.validation.index import RepoIndex

if TYPE_CHECKING:
    from mlops.analysis.tabular import FileDiff, RowDiff, SchemaDiff

Progress = Callable[[int, int], None]

# ------------------------------------------------------------------------------------------ catalog


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    dataset: Dataset | None
    versions: list[DatasetVersion]
    rules: QualityRules | None


@dataclass(frozen=True)
class Usage:
    kind: str  # "Pipeline" | "ModelVersion"
    key: str
    path: str


@dataclass(frozen=True)
class VersionDetail:
    version: DatasetVersion
    path: str
    dataset: Dataset | None
    rules: QualityRules | None
    used_by: list[Usage]


def list_datasets(root: Path, tags: dict[str, str] | None = None) -> list[DatasetSummary]:
    index = load_index(root)
    names = sorted(set(index.keys("Dataset")) | {v.metadata.name for _, v in index.of(DatasetVersion)})
    out = []
    for name in names:
        dataset = index.find(Dataset, name)
        versions = sorted(
            (v for _, v in index.of(DatasetVersion) if v.metadata.name == name), key=lambda v: v.spec.version
        )
        if tags:
            dataset_tags = dataset.spec.tags if dataset is not None else {}
            versions = [v for v in versions if _tagged({**dataset_tags, **v.spec.tags}, tags)]
            if not versions:
                continue
        out.append(DatasetSummary(name, dataset, versions, index.find(QualityRules, name)))
    return out


def _tagged(have: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in wanted.items())


def show(root: Path, ref: str) -> DatasetSummary | VersionDetail:
    if "@" not in ref:
        name = ref.removeprefix("dataset://")
        found = [s for s in list_datasets(root) if s.name == name]
        if not found:
            known = ", ".join(s.name for s in list_datasets(root)) or "none"
            raise UsageError(f"no dataset {name!r} in the registry (datasets: {known})")
        return found[0]
    index = load_index(root)
    version = find_version(index, ref)
    name = version.metadata.name
    return VersionDetail(
        version,
        version_path(name, version.spec.version),
        index.find(Dataset, name),
        index.find(QualityRules, name),
        usages(index, version.key),
    )


def usages(index: RepoIndex, key: str) -> list[Usage]:
    """Pipelines and model versions that read ``key`` (NAME@N)."""
    out = []
    for path, pipeline in index.of(Pipeline):
        if any(ref.kind == "DatasetVersion" and ref.key == key for ref in pipeline.references()):
            out.append(Usage("Pipeline", pipeline.metadata.name, path))
    for path, model_version in index.of(ModelVersion):
        for uri in model_version.spec.lineage.datasets:
            _, name, number = parse_versioned_uri(uri)
            if version_key(name, number) == key:
                out.append(Usage("ModelVersion", model_version.key, path))
    return sorted(out, key=lambda u: (u.kind, u.key))


# ------------------------------------------------------------------------------------------ get


@dataclass(frozen=True)
class GetResult:
    key: str
    dest: Path
    files: int
    size: int


def get(root: Path, ref: str, dest: Path, progress: Progress | None = None) -> GetResult:
    """Materialize a version's files under ``dest`` (new or empty), every byte verified, all or nothing."""
    root = repo_root(root)
    version = find_version(load_index(root), ref)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} already exists and is not an empty folder; choose a new destination")
    store = repo_store(root)
    files = version_files(store, version)
    missing = store.missing(f.digest for f in files)
    if missing:
        first = next(f for f in files if f.digest in missing)
        raise InputError(
            f"{version.key}: {len(missing):,} of {len(files):,} blobs are not in the store {store.url} "
            f"(first: {first.path} {first.digest}); snapshot the data again or point MLOPS_STORE at the shared store"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        fetch(store, files, staging, progress)
        _usual_modes(staging)
        if dest.exists():
            dest.rmdir()
        staging.replace(dest)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return GetResult(version.key, dest, len(files), version.spec.size)


def _usual_modes(folder: Path) -> None:
    """Temporary files and folders are private (0600/0700); what the user asked for gets the umask's modes."""
    mask = os.umask(0o022)
    os.umask(mask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
    folder.chmod(0o777 & ~mask)


# ------------------------------------------------------------------------------------------ diff


@dataclass(frozen=True)
class DiffResult:
    a: DatasetVersion
    b: DatasetVersion
    files: FileDiff
    schema: SchemaDiff
    rows: RowDiff | None
    notes: list[str]


def diff(root: Path, ref_a: str, ref_b: str, key: str | None = None, rows: bool = True) -> DiffResult:
    from mlops.analysis.tabular import diff_columns, diff_files, diff_rows, pick_key

    root = repo_root(root)
    index = load_index(root)
    a, b = find_version(index, ref_a), find_version(index, ref_b)
    store = repo_store(root)
    files_a, files_b = version_files(store, a), version_files(store, b)
    file_diff = diff_files(files_a, files_b)
    schema = diff_columns(a.spec.columns, b.spec.columns)
    notes: list[str] = []
    row_diff = None
    tabular = a.spec.rows is not None and b.spec.rows is not None
    if rows and tabular and not file_diff.empty:
        wanted = {f.digest for f in files_a + files_b if table_format(f.path) is not None}
        missing = store.missing(wanted)
        if missing:
            notes.append(f"rows not compared: {len(missing)} table blobs are not in the store {store.url}")
        else:
            with version_table(store, a) as table_a, version_table(store, b) as table_b:
                if table_a is not None and table_b is not None:
                    preferred = [key] if key else _key_columns(index, b.metadata.name)
                    if key and (key not in table_a.frame.columns or key not in table_b.frame.columns):
                        raise UsageError(f"--key {key}: not a column of both versions")
                    chosen = pick_key(table_a.frame, table_b.frame, preferred)
                    if key and chosen != key:
                        notes.append(f"--key {key} is not unique in both versions; whole rows were compared")
                    row_diff = diff_rows(table_a.frame, table_b.frame, chosen)
    elif rows and tabular:
        from mlops.analysis.tabular import RowDiff

        row_diff = RowDiff(None, a.spec.rows or 0, b.spec.rows or 0, 0, 0, 0)
    return DiffResult(a, b, file_diff, schema, row_diff, notes)


def _key_columns(index: RepoIndex, name: str) -> list[str]:
    rules = index.find(QualityRules, name)
    if rules is None:
        return []
    return [r.column for r in rules.spec.rules if r.unique and r.column is not None]
