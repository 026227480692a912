"""Render a :class:`ValidationReport` as text, JSON, GitHub annotations and a Markdown summary."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlops.errors import Problem, Severity
from mlops.services.validate import ValidationReport

if TYPE_CHECKING:
    from mlops.validation.changes import Change


def _counts(report: ValidationReport) -> str:
    errors, warnings = len(report.errors), len(report.warnings)
    return (
        f"{report.documents} manifest{'s' if report.documents != 1 else ''}: "
        f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"
    )


def render_text(report: ValidationReport) -> str:
    lines = [str(p) for p in report.problems]
    if report.base is not None:
        lines.append(f"changes since {report.base}:" if report.changes else f"no changes since {report.base}")
        lines.extend(f"  {c.text}" for c in report.changes)
    verdict = "ok" if not report.errors else "failed"
    lines.append(f"{verdict}: {_counts(report)}")
    return "\n".join(lines)


def to_json(report: ValidationReport) -> dict[str, Any]:
    return {
        "ok": not report.errors,
        "exitCode": int(report.exit_code),
        "repository": str(report.root),
        "manifests": report.documents,
        "base": report.base,
        "store": report.store_url,
        "problems": [_problem_json(p) for p in report.problems],
        "changes": [_change_json(c) for c in report.changes],
        "summary": {"errors": len(report.errors), "warnings": len(report.warnings)},
    }


def render_json(report: ValidationReport) -> str:
    return json.dumps(to_json(report), indent=2)


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "path": problem.path,
        "line": problem.line,
        "col": problem.col,
        "field": problem.field_text or None,
        "severity": problem.severity.value,
        "category": problem.category.value,
        "code": problem.code,
        "message": problem.message,
    }


def _change_json(change: Change) -> dict[str, Any]:
    """Every key always present (null when it does not apply), so consumers need no guessing."""
    return {
        "action": change.action.value,
        "kind": change.kind,
        "key": change.key,
        "path": change.path,
        "text": change.text,
        "environment": change.environment,
        "model": change.model,
        "from_version": change.from_version,
        "to_version": change.to_version,
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(report: ValidationReport) -> str:
    """Workflow commands GitHub turns into annotations on the pull request's files."""
    lines = []
    for problem in report.problems:
        command = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTICE: "notice"}[problem.severity]
        props = [f"file={_escape_property(problem.path)}"]
        if problem.line is not None:
            props += [f"line={problem.line}", f"col={problem.col or 1}"]
        props.append(f"title={_escape_property(problem.code or 'mlops validate')}")
        prefix = f"{problem.field_text}: " if problem.field else ""
        lines.append(f"::{command} {','.join(props)}::{_escape_data(prefix + problem.message)}")
    lines.append(render_text(report).splitlines()[-1])
    return "\n".join(lines)


def render_markdown(report: ValidationReport) -> str:
    icon = "✅" if not report.errors else "❌"
    out = [f"## {icon} mlops validate", "", _counts(report), ""]
    if report.base is not None:
        out += [f"### What this change does (against {report.base})", ""]
        out += [f"- {c.text}" for c in report.changes] or ["- nothing in the managed manifests"]
        out.append("")
    if report.problems:
        out += ["### Problems", "", "| file | where | severity | problem |", "|---|---|---|---|"]
        for p in report.problems:
            where = f"{p.line}:{p.col or 1}" if p.line is not None else ""
            message = (f"`{p.field_text}`: " if p.field else "") + p.message
            out.append(f"| `{p.path}` | {where} | {p.severity.value} | {_cell(message)} |")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    """Text safe inside one Markdown table cell: a pipe would end the cell, a newline the row."""
    return text.replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")
