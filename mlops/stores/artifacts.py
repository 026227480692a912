"""The content-addressed artifact store: bytes in, ``sha256:<hex>`` out.

One small interface (:class:`ArtifactStore`), one I/O seam per backend. The local
backend keeps blobs under ``<root>/sha256/<2 hex>/<62 hex>``; writes go to a temp
file in the same folder, are hashed while streaming, fsynced and renamed into
place, so a blob is either complete and verified or absent. Reads re-verify.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Protocol

from mlops.errors import BlobNotFound, DigestMismatch, StoreError
from mlops.stores.retry import DEFAULT_RETRY, RetryPolicy, with_retries

CHUNK = 1024 * 1024
PIPELINE_CHUNK = 4 * 1024 * 1024


class ArtifactStore(Protocol):
    url: str

    def has(self, digest: str) -> bool: ...

    def missing(self, digests: Iterable[str]) -> set[str]: ...

    def put_file(self, path: Path) -> tuple[str, int]: ...

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


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return f"sha256:{digest.hexdigest()}", size


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _hash_and_copy(source: BinaryIO, fd: int) -> tuple[str, int]:
    """One pass over the bytes: each chunk is written by a helper thread while this one hashes the next.

    Both sha256 and write() release the GIL, so on two cores copying costs little more than hashing
    (benchmarks/register_1g.py measures it against hashlib alone).
    """
    digest = hashlib.sha256()
    size = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-store-write") as writer:
        pending: Future[None] | None = None
        while chunk := source.read(PIPELINE_CHUNK):
            written = writer.submit(_write_all, fd, chunk)
            digest.update(chunk)
            size += len(chunk)
            if pending is not None:
                pending.result()
            pending = written
        if pending is not None:
            pending.result()
    return f"sha256:{digest.hexdigest()}", size


class LocalArtifactStore:
    def __init__(self, root: Path, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.root = root
        self.url = root.resolve().as_uri()
        self.retry = retry
        self._sha256_dir = f"{root / 'sha256'}{os.sep}"

    def _blob_path(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.root / "sha256" / hexdigest[:2] / hexdigest[2:]

    def _blob_name(self, digest: str) -> str:
        """:meth:`_blob_path` as a plain string: one join instead of four Path objects."""
        hexdigest = digest.removeprefix("sha256:")
        return f"{self._sha256_dir}{hexdigest[:2]}{os.sep}{hexdigest[2:]}"

    def has(self, digest: str) -> bool:
        return _is_file(self._blob_name(digest))

    def missing(self, digests: Iterable[str]) -> set[str]:
        # One stat per distinct digest, on strings: validate asks about every digest of the repository
        # (10,000 for 10,000 versions), and Path objects cost several times the stat itself.
        return {d for d in set(digests) if not _is_file(self._blob_name(d))}

    def put_file(self, path: Path) -> tuple[str, int]:
        if not path.is_file():
            raise StoreError(f"cannot store {path}: not a readable file")

        def put() -> tuple[str, int]:
            with path.open("rb") as source:
                return self._put_stream(source)

        return with_retries(f"storing {path} in {self.url}", put, (OSError,), self.retry)

    def _put_stream(self, source: BinaryIO) -> tuple[str, int]:
        staging = self.root / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=staging, prefix="upload-")
        tmp = Path(tmp_name)
        try:
            try:
                name, size = _hash_and_copy(source, fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            final = self._blob_path(name)
            if final.is_file():
                tmp.unlink()
                return name, size
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.chmod(0o444)
            tmp.replace(final)
            return name, size
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def get_file(self, digest: str, dest: Path) -> None:
        blob = self._blob_path(digest)
        if not blob.is_file():
            raise BlobNotFound(f"{digest} is not in the artifact store {self.url}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        tmp = Path(tmp_name)
        try:
            hasher = hashlib.sha256()
            with blob.open("rb") as source, os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
            if f"sha256:{hasher.hexdigest()}" != digest:
                raise DigestMismatch(
                    f"{digest}: the stored bytes hash to sha256:{hasher.hexdigest()}; the blob in {self.url} is damaged"
                )
            tmp.replace(dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
