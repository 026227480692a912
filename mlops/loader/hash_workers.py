"""Forked worker processes that take numbered jobs from a shared queue while the parent goes on.

Hashing many small files is CPU work in Python code (open, read, sha256 and bookkeeping, about
20 us a file), which threads cannot spread over cores: the GIL. Processes can. A worker is a
``fork`` of the caller, so it needs no pickling, no imports and no start-up; it inherits the file
list and a pack writer of its own.

* The queue is a pipe filled with 4-byte job numbers before the first fork and then closed for
  writing. Readers (the workers, and the parent through :meth:`Workers.take` when it has time)
  claim a job with one ``read`` of 4 bytes: the kernel serializes pipe reads, so every job is
  taken exactly once, and an empty, closed pipe reads as the end.
* A worker runs ``do_job(worker, job)`` for each job it claims, then ``finish(worker)``, and writes
  one marshal payload to its own result pipe: every job's result and the finish value, or the
  error that stopped it. It leaves with ``os._exit``: nothing of the parent's (atexit, buffered
  output, open writers) runs twice.
* :meth:`Workers.collect` reads the payloads (a worker closes its pipe once its payload is written, so
  the parent need not wait for it to exit) and raises a worker's error in the parent as the same
  :class:`~mlops.errors.MlopsError` subclass. :meth:`Workers.close` kills and reaps whatever is left
  (workers on their way out, or still running because the parent failed or was interrupted).
* Progress: each worker adds ``weight(job)`` (files, for hashing) to its own 8-byte slot of a shared
  anonymous memory page after each job; :meth:`Workers.done` sums the slots, so the parent can show
  the workers' progress before their results arrive (``collect`` calls back while it waits). A slot
  has one writer; a read that races a write only shows a count a moment old or new.

Forking is only safe while the caller has one thread (a lock held by another thread stays held in
the child forever): :func:`can_fork` says whether this is such a moment, on Linux (macOS system
libraries are not fork-safe; Windows has no fork).
"""

from __future__ import annotations

import contextlib
import marshal
import mmap
import os
import select
import sys
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from mlops.errors import MlopsError

MAX_JOBS = 1024  # 4 KiB of job numbers: fits the smallest pipe buffer Linux gives (one page)
_RECORD = 4
_SLOT = 8  # bytes of a worker's progress count
WAIT_SECONDS = 0.2  # how often collect() calls back while it waits for the workers


def can_fork() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class WorkerFailed(MlopsError):
    """A worker process stopped without its results (killed, out of memory): nothing of its work is used."""


class Workers:
    """``workers`` forked processes taking jobs ``0 .. jobs-1``; see the module docstring."""

    def __init__(
        self,
        jobs: int,
        workers: int,
        do_job: Callable[[int, int], Any],
        finish: Callable[[int], Any],
        weight: Callable[[int], int] = lambda job: 1,
    ) -> None:
        if not 0 < jobs <= MAX_JOBS:
            raise ValueError(f"{jobs} jobs: between 1 and {MAX_JOBS}")
        self._pids: dict[int, int] = {}  # worker number -> pid, while not reaped
        self._results: dict[int, int] = {}  # worker number -> read end of its result pipe
        self._counts = mmap.mmap(-1, _SLOT * max(workers, 1))  # anonymous and shared: the workers write into it
        self._queue = -1
        try:
            self._queue = _filled_queue(jobs)
            for worker in range(workers):
                self._fork(worker, do_job, finish, weight)
        except BaseException:
            self.close()
            raise

    def done(self) -> int:
        """The weight of the jobs the workers have finished so far (their results may not have arrived yet)."""
        counts = self._counts
        return sum(int.from_bytes(counts[i : i + _SLOT], "little") for i in range(0, len(counts), _SLOT))

    def take(self) -> int | None:
        """The next job nobody has claimed, for the parent to do itself; None when the queue is empty."""
        record = os.read(self._queue, _RECORD)
        return int.from_bytes(record, "little") if record else None

    def collect(self, waiting: Callable[[], None] | None = None) -> list[tuple[list[tuple[int, Any]], Any]]:
        """Each worker's ``[(job, result), ...]`` and finish value, in worker order, once they have run out of jobs.

        ``waiting`` is called after each :data:`WAIT_SECONDS` in which nothing arrived (to show :meth:`done`).
        """
        chunks: dict[int, list[bytes]] = {worker: [] for worker in self._results}
        by_fd = {fd: worker for worker, fd in self._results.items()}
        poller = select.poll()  # not select(): it cannot watch descriptors numbered 1024 or more
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while by_fd:
            events = poller.poll(int(WAIT_SECONDS * 1000))
            if not events and waiting is not None:
                waiting()
            for fd, _ in events:
                chunk = os.read(fd, 1 << 20)
                if chunk:
                    chunks[by_fd[fd]].append(chunk)
                else:  # the worker's end closed: its payload is whole (or it died)
                    poller.unregister(fd)
                    del by_fd[fd]
        out = []
        for worker in sorted(chunks):
            os.close(self._results.pop(worker))
            # A worker whose payload arrived whole is reaped by close(): waiting for its exit here gains nothing.
            out.append(_decode(b"".join(chunks[worker]), partial(self._reap, worker)))
        return out

    def close(self) -> None:
        """Stop and reap every worker still running, and release the pipes; idempotent."""
        for worker, pid in list(self._pids.items()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)  # SIGKILL; the signal module is not loaded for a constant
            self._reap(worker)
        for fd in self._results.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._results.clear()
        if self._queue >= 0:
            with contextlib.suppress(OSError):
                os.close(self._queue)
            self._queue = -1
        if not self._counts.closed:
            self._counts.close()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _fork(
        self, worker: int, do_job: Callable[[int, int], Any], finish: Callable[[int], Any], weight: Callable[[int], int]
    ) -> None:
        result_r, result_w = os.pipe()
        try:
            pid = os.fork()
        except BaseException:
            os.close(result_r)
            os.close(result_w)
            raise
        if pid == 0:  # pragma: no cover - the child's coverage is not collected; tests check what it sends
            _run_worker(worker, self._queue, result_w, do_job, finish, weight, self._counts)
        os.close(result_w)  # the worker's copy is the only writer left: its closing it ends the payload
        self._pids[worker] = pid
        self._results[worker] = result_r

    def _reap(self, worker: int) -> int:
        pid = self._pids.pop(worker, None)
        if pid is None:
            return 0
        while True:
            try:
                return os.waitpid(pid, 0)[1]
            except ChildProcessError:
                return 0
            except InterruptedError:  # pragma: no cover - PEP 475 retries already
                continue


def _filled_queue(jobs: int) -> int:
    read_end, write_end = os.pipe()
    try:
        data = b"".join(job.to_bytes(_RECORD, "little") for job in range(jobs))
        written = os.write(write_end, data)  # at most 4 KiB into an empty pipe: one write, never partial
        if written != len(data):
            raise OSError(f"the job queue took {written} of {len(data)} bytes")
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return read_end


def _run_worker(  # pragma: no cover - runs in the forked child
    worker: int,
    queue: int,
    result_w: int,
    do_job: Callable[[int, int], Any],
    finish: Callable[[int], Any],
    weight: Callable[[int], int],
    counts: mmap.mmap,
) -> None:
    code = 0
    slot = slice(worker * _SLOT, (worker + 1) * _SLOT)
    try:
        try:
            results = []
            done = 0
            while record := os.read(queue, _RECORD):
                job = int.from_bytes(record, "little")
                results.append((job, do_job(worker, job)))
                done += weight(job)
                counts[slot] = done.to_bytes(_SLOT, "little")
            payload = marshal.dumps(("ok", results, finish(worker)))
        except KeyboardInterrupt:
            code = 130
            return
        except BaseException as exc:
            kind = type(exc)
            payload = marshal.dumps(("error", kind.__module__, kind.__qualname__, str(exc)))
        view = memoryview(payload)
        while view:
            view = view[os.write(result_w, view) :]
        # The end of the payload now: left to os._exit, it would come only after the kernel has unmapped this
        # fork of the parent's heap, which takes milliseconds the parent would spend waiting.
        os.close(result_w)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _decode(payload: bytes, status: Callable[[], int]) -> tuple[list[tuple[int, Any]], Any]:
    """A worker's results, or its error raised here; ``status`` reaps it (the exit status says what went wrong)."""
    try:
        message = marshal.loads(payload) if payload else None
    except (EOFError, ValueError, TypeError):
        message = None
    if isinstance(message, tuple) and message[:1] == ("ok",) and len(message) == 3:
        return message[1], message[2]
    if isinstance(message, tuple) and message[:1] == ("error",) and len(message) == 4:
        raise _error(*message[1:])
    raise WorkerFailed(f"a worker process stopped without its results ({_describe(status())}); nothing was registered")


def _error(module: str, qualname: str, text: str) -> MlopsError:
    kind = getattr(sys.modules.get(module), qualname, None) if "." not in qualname else None
    if isinstance(kind, type) and issubclass(kind, MlopsError):
        with contextlib.suppress(TypeError):
            return kind(text)
    return WorkerFailed(f"a worker process failed: {qualname}: {text}")


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            import signal

            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
