"""The snapshot hasher: digests equal hashlib's, the stat cache trusts only stable files, changes are caught,
and a damaged cache file costs a re-hash, never a wrong digest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mlops.errors import InputError
from mlops.loader import hash_cache, hashing, stat_keys
from mlops.loader.file_scan import scan
from mlops.loader.hash_cache import HashCache
from mlops.loader.hashing import FileChanged, hash_files


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tree(root: Path, count: int = 40) -> dict[str, bytes]:
    files = {}
    for i in range(count):
        rel = f"d{i % 3}/f{i:03d}.bin"
        data = os.urandom(i * 37)  # includes an empty file
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        files[rel] = data
    big = os.urandom(3 * hashing.SMALL + 12345)  # streamed through the per-thread buffer
    (root / "big.dat").write_bytes(big)
    files["big.dat"] = big
    return files


def test_digests_match_hashlib_in_parallel_and_alone(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "t")
    scanned = scan(tmp_path / "t")
    assert [s.rel for s in scanned] == sorted(files)
    for workers in (1, 4):
        hashed, read = hash_files(scanned, HashCache(None), workers=workers)
        assert {h.rel: h.digest for h in hashed} == {rel: sha(data) for rel, data in files.items()}
        assert read == len(files)
        assert [h.size for h in hashed] == [len(files[h.rel]) for h in hashed]


def test_stat_cache_skips_stable_files_and_rehashes_recent_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_tree(tmp_path / "t", count=10)
    cache_file = tmp_path / "cache" / hash_cache.CACHE_FILE
    # Just written: racily clean, so not remembered; a second run reads everything again.
    cache = HashCache(cache_file)
    hash_files(scan(tmp_path / "t"), cache)
    cache.save()
    assert HashCache(cache_file).entries == {}
    # Stable (the window closed): remembered, and a second run reads nothing.
    monkeypatch.setattr(stat_keys, "RACY_NS", 0)
    cache = HashCache(cache_file)
    hash_files(scan(tmp_path / "t"), cache)
    cache.save()
    again, read = hash_files(scan(tmp_path / "t"), HashCache(cache_file))
    assert read == 0 and {h.rel: h.digest for h in again} == {r: sha(d) for r, d in files.items()}
    # A change of content that keeps the size is seen through mtime/ctime, and only that file is read again.
    target = tmp_path / "t" / "d1" / "f001.bin"
    target.write_bytes(b"X" * len(files["d1/f001.bin"]))
    changed, read = hash_files(scan(tmp_path / "t"), HashCache(cache_file))
    assert read == 1
    assert {h.rel: h.digest for h in changed}["d1/f001.bin"] == sha(b"X" * len(files["d1/f001.bin"]))


def test_damaged_cache_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path / "t", count=5)
    monkeypatch.setattr(stat_keys, "RACY_NS", 0)
    cache_file = tmp_path / hash_cache.CACHE_FILE
    cache = HashCache(cache_file)
    hash_files(scan(tmp_path / "t"), cache)
    cache.save()
    raw = bytearray(cache_file.read_bytes())
    raw[-3] ^= 0xFF
    cache_file.write_bytes(bytes(raw))
    assert HashCache(cache_file).entries == {}
    _, read = hash_files(scan(tmp_path / "t"), HashCache(cache_file))
    assert read == 6


def test_change_during_hashing_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path / "t", count=5)
    real = hashing._digest_of

    def grow(path: str, size: int) -> tuple[str, int]:
        out = real(path, size)
        if path.endswith("big.dat"):
            with open(path, "ab") as handle:  # noqa: PTH123
                handle.write(b"more")
        return out

    monkeypatch.setattr(hashing, "_digest_of", grow)
    with pytest.raises(FileChanged, match=r"big.dat changed while the snapshot was reading it \(size"):
        hash_files(scan(tmp_path / "t"), HashCache(None), workers=4)


def test_removed_during_hashing_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a").write_bytes(b"a")
    scanned = scan(tmp_path / "t")
    (tmp_path / "t" / "a").unlink()
    with pytest.raises(FileChanged, match="removed while the snapshot read it"):
        hash_files(scanned, HashCache(None))


def test_single_file_and_linked_source(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "current").symlink_to(tmp_path / "data.csv")
    for source in (tmp_path / "data.csv", tmp_path / "current"):
        [only] = scan(source)
        assert only.rel == "data.csv"
    with pytest.raises(InputError, match="no such file or folder"):
        scan(tmp_path / "missing")
