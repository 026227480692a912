"""`commit_only`: exactly the given paths are committed, in a new repository and an old one, on a branch or not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import git

from mlops.errors import GitError
from mlops.loader.gitwrite import commit_only


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Commit Tester")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "commit@example.com")


def new_repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "trunk"], cwd=path, check=True)
    return path


@pytest.mark.usefixtures("identity")
def test_the_first_commit_holds_only_the_paths_and_leaves_the_rest_staged(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    (repo / "mine.yaml").write_text("a: 1\n", encoding="utf-8")
    (repo / "theirs.txt").write_text("staged by the user\n", encoding="utf-8")
    git(repo, "add", "theirs.txt")
    sha, branch = commit_only(repo, ["mine.yaml"], "Add mine")
    assert sha == git(repo, "rev-parse", "HEAD") and len(sha) == 40
    assert branch == "trunk"
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == "mine.yaml"
    assert git(repo, "status", "--porcelain") == "A  theirs.txt"


@pytest.mark.usefixtures("identity")
def test_a_later_commit_leaves_other_changes_alone_and_names_no_branch_on_a_detached_head(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    (repo / "a.yaml").write_text("a: 1\n", encoding="utf-8")
    (repo / "b.yaml").write_text("b: 1\n", encoding="utf-8")
    first, _ = commit_only(repo, ["a.yaml", "b.yaml"], "Add a and b")
    git(repo, "checkout", "-q", "--detach")
    (repo / "a.yaml").write_text("a: 2\n", encoding="utf-8")
    (repo / "b.yaml").write_text("b: 2\n", encoding="utf-8")
    sha, branch = commit_only(repo, ["a.yaml"], "Change a")
    assert branch is None
    assert git(repo, "rev-parse", "HEAD^") == first
    assert git(repo, "show", "--name-only", "--format=", sha) == "a.yaml"
    assert git(repo, "status", "--porcelain") == "M b.yaml"


@pytest.mark.usefixtures("identity")
def test_a_commit_git_refuses_is_one_error_naming_the_paths(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    (repo / "a.yaml").write_text("a: 1\n", encoding="utf-8")
    commit_only(repo, ["a.yaml"], "Add a")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'no commits today' >&2\nexit 1\n", encoding="utf-8")
    hook.chmod(0o755)
    (repo / "a.yaml").write_text("a: 2\n", encoding="utf-8")
    with pytest.raises(GitError, match=r"^cannot commit a\.yaml: no commits today$"):
        commit_only(repo, ["a.yaml"], "Change a")
