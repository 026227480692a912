"""Writing manifests: new files in our house style, edits that keep the user's comments and layout.

Edits go through ruamel's round-trip mode, so only what changed moves; files we
do not touch stay byte-identical. Every write is atomic.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


def schema_hint(path_in_repo: str, kind: str) -> str:
    depth = path_in_repo.count("/")
    return f"# yaml-language-server: $schema={'../' * depth}schemas/{kind}.schema.json\n"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _flow_leaves(node: Any, in_list: bool = False) -> Any:
    """Short lists of scalars, and small records inside lists, read best on one line, as in the examples."""
    if isinstance(node, dict):
        out = CommentedMap((key, _flow_leaves(value)) for key, value in node.items())
        small_record = len(node) <= 4 and all(
            _is_scalar(v) or (isinstance(v, list) and all(_is_scalar(x) for x in v)) for v in node.values()
        )
        if in_list and node and small_record:
            out.fa.set_flow_style()
        return out
    if isinstance(node, list):
        seq = CommentedSeq(_flow_leaves(v, in_list=True) for v in node)
        if node and (all(_is_scalar(v) for v in node) or all(isinstance(v, list) for v in node)):
            seq.fa.set_flow_style()
        return seq
    return node


def render_manifest(path_in_repo: str, data: dict[str, Any]) -> str:
    buffer = io.StringIO()
    _yaml().dump(_flow_leaves(data), buffer)
    return schema_hint(path_in_repo, str(data.get("kind", ""))) + buffer.getvalue()


def edited_text(old: str, change: Callable[[Any], None]) -> str:
    """Apply ``change`` to the round-trip tree of a manifest's text; comments and layout elsewhere stay."""
    yaml = _yaml()
    tree = yaml.load(old)
    change(tree)
    buffer = io.StringIO()
    yaml.dump(tree, buffer)
    return buffer.getvalue()
