"""Low-level file writes shared by the loose blobs and the packs of the local store."""

from __future__ import annotations

import errno
import os


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (it may write fewer than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def make_read_only(fd: int, name: str | os.PathLike[str]) -> None:
    """Mode 0444, whatever the umask: stored bytes are never edited in place."""
    if os.chmod in os.supports_fd:
        os.fchmod(fd, 0o444)
    else:
        os.chmod(name, 0o444)  # noqa: PTH101 - Windows has no fchmod


def fsync_directory(folder: str | os.PathLike[str]) -> None:
    """Make the names in ``folder`` durable; skipped where folders cannot be opened or synced (Windows, some FUSE)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)
