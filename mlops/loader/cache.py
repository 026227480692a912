"""A cache of parsed manifests keyed by git blob id, so re-validation reads only changed files.

Two maps, kept under ``.mlops/cache/parsed-v<PARSER_VERSION>/``:

* ``stats.marshal``: path -> (size, mtime_ns, ctime_ns, inode, blob id), like git's index,
  so an unchanged file is not even read;
* ``parsed-<0-f>.marshal``: blob id -> the plain data the YAML reader produced, in 16
  shards by the blob id's first hex digit, so a change to one file rewrites one shard
  (and the stats), not the data of every manifest.

* ``facts-<schema version>.marshal``: blob id -> the facts (identity, pointers, digests)
  of a blob that validated under exactly this schema (a digest of the code of the
  manifest models and of the facts), so an unchanged valid file is not validated again.

Cross-file rules always run on every file's facts, and a change to the models makes a
new schema version, so the cache cannot hide a problem. The folder name carries the parser version; every file
is written atomically with a checksum, and a damaged or unreadable file is ignored
(its entries are parsed again). Each map stands alone: a blob id the stats name
but no shard holds is simply read and parsed again.

Repeated strings (keys such as ``apiVersion``, values such as ``float32``) are stored
once per shard, which makes the shards about a third smaller and faster to load.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import zlib
from pathlib import Path
from typing import Any

from mlops.loader.atomic import atomic_write_bytes
from mlops.loader.yaml_read import PARSER_VERSION

StatKey = tuple[int, int, int, int]

_SHARDS = "0123456789abcdef"
_MAGIC = b"mlops-parse-cache\n"


def schema_version() -> str:
    """A digest of the code that decides validity: the manifest models and the facts kept of them."""
    import mlops.manifests
    import mlops.validation.facts

    digest = hashlib.sha1(b"parser %d\n" % PARSER_VERSION, usedforsecurity=False)
    folder = Path(mlops.manifests.__file__).parent
    for source in [*sorted(folder.glob("*.py")), Path(mlops.validation.facts.__file__)]:
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def blob_id(data: bytes) -> str:
    """The id git gives these bytes (``git hash-object``)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class ParseCache:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.stats: dict[str, tuple[StatKey, str]] = {}
        # Shards load on first use: a run whose files all have cached facts may never need parsed data.
        self._shards: dict[str, dict[str, Any] | None] = dict.fromkeys(_SHARDS, None if folder else {})
        self._stats_dirty = False
        self._dirty_shards: set[str] = set()
        self._strings: dict[str, str] = {}
        self.facts: dict[str, Any] = {}
        self._facts_dirty = False
        self._facts_file: Path | None = None
        if folder is not None:
            self._load(folder)

    @classmethod
    def for_repo(cls, root: Path, enabled: bool = True) -> ParseCache:
        if not enabled:
            return cls(None)
        return cls(root / ".mlops" / "cache" / f"parsed-v{PARSER_VERSION}")

    def _load(self, folder: Path) -> None:
        stats = _read(folder / "stats.marshal")
        if stats is not None:
            self.stats = stats
        self._facts_file = folder / f"facts-{schema_version()}.marshal"
        self.facts = _read(self._facts_file) or {}

    def facts_for(self, blob: str) -> Any:
        return self.facts.get(blob)

    def put_facts(self, facts: dict[str, Any]) -> None:
        for blob, value in facts.items():
            if self.facts.get(blob) != value:
                self.facts[blob] = value
                self._facts_dirty = True

    def blob_for(self, path: str, key: StatKey) -> str | None:
        hit = self.stats.get(path)
        return hit[1] if hit is not None and hit[0] == key else None

    def remember_stat(self, path: str, key: StatKey, blob: str) -> None:
        if self.stats.get(path) != (key, blob):
            self.stats[path] = (key, blob)
            self._stats_dirty = True

    def _shard(self, name: str) -> dict[str, Any] | None:
        if name not in self._shards:
            return None  # not a hex id: nothing to key it by
        shard = self._shards[name]
        if shard is None:
            assert self.folder is not None
            shard = _read(self.folder / f"parsed-{name}.marshal") or {}
            self._shards[name] = shard
        return shard

    def get(self, blob: str) -> tuple[bool, Any]:
        shard = self._shard(blob[:1])
        if shard is not None and blob in shard:
            return True, shard[blob]
        return False, None

    def put(self, blob: str, data: Any) -> Any:
        """Remember ``data`` as the parse of ``blob``; returns the stored (equal) value for the caller to use."""
        shard = self._shard(blob[:1])
        if shard is None:  # not a hex id: nothing to key it by
            return data
        # Without a folder the cache still serves this run (the base snapshot shares most blobs with the worktree).
        stored = data if self.folder is None else _shared(data, self._strings)
        shard[blob] = stored
        self._dirty_shards.add(blob[:1])
        return stored

    def forget_missing(self, present: set[str]) -> None:
        """Drop stat entries of files that are gone, and parsed data no file refers to any more."""
        gone = set(self.stats) - present
        for path in gone:
            del self.stats[path]
        if gone:
            self._stats_dirty = True
            live = {blob for _, blob in self.stats.values()}
            for blob in set(self.facts) - live:
                del self.facts[blob]
                self._facts_dirty = True
            for name in _SHARDS:
                shard = self._shard(name)
                assert shard is not None
                dead = set(shard) - live
                for blob in dead:
                    del shard[blob]
                if dead:
                    self._dirty_shards.add(name)

    def save(self) -> None:
        """Write what changed (nothing when nothing did): the dirty shards first, then the stats."""
        if self.folder is None:
            return
        with contextlib.suppress(OSError, ValueError):  # a cache that cannot be written only costs speed
            for name in sorted(self._dirty_shards):
                shard = self._shards[name]
                if shard is not None:
                    _write(self.folder / f"parsed-{name}.marshal", shard)
            if self._facts_dirty and self._facts_file is not None:
                _write(self._facts_file, self.facts)
                for old in self.folder.glob("facts-*.marshal"):  # facts of older schemas are never valid again
                    if old != self._facts_file:
                        old.unlink(missing_ok=True)
            if self._stats_dirty:
                _write(self.folder / "stats.marshal", self.stats)
        self._dirty_shards.clear()
        self._stats_dirty = False
        self._facts_dirty = False


def _write(file: Path, value: dict[str, Any]) -> None:
    payload = marshal.dumps(value)
    atomic_write_bytes(file, _MAGIC + zlib.crc32(payload).to_bytes(4, "big") + payload)


def _read(file: Path) -> dict[str, Any] | None:
    """A map written by :func:`_write`, or None when it is missing, damaged or of another format."""
    try:
        raw = file.read_bytes()
    except OSError:
        return None
    header = len(_MAGIC) + 4
    if not raw.startswith(_MAGIC) or len(raw) < header:
        return None
    payload = memoryview(raw)[header:]
    if zlib.crc32(payload) != int.from_bytes(raw[len(_MAGIC) : header], "big"):
        return None
    try:
        value = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def _shared(value: Any, strings: dict[str, str]) -> Any:
    """An equal copy of parsed data in which equal strings are one object (marshal then writes them once).

    Written out flat (no call per scalar): it runs once for every newly parsed file.
    """
    kind = type(value)
    if kind is dict:
        mapping: dict[Any, Any] = {}
        for key, item in value.items():
            item_kind = type(item)
            if item_kind is str:
                item = strings.setdefault(item, item)
            elif item_kind is dict or item_kind is list:
                item = _shared(item, strings)
            mapping[strings.setdefault(key, key) if type(key) is str else key] = item
        return mapping
    if kind is list:
        items: list[Any] = []
        for item in value:
            item_kind = type(item)
            if item_kind is str:
                item = strings.setdefault(item, item)
            elif item_kind is dict or item_kind is list:
                item = _shared(item, strings)
            items.append(item)
        return items
    if kind is str:
        return strings.setdefault(value, value)
    return value
