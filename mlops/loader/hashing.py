"""Hashing the files of a snapshot: parallel sha256, the stat cache consulted, changes caught.

* :func:`hash_files` hashes large files in a thread pool (hashlib releases the GIL on large
  updates, and reads release it too). Small files are Python-bound work, which threads cannot
  share out: forked processes (``hash_workers``) and the calling thread take them from a queue.
  :func:`start_hashing` starts the workers and returns, so the caller can get on with its own
  work (importing what comes next, reading the repository) before it joins in.
* Files come from :func:`~mlops.loader.file_scan.scan`; a file whose stat the
  :class:`~mlops.loader.hash_cache.HashCache` knows is not read again.
* A file that changes while it is hashed is caught by comparing its stat before and after
  (size, mtime, ctime, inode) and the number of bytes read with the size: :class:`FileChanged`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, NamedTuple, Protocol

from mlops.errors import InputError
from mlops.loader.file_scan import ScannedFile
from mlops.loader.hash_cache import HashCache
from mlops.loader.hash_workers import MAX_JOBS, Workers, can_fork, usable_cpus
from mlops.loader.stat_keys import StatKey, stat_key

if TYPE_CHECKING:
    from concurrent.futures import Future

Progress = Callable[[int, int], None]

SMALL = 1 << 20  # files up to this size are read whole; bigger ones stream through one buffer per thread
BATCH_BYTES = 4 << 20  # a pool task hashes small files until it has read about this much
BATCH_FILES = 256


class FileChanged(InputError):
    """A file changed while the snapshot read it: nothing may be registered from such a read."""


class HashedFile(NamedTuple):
    rel: str
    path: str
    key: StatKey
    digest: str  # sha256:<hex>

    @property
    def size(self) -> int:
        return self.key[0]


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
        # Every file's bytes go to the sink: none came from the cache (not read) and none is large (streamed).
        self.all_staged = sink is not None and len(todo) == len(files) and not self.large
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
            try:
                self._workers = Workers(len(self.batches), forks, self._work, self._seal, self._weight)
            except OSError:  # no fork or pipe to be had (a process limit, no file descriptors): hash here alone
                self._parts = []  # left empty, the sink commits and aborts them as nothing
            else:
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
        files, out = self.files, self.out
        found = []
        for i, digest in zip(batch, digests, strict=True):
            rel, path, key = files[i]
            out[i] = HashedFile(rel, path, key, digest)
            found.append((path, key, digest))
        self.cache.remember_all(found)  # it leaves out files changed too recently to be trusted by their stat
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
        raise FileChanged(_changed_message(path, key, after, read))


def _read_failed(path: str, exc: OSError) -> InputError:
    if isinstance(exc, FileNotFoundError):
        return FileChanged(f"{path}: removed while the snapshot read it; nothing was registered")
    return InputError(f"{path}: cannot read: {exc.strerror or exc}")


def _changed_message(path: str, before: StatKey, after: StatKey, read: int | None = None) -> str:
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
