"""Field paths -> line:column, from ruamel's round-trip data (only for files that have problems)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from mlops.errors import FieldPath, Problem


def locate(problems: Iterable[Problem], read: Callable[[str], bytes]) -> list[Problem]:
    """Give each problem that has a field path but no position the position of that field."""
    trees: dict[str, Any] = {}
    out = []
    for problem in problems:
        if problem.line is not None:
            out.append(problem)
            continue
        if problem.path not in trees:
            trees[problem.path] = _round_trip(problem.path, read)
        position = position_of(trees[problem.path], problem.field)
        out.append(problem.located(*position) if position else problem)
    return out


def _round_trip(path: str, read: Callable[[str], bytes]) -> Any:
    try:
        return YAML(typ="rt").load(read(path).decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, YAMLError, KeyError):
        return None


def position_of(tree: Any, field: FieldPath) -> tuple[int, int] | None:
    """1-based (line, col) of the deepest part of ``field`` present in the tree.

    A mapping key points at the key (where a person looks for ``auc:``); a missing
    field points at the mapping that should hold it.
    """
    if not isinstance(tree, CommentedMap | CommentedSeq):
        return (1, 1) if tree is not None else None
    node: Any = tree
    best = (tree.lc.line + 1, tree.lc.col + 1)
    for part in field:
        if isinstance(node, CommentedMap) and part in node:
            line, col = node.lc.key(part)
            best = (line + 1, col + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, col = node.lc.item(part)
            best = (line + 1, col + 1)
            node = node[part]
        else:
            break
    return best
