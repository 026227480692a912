"""A cache of parsed manifests keyed by git blob id, so re-validation reads only changed files.

Kept under ``.mlops/cache/parsed-v<PARSER_VERSION>/``:

* ``stats.marshal``: path -> (size, mtime_ns, ctime_ns, inode, blob id), like git's index,
  so an unchanged file is not even read;
* ``parsed-<0-f>.marshal``: blob id -> the plain data the YAML reader produced, in 16
  shards by the blob id's first hex digit, so a change to one file rewrites one shard
  (and the stats), not the data of every manifest.

* ``facts-<schema version>.marshal``: blob id -> the facts (identity, pointers, digests)
  of a blob that validated under exactly this schema (a digest of the code of the
  manifest models and of the facts), so an unchanged valid file is not validated again.
* ``verdict-<schema version>.marshal``: the last full verdict over the working tree (every
  problem, with positions) and what it depended on: each path's blob id, the entries a rule
  read in full, the broken paths, the pipeline step code read, under a digest of the rules'
  code (:func:`rules_version`). A later run whose only changes are files that still validate
  with the same facts, that no rule read in full, reuses it instead of running the cross-file
  rules; :mod:`mlops.validation.reuse` says why that gives the same answer.

The stats and the facts each have 10,000 entries of which a run changes a few: what a run sets is
written to a small ``*.recent.marshal`` beside the map, read over it, and folded into the map
when it grows or an entry is removed; each entry is right on its own, so any mix of the two is.

A change to the models makes a new schema version and a change to the rules a new rules
version, so the cache cannot hide a problem. The folder name carries the parser version; every file
is written atomically with a checksum, and a damaged or unreadable file is ignored
(its entries are parsed again, or the rules run again). Each map stands alone: a blob id the stats name
but no shard holds is simply read and parsed again.

Repeated strings (keys such as ``apiVersion``, values such as ``float32``) are stored
once per shard, which makes the shards about a third smaller and faster to load.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

from mlops.loader.marshal_file import read_map, write_map
from mlops.loader.stat_keys import StatKey
from mlops.loader.stat_keys import stat_key as stat_key
from mlops.loader.yaml_read import PARSER_VERSION

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


# The code that turns facts into problems and problems into positions, beside the schema (paths in mlops/).
_RULE_SOURCES = ("validation", "inspect/pipeline_code.py", "services/validate.py", "loader/positions.py", "errors.py")


def rules_version(schema: str) -> str:
    """A digest of everything a recorded verdict depends on besides the files: the ``schema`` version, the code
    of the rules, of the step-code check and of the positions, and the Python and pydantic that ran them."""
    import sys

    import pydantic.version

    import mlops

    digest = hashlib.sha1(schema.encode(), usedforsecurity=False)
    digest.update(f"{sys.version}\npydantic {pydantic.version.VERSION}\n".encode())
    package = Path(mlops.__file__).parent
    for name in _RULE_SOURCES:
        source = package / name
        for file in sorted(source.glob("*.py")) if source.is_dir() else [source]:
            data = file.read_bytes()
            digest.update(f"{file.relative_to(package).as_posix()} {len(data)}\n".encode())
            digest.update(data)
    return digest.hexdigest()[:16]


def blob_id(data: bytes) -> str:
    """The id git gives these bytes (``git hash-object``)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


class ParseCache:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.stats: dict[str, tuple[StatKey, str]] = {}
        # Entries set since the whole map was last written, and whether it must be written whole (see _save_map).
        self._stats_recent: dict[str, Any] = {}
        self._stats_whole = True
        # Shards load on first use: a run whose files all have cached facts may never need parsed data.
        self._shards: dict[str, dict[str, Any] | None] = dict.fromkeys(_SHARDS, None if folder else {})
        self._stats_dirty = False
        self._dirty_shards: set[str] = set()
        self._strings: dict[str, str] = {}
        self.facts: dict[str, Any] = {}
        self._facts_recent: dict[str, Any] = {}
        self._facts_whole = True
        self._facts_dirty = False
        self._facts_file: Path | None = None
        self._verdict_file: Path | None = None
        self.schema = ""  # the schema version, when there is a folder
        if folder is not None:
            self._load(folder)

    @classmethod
    def for_repo(cls, root: Path, enabled: bool = True) -> ParseCache:
        if not enabled:
            return cls(None)
        return cls(root / ".mlops" / "cache" / f"parsed-v{PARSER_VERSION}")

    def _load(self, folder: Path) -> None:
        self.stats, self._stats_recent, self._stats_whole = _read_map(folder / "stats.marshal")
        self.schema = schema_version()
        self._facts_file = folder / f"facts-{self.schema}.marshal"
        self._verdict_file = folder / f"verdict-{self.schema}.marshal"
        self.facts, self._facts_recent, self._facts_whole = _read_map(self._facts_file)

    def read_verdict(self) -> dict[str, Any] | None:
        """The verdict last recorded (plain values), or None: no cache, none recorded, or damaged."""
        return _read(self._verdict_file) if self._verdict_file is not None else None

    def write_verdict(self, value: dict[str, Any]) -> None:
        """Record ``value`` in place of the last verdict (verdicts of other schemas are removed)."""
        if self.folder is None or self._verdict_file is None:
            return
        with contextlib.suppress(OSError, ValueError):  # a verdict that cannot be written only costs speed
            _write(self._verdict_file, value)
            for old in self.folder.glob("verdict-*.marshal"):
                if old != self._verdict_file:
                    old.unlink(missing_ok=True)

    def facts_for(self, blob: str) -> Any:
        return self.facts.get(blob)

    def put_facts(self, facts: dict[str, Any]) -> None:
        for blob, value in facts.items():
            if self.facts.get(blob) != value:
                self.facts[blob] = self._facts_recent[blob] = value
                self._facts_dirty = True

    def blob_for(self, path: str, key: StatKey) -> str | None:
        hit = self.stats.get(path)
        return hit[1] if hit is not None and hit[0] == key else None

    def remember_stat(self, path: str, key: StatKey, blob: str) -> None:
        if self.stats.get(path) != (key, blob):
            self.stats[path] = self._stats_recent[path] = (key, blob)
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
            self._stats_dirty = self._stats_whole = True
            live = {blob for _, blob in self.stats.values()}
            for blob in set(self.facts) - live:
                del self.facts[blob]
                self._facts_dirty = self._facts_whole = True
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
                _save_map(self._facts_file, self.facts, self._facts_recent, self._facts_whole)
                self._facts_whole = False
                current = (self._facts_file, _recent(self._facts_file))
                for old in self.folder.glob("facts-*.marshal"):  # facts of older schemas are never valid again
                    if old not in current:
                        old.unlink(missing_ok=True)
            if self._stats_dirty:
                _save_map(self.folder / "stats.marshal", self.stats, self._stats_recent, self._stats_whole)
                self._stats_whole = False
        self._dirty_shards.clear()
        self._stats_dirty = False
        self._facts_dirty = False


# Entries a map may gain before it is written whole again instead of only its recent entries.
_RECENT_MAX = 512


def _recent(file: Path) -> Path:
    return file.with_name(file.name.removesuffix(".marshal") + ".recent.marshal")


def _read_map(file: Path) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """A map kept by :func:`_save_map`: its entries, those set since it was written whole, and whether the
    whole map must be written next (it is missing or damaged)."""
    whole = _read(file)
    recent = _read(_recent(file)) or {}
    value = whole if whole is not None else {}
    value.update(recent)  # the newer entries win; each is right on its own (a blob id's facts, a stat's blob)
    return value, recent, whole is None


def _save_map(file: Path, value: dict[str, Any], recent: dict[str, Any], whole: bool) -> None:
    """Write a map of 10,000 entries of which a run changed a few: only the entries set since the whole map
    was last written, to a small file beside it; the whole map when it is due (``whole``: an entry was
    removed, or the file is missing), or when the recent entries grew past :data:`_RECENT_MAX`."""
    if whole or len(recent) > _RECENT_MAX:
        _write(file, value)
        _recent(file).unlink(missing_ok=True)
        recent.clear()
    else:
        _write(_recent(file), recent)


def _write(file: Path, value: dict[str, Any]) -> None:
    write_map(file, _MAGIC, value)


def _read(file: Path) -> dict[str, Any] | None:
    """A map written by :func:`_write`, or None when it is missing, damaged or of another format."""
    return read_map(file, _MAGIC)


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
