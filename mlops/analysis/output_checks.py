"""Does a step's output satisfy the checks its pipeline declares (pure)? UC-05 5a.

The step side summarises each output (rows and columns of a table, the values of a metrics output,
whether a model carries a signature); this module compares the summary with the declared checks and
says, per failed check, which check and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def check_output(name: str, spec: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    """Failures of output ``name`` as sentences naming the check (``[]`` when every check holds)."""
    checks = spec.get("checks") or {}
    failures: list[str] = []
    rows = checks.get("rows")
    if rows:
        count = summary.get("rows")
        if count is None:
            failures.append(f"output {name}: check rows: the output is not a table")
        else:
            failures += _range(f"output {name}: check rows", float(count), rows, "rows")
    columns = checks.get("columns") or []
    if columns:
        have = summary.get("columns")
        if have is None:
            failures.append(f"output {name}: check columns: the output is not a table")
        else:
            missing = [c for c in columns if c not in have]
            if missing:
                failures.append(
                    f"output {name}: check columns: missing {', '.join(missing)} (it has {', '.join(map(str, have))})"
                )
    for metric, bounds in (checks.get("metrics") or {}).items():
        values = summary.get("metrics") or {}
        if metric not in values:
            known = ", ".join(sorted(values)) or "none"
            failures.append(f"output {name}: check metrics.{metric}: no such metric (metrics: {known})")
            continue
        value = values[metric]
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(float(value)):
            failures.append(f"output {name}: check metrics.{metric}: {value!r} is not a number")
            continue
        failures += _range(f"output {name}: check metrics.{metric}", float(value), bounds, metric)
    if checks.get("signature") and not summary.get("signature"):
        failures.append(f"output {name}: check signature: the model carries no input/output signature")
    return failures


def _range(label: str, value: float, bounds: Mapping[str, Any], what: str) -> list[str]:
    low, high = bounds.get("min"), bounds.get("max")
    shown = f"{value:g}"
    if low is not None and value < float(low):
        return [f"{label}: {what} {shown} is below the minimum {float(low):g}"]
    if high is not None and value > float(high):
        return [f"{label}: {what} {shown} is above the maximum {float(high):g}"]
    return []
