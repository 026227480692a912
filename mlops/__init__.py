"""mlops: GitOps MLOps. The repository is the platform's state; this package validates and applies it."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {"start_run": "mlops.tracking", "Run": "mlops.tracking"}


def __getattr__(name: str) -> Any:
    """``mlops.start_run`` / ``mlops.Run`` without importing the tracking code (and its dependencies) on
    ``import mlops``, which every CLI command does."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlops' has no attribute {name!r}")
