"""A dict kept in a marshal file behind a magic line and a crc32: how the tool's caches are stored.

A file that is missing, of another format (magic), torn (crc) or not a dict reads as None, so a
cache never fails a command; it only costs the time to rebuild what it held.
"""

from __future__ import annotations

import marshal
import zlib
from pathlib import Path
from typing import Any

from mlops.loader.atomic import atomic_write_bytes

_CRC = 4  # bytes of the crc32, big-endian, after the magic


def write_map(
    file: Path, magic: bytes, value: dict[Any, Any], durable: bool = True, version: int = marshal.version
) -> None:
    """Replace ``file`` with ``value`` (see :func:`~mlops.loader.atomic.atomic_write_bytes` for ``durable``).

    ``version`` is marshal's format; 2 writes no back-references, which is faster for values whose strings
    are also held elsewhere (marshal then tracks each of them). :func:`read_map` reads every version.
    """
    payload = marshal.dumps(value, version)
    atomic_write_bytes(file, magic + zlib.crc32(payload).to_bytes(_CRC, "big") + payload, durable=durable)


def read_map(file: Path, magic: bytes) -> dict[Any, Any] | None:
    """The dict :func:`write_map` wrote with the same ``magic``, or None."""
    try:
        raw = file.read_bytes()
    except OSError:
        return None
    header = len(magic) + _CRC
    if not raw.startswith(magic) or len(raw) < header:
        return None
    payload = memoryview(raw)[header:]
    if zlib.crc32(payload) != int.from_bytes(raw[len(magic) : header], "big"):
        return None
    try:
        value = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None
