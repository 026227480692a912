"""Whether a file changed since it was read, as git's index tells: its stat, and the "racily clean" window.

Both stat caches (the parse cache of manifests, the hash cache of snapshots) remember a file by its
:data:`StatKey` and trust it while the key is unchanged. A file changed less than :data:`RACY_NS`
before it was read may change again within the same timestamp tick (FAT keeps 2 s, other file
systems a clock tick) without its stat changing: such a file is not remembered, so the next run
reads it again. That costs one re-read per recent edit.
"""

from __future__ import annotations

import os
import time

StatKey = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode

RACY_NS = 2_000_000_000


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def stable_before() -> int:
    """Files whose mtime and ctime are both older than this (ns since the epoch) may be remembered by their stat."""
    return time.time_ns() - RACY_NS


def is_stable(key: StatKey, before: int) -> bool:
    return key[1] < before and key[2] < before
