"""What a run records about where it ran, without being asked (UC-13 step 2).

git commit, branch and whether the tree is dirty (with a digest of ``git diff HEAD`` and of the
untracked files' names, so two dirty runs can be told apart); Python, the installed packages as a
lock text ("name==version" per line, sorted) and its digest; host, OS, CPU model and count, GPUs
(``nvidia-smi`` when present); the command line and working directory. Every probe has a short
timeout and a failure of one records ``null`` rather than failing the run.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 10.0
GPU_TIMEOUT_S = 3.0


def package_lock() -> str:
    """Installed distributions as sorted ``name==version`` lines (the first found wins, as import does)."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").strip()
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return "".join(line + "\n" for _, line in sorted(seen.items()))


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    if shutil.which("git") is None:
        return None
    try:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_state(cwd: Path) -> dict[str, Any] | None:
    head = _git(cwd, "rev-parse", "HEAD")
    if head is None or head.returncode != 0:
        return None
    state: dict[str, Any] = {"commit": head.stdout.decode().strip()}
    branch = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD")
    if branch is not None and branch.returncode == 0:
        state["branch"] = branch.stdout.decode().strip()
    status = _git(cwd, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    diff = _git(cwd, "diff", "HEAD", "--binary")
    if status is None or status.returncode != 0 or diff is None or diff.returncode != 0:
        state["dirty"] = None
        return state
    entries = [e for e in status.stdout.split(b"\0") if e]
    untracked = sorted(e[3:] for e in entries if e.startswith(b"?? "))
    state["dirty"] = bool(entries)
    if entries:
        digest = hashlib.sha256(diff.stdout)
        for name in untracked:
            digest.update(b"\0untracked\0" + name)
        state["diff_digest"] = f"sha256:{digest.hexdigest()}"
        state["changed_files"] = len(entries)
    return state


def cpu_model() -> str:
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=GPU_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def capture_environment(cwd: Path, lock: str) -> dict[str, Any]:
    return {
        "git": git_state(cwd),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": {
            "count": lock.count("\n"),
            "digest": "sha256:" + hashlib.sha256(lock.encode()).hexdigest(),
        },
        "host": socket.gethostname(),
        "os": platform.platform(),
        "cpu": {"model": cpu_model(), "count": os.cpu_count()},
        "gpus": gpus(),
        "command": [sys.executable, *sys.argv],
        "cwd": str(cwd),
    }
