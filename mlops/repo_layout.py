"""The top-level folders an mlops repository manages: a leaf module, so that finding a repository imports nothing."""

from __future__ import annotations

MANAGED_ROOTS = ("registry", "pipelines", "environments", "policies")
