"""Listing the files of a snapshot source: one ``stat`` each, and a refusal for what a snapshot cannot record.

:func:`scan` refuses symbolic links that point outside the folder (or at a folder), FIFOs, sockets and
devices (reading a FIFO would block forever), and names a file list cannot hold (control characters,
backslashes, bytes that are not UTF-8).
"""

from __future__ import annotations

import os
import re
import stat as stat_module
from pathlib import Path
from typing import NamedTuple

from mlops.errors import InputError

StatKey = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode


class ScannedFile(NamedTuple):  # a tuple, not a dataclass: 10,000 of them are built per snapshot
    rel: str  # the path recorded in the snapshot: relative, '/'-separated
    path: str  # where to read it (a link inside the folder is read through)
    key: StatKey  # stat of what is read (the link's target for a link)


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


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
