"""Does a pipeline's step code exist and import? (UC-04: callables that do not import.)

Two depths. :func:`static_problems` reads the step modules without running them (``mlops validate``
in CI: the module file exists, parses, and defines the function at top level). :func:`import_problems`
imports them in a child Python, as the cluster would (``mlops pipeline validate``): it catches a missing
package or an error at import time, and leaves this process clean.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

IMPORT_TIMEOUT_S = 120

_CHILD = r"""
import importlib, json, sys, traceback
sys.path.insert(0, sys.argv[1])
out = {}
for target in json.loads(sys.argv[2]):
    module, _, name = target.partition(":")
    try:
        found = getattr(importlib.import_module(module), name, None)
        out[target] = "" if callable(found) else f"{module} has no function {name}"
    except BaseException as exc:
        out[target] = f"importing {module} failed: {type(exc).__name__}: {exc}".splitlines()[0]
print(json.dumps(out))
"""


def module_candidates(folder: Path, module: str) -> tuple[Path, Path]:
    """The two places ``module`` may live in the pipeline's folder: a module, then a package."""
    base = folder.joinpath(*module.split("."))
    return base.with_suffix(".py"), base / "__init__.py"


def module_file(folder: Path, module: str) -> Path | None:
    """Where ``module`` lives in the pipeline's folder (a module or a package), or None."""
    for candidate in module_candidates(folder, module):
        if candidate.is_file():
            return candidate
    return None


def static_problem(folder: Path, target: str, parsed: dict[Path, set[str] | str] | None = None) -> str | None:
    """Why ``module:function`` cannot be called, judged from the source alone (None: it looks callable).

    ``parsed`` carries each module's top-level names (or why it cannot be read) between the calls for one
    pipeline: a pipeline's steps usually share one module, which need not be parsed once per step.
    """
    module, _, name = target.partition(":")
    path = module_file(folder, module)
    if path is None:
        if installed(module):
            return None  # an installed package's function: the import check can tell
        return f"{target}: no module {module} in {folder.name}/ (expected {module.replace('.', '/')}.py)"
    parsed = {} if parsed is None else parsed
    if path not in parsed:
        parsed[path] = _module_names(path)
    defined = parsed[path]
    if isinstance(defined, str):
        return f"{target}: {defined}"
    if name not in defined:
        functions = sorted(n for n in defined if not n.startswith("_"))
        return f"{target}: {path.name} defines no {name} (it defines {', '.join(functions) or 'nothing'})"
    return None


def _module_names(path: Path) -> set[str] | str:
    """The names a module defines at top level, or why it cannot be parsed."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        return f"{path.name}:{exc.lineno}: syntax error: {exc.msg}"
    except OSError as exc:
        return f"cannot read {path.name}: {exc.strerror}"
    return _top_level_names(tree.body)


def _top_level_names(body: Iterable[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try):
            names |= _top_level_names(node.body)
    return names


def installed(module: str) -> bool:
    """Whether an installed package provides ``module`` (its top-level name)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def import_problems(folder: Path, targets: list[str]) -> dict[str, str]:
    """Import each target in a child Python with the pipeline's folder on the path; target -> why it failed."""
    if not targets:
        return {}
    try:
        done = subprocess.run(
            # -B: no __pycache__ in the pipeline's folder (it would make the folder look uncommitted)
            [sys.executable, "-B", "-c", _CHILD, str(folder), json.dumps(sorted(set(targets)))],
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT_S,
            check=False,
            cwd=folder,
        )
    except subprocess.TimeoutExpired:
        return dict.fromkeys(targets, f"importing took more than {IMPORT_TIMEOUT_S} s")
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return dict.fromkeys(targets, f"the import check failed: {tail}")
    return {target: why for target, why in result.items() if why}
