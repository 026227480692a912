"""Hashing a file or a folder for a dataset snapshot: parallel sha256, a stat cache, changes caught.

* :func:`scan` lists the files of a snapshot source with one ``stat`` each. It refuses what a
  snapshot cannot record faithfully: symbolic links that point outside the folder (or at a
  folder), FIFOs, sockets and devices (reading a FIFO would block forever), and names a file
  list cannot hold (control characters, backslashes, bytes that are not UTF-8).
* :func:`hash_files` hashes large files in a thread pool (hashlib releases the GIL on large
  updates, and reads release it too). Small files are Python-bound work, which threads cannot
  share out: forked processes (``hash_workers``) and the calling thread take them from a queue.
  :func:`start_hashing` starts the workers and returns, so the caller can get on with its own
  work (importing what comes next, reading the repository) before it joins in.
* :class:`HashCache` is the stat cache, like git's index: path -> (size, mtime_ns, ctime_ns,
  inode, digest) under ``.mlops/cache/hashes-v1.marshal``. A file whose stat matches is not
  read again. Files changed less than :data:`RACY_NS` before the scan are not remembered, since
  a change within the same timestamp tick would leave their stat as it was ("racily clean").
* A file that changes while it is hashed is caught by comparing its stat before and after
  (size, mtime, ctime, inode) and the number of bytes read with the size: :class:`FileChanged`.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import re
import stat as stat_module
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from mlops.errors import InputError
from mlops.loader.atomic import atomic_write_bytes
from mlops.loader.hash_workers import MAX_JOBS, Workers, can_fork, usable_cpus

if TYPE_CHECKING:
    from concurrent.futures import Future

StatKey = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode
Progress = Callable[[int, int], None]

RACY_NS = 2_000_000_000
SMALL = 1 << 20  # files up to this size are read whole; bigger ones stream through one buffer per thread
BATCH_BYTES = 4 << 20  # a pool task hashes small files until it has read about this much
BATCH_FILES = 256
CACHE_FILE = "hashes-v1.marshal"
_MAGIC = b"mlops-hash-cache\n"


class FileChanged(InputError):
    """A file changed while the snapshot read it: nothing may be registered from such a read."""


class ScannedFile(NamedTuple):  # a tuple, not a dataclass: 10,000 of them are built per snapshot
    rel: str  # the path recorded in the snapshot: relative, '/'-separated
    path: str  # where to read it (a link inside the folder is read through)
    key: StatKey  # stat of what is read (the link's target for a link)


class HashedFile(NamedTuple):
    rel: str
    path: str
    key: StatKey
    digest: str  # sha256:<hex>

    @property
    def size(self) -> int:
        return self.key[0]


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


# ------------------------------------------------------------------------------------------ scan


def scan(source: Path) -> list[ScannedFile]:
    """Every file of ``source`` (a file, or a folder walked recursively), sorted by recorded path."""
    try:
        st = source.lstat()
    except FileNotFoundError:
        raise InputError(f"{source}: no such file or folder") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if stat_module.S_ISLNK(st.st_mode):
        # The source itself may be a link (a "current" pointer, say): snapshot what it points at.
        return scan(Path(os.path.realpath(source)))
    if stat_module.S_ISREG(st.st_mode):
        _check_name(source.name, source)
        return [ScannedFile(source.name, os.fspath(source.absolute()), stat_key(st))]
    if not stat_module.S_ISDIR(st.st_mode):
        raise InputError(f"{source}: not a regular file or folder ({_kind(st.st_mode)})")
    root = os.path.realpath(source)
    found: list[ScannedFile] = []
    _walk(root, "", root, source, found)
    if not found:
        raise InputError(f"{source}: the folder holds no files; there is nothing to snapshot")
    found.sort()  # by recorded path: ScannedFile is a tuple, rel first, and no two files share a rel
    return found


def _walk(directory: str, rel: str, root: str, source: Path, found: list[ScannedFile]) -> None:
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError as exc:
        raise InputError(f"{source / rel if rel else source}: cannot list: {exc.strerror or exc}") from None
    prefix = f"{rel}/" if rel else ""
    append = found.append
    for entry in entries:  # per file, this loop is most of a scan: the common case (a plain file) comes first
        name = entry.name
        if not (name.isascii() and name.isprintable()) or "\\" in name:
            _check_name(prefix + name, f"{source}{os.sep}{prefix}{name}")  # each name once: a folder's first
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise InputError(f"{source}{os.sep}{prefix}{name}: cannot read: {exc.strerror or exc}") from None
        if st.st_mode & _TYPE_BITS == _REGULAR:
            append(ScannedFile(prefix + name, entry.path, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)))
        else:
            _walk_other(entry, prefix + name, st, root, source, found)


_TYPE_BITS = 0o170000  # stat.S_IFMT's mask
_REGULAR = stat_module.S_IFREG


def _walk_other(
    entry: os.DirEntry[str], child: str, st: os.stat_result, root: str, source: Path, found: list[ScannedFile]
) -> None:
    """A folder (walked), a link (followed when it stays inside ``root`` and ends at a file), or a refusal."""
    mode = st.st_mode
    if stat_module.S_ISDIR(mode):
        _walk(entry.path, child, root, source, found)
        return
    if stat_module.S_ISLNK(mode):
        shown = f"{source}{os.sep}{child}"
        target = os.path.realpath(entry.path)
        if os.path.commonpath([root, target]) != root:
            raise InputError(
                f"{shown}: a symbolic link to {target}, outside {source}; a snapshot holds only the folder's "
                "own files: copy the file in, or snapshot the folder it lives in"
            )
        try:
            st = os.stat(target)  # noqa: PTH116 - strings throughout (see _digest_of)
        except OSError as exc:
            raise InputError(f"{shown}: a link to {target}, which cannot be read: {exc.strerror}") from None
        if stat_module.S_ISDIR(st.st_mode):
            raise InputError(f"{shown}: a symbolic link to a folder; a snapshot follows links to files only")
        mode = st.st_mode
    if not stat_module.S_ISREG(mode):
        raise InputError(
            f"{source}{os.sep}{child}: not a regular file ({_kind(mode)}); a snapshot holds regular files only"
        )
    found.append(ScannedFile(child, entry.path, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)))


_BAD_NAME = re.compile(r"[\x00-\x1f\x7f\\]")


def _check_name(rel: str, shown: Path | str) -> None:
    found = _BAD_NAME.search(rel)
    if found is not None:
        bad = found.group()
        raise InputError(f"{shown!s}: the name holds {bad!r}, which a snapshot's file list cannot record; rename it")
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{shown!s}: the name is not valid UTF-8; rename it") from None


def _kind(mode: int) -> str:
    if stat_module.S_ISFIFO(mode):
        return "a named pipe"
    if stat_module.S_ISSOCK(mode):
        return "a socket"
    if stat_module.S_ISCHR(mode) or stat_module.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


# ------------------------------------------------------------------------------------------ cache


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


# ------------------------------------------------------------------------------------------ hashing


class BlobSink(Protocol):
    """Where small files' bytes go as they are hashed (a pack writer of the local store).

    Each forked worker stages into its own part, made with :meth:`new_part` before the fork. The worker
    calls :meth:`seal` on its part when it runs out of files; the parent passes what that returned to
    :meth:`adopt` on its own copy of the part, and commits the parts with the sink.
    """

    def add_hashed(self, digest: str, data: bytes) -> object: ...

    def new_part(self) -> BlobSink: ...

    def seal(self) -> tuple[list[str], list[int], list[int]]: ...

    def adopt(self, lists: tuple[list[str], list[int], list[int]]) -> None: ...


def hash_files(
    files: list[ScannedFile],
    cache: HashCache,
    progress: Progress | None = None,
    workers: int | None = None,
    sink: BlobSink | None = None,
) -> tuple[list[HashedFile], int]:
    """Digests of ``files`` (in their order) and how many were actually read (the rest came from the cache).

    ``sink`` stages the bytes of every file read whole (up to :data:`SMALL`), so a snapshot can store what it
    hashed without reading it a second time.
    Raises :class:`FileChanged` when a file's stat after hashing differs from the stat the scan saw.
    """
    with start_hashing(files, cache, workers, sink) as run:
        return run.finish(progress)


def start_hashing(
    files: list[ScannedFile], cache: HashCache, workers: int | None = None, sink: BlobSink | None = None
) -> HashRun:
    """Start hashing ``files``: forked workers (when they pay) take small files at once, while the caller goes on
    until :meth:`HashRun.finish`. ``workers`` counts processes, the caller's included (None: one per CPU)."""
    return HashRun(files, cache, workers, sink)


class HashRun:
    """Hashing begun by :func:`start_hashing`: :meth:`finish` does the rest, :meth:`close` stops the workers."""

    def __init__(self, files: list[ScannedFile], cache: HashCache, workers: int | None, sink: BlobSink | None) -> None:
        self.files = files
        self.cache = cache
        self.sink = sink
        self.stable_before = time.time_ns() - RACY_NS
        self.out: list[HashedFile | None] = [None] * len(files)
        todo: list[int] = []
        for i, scanned in enumerate(files):
            digest = cache.lookup(scanned.path, scanned.key)
            if digest is None:
                todo.append(i)
            else:
                self.out[i] = HashedFile(scanned.rel, scanned.path, scanned.key, digest)
        self.read = len(todo)
        self.done = len(files) - len(todo)
        self._total = len(files)
        # Large files go to a thread pool (reads and sha256 updates of 1 MiB release the GIL); small ones are
        # hashed by forked workers and by this thread: for files of a few KiB, threads only contend for the GIL
        # (measured: 10,000 x 2 KiB took 0.24 s in one thread, 0.34-0.50 s with 2-8).
        self.large = [i for i in todo if files[i].key[0] > SMALL]
        small = [i for i in todo if files[i].key[0] <= SMALL]
        forks = _fork_count(workers, len(small), sum(files[i].key[0] for i in small))
        self.batches = _batches(files, small, _per_batch(len(small)) if forks else BATCH_FILES)
        self.threads = workers or min(4, usable_cpus())
        self._parts: list[BlobSink | None] = []
        self._workers: Workers | None = None
        self._finished = False
        self._live = True  # the workers' progress is read from their counters until their results are in
        self.processes = 1  # that hash small files: forked workers and this one
        if forks and self.batches:
            self._parts = [None if sink is None else sink.new_part() for _ in range(forks)]
            self._workers = Workers(len(self.batches), forks, self._work, self._seal, self._weight)
            self.processes += forks

    def finish(self, progress: Progress | None = None, skip: Collection[str] = ()) -> tuple[list[HashedFile], int]:
        """Digests of the files (in their order) and how many were read (the rest came from the cache).

        Large files whose recorded path is in ``skip`` are left out (the caller stores and hashes them itself).
        """
        if self._finished:
            raise ValueError("this hashing run is finished")
        self._finished = True
        large = [i for i in self.large if self.files[i].rel not in skip] if skip else self.large
        total = len(self.files) - (len(self.large) - len(large))
        self.read -= len(self.large) - len(large)
        self._total = total
        self._report(progress)
        pool = None
        if large:
            from concurrent.futures import ThreadPoolExecutor  # only large files use threads

            pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mlops-hash")
        futures: dict[Future[list[str]], list[int]] = {}
        try:
            if pool is not None:
                for i in large:
                    futures[pool.submit(_hash_batch, [self.files[i]])] = [i]
            for batch in self._own_batches():
                self._record(batch, _hash_small([self.files[i] for i in batch], self.sink))
                self._report(progress)
            if self._workers is not None:
                collected = self._workers.collect(lambda: self._report(progress))
                self._live = False  # from here on self.done counts the workers' files itself
                for (results, sealed), part in zip(collected, self._parts, strict=True):
                    for job, digests in results:
                        self._record(self.batches[job], digests)
                    if part is not None:
                        part.adopt(sealed)
                self._report(progress)
            pending = set(futures)
            while pending:
                from concurrent.futures import FIRST_COMPLETED, wait

                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._record(futures[future], future.result())
                    self._report(progress)
        finally:
            if pool is not None:
                for future in futures:
                    future.cancel()
                pool.shutdown(wait=True)
        result = [h for h in self.out if h is not None]
        assert len(result) == total
        return result, self.read

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()

    def __enter__(self) -> HashRun:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _own_batches(self) -> Iterator[list[int]]:
        if self._workers is None:
            yield from self.batches
            return
        while (job := self._workers.take()) is not None:
            yield self.batches[job]

    def _work(self, worker: int, job: int) -> list[str]:  # pragma: no cover - runs in a forked worker
        return _hash_small([self.files[i] for i in self.batches[job]], self._parts[worker])

    def _seal(self, worker: int) -> tuple[list[str], list[int], list[int]] | None:  # pragma: no cover - ditto
        part = self._parts[worker]
        return None if part is None else part.seal()

    def _weight(self, job: int) -> int:  # pragma: no cover - runs in a forked worker
        return len(self.batches[job])

    def _report(self, progress: Progress | None) -> None:
        if progress is not None:
            live = self._workers.done() if self._live and self._workers is not None else 0
            progress(self.done + live, self._total)

    def _record(self, batch: list[int], digests: list[str]) -> None:
        files, out, stable_before = self.files, self.out, self.stable_before
        stable = []
        for i, digest in zip(batch, digests, strict=True):
            rel, path, key = files[i]
            out[i] = HashedFile(rel, path, key, digest)
            if key[1] < stable_before and key[2] < stable_before:
                stable.append((path, key, digest))
        self.cache.remember_all(stable)
        self.done += len(batch)


# Forking pays when there is enough to share: one fork costs a few milliseconds, a small file about 20 us.
FORK_MIN_FILES = 1000
FORK_MIN_BYTES = 64 << 20
MAX_FORKS = 7


def _fork_count(requested: int | None, files: int, size: int) -> int:
    """How many workers to fork for ``files`` small files of ``size`` bytes: none unless it pays and is safe."""
    if requested is not None and requested <= 1:
        return 0
    if not files or not can_fork():
        return 0
    if requested is None:
        if files < FORK_MIN_FILES and size < FORK_MIN_BYTES:
            return 0
        return min(usable_cpus() - 1, MAX_FORKS, files // 100 or 1)
    return min(requested - 1, files)


def _per_batch(files: int) -> int:
    """Files per job for forked workers: small jobs share the work evenly, and the queue holds MAX_JOBS at most."""
    return max(32, -(-files // MAX_JOBS))


def _batches(files: list[ScannedFile], todo: list[int], per_batch: int) -> list[list[int]]:
    """Small files in groups of about BATCH_BYTES or ``per_batch`` files: the unit of progress and of work sharing."""
    batches: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i in todo:
        current.append(i)
        size += files[i].key[0]
        if size >= BATCH_BYTES or len(current) >= per_batch:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


def _hash_batch(batch: list[ScannedFile]) -> list[str]:
    return [hash_one(scanned) for scanned in batch]


def _hash_small(batch: list[ScannedFile], sink: BlobSink | None) -> list[str]:
    """:func:`hash_one` for files read whole, inlined: per file, this loop is most of a snapshot's own work."""
    out = []
    sha256 = hashlib.sha256
    add = None if sink is None else sink.add_hashed
    for path, key in ((s.path, s.key) for s in batch):
        try:
            data = _read_whole(path, key[0])
        except OSError as exc:
            raise _read_failed(path, exc) from None
        ensure_unchanged(path, key, len(data))
        digest = f"sha256:{sha256(data).hexdigest()}"
        if add is not None:
            add(digest, data)
        out.append(digest)
    return out


def _read_whole(path: str, size: int) -> bytes:
    """The bytes of a small file, and one more than the scan saw if it grew (a seam tests use to change a file)."""
    fd = os.open(path, _READ_FLAGS)
    try:
        data = os.read(fd, size + 1)
        while 0 < len(data) < size:  # a short read (rare on regular files): read on to the end or past the size
            more = os.read(fd, size + 1 - len(data))
            if not more:
                break
            data += more
        return data
    finally:
        os.close(fd)


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO is refused


def hash_one(scanned: ScannedFile) -> str:
    """sha256 of one file, refused (:class:`FileChanged`) if the file is not the one the scan saw."""
    try:
        hexdigest, read = _digest_of(scanned.path, scanned.key[0])
    except OSError as exc:
        raise _read_failed(scanned.path, exc) from None
    ensure_unchanged(scanned.path, scanned.key, read)
    return f"sha256:{hexdigest}"


def ensure_unchanged(path: str, key: StatKey, read: int | None = None) -> None:
    """Refuse (:class:`FileChanged`) a file whose stat is no longer ``key``, or of which ``read`` bytes were read
    instead of the scanned size: what was hashed or stored from it may not be what the scan listed."""
    try:
        after = stat_key(os.stat(path))  # noqa: PTH116 - strings throughout (see _digest_of)
    except OSError as exc:
        raise _read_failed(path, exc) from None
    if after != key or (read is not None and read != key[0]):
        raise FileChanged(changed_message(path, key, after, read))


def _read_failed(path: str, exc: OSError) -> InputError:
    if isinstance(exc, FileNotFoundError):
        return FileChanged(f"{path}: removed while the snapshot read it; nothing was registered")
    return InputError(f"{path}: cannot read: {exc.strerror or exc}")


def changed_message(path: str, before: StatKey, after: StatKey, read: int | None = None) -> str:
    what = []
    if before[0] != after[0]:
        what.append(f"size {before[0]:,} -> {after[0]:,} bytes")
    elif read is not None and read != before[0]:
        what.append(f"{read:,} bytes read of {before[0]:,}")
    if before[1] != after[1]:
        what.append("modified")
    if before[3] != after[3]:
        what.append("replaced")
    if not what:
        what.append("its status changed")
    return (
        f"{path} changed while the snapshot was reading it ({', '.join(what)}); nothing was registered: "
        "snapshot again once the data is no longer being written"
    )


_local = threading.local()


def _buffer() -> bytearray:
    buffer: bytearray | None = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = bytearray(SMALL)
    return buffer


def _digest_of(path: str, size: int) -> tuple[str, int]:
    """Hex sha256 of a large file, streamed, and the number of bytes read (a seam tests use to change a file)."""
    with open(path, "rb") as handle:  # noqa: PTH123 - plain strings: 10,000 Path objects cost more than the reads
        digest = hashlib.sha256()
        buffer = _buffer()
        view = memoryview(buffer)
        read = 0
        while n := handle.readinto(buffer):
            digest.update(view[:n])
            read += n
        return digest.hexdigest(), read
