"""Reading manifest bytes into plain Python data with YAML 1.2 semantics.

Two readers, one meaning:

* the fast path parses with libyaml (PyYAML's C parser) and our own YAML 1.2
  core-schema resolver, so ``no``/``on`` stay strings and ``1e3`` is a float;
  it refuses anything unusual (aliases, duplicate keys, tags, several
  documents) by raising :class:`NeedsCarefulRead` instead of guessing;
* the careful path re-reads such a file with ruamel's round-trip parser, which
  knows positions, and turns whatever is wrong into ``Problem`` values with
  line and column.

Valid files never touch ruamel, which is about 15x slower than libyaml.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, DocumentStartEvent, NodeEvent

from mlops.errors import Category, Problem

MAX_MANIFEST_BYTES = 1024 * 1024
# Bumped whenever the meaning of parsed data could change, so old cache entries are never reused.
PARSER_VERSION = 1


class NeedsCarefulRead(Exception):
    """The fast reader saw something it will not judge; the careful reader will say what."""


class _Yaml12Resolver(yaml.resolver.BaseResolver):
    pass


_IMPLICIT: list[tuple[str, str, str]] = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
]
for _tag, _pattern, _first in _IMPLICIT:
    _Yaml12Resolver.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
# The empty plain scalar resolves to null.
_Yaml12Resolver.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])


class _Yaml12Constructor(yaml.constructor.SafeConstructor):
    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise NeedsCarefulRead("not a mapping")
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in mapping
            except TypeError:
                raise NeedsCarefulRead("unhashable key") from None
            if duplicate:
                raise NeedsCarefulRead("duplicate key")
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int(self, node: Any) -> int:
        text = str(self.construct_scalar(node))
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)

    def construct_yaml_float(self, node: Any) -> float:
        text = str(self.construct_scalar(node)).lower()
        if text.endswith(".inf"):
            return float("-inf") if text.startswith("-") else float("inf")
        if text == ".nan":
            return float("nan")
        return float(text)

    def construct_yaml_bool(self, node: Any) -> bool:
        return str(self.construct_scalar(node)).lower() == "true"

    def construct_undefined(self, node: Any) -> Any:
        raise NeedsCarefulRead(f"unsupported tag {node.tag}")


_add_constructor: Any = _Yaml12Constructor.add_constructor
_add_constructor("tag:yaml.org,2002:int", _Yaml12Constructor.construct_yaml_int)
_add_constructor("tag:yaml.org,2002:float", _Yaml12Constructor.construct_yaml_float)
_add_constructor("tag:yaml.org,2002:bool", _Yaml12Constructor.construct_yaml_bool)
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

_CParser: Any
try:
    from yaml.cyaml import CParser as _CParser  # type: ignore[attr-defined]
except ImportError:  # PyYAML built without libyaml: correct, only slower
    _CParser = None
_Parser: Any = _CParser if _CParser is not None else yaml.parser.Parser


class _FastLoader(_Parser, _Yaml12Constructor, _Yaml12Resolver):  # type: ignore[misc]
    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        if _CParser is None:  # the pure-Python parser also needs a reader, scanner and composer
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.composer.Composer.__init__(self)
        _Yaml12Constructor.__init__(self)
        _Yaml12Resolver.__init__(self)


def _read_fast(text: str) -> Any:
    loader = _FastLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise NeedsCarefulRead("empty")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise NeedsCarefulRead(str(exc)) from None
    finally:
        loader.dispose()


def decode(label: str, data: bytes) -> tuple[str | None, list[Problem]]:
    """Bytes -> text, or the problem that stops us (size, encoding, emptiness)."""
    if len(data) > MAX_MANIFEST_BYTES:
        return None, [
            _unreadable(
                label,
                f"file is {len(data):,} bytes; manifests are limited to {MAX_MANIFEST_BYTES:,} bytes "
                "(large data belongs in the artifact store, referenced by digest)",
            )
        ]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.start + 1].hex()
        return None, [
            _unreadable(label, f"not UTF-8 text: byte 0x{bad} cannot be decoded; save the file as UTF-8").located(
                line, col
            )
        ]
    if not _has_content(text):
        return None, [_unreadable(label, "empty file: expected a manifest with apiVersion, kind, metadata and spec")]
    return text, []


def _has_content(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and stripped not in ("---", "..."):
            return True
    return False


def read_manifest(label: str, data: bytes) -> tuple[Any, list[Problem]]:
    """Parse one manifest file. Returns (data, []) or (None, problems with positions)."""
    text, problems = decode(label, data)
    if text is None:
        return None, problems
    if "&" not in text and "*" not in text:
        try:
            return _read_fast(text), []
        except NeedsCarefulRead:
            pass
    problems = careful_problems(label, text)
    if problems:
        return None, problems
    try:
        return _read_fast(text), []
    except NeedsCarefulRead as exc:  # both parsers must agree on what is valid; say so if they do not
        return None, [_unreadable(label, f"cannot read this YAML: {exc}")]


def _rt() -> YAML:
    rt = YAML(typ="rt")
    rt.allow_duplicate_keys = False
    return rt


def careful_problems(label: str, text: str) -> list[Problem]:
    """Everything that makes a file unreadable as a manifest, with positions, read by ruamel."""
    documents = 0
    try:
        for event in _rt().parse(text):
            if isinstance(event, AliasEvent):
                return [_alias_problem(label, event, f"alias '*{event.anchor}'")]
            if isinstance(event, NodeEvent) and event.anchor is not None:
                return [_alias_problem(label, event, f"anchor '&{event.anchor}'")]
            tag = getattr(event, "tag", None)
            if tag is not None and str(tag) not in _PLAIN_TAGS:
                mark = event.start_mark
                return [
                    _unreadable(label, f"YAML tag {str(tag)!r} is not allowed: manifests hold plain data only").located(
                        mark.line + 1, mark.column + 1
                    )
                ]
            if isinstance(event, DocumentStartEvent):
                documents += 1
                if documents > 1:
                    mark = event.start_mark
                    return [
                        _unreadable(label, "a second YAML document ('---'): put one manifest in each file").located(
                            mark.line + 1, mark.column + 1
                        )
                    ]
        _rt().load(text)
    except MarkedYAMLError as exc:
        return [_syntax_problem(label, text, exc)]
    except YAMLError as exc:
        return [_unreadable(label, f"invalid YAML: {exc}")]
    return []


_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")
) | frozenset(f"!!{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq"))


def _alias_problem(label: str, event: Any, what: str) -> Problem:
    mark = event.start_mark
    return _unreadable(
        label,
        f"YAML {what}: anchors and aliases are not allowed in manifests (they can expand without bound); "
        "write the value out",
    ).located(mark.line + 1, mark.column + 1)


def _syntax_problem(label: str, text: str, exc: MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    problem = (exc.problem or "").strip()
    context = (exc.context or "").strip()
    if "duplicate key" in (problem + " " + context):
        key = _key_at(text, mark)
        message = f"duplicate key {key!r}: each key may appear once in a mapping" if key else "duplicate key"
    elif mark is not None and _tab_near(text, mark.line):
        message = "tab character: YAML indentation must use spaces"
    else:
        message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    return _unreadable(label, message).located(line, col)


def _key_at(text: str, mark: Any) -> str:
    if mark is None:
        return ""
    lines = text.splitlines()
    if mark.line >= len(lines):
        return ""
    rest: str = lines[mark.line][mark.column :]
    return rest.split(":", 1)[0].strip().strip("'\"")


def _tab_near(text: str, line_index: int) -> bool:
    lines = text.splitlines()
    return any("\t" in lines[i] for i in range(max(0, line_index - 1), min(len(lines), line_index + 1)))


def _unreadable(label: str, message: str) -> Problem:
    return Problem(path=label, message=message, category=Category.UNREADABLE, code="unreadable")
