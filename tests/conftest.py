"""Shared fixtures: real temporary git repositories and the CLI run in-process through its real entry point."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PARTS = ("registry", "pipelines", "environments", "policies", "schemas")
SEED = ROOT / "examples" / "seed"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in (self.out + self.err).splitlines() if line]


def run_mlops(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """Run the CLI through ``mlops.cli.main.main`` (the real error boundary), capturing output and exit code."""
    out, err = io.StringIO(), io.StringIO()
    old_cwd = Path.cwd()
    old_env = dict(os.environ)
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        if env:
            os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    return Result(code, out.getvalue(), err.getvalue())


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, check=False, capture_output=True, text=True,
        env={**os.environ, "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
             "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "author@example.com"},
    )
    if done.returncode != 0:  # git's own words, so a failure in CI can be understood from its log
        raise AssertionError(f"git {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout.strip()


def make_example_repo(dest: Path, seed_store: bool = True) -> Path:
    """A real git repository holding a copy of this repository's example state, committed on main."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in EXAMPLE_PARTS:
        shutil.copytree(ROOT / part, dest / part)
    (dest / "pyproject.toml").write_text('[tool.mlops]\nstore = ".mlops/store"\n', encoding="utf-8")
    (dest / ".gitignore").write_text(".mlops/\n__pycache__/\n", encoding="utf-8")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "Example state")
    if seed_store:
        result = run_mlops("store", "add", str(SEED), "--repo", str(dest))
        assert result.code == 0, result.err
    return dest


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    return make_example_repo(tmp_path / "state")


@pytest.fixture
def mlops() -> Callable[..., Result]:
    return run_mlops


@pytest.fixture
def write(example_repo: Path) -> Callable[[str, str | bytes], Path]:
    """Write a file into the example repository (text or raw bytes)."""

    def _write(rel: str, content: str | bytes) -> Path:
        path = example_repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write


@pytest.fixture(autouse=True)
def _no_github_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests must not append to a real CI summary or see CI's variables, and must not need a git identity
    configured on the machine (a fresh CI machine has none)."""
    for name in ("GITHUB_STEP_SUMMARY", "MLOPS_STORE", "GITHUB_EVENT_PATH", "GITHUB_TOKEN", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test Author")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "author@example.com")
    yield
