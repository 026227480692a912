"""The S3-compatible artifact store (AWS S3, MinIO, Ceph, moto): blobs at ``<prefix>/sha256/<2 hex>/<62 hex>``.

Uploads stream the file through boto3's multipart transfer; S3 makes an object
visible only when its upload completes, so a blob is complete or absent. After
an upload the object's size and the sha256 we recorded in its metadata are
checked; downloads are hashed while they stream and refused on mismatch.
boto3's own retries are turned off so that ours (with clear messages) are the
only ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlops.errors import BlobNotFound, DigestMismatch, InputError, StoreError
from mlops.stores.artifacts import CHUNK, sha256_file
from mlops.stores.retry import DEFAULT_RETRY, RetryPolicy, with_retries


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
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60),
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
        return {d for d in set(digests) if not self.has(d)}

    def put_file(self, path: Path) -> tuple[str, int]:
        try:
            digest, size = sha256_file(path)
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        if self.has(digest):
            return digest, size

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
        return digest, size

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
