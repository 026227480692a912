"""Reading manifest bytes into plain Python data with YAML 1.2 semantics.

Two readers, one meaning:

* the fast path (:mod:`mlops.loader.yaml_fast`, loaded on first use) parses
  with libyaml (PyYAML's C parser) and our own YAML 1.2 core-schema resolver,
  so ``no``/``on`` stay strings and ``1e3`` is a float; it refuses anything
  unusual (aliases, duplicate keys, tags, several documents) by raising
  :class:`NeedsCarefulRead` instead of guessing;
* the careful path re-reads such a file with ruamel's round-trip parser, which
  knows positions, and turns whatever is wrong into ``Problem`` values with
  line and column.

Valid files never touch ruamel, which is about 15x slower than libyaml.
"""

from __future__ import annotations

import functools
import re
from typing import Any

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


# The core schema's implicit types: (tag, what a plain scalar must look like, the characters it can start with).
IMPLICIT_RESOLVERS: list[tuple[str, str, str]] = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
]
# What a scalar must look like to carry an explicit !!bool, !!null, !!int or !!float tag.
CORE_SCALARS = {tag: re.compile(pattern) for tag, pattern, _ in IMPLICIT_RESOLVERS}


# Characters YAML 1.2 does not allow in a stream. The full class takes 6 ms to compile, which every command that
# reads manifests would pay at import; ASCII text (nearly every manifest) is checked with the short class.
_FORBIDDEN_ASCII = re.compile("[^\x09\x0a\x0d\x20-\x7e]")


@functools.cache
def _forbidden_chars() -> re.Pattern[str]:
    return re.compile(
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
    forbidden = (_FORBIDDEN_ASCII if text.isascii() else _forbidden_chars()).search(text)
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
    from mlops.loader.yaml_fast import read_fast  # libyaml loads with the first file that needs parsing

    if _fast_path_allowed(text):
        try:
            return read_fast(text), []
        except NeedsCarefulRead:
            pass
    from mlops.loader.yaml_careful import careful_problems  # ruamel only for files the fast reader will not judge

    problems = careful_problems(label, text)
    if problems:
        return None, problems
    try:
        return read_fast(text), []
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
