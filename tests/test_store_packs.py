"""Pack files in the local store: many small blobs in one ``<id>.pack`` made visible by its ``<id>.idx``.

Real files in a temporary folder and, for a kill between the two renames, a real killed process.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlops.errors import BlobNotFound, DigestMismatch, StoreError
from mlops.stores.artifacts import LocalArtifactStore
from mlops.stores.packs import FLUSH_BYTES, INDEX_MAGIC, PackIndex


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _contents(n: int, tag: str = "blob") -> list[bytes]:
    return [f"{tag} {i} ".encode() + os.urandom(i % 300) for i in range(n)]


def _pack(store: LocalArtifactStore, contents: list[bytes]) -> None:
    with store.pack_writer() as writer:
        for data in contents:
            writer.add_hashed(_digest(data), data)
        writer.commit()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _loose_files(root: Path, contents: list[bytes]) -> None:
    sources = root.parent / "src"
    sources.mkdir(exist_ok=True)
    paths = []
    for data in contents:
        path = sources / _digest(data)[7:]
        path.write_bytes(data)
        paths.append(path)
    LocalArtifactStore(root).put_files(paths)


def _idx(root: Path) -> Path:
    (index,) = (root / "packs").glob("*.idx")
    return index


def test_a_pack_is_invisible_until_commit_then_reads_back_identical(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalArtifactStore(root)
    contents = [*_contents(200), b"", os.urandom(FLUSH_BYTES + 1000), b"after the big one"]  # several flushes
    digests = [_digest(c) for c in contents]
    with store.pack_writer() as writer:
        for data in contents:
            assert writer.add_hashed(_digest(data), data)
        assert (writer.staged, writer.staged_bytes) == (len(contents), sum(map(len, contents)))
        assert _files(root / "packs") == []
        assert len(_files(root / "tmp")) == 1  # the pack being written, in large chunks
        for reader in (store, LocalArtifactStore(root)):
            assert not reader.has(digests[0])
            assert reader.missing(digests) == set(digests)
            with pytest.raises(BlobNotFound, match="is not in the artifact store"):
                reader.get_file(digests[0], tmp_path / "early.bin")
        writer.commit()

    names = _files(root / "packs")
    assert [Path(n).suffix for n in names] == [".idx", ".pack"] and Path(names[0]).stem == Path(names[1]).stem
    assert all((root / "packs" / n).stat().st_mode & 0o777 == 0o444 for n in names)
    assert _files(root / "tmp") == []
    assert not (root / "sha256").exists()  # nothing loose
    for reader in (store, LocalArtifactStore(root)):  # this instance, and one that reads the index from disk
        assert reader.missing(digests) == set()
        assert all(reader.has(d) for d in digests)
        for i, data in enumerate(contents):
            reader.get_file(_digest(data), tmp_path / "out" / f"{i}.bin")
            assert (tmp_path / "out" / f"{i}.bin").read_bytes() == data


def test_blobs_the_store_or_the_batch_holds_are_not_staged(tmp_path: Path) -> None:
    root = tmp_path / "store"
    loose, packed, new = _contents(30, "loose"), _contents(30, "packed"), _contents(30, "new")
    _loose_files(root, loose)
    _pack(LocalArtifactStore(root), packed)
    store = LocalArtifactStore(root)  # reads the earlier pack's index from disk
    with store.pack_writer() as writer:
        assert [writer.add_hashed(_digest(c), c) for c in loose + packed] == [False] * 60
        assert [writer.add_hashed(_digest(c), c) for c in new] == [True] * 30
        assert [writer.add_hashed(_digest(c), c) for c in new] == [False] * 30  # already in this batch
        assert (writer.staged, writer.staged_bytes) == (30, sum(map(len, new)))
        writer.commit()
    assert len(_files(root / "packs")) == 4
    assert store.missing(_digest(c) for c in loose + packed + new) == set()


def test_the_same_store_instance_does_not_pack_a_blob_twice(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    contents = _contents(20)
    _pack(store, contents)
    with store.pack_writer() as writer:
        assert not any(writer.add_hashed(_digest(c), c) for c in contents)
        writer.commit()
    assert len(_files(tmp_path / "store" / "packs")) == 2


def test_the_committing_instance_knows_its_pack_without_reading_the_folder_again(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _pack(LocalArtifactStore(root), [b"earlier"])
    an_hour_ago = (root / "packs").stat().st_mtime_ns - 3600 * 10**9
    os.utime(root / "packs", ns=(an_hour_ago, an_hour_ago))
    store = LocalArtifactStore(root)
    assert store.has(_digest(b"earlier"))  # listed now, not racy
    _pack(store, [b"later"])
    os.utime(root / "packs", ns=(an_hour_ago, an_hour_ago))  # the folder looks unchanged since the listing
    assert store.has(_digest(b"later"))


def test_abort_leaves_nothing_and_can_be_repeated(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalArtifactStore(root)
    writer = store.pack_writer()
    writer.add_hashed(_digest(big := os.urandom(FLUSH_BYTES)), big)  # written to a temporary pack already
    assert _files(root / "tmp") != []
    writer.abort()
    writer.abort()
    assert _files(root / "tmp") == [] and _files(root / "packs") == []
    assert not store.has(_digest(big))
    with pytest.raises(ValueError, match="aborted"):
        writer.add_hashed(_digest(b"x"), b"x")


@pytest.mark.parametrize("fails", [True, False])
def test_leaving_the_with_block_without_commit_leaves_nothing(tmp_path: Path, fails: bool) -> None:
    root = tmp_path / "store"
    contents = [os.urandom(FLUSH_BYTES), *_contents(10)]
    with pytest.raises(RuntimeError) if fails else _nothing(), LocalArtifactStore(root).pack_writer() as writer:
        for data in contents:
            writer.add_hashed(_digest(data), data)
        assert _files(root / "tmp") != []
        if fails:
            raise RuntimeError("the snapshot failed")
    assert _files(root / "tmp") == [] and _files(root / "packs") == []
    assert LocalArtifactStore(root).missing(_digest(c) for c in contents) == {_digest(c) for c in contents}


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_commit_after_commit_and_abort_after_commit_change_nothing(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    writer = store.pack_writer()
    writer.add_hashed(_digest(b"kept"), b"kept")
    writer.commit()
    writer.commit()
    writer.abort()
    assert store.has(_digest(b"kept")) and len(_files(tmp_path / "store" / "packs")) == 2


def test_a_commit_with_nothing_staged_creates_no_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _loose_files(root, [b"already here"])
    store = LocalArtifactStore(root)
    with store.pack_writer() as writer:
        writer.commit()
    with store.pack_writer() as writer:
        assert not writer.add_hashed(_digest(b"already here"), b"already here")
        writer.commit()
    assert not (root / "packs").exists()
    assert _files(root / "tmp") == []


KILLED_BETWEEN_RENAMES = """
import hashlib, os, pathlib, signal, sys
from mlops.stores.artifacts import LocalArtifactStore

real_replace = pathlib.Path.replace

def replace_then_die_before_the_index(self, target):
    if str(target).endswith(".idx"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(self, target)

pathlib.Path.replace = replace_then_die_before_the_index
with LocalArtifactStore(pathlib.Path(sys.argv[1])).pack_writer() as writer:
    for i in range(20):
        data = b"blob %d" % i
        writer.add_hashed("sha256:" + hashlib.sha256(data).hexdigest(), data)
    writer.commit()
"""


def test_a_pack_without_its_index_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "store"
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED_BETWEEN_RENAMES))
    done = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert [Path(n).suffix for n in _files(root / "packs")] == [".pack"]  # the orphan

    contents = [b"blob %d" % i for i in range(20)]
    store = LocalArtifactStore(root)
    assert not store.has(_digest(contents[0]))
    assert store.missing(_digest(c) for c in contents) == {_digest(c) for c in contents}
    with pytest.raises(BlobNotFound):
        store.get_file(_digest(contents[0]), tmp_path / "out.bin")
    _pack(store, contents)  # packed again, for real this time
    store.get_file(_digest(contents[0]), tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == contents[0]


@pytest.mark.parametrize("damage", ["magic", "crc", "payload", "truncated", "empty"])
def test_a_damaged_index_is_ignored(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "store"
    contents = _contents(50)
    _pack(LocalArtifactStore(root), contents)
    index = _idx(root)
    data = bytearray(index.read_bytes())
    at = {"magic": 3, "crc": len(INDEX_MAGIC) + 2, "payload": len(data) // 2}.get(damage)
    if at is not None:
        data[at] ^= 0x01
    elif damage == "truncated":
        del data[-10:]
    else:
        data.clear()
    index.chmod(0o644)
    index.write_bytes(bytes(data))

    store = LocalArtifactStore(root)
    assert not store.has(_digest(contents[0]))
    assert store.missing(_digest(c) for c in contents) == {_digest(c) for c in contents}
    with pytest.raises(BlobNotFound):
        store.get_file(_digest(contents[0]), tmp_path / "out.bin")
    reader = PackIndex(root / "packs")
    assert reader.locate(_digest(contents[0])[7:]) is None and reader.damaged == [index]


def test_a_pack_another_process_committed_after_the_index_was_read_is_found(tmp_path: Path) -> None:
    root = tmp_path / "store"
    first, second, third = _contents(10, "first"), _contents(10, "second"), _contents(10, "third")
    _pack(LocalArtifactStore(root), first)
    an_hour_ago = (root / "packs").stat().st_mtime_ns - 3600 * 10**9
    os.utime(root / "packs", ns=(an_hour_ago, an_hour_ago))  # so the listing below is not racy
    reader = LocalArtifactStore(root)
    assert reader.has(_digest(first[0]))  # the index is read now

    _pack(LocalArtifactStore(root), second)  # another instance: the packs/ folder's mtime changes
    assert reader.has(_digest(second[0]))
    _pack(LocalArtifactStore(root), third)
    assert reader.missing(_digest(c) for c in first + second + third + [b"absent"]) == {_digest(b"absent")}
    reader.get_file(_digest(third[3]), tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == third[3]


def test_a_pack_committed_within_the_same_mtime_tick_is_found(tmp_path: Path) -> None:
    root = tmp_path / "store"
    first, second = _contents(10, "first"), _contents(10, "second")
    _pack(LocalArtifactStore(root), first)
    reader = LocalArtifactStore(root)
    assert reader.has(_digest(first[0]))  # listed just after the folder changed: racy
    seen = (root / "packs").stat().st_mtime_ns
    _pack(LocalArtifactStore(root), second)
    os.utime(root / "packs", ns=(seen, seen))  # as a coarse clock would leave it
    assert reader.has(_digest(second[0]))
    assert reader.missing(_digest(c) for c in second) == set()


def test_threads_sharing_a_store_all_find_packed_blobs(tmp_path: Path) -> None:
    root = tmp_path / "store"
    contents = _contents(5000)  # an index that takes a few milliseconds to read
    _pack(LocalArtifactStore(root), contents)
    store = LocalArtifactStore(root)  # its index is read by whichever thread asks first, the others wait
    start = threading.Barrier(8)

    def fetch(task: int) -> bytes:
        if task < 8:
            start.wait(timeout=60)  # the first lookups at once
        i = task * 10
        store.get_file(_digest(contents[i]), tmp_path / "out" / f"{i}.bin")
        return (tmp_path / "out" / f"{i}.bin").read_bytes()

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(fetch, range(len(contents) // 10))) == contents[::10]


def test_a_damaged_packed_blob_is_refused_on_read(tmp_path: Path) -> None:
    root = tmp_path / "store"
    contents = _contents(20)
    store = LocalArtifactStore(root)
    _pack(store, contents)
    (pack,) = (root / "packs").glob("*.pack")
    data = bytearray(pack.read_bytes())
    offset = data.index(contents[7])
    data[offset + 2] ^= 0x20
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))

    with pytest.raises(DigestMismatch, match=rf"^{_digest(contents[7])}: the stored bytes hash to .*damaged"):
        store.get_file(_digest(contents[7]), tmp_path / "out" / "blob.bin")
    assert _files(tmp_path / "out") == []  # neither the file nor its temporary copy
    store.get_file(_digest(contents[8]), tmp_path / "out" / "next.bin")  # its neighbour is intact
    assert (tmp_path / "out" / "next.bin").read_bytes() == contents[8]


def test_missing_over_loose_packed_and_absent_digests(tmp_path: Path) -> None:
    root = tmp_path / "store"
    loose, packed = _contents(300, "loose"), _contents(300, "packed")
    _loose_files(root, loose)
    _pack(LocalArtifactStore(root), packed)
    # Thousands of absent digests: about a dozen per fan-out folder, enough for missing() to list folders.
    absent = [_digest(b"absent %d" % i) for i in range(3000)]
    store = LocalArtifactStore(root)
    everything = [_digest(c) for c in loose + packed] + absent
    assert store.missing(everything) == set(absent)
    assert store.missing([*everything[:3], *absent[:2], everything[400]]) == set(absent[:2])  # a stat each
    assert store.missing([]) == set()
    assert [store.has(d) for d in (everything[0], everything[400], absent[0])] == [True, True, False]


def test_a_store_that_cannot_take_the_pack_gives_one_error_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "packs").write_text("not a folder")
    store = LocalArtifactStore(root)
    with store.pack_writer() as writer:
        for data in _contents(10):
            writer.add_hashed(_digest(data), data)
        with pytest.raises(StoreError) as caught:
            writer.commit()
    assert str(caught.value).startswith(f"packing 10 blobs in {root.resolve().as_uri()} failed: ")
    assert _files(root / "tmp") == []
    assert (root / "packs").read_text() == "not a folder"


def test_a_staging_folder_that_cannot_be_made_fails_while_adding(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "tmp").write_text("not a folder")
    big = os.urandom(FLUSH_BYTES)
    with LocalArtifactStore(root).pack_writer() as writer, pytest.raises(StoreError, match=r"^packing 1 blobs in "):
        writer.add_hashed(_digest(big), big)
    assert not (root / "packs").exists()


def test_a_digest_must_be_a_sha256(tmp_path: Path) -> None:
    with LocalArtifactStore(tmp_path / "store").pack_writer() as writer, pytest.raises(ValueError, match="sha256"):
        writer.add_hashed("md5:0123", b"x")


@pytest.mark.parametrize("most", [None, 1, 4_097, 70_000], ids=["whole", "1-byte", "4097-byte", "70000-byte"])
def test_chunks_reach_the_file_whole_and_in_order_however_writev_splits_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, most: int | None
) -> None:
    """More chunks than one writev takes, some empty, written by a system call that may stop at any byte."""
    from mlops.stores import fileio

    real = os.writev
    calls = []

    def writev_at_most(fd: int, buffers: list[bytes]) -> int:
        calls.append(len(buffers))
        if most is None:
            return real(fd, buffers)
        taken, room = [], most
        for buffer in buffers:  # the first `most` bytes, as a kernel cut short by a signal would write them
            if room <= 0:
                break
            taken.append(memoryview(buffer)[:room])
            room -= len(buffer)
        return real(fd, taken)

    monkeypatch.setattr(fileio.os, "writev", writev_at_most)
    chunks = [os.urandom(i % 700) for i in range(3000)]  # 3000 > 1024 per call; every 700th is empty
    target = tmp_path / "out.bin"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fileio.write_all_of(fd, chunks)
    finally:
        os.close(fd)
    assert target.read_bytes() == b"".join(chunks)
    assert max(calls) <= 1024
