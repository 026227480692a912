"""The fast reader of :mod:`mlops.loader.yaml_read`: libyaml (PyYAML's C parser) with a YAML 1.2 core-schema
resolver, which refuses (:class:`~mlops.loader.yaml_read.NeedsCarefulRead`) anything it will not judge.

A module of its own so that PyYAML loads only when a file is parsed: a command whose manifests all come from
the parse cache (or a repository with none) never needs it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from mlops.loader.yaml_read import CORE_SCALARS, IMPLICIT_RESOLVERS, MAX_DEPTH, NeedsCarefulRead, one_line, short_tag


class _Yaml12Resolver(yaml.resolver.BaseResolver):
    pass


for _tag, _pattern, _first in IMPLICIT_RESOLVERS:
    _Yaml12Resolver.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
# The empty plain scalar resolves to null.
_Yaml12Resolver.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])


class _Yaml12Constructor(yaml.constructor.SafeConstructor):
    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise NeedsCarefulRead("not a mapping", *_position(node))
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in mapping
            except TypeError:
                raise NeedsCarefulRead("a list or mapping used as a key", *_position(key_node)) from None
            if duplicate:
                raise NeedsCarefulRead(f"duplicate key {key!r}", *_position(key_node))
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def _core_text(self, node: Any) -> str:
        """The scalar's text, checked against the core schema (an explicit ``!!int abc`` is refused, not guessed)."""
        text = str(self.construct_scalar(node))
        if not CORE_SCALARS[node.tag].match(text):
            mark = node.start_mark
            raise NeedsCarefulRead(f"{text!r} is not a valid {short_tag(node.tag)}", mark.line + 1, mark.column + 1)
        return text

    def construct_yaml_null(self, node: Any) -> None:
        self._core_text(node)

    def construct_yaml_int(self, node: Any) -> int:
        text = self._core_text(node)
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)

    def construct_yaml_float(self, node: Any) -> float:
        text = self._core_text(node).lower()
        if text.endswith(".inf"):
            return float("-inf") if text.startswith("-") else float("inf")
        if text == ".nan":
            return float("nan")
        return float(text)

    def construct_yaml_bool(self, node: Any) -> bool:
        return self._core_text(node).lower() == "true"

    def construct_undefined(self, node: Any) -> Any:
        raise NeedsCarefulRead(f"unsupported tag {node.tag}")


_add_constructor: Any = _Yaml12Constructor.add_constructor
_add_constructor("tag:yaml.org,2002:int", _Yaml12Constructor.construct_yaml_int)
_add_constructor("tag:yaml.org,2002:float", _Yaml12Constructor.construct_yaml_float)
_add_constructor("tag:yaml.org,2002:bool", _Yaml12Constructor.construct_yaml_bool)
_add_constructor("tag:yaml.org,2002:null", _Yaml12Constructor.construct_yaml_null)
# YAML 1.2 has no implicit timestamps, sets, pairs, omaps or binary; explicit tags go to the careful path.
for _tag in (
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:binary",
    "tag:yaml.org,2002:omap",
    "tag:yaml.org,2002:pairs",
    "tag:yaml.org,2002:set",
):
    _add_constructor(_tag, _Yaml12Constructor.construct_undefined)
_add_constructor(None, _Yaml12Constructor.construct_undefined)


def _position(node: Any) -> tuple[int, int]:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


class _PurePythonParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer):
    """What libyaml's CParser does, in Python (for a PyYAML built without libyaml: correct, only slower)."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)


_CParser: Any
try:
    from yaml.cyaml import CParser as _CParser  # type: ignore[attr-defined]
except ImportError:
    _CParser = None
_Parser: Any = _CParser if _CParser is not None else _PurePythonParser


class _FastLoader(_Parser, _Yaml12Constructor, _Yaml12Resolver):  # type: ignore[misc]
    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        _Yaml12Constructor.__init__(self)
        _Yaml12Resolver.__init__(self)


def read_fast(text: str) -> Any:
    loader = _FastLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise NeedsCarefulRead("empty")
        _check_depth(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = one_line(exc.problem or exc.context or "invalid YAML")
        raise NeedsCarefulRead(message, *((mark.line + 1, mark.column + 1) if mark is not None else ())) from None
    except yaml.YAMLError as exc:
        raise NeedsCarefulRead(one_line(str(exc))) from None
    finally:
        loader.dispose()


def _check_depth(root: Any) -> None:
    """Refuse collections nested more than MAX_DEPTH deep (libyaml allows 1000; ruamel would recurse that far)."""
    level = [root]
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise NeedsCarefulRead(f"nested more than {MAX_DEPTH} levels deep", *_position(level[0]))
        deeper = []
        for node in level:
            if node.__class__ is yaml.MappingNode:
                for key, value in node.value:
                    if key.__class__ is not yaml.ScalarNode:
                        deeper.append(key)
                    if value.__class__ is not yaml.ScalarNode:
                        deeper.append(value)
            elif node.__class__ is yaml.SequenceNode:
                deeper.extend(item for item in node.value if item.__class__ is not yaml.ScalarNode)
        level = deeper
        depth += 1


# Characters a manifest may not hold: what YAML 1.2 forbids (controls, surrogates, U+FFFE/U+FFFF), the
# line separators YAML 1.1 (libyaml) and 1.2 (ruamel) read differently (NEL, U+2028, U+2029), and a byte
# order mark anywhere but at the very start (where decoding removes it).
