"""A repository state to validate: the working tree, or a commit read from git objects.

Both give the manifest paths, their bytes and their git blob ids; loading turns
them into :class:`SourceDocument` values through the parse cache.
"""

from __future__ import annotations

import functools
import os
import stat as stat_module
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from mlops.errors import Category, InputError, Problem
from mlops.loader.cache import ParseCache, blob_id
from mlops.loader.stat_keys import is_stable, stable_before, stat_key
from mlops.loader.yaml_read import read_manifest
from mlops.validation import SourceDocument
from mlops.validation.layout import MANAGED_ROOTS, is_manifest_path

Progress = Callable[[int, int], None]

class Snapshot(Protocol):
    label: str

    def paths(self) -> list[str]: ...

    def read(self, path: str) -> bytes: ...


class WorktreeSnapshot:
    """The files on disk under ``root``, as the user sees them (uncommitted edits included)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = "working tree"
        self._stats: dict[str, os.stat_result] | None = None
        # Paths are joined as strings: for 10,000 manifests, Path objects cost more than the reads themselves.
        self._prefix = os.fspath(root).rstrip(os.sep) + os.sep
        self._stable_before_ns = 0

    def _scan(self) -> dict[str, os.stat_result]:
        if self._stats is None:
            self._stable_before_ns = stable_before()  # see stat_keys: recent edits are not remembered
            found: dict[str, os.stat_result] = {}
            for top in MANAGED_ROOTS:
                self._walk(self._prefix + top, top, found)
            self._stats = dict(sorted(found.items()))
        return self._stats

    def _walk(self, directory: str, rel: str, found: dict[str, os.stat_result]) -> None:
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            child = f"{rel}/{name}"
            if entry.is_dir(follow_symlinks=False):
                self._walk(entry.path, child, found)
            elif is_manifest_path(child):
                found[child] = entry.stat(follow_symlinks=False)

    def paths(self) -> list[str]:
        return list(self._scan())

    def read(self, path: str) -> bytes:
        with open(self._prefix + path, "rb") as handle:  # noqa: PTH123 - see _prefix
            return handle.read()

    def blob(self, path: str, cache: ParseCache) -> tuple[str, bytes | None]:
        st = self._scan()[path]
        key = stat_key(st)
        known = cache.blob_for(path, key)
        if known is not None:
            return known, None
        data = self.read(path)
        blob = blob_id(data)
        if is_stable(key, self._stable_before_ns):
            cache.remember_stat(path, key, blob)
        return blob, data

    def read_blob(self, path: str) -> tuple[str, bytes]:
        """The bytes on disk now and their blob id (which the stat cache may no longer know)."""
        data = self.read(path)
        return blob_id(data), data

    def is_regular(self, path: str) -> bool:
        return stat_module.S_ISREG(self._scan()[path].st_mode)


class GitSnapshot:
    """The manifests of one commit, read from git's objects (the working tree is not touched)."""

    def __init__(self, label: str, blobs: dict[str, str], reader: Callable[[str], bytes]) -> None:
        self.label = label
        self._blobs = blobs
        self._reader = reader

    def paths(self) -> list[str]:
        return sorted(self._blobs)

    def read(self, path: str) -> bytes:
        return self._reader(self._blobs[path])

    def blob(self, path: str, cache: ParseCache) -> tuple[str, bytes | None]:
        return self._blobs[path], None

    def read_blob(self, path: str) -> tuple[str, bytes]:
        return self._blobs[path], self.read(path)

    def is_regular(self, path: str) -> bool:
        return True


class _Loadable(Snapshot, Protocol):
    def blob(self, path: str, cache: ParseCache) -> tuple[str, bytes | None]:
        """The blob id, and the bytes when getting the id meant reading them (None when the stat cache knew it)."""

    def read_blob(self, path: str) -> tuple[str, bytes]: ...

    def is_regular(self, path: str) -> bool: ...


def load_documents(snapshot: _Loadable, cache: ParseCache, progress: Progress | None = None) -> list[SourceDocument]:
    paths = snapshot.paths()
    documents = list(_load(snapshot, paths, cache, progress))
    if isinstance(snapshot, WorktreeSnapshot):
        cache.forget_missing(set(paths))
    cache.save()
    return documents


def _parse_later(snapshot: _Loadable, cache: ParseCache, path: str, blob: str) -> Any:
    hit, parsed = cache.get(blob)
    if hit:
        return parsed
    parsed, problems = read_manifest(path, snapshot.read(path))
    if problems:  # the file changed under us since it was scanned
        raise InputError(f"{path}: changed while being validated; run validate again")
    return cache.put(blob, parsed)


def _load(
    snapshot: _Loadable, paths: list[str], cache: ParseCache, progress: Progress | None
) -> Iterator[SourceDocument]:
    total = len(paths)
    for done, path in enumerate(paths, 1):
        if progress is not None and (done % 250 == 0 or done == total):
            progress(done, total)
        if not snapshot.is_regular(path):
            problem = Problem(
                path,
                "not a regular file (symbolic links are not followed)",
                category=Category.UNREADABLE,
                code="unreadable",
            )
            yield SourceDocument(path, None, (problem,))
            continue
        try:
            blob, data = snapshot.blob(path, cache)
            facts = cache.facts_for(blob)
            if facts is not None and data is None:
                # Unchanged since a run in which it validated: nothing to read or parse unless a rule asks.
                later = functools.partial(_parse_later, snapshot, cache, path, blob)
                yield SourceDocument(path, None, blob=blob, facts=facts, load=later)
                continue
            hit, parsed = cache.get(blob)
            if not hit and data is None:
                # The stat cache named a blob whose parse is not cached: hash what is read, so a file that
                # changed since its stat was taken is never parsed under another file's blob id.
                blob, data = snapshot.read_blob(path)
                hit, parsed = cache.get(blob)
        except OSError as exc:
            problem = Problem(
                path, f"cannot read: {exc.strerror or exc}", category=Category.UNREADABLE, code="unreadable"
            )
            yield SourceDocument(path, None, (problem,))
            continue
        if hit:
            yield SourceDocument(path, parsed, blob=blob, facts=cache.facts_for(blob))
            continue
        assert data is not None
        parsed, problems = read_manifest(path, data)
        if problems:
            yield SourceDocument(path, None, tuple(problems))
        else:
            yield SourceDocument(path, cache.put(blob, parsed), blob=blob)
