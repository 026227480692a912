"""The filter language of `mlops runs list --filter` (pure: text in, a predicate out).

::

    metrics.auc > 0.9 and params.depth == 6
    (status == finished or status == killed) and not tags.team == 'growth'
    params.model in ('gbm', 'rf') and experiment like 'churn-*' and start_time >= '2026-01-01'

Fields are ``metrics.NAME``, ``params.NAME``, ``tags.NAME`` or a run attribute (``status``,
``project``, ``experiment``, ``user``, ``name``, ``run_id``, ``source``, ``start_time``,
``end_time``, ``duration`` in seconds; ``attributes.status`` works too). Operators: ``==`` (or
``=``), ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in (...)``, ``not in (...)``, ``like 'glob*'``;
combined with ``and``, ``or``, ``not`` and parentheses. Values are numbers, quoted strings,
``true``/``false``, or bare words (read as strings).

Comparisons are numeric when both sides are numbers (a parameter logged as the string ``"6"``
equals ``6``, as MLflow's string parameters should), else textual. A run that lacks a field
never matches a comparison on it. Times accept ISO dates (``'2026-03-01'``, UTC).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlops.errors import UsageError

SECTIONS = ("metrics", "params", "tags", "attributes")
ATTRIBUTES = (
    "status",
    "project",
    "experiment",
    "user",
    "name",
    "run_id",
    "source",
    "start_time",
    "end_time",
    "duration",
)
_TIME_ATTRIBUTES = frozenset({"start_time", "end_time"})
_SECTION_ALIASES = {"metric": "metrics", "param": "params", "tag": "tags", "run": "attributes", "attr": "attributes"}

Value = str | float | bool
RunView = Mapping[str, Mapping[str, object]]  # section -> key -> value
_MISSING = object()

_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<op>==|!=|<=|>=|<|>|=)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_]))
  | (?P<word>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_.:+-]*|\.`[^`]+`)?)
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset({"and", "or", "not", "in", "like", "true", "false"})


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    col: int


@dataclass(frozen=True)
class Field:
    section: str
    key: str

    def __str__(self) -> str:
        return self.key if self.section == "attributes" else f"{self.section}.{self.key}"


Node = tuple[object, ...]


class FilterError(UsageError):
    pass


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise FilterError(f"--filter: column {pos + 1}: unexpected {text[pos]!r} in {text!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            word = match.group()
            if kind == "word" and word.lower() in _KEYWORDS:
                kind = word.lower()
            tokens.append(Token(kind, word, pos + 1))
        pos = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.fields: list[Field] = []

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, token: Token, wanted: str) -> FilterError:
        found = "the end of the filter" if token.kind == "end" else repr(token.text)
        return FilterError(f"--filter: column {token.col}: expected {wanted}, found {found} in {self.text!r}")

    def parse(self) -> Node:
        node = self.or_expr()
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "'and', 'or' or the end")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.peek().kind == "or":
            self.take()
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.peek().kind == "and":
            self.take()
            node = ("and", node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self.peek().kind == "not":
            self.take()
            return ("not", self.not_expr())
        if self.peek().kind == "lparen":
            self.take()
            node = self.or_expr()
            if self.take().kind != "rparen":
                raise self.fail(self.tokens[self.i - 1], "')'")
            return node
        return self.comparison()

    def field(self) -> Field:
        token = self.take()
        if token.kind != "word":
            raise self.fail(token, "a field such as metrics.auc, params.depth, tags.team or status")
        head, dot, key = token.text.partition(".")
        key = key.strip("`")
        section = _SECTION_ALIASES.get(head, head)
        if not dot:
            section, key = "attributes", head
        if section not in SECTIONS:
            raise FilterError(
                f"--filter: column {token.col}: unknown field {token.text!r}; fields are metrics.NAME, params.NAME, "
                f"tags.NAME or one of {', '.join(ATTRIBUTES)}"
            )
        if section == "attributes" and key not in ATTRIBUTES:
            raise FilterError(
                f"--filter: column {token.col}: unknown run attribute {key!r}; attributes are {', '.join(ATTRIBUTES)}"
            )
        found = Field(section, key)
        self.fields.append(found)
        return found

    def value(self) -> Value:
        token = self.take()
        if token.kind == "number":
            return float(token.text)
        if token.kind == "string":
            body = token.text[1:-1]
            return re.sub(r"\\(.)", r"\1", body)
        if token.kind in ("true", "false"):
            return token.kind == "true"
        if token.kind == "word":
            return token.text
        raise self.fail(token, "a value (a number, a quoted string, true or false)")

    def comparison(self) -> Node:
        field = self.field()
        token = self.take()
        if token.kind == "op":
            op = "==" if token.text == "=" else token.text
            return ("cmp", op, field, self.value())
        if token.kind == "like":
            pattern = self.value()
            return ("like", field, re.compile(fnmatch.translate(str(pattern))))
        negate = False
        if token.kind == "not" and self.peek().kind == "in":
            negate = True
            token = self.take()
        if token.kind == "in":
            if self.take().kind != "lparen":
                raise self.fail(self.tokens[self.i - 1], "'(' after 'in'")
            values = [self.value()]
            while self.peek().kind == "comma":
                self.take()
                values.append(self.value())
            if self.take().kind != "rparen":
                raise self.fail(self.tokens[self.i - 1], "',' or ')'")
            node: Node = ("in", field, tuple(values))
            return ("not", node) if negate else node
        raise self.fail(token, f"an operator after {field} (==, !=, <, <=, >, >=, in, not in, like)")


@dataclass(frozen=True)
class RunFilter:
    text: str
    tree: Node
    fields: tuple[Field, ...]

    def matches(self, run: RunView) -> bool:
        return _evaluate(self.tree, run)


def parse_filter(text: str) -> RunFilter:
    """Parse a filter, or raise :class:`FilterError` (a usage error) saying where and what was expected."""
    if not text.strip():
        raise FilterError("--filter: empty filter")
    parser = _Parser(text)
    tree = parser.parse()
    return RunFilter(text, tree, tuple(parser.fields))


def _lookup(run: RunView, field: Field) -> object:
    section = run.get(field.section)
    if section is None:
        return _MISSING
    return section.get(field.key, _MISSING)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _time(value: Value) -> float | None:
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.timestamp()
    return None


_ORDER: dict[str, Callable[[object, object], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def _compare(op: str, field: Field, actual: object, wanted: Value) -> bool:
    if actual is _MISSING or actual is None:
        return False
    if field.key in _TIME_ATTRIBUTES and field.section == "attributes":
        moment = _time(wanted)
        if moment is not None:
            wanted = moment
    if isinstance(wanted, bool) or isinstance(actual, bool):
        if op not in ("==", "!="):
            return False
        same = _as_bool(actual) == _as_bool(wanted)
        return same if op == "==" else not same
    left, right = _number(actual), _number(wanted)
    if left is not None and right is not None:
        return _ORDER[op](left, right)
    return _ORDER[op](str(actual), str(wanted))


def _as_bool(value: object) -> object:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _evaluate(node: Node, run: RunView) -> bool:
    kind = node[0]
    if kind == "and":
        return _evaluate(node[1], run) and _evaluate(node[2], run)  # type: ignore[arg-type]
    if kind == "or":
        return _evaluate(node[1], run) or _evaluate(node[2], run)  # type: ignore[arg-type]
    if kind == "not":
        return not _evaluate(node[1], run)  # type: ignore[arg-type]
    if kind == "cmp":
        _, op, field, wanted = node
        return _compare(op, field, _lookup(run, field), wanted)  # type: ignore[arg-type]
    if kind == "in":
        _, field, values = node
        actual = _lookup(run, field)  # type: ignore[arg-type]
        return any(_compare("==", field, actual, v) for v in values)  # type: ignore[arg-type, attr-defined]
    if kind == "like":
        _, field, pattern = node
        actual = _lookup(run, field)  # type: ignore[arg-type]
        return actual is not _MISSING and actual is not None and bool(pattern.match(str(actual)))  # type: ignore[attr-defined]
    raise AssertionError(f"unknown node {kind!r}")
