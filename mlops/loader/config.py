"""Where the tool's settings come from: ``[tool.mlops]`` in the repository's pyproject.toml, then the environment.

Environment variables win, so CI and teams can point the same repository at shared
services (``MLOPS_STORE=s3://bucket/prefix``, ``MLOPS_TRACKING_URI=postgresql://...``) without editing it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mlops.errors import InputError
from mlops.repo_layout import MANAGED_ROOTS

DEFAULT_STORE = ".mlops/store"
DEFAULT_TRACKING = "sqlite:///.mlops/tracking.db"  # relative to the repository


def repo_root(root: Path) -> Path:
    """``root``, once it is known to be an mlops repository (one of the managed folders exists)."""
    if not root.is_dir():
        raise InputError(f"{root}: no such directory")
    if not any((root / top).is_dir() for top in MANAGED_ROOTS):
        raise InputError(
            f"{root}: not an mlops repository (none of {', '.join(d + '/' for d in MANAGED_ROOTS)} exists); "
            "create one with `mlops init PATH`"
        )
    return root


@dataclass(frozen=True)
class Settings:
    root: Path
    store: str
    tracking: str = DEFAULT_TRACKING  # sqlite:///path (relative to root), sqlite:////abs/path or postgresql://...


def load_settings(root: Path) -> Settings:
    table: dict[str, object] = {}
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{pyproject}: cannot read settings: {exc}") from None
        tool = data.get("tool", {})
        found = tool.get("mlops", {}) if isinstance(tool, dict) else {}
        if not isinstance(found, dict):
            raise InputError(f"{pyproject}: [tool.mlops] must be a table")
        table = found
    store = os.environ.get("MLOPS_STORE") or table.get("store") or DEFAULT_STORE
    if not isinstance(store, str):
        raise InputError(f"{pyproject}: [tool.mlops] store must be a string (a folder or s3://bucket/prefix)")
    tracking = os.environ.get("MLOPS_TRACKING_URI") or table.get("tracking") or DEFAULT_TRACKING
    if not isinstance(tracking, str):
        raise InputError(f"{pyproject}: [tool.mlops] tracking must be a string (sqlite:///path or postgresql://...)")
    return Settings(root=root, store=store, tracking=tracking)
