"""Field paths -> line:column, from ruamel's round-trip data (only for files that have problems)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from mlops.errors import FieldPath, Problem

_UNREADABLE = object()


def locate(problems: Iterable[Problem], read: Callable[[str], bytes]) -> list[Problem]:
    """Give each problem that has a field path but no position the position of that field.

    A problem in a file that can be read but has no such field (a document that is ``null``, say) points at
    the start of the file; only a file that cannot be read at all leaves a problem without a position.
    """
    trees: dict[str, Any] = {}
    out = []
    for problem in problems:
        if problem.line is not None:
            out.append(problem)
            continue
        if problem.path not in trees:
            trees[problem.path] = _round_trip(problem.path, read)
        tree = trees[problem.path]
        position = None if tree is _UNREADABLE else position_of(tree, problem.field) or (1, 1)
        out.append(problem.located(*position) if position else problem)
    return out


def _round_trip(path: str, read: Callable[[str], bytes]) -> Any:
    try:
        data = read(path)
    except (OSError, KeyError):
        return _UNREADABLE
    try:
        return YAML(typ="rt").load(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, YAMLError, RecursionError, ValueError, TypeError, KeyError):
        return None  # the file is there but ruamel cannot place anything in it: point at its start


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
