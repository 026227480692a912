"""Listing the files of a snapshot source: one ``stat`` each, and a refusal for what a snapshot cannot record.

:func:`scan` refuses symbolic links that point outside the folder (or at a folder), FIFOs, sockets and
devices (reading a FIFO would block forever), and names a file list cannot hold (control characters,
backslashes, bytes that are not UTF-8).

A walk is one ``stat`` per file. When a folder's top level holds many entries or folders, a forked process
(``mlops.loader.hash_workers``) walks part of it: the top-level entries are dealt into jobs that it and the
caller take from a shared queue, and it sends back plain ``(rel, path, key)`` tuples (or the refusal it met).
"""

from __future__ import annotations

import os
import re
import stat as stat_module
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from mlops.errors import InputError
from mlops.loader.stat_keys import StatKey, stat_key


class ScannedFile(NamedTuple):  # a tuple, not a dataclass: 10,000 of them are built per snapshot
    rel: str  # the path recorded in the snapshot: relative, '/'-separated
    path: str  # where to read it (a link inside the folder is read through)
    key: StatKey  # stat of what is read (the link's target for a link)


def scan(source: Path, processes: int | None = None) -> list[ScannedFile]:
    """Every file of ``source`` (a file, or a folder walked recursively), sorted by recorded path.

    A large folder is walked by two processes (``processes``: how many at most; None: one per CPU, up to two).
    """
    try:
        st = source.lstat()
    except FileNotFoundError:
        raise InputError(f"{source}: no such file or folder") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if stat_module.S_ISLNK(st.st_mode):
        # The source itself may be a link (a "current" pointer, say): snapshot what it points at.
        return scan(Path(os.path.realpath(source)), processes)
    if stat_module.S_ISREG(st.st_mode):
        _check_name(source.name, source)
        return [ScannedFile(source.name, os.fspath(source.absolute()), stat_key(st))]
    if not stat_module.S_ISDIR(st.st_mode):
        raise InputError(f"{source}: not a regular file or folder ({_kind(st.st_mode)})")
    root = os.path.realpath(source)
    entries = _list(root, "", source)
    forks = _fork_count(entries, processes)
    found: list[ScannedFile] = []
    if forks:
        found = _walk_shared(entries, root, source, forks)
    else:
        _walk_entries(entries, "", root, source, found.append, ScannedFile)
    if not found:
        raise InputError(f"{source}: the folder holds no files; there is nothing to snapshot")
    found.sort()  # by recorded path: ScannedFile is a tuple, rel first, and no two files share a rel
    return found


# A walk is one stat per file (a few microseconds each) and a fork about a millisecond: a second process walks part
# of a folder whose top level holds many entries or folders (so that the work can be shared out in jobs).
SHARE_MIN_ENTRIES = 2000
SHARE_MIN_FOLDERS = 8
SCAN_JOBS = 16
MAX_SCAN_FORKS = 1

Found = tuple[str, str, StatKey]  # a ScannedFile's fields: what a forked walker sends back
Make = Callable[[str, str, StatKey], Found]


def _fork_count(entries: list[os.DirEntry[str]], processes: int | None) -> int:
    if processes is not None and processes <= 1:
        return 0
    if len(entries) < SHARE_MIN_ENTRIES and sum(map(_is_folder, entries)) < SHARE_MIN_FOLDERS:
        return 0
    from mlops.loader.hash_workers import can_fork, usable_cpus

    if not can_fork():
        return 0
    wanted = usable_cpus() if processes is None else processes
    return max(0, min(wanted - 1, MAX_SCAN_FORKS))


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """Without a type from the listing, is_dir() stats the entry, which may fail: the walk then says why."""
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _walk_shared(entries: list[os.DirEntry[str]], root: str, source: Path, forks: int) -> list[ScannedFile]:
    """The walk of ``root``'s top-level ``entries``, in :data:`SCAN_JOBS` jobs shared with ``forks`` workers."""
    from mlops.loader.hash_workers import Workers

    chunks = [entries[i::SCAN_JOBS] for i in range(SCAN_JOBS)]

    def walk_chunk(_worker: int, job: int) -> list[Found]:  # pragma: no cover - runs in a forked worker
        out: list[Found] = []
        _walk_entries(chunks[job], "", root, source, out.append, _plain)  # plain tuples: marshal takes them
        return out

    found: list[ScannedFile] = []
    try:
        workers = Workers(len(chunks), forks, walk_chunk, lambda _worker: None)
    except OSError:  # no fork or pipe to be had: walk alone
        _walk_entries(entries, "", root, source, found.append, ScannedFile)
        return found
    with workers:
        while (job := workers.take()) is not None:
            _walk_entries(chunks[job], "", root, source, found.append, ScannedFile)
        for results, _ in workers.collect():
            for _job, walked in results:
                found.extend(ScannedFile._make(f) for f in walked)
    return found


def _plain(rel: str, path: str, key: StatKey) -> Found:
    return rel, path, key


def _list(directory: str, rel: str, source: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except OSError as exc:
        raise InputError(f"{source / rel if rel else source}: cannot list: {exc.strerror or exc}") from None


def _walk_entries(
    entries: list[os.DirEntry[str]], rel: str, root: str, source: Path, append: Callable[[Any], None], make: Make
) -> None:
    """Every file under ``entries`` (of the folder at ``rel``), as ``make(rel, path, key)``, to ``append``."""
    prefix = f"{rel}/" if rel else ""
    for entry in entries:  # per file, this loop is most of a scan: the common case (a plain file) comes first
        name = entry.name
        if not (name.isascii() and name.isprintable()) or "\\" in name:
            _check_name(prefix + name, f"{source}{os.sep}{prefix}{name}")  # each name once: a folder's first
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise InputError(f"{source}{os.sep}{prefix}{name}: cannot read: {exc.strerror or exc}") from None
        if st.st_mode & _TYPE_BITS == _REGULAR:
            append(make(prefix + name, entry.path, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)))
        else:
            _walk_other(entry, prefix + name, st, root, source, append, make)


_TYPE_BITS = 0o170000  # stat.S_IFMT's mask
_REGULAR = stat_module.S_IFREG


def _walk_other(
    entry: os.DirEntry[str],
    child: str,
    st: os.stat_result,
    root: str,
    source: Path,
    append: Callable[[Any], None],
    make: Make,
) -> None:
    """A folder (walked), a link (followed when it stays inside ``root`` and ends at a file), or a refusal."""
    mode = st.st_mode
    if stat_module.S_ISDIR(mode):
        _walk_entries(_list(entry.path, child, source), child, root, source, append, make)
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
    append(make(child, entry.path, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)))


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
