"""The validation cache: unchanged valid blobs are not validated again, and the cache can never hide a problem."""

from __future__ import annotations

import marshal
import shutil
from pathlib import Path

from conftest import Result, run_mlops

from mlops.loader.cache import ParseCache, schema_version


def validate(repo: Path, *args: str) -> Result:
    return run_mlops("validate", "--repo", str(repo), *args)


def facts_file(repo: Path) -> Path:
    [found] = (repo / ".mlops" / "cache").rglob(f"facts-{schema_version()}.marshal")
    return found


def test_second_run_reuses_facts_and_says_the_same(example_repo: Path) -> None:
    cold = validate(example_repo)
    facts = ParseCache.for_repo(example_repo).facts
    assert len(facts) == int(cold.lines[-1].split()[1])  # one entry per valid manifest
    warm = validate(example_repo)
    assert (warm.code, warm.out) == (cold.code, cold.out)


def test_a_damaged_facts_file_is_ignored(example_repo: Path) -> None:
    cold = validate(example_repo)
    facts_file(example_repo).write_bytes(b"garbage")
    again = validate(example_repo)
    assert (again.code, again.out) == (cold.code, cold.out)
    assert len(ParseCache.for_repo(example_repo).facts) > 0  # rebuilt


def test_facts_of_another_format_are_not_trusted(example_repo: Path) -> None:
    validate(example_repo)
    path = facts_file(example_repo)
    cache = ParseCache.for_repo(example_repo)
    poisoned = {blob: (999, *value[1:]) for blob, value in cache.facts.items()}
    data = marshal.dumps(poisoned)
    import zlib

    path.write_bytes(b"mlops-parse-cache\n" + zlib.crc32(data).to_bytes(4, "big") + data)
    (example_repo / "environments" / "production.yaml").write_text(
        (example_repo / "environments" / "production.yaml").read_text().replace("version: 2", "version: 7", 1)
    )
    result = validate(example_repo)
    assert result.code == 1
    assert "model version 'churn@7' does not exist" in result.out


def test_a_cached_valid_blob_in_the_wrong_place_is_still_refused(example_repo: Path) -> None:
    assert validate(example_repo).code == 0
    versions = example_repo / "registry" / "models" / "churn" / "versions"
    shutil.copy(versions / "3.yaml", versions / "9.yaml")  # same bytes, same blob id: its facts are cached
    result = validate(example_repo)
    assert result.code == 1
    assert result.lines[0].startswith("registry/models/churn/versions/9.yaml:")
    assert "version 3 does not match the file name 9.yaml" in result.lines[0]


def test_an_edit_that_breaks_a_cached_file_is_reported(example_repo: Path) -> None:
    assert validate(example_repo).code == 0
    path = example_repo / "registry" / "models" / "churn" / "versions" / "2.yaml"
    path.write_text(path.read_text().replace("auc: 0.7913", "auc: high"))
    result = validate(example_repo)
    assert result.code == 1
    assert "registry/models/churn/versions/2.yaml:15:5: spec.metrics.auc: expected a number, got 'high'" in result.out


def test_cross_file_rules_run_on_cached_facts(example_repo: Path) -> None:
    assert validate(example_repo).code == 0
    (example_repo / "registry" / "datasets" / "customers" / "versions" / "1.yaml").unlink()
    result = validate(example_repo)
    assert result.code == 1
    assert "dataset version 'customers@1' does not exist" in result.out  # from versions whose facts were cached
