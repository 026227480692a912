"""`mlops data snapshot`, first half: find the files and start hashing them before anything else loads.

A snapshot of many small files is mostly hashing, and a command's start-up is mostly imports (the
manifest models, the repository index, git). This module imports neither: it scans the source, opens
the store, and starts :func:`~mlops.loader.hashing.start_hashing`, whose forked workers hash the
small files while this process imports :mod:`mlops.services.snapshot_register` and reads the
repository. :func:`~mlops.services.snapshot_register.register_snapshot` then joins the hashing and
does the rest (see its module for the order of checks).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.loader.config import repo_root
from mlops.loader.file_scan import ScannedFile, scan
from mlops.loader.hash_cache import HashCache
from mlops.loader.hashing import HashRun, start_hashing
from mlops.services.store import repo_store
from mlops.stores.artifacts import ArtifactStore, LocalArtifactStore

if TYPE_CHECKING:
    from mlops.services.publish import CommitOptions
    from mlops.services.snapshot_result import SnapshotResult
    from mlops.stores.packs import PackWriter

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SnapshotRequest:
    path: Path
    name: str
    version: int | None = None  # None: the next free number
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    owner: str | None = None  # for a dataset that does not exist yet
    profile: bool = True  # read tables (schema, rows, statistics) and run quality rules


@dataclass(frozen=True)
class SnapshotStart:
    """What the first half hands to the second: the scan, the store, and the hashing under way."""

    root: Path
    request: SnapshotRequest
    options: CommitOptions
    scanned: list[ScannedFile]
    cache: HashCache
    store: ArtifactStore
    pack: PackWriter | None  # where small blobs go as they are hashed (a local store)
    run: HashRun
    hash_progress: Progress | None
    store_progress: Progress | None


def snapshot(
    root: Path,
    request: SnapshotRequest,
    options: CommitOptions,
    hash_progress: Progress | None = None,
    store_progress: Progress | None = None,
    now: dt.datetime | None = None,
    jobs: int | None = None,
) -> SnapshotResult:
    """Snapshot ``request.path`` as a new version of ``request.name``; ``jobs`` processes hash (None: one per CPU)."""
    root = repo_root(root)
    scanned = scan(request.path, jobs)
    cache = HashCache.for_repo(root)
    store = repo_store(root)
    with _pack_writer(store) as pack, start_hashing(scanned, cache, jobs, pack) as run:
        from mlops.services.snapshot_register import register_snapshot  # imported while the workers hash

        start = SnapshotStart(root, request, options, scanned, cache, store, pack, run, hash_progress, store_progress)
        return register_snapshot(start, now)


@contextlib.contextmanager
def _pack_writer(store: ArtifactStore) -> Iterator[PackWriter | None]:
    """A local store takes small blobs as they are hashed, into one pack made visible only by commit()."""
    if not isinstance(store, LocalArtifactStore):
        yield None
        return
    with store.pack_writer() as pack:  # left without commit() (a refusal, a failure): nothing stays behind
        yield pack
