"""``put_files``: many blobs in one batch, made durable with one sync, all-or-nothing per blob.

Against the real backends: a local folder (real fsync/syncfs, real renames, a real killed process) and a
real S3-compatible server on loopback (moto's server mode, as in test_store.py).
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from conftest import git, run_mlops
from s3_server import FaultyProxy, moto_s3_bucket

import mlops.stores.artifacts as artifacts
from mlops.errors import StoreError
from mlops.stores.artifacts import SMALL_BLOB, LocalArtifactStore
from mlops.stores.retry import RetryPolicy
from mlops.stores.s3 import S3ArtifactStore

FAST_RETRY = RetryPolicy(attempts=3, first_delay=0.01)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _files(folder: Path, contents: list[bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, data in enumerate(contents):
        path = folder / f"f{i:04d}.bin"
        path.write_bytes(data)
        out.append(path)
    return out


def _blobs(root: Path) -> dict[str, Path]:
    return {p.parent.name + p.name: p for p in (root / "sha256").glob("*/*")}


def _assert_every_blob_complete(root: Path) -> None:
    """What a failure or a kill may leave: complete blobs under final names, nothing else there."""
    for name, path in _blobs(root).items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == name, f"partial or wrong blob {path}"


def _leftovers(root: Path) -> list[Path]:
    staging = root / "tmp"
    return sorted(staging.iterdir()) if staging.is_dir() else []


# ------------------------------------------------------------------------------------------ local store


def test_put_files_stores_every_file_once_in_order(tmp_path: Path) -> None:
    contents = [os.urandom(2048) for _ in range(40)]
    contents += [b"", b"same bytes", b"same bytes", os.urandom(SMALL_BLOB + 123), os.urandom(SMALL_BLOB)]
    paths = _files(tmp_path / "src", contents)
    root = tmp_path / "store"
    store = LocalArtifactStore(root)
    seen: list[tuple[int, int]] = []

    out = store.put_files(paths, progress=lambda done, total: seen.append((done, total)))

    assert out == [(_digest(c), len(c)) for c in contents]
    blobs = _blobs(root)
    assert set(blobs) == {_digest(c)[7:] for c in contents}  # the duplicate is stored once
    for data in contents:
        blob = blobs[_digest(data)[7:]]
        assert blob.read_bytes() == data
        assert blob.stat().st_mode & 0o777 == 0o444
    assert _leftovers(root) == []
    assert seen[0] == (0, len(paths)) and seen[-1] == (len(paths), len(paths))
    assert store.missing(d for d, _ in out) == set()
    assert store.put_files([]) == []


def test_put_files_accepts_strings_and_put_file_is_a_batch_of_one(tmp_path: Path) -> None:
    big, small = os.urandom(3 * SMALL_BLOB + 5), b"small"
    paths = _files(tmp_path / "src", [big, small])
    store = LocalArtifactStore(tmp_path / "store")
    assert store.put_files([str(p) for p in paths]) == [(_digest(big), len(big)), (_digest(small), len(small))]
    assert store.put_file(paths[1]) == (_digest(small), len(small))
    store.get_file(_digest(big), tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == big


def test_blobs_already_stored_are_not_written_again(tmp_path: Path) -> None:
    old = [b"kept %d" % i for i in range(5)] + [os.urandom(SMALL_BLOB + 1)]
    root = tmp_path / "store"
    store = LocalArtifactStore(root)
    store.put_files(_files(tmp_path / "first", old))
    before = {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in _blobs(root).items()}

    new = [b"new %d" % i for i in range(3)]
    out = store.put_files(_files(tmp_path / "second", [*old, *new]))

    assert out == [(_digest(c), len(c)) for c in [*old, *new]]
    after = {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in _blobs(root).items()}
    assert {name: after[name] for name in before} == before  # the same files, untouched
    assert len(after) == len(before) + len(new)
    assert _leftovers(root) == []


def test_a_batch_syncs_once_not_once_per_blob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if artifacts._syncfs_function() is None:
        pytest.skip("no syncfs on this platform: put_files fsyncs each blob")
    paths = _files(tmp_path / "src", [os.urandom(512) for _ in range(300)])
    calls = {"syncfs": 0, "fsync": 0}
    real_sync, real_fsync = artifacts._sync_filesystem, os.fsync

    def count_sync(*args: object) -> None:
        calls["syncfs"] += 1
        real_sync(*args)  # type: ignore[arg-type]

    def count_fsync(fd: int) -> None:
        calls["fsync"] += 1
        real_fsync(fd)

    monkeypatch.setattr(artifacts, "_sync_filesystem", count_sync)
    monkeypatch.setattr(os, "fsync", count_fsync)
    monkeypatch.setattr(artifacts, "_dirty_bytes", lambda: 1 << 20)  # little else waits to be written
    root = tmp_path / "store"
    LocalArtifactStore(root).put_files(paths)
    folders = len(list((root / "sha256").iterdir()))
    assert calls["syncfs"] == 1
    assert calls["fsync"] == folders + 2  # each blob folder once, sha256/ and the store root (new folders)
    assert len(_blobs(root)) == 300

    # With gigabytes of other data waiting to be written, syncfs would wait for them too: each blob is fsynced.
    calls.update(syncfs=0, fsync=0)
    monkeypatch.setattr(artifacts, "_dirty_bytes", lambda: 8 << 30)
    more = _files(tmp_path / "more", [os.urandom(512) for _ in range(40)])
    LocalArtifactStore(root).put_files(more)
    assert calls["syncfs"] == 0
    assert calls["fsync"] >= 40
    assert len(_blobs(root)) == 340
    _assert_every_blob_complete(root)


def test_without_syncfs_each_blob_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "_syncfs_function", lambda: None)
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    contents = [b"a", b"b", b"c"]
    root = tmp_path / "store"
    assert LocalArtifactStore(root).put_files(_files(tmp_path / "src", contents)) == [(_digest(c), 1) for c in contents]
    folders = len(list((root / "sha256").iterdir()))
    assert len(fsyncs) == len(contents) + folders + 2
    _assert_every_blob_complete(root)


def test_a_source_that_disappears_mid_batch_stores_nothing(tmp_path: Path) -> None:
    paths = _files(tmp_path / "src", [os.urandom(1000) for _ in range(20)])
    paths[12].unlink()
    root = tmp_path / "store"
    with pytest.raises(StoreError) as caught:
        LocalArtifactStore(root, retry=FAST_RETRY).put_files(paths)
    assert str(caught.value) == f"cannot store {paths[12]}: No such file or directory"
    assert _blobs(root) == {}  # blobs are renamed into place only once every one is written and synced
    assert _leftovers(root) == []


def test_a_folder_is_not_a_file_to_store(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreError, match=r"cannot store .*dir: not a regular file$"):
        LocalArtifactStore(tmp_path / "store").put_files([tmp_path / "dir"])


def test_a_write_that_fails_mid_batch_leaves_no_partial_blob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _files(tmp_path / "src", [os.urandom(4096) for _ in range(10)])
    writes = []
    real_write = artifacts._write_all

    def disk_full_on_the_sixth(fd: int, data: bytes | memoryview) -> None:
        writes.append(fd)
        if len(writes) % 10 == 6:
            os.write(fd, bytes(data)[:100])  # half a blob on disk, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(fd, data)

    monkeypatch.setattr(artifacts, "_write_all", disk_full_on_the_sixth)
    root = tmp_path / "store"
    with pytest.raises(StoreError) as caught:
        LocalArtifactStore(root, retry=FAST_RETRY).put_files(paths)
    assert str(caught.value).startswith(f"storing 10 files in {root.resolve().as_uri()} failed after 3 attempts: ")
    assert "No space left on device" in str(caught.value)
    assert _blobs(root) == {}
    assert _leftovers(root) == []


def test_a_store_that_cannot_take_a_blob_keeps_only_complete_ones(tmp_path: Path) -> None:
    # Find contents whose blobs go to two different folders, then put a file where the second folder must go:
    # renaming into it fails (ENOTDIR) after the first blob is in place, on every attempt.
    contents = [b"blob %d" % i for i in range(64)]
    by_folder: dict[str, bytes] = {}
    for data in contents:
        by_folder.setdefault(_digest(data)[7:9], data)
    first, blocked = sorted(by_folder)[:2]
    root = tmp_path / "store"
    (root / "sha256").mkdir(parents=True)
    (root / "sha256" / blocked).write_text("not a folder")
    paths = _files(tmp_path / "src", [by_folder[first], by_folder[blocked], b"after"])
    with pytest.raises(StoreError, match=r"failed after 3 attempts: \[Errno 20\] Not a directory"):
        LocalArtifactStore(root, retry=FAST_RETRY).put_files(paths)
    _assert_every_blob_complete(root)
    assert (root / "sha256" / blocked).read_text() == "not a folder"
    assert _leftovers(root) == []


def _without_privileges(work: Callable[[], str]) -> str:
    """``work()`` as a user that permissions apply to: in a forked child that drops root, else right here."""
    if os.geteuid() != 0:
        return work()
    artifacts._syncfs_function()  # what the child imports must be loaded first: it may not read root's files
    import ctypes  # noqa: F401

    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(65534)
            os.setuid(65534)
            text = work()
        except BaseException as exc:
            text = f"unexpected {type(exc).__name__}: {exc}"
        os.write(writer, text.encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    return text


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("read_only", ["store", "sha256"])
def test_a_read_only_store_gives_one_clear_error(read_only: str) -> None:
    with tempfile.TemporaryDirectory(prefix="mlops-ro-") as tmp:  # pytest's own folders are private to root
        Path(tmp).chmod(0o755)
        _read_only_store(Path(tmp), read_only)


def _read_only_store(tmp_path: Path, read_only: str) -> None:
    root = tmp_path / "store"
    (root / "tmp").mkdir(parents=True)
    (root / "sha256").mkdir()
    (root / "tmp").chmod(0o777)
    paths = _files(tmp_path / "src", [b"x", b"y", b"z"])
    for folder in (tmp_path / "src", *paths):
        folder.chmod(0o755)
    if read_only == "store":
        (root / "tmp").rmdir()
    (root / read_only if read_only == "sha256" else root).chmod(0o555)

    def put() -> str:
        try:
            LocalArtifactStore(root, retry=FAST_RETRY).put_files(paths)
        except StoreError as exc:
            return str(exc)
        return "stored"

    try:
        message = _without_privileges(put)
    finally:
        root.chmod(0o755)
        (root / "sha256").chmod(0o755)
    where = root / "tmp" if read_only == "store" else root / "sha256"
    assert message.startswith(f"storing 3 files in {root.resolve().as_uri()} failed after 3 attempts: "), message
    assert f"[Errno 13] Permission denied: '{where}" in message
    assert _blobs(root) == {}
    assert _leftovers(root) == []


KILLED_MID_BATCH = """
import os, signal, sys
from pathlib import Path
import mlops.stores.artifacts as artifacts

renamed = 0
real_replace = os.replace

def replace_then_die(src, dst):
    global renamed
    if renamed == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
    renamed += 1

artifacts.os.replace = replace_then_die
sources = sorted(Path(sys.argv[1]).iterdir())
artifacts.LocalArtifactStore(Path(sys.argv[2])).put_files(sources)
"""


def test_a_command_killed_mid_batch_leaves_complete_blobs_or_none(tmp_path: Path) -> None:
    contents = [os.urandom(3000) for _ in range(30)]
    _files(tmp_path / "src", contents)
    root = tmp_path / "store"
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED_MID_BATCH))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "src"), str(root), "12"], capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    blobs = _blobs(root)
    assert len(blobs) == 12
    _assert_every_blob_complete(root)
    assert set(blobs) <= {_digest(c)[7:] for c in contents}
    # What it left in the staging folder is harmless: the next batch stores everything.
    store = LocalArtifactStore(root)
    store.put_files(sorted((tmp_path / "src").iterdir()))
    assert len(_blobs(root)) == 30
    _assert_every_blob_complete(root)


# ------------------------------------------------------------------------------------------ dataset snapshots


def test_a_snapshot_packs_its_new_blobs_into_one_pack(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "many"
    contents = [b"row %d\n" % i for i in range(250)] + [b"row 1\n"]  # one duplicate
    _files(folder, contents)
    batches: list[int] = []
    real = LocalArtifactStore.put_files

    def counting(self: LocalArtifactStore, paths: list[str], progress: object = None) -> list[tuple[str, int]]:
        batches.append(len(paths))
        return real(self, paths, progress)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalArtifactStore, "put_files", counting)
    store_root = example_repo / ".mlops/store"
    packs_before = set((store_root / "packs").glob("*")) if (store_root / "packs").is_dir() else set()
    result = run_mlops(
        "data", "snapshot", str(folder), "--name", "many", "--owner", "o@example.com", "--repo", str(example_repo)
    )
    assert result.code == 0, result.err
    assert "hashed 251 files; stored 250 new blobs" in result.out
    assert batches == []  # the bytes hashed went into the pack: no file was read a second time
    new = sorted(p.suffix for p in set((store_root / "packs").glob("*")) - packs_before)
    assert new == [".idx", ".pack"]  # one pack for the 250 blobs and the file list (over 200 files)
    store = LocalArtifactStore(store_root)
    digests = {"sha256:" + hashlib.sha256(c).hexdigest() for c in contents}
    assert store.missing(digests) == set()
    fingerprint = next(line.split()[1] for line in result.out.splitlines() if line.startswith("fingerprint "))
    assert store.has(fingerprint)
    assert _leftovers(store_root) == []


def test_a_file_removed_before_the_pack_is_committed_leaves_no_pack(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data"
    paths = _files(folder, [b"a\n", b"b\n", b"c\n"])
    table = folder / "t.csv"
    table.write_bytes(b"x\n1\n")
    from mlops.services import snapshot_register

    real = snapshot_register._analyze

    def analyze_then_remove(*args: object) -> object:
        out = real(*args)  # type: ignore[arg-type]
        # The table was hashed (and staged in the pack), then read for its profile; it is gone before the snapshot
        # stores anything. Whether the profile is of the bytes hashed can no longer be known: refused.
        table.unlink()
        return out

    monkeypatch.setattr(snapshot_register, "_analyze", analyze_then_remove)
    result = run_mlops(
        "data", "snapshot", str(folder), "--name", "gone", "--owner", "o@example.com", "--repo", str(example_repo)
    )
    assert result.code == 2
    assert result.err.splitlines() == [f"error: {table}: removed while the snapshot read it; nothing was registered"]
    assert not (example_repo / "registry/datasets/gone").exists()
    assert git(example_repo, "status", "--porcelain") == ""
    store_root = example_repo / ".mlops/store"
    staged = {"sha256:" + hashlib.sha256(c).hexdigest() for c in (b"a\n", b"b\n", b"c\n", b"x\n1\n")}
    assert all(p.exists() for p in paths)
    assert LocalArtifactStore(store_root).missing(staged) == staged  # the staged pack never became visible
    _assert_every_blob_complete(store_root)
    assert _leftovers(store_root) == []


# ------------------------------------------------------------------------------------------ S3


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_bucket("batch") as endpoint:
        yield endpoint


def _keys(endpoint: str, prefix: str) -> set[str]:
    listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket="batch", Prefix=f"{prefix}/")
    return {item["Key"] for item in listing.get("Contents", [])}


def test_s3_put_files_uploads_each_missing_blob_once(s3_endpoint: str, tmp_path: Path) -> None:
    direct = S3ArtifactStore("s3://batch/many", endpoint_url=s3_endpoint, retry=FAST_RETRY)
    already = b"already there"
    direct.put_file(_files(tmp_path / "before", [already])[0])
    contents = [b"one", b"two", b"one", already, os.urandom(6 * 1024 * 1024), b""]
    paths = _files(tmp_path / "src", contents)
    seen: list[tuple[int, int]] = []
    with FaultyProxy(s3_endpoint, fail_puts=0) as proxy:
        store = S3ArtifactStore("s3://batch/many", endpoint_url=proxy.url, retry=FAST_RETRY)
        out = store.put_files(paths, progress=lambda done, total: seen.append((done, total)))
        assert proxy.forwarded_puts == 4  # one, two, the large one, the empty one: no duplicate, nothing present
    assert out == [(_digest(c), len(c)) for c in contents]
    assert _keys(s3_endpoint, "many") == {f"many/sha256/{_digest(c)[7:9]}/{_digest(c)[9:]}" for c in contents}
    assert direct.missing(d for d, _ in out) == set()
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    for data in contents:
        target = tmp_path / "back" / _digest(data)[7:]
        direct.get_file(_digest(data), target)
        assert target.read_bytes() == data


def test_s3_put_files_with_an_unreadable_source_uploads_nothing(s3_endpoint: str, tmp_path: Path) -> None:
    paths = _files(tmp_path / "src", [b"first", b"second"])
    store = S3ArtifactStore("s3://batch/unreadable", endpoint_url=s3_endpoint, retry=FAST_RETRY)
    with pytest.raises(StoreError, match=r"cannot read .*missing\.bin: No such file or directory"):
        store.put_files([paths[0], tmp_path / "src" / "missing.bin", paths[1]])
    assert _keys(s3_endpoint, "unreadable") == set()


def test_s3_put_files_that_keep_failing_give_one_error_and_no_object(s3_endpoint: str, tmp_path: Path) -> None:
    paths = _files(tmp_path / "src", [b"never %d" % i for i in range(5)])
    with FaultyProxy(s3_endpoint, fail_puts=-1) as proxy:
        store = S3ArtifactStore("s3://batch/down", endpoint_url=proxy.url, retry=FAST_RETRY)
        with pytest.raises(StoreError, match=r"^uploading .* to s3://batch/down failed after 3 attempts"):
            store.put_files(paths)
    assert _keys(s3_endpoint, "down") == set()
