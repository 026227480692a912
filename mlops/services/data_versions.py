"""Registered dataset versions: finding them, their file lists, and their bytes back out of the store.

Everything read from the store is verified: blobs by their digest (the store does that), the
file list by the version's fingerprint, so a manifest whose list was edited by hand, or an
index blob that is not the one the fingerprint names, is refused rather than materialized.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mlops.errors import DigestMismatch, InputError, UsageError
from mlops.manifests import DatasetVersion, QualityRules
from mlops.manifests.base import version_key
from mlops.manifests.dataset_version import DataFile, parse_files_index, tree_fingerprint
from mlops.services.data_tables import Table, TableSource, read_tables, table_format
from mlops.stores.artifacts import ArtifactStore
from mlops.validation.index import RepoIndex

Progress = Callable[[int, int], None]
T = TypeVar("T")
TRANSFER_WORKERS = 16  # blobs moved at once: the local store's fsyncs share journal commits, S3 overlaps requests

_REF = re.compile(r"^(?:dataset://)?(?P<name>[a-z0-9][a-z0-9-]{0,62})@(?P<version>[1-9][0-9]*)$")


def parse_ref(ref: str) -> tuple[str, int]:
    """``customers@2`` or ``dataset://customers@2`` -> ("customers", 2)."""
    match = _REF.match(ref.strip())
    if match is None:
        raise UsageError(f"expected NAME@VERSION or dataset://NAME@VERSION, got {ref!r}")
    return match["name"], int(match["version"])


def version_path(name: str, version: int) -> str:
    return f"registry/datasets/{name}/versions/{version}.yaml"


def rules_path(name: str) -> str:
    return f"registry/datasets/{name}/quality.yaml"


@dataclass(frozen=True)
class LoadedRules:
    rules: QualityRules
    path: str  # repository path (or the file given with --rules)


def repo_rules(index: RepoIndex, name: str) -> LoadedRules | None:
    """The dataset's rules, None when it has none; refused when the file exists but is broken."""
    path = rules_path(name)
    if path in index.broken_paths:
        raise InputError(f"{path} has problems, so the quality rules cannot run; `mlops validate` names them")
    rules = index.find(QualityRules, name)
    return None if rules is None else LoadedRules(rules, path)


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def find_version(index: RepoIndex, ref: str) -> DatasetVersion:
    name, number = parse_ref(ref)
    found = index.find(DatasetVersion, version_key(name, number))
    if found is not None:
        return found
    if version_path(name, number) in index.broken_paths:
        raise InputError(f"{version_path(name, number)} has problems; `mlops validate` names them")
    have = sorted(v.spec.version for _, v in index.of(DatasetVersion) if v.metadata.name == name)
    if not have:
        raise UsageError(f"no dataset {name!r} has versions in the registry")
    raise UsageError(f"{version_key(name, number)} is not registered; {name} has versions {', '.join(map(str, have))}")


def registered_numbers(root: Path, name: str) -> list[int]:
    """Version numbers that have a file, valid or not: a number with a file is taken."""
    folder = root / "registry" / "datasets" / name / "versions"
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.glob("*.yaml") if p.stem.isdigit())


def version_files(store: ArtifactStore, version: DatasetVersion) -> list[DataFile]:
    """Every file of a version, from the manifest or its index blob, checked against the fingerprint."""
    spec = version.spec
    if spec.filesIndex is None:
        files = list(spec.files)
        where = f"{version_path(version.metadata.name, spec.version)}: spec.files"
    else:
        with tempfile.TemporaryDirectory(prefix="mlops-index-") as tmp:
            target = Path(tmp) / "index"
            store.get_file(spec.filesIndex, target)  # verified against its digest
            data = target.read_bytes()
        try:
            files = parse_files_index(data)
        except ValueError as exc:
            raise DigestMismatch(f"{version.key}: the file index {spec.filesIndex} is not a file list: {exc}") from None
        where = f"the file index {spec.filesIndex}"
    if tree_fingerprint(files) != spec.fingerprint.digest:
        raise DigestMismatch(
            f"{version.key}: {where} does not match the fingerprint {spec.fingerprint.digest}; "
            "the manifest was edited by hand: restore it from git"
        )
    if len(files) != spec.fileCount:
        raise DigestMismatch(f"{version.key}: {len(files)} files listed, fileCount says {spec.fileCount}")
    return files


def in_parallel(
    items: Sequence[T],
    work: Callable[[T], int],
    progress: Progress | None = None,
    workers: int = TRANSFER_WORKERS,
) -> int:
    """Run ``work`` on every item in a few threads; returns the sum of what it returned (bytes moved, say).

    Each thread takes a fixed share of the items, so there is one task per thread rather than one per item
    (10,000 futures cost seconds of lock traffic); progress is reported from this thread. The first error
    stops the others at their next item and is raised here.
    """
    total = len(items)
    if progress is not None:
        progress(0, total)
    if not items:
        return 0
    lock = threading.Lock()
    counters = [0, 0]  # items done, sum of results
    stop = threading.Event()

    def run(share: Sequence[T]) -> None:
        for item in share:
            if stop.is_set():
                return
            value = work(item)
            with lock:
                counters[0] += 1
                counters[1] += value

    workers = max(1, min(workers, total))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlops-transfer") as pool:
        futures = [pool.submit(run, items[i::workers]) for i in range(workers)]
        try:
            pending: set[Future[None]] = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                if progress is not None:
                    progress(counters[0], total)
                for future in finished:
                    future.result()  # raises the first failure
        except BaseException:
            stop.set()
            raise
    if progress is not None:
        progress(total, total)
    return counters[1]


def fetch(
    store: ArtifactStore,
    files: list[DataFile],
    dest: Path,
    progress: Progress | None = None,
) -> None:
    """Put every file's verified bytes at ``dest/<path>`` (``dest`` is a folder the caller owns)."""
    by_digest: dict[str, list[DataFile]] = {}
    for data_file in files:
        by_digest.setdefault(data_file.digest, []).append(data_file)

    def one(digest: str) -> int:
        first, *copies = by_digest[digest]
        target = dest / first.path
        store.get_file(digest, target)
        for other in copies:  # the same bytes under several names are fetched once
            (dest / other.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, dest / other.path)
        return len(copies) + 1

    in_parallel(list(by_digest), one, progress)  # progress counts distinct blobs


def tabular_files(files: list[DataFile]) -> list[DataFile]:
    return [f for f in files if table_format(f.path) is not None]


@contextlib.contextmanager
def version_table(store: ArtifactStore, version: DatasetVersion) -> Iterator[Table | None]:
    """The version's table read from verified store bytes (None when it has no single table)."""
    files = tabular_files(version_files(store, version))
    if not files:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="mlops-table-") as tmp:
        fetch(store, files, Path(tmp))
        sources = [
            TableSource(f"{version.key}:{f.path}", Path(tmp) / f.path, table_format(f.path) or "") for f in files
        ]
        table, _ = read_tables(sources)
        yield table


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
