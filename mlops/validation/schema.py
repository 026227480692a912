"""Parsed data -> typed manifest, or one problem per thing wrong with it (pure).

Pydantic's errors are rewritten into what a person editing YAML needs: which
field, what was expected, what was found, and a guess when a field name is a
typo. Positions are added later by the loader, from the field path.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from mlops.errors import Category, FieldPath, Problem
from mlops.manifests import API_VERSION, KINDS, Manifest
from mlops.manifests.base import PATTERN_PROBLEMS

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "nothing (null)",
}


def yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, Sequence):
        return "list"
    return type(value).__name__


def _yaml_word(value: Any) -> str | None:
    """How YAML spells null and booleans (Python would say None and True)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return None


def _shown(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return f"a {yaml_type(value)}"
    text = _yaml_word(value) or repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_document(path: str, data: Any) -> tuple[Manifest | None, list[Problem]]:
    """Check the envelope, pick the kind's model, validate. Every problem is returned, none raised."""
    if not isinstance(data, dict):
        return None, [
            Problem(
                path,
                f"expected a mapping with apiVersion, kind, metadata and spec; got {_shown(data)}",
                code="not-a-mapping",
            )
        ]
    problems: list[Problem] = []
    api_version = data.get("apiVersion")
    if api_version is None:
        problems.append(Problem(path, f"missing required field 'apiVersion' (use {API_VERSION})", code="missing"))
    elif api_version != API_VERSION:
        problems.append(
            Problem(
                path,
                f"unsupported apiVersion {_shown(api_version)}; expected {API_VERSION!r}",
                field=("apiVersion",),
                code="api-version",
            )
        )
    kind = data.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if kind is None:
        problems.append(Problem(path, f"missing required field 'kind' (one of {', '.join(KINDS)})", code="missing"))
    elif model is None:
        problems.append(
            Problem(
                path,
                f"unknown kind {_shown(kind)}{_suggest(str(kind), KINDS)}; known kinds: {', '.join(KINDS)}",
                field=("kind",),
                code="unknown-kind",
            )
        )
    if problems or model is None:
        return None, problems
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, _translate(path, model, data, exc.errors(include_url=False))


def _translate(path: str, model: type[BaseModel], data: Any, errors: list[ErrorDetails]) -> list[Problem]:
    grouped: dict[FieldPath, list[ErrorDetails]] = {}
    for error in errors:
        field = _data_path(data, error)
        grouped.setdefault(field, []).append(error)
    problems = []
    for field, group in grouped.items():
        message = _message(model, field, group)
        problems.append(Problem(path, message, field=field, category=Category.SCHEMA, code=group[0]["type"]))
    return problems


def _data_path(data: Any, error: ErrorDetails) -> FieldPath:
    """Pydantic's loc, minus the union-branch tags it inserts, as a path into the data."""
    out: list[str | int] = []
    node = data
    loc = list(error["loc"])
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if last and error["type"] == "invalid_key" and isinstance(node, dict):
            # pydantic writes a null key as 'None' and true as 1: point at the key the document really has
            # (a null key cannot be part of a field path, so that problem points at the mapping holding it)
            found = error.get("input")
            out.extend(k for k in node if k is not None and type(k) is type(found) and k == found)
        elif isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif last and error["type"] in ("missing", "extra_forbidden") and isinstance(part, str):
            out.append(part)
        elif isinstance(part, str) and isinstance(node, dict) and error["type"] == "extra_forbidden":
            out.append(part)
            break
        # else: a tag naming a union member or a validator, not a place in the data
    return tuple(out)


def _message(model: type[BaseModel], field: FieldPath, group: list[ErrorDetails]) -> str:
    first = group[0]
    kind = first["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        name = str(field[-1]) if field else "?"
        allowed = _fields_at(model, field[:-1])
        hint = _suggest(name, allowed)
        if not hint and allowed:
            hint = f"; allowed here: {', '.join(sorted(allowed))}"
        return f"unknown field {name!r}{hint}"
    found = first.get("input")
    if kind == "invalid_key" or first["loc"][-1:] == ("[key]",):
        spelled = _yaml_word(found) or str(found)
        return f'key {_shown(found)} is read as {yaml_type(found)}, but keys here are text; quote it: "{spelled}"'
    expected = [_expected(e) for e in group]
    expected = list(dict.fromkeys(e for e in expected if e))
    if all(e["type"] in _TYPE_WORDS for e in group):
        hint = _hint({e["type"] for e in group}, found)
        got = "an empty value (null)" if found is None else f"{_shown(found)} ({yaml_type(found)})"
        return f"expected {_join_or(expected)}, got {got}{hint}"
    return "; ".join(expected) if expected else first["msg"]


def _expected(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    msg = error["msg"]
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "assertion_error":
        return msg.removeprefix("Assertion failed, ")
    found = error.get("input")
    if kind == "string_pattern_mismatch":
        explain = PATTERN_PROBLEMS.get(str((error.get("ctx") or {}).get("pattern")))
        if explain is not None:
            return explain(str(found))
    msg = msg.replace("Input should be", "must be").replace("String should", "must")
    if kind in ("literal_error", "enum") or kind.startswith(("greater", "less", "string_", "too_")):
        return f"{msg}, got {_shown(found)}"
    return msg


_NUMBER_TEXT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


def _hint(wanted: set[str], found: Any) -> str:
    """What to write instead, for the mistakes YAML makes easy (quotes, yes/no, 1e3 for an integer)."""
    if "bool_type" in wanted and isinstance(found, str):
        if found.lower() in ("yes", "no", "on", "off", "y", "n"):
            return "; YAML 1.2 reads yes/no/on/off as text: write true or false"
        if found.lower() in ("true", "false"):
            return f"; write {found.lower()} without quotes"
    numeric = wanted & {"int_type", "int_from_float", "float_type"}
    if numeric and isinstance(found, str) and _NUMBER_TEXT.match(found.strip()):
        return "; write the number without quotes"
    if numeric and isinstance(found, float) and "float_type" not in wanted and math.isfinite(found):
        if found.is_integer():
            return f"; write the whole number {int(found)} (no exponent or decimal point)"
        return "; write a whole number"
    if "string_type" in wanted and isinstance(found, bool | int | float):
        return "; quote the value if you meant text"
    return ""


def _join_or(items: list[str]) -> str:
    if len(items) <= 1:
        return items[0] if items else "something else"
    return ", ".join(items[:-1]) + " or " + items[-1]


def _suggest(name: str, candidates: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(model: type[BaseModel], field: FieldPath) -> list[str]:
    """Field names accepted at a path inside a model, found by walking the annotations."""
    current: Any = model
    for part in field:
        current = _step(current, part)
        if current is None:
            return []
    target = _model_in(current)
    return list(target.model_fields) if target is not None else []


def _step(annotation: Any, part: str | int) -> Any:
    model = _model_in(annotation)
    if model is not None and isinstance(part, str):
        info = model.model_fields.get(part)
        return info.annotation if info is not None else None
    for arg in _args(annotation):
        origin = typing.get_origin(arg)
        if origin in (list, Sequence) and isinstance(part, int):
            return typing.get_args(arg)[0]
        if origin in (dict, Mapping) and isinstance(part, str):
            return typing.get_args(arg)[1]
    return None


def _args(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _args(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_args(arg))
        return out
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for arg in _args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
