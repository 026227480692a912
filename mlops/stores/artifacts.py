"""The content-addressed artifact store: bytes in, ``sha256:<hex>`` out.

One small interface (:class:`ArtifactStore`), one I/O seam per backend. The local
backend keeps blobs under ``<root>/sha256/<2 hex>/<62 hex>``; writes go to a temp
file in the same folder, are hashed while streaming, fsynced and renamed into
place, so a blob is either complete and verified or absent. Reads re-verify.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from mlops.errors import BlobNotFound, DigestMismatch, StoreError
from mlops.stores.retry import DEFAULT_RETRY, RetryPolicy, with_retries

CHUNK = 1024 * 1024


class ArtifactStore(Protocol):
    url: str

    def has(self, digest: str) -> bool: ...

    def missing(self, digests: Iterable[str]) -> set[str]: ...

    def put_file(self, path: Path) -> tuple[str, int]: ...

    def get_file(self, digest: str, dest: Path) -> None: ...


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return f"sha256:{digest.hexdigest()}", size


class LocalArtifactStore:
    def __init__(self, root: Path, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.root = root
        self.url = root.resolve().as_uri()
        self.retry = retry

    def _blob_path(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.root / "sha256" / hexdigest[:2] / hexdigest[2:]

    def has(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def missing(self, digests: Iterable[str]) -> set[str]:
        return {d for d in set(digests) if not self.has(d)}

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
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            name = f"sha256:{digest.hexdigest()}"
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
