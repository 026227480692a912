"""`mlops data snapshot|get` on bad input: each is refused in one line with the repository and the store as
they were, or (mixed types, empty non-tables, many tiny files) handled and said so."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import SEED, Result, git, run_mlops

import mlops.loader.hashing as hashing
import mlops.loader.stat_keys as stat_keys

CSV = (SEED / "customers-v1.csv").read_text(encoding="utf-8")


def data(repo: Path, *args: str) -> Result:
    return run_mlops("data", *args, "--repo", str(repo))


def state(repo: Path) -> dict[str, bytes]:
    """Every file of the repository and its store (git objects and caches aside): what a failure must not touch."""
    return {
        str(p.relative_to(repo)): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and "objects" not in p.parts and p.name != "index" and "cache" not in p.parts
    }


def refused(repo: Path, before: dict[str, bytes], result: Result, code: int, message: str) -> None:
    assert result.code == code, result.out + result.err
    assert "Traceback" not in result.out + result.err
    assert result.err.splitlines() == [f"error: {message}"], result.err
    assert state(repo) == before
    assert git(repo, "status", "--porcelain") == ""


def folder_with(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    folder = tmp_path / "data"
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


def test_unreadable_csv_is_refused_with_the_line(example_repo: Path, tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"ok.csv": "a,b\n1,2\n", "bad.csv": "a,b\n1,2\n3,4,5,6\n"})
    before = state(example_repo)
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    refused(
        example_repo,
        before,
        result,
        2,
        f"{folder / 'bad.csv'}: cannot read as CSV: Error tokenizing data. C error: Expected 2 fields in line 3, saw 4",
    )


def test_binary_bytes_in_a_csv_are_refused(example_repo: Path, tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"t.csv": b"a,b\n\xff\xfe,1\n"})
    before = state(example_repo)
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    refused(example_repo, before, result, 2, f"{folder / 't.csv'}: cannot read as CSV: not UTF-8 text (byte 0)")


def test_empty_csv_is_refused_but_an_empty_other_file_is_data(example_repo: Path, tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"t.csv": ""})
    before = state(example_repo)
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    refused(
        example_repo,
        before,
        result,
        2,
        f"{folder / 't.csv'}: empty file; a CSV table needs at least a header (or schema)",
    )

    (folder / "t.csv").write_text("id,amount\n", encoding="utf-8")  # a header and no rows is a table of 0 rows
    (folder / "EMPTY").write_bytes(b"")
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    assert result.code == 0, result.err
    spec = yaml.safe_load((example_repo / "registry/datasets/orders/versions/1.yaml").read_text())["spec"]
    assert spec["rows"] == 0 and spec["fileCount"] == 2
    assert {f["path"]: f["size"] for f in spec["files"]} == {"EMPTY": 0, "t.csv": 10}
    assert spec["files"][0]["digest"] == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    dataset = yaml.safe_load((example_repo / "registry/datasets/orders/dataset.yaml").read_text())
    assert dataset["spec"]["owner"] == "o@example.com"
    assert run_mlops("validate", "--repo", str(example_repo)).code == 0


def test_mixed_types_are_registered_and_named(example_repo: Path, tmp_path: Path) -> None:
    rows = ["id,amount", *(f"{i},{i * 1.5}" for i in range(1, 50)), "50,twelve", "51,13"]
    folder = folder_with(tmp_path, {"orders.csv": "\n".join(rows) + "\n"})
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    assert result.code == 0, result.err
    assert (
        "note: column 'amount' has mixed types: 50 numbers and 1 value that are not (first at row 50: 'twelve')"
        in result.out.splitlines()
    )
    spec = yaml.safe_load((example_repo / "registry/datasets/orders/versions/1.yaml").read_text())["spec"]
    assert [(c["name"], c["type"]) for c in spec["columns"]] == [("id", "int64"), ("amount", "mixed")]


def test_mixed_types_under_a_rule_name_column_rule_rows_and_values(example_repo: Path, tmp_path: Path) -> None:
    """UC-18 3a: which column, which rule, how many rows, and a few of them."""
    rows = ["id,amount", *(f"{i},{i * 1.5}" for i in range(1, 50)), "50,twelve", "51,n/a", "52,thirteen"]
    folder = folder_with(tmp_path, {"orders.csv": "\n".join(rows) + "\n"})
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "apiVersion: mlops/v1\nkind: QualityRules\nmetadata: {name: orders}\nspec:\n  rules:\n"
        "    - {column: amount, type: float, maxNullRatio: 0.1}\n",
        encoding="utf-8",
    )
    result = run_mlops("data", "validate", str(folder), "--rules", str(rules), "--repo", str(example_repo))
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0] == f"{folder}: failed, score 0.50 (threshold 1.00); 1 of 2 checks passed on 52 rows, rules {rules}"
    assert lines[2:] == [
        "  FAIL amount.type [error]: 2 of 52 rows (3.85%) are not float values",
        "       row 50: amount='twelve'",
        "       row 52: amount='thirteen'",
        "       fix: fix those values or leave them empty, or change the rule's type if amount really holds other "
        "values",
        "note: column 'amount' has mixed types: 49 numbers and 2 values that are not (first at row 50: 'twelve')",
    ]


def test_symlink_pointing_outside_the_folder_is_refused(example_repo: Path, tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"a.txt": "a"})
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of the dataset")
    (folder / "leak.txt").symlink_to(secret)
    before = state(example_repo)
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    refused(
        example_repo,
        before,
        result,
        2,
        f"{folder / 'leak.txt'}: a symbolic link to {secret}, outside {folder}; a snapshot holds only the "
        "folder's own files: copy the file in, or snapshot the folder it lives in",
    )
    # ../ through a sub-folder is outside too; a link to a file inside the folder is fine (its bytes are recorded).
    (folder / "leak.txt").unlink()
    (folder / "sub").mkdir()
    (folder / "sub" / "up.txt").symlink_to(Path("..") / ".." / "secret.txt")
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    assert result.code == 2 and "outside" in result.err
    (folder / "sub" / "up.txt").unlink()
    (folder / "sub" / "same.txt").symlink_to(Path("..") / "a.txt")
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    assert result.code == 0, result.err
    spec = yaml.safe_load((example_repo / "registry/datasets/orders/versions/1.yaml").read_text())["spec"]
    assert [(f["path"], f["size"]) for f in spec["files"]] == [("a.txt", 1), ("sub/same.txt", 1)]


def test_fifo_and_folder_link_are_refused(example_repo: Path, tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"a.txt": "a"})
    os.mkfifo(folder / "pipe")
    before = state(example_repo)
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    refused(
        example_repo,
        before,
        result,
        2,
        f"{folder / 'pipe'}: not a regular file (a named pipe); a snapshot holds regular files only",
    )
    (folder / "pipe").unlink()
    (folder / "loop").symlink_to(folder)
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    refused(
        example_repo,
        before,
        result,
        2,
        f"{folder / 'loop'}: a symbolic link to a folder; a snapshot follows links to files only",
    )


def test_a_file_that_changes_while_it_is_hashed_registers_nothing(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_with(tmp_path, {"a.csv": "x\n1\n", "b.csv": "x\n2\n"})
    real = hashing._read_whole

    def read_then_append(path: str, size: int) -> bytes:
        out = real(path, size)
        if path.endswith("b.csv"):  # a writer appends while we read
            with open(path, "a", encoding="utf-8") as handle:  # noqa: PTH123
                handle.write("3\n")
        return out

    monkeypatch.setattr(hashing, "_read_whole", read_then_append)
    before = state(example_repo)
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    refused(
        example_repo,
        before,
        result,
        2,
        f"{folder / 'b.csv'} changed while the snapshot was reading it (size 4 -> 6 bytes, modified); nothing "
        "was registered: snapshot again once the data is no longer being written",
    )


def test_a_file_that_changes_after_hashing_and_before_storing_registers_nothing(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line of defence: the tables are read after hashing, then every file is stat'ed again."""
    folder = folder_with(tmp_path, {"a.csv": "x\n1\n"})
    from mlops.services import snapshot_register

    real = snapshot_register._read_table

    def read_then_rewrite(source: Path, hashed: list[hashing.HashedFile], common: str | None) -> object:
        out = real(source, hashed, common)
        (folder / "a.csv").write_text("x\n9\n", encoding="utf-8")  # same size, new bytes, new mtime
        os.utime(folder / "a.csv", ns=(1, 1))
        return out

    monkeypatch.setattr(snapshot_register, "_read_table", read_then_rewrite)
    before = state(example_repo)
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    refused(
        example_repo,
        before,
        result,
        2,
        f"{folder / 'a.csv'} changed while the snapshot was reading it (modified); nothing was registered: "
        "snapshot again once the data is no longer being written",
    )


def test_many_tiny_files_keep_the_manifest_small_and_come_back(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "tiny"
    count = 3000
    for i in range(count):
        sub = folder / f"d{i % 30:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(str(i % 2500).encode())  # 500 duplicates of other files' bytes
    # Files written this very second are "racily clean" and not remembered (see test_data_hashing); here the
    # window is closed so that the cache's effect shows without waiting two seconds.
    monkeypatch.setattr(stat_keys, "RACY_NS", 0)
    result = data(example_repo, "snapshot", str(folder), "--name", "tiny", "--owner", "o@example.com")
    assert result.code == 0, result.err
    assert "3,000 files" in result.out
    # Forked workers may share the hashing ("in 2 processes"); duplicates are stored and counted once either way.
    assert re.search(r"hashed 3,000 files( in \d+ processes)?; stored 2,500 new blobs", result.out), result.out
    manifest = (example_repo / "registry/datasets/tiny/versions/1.yaml").read_text()
    spec = yaml.safe_load(manifest)["spec"]
    assert spec["fileCount"] == count and "files" not in spec
    assert spec["filesIndex"] == spec["fingerprint"]["digest"]  # the index is exactly what the fingerprint hashes
    assert len(manifest) < 2000
    assert run_mlops("validate", "--repo", str(example_repo)).code == 0

    # Unchanged: every digest comes from the stat cache, nothing is read or stored.
    again = data(example_repo, "snapshot", str(folder), "--name", "tiny")
    assert again.code == 0, again.err
    assert again.out.splitlines()[0].startswith("unchanged: the same content is registered as tiny@1")
    assert "hashed 0 files (3,000 unchanged, from the stat cache); stored 0 new blobs" in again.out

    restored = tmp_path / "restored"
    result = data(example_repo, "get", "tiny@1", str(restored))
    assert result.code == 0, result.err
    got = {p.relative_to(restored).as_posix(): p.read_bytes() for p in restored.rglob("*.bin")}
    want = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.bin")}
    assert got == want


def test_version_conflict_names_the_next_free_version(example_repo: Path, tmp_path: Path) -> None:
    """UC-16 6a: a number taken by other content is refused; the same content is already that version."""
    folder = folder_with(tmp_path, {"customers.csv": CSV.replace("C00001,", "C09999,")})
    before = state(example_repo)
    result = data(example_repo, "snapshot", str(folder), "--name", "customers", "--version", "1")
    assert result.code == 1
    assert result.err.startswith("error: customers@1 is already registered with other content (sha256:88b3568a4a14...)")
    assert result.err.strip().endswith(
        "versions are immutable: the next free version is 2 (use --version 2 or --version auto)"
    )
    assert state(example_repo) == before
    same = folder_with(tmp_path / "same", {"customers.csv": CSV})
    result = data(example_repo, "snapshot", str(same), "--name", "customers", "--version", "1")
    assert result.code == 0 and result.out.startswith("unchanged: the same content is registered as customers@1")
    result = data(example_repo, "snapshot", str(same), "--name", "customers", "--version", "5")
    assert result.code == 1
    assert "this content is already registered as customers@1" in result.err


def test_bad_names_paths_and_destinations(example_repo: Path, tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"a.txt": "a"})
    result = data(example_repo, "snapshot", str(folder), "--name", "Bad/Name")
    assert result.code == 2 and result.err.startswith("error: invalid name 'Bad/Name'")
    result = data(example_repo, "snapshot", str(tmp_path / "nope"), "--name", "orders")
    assert result.code == 2 and result.err.strip() == f"error: {tmp_path / 'nope'}: no such file or folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = data(example_repo, "snapshot", str(empty), "--name", "orders")
    assert result.err.strip() == f"error: {empty}: the folder holds no files; there is nothing to snapshot"
    (folder / "tab\there.txt").write_text("x")
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    assert result.code == 2 and "the name holds '\\t', which a snapshot's file list cannot record" in result.err
    (folder / "tab\there.txt").unlink()

    result = data(example_repo, "get", "customers@1", str(folder))
    assert result.code == 2
    assert result.err.strip() == f"error: {folder} already exists and is not an empty folder; choose a new destination"
    result = data(example_repo, "get", "customers@7", str(tmp_path / "x"))
    assert result.code == 2 and result.err.strip() == "error: customers@7 is not registered; customers has versions 1"
    result = data(example_repo, "get", "customers", str(tmp_path / "x"))
    assert result.code == 2 and "expected NAME@VERSION" in result.err


def test_get_refuses_a_damaged_blob_and_a_hand_edited_file_list(example_repo: Path, tmp_path: Path) -> None:
    digest = "d214a49dbc6294ac42de14139bf2ba5cc9e92ab7da93b497668f596115f72710"
    blob = example_repo / ".mlops/store/sha256" / digest[:2] / digest[2:]
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes().replace(b"C00001", b"C00002", 1))
    result = data(example_repo, "get", "customers@1", str(tmp_path / "out"))
    assert result.code == 1
    assert result.err.startswith(f"error: sha256:{digest}: the stored bytes hash to sha256:")
    assert not (tmp_path / "out").exists()  # all or nothing
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")]

    version = example_repo / "registry/datasets/customers/versions/1.yaml"
    version.write_text(
        version.read_text()
        .replace("size: 108268\n  fileCount", "size: 108268\n  fileCount", 1)
        .replace("      size: 108268", "      size: 108269")
    )
    result = data(example_repo, "get", "customers@1", str(tmp_path / "out"))
    assert result.code == 1
    assert result.err.strip() == (
        "error: customers@1: registry/datasets/customers/versions/1.yaml: spec.files does not match the fingerprint "
        "sha256:88b3568a4a14e75fe7f4b4ad753972fbe508e5d9be679fad6c8aac09a07b61c7; the manifest was edited by hand: "
        "restore it from git"
    )


def test_large_files_are_hashed_while_stored_and_still_checked(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files over DIRECT_STORE_BYTES go straight into the local store (one read): same digests, same refusals."""
    import hashlib

    from mlops.services import snapshot_register
    from mlops.stores.artifacts import LocalArtifactStore

    monkeypatch.setattr(snapshot_register, "DIRECT_STORE_BYTES", 1000)
    big = "x\n" + "".join(f"{i}\n" for i in range(1000))
    folder = folder_with(tmp_path, {"big.csv": big, "small.txt": "s"})
    result = data(example_repo, "snapshot", str(folder), "--name", "orders", "--owner", "o@example.com")
    assert result.code == 0, result.err
    assert "; 1 large file(s) hashed while copied into the store" in result.out
    spec = yaml.safe_load((example_repo / "registry/datasets/orders/versions/1.yaml").read_text())["spec"]
    digests = {f["path"]: f["digest"] for f in spec["files"]}
    assert digests["big.csv"] == "sha256:" + hashlib.sha256(big.encode()).hexdigest()
    assert spec["rows"] == 1000

    # A refusal found before storing (an unreadable table) leaves the store as it was, new big file included.
    (folder / "big.csv").write_text(big + "1001\n")
    (folder / "bad.csv").write_text("x\n1\n2,3,4\n")
    before = state(example_repo)
    result = data(example_repo, "snapshot", str(folder), "--name", "orders")
    refused(
        example_repo,
        before,
        result,
        2,
        f"{folder / 'bad.csv'}: cannot read as CSV: Error tokenizing data. C error: Expected 1 fields in line 3, saw 3",
    )
    (folder / "bad.csv").unlink()

    # A file that grows while it is copied is caught by its stat; nothing is registered.
    real_put = LocalArtifactStore.put_file

    def put_then_grow(self: LocalArtifactStore, path: Path) -> tuple[str, int]:
        out = real_put(self, path)
        if path.name == "big.csv":
            with path.open("a", encoding="utf-8") as handle:
                handle.write("1002\n")
        return out

    monkeypatch.setattr(LocalArtifactStore, "put_file", put_then_grow)
    result = data(example_repo, "snapshot", str(folder), "--name", "orders")
    assert result.code == 2
    assert result.err.strip().endswith(
        "big.csv changed while the snapshot was reading it (size 3,897 -> 3,902 bytes, modified); nothing was "
        "registered: snapshot again once the data is no longer being written"
    )
    assert not (example_repo / "registry/datasets/orders/versions/2.yaml").exists()
    assert git(example_repo, "status", "--porcelain") == ""
