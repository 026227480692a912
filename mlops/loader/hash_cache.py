"""The stat cache of snapshots, like git's index: path -> (size, mtime_ns, ctime_ns, inode, digest).

It lives in ``.mlops/cache/hashes-v1.marshal``. A file whose stat matches is not read again. Files
changed less than :data:`RACY_NS` before the scan are not remembered, since a change within the same
timestamp tick would leave their stat as it was ("racily clean").
"""

from __future__ import annotations

import contextlib
import marshal
import zlib
from collections.abc import Iterable
from pathlib import Path

from mlops.loader.atomic import atomic_write_bytes
from mlops.loader.file_scan import StatKey

RACY_NS = 2_000_000_000
CACHE_FILE = "hashes-v1.marshal"
_MAGIC = b"mlops-hash-cache\n"


class HashCache:
    """path -> (size, mtime_ns, ctime_ns, inode, hex digest); written atomically, ignored when damaged."""

    def __init__(self, file: Path | None) -> None:
        self.file = file
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
        """:meth:`remember` for many ``(path, key, digest)``: one call per batch of a hashing run."""
        entries = self.entries
        for path, key, digest in found:
            value = (*key, digest.removeprefix("sha256:"))
            if entries.get(path) != value:
                entries[path] = value
                self._dirty = True

    def forget_under(self, prefix: str, keep: Iterable[str]) -> None:
        """Drop entries of files under ``prefix`` that a scan no longer found."""
        kept = set(keep)
        gone = [p for p in self.entries if p.startswith(prefix) and p not in kept]
        for path in gone:
            del self.entries[path]
        self._dirty = self._dirty or bool(gone)

    def save(self) -> None:
        if self.file is None or not self._dirty:
            return
        payload = marshal.dumps(self.entries)
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs speed
            data = _MAGIC + zlib.crc32(payload).to_bytes(4, "big") + payload
            atomic_write_bytes(self.file, data, durable=False)  # a crc guards it: a torn file is an empty cache
        self._dirty = False


def _read(file: Path) -> dict[str, tuple[int, int, int, int, str]]:
    try:
        raw = file.read_bytes()
    except OSError:
        return {}
    header = len(_MAGIC) + 4
    if not raw.startswith(_MAGIC) or len(raw) < header:
        return {}
    payload = memoryview(raw)[header:]
    if zlib.crc32(payload) != int.from_bytes(raw[len(_MAGIC) : header], "big"):
        return {}
    try:
        value = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}
