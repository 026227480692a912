from __future__ import annotations

from pathlib import Path

from conftest import Result


def test_example_repository_validates(example_repo: Path, mlops) -> None:
    result: Result = mlops("validate", "--repo", str(example_repo))
    assert result.code == 0, result.out + result.err
    assert result.lines[-1].startswith("ok: 21 manifests: 0 errors")


def test_missing_digest_names_file_field_digest_and_store(tmp_path: Path, mlops) -> None:
    from conftest import make_example_repo

    repo = make_example_repo(tmp_path / "state", seed_store=False)
    result = mlops("validate", "--repo", str(repo))
    assert result.code == 1
    line = next(x for x in result.lines if x.startswith("registry/models/churn/versions/2.yaml"))
    assert line.startswith("registry/models/churn/versions/2.yaml:10:5: spec.artifact.digest: sha256:5e1ed695")
    assert f"is not in the artifact store {(repo / '.mlops' / 'store').resolve().as_uri()}" in line


def test_every_command_is_listed_and_loads(mlops) -> None:
    """Commands are imported on first use (a lazy group): each one listed must resolve to its own command."""
    listing: Result = mlops("--help")
    assert listing.code == 0, listing.err
    names = [line.split()[0] for line in listing.out.split("Commands:\n", 1)[1].splitlines() if line.startswith("  ")]
    assert {"validate", "data", "model", "pipeline", "reconcile", "rollback", "status", "rollout"} <= set(names)
    for name in names:
        result: Result = mlops(name, "--help")
        assert result.code == 0, f"{name}: {result.err}"
        assert result.out.startswith(f"Usage: mlops {name} "), result.out[:200]
