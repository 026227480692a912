"""The artifact store against real backends: a local folder and a real S3-compatible server on loopback."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from s3_server import FaultyProxy, moto_s3_bucket

from mlops.errors import BlobNotFound, DigestMismatch, StoreError
from mlops.stores.artifacts import LocalArtifactStore
from mlops.stores.retry import RetryPolicy
from mlops.stores.s3 import S3ArtifactStore

FAST_RETRY = RetryPolicy(attempts=3, first_delay=0.01)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_bucket("artifacts") as endpoint:
        yield endpoint


def _file(tmp_path: Path, data: bytes, name: str = "model.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_local_put_get_roundtrip_is_content_addressed(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    data = os.urandom(3 * 1024 * 1024 + 7)
    digest, size = store.put_file(_file(tmp_path, data))
    assert (digest, size) == (_digest(data), len(data))
    assert store.put_file(_file(tmp_path, data, "copy.bin")) == (digest, size)  # stored once
    blobs = [p for p in (tmp_path / "store" / "sha256").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    store.get_file(digest, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data
    assert store.missing([digest, _digest(b"other")]) == {_digest(b"other")}


def test_local_damaged_blob_is_refused_on_read(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    digest, _ = store.put_file(_file(tmp_path, b"original bytes"))
    blob = tmp_path / "store" / "sha256" / digest[7:9] / digest[9:]
    blob.chmod(0o644)
    blob.write_bytes(b"tampered bytes")
    with pytest.raises(DigestMismatch, match="damaged"):
        store.get_file(digest, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_local_missing_blob(tmp_path: Path) -> None:
    with pytest.raises(BlobNotFound, match="is not in the artifact store"):
        LocalArtifactStore(tmp_path / "store").get_file(_digest(b"x"), tmp_path / "out")


def test_local_store_that_keeps_failing_leaves_nothing(tmp_path: Path) -> None:
    # A file where the store's staging folder must go: every attempt fails the same way.
    root = tmp_path / "store"
    root.mkdir()
    (root / "tmp").write_text("not a folder")
    store = LocalArtifactStore(root, retry=FAST_RETRY)
    with pytest.raises(StoreError, match="failed after 3 attempts"):
        store.put_file(_file(tmp_path, b"data"))
    assert not (root / "sha256").exists()


def test_s3_put_get_roundtrip(s3_endpoint: str, tmp_path: Path) -> None:
    store = S3ArtifactStore("s3://artifacts/team-a", endpoint_url=s3_endpoint, retry=FAST_RETRY)
    data = os.urandom(9 * 1024 * 1024)  # above boto3's multipart threshold
    digest, size = store.put_file(_file(tmp_path, data))
    assert digest == _digest(data) and size == len(data)
    assert store.has(digest)
    key = f"team-a/sha256/{digest[7:9]}/{digest[9:]}"
    head = boto3.client("s3", endpoint_url=s3_endpoint).head_object(Bucket="artifacts", Key=key)
    assert head["ContentLength"] == len(data)
    store.get_file(digest, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == data


def test_s3_damaged_object_is_refused(s3_endpoint: str, tmp_path: Path) -> None:
    store = S3ArtifactStore("s3://artifacts/damaged", endpoint_url=s3_endpoint, retry=FAST_RETRY)
    digest, _ = store.put_file(_file(tmp_path, b"good bytes"))
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket="artifacts", Key=f"damaged/sha256/{digest[7:9]}/{digest[9:]}", Body=b"evil bytes"
    )
    with pytest.raises(StoreError, match="damaged"):
        store.get_file(digest, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_s3_store_failing_twice_then_succeeding(s3_endpoint: str, tmp_path: Path) -> None:
    with FaultyProxy(s3_endpoint, fail_puts=2) as proxy:
        store = S3ArtifactStore("s3://artifacts/flaky", endpoint_url=proxy.url, retry=FAST_RETRY)
        data = b"weights" * 1000
        digest, _ = store.put_file(_file(tmp_path, data))
        assert proxy.failed == 2 and proxy.forwarded_puts == 1
    direct = S3ArtifactStore("s3://artifacts/flaky", endpoint_url=s3_endpoint)
    assert direct.has(digest)


def test_s3_store_that_keeps_failing_is_reported_and_leaves_nothing(s3_endpoint: str, tmp_path: Path) -> None:
    with FaultyProxy(s3_endpoint, fail_puts=-1) as proxy:
        store = S3ArtifactStore("s3://artifacts/down", endpoint_url=proxy.url, retry=FAST_RETRY)
        with pytest.raises(StoreError, match=r"uploading .* failed after 3 attempts"):
            store.put_file(_file(tmp_path, b"never stored"))
        assert proxy.failed == 3
    listing = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="artifacts", Prefix="down/")
    assert listing.get("KeyCount", 0) == 0
