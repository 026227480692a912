"""Ending runs honestly when the process is told to stop or dies of an uncaught exception.

While a run is active, SIGTERM and SIGINT mark it *killed* and then do what they would have done:
SIGINT raises KeyboardInterrupt (or calls the handler that was installed before), SIGTERM raises
``SystemExit(143)`` so ``with`` blocks and ``finally`` clauses run and the logged values are flushed
(Python's default for SIGTERM is to die on the spot, losing what is queued). An uncaught exception
marks the run *failed* (``sys.excepthook``), and ``atexit`` ends whatever is still open. A process
that dies without any of these (SIGKILL, OOM kill, power cut) stops its heartbeat; the next reader
marks the run *crashed*. Handlers are installed only from the main thread, and the previous ones
come back when the last run ends.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Protocol


class _Endable(Protocol):
    run_id: str
    killed_by: int | None

    def _end_from_hook(self, status: str, error: str) -> None: ...


_active: dict[str, _Endable] = {}
_previous: dict[int, Any] = {}
_lock = threading.Lock()
_hooks_installed = False
_previous_excepthook: Callable[..., Any] | None = None
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _handler(signum: int, frame: FrameType | None) -> None:
    for run in list(_active.values()):
        run.killed_by = signum
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        for run in list(_active.values()):
            run.killed_by = None
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    for run in list(_active.values()):
        if isinstance(value, KeyboardInterrupt) or run.killed_by is not None:
            run._end_from_hook("killed", f"{kind.__name__}: {value}".rstrip(": "))
        else:
            run._end_from_hook("failed", f"{kind.__name__}: {value}")
    hook = _previous_excepthook or sys.__excepthook__
    hook(kind, value, tb)


def _at_exit() -> None:
    for run in list(_active.values()):
        run._end_from_hook("killed" if run.killed_by is not None else "finished", "")


def register(run: _Endable) -> None:
    global _hooks_installed, _previous_excepthook
    with _lock:
        first = not _active
        _active[run.run_id] = run
        if not _hooks_installed:
            atexit.register(_at_exit)
            _previous_excepthook = sys.excepthook
            sys.excepthook = _excepthook
            _hooks_installed = True
        if first and threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                try:
                    _previous[signum] = signal.signal(signum, _handler)
                except (ValueError, OSError):  # not allowed here (embedded interpreter, odd platform)
                    continue


def unregister(run: _Endable) -> None:
    with _lock:
        _active.pop(run.run_id, None)
        if not _active and _previous and threading.current_thread() is threading.main_thread():
            for signum, previous in list(_previous.items()):
                try:
                    if signal.getsignal(signum) is _handler:
                        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
                except (ValueError, OSError):
                    pass
            _previous.clear()
