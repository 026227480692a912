"""The S3-compatible artifact store (AWS S3, MinIO, Ceph, moto): blobs at ``<prefix>/sha256/<2 hex>/<62 hex>``.

Uploads stream the file through boto3's multipart transfer; S3 makes an object
visible only when its upload completes, so a blob is complete or absent. After
an upload the object's size and the sha256 we recorded in its metadata are
checked; downloads are hashed while they stream and refused on mismatch.
boto3's own retries are turned off so that ours (with clear messages) are the
only ones. ``put_files`` hashes its files, then checks and uploads the distinct
digests a few at a time (each upload retried and verified on its own).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlops.errors import BlobNotFound, DigestMismatch, InputError, StoreError
from mlops.stores.artifacts import CHUNK, Progress, StrPath, sha256_file
from mlops.stores.retry import DEFAULT_RETRY, RetryPolicy, with_retries

UPLOAD_WORKERS = 16  # requests at once in put_files and missing (as many as the snapshot used to run)


class S3ArtifactStore:
    def __init__(self, url: str, endpoint_url: str | None = None, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InputError(f"store {url!r}: expected s3://bucket/prefix")
        self.url = url.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.retry = retry
        import boto3
        from boto3.exceptions import Boto3Error
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url or os.environ.get("MLOPS_S3_ENDPOINT_URL") or None,
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=2 * UPLOAD_WORKERS,  # put_files and missing run UPLOAD_WORKERS requests at once
            ),
        )
        self._client_error = ClientError
        self._transient: tuple[type[BaseException], ...] = (BotoCoreError, ClientError, Boto3Error, OSError)

    def _key(self, digest: str) -> str:
        hexdigest = digest.removeprefix("sha256:")
        key = f"sha256/{hexdigest[:2]}/{hexdigest[2:]}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def _head(self, digest: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=self._key(digest))
            return head
        except self._client_error as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def has(self, digest: str) -> bool:
        return (
            with_retries(f"checking {digest} in {self.url}", lambda: self._head(digest), self._transient, self.retry)
            is not None
        )

    def missing(self, digests: Iterable[str]) -> set[str]:
        distinct = list(set(digests))
        if len(distinct) <= 1:
            return {d for d in distinct if not self.has(d)}
        with ThreadPoolExecutor(max_workers=min(UPLOAD_WORKERS, len(distinct)), thread_name_prefix="mlops-s3") as pool:
            present = list(pool.map(self.has, distinct))
        return {d for d, there in zip(distinct, present, strict=True) if not there}

    def put_file(self, path: Path) -> tuple[str, int]:
        return self.put_files([path])[0]

    def put_files(self, paths: Sequence[StrPath], progress: Progress | None = None) -> list[tuple[str, int]]:
        """Hash every file, then check and upload the distinct digests in a few threads (boto3 clients are thread-safe).

        Each upload is retried on its own and verified (size and recorded sha256); the first that fails for good
        stops the others (uploads already running finish or fail whole: S3 shows only complete objects).
        """
        out: list[tuple[str, int]] = []
        first: dict[str, tuple[Path, int]] = {}  # digest -> the first path holding it
        for item in paths:
            path = Path(item)
            try:
                digest, size = sha256_file(path)
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
            out.append((digest, size))
            first.setdefault(digest, (path, size))
        todo = list(first.items())
        if progress is not None:
            progress(0, len(todo))
        if len(todo) == 1:
            self._put_one(*todo[0])
            if progress is not None:
                progress(1, 1)
        elif todo:
            self._put_parallel(todo, progress)
        return out

    def _put_parallel(self, todo: list[tuple[str, tuple[Path, int]]], progress: Progress | None) -> None:
        with ThreadPoolExecutor(max_workers=min(UPLOAD_WORKERS, len(todo)), thread_name_prefix="mlops-s3") as pool:
            futures = [pool.submit(self._put_one, *item) for item in todo]
            try:
                for done, future in enumerate(as_completed(futures), 1):
                    future.result()  # the first failure ends the batch
                    if progress is not None:
                        progress(done, len(todo))
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _put_one(self, digest: str, found: tuple[Path, int]) -> None:
        path, size = found
        if self.has(digest):
            return

        def upload() -> None:
            self._client.upload_file(
                str(path),
                self.bucket,
                self._key(digest),
                ExtraArgs={"Metadata": {"sha256": digest.removeprefix("sha256:")}},
            )
            head = self._head(digest)
            if head is None or int(head["ContentLength"]) != size:
                self._delete(digest)
                raise OSError(f"upload of {path} to {self.url} did not arrive whole")
            if head.get("Metadata", {}).get("sha256") != digest.removeprefix("sha256:"):
                self._delete(digest)
                raise OSError(f"upload of {path} to {self.url} arrived with other metadata")

        with_retries(f"uploading {path} to {self.url}", upload, self._transient, self.retry)

    def _delete(self, digest: str) -> None:
        with contextlib.suppress(Exception):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(digest))

    def get_file(self, digest: str, dest: Path) -> None:
        if not self.has(digest):
            raise BlobNotFound(f"{digest} is not in the artifact store {self.url}")
        dest.parent.mkdir(parents=True, exist_ok=True)

        def download() -> None:
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
            tmp = Path(tmp_name)
            try:
                body = self._client.get_object(Bucket=self.bucket, Key=self._key(digest))["Body"]
                hasher = hashlib.sha256()
                with os.fdopen(fd, "wb") as out:
                    for chunk in iter(lambda: body.read(CHUNK), b""):
                        hasher.update(chunk)
                        out.write(chunk)
                actual = f"sha256:{hasher.hexdigest()}"
                if actual != digest:
                    raise DigestMismatch(f"{digest}: the bytes in {self.url} hash to {actual}; the blob is damaged")
                tmp.replace(dest)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise

        with_retries(f"downloading {digest} from {self.url}", download, self._transient, self.retry)
