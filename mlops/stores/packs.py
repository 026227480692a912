"""Pack files: many small blobs in one file plus an index, made visible at once (as git and restic do).

A pack lives in ``<root>/packs/`` as two files named by a random id:

* ``<id>.pack``: the blobs' bytes, one after another, nothing else;
* ``<id>.idx``: the line ``mlops-pack-index-v1``, the crc32 of the payload as 8 hex digits and a newline,
  then the payload: ``marshal.dumps((hexdigests, offsets, sizes), 4)``, three lists of equal length.
  Three flat lists load in about half the time of a ``{hexdigest: (offset, size)}`` dict (10,000
  entries: ~2 ms against ~4 ms), because no tuple is built per blob.

The ``.idx`` is what makes a pack visible: it is renamed into place after its ``.pack``, so a ``.pack``
without an ``.idx`` (a command killed between the two renames) is an orphan and is ignored, and so is an
index whose magic or crc is wrong, or whose pack is absent. Reads re-verify every blob's sha256.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import threading
import time
import zlib
from collections.abc import Callable, KeysView
from pathlib import Path
from types import TracebackType

from mlops.errors import StoreError
from mlops.stores.fileio import fsync_directory as _fsync_directory
from mlops.stores.fileio import make_read_only
from mlops.stores.fileio import write_all as _write_all
from mlops.stores.fileio import write_all_of as _write_all_of

PACKS_FOLDER = "packs"
INDEX_MAGIC = b"mlops-pack-index-v1\n"
_HEADER = len(INDEX_MAGIC) + 9  # the magic line, then "%08x\n" % crc32(payload)
_MARSHAL_VERSION = 4  # pinned: every Python since 3.4 reads it
# Staged bytes go to the pack file in chunks of about this much, by writev from the buffers read: a bigger batch
# held more freshly allocated memory at once, and fresh memory costs a page fault per 4 KiB (4 MiB batches took
# 30 ms more of 10,000 small files than these).
FLUSH_BYTES = 256 * 1024
# A folder's mtime ticks coarsely (Linux: a clock tick; some file systems: seconds): a pack committed in the
# same tick as our listing leaves it unchanged. A listing this close to the mtime is not trusted on a miss.
RACY_NS = 2_000_000_000

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_NOT_FOUND = (FileNotFoundError, NotADirectoryError)


def encode_index(hexdigests: list[str], offsets: list[int], sizes: list[int]) -> bytes:
    payload = marshal.dumps((hexdigests, offsets, sizes), _MARSHAL_VERSION)
    return b"%s%08x\n%s" % (INDEX_MAGIC, zlib.crc32(payload), payload)


def decode_index(data: bytes) -> tuple[list[str], list[int], list[int]] | None:
    """The three lists of an ``.idx``, or None when it is damaged (bad magic, crc or shape)."""
    if not data.startswith(INDEX_MAGIC) or data[_HEADER - 1 : _HEADER] != b"\n":
        return None
    payload = memoryview(data)[_HEADER:]
    try:
        if int(data[len(INDEX_MAGIC) : _HEADER - 1], 16) != zlib.crc32(payload):
            return None
        lists = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):
        return None
    if not (isinstance(lists, tuple) and len(lists) == 3 and all(isinstance(part, list) for part in lists)):
        return None
    hexdigests, offsets, sizes = lists
    if not len(hexdigests) == len(offsets) == len(sizes):
        return None
    return hexdigests, offsets, sizes


class _Pack:
    def __init__(self, path: Path, hexdigests: list[str], offsets: list[int], sizes: list[int]) -> None:
        self.path = path
        self.hexdigests = hexdigests
        self.offsets = offsets
        self.sizes = sizes
        self._positions: dict[str, int] | None = None  # built on the first read: has/missing never need it

    def find(self, hexdigest: str) -> tuple[Path, int, int]:
        if self._positions is None:
            self._positions = dict(zip(self.hexdigests, range(len(self.hexdigests)), strict=True))
        i = self._positions[hexdigest]
        return self.path, self.offsets[i], self.sizes[i]


class PackIndex:
    """Which committed pack holds a digest, and where: every ``*.idx`` of a ``packs/`` folder, read lazily once.

    Another process may commit a pack after we read the folder: :meth:`refresh` (called on a lookup miss)
    reads the indexes that appeared since, when the folder's mtime changed or the listing was racy.
    Lookups take no lock (single dict operations); reading indexes does, since a store is shared by the
    threads of a checkout.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.damaged: list[Path] = []  # indexes ignored: bad magic or crc, or their pack is absent
        self.generation = 0  # packs known so far: a caller that looked up before a refresh compares it
        self._where: dict[str, int] = {}  # hexdigest -> position in _packs
        self._packs: list[_Pack] = []
        self._seen: set[str] = set()  # .idx names read; an index is renamed into place whole, so never changes
        self._listed = False
        self._mtime_ns: int | None = None  # the folder's when last listed; None when it did not exist
        self._racy = False
        self._lock = threading.Lock()

    def hexdigests(self) -> KeysView[str]:
        """Every packed hexdigest: a live view (a refresh adds to it), for lookups in hot loops."""
        if not self._listed:
            self.refresh()
        return self._where.keys()

    def locate(self, hexdigest: str) -> tuple[Path, int, int] | None:
        """``(pack path, offset, size)`` of a packed blob, or None."""
        position = self._where.get(hexdigest) if self._listed else None
        if position is None:
            self.refresh()
            position = self._where.get(hexdigest)
        return None if position is None else self._packs[position].find(hexdigest)

    def refresh(self) -> None:
        """Read the indexes committed since the last listing, if the folder may have changed since."""
        with self._lock:
            if self._listed and not self._racy and self._folder_mtime() == self._mtime_ns:
                return
            # The mtime is read before listing: a pack renamed in after the listing then changes it again.
            mtime = self._folder_mtime()
            self._racy = mtime is not None and time.time_ns() - mtime < RACY_NS
            try:
                names = [entry.name for entry in self.folder.iterdir()] if mtime is not None else []
            except _NOT_FOUND:
                names = []
            for name in names:
                if name.endswith(".idx") and name not in self._seen:
                    self._seen.add(name)
                    self._load(name)
            self._listed, self._mtime_ns = True, mtime

    def add(self, pack_id: str, hexdigests: list[str], offsets: list[int], sizes: list[int]) -> None:
        """A pack this process just committed: known without reading it back."""
        with self._lock:
            self._seen.add(f"{pack_id}.idx")
            self._remember(self.folder / f"{pack_id}.pack", hexdigests, offsets, sizes)

    def _folder_mtime(self) -> int | None:
        try:
            return self.folder.stat().st_mtime_ns
        except _NOT_FOUND:
            return None

    def _load(self, name: str) -> None:
        index = self.folder / name
        pack = index.with_suffix(".pack")
        try:
            lists = decode_index(index.read_bytes())
            present = pack.is_file()
        except OSError:
            lists, present = None, False  # unreadable is treated as damaged: lookups must not fail on it
        if lists is None or not present:
            self.damaged.append(index)
        else:
            self._remember(pack, *lists)

    def _remember(self, pack: Path, hexdigests: list[str], offsets: list[int], sizes: list[int]) -> None:
        self._packs.append(_Pack(pack, hexdigests, offsets, sizes))  # before a lookup can find its position
        self._where.update(dict.fromkeys(hexdigests, len(self._packs) - 1))
        self.generation += 1


def _seal(fd: int, name: Path) -> None:
    """Read-only like a loose blob, whatever the umask, and on disk."""
    make_read_only(fd, name)
    os.fsync(fd)


class PackWriter:
    """Stage blobs into one new pack; :meth:`commit` makes it durable and visible, anything else leaves nothing.

    Whether the store already holds a blob is decided in memory: the pack index (read once) and
    ``stored_loose(hexdigest)``, which lists loose fan-out folders lazily. A blob stored elsewhere meanwhile
    may be packed again: harmless, content-addressed.

    A forked worker (see ``mlops.loader.hash_workers``) stages into a *part*: :meth:`new_part`, made here
    before the fork, writes its own pack file in the worker, which :meth:`seal` makes durable there. The
    worker hands the part's lists back, :meth:`adopt` takes them, and :meth:`commit` makes every part
    visible along with this writer's own pack (a part never commits alone); :meth:`abort` removes them all.
    """

    def __init__(
        self, root: Path, url: str, index: PackIndex, stored_loose: Callable[[str], bool], staging: Path
    ) -> None:
        self.staged = 0
        self.staged_bytes = 0
        self._root = root
        self._url = url
        self._index = index
        self._stored_loose = stored_loose
        self._staging = staging
        self._id = f"{os.urandom(8).hex()}-{os.getpid()}"
        self._pack_tmp = staging / f"pack-{self._id}.pack"
        index.refresh()  # packs committed since the store read its index are not packed again
        self._packed = index.hexdigests()
        self._in_batch: set[str] = set()
        self._hexdigests: list[str] = []
        self._offsets: list[int] = []
        self._sizes: list[int] = []
        self._parts: list[PackWriter] = []
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._fd: int | None = None
        self._to_remove: list[Path] = []  # on abort, in order: the index before the pack it makes visible
        self._state = "open"

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._state != "committed":
            self.abort()

    def add_hashed(self, digest: str, data: bytes) -> bool:
        """Stage ``data``, whose sha256 the caller computed as ``digest`` ("sha256:<hex>"), unless the store
        (loose or packed) or this batch already holds it. True when staged. Nothing is visible in the store
        until commit()."""
        if self._state != "open":
            raise ValueError(f"this pack writer is {self._state}")
        hexdigest = digest[7:]
        if len(digest) != 71 or not digest.startswith("sha256:"):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        try:
            if hexdigest in self._in_batch or hexdigest in self._packed or self._stored_loose(hexdigest):
                return False
            self._in_batch.add(hexdigest)
            self._hexdigests.append(hexdigest)
            self._offsets.append(self.staged_bytes)
            self._sizes.append(len(data))
            self.staged += 1
            self.staged_bytes += len(data)
            self._buffer.append(data)
            self._buffered += len(data)
            if self._buffered >= FLUSH_BYTES:
                self._flush()
        except OSError as exc:
            raise self._failed(exc) from exc
        return True

    @property
    def staged_with_parts(self) -> tuple[int, int]:
        """Distinct blobs and their bytes staged here and in the adopted parts (two workers may both have staged
        the same content: it is packed twice, harmlessly, but counted once)."""
        if not self._parts:
            return self.staged, self.staged_bytes
        sizes: dict[str, int] = {}
        for writer in (self, *self._parts):
            sizes.update(zip(writer._hexdigests, writer._sizes, strict=True))
        return len(sizes), sum(sizes.values())

    def new_part(self) -> PackWriter:
        """A writer for a forked worker, into its own pack file; committed and aborted with this one."""
        if self._state != "open":
            raise ValueError(f"this pack writer is {self._state}")
        part = PackWriter(self._root, self._url, self._index, self._stored_loose, self._staging)
        self._parts.append(part)
        return part

    def seal(self) -> tuple[list[str], list[int], list[int]]:
        """In the worker: write and fsync the part's pack file; the lists :meth:`adopt` takes in the parent."""
        if self._state != "open":
            raise ValueError(f"this pack writer is {self._state}")
        try:
            self._seal_pack()
        except OSError as exc:
            raise self._failed(exc) from exc
        self._state = "sealed"
        return self._hexdigests, self._offsets, self._sizes

    def adopt(self, lists: tuple[list[str], list[int], list[int]]) -> None:
        """In the parent, on a part it made: what the worker staged and sealed, committed with the parent."""
        if self._state != "open" or self.staged:
            raise ValueError(f"this pack writer is {self._state} and has staged {self.staged} blobs itself")
        self._hexdigests, self._offsets, self._sizes = lists
        self.staged, self.staged_bytes = len(self._sizes), sum(self._sizes)
        self._state = "sealed"

    def commit(self) -> None:
        """Write what is buffered, fsync each pack and its index, rename every pack into place, then every index."""
        if self._state == "committed":
            return
        if self._state != "open":
            raise ValueError(f"this pack writer is {self._state}")
        writers = [w for w in (self, *self._parts) if w.staged]
        folder = self._index.folder
        try:
            for writer in writers:
                writer._write_index()
            if writers and not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                _fsync_directory(self._root)  # it gained packs/
            for writer in writers:
                writer._pack_tmp.replace(folder / f"{writer._id}.pack")
                writer._to_remove = [writer._index_tmp, folder / f"{writer._id}.pack"]
            if writers:
                _fsync_directory(folder)  # the packs' names are on disk before the indexes that make them visible
            for writer in writers:
                writer._index_tmp.replace(folder / f"{writer._id}.idx")
                writer._to_remove = [folder / f"{writer._id}.idx", folder / f"{writer._id}.pack"]
            if writers:
                _fsync_directory(folder)
        except OSError as exc:
            raise self._failed(exc) from exc
        except BaseException:
            self.abort()
            raise
        for writer in (self, *self._parts):
            writer._to_remove.clear()
            writer._state = "committed"
        for writer in writers:
            self._index.add(writer._id, writer._hexdigests, writer._offsets, writer._sizes)

    @property
    def _index_tmp(self) -> Path:
        return self._staging / f"pack-{self._id}.idx"

    def _write_index(self) -> None:
        """Seal this writer's pack file (a part's worker did already) and write its index beside it, fsynced."""
        if self._state == "open":
            self._seal_pack()
        self._to_remove = [self._index_tmp, self._pack_tmp]
        fd = os.open(self._index_tmp, _CREATE_FLAGS, 0o444)
        try:
            _write_all(fd, encode_index(self._hexdigests, self._offsets, self._sizes))
            _seal(fd, self._index_tmp)
        finally:
            os.close(fd)

    def _seal_pack(self) -> None:
        """Write what is buffered, then fsync and close the pack file (if anything was staged)."""
        self._flush()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                _seal(fd, self._pack_tmp)
            finally:
                os.close(fd)

    def abort(self) -> None:
        """Remove what this writer wrote (an index first); idempotent, and a no-op after commit."""
        if self._state == "committed":
            return
        self._state = "aborted"
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        for name in self._to_remove:
            with contextlib.suppress(OSError):
                name.unlink()
        self._to_remove.clear()
        self._buffer.clear()
        for name in (self._index_tmp, self._pack_tmp):  # a part's pack file was opened by its worker, not here
            with contextlib.suppress(OSError):
                name.unlink()
        for part in self._parts:
            part.abort()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._fd is None:
            self._staging.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._pack_tmp, _CREATE_FLAGS, 0o444)
            self._to_remove.append(self._pack_tmp)
        chunks, self._buffer = self._buffer, []
        self._buffered = 0
        _write_all_of(self._fd, chunks)

    def _failed(self, exc: OSError) -> StoreError:
        self.abort()
        text = (str(exc) or type(exc).__name__).splitlines()[0]
        return StoreError(f"packing {self.staged:,} blobs in {self._url} failed: {text}")
