"""The careful reader: what makes a file unreadable as a manifest, with positions, read by ruamel.

Only files the fast reader of :mod:`mlops.loader.yaml_read` will not judge alone come here (anchors,
tags, tabs, directives, syntax errors), so a run over valid files never imports ruamel.
"""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    SequenceStartEvent,
)
from ruamel.yaml.reader import ReaderError

from mlops.errors import Problem
from mlops.loader.yaml_read import (
    CORE_SCALARS,
    CORE_TAG,
    MAX_DEPTH,
    line_col,
    one_line,
    short_tag,
    tab_at,
    unreadable,
)


def _rt() -> YAML:
    rt = YAML(typ="rt")
    rt.allow_duplicate_keys = False
    return rt


def careful_problems(label: str, text: str) -> list[Problem]:
    """Everything that makes a file unreadable as a manifest, with positions, read by ruamel."""
    directive = _version_directive_problem(label, text)
    if directive is not None:
        return [directive]
    try:
        problem = _event_problem(label, text)
        if problem is not None:
            return [problem]
        _rt().load(text)
    except MarkedYAMLError as exc:
        return [_syntax_problem(label, text, exc)]
    except ReaderError as exc:
        return [unreadable(label, f"invalid YAML: {exc.reason}").located(*line_col(text, exc.position))]
    except YAMLError as exc:
        return [unreadable(label, f"invalid YAML: {one_line(str(exc))}").located(1, 1)]
    except Exception as exc:  # what ruamel raises on input the checks above let through is still the input's fault
        why = one_line(str(exc)) or type(exc).__name__
        return [unreadable(label, f"cannot read this YAML: {why}").located(1, 1)]
    return []


_YAML_DIRECTIVE = re.compile(r"%YAML[ \t]+(\S*)")


def _version_directive_problem(label: str, text: str) -> Problem | None:
    """A ``%YAML`` directive asking for another version than 1.2 (read before ruamel, which fails on 1.0)."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("---"):
            return None
        match = _YAML_DIRECTIVE.match(line)
        if match is not None and match[1] != "1.2":
            return unreadable(
                label,
                f"%YAML {match[1]} directive: manifests are always read as YAML 1.2 (where no/on/yes are text); "
                "remove the directive",
            ).located(number, 1)
    return None


def _event_problem(label: str, text: str) -> Problem | None:
    """The first thing in the event stream a manifest may not hold: an anchor or alias (checked before anything is
    built, so a "billion laughs" document is refused without expanding), a tag, a key that is a list or mapping,
    a merge key, too deep nesting, a second document."""
    documents = 0
    # One frame per open collection: [is a mapping, the next node is a key].
    stack: list[list[bool]] = []
    for event in _rt().parse(text):
        mark = event.start_mark
        where = (mark.line + 1, mark.column + 1)
        if isinstance(event, AliasEvent):
            return _alias_problem(label, f"alias '*{event.anchor}'").located(*where)
        if isinstance(event, DocumentStartEvent):
            documents += 1
            if documents > 1:
                return unreadable(label, "a second YAML document ('---'): put one manifest in each file").located(
                    *where
                )
        if isinstance(event, CollectionEndEvent):
            stack.pop()
            continue
        if not isinstance(event, NodeEvent):
            continue
        if event.anchor is not None:
            return _alias_problem(label, f"anchor '&{event.anchor}'").located(*where)
        problem = _tag_problem(label, event)
        if problem is not None:
            return problem.located(*where)
        if stack and stack[-1][0]:
            if stack[-1][1] and isinstance(event, CollectionStartEvent):
                what = "mapping" if isinstance(event, MappingStartEvent) else "list"
                return unreadable(label, f"a {what} used as a mapping key: keys must be plain text").located(*where)
            if stack[-1][1] and isinstance(event, ScalarEvent) and event.style is None and event.value == "<<":
                return unreadable(
                    label,
                    "merge key '<<': YAML 1.2 has no merge keys and manifests do not use them; write the keys out",
                ).located(*where)
            stack[-1][1] = not stack[-1][1]
        if isinstance(event, CollectionStartEvent):
            stack.append([isinstance(event, MappingStartEvent), True])
            if len(stack) > MAX_DEPTH:
                return unreadable(
                    label, f"nested more than {MAX_DEPTH} levels deep: manifests are limited to {MAX_DEPTH} levels"
                ).located(*where)
    return None


def _tag_problem(label: str, event: Any) -> Problem | None:
    tag = getattr(event, "tag", None)
    if tag is None:
        return None
    tag = str(tag)
    if tag.startswith("!!"):
        tag = CORE_TAG + tag[2:]
    node = (
        "map" if isinstance(event, MappingStartEvent) else "seq" if isinstance(event, SequenceStartEvent) else "scalar"
    )
    fits = {"map": ("map",), "seq": ("seq",), "scalar": ("str", "int", "float", "bool", "null")}[node]
    if tag not in {CORE_TAG + name for name in ("str", "int", "float", "bool", "null", "map", "seq")}:
        return unreadable(label, f"YAML tag {short_tag(tag)!r} is not allowed: manifests hold plain data only")
    if tag.removeprefix(CORE_TAG) not in fits:
        noun = {"map": "a mapping", "seq": "a list", "scalar": "a single value"}[node]
        return unreadable(label, f"YAML tag {short_tag(tag)!r} cannot be put on {noun}")
    pattern = CORE_SCALARS.get(tag)
    if pattern is not None and not pattern.match(str(event.value)):
        return unreadable(label, f"{str(event.value)!r} is not a valid {short_tag(tag)}")
    return None


def _alias_problem(label: str, what: str) -> Problem:
    return unreadable(
        label,
        f"YAML {what}: anchors and aliases are not allowed in manifests (they can expand without bound); "
        "write the value out",
    )


def _syntax_problem(label: str, text: str, exc: MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    col = mark.column + 1 if mark is not None else 1
    problem = (exc.problem or "").strip()
    context = (exc.context or "").strip()
    tab = tab_at(text, mark.line, mark.column) if mark is not None else None
    if "duplicate key" in (problem + " " + context):
        key = _key_at(text, mark)
        message = f"duplicate key {key!r}: each key may appear once in a mapping" if key else "duplicate key"
    elif tab is not None:
        line, col = tab
        message = "tab character: use spaces to indent and to separate YAML (tabs may appear only in quoted strings)"
    else:
        message = f"invalid YAML: {one_line(problem)}" + (f" ({one_line(context)})" if context else "")
    return unreadable(label, message).located(line, col)


def _key_at(text: str, mark: Any) -> str:
    if mark is None:
        return ""
    lines = text.splitlines()
    if mark.line >= len(lines):
        return ""
    rest: str = lines[mark.line][mark.column :]
    return rest.split(":", 1)[0].strip().strip("'\"")
