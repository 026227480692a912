"""`mlops init PATH`: a new state repository, committed, that passes `mlops validate` at once."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result

from mlops.services.schemas import generate_schemas

Run = Callable[..., Result]

ENVIRONMENTS = ["development.yaml", "production.yaml", "staging.yaml"]
POLICIES = ["access.yaml", "artifacts.yaml", "promotion-production.yaml", "promotion-staging.yaml", "risk.yaml"]


def plain_git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git with the test's environment as is (no identity injected, unlike conftest.git)."""
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)


@pytest.fixture
def identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A known git identity, from a home folder of our own (not the machine's)."""
    home = tmp_path / "home"
    home.mkdir()
    config = home / ".gitconfig"
    config.write_text("[user]\n\tname = Init Tester\n\temail = init@example.com\n", encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git as on a fresh CI runner: no user.name / user.email anywhere."""
    home = tmp_path / "empty-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)


def files_under(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


@pytest.mark.usefixtures("identity")
def test_init_creates_a_committed_repository(tmp_path: Path, mlops: Run) -> None:
    root = tmp_path / "team-state"
    result = mlops("init", str(root))
    assert result.code == 0, result.err

    # One commit, holding every file written, and nothing left over.
    assert plain_git(root, "rev-list", "--count", "HEAD").stdout.strip() == "1"
    assert plain_git(root, "status", "--porcelain").stdout == ""
    assert plain_git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == "main"
    tracked = plain_git(root, "ls-files").stdout.split()
    assert sorted(tracked) == sorted(files_under(root))
    assert plain_git(root, "log", "-1", "--format=%an <%ae>").stdout.strip() == "Init Tester <init@example.com>"

    # The commit message says what was done.
    message = plain_git(root, "log", "-1", "--format=%B").stdout
    assert message.splitlines()[0] == "Initialize mlops state repository"
    for word in ("mlops init", "development, staging, production", "policies", "schemas", "validate.yml"):
        assert word in message, message

    sha = plain_git(root, "rev-parse", "HEAD").stdout.strip()
    assert result.lines == [
        f"initialized {root} with {len(tracked)} files",
        f"committed {sha[:8]}: Initialize mlops state repository",
        f"next: cd {root} && mlops validate",
    ]

    # The layout.
    for folder in ("registry/models", "registry/datasets", "registry/experiments", "pipelines"):
        assert (root / folder).is_dir(), folder
    assert sorted(p.name for p in (root / "environments").iterdir()) == ENVIRONMENTS
    assert sorted(p.name for p in (root / "policies").iterdir()) == POLICIES
    schemas = {p.name: p.read_text(encoding="utf-8") for p in (root / "schemas").iterdir()}
    assert schemas == generate_schemas()
    workflow = (root / ".github/workflows/validate.yml").read_text(encoding="utf-8")
    assert "mlops validate --base" in workflow

    # .mlops/ (the local store and the parse cache) is ignored.
    assert ".mlops/" in (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert plain_git(root, "check-ignore", "-q", ".mlops/store/sha256/ab/cd").returncode == 0
    assert plain_git(root, "check-ignore", "-q", "registry/models/x/model.yaml").returncode == 1


@pytest.mark.usefixtures("identity")
def test_initialized_repository_validates_at_once(tmp_path: Path, mlops: Run) -> None:
    root = tmp_path / "state"
    assert mlops("init", str(root)).code == 0
    result = mlops("validate", "--repo", str(root))
    assert result.code == 0, result.out
    assert result.lines == ["ok: 8 manifests: 0 errors, 0 warnings"]
    # From inside the folder, the way the CLI's "next:" line says, and against its own first commit.
    result = mlops("validate", "--base", "HEAD", cwd=root)
    assert result.code == 0, result.out
    assert result.lines[0].startswith("no changes since HEAD (")
    # Validating wrote its cache under .mlops/, which git ignores: the tree stays clean.
    assert (root / ".mlops").is_dir()
    assert plain_git(root, "status", "--porcelain").stdout == ""


@pytest.mark.usefixtures("identity")
def test_init_refuses_to_overwrite_and_changes_nothing(tmp_path: Path, mlops: Run) -> None:
    root = tmp_path / "existing"
    (root / "environments").mkdir(parents=True)
    mine = b"# my own staging, hand written\r\nkind: Environment\n"
    (root / "environments/staging.yaml").write_bytes(mine)
    (root / "notes.txt").write_bytes(b"keep me")
    before = files_under(root)

    result = mlops("init", str(root))
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == [
        f"error: {root}: would overwrite environments/staging.yaml; nothing was written (init never replaces files)"
    ]
    assert files_under(root) == before
    assert (root / "environments/staging.yaml").read_bytes() == mine
    assert not (root / ".git").exists()
    assert sorted(p.name for p in root.iterdir()) == ["environments", "notes.txt"]


@pytest.mark.usefixtures("identity")
def test_init_twice_refuses_the_second_time(tmp_path: Path, mlops: Run) -> None:
    root = tmp_path / "state"
    assert mlops("init", str(root)).code == 0
    before = files_under(root)
    head = plain_git(root, "rev-parse", "HEAD").stdout
    result = mlops("init", str(root))
    assert result.code == 2
    assert "would overwrite" in result.err and " and " in result.err and " more;" in result.err
    assert files_under(root) == before
    assert plain_git(root, "rev-parse", "HEAD").stdout == head


def test_init_on_a_file_is_exit_2(tmp_path: Path, mlops: Run) -> None:
    target = tmp_path / "a-file"
    target.write_bytes(b"x")
    result = mlops("init", str(target))
    assert result.code == 2
    assert result.err.splitlines() == [f"error: {target}: exists and is not a folder"]
    assert target.read_bytes() == b"x"


@pytest.mark.usefixtures("identity")
def test_init_into_folder_with_other_files_keeps_them_out_of_the_commit(tmp_path: Path, mlops: Run) -> None:
    root = tmp_path / "state"
    root.mkdir()
    (root / "notes.txt").write_text("not for the commit\n", encoding="utf-8")
    assert mlops("init", str(root)).code == 0
    assert "notes.txt" not in plain_git(root, "ls-files").stdout.split()
    assert plain_git(root, "status", "--porcelain").stdout == "?? notes.txt\n"


@pytest.mark.usefixtures("identity")
def test_no_commit_writes_but_does_not_commit(tmp_path: Path, mlops: Run) -> None:
    root = tmp_path / "state"
    result = mlops("init", str(root), "--no-commit")
    assert result.code == 0, result.err
    assert (root / ".git").is_dir()
    assert plain_git(root, "rev-list", "--all").stdout == ""
    assert not any(line.startswith("committed") for line in result.lines)
    assert "note: --no-commit: files are written but not committed" in result.lines
    untracked = plain_git(root, "status", "--porcelain", "--untracked-files=all").stdout.splitlines()
    assert sorted(line.removeprefix("?? ") for line in untracked) == sorted(files_under(root))
    assert mlops("validate", "--repo", str(root)).code == 0


@pytest.mark.usefixtures("no_identity")
def test_without_git_identity_files_are_written_and_not_committed(tmp_path: Path, mlops: Run) -> None:
    root = tmp_path / "state"
    # git itself agrees there is no identity here (so the test really runs without one).
    probe = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True, check=False)
    assert probe.stdout == ""

    result = mlops("init", str(root))
    assert result.code == 0, result.err
    assert "note: git has no user.name/user.email here: files are written but not committed" in result.lines
    assert not any(line.startswith("committed") for line in result.lines)
    assert plain_git(root, "rev-list", "--all").stdout == ""
    assert sorted(p.name for p in (root / "environments").iterdir()) == ENVIRONMENTS
    assert (root / ".github/workflows/validate.yml").is_file()
    assert mlops("validate", "--repo", str(root)).code == 0
