"""`mlops data snapshot`, second half: register the version the first half started hashing (UC-16).

A snapshot (started in :mod:`mlops.services.snapshot`, which starts the hashing before this
module loads) hashes every file (in parallel, with a stat cache so an unchanged tree is not read
again), stores each blob once in the content-addressed store (a file that did not change
between versions is not stored again), profiles the table when there is one, runs the
dataset's quality rules when it has them (UC-16 2a), and writes
``registry/datasets/<name>/versions/<n>.yaml`` in one commit. The version is addressed as
``dataset://<name>@<n>`` from then on.

Order matters for "a failed command leaves the repository and store as they were": every
check that can refuse (unreadable tables, files changing under us, a version number taken by
other content) runs before the first blob is stored, and the manifest is written last. The
one thing a late failure (a commit git refuses, say) can leave behind is blobs nobody points
at: content-addressed, unreachable and harmless.

"Files changing under us": each file is checked (stat before and after, bytes read against
the size) as it is read, by whichever process hashes it, and its bytes go to the store from
memory, so what is stored is what was hashed. A table is read again for its profile: the whole
tree is checked once more after that, so the profile is of the bytes hashed.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import InputError, StoreError, UsageError
from mlops.loader.file_scan import ScannedFile
from mlops.loader.gitwrite import git_identity
from mlops.loader.hash_cache import HashCache
from mlops.loader.hashing import FileChanged, HashedFile, ensure_unchanged
from mlops.manifests import Dataset, DatasetVersion
from mlops.manifests.base import check_name, version_key
from mlops.manifests.dataset_version import index_fingerprint, sorted_index_bytes
from mlops.services.data_tables import Table, TableSource, read_tables, table_format
from mlops.services.data_versions import (
    LoadedRules,
    human_size,
    iso,
    registered_numbers,
    repo_rules,
    version_path,
)
from mlops.services.new_version import VersionConflict, check_version, first_manifest_text, manifest_data
from mlops.services.repository import load_index
from mlops.services.snapshot import SnapshotRequest, SnapshotStart
from mlops.services.snapshot_result import SnapshotResult
from mlops.stores.artifacts import ArtifactStore, LocalArtifactStore
from mlops.validation.index import RepoIndex

if TYPE_CHECKING:
    from mlops.analysis.quality import QualityResult
    from mlops.analysis.tabular import TableProfile

Progress = Callable[[int, int], None]

# Up to this many files are listed in the manifest itself; larger trees keep the list in one store blob
# (spec.filesIndex), so a 10,000-file snapshot stays a short, reviewable YAML file.
INLINE_FILES = 200


def register_snapshot(start: SnapshotStart, now: dt.datetime | None = None) -> SnapshotResult:
    """The rest of :func:`mlops.services.snapshot.snapshot`, while (or after) its workers hash the small files."""
    root, request = start.root, start.request
    try:
        check_name(request.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    now = now or dt.datetime.now(dt.UTC)
    broken = f"registry/datasets/{request.name}/dataset.yaml"
    index = load_index(root)
    if index.find(Dataset, request.name) is None and broken in index.broken_paths:
        raise InputError(f"{broken} has problems; `mlops validate` names them")
    return _snapshot_into(_Job(start, index, now), start.scanned)


@dataclass(frozen=True)
class _Job:
    """Everything one snapshot works with: what the first half started, the repository index, the time."""

    start: SnapshotStart
    index: RepoIndex
    now: dt.datetime


def _snapshot_into(job: _Job, scanned: list[ScannedFile]) -> SnapshotResult:
    root, request, index, now = job.start.root, job.start.request, job.index, job.now
    cache, store = job.start.cache, job.start.store
    rules = repo_rules(index, request.name) if request.profile else None
    dataset = index.find(Dataset, request.name)
    direct = _direct_candidates(root, request, scanned, cache, store)
    early: _Analysis | None = None
    if direct:
        # Large files the cache does not know go straight into the local store, hashed on the way: one read
        # instead of two. Everything that can refuse the snapshot (unreadable tables, files that move) runs
        # first, so a refusal still leaves the store as it was.
        early = _analyze(request, scanned, _common_suffix(scanned), rules, index, store, now)
        _check_unchanged(scanned)
    identity = _while_workers_hash(root, rules is not None) if job.start.run.processes > 1 else None
    hashed, read = _join_hashing(job, scanned, direct)

    # Straight from the hashed files, with no DataFile model or other record per file: the scan already refused
    # every name a DataFile would (see file_scan._check_name), and 10,000 records cost more than hashing a
    # tenth of the files. ``hashed`` is in the scan's order, sorted by path.
    # The index is the fingerprint's input, and the filesIndex blob of a large tree.
    index_bytes = sorted_index_bytes((h.rel, h.digest, h.key[0]) for h in hashed)
    fingerprint = index_fingerprint(index_bytes)
    size = sum(h.key[0] for h in hashed)
    existing = _same_content(index, request.name, fingerprint)
    number = _pick_version(root, index, request, fingerprint, existing)
    key = version_key(request.name, number)
    result = SnapshotResult(
        key=key,
        path=version_path(request.name, number),
        created=existing is None,
        fingerprint=fingerprint,
        files=len(hashed),
        size=size,
        hashed=read,
        stored=0,
        stored_bytes=0,
        streamed=len(direct),
        processes=job.start.run.processes,
    )
    if existing is not None:
        # Same content, already registered: nothing to write. Blobs a fresh store lacks are put back.
        _store_blobs(job, hashed, result, index_bytes if existing.spec.filesIndex is not None else None)
        result.format, result.rows = existing.spec.format, existing.spec.rows
        result.columns = len(existing.spec.columns)
        return result

    common = _common_suffix(hashed)  # one pass over the names, for the table check and the format
    analysis = early if early is not None else _analyze(request, hashed, common, rules, index, store, now)
    table, profile, quality = analysis.table, analysis.profile, analysis.quality
    result.notes.extend(analysis.notes)
    if table is not None:
        _check_unchanged(hashed)  # the table read is of the bytes hashed (each file read was checked as it was hashed)

    with_index = len(hashed) > INLINE_FILES
    if _store_blobs(job, hashed, result, index_bytes if with_index else None):
        _check_unchanged(hashed)  # files were read again to be stored: the bytes stored are the bytes hashed
    index_digest = fingerprint if with_index else None

    result.format = _format(hashed, table, common)
    result.rows = None if profile is None else profile.rows
    result.columns = 0 if profile is None else len(profile.columns)
    result.quality = quality
    result.rules = rules.path if rules is not None and quality is not None else None
    who = identity if identity is not None else git_identity(root)
    data = _version_data(who, request, number, hashed, fingerprint, size, index_digest, result, profile, rules, now)
    _publish_version(job, result, data, dataset is None, rules)
    return result


def _join_hashing(job: _Job, scanned: list[ScannedFile], direct: set[str]) -> tuple[list[HashedFile], int]:
    """Every file's digest (the workers', this process's, and the large files stored as they were hashed), how
    many were read, and the stat cache saved."""
    request, cache, store = job.start.request, job.start.cache, job.start.store
    hashed, read = job.start.run.finish(job.start.hash_progress, skip=direct)
    if direct:
        hashed = _merge(scanned, hashed, _store_direct(store, [s for s in scanned if s.rel in direct], cache))
        read += len(direct)
    cache.forget_under(_cache_prefix(scanned, request.path), (f.path for f in scanned))
    cache.save()  # digests are true whatever happens next; a retry need not read the files again
    return hashed, read


def _publish_version(
    job: _Job, result: SnapshotResult, data: dict[str, Any], new_dataset: bool, rules: LoadedRules | None
) -> None:
    """Write the version (and a new dataset's manifest) in one commit, then tell the quality rules' targets."""
    from mlops.loader.manifest_io import render_manifest  # ruamel: only a new version is written
    from mlops.services.publish import publish

    root, request = job.start.root, job.start.request
    changes = {result.path: render_manifest(result.path, data)}
    if new_dataset:
        changes[f"registry/datasets/{request.name}/dataset.yaml"] = _new_dataset_text(root, request)
    result.publication = publish(root, changes, _message(result.key, data, request, result), job.start.options)
    if result.quality is not None and rules is not None:
        from mlops.services.data_quality import notification_for, notify

        notification = notification_for(result.key, result.quality, result.publication.commit)
        result.deliveries = notify(root, rules, notification, result.messages.append)


def _while_workers_hash(root: Path, rules: bool) -> str | None:
    """Work a new version needs, done while forked workers hash (this process's time is free until it joins them):
    the modules that register it, and the committer's identity. An unchanged tree forks no workers."""
    import mlops.loader.manifest_io
    import mlops.services.publish

    if rules:
        import mlops.services.data_quality  # noqa: F401

    DatasetVersion.model_rebuild()  # its validator (built on first use) checks the new manifest
    return git_identity(root)


@dataclass(frozen=True)
class _Analysis:
    table: Table | None
    profile: TableProfile | None
    quality: QualityResult | None
    notes: list[str]


def _analyze(
    request: SnapshotRequest,
    files: Sequence[ScannedFile | HashedFile],
    common: str | None,
    rules: LoadedRules | None,
    index: RepoIndex,
    store: ArtifactStore,
    now: dt.datetime,
) -> _Analysis:
    """The table, its profile and the quality rules' verdict (read from the source files; ``common``: the suffix
    every file name has, if one)."""
    if not request.profile:
        return _Analysis(None, None, None, [])
    table, notes = _read_table(request.path, files, common)
    if table is None:
        if rules is not None:
            notes.append(f"quality rules in {rules.path} not run: the snapshot holds no table")
        return _Analysis(None, None, None, notes)
    from mlops.analysis.tabular import profile_table
    from mlops.services.data_quality import run_rules

    profile = profile_table(table.frame)
    quality = run_rules(table.frame, rules, index, store, now) if rules is not None else None
    return _Analysis(table, profile, quality, [*notes, *profile.notes])


# Larger files are stored while they are hashed (local stores only: a remote one would upload bytes it may hold).
DIRECT_STORE_BYTES = 64 << 20


def _direct_candidates(
    root: Path, request: SnapshotRequest, scanned: list[ScannedFile], cache: HashCache, store: ArtifactStore
) -> set[str]:
    if not isinstance(store, LocalArtifactStore):
        return set()
    if request.version is not None and request.version in registered_numbers(root, request.name):
        return set()  # the content decides between "unchanged" and a conflict: know it before storing anything
    return {s.rel for s in scanned if s.key[0] > DIRECT_STORE_BYTES and cache.lookup(s.path, s.key) is None}


def _store_direct(store: ArtifactStore, direct: list[ScannedFile], cache: HashCache) -> list[HashedFile]:
    """Put each file in the store, which hashes it while copying; the stat before and after must agree."""
    out = []
    for scanned in direct:
        try:
            digest, size = store.put_file(Path(scanned.path))
        except FileNotFoundError:
            raise FileChanged(f"{scanned.path}: removed while the snapshot read it; nothing was registered") from None
        ensure_unchanged(scanned.path, scanned.key, size)
        hashed = HashedFile(scanned.rel, scanned.path, scanned.key, digest)
        cache.remember(scanned.path, scanned.key, digest)
        out.append(hashed)
    return out


def _merge(scanned: list[ScannedFile], *parts: list[HashedFile]) -> list[HashedFile]:
    by_rel = {h.rel: h for part in parts for h in part}
    return [by_rel[s.rel] for s in scanned]


def _cache_prefix(scanned: list[Any], source: Path) -> str:
    """Where the scanned files' cache entries live (a folder's are under its real path, see file_scan.scan)."""
    if source.is_dir():
        return os.path.realpath(source).rstrip(os.sep) + os.sep
    return scanned[0].path if scanned else os.fspath(source)


def _same_content(index: RepoIndex, name: str, fingerprint: str) -> DatasetVersion | None:
    for _, version in index.of(DatasetVersion):
        if version.metadata.name == name and version.spec.fingerprint.digest == fingerprint:
            return version
    return None


def _pick_version(
    root: Path, index: RepoIndex, request: SnapshotRequest, fingerprint: str, existing: DatasetVersion | None
) -> int:
    taken = registered_numbers(root, request.name)
    next_free = (max(taken) + 1) if taken else 1
    if request.version is None:
        return existing.spec.version if existing is not None else next_free
    if existing is not None and existing.spec.version == request.version:
        return request.version
    if request.version in taken:
        key = version_key(request.name, request.version)
        other = index.find(DatasetVersion, key)
        what = f"with other content ({other.spec.fingerprint.digest[:19]}...)" if other is not None else "(broken)"
        same = f"; this content is {existing.key}" if existing is not None else ""
        raise VersionConflict(
            f"{key} is already registered {what}{same}; versions are immutable: the next free version is "
            f"{next_free} (use --version {next_free} or --version auto)"
        )
    if existing is not None:
        raise VersionConflict(
            f"this content is already registered as {existing.key}; a second version with the same fingerprint "
            f"would only duplicate it (use dataset://{existing.key})"
        )
    return request.version


def _read_table(
    source: Path, hashed: Sequence[ScannedFile | HashedFile], common: str | None
) -> tuple[Table | None, list[str]]:
    if common is not None and table_format(common) is None:
        return None, []  # every name ends in the same suffix, and not a table's
    sources = []
    for h in hashed:
        fmt = table_format(h.rel)
        if fmt is not None:
            sources.append(TableSource(str(source / h.rel) if source.is_dir() else str(source), Path(h.path), fmt))
    return read_tables(sources)


def _check_unchanged(hashed: Sequence[ScannedFile | HashedFile]) -> None:
    for h in hashed:
        ensure_unchanged(h.path, h.key)


def _store_blobs(job: _Job, hashed: list[HashedFile], result: SnapshotResult, index: bytes | None) -> bool:
    """Make every blob of ``hashed`` (and ``index``, their list) durable in the store; True if files were re-read.

    Blobs staged in the pack while hashing become visible first. When the pack saw every file's bytes, nothing
    can be missing. Otherwise (the stat cache knew some files, so nobody read them, or some were large) the store
    is asked, and what it lacks (a store that lost their blobs, say) is read and stored now.
    """
    store, pack = job.start.store, job.start.pack
    if pack is not None:
        result.stored, result.stored_bytes = pack.staged_with_parts
        if index is not None:
            pack.add_hashed(result.fingerprint, index)  # its digest is the fingerprint
        pack.commit()
    elif index is not None:
        _store_index(store, index, result.fingerprint)
    if job.start.run.all_staged:
        return False  # the pack just committed holds every blob (or the store did before)
    missing = store.missing(h.digest for h in hashed)
    todo: dict[str, HashedFile] = {}
    for h in hashed:
        if h.digest in missing and h.digest not in todo:
            todo[h.digest] = h  # one blob per distinct content
    if not todo:
        return False
    # One batch: the local store makes every blob durable with one sync instead of one fsync per file.
    pending = list(todo.values())
    try:
        stored = store.put_files([h.path for h in pending], job.start.store_progress)
    except StoreError:
        _check_unchanged(pending)  # a file that moved or vanished explains the failure better than the store
        raise
    for h, (digest, size) in zip(pending, stored, strict=True):
        if digest != h.digest or size != h.size:
            raise FileChanged(
                f"{h.path} changed while the snapshot read it (hashed {h.digest[:19]}..., stored "
                f"{digest[:19]}...); nothing was registered: snapshot again once the data is stable"
            )
        result.stored_bytes += size
    result.stored += len(pending)
    return True


def _store_index(store: ArtifactStore, index: bytes, fingerprint: str) -> None:
    if store.has(fingerprint):
        return
    with tempfile.TemporaryDirectory(prefix="mlops-index-") as tmp:
        target = Path(tmp) / "index"
        target.write_bytes(index)
        digest, _ = store.put_file(target)
    assert digest == fingerprint, "the file index hashes to the fingerprint by construction"


def _format(files: Sequence[HashedFile], table: Table | None, common: str | None) -> str:
    if table is not None:
        return table.format
    if common is not None:
        return common.lower().lstrip(".")
    suffixes = {_suffix(f.rel).lower().lstrip(".") for f in files}
    if len(suffixes) == 1 and "" not in suffixes:
        return suffixes.pop()
    return "files"


def _common_suffix(files: Sequence[ScannedFile | HashedFile]) -> str | None:
    """The :func:`_suffix` of every file, when all have the same one (None otherwise).

    The common case, one kind of file, costs one ``endswith`` per name instead of taking each name apart.
    """
    if not files:
        return None
    suffix = _suffix(files[0].rel)
    if not suffix:
        return None
    rels = [f.rel for f in files]
    alone = "/" + suffix  # a name that is only the suffix (".bin", a hidden file) has none
    if all(map(str.endswith, rels, repeat(suffix))) and not any(map(str.endswith, rels, repeat(alone))):
        return suffix if suffix not in rels else None
    return None


def _suffix(rel: str) -> str:
    """``PurePosixPath(rel).suffix`` without a Path per file (10,000 of them cost a tenth of a second)."""
    name = rel.rpartition("/")[2]
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _version_data(
    who: str | None,
    request: SnapshotRequest,
    number: int,
    files: list[HashedFile],
    fingerprint: str,
    size: int,
    index_digest: str | None,
    result: SnapshotResult,
    profile: TableProfile | None,
    rules: LoadedRules | None,
    now: dt.datetime,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"version": number}
    if request.description:
        spec["description"] = request.description
    spec["fingerprint"] = {"algorithm": "sha256-tree-v1", "digest": fingerprint}
    spec["size"] = size
    spec["fileCount"] = len(files)
    if index_digest is None:
        spec["files"] = [{"path": f.rel, "digest": f.digest, "size": f.size} for f in files]
    else:
        spec["filesIndex"] = index_digest
    spec["format"] = result.format
    if profile is not None:
        spec["rows"] = profile.rows
        spec["columns"] = [c.to_column().model_dump(exclude_none=True, exclude_defaults=False) for c in profile.columns]
        for column in spec["columns"]:
            stats = column.get("stats")
            if stats is not None:
                column["stats"] = {k: v for k, v in stats.items() if v is not None}
    if result.quality is not None and rules is not None:
        from mlops.services.data_quality import quality_block

        spec["quality"] = quality_block(result.quality, rules.path, now)
    if request.tags:
        spec["tags"] = dict(request.tags)
    if who:
        spec["createdBy"] = who
    spec["createdAt"] = iso(now)
    data = manifest_data(DatasetVersion, request.name, spec)
    check_version(DatasetVersion, result.path, data)
    return data


def _new_dataset_text(root: Path, request: SnapshotRequest) -> str:
    owner = request.owner or git_identity(root)
    if not owner:
        raise UsageError(
            f"dataset {request.name!r} does not exist yet; pass --owner EMAIL to create it with this first version"
        )
    path = f"registry/datasets/{request.name}/dataset.yaml"
    spec: dict[str, Any] = {"owner": owner}
    if request.description:
        spec["description"] = request.description
    return first_manifest_text(Dataset, path, request.name, spec, "dataset")


def _message(key: str, data: dict[str, Any], request: SnapshotRequest, result: SnapshotResult) -> str:
    spec = data["spec"]
    lines = [f"Snapshot {key}", ""]
    if request.description:
        lines += [request.description, ""]
    lines.append(f"fingerprint: {spec['fingerprint']['digest']}")
    table = f", {spec['rows']:,} rows x {len(spec['columns'])} columns" if spec.get("rows") is not None else ""
    lines.append(f"files: {spec['fileCount']:,} ({human_size(spec['size'])}, {spec['format']}){table}")
    lines.append(f"stored: {result.stored:,} new blobs ({human_size(result.stored_bytes)})")
    if result.quality is not None:
        lines.append(f"quality: {result.quality.status.value}, score {result.quality.score:.2f}")
        lines += [f"failed: {c.name}: {c.message}" for c in result.quality.failed]
    return "\n".join(lines)
