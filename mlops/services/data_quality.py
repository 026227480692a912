"""`mlops data validate`: run a dataset's quality rules, record the outcome, tell who should know (UC-18).

The rules come from ``registry/datasets/<name>/quality.yaml`` (kind QualityRules) or, for a
one-off check, from ``--rules FILE``. A registered version's outcome (validated, failed or
quarantined, the score and the failed checks) is written into its manifest's ``quality``
block, the one field of a registered version that may change, and committed; ``mlops validate``
then enforces it (UC-18 4a). Notifications go to the targets the rules name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import InputError, UsageError, ValidationFailed
from mlops.manifests import DatasetVersion, QualityRules
from mlops.manifests.base import version_key
from mlops.manifests.dataset_version import QualityStatus
from mlops.services.data_tables import TableSource, read_tables, table_format
from mlops.services.data_versions import (
    LoadedRules,
    find_version,
    iso,
    repo_rules,
    rules_path,
    version_path,
    version_table,
)
from mlops.services.publish import CommitOptions, Publication, publish
from mlops.services.repository import load_index, repo_root
from mlops.services.store import repo_store
from mlops.stores.artifacts import ArtifactStore
from mlops.stores.notify import (
    Delivery,
    FileNotifier,
    Notification,
    Notifier,
    StdoutNotifier,
    WebhookNotifier,
    deliver,
)
from mlops.validation.index import RepoIndex
from mlops.validation.layout import MANAGED_ROOTS

if TYPE_CHECKING:
    import pandas as pd

    from mlops.analysis.quality import QualityResult


def file_rules(path: Path) -> LoadedRules:
    """A QualityRules manifest from any file (``--rules FILE``), with path:line:col problems."""
    from mlops.loader.positions import locate
    from mlops.loader.yaml_read import read_manifest
    from mlops.validation.schema import validate_document

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    label = str(path)
    parsed, problems = read_manifest(label, data)
    manifest = None
    if not problems:
        manifest, problems = validate_document(label, parsed)
    if problems:
        raise ValidationFailed(locate(problems, lambda _: data))
    if not isinstance(manifest, QualityRules):
        kind = getattr(manifest, "kind", "?")
        raise InputError(f"{path}: a {kind}, not QualityRules")
    return LoadedRules(manifest, label)


def reference_columns(index: RepoIndex, store: ArtifactStore, rules: QualityRules) -> dict[str, pd.Series[Any]]:
    """Columns of other dataset versions that cross-table checks compare with, read from verified blobs."""
    from mlops.analysis.quality import reference_key, references_needed

    out: dict[str, pd.Series[Any]] = {}
    for name, number, column in references_needed(rules.spec):
        other = index.find(DatasetVersion, version_key(name, number))
        if other is None:
            continue  # the check reports that it could not read the reference
        with version_table(store, other) as table:
            if table is not None and column in table.frame.columns:
                out[reference_key(f"{name}@{number}", column)] = table.frame[column].copy()
    return out


def run_rules(
    frame: pd.DataFrame,
    loaded: LoadedRules,
    index: RepoIndex,
    store: ArtifactStore,
    now: dt.datetime | None = None,
) -> QualityResult:
    from mlops.analysis.quality import evaluate
    from mlops.analysis.tabular import profile_table

    references = reference_columns(index, store, loaded.rules)
    return evaluate(frame, loaded.rules.spec, references, now=now, profile=profile_table(frame))


def quality_block(result: QualityResult, rules: str, now: dt.datetime) -> dict[str, Any]:
    """The manifest's ``spec.quality`` for a result."""
    block: dict[str, Any] = {
        "status": result.status.value,
        "score": result.score,
        "rules": rules,
        "threshold": result.threshold,
    }
    if result.failed:
        block["failed"] = [c.name for c in result.failed]
    block["checkedAt"] = iso(now)
    return block


# ------------------------------------------------------------------------------------------ notifications


def notification_for(key: str, result: QualityResult, commit: str | None = None) -> Notification:
    critical = result.critical_failures
    failed = result.failed
    summary = (
        f"dataset {key} is {result.status.value}: score {result.score:.2f} (threshold {result.threshold:.2f})"
    )
    if critical:
        summary += "; critical: " + ", ".join(f"{c.name} ({c.failing:,} rows)" for c in critical[:3])
    elif failed:
        summary += "; failed: " + ", ".join(c.name for c in failed[:3])
    payload: dict[str, Any] = {
        "dataset": key.split("@")[0],
        "version": int(key.split("@")[1]) if "@" in key else None,
        "uri": f"dataset://{key}" if "@" in key else None,
        "score": result.score,
        "threshold": result.threshold,
        "failed": [{"check": c.name, "rows": c.failing, "severity": c.severity.value} for c in failed],
        "commit": commit,
    }
    return Notification("dataset.quality", key, result.status.value, summary, payload)


def notify(
    root: Path,
    loaded: LoadedRules,
    notification: Notification,
    echo: Callable[[str], None],
) -> list[Delivery]:
    notifiers: list[Notifier] = []
    for target in loaded.rules.spec.notify:
        if notification.status not in target.on:
            continue
        if target.type == "stdout":
            notifiers.append(StdoutNotifier(echo))
        elif target.type == "file":
            path = Path(str(target.path))
            notifiers.append(FileNotifier(path if path.is_absolute() else root / path))
        else:
            notifiers.append(WebhookNotifier(str(target.url)))
    return deliver(notification, notifiers)


# ------------------------------------------------------------------------------------------ validate


@dataclass
class ValidationRun:
    target: str  # NAME@N, or the path checked
    rules: str
    result: QualityResult
    previous: QualityStatus | None = None
    publication: Publication | None = None
    recorded: str | None = None  # set when the manifest already held this outcome: nothing was written
    deliveries: list[Delivery] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # stdout notifications, for the CLI to print


def validate_version(
    root: Path,
    ref: str,
    options: CommitOptions,
    rules_file: Path | None = None,
    now: dt.datetime | None = None,
) -> ValidationRun:
    """Run the rules on a registered version, record the outcome in its manifest, notify."""
    from mlops.loader.manifest_io import edited_text

    root = repo_root(root)
    now = now or dt.datetime.now(dt.UTC)
    index = load_index(root)
    version = find_version(index, ref)
    name = version.metadata.name
    loaded = file_rules(rules_file) if rules_file is not None else repo_rules(index, name)
    if loaded is None:
        raise UsageError(
            f"{name} has no quality rules: write {rules_path(name)} (kind QualityRules) or pass --rules FILE"
        )
    store = repo_store(root)
    with version_table(store, version) as table:
        if table is None:
            raise UsageError(f"{version.key} holds no table (format {version.spec.format or 'files'}); rules need one")
        result = run_rules(table.frame, loaded, index, store, now)
    path = version_path(name, version.spec.version)
    block = quality_block(result, loaded.path if rules_file is None else _shown_rules(root, rules_file), now)

    def record(tree: Any) -> None:
        tree["spec"]["quality"] = block

    old = (root / path).read_text(encoding="utf-8")
    text = edited_text(old, record)
    run = ValidationRun(version.key, loaded.path, result, version.spec.quality.status)
    if text != old:
        run.publication = publish(root, {path: text}, _commit_message(version.key, result), options)
    else:
        run.recorded = path  # the manifest already says exactly this (same outcome, same second)
    commit = run.publication.commit if run.publication is not None else None
    notification = notification_for(version.key, result, commit)
    run.deliveries = notify(root, loaded, notification, run.messages.append)
    return run


def validate_path(root: Path, path: Path, rules_file: Path, now: dt.datetime | None = None) -> ValidationRun:
    """Run rules on files that are not registered (a check before a snapshot); nothing is recorded."""
    from mlops.loader.file_scan import scan

    loaded = file_rules(rules_file)
    files = scan(path)
    base = path if path.is_dir() else path.parent
    sources = [
        TableSource(f.rel, base / f.rel if path.is_dir() else path, fmt)
        for f in files
        if (fmt := table_format(f.rel)) is not None
    ]
    table, notes = read_tables(sources)
    if table is None:
        why = notes[0] if notes else "no CSV, TSV, Parquet or JSON lines file"
        raise UsageError(f"{path}: no table to check ({why})")
    has_repo = any((root / top).is_dir() for top in MANAGED_ROOTS)
    index = load_index(root) if has_repo else RepoIndex()
    store = repo_store(root)
    result = run_rules(table.frame, loaded, index, store, now)
    return ValidationRun(str(path), loaded.path, result)


def _shown_rules(root: Path, rules_file: Path) -> str:
    try:
        return rules_file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(rules_file)


def _commit_message(key: str, result: QualityResult) -> str:
    lines = [f"Validate {key}: {result.status.value}, score {result.score:.2f}", ""]
    passed = len(result.checks) - len(result.failed)
    lines.append(f"{passed} of {len(result.checks)} checks passed (threshold {result.threshold:.2f})")
    for check in result.failed:
        lines.append(f"failed: {check.name} ({check.severity.value}): {check.message}")
    return "\n".join(lines)



__all__ = [
    "LoadedRules",
    "ValidationRun",
    "file_rules",
    "iso",
    "notification_for",
    "notify",
    "quality_block",
    "repo_rules",
    "rules_path",
    "run_rules",
    "validate_path",
    "validate_version",
]
