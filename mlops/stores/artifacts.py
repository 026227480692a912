"""The content-addressed artifact store: bytes in, ``sha256:<hex>`` out.

One small interface (:class:`ArtifactStore`), one I/O seam per backend. The local backend keeps
blobs under ``<root>/sha256/<2 hex>/<62 hex>``. A blob is either complete and verified under its
final name or absent: :meth:`LocalArtifactStore.put_files` (``put_file`` is a batch of one)

1. hashes each file while copying it to a temporary file under ``<root>/tmp`` (a blob the store
   already holds, or one met earlier in the batch, is not written again);
2. makes every temporary file durable: one ``syncfs`` for the whole batch where Linux offers it
   (10,000 small blobs: one sync instead of 10,000 fsyncs, each a journal commit), else, or when
   much unrelated data waits to be written (syncfs would wait for it too), an fsync per file
   (``MLOPS_STORE_SYNCFS=0`` always does that);
3. renames each into place (atomic), then fsyncs each directory that gained a name once.

Files over 1 MiB stream through a two-thread pipeline (hash one chunk while the previous one is
written, with the kernel asked to start writing each chunk to disk at once), so storing a large
file costs about as much as hashing it.

A command killed at any step leaves complete blobs under final names and, at worst, orphaned
temporary files under ``<root>/tmp``; a failure removes its temporary files and raises one
:class:`StoreError`. Reads re-verify.

Many small blobs can go into one *pack* instead, as git and restic do (10,000 files cost two files, not
10,000 inodes): :meth:`LocalArtifactStore.pack_writer` appends them to a temporary file under ``<root>/tmp``,
and its commit fsyncs and renames ``<id>.pack`` and then its index ``<id>.idx`` into ``<root>/packs/``; the
index makes the pack visible, whole (format: :mod:`mlops.stores.packs`). A blob may be loose, packed or
both: ``has``, ``missing`` and ``get_file`` look in both, with the pack indexes read once per store and
again when ``packs/`` changes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from mlops.errors import BlobNotFound, DigestMismatch, StoreError
from mlops.stores.fileio import fsync_directory as _fsync_directory
from mlops.stores.fileio import make_read_only as _make_read_only
from mlops.stores.fileio import write_all as _write_all
from mlops.stores.packs import PACKS_FOLDER, PackIndex, PackWriter
from mlops.stores.retry import DEFAULT_RETRY, RetryPolicy, with_retries

if TYPE_CHECKING:
    from concurrent.futures import Future

CHUNK = 1024 * 1024
PIPELINE_CHUNK = 4 * 1024 * 1024
SMALL_BLOB = 1024 * 1024  # files up to this size are read whole; larger ones stream through the pipelined copy
PROGRESS_EVERY = 256
# syncfs writes back the whole file system: worth it while little else waits to be written. Past this much
# unrelated dirty data (plus an allowance per blob: what one fsync costs, roughly), each blob is fsynced instead.
SYNCFS_SLACK = 64 * 1024 * 1024
SYNCFS_SLACK_PER_BLOB = 32 * 1024
FSYNC_WORKERS = 16  # fsyncs at once when blobs are synced one by one: their journal commits are shared
# missing() lists a fan-out folder instead of stat-ing each digest of it when that is cheaper: listing costs
# about a quarter of a stat per name in the folder (~0.65 us against ~2.5 us), a folder's size on disk about
# 100 bytes per name (ext4 ~106, btrfs ~124); and a folder asked about fewer than LISTDIR_MIN times is not listed.
LISTDIR_MIN = 8
STATS_PER_LISTED_NAME = 0.25
FOLDER_BYTES_PER_NAME = 100

StrPath = str | os.PathLike[str]
Progress = Callable[[int, int], None]


class ArtifactStore(Protocol):
    url: str

    def has(self, digest: str) -> bool: ...

    def missing(self, digests: Iterable[str]) -> set[str]: ...

    def put_file(self, path: Path) -> tuple[str, int]: ...

    def put_files(self, paths: Sequence[StrPath], progress: Progress | None = None) -> list[tuple[str, int]]:
        """Store every file; ``(digest, size)`` per path, in order. Blobs already stored are not written again.

        All or nothing per blob: a failure raises one :class:`StoreError` and leaves no partial blob under a
        final name (blobs completed before it may stay: content-addressed, they are correct and harmless).
        """
        ...

    def get_file(self, digest: str, dest: Path) -> None: ...


# Errors Path.is_file() reports as "not a file"; anything else (EACCES, ...) is raised, here as there.
_NOT_FOUND_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})
_NOT_FOUND_WINERRORS = frozenset({21, 1921})  # ERROR_NOT_READY, ERROR_CANT_RESOLVE_FILENAME


def _is_file(path: str) -> bool:
    """``Path(path).is_file()`` (a regular file, following symlinks) with one stat and no Path object."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)  # noqa: PTH116 - a Path per digest is the cost avoided here
    except OSError as exc:
        if exc.errno in _NOT_FOUND_ERRNOS or getattr(exc, "winerror", None) in _NOT_FOUND_WINERRORS:
            return False
        raise
    except ValueError:  # e.g. an embedded NUL byte
        return False


def _names_in(folder: str) -> frozenset[str]:
    """The names in ``folder``; none when it does not exist (errors as for :func:`_is_file`)."""
    try:
        return frozenset(os.listdir(folder))  # noqa: PTH208 - names, not a Path per entry
    except OSError as exc:
        if exc.errno in _NOT_FOUND_ERRNOS or getattr(exc, "winerror", None) in _NOT_FOUND_WINERRORS:
            return frozenset()
        raise


class _LooseNames:
    """Which loose blobs exist: one listing per fan-out folder, made the first time a digest of it is asked about."""

    def __init__(self, sha256_dir: str, any_loose: bool) -> None:
        self._sha256_dir = sha256_dir
        self._any_loose = any_loose  # no sha256/ folder: no blob, and no folder worth listing
        self._folders: dict[str, frozenset[str]] = {}

    def holds(self, hexdigest: str) -> bool:
        if not self._any_loose:
            return False
        fanout = hexdigest[:2]
        names = self._folders.get(fanout)
        if names is None:
            names = self._folders[fanout] = _names_in(f"{self._sha256_dir}{fanout}")
        return hexdigest[2:] in names


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return f"sha256:{digest.hexdigest()}", size


# ------------------------------------------------------------------------------------------ low-level I/O

_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_READ_FLAGS = os.O_RDONLY | _BINARY | getattr(os, "O_NONBLOCK", 0)  # a FIFO is refused, not waited on
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY
_FADVISE = getattr(os, "posix_fadvise", None)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 0)


def _unreadable(name: str, exc: OSError) -> StoreError:
    """A source that cannot be read is the caller's problem, not the store's: reported at once, never retried."""
    return StoreError(f"cannot store {name}: {exc.strerror or exc}")


def _read_whole(fd: int, size: int) -> bytes:
    """The whole file: one read of the size fstat gave, one more to see the end (a file may grow meanwhile)."""
    first = os.read(fd, size + 1)
    if not first:
        return first
    parts = [first]
    while more := os.read(fd, max(size, CHUNK)):
        parts.append(more)
    return first if len(parts) == 1 else b"".join(parts)


def _write_and_start_writeback(fd: int, data: memoryview, offset: int) -> None:
    """Write a chunk, then ask the kernel to start writing it to disk now (Linux; a hint elsewhere ignored).

    POSIX_FADV_DONTNEED starts writeback of the range without waiting for it (and drops pages already
    clean): the disk works while the next chunks are hashed, so the fsync at the end has little left to
    wait for (1 GiB: the final fsync went from about 0.5 s to nothing), and a copy of a large file does
    not push the rest of the page cache out.
    """
    _write_all(fd, data)
    if _FADVISE is not None:
        with contextlib.suppress(OSError):
            _FADVISE(fd, offset, len(data), _DONTNEED)


def _copy_and_hash(source: int, name: str, fd: int) -> tuple[str, int]:
    """One pass over the bytes: each chunk is written by a helper thread while this one hashes the next.

    Both sha256 and write() release the GIL, so on two cores copying costs little more than hashing
    (benchmarks/register_1g.py and benchmarks/snapshot_10k.py measure it against hashlib alone). Two
    buffers, reused: a chunk is read into one while the other is still being written.
    """
    digest = hashlib.sha256()
    size = 0
    buffers = (bytearray(PIPELINE_CHUNK), bytearray(PIPELINE_CHUNK))
    reader = io.FileIO(source, "rb", closefd=False)
    from concurrent.futures import ThreadPoolExecutor  # threads (and logging, which they import) only when used

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-store-write") as writer:
        pending: Future[None] | None = None
        turn = 0
        while True:
            buffer = buffers[turn]
            turn ^= 1
            try:
                n = reader.readinto(buffer)
            except OSError as exc:
                raise _unreadable(name, exc) from None
            if not n:
                break
            view = memoryview(buffer)[:n]
            written = writer.submit(_write_and_start_writeback, fd, view, size)
            digest.update(view)
            size += n
            if pending is not None:
                pending.result()  # the buffer read into next is free once this write is done
            pending = written
        if pending is not None:
            pending.result()
    return f"sha256:{digest.hexdigest()}", size


_syncfs: Callable[[int], int] | None = None
_syncfs_known = False


def _syncfs_function() -> Callable[[int], int] | None:
    """libc's ``syncfs`` (Linux), or None: then each file is fsynced instead."""
    global _syncfs, _syncfs_known
    if not _syncfs_known:
        _syncfs_known = True
        if sys.platform.startswith("linux") and os.environ.get("MLOPS_STORE_SYNCFS", "1") != "0":
            try:
                import ctypes

                function = ctypes.CDLL(None, use_errno=True).syncfs
                function.argtypes = [ctypes.c_int]
                function.restype = ctypes.c_int
                _syncfs = function
            except (OSError, AttributeError):
                _syncfs = None
    return _syncfs


def _sync_filesystem(syncfs: Callable[[int], int], folder: str) -> None:
    """Every dirty page and inode of the file system holding ``folder`` on disk (errors reported since Linux 5.8)."""
    import ctypes

    fd = os.open(folder, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), folder)
    finally:
        os.close(fd)


def _dirty_bytes() -> int | None:
    """Bytes waiting to be written to disk, all file systems together (Linux), or None where unknown."""
    try:
        with open("/proc/meminfo", "rb") as handle:  # noqa: PTH123 - one read, no Path needed
            data = handle.read()
    except OSError:
        return None
    total, found = 0, False
    for line in data.splitlines():
        if line.startswith((b"Dirty:", b"Writeback:")):
            total += int(line.split()[1]) * 1024
            found = True
    return total if found else None


def _fsync_files(names: list[str]) -> None:
    """fsync each file, a few at a time; the first failure is raised."""

    def fsync_share(share: list[str]) -> None:
        for name in share:
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    workers = max(1, min(FSYNC_WORKERS, len(names)))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlops-store-fsync") as pool:
        for future in [pool.submit(fsync_share, names[i::workers]) for i in range(workers)]:
            future.result()


# ------------------------------------------------------------------------------------------ the local store


class LocalArtifactStore:
    def __init__(self, root: Path, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.root = root
        self.url = root.resolve().as_uri()
        self.retry = retry
        self._sha256_dir = f"{root / 'sha256'}{os.sep}"
        self._staging = os.fspath(root / "tmp")
        self._packs = PackIndex(root / PACKS_FOLDER)

    def _blob_path(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.root / "sha256" / hexdigest[:2] / hexdigest[2:]

    def _blob_name(self, digest: str) -> str:
        """:meth:`_blob_path` as a plain string: one join instead of four Path objects."""
        hexdigest = digest.removeprefix("sha256:")
        return f"{self._sha256_dir}{hexdigest[:2]}{os.sep}{hexdigest[2:]}"

    def has(self, digest: str) -> bool:
        hexdigest = digest.removeprefix("sha256:")
        packed = self._packs.hexdigests()  # a live view: a refresh adds to it
        if hexdigest in packed or _is_file(self._blob_name(digest)):
            return True
        self._packs.refresh()  # packed by another process since the index was read?
        return hexdigest in packed

    def missing(self, digests: Iterable[str]) -> set[str]:
        # On strings, per fan-out folder: validate asks about every digest of the repository (10,000 for
        # 10,000 versions), and Path objects cost several times the stat itself.
        packed, generation = self._packs.hexdigests(), self._packs.generation
        absent = self._not_loose([d for d in set(digests) if d.removeprefix("sha256:") not in packed])
        if absent:
            self._packs.refresh()  # packs committed by another process since the index was read?
            if self._packs.generation != generation:
                absent = {d for d in absent if d.removeprefix("sha256:") not in packed}
        return absent

    def _not_loose(self, digests: list[str]) -> set[str]:
        """The digests without a loose blob: per fan-out folder, one listing or one stat per digest, the cheaper."""
        by_fanout: dict[str, list[str]] = {}
        for digest in digests:
            by_fanout.setdefault(digest.removeprefix("sha256:")[:2], []).append(digest)
        out: set[str] = set()
        for fanout, wanted in by_fanout.items():
            names = self._listing_if_cheaper(fanout, len(wanted))
            if names is None:
                out.update(d for d in wanted if not _is_file(self._blob_name(d)))
            else:
                out.update(d for d in wanted if d.removeprefix("sha256:")[2:] not in names)
        return out

    def _listing_if_cheaper(self, fanout: str, wanted: int) -> frozenset[str] | None:
        """The names in a fan-out folder when listing it beats ``wanted`` stats (a big store's folders are big)."""
        if wanted < LISTDIR_MIN:
            return None
        folder = f"{self._sha256_dir}{fanout}"
        try:
            st = os.stat(folder)  # noqa: PTH116 - strings throughout
        except OSError as exc:
            return frozenset() if exc.errno in _NOT_FOUND_ERRNOS else None
        except ValueError:
            return None
        if not stat.S_ISDIR(st.st_mode) or st.st_size * STATS_PER_LISTED_NAME > wanted * FOLDER_BYTES_PER_NAME:
            return None
        return _names_in(folder)

    def pack_writer(self) -> PackWriter:
        """A writer that stages many small blobs into one new pack; nothing is visible before its commit()."""
        loose = _LooseNames(self._sha256_dir, (self.root / "sha256").is_dir())
        return PackWriter(self.root, self.url, self._packs, loose.holds, self.root / "tmp")

    def put_file(self, path: Path) -> tuple[str, int]:
        return self.put_files([path])[0]

    def put_files(self, paths: Sequence[StrPath], progress: Progress | None = None) -> list[tuple[str, int]]:
        names = [os.fspath(p) for p in paths]
        if not names:
            return []
        what = f"storing {names[0]}" if len(names) == 1 else f"storing {len(names):,} files"
        batch = lambda: _Batch(self, names, progress).run()  # noqa: E731 - a fresh attempt each time
        return with_retries(f"{what} in {self.url}", batch, (OSError,), self.retry)

    def get_file(self, digest: str, dest: Path) -> None:
        blob = self._blob_path(digest)
        if blob.is_file():
            with blob.open("rb") as source:
                self._copy_verified(source, None, digest, dest)
            return
        where = self._packs.locate(digest.removeprefix("sha256:"))
        if where is None:
            raise BlobNotFound(f"{digest} is not in the artifact store {self.url}")
        pack, offset, size = where
        try:
            source = pack.open("rb")
        except OSError as exc:
            raise StoreError(f"{digest}: its pack {pack.name} in {self.url} cannot be read: {exc.strerror}") from exc
        with source:
            source.seek(offset)
            self._copy_verified(source, size, digest, dest)

    def _copy_verified(self, source: BinaryIO, size: int | None, digest: str, dest: Path) -> None:
        """Copy ``size`` bytes (None: to the end) to ``dest``, atomically, if they hash to ``digest``."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        import tempfile

        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        tmp = Path(tmp_name)
        try:
            hasher = hashlib.sha256()
            left = size
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK if left is None else min(CHUNK, left)):
                    hasher.update(chunk)
                    out.write(chunk)
                    if left is not None:
                        left -= len(chunk)
            if f"sha256:{hasher.hexdigest()}" != digest:
                raise DigestMismatch(
                    f"{digest}: the stored bytes hash to sha256:{hasher.hexdigest()}; the blob in {self.url} is damaged"
                )
            tmp.replace(dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


class _Batch:
    """One attempt at :meth:`LocalArtifactStore.put_files`: stage, sync, publish; on failure, remove what was staged."""

    def __init__(self, store: LocalArtifactStore, names: list[str], progress: Progress | None) -> None:
        self.store = store
        self.names = names
        self.progress = progress
        self.syncfs = _syncfs_function() if len(names) > 1 else None  # one file: its own fsync is cheaper
        self.staged: dict[str, str] = {}  # final blob name -> temporary file, in staging order
        self.staged_bytes = 0
        self.prefix = f"{store._staging}{os.sep}put-{os.getpid()}-{os.urandom(4).hex()}-"

    def run(self) -> list[tuple[str, int]]:
        (self.store.root / "tmp").mkdir(parents=True, exist_ok=True)
        try:
            out = self._stage_all()
            if self.staged:
                if self.syncfs is not None:
                    self._sync_staged(self.syncfs)
                self._publish()
            return out
        except BaseException:
            for tmp in self.staged.values():
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # noqa: PTH108 - strings throughout: a Path per blob costs more than its syscalls
            raise

    def _sync_staged(self, syncfs: Callable[[int], int]) -> None:
        """Every staged file on disk: one syncfs, unless much unrelated data would have to be written with it."""
        dirty = _dirty_bytes()
        allowance = self.staged_bytes + SYNCFS_SLACK + SYNCFS_SLACK_PER_BLOB * len(self.staged)
        if dirty is None or dirty <= allowance:
            _sync_filesystem(syncfs, self.store._staging)
        else:
            _fsync_files(list(self.staged.values()))

    def _stage_all(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        total, progress = len(self.names), self.progress
        if progress is not None:
            progress(0, total)
        for i, name in enumerate(self.names):
            out.append(self._stage(name, i))
            if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
                progress(i + 1, total)
        if progress is not None and total % PROGRESS_EVERY:
            progress(total, total)
        return out

    def _stage(self, name: str, i: int) -> tuple[str, int]:
        try:
            source = os.open(name, _READ_FLAGS)
        except OSError as exc:
            raise _unreadable(name, exc) from None
        try:
            try:
                st = os.fstat(source)
                if not stat.S_ISREG(st.st_mode):
                    raise StoreError(f"cannot store {name}: not a regular file")
                data = _read_whole(source, st.st_size) if st.st_size <= SMALL_BLOB else None
            except OSError as exc:
                raise _unreadable(name, exc) from None
            if data is not None:
                return self._stage_bytes(data, i)
            return self._stage_stream(source, name, i)
        finally:
            os.close(source)

    def _stage_bytes(self, data: bytes, i: int) -> tuple[str, int]:
        hexdigest = hashlib.sha256(data).hexdigest()
        final = f"{self.store._sha256_dir}{hexdigest[:2]}{os.sep}{hexdigest[2:]}"
        if final not in self.staged and not _is_file(final):
            tmp = f"{self.prefix}{i}"
            fd = os.open(tmp, _CREATE_FLAGS, 0o444)
            self.staged[final] = tmp
            self.staged_bytes += len(data)
            try:
                _write_all(fd, data)
                self._seal(fd, tmp)
            finally:
                os.close(fd)
        return f"sha256:{hexdigest}", len(data)

    def _stage_stream(self, source: int, name: str, i: int) -> tuple[str, int]:
        tmp = f"{self.prefix}{i}"
        fd = os.open(tmp, _CREATE_FLAGS, 0o444)
        try:
            try:
                digest, size = _copy_and_hash(source, name, fd)
                self._seal(fd, tmp)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # noqa: PTH108
            raise
        final = self.store._blob_name(digest)
        if final in self.staged or _is_file(final):
            os.unlink(tmp)  # noqa: PTH108
        else:
            self.staged[final] = tmp
            self.staged_bytes += size
        return digest, size

    def _seal(self, fd: int, tmp: str) -> None:
        _make_read_only(fd, tmp)  # whatever the umask
        if self.syncfs is None:
            os.fsync(fd)

    def _publish(self) -> None:
        """Rename every staged file into place, then fsync each folder that gained a name."""
        touched: set[str] = set()
        sep = os.sep
        for final, tmp in list(self.staged.items()):
            folder = final.rpartition(sep)[0]
            try:
                os.replace(tmp, final)  # noqa: PTH105 - strings throughout
            except FileNotFoundError:  # the first blob of its folder
                if folder in touched:
                    raise
                sha256_dir = self.store.root / "sha256"
                if not sha256_dir.is_dir():
                    touched.add(os.fspath(self.store.root))  # it gains sha256/
                Path(folder).mkdir(parents=True, exist_ok=True)
                touched.add(os.fspath(sha256_dir))  # it gains the new folder
                os.replace(tmp, final)  # noqa: PTH105
            del self.staged[final]
            touched.add(folder)
        for folder in sorted(touched, key=len, reverse=True):
            _fsync_directory(folder)
