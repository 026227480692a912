"""A cache of parsed manifests keyed by git blob id, so re-validation reads only changed files.

Two maps, saved together in one file under ``.mlops/cache/``:

* ``stats``: path -> (size, mtime_ns, ctime_ns, inode, blob id), like git's index,
  so an unchanged file is not even read;
* ``parsed``: blob id -> the plain data the YAML reader produced.

Only parse results are cached; schema and cross-file rules always run, so a cache
can never hide a problem. The file name carries the parser version, and the file
is written atomically; a damaged cache is ignored and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
from pathlib import Path
from typing import Any

from mlops.loader.atomic import atomic_write_bytes
from mlops.loader.yaml_read import PARSER_VERSION

StatKey = tuple[int, int, int, int]


def blob_id(data: bytes) -> str:
    """The id git gives these bytes (``git hash-object``)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class ParseCache:
    def __init__(self, file: Path | None) -> None:
        self.file = file
        self.stats: dict[str, tuple[StatKey, str]] = {}
        self.parsed: dict[str, Any] = {}
        self._dirty = False
        if file is not None:
            self._load(file)

    @classmethod
    def for_repo(cls, root: Path, enabled: bool = True) -> ParseCache:
        if not enabled:
            return cls(None)
        return cls(root / ".mlops" / "cache" / f"parsed-v{PARSER_VERSION}.marshal")

    def _load(self, file: Path) -> None:
        try:
            stats, parsed = marshal.loads(file.read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            return
        if isinstance(stats, dict) and isinstance(parsed, dict):
            self.stats, self.parsed = stats, parsed

    def blob_for(self, path: str, key: StatKey) -> str | None:
        hit = self.stats.get(path)
        return hit[1] if hit is not None and hit[0] == key else None

    def remember_stat(self, path: str, key: StatKey, blob: str) -> None:
        if self.stats.get(path) != (key, blob):
            self.stats[path] = (key, blob)
            self._dirty = True

    def get(self, blob: str) -> tuple[bool, Any]:
        if blob in self.parsed:
            return True, self.parsed[blob]
        return False, None

    def put(self, blob: str, data: Any) -> None:
        self.parsed[blob] = data
        self._dirty = True

    def forget_missing(self, present: set[str]) -> None:
        """Drop stat entries of files that are gone, and parsed data no file refers to any more."""
        gone = set(self.stats) - present
        for path in gone:
            del self.stats[path]
        if gone:
            live = {blob for _, blob in self.stats.values()}
            for blob in set(self.parsed) - live:
                del self.parsed[blob]
            self._dirty = True

    def save(self) -> None:
        if self.file is None or not self._dirty:
            return
        with contextlib.suppress(OSError, ValueError):  # a cache that cannot be written only costs speed
            atomic_write_bytes(self.file, marshal.dumps((self.stats, self.parsed)))
        self._dirty = False
