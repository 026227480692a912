"""End to end (UC-16, UC-18): snapshot the example dataset, change a few rows, snapshot again (only the
changed blob is stored), diff, validate both, quarantine a broken version, and see `mlops validate` refuse
a pipeline (and a staging deployment) that uses it. Real temporary git repositories, the real local store,
the CLI through its error boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import SEED, Result, git, run_mlops

from mlops.stores.packs import PackIndex

CSV = (SEED / "customers-v1.csv").read_text(encoding="utf-8")
HEADER, *ROWS = CSV.splitlines()
PARTS = 4


def data(repo: Path, *args: str) -> Result:
    return run_mlops("data", *args, "--repo", str(repo))


def blobs(repo: Path) -> set[str]:
    """Every digest the repository's local store holds: loose blobs and packed ones."""
    store = repo / ".mlops/store"
    loose = {p.parent.name + p.name for p in (store / "sha256").glob("*/*")}
    return loose | set(PackIndex(store / "packs").hexdigests())


def write_parts(folder: Path, rows: list[str]) -> None:
    """The customers table as four partitions plus a README: a folder dataset whose parts change separately."""
    folder.mkdir(parents=True, exist_ok=True)
    size = len(rows) // PARTS
    for i in range(PARTS):
        chunk = rows[i * size : (i + 1) * size]
        (folder / f"part-{i}.csv").write_text("\n".join([HEADER, *chunk]) + "\n", encoding="utf-8")
    (folder / "README.txt").write_text("customers, one partition per quarter of the id range\n", encoding="utf-8")


def edit_field(row: str, index: int, value: str) -> str:
    cells = row.split(",")
    cells[index] = value
    return ",".join(cells)


def version_spec(repo: Path, number: int) -> dict[str, object]:
    text = (repo / f"registry/datasets/customers/versions/{number}.yaml").read_text(encoding="utf-8")
    spec: dict[str, object] = yaml.safe_load(text)["spec"]
    return spec


def test_version_diff_validate_quarantine_and_the_ci_gate(example_repo: Path, tmp_path: Path) -> None:
    repo = example_repo
    # The example's own file, under the name it was registered with, is the registered version 1.
    single = tmp_path / "single"
    single.mkdir()
    (single / "customers.csv").write_text(CSV, encoding="utf-8")
    result = data(repo, "snapshot", str(single), "--name", "customers")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == (
        "unchanged: the same content is registered as customers@1 (dataset://customers@1); nothing registered"
    )
    assert not (repo / "registry/datasets/customers/versions/2.yaml").exists()

    # Version 2: the same rows as a partitioned folder; every blob is new.
    folder = tmp_path / "customers"
    write_parts(folder, ROWS)
    before = blobs(repo)
    result = data(repo, "snapshot", str(folder), "--name", "customers", "--description", "partitioned", "--tag", "q=4")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "registered customers@2 (dataset://customers@2) as registry/datasets/customers/versions/2.yaml"
    assert lines[2] == "5 files, 106.1 KiB (csv), 2,000 rows x 10 columns"
    assert lines[3] == "hashed 5 files; stored 5 new blobs (106.1 KiB)"
    assert lines[4].startswith("quality: validated, score 1.00 (threshold 0.95); 22 of 22 checks passed on 2,000 rows")
    assert len(blobs(repo) - before) == 5
    assert git(repo, "log", "-1", "--format=%s") == "Snapshot customers@2"
    spec2 = version_spec(repo, 2)
    assert spec2["fileCount"] == 5 and spec2["rows"] == 2000 and spec2["format"] == "csv"
    assert spec2["quality"]["status"] == "validated"  # type: ignore[index]
    assert spec2["tags"] == {"q": "4"}

    # Version 3: a few rows of one partition change; only that partition's blob is stored again.
    changed = list(ROWS)
    for i in (600, 610, 620):  # rows of part-1
        changed[i] = edit_field(changed[i], 2, "premium" if "premium" not in changed[i] else "basic")
    write_parts(folder, changed)
    before = blobs(repo)
    result = data(repo, "snapshot", str(folder), "--name", "customers")
    assert result.code == 0, result.err
    assert "stored 1 new blob" in result.out
    assert len(blobs(repo) - before) == 1
    spec3 = version_spec(repo, 3)
    files2 = {f["path"]: f["digest"] for f in spec2["files"]}  # type: ignore[attr-defined]
    files3 = {f["path"]: f["digest"] for f in spec3["files"]}  # type: ignore[attr-defined]
    assert [p for p in files3 if files3[p] != files2[p]] == ["part-1.csv"]

    # Diff: one file, three rows (matched on the unique customer_id), plan statistics unchanged in count.
    result = data(repo, "diff", "customers@2", "customers@3")
    assert result.code == 0, result.err
    text = result.out.splitlines()
    assert text[0] == "customers@2 -> customers@3"
    assert text[1] == "files: 0 added, 0 removed, 1 changed, 4 unchanged"
    assert text[2].startswith("  changed  part-1.csv")
    assert text[3] == "rows: 2,000 -> 2,000 (matched on customer_id): 0 added, 0 removed, 3 changed"
    ids = [ROWS[i].split(",")[0] for i in (600, 610, 620)]
    assert [line.split(":")[0] for line in text[4:7]] == [f"  changed customer_id={i!r}" for i in ids]
    assert "schema: unchanged" in text
    as_json = json.loads(data(repo, "diff", "customers@2", "customers@3", "--format", "json").out)
    assert as_json["rows"]["changed"] == 3 and as_json["files"]["unchanged"] == 4

    # Validate both: each is validated and the outcome is in its committed manifest (a validation within the
    # snapshot's second changes nothing, and says so, rather than making an empty commit).
    for number in (2, 3):
        head = git(repo, "rev-parse", "HEAD")
        result = data(repo, "validate", f"customers@{number}")
        assert result.code == 0, result.out + result.err
        assert result.out.splitlines()[0].startswith(f"customers@{number}: validated, score 1.00")
        if git(repo, "rev-parse", "HEAD") != head:
            assert git(repo, "log", "-1", "--format=%s") == f"Validate customers@{number}: validated, score 1.00"
        else:
            assert "already records this outcome; nothing to commit" in result.out
        assert version_spec(repo, number)["quality"]["checkedAt"]  # type: ignore[index]
        assert git(repo, "status", "--porcelain") == ""

    # Version 4 is broken: a duplicated id (critical) and a word in a numeric column. It is registered as
    # quarantined, the notification is written, and the snapshot exits 1.
    broken = list(changed)
    broken[11] = edit_field(broken[11], 0, broken[10].split(",")[0])
    broken[700] = edit_field(broken[700], 6, "unknown")
    write_parts(folder, broken)
    result = data(repo, "snapshot", str(folder), "--name", "customers")
    assert result.code == 1
    out = result.out.splitlines()
    assert out[0] == "registered customers@4 (dataset://customers@4) as registry/datasets/customers/versions/4.yaml"
    assert "  FAIL customer_id.unique [critical]: 2 of 2,000 rows (0.10%) share 1 duplicated value" in out
    assert f"       row 11: customer_id={broken[10].split(',')[0]!r}" in out
    assert "  FAIL age.type [error]: 1 of 2,000 rows (0.05%) are not int values" in out
    assert "       row 701: age='unknown'" in out
    assert any(line.startswith("notify: dataset customers@4 is quarantined") for line in out)
    assert result.err.startswith("error: customers@4 is registered as quarantined")
    quality = version_spec(repo, 4)["quality"]
    assert quality["status"] == "quarantined"  # type: ignore[index]
    assert quality["failed"] == ["customer_id.unique", "age.type"]  # type: ignore[index]
    sent = [json.loads(line) for line in (repo / ".mlops/notifications.jsonl").read_text().splitlines()]
    assert [(n["subject"], n["status"]) for n in sent] == [("customers@4", "quarantined")]
    assert git(repo, "status", "--porcelain") == ""

    # The CI gate: the repository validates until something uses customers@4.
    assert run_mlops("validate", "--repo", str(repo)).code == 0
    pipeline = repo / "pipelines/train-churn/pipeline.yaml"
    pipeline.write_text(pipeline.read_text().replace("dataset://customers@1", "dataset://customers@4"))
    model = repo / "registry/models/churn/versions/2.yaml"
    model.write_text(model.read_text().replace("dataset://customers@1", "dataset://customers@4"))
    result = run_mlops("validate", "--repo", str(repo))
    assert result.code == 1
    problems = [line for line in result.out.splitlines() if "customers@4" in line]
    assert problems == [
        "environments/production.yaml:13:7: spec.deployments[0].version: churn@2 was trained on "
        "dataset://customers@4, which is quarantined; it cannot be deployed beyond development",
        "environments/staging.yaml:13:7: spec.deployments[0].version: churn@2 was trained on "
        "dataset://customers@4, which is quarantined; it cannot be deployed beyond development",
        "pipelines/train-churn/pipeline.yaml:16:9: spec.steps[0].inputs.data: dataset://customers@4 is "
        "quarantined; a pipeline cannot read it: point at a validated version",
    ]

    # Every version's files come back out verified and identical.
    result = data(repo, "get", "customers@3", str(tmp_path / "restored"))
    assert result.code == 0, result.err
    assert result.out.strip() == f"customers@3: 5 files (106.1 KiB) verified and written to {tmp_path / 'restored'}"
    expected = tmp_path / "expected"
    write_parts(expected, changed)
    restored = tmp_path / "restored"
    assert sorted(p.name for p in restored.iterdir()) == sorted(p.name for p in expected.iterdir())
    for part in expected.iterdir():
        assert (restored / part.name).read_bytes() == part.read_bytes()


def test_snapshot_of_registered_content_refills_an_empty_store(example_repo: Path, tmp_path: Path) -> None:
    """A fresh clone has no blobs: `get` says which are missing, and snapshotting the same data puts them back."""
    import shutil

    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "customers.csv").write_text(CSV, encoding="utf-8")
    shutil.rmtree(example_repo / ".mlops" / "store")
    result = data(example_repo, "get", "customers@1", str(tmp_path / "out"))
    assert result.code == 2
    assert result.err.startswith("error: customers@1: 1 of 1 blobs are not in the store file://")
    digest = "sha256:d214a49dbc6294ac42de14139bf2ba5cc9e92ab7da93b497668f596115f72710"
    assert f"(first: customers.csv {digest})" in result.err
    result = data(example_repo, "snapshot", str(folder), "--name", "customers")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0].startswith("unchanged: the same content is registered as customers@1")
    assert "stored 1 new blob (105.7 KiB)" in result.out
    assert git(example_repo, "status", "--porcelain") == ""
    assert data(example_repo, "get", "customers@1", str(tmp_path / "out")).code == 0
    assert (tmp_path / "out" / "customers.csv").read_text(encoding="utf-8") == CSV


def test_files_the_stat_cache_knows_are_stored_again_when_the_store_lost_them(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blobs the pack took while hashing need no check; files nobody read (cache hits) are asked about and re-stored."""
    import shutil

    from mlops.loader import stat_keys

    monkeypatch.setattr(stat_keys, "RACY_NS", 0)  # remember files written just now (see test_data_hashing)
    folder = tmp_path / "tree"
    folder.mkdir()
    for i in range(30):
        (folder / f"part-{i:02d}.bin").write_bytes(f"blob {i}\n".encode() * (i + 1))
    first = data(example_repo, "snapshot", str(folder), "--name", "tree", "--owner", "data@example.com")
    assert first.code == 0, first.err
    assert "hashed 30 files" in first.out and "stored 30 new blobs" in first.out
    (folder / "part-00.bin").write_bytes(b"changed\n")  # read again; the 29 others come from the cache
    shutil.rmtree(example_repo / ".mlops" / "store")
    second = data(example_repo, "snapshot", str(folder), "--name", "tree")
    assert second.code == 0, second.err
    assert "hashed 1 file (29 unchanged, from the stat cache)" in second.out
    assert "stored 30 new blobs" in second.out  # 1 staged while hashed, 29 read again because the store lacked them
    restored = tmp_path / "restored"
    assert data(example_repo, "get", "tree@2", str(restored)).code == 0
    assert sorted(p.name for p in restored.iterdir()) == sorted(p.name for p in folder.iterdir())
    for part in folder.iterdir():
        assert (restored / part.name).read_bytes() == part.read_bytes()
