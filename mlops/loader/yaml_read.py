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

from mlops.errors import Category, Problem

MAX_MANIFEST_BYTES = 1024 * 1024
# Collections nested deeper than this are refused (manifests need fewer than 10; ruamel recurses per level).
MAX_DEPTH = 64
# Bumped whenever the meaning of parsed data could change, so old cache entries are never reused.
PARSER_VERSION = 2

CORE_TAG = "tag:yaml.org,2002:"


class NeedsCarefulRead(Exception):
    """The fast reader saw something it will not judge; the careful reader will say what."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.col = col


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
# What a scalar must look like to carry an explicit !!bool, !!null, !!int or !!float tag.
CORE_SCALARS = {tag: re.compile(pattern) for tag, pattern, _ in _IMPLICIT}
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


def _read_fast(text: str) -> Any:
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
_FORBIDDEN_CHARS = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
_CHAR_NAMES = {
    0: "NUL",
    0x85: "NEL, a line break only in YAML 1.1",
    0x2028: "LINE SEPARATOR",
    0x2029: "PARAGRAPH SEPARATOR",
    0xFEFF: "BYTE ORDER MARK, allowed only at the start of the file",
}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column (in characters) of ``text[index]``, counting line breaks as YAML does."""
    line, start = 1, 0
    for match in _LINE_BREAK.finditer(text, 0, index):
        line, start = line + 1, match.end()
    return line, index - start + 1


def decode(label: str, data: bytes) -> tuple[str | None, list[Problem]]:
    """Bytes -> text, or the problem that stops us (size, encoding, forbidden characters, emptiness)."""
    if len(data) > MAX_MANIFEST_BYTES:
        return None, [
            unreadable(
                label,
                f"file is {len(data):,} bytes; manifests are limited to {MAX_MANIFEST_BYTES:,} bytes "
                "(large data belongs in the artifact store, referenced by digest)",
            ).located(1, 1)
        ]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        before = data[line_start : exc.start]
        if line_start == 0:
            before = before.removeprefix(b"\xef\xbb\xbf")
        col = len(before.decode("utf-8", "replace")) + 1
        bad = data[exc.start : exc.start + 1].hex()
        return None, [
            unreadable(label, f"not UTF-8 text: byte 0x{bad} cannot be decoded; save the file as UTF-8").located(
                line, col
            )
        ]
    forbidden = _FORBIDDEN_CHARS.search(text)
    if forbidden is not None:
        code = ord(forbidden.group())
        name = _CHAR_NAMES.get(code, "a control character" if code < 0xA0 else "a non-character")
        return None, [
            unreadable(
                label,
                f"character U+{code:04X} ({name}) is not allowed in a manifest; remove it, or inside a "
                f'double-quoted string write it as the escape "\\u{code:04x}"',
            ).located(*line_col(text, forbidden.start()))
        ]
    if not _has_content(text):
        return None, [
            unreadable(label, "empty file: expected a manifest with apiVersion, kind, metadata and spec").located(1, 1)
        ]
    return text, []


def _has_content(text: str) -> bool:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and stripped not in ("---", "..."):
            return True
    return False


_CAREFUL_MARKS = ("&", "*", "\t", "\n%", "<<")
# A "!" that can start a tag. libyaml resolves the bare non-specific tag "!" to a string without saying so.
_TAG_START = re.compile(r"(?:^|[\s\[{,])!", re.MULTILINE)


def _fast_path_allowed(text: str) -> bool:
    """Files the fast reader may judge alone. Anchors and aliases, tabs (ruamel, which gives positions, refuses
    some libyaml accepts), merge keys, tags and directives (``%YAML 1.1``) always go to the careful reader."""
    return (
        not any(mark in text for mark in _CAREFUL_MARKS)
        and not text.startswith("%")
        and _TAG_START.search(text) is None
    )


def read_manifest(label: str, data: bytes) -> tuple[Any, list[Problem]]:
    """Parse one manifest file. Returns (data, []) or (None, problems with positions)."""
    text, problems = decode(label, data)
    if text is None:
        return None, problems
    if _fast_path_allowed(text):
        try:
            return _read_fast(text), []
        except NeedsCarefulRead:
            pass
    from mlops.loader.yaml_careful import careful_problems  # ruamel only for files the fast reader will not judge

    problems = careful_problems(label, text)
    if problems:
        return None, problems
    try:
        return _read_fast(text), []
    except NeedsCarefulRead as exc:  # both parsers must agree on what is valid; say so if they do not
        return None, [unreadable(label, f"cannot read this YAML: {exc}").located(exc.line or 1, exc.col or 1)]


def short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(CORE_TAG) if tag.startswith(CORE_TAG) else tag


def tab_at(text: str, line_index: int, column: int) -> tuple[int, int] | None:
    """The tab an error is about: at the error, else the first tab on its line or the line before (1-based)."""
    lines = text.splitlines()
    if line_index < len(lines) and lines[line_index][column : column + 1] == "\t":
        return line_index + 1, column + 1
    for i in (line_index, line_index - 1):
        if 0 <= i < len(lines) and "\t" in lines[i]:
            return i + 1, lines[i].index("\t") + 1
    return None


def one_line(text: str) -> str:
    """A parser's message without its "in <unicode string>, line 3" trailer, on one line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith('in "<')]
    return "; ".join(kept)


def unreadable(label: str, message: str) -> Problem:
    return Problem(path=label, message=message, category=Category.UNREADABLE, code="unreadable")
