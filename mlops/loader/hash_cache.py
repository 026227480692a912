"""The stat cache of snapshots, like git's index: path -> (size, mtime_ns, ctime_ns, inode, digest).

It lives in ``.mlops/cache/hashes-v1.marshal``. A file whose stat matches is not read again. Files
changed within :data:`~mlops.loader.stat_keys.RACY_NS` of the cache's making are not remembered, since a
change within the same timestamp tick would leave their stat as it was ("racily clean").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from mlops.loader.marshal_file import read_map, write_map
from mlops.loader.stat_keys import StatKey, is_stable, stable_before

CACHE_FILE = "hashes-v1.marshal"
_MAGIC = b"mlops-hash-cache\n"


class HashCache:
    """path -> (size, mtime_ns, ctime_ns, inode, hex digest); written atomically, ignored when damaged."""

    def __init__(self, file: Path | None) -> None:
        self.file = file
        self.stable_before = stable_before()  # made after the scan: a file changed since then is not remembered
        self.entries: dict[str, tuple[int, int, int, int, str]] = {}
        self._dirty = False
        if file is not None:
            self.entries = _read(file)

    @classmethod
    def for_repo(cls, root: Path, enabled: bool = True) -> HashCache:
        return cls(root / ".mlops" / "cache" / CACHE_FILE if enabled else None)

    def lookup(self, path: str, key: StatKey) -> str | None:
        hit = self.entries.get(path)
        if hit is None or hit[:4] != key:
            return None
        return f"sha256:{hit[4]}"

    def remember(self, path: str, key: StatKey, digest: str) -> None:
        self.remember_all([(path, key, digest)])

    def remember_all(self, found: Iterable[tuple[str, StatKey, str]]) -> None:
        """:meth:`remember` for many ``(path, key, digest)``: one call per batch of a hashing run. Files changed
        too recently to be trusted by their stat (see :mod:`~mlops.loader.stat_keys`) are left out."""
        entries, before = self.entries, self.stable_before
        for path, key, digest in found:
            if not is_stable(key, before):
                continue
            value = (*key, digest.removeprefix("sha256:"))
            if entries.get(path) != value:
                entries[path] = value
                self._dirty = True

    def forget_under(self, prefix: str, keep: Iterable[str]) -> None:
        """Drop entries of files under ``prefix`` that a scan no longer found."""
        gone = [p for p in self.entries.keys() - set(keep) if p.startswith(prefix)]  # set difference: C speed
        for path in gone:
            del self.entries[path]
        self._dirty = self._dirty or bool(gone)

    def save(self) -> None:
        if self.file is None or not self._dirty:
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs speed
            # The crc makes a torn file an empty cache, so no fsync. Marshal format 2: the paths are also held by
            # the scan, and format 4 would track every one of them for back-references (13 ms for 10,000, not 5).
            write_map(self.file, _MAGIC, self.entries, durable=False, version=2)
        self._dirty = False


def _read(file: Path) -> dict[str, tuple[int, int, int, int, str]]:
    return read_map(file, _MAGIC) or {}
