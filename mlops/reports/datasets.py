"""Dataset versions and their quality, rendered: text for people, JSON for tools, Markdown for PRs, HTML with charts.

The quality report (``mlops data validate --format``) comes in all four; the HTML one draws
each column (a histogram for numbers, the most frequent values for text and booleans) with
matplotlib on the Agg canvas as inline SVG, so the file stands alone. Listings, details and
diffs come as text and JSON.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mlops.services.data_versions import human_size

if TYPE_CHECKING:  # names for annotations only: a snapshot's report must not load what listing and diffs need
    from matplotlib.figure import Figure

    from mlops.analysis.quality import CheckResult, QualityResult
    from mlops.analysis.tabular import ColumnProfile
    from mlops.manifests import DatasetVersion
    from mlops.services.data_quality import ValidationRun
    from mlops.services.datasets import DatasetSummary, DiffResult, GetResult, VersionDetail
    from mlops.services.snapshot_result import SnapshotResult

FORMATS = ("text", "json", "markdown", "html")
MAX_LISTED = 50  # files or rows listed in text before "... and N more"
MAX_CHARTS = 60  # columns drawn in the HTML report
COLOR = "#4c72b0"
COLOR_FAIL = "#c62828"
COLOR_PASS = "#2e7d32"


def _table(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def _quality_word(version: DatasetVersion) -> str:
    quality = version.spec.quality
    score = "" if quality.score is None else f" {quality.score:.2f}"
    return f"{quality.status.value}{score}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value) if isinstance(value, str) else str(value)


# ------------------------------------------------------------------------------------------ snapshot / get


def render_snapshot(result: SnapshotResult) -> list[str]:
    lines = []
    if not result.created:
        lines.append(f"unchanged: the same content is registered as {result.key} ({result.uri}); nothing registered")
    else:
        lines.append(f"registered {result.key} ({result.uri}) as {result.path}")
    lines.append(f"fingerprint {result.fingerprint}")
    table = ""
    if result.rows is not None:
        table = f", {result.rows:,} rows x {result.columns} columns"
    fmt = f" ({result.format})" if result.format else ""
    lines.append(f"{result.files:,} file{'s' if result.files != 1 else ''}, {human_size(result.size)}{fmt}{table}")
    cached = result.files - result.hashed
    lines.append(
        f"hashed {result.hashed:,} file{'s' if result.hashed != 1 else ''}"
        + (f" in {result.processes} processes" if result.processes > 1 else "")
        + (f" ({cached:,} unchanged, from the stat cache)" if cached else "")
        + f"; stored {result.stored:,} new blob{'s' if result.stored != 1 else ''} ({human_size(result.stored_bytes)})"
        + (f"; {result.streamed:,} large file(s) hashed while copied into the store" if result.streamed else "")
    )
    if result.quality is not None:
        lines += _quality_headline(result.quality, result.rules)
        lines += _failures_text(result.quality)
    lines += [f"note: {n}" for n in result.notes]
    return lines


def render_get(result: GetResult) -> str:
    files = f"{result.files:,} file{'s' if result.files != 1 else ''}"
    return f"{result.key}: {files} ({human_size(result.size)}) verified and written to {result.dest}"


# ------------------------------------------------------------------------------------------ list / show


def render_list(summaries: list[DatasetSummary]) -> str:
    if not summaries:
        return "no datasets registered"
    rows = [["DATASET", "VERSIONS", "LATEST", "ROWS", "FILES", "SIZE", "QUALITY", "RULES", "OWNER"]]
    for s in summaries:
        latest = s.versions[-1] if s.versions else None
        rows.append(
            [
                s.name,
                ", ".join(str(v.spec.version) for v in s.versions) or "-",
                f"@{latest.spec.version}" if latest else "-",
                f"{latest.spec.rows:,}" if latest and latest.spec.rows is not None else "-",
                f"{latest.spec.fileCount:,}" if latest else "-",
                human_size(latest.spec.size) if latest else "-",
                _quality_word(latest) if latest else "-",
                f"threshold {s.rules.spec.threshold:.2f}" if s.rules else "-",
                s.dataset.spec.owner if s.dataset else "?",
            ]
        )
    return _table(rows)


def render_summary(summary: DatasetSummary) -> str:
    lines = [f"dataset {summary.name}"]
    if summary.dataset is not None:
        spec = summary.dataset.spec
        pii = "yes" if spec.containsPii else "no"
        lines.append(f"  owner: {spec.owner}; class: {spec.dataClass.value}; pii: {pii}")
        if spec.description:
            lines.append(f"  {spec.description}")
    if summary.rules is not None:
        spec_rules = summary.rules.spec
        checks = sum(len(r.checks()) for r in spec_rules.rules)
        lines.append(f"  quality rules: {checks} checks, threshold {spec_rules.threshold:.2f}")
    rows = [["VERSION", "CREATED", "ROWS", "FILES", "SIZE", "QUALITY", "ADDRESS"]]
    for v in summary.versions:
        rows.append(
            [
                str(v.spec.version),
                (v.spec.createdAt or "-")[:10],
                f"{v.spec.rows:,}" if v.spec.rows is not None else "-",
                f"{v.spec.fileCount:,}",
                human_size(v.spec.size),
                _quality_word(v),
                v.uri,
            ]
        )
    return "\n".join(lines) + "\n\n" + _table(rows)


def _stat(stats: Any, name: str) -> str:
    value = getattr(stats, name, None) if stats is not None else None
    return "-" if value is None else _value(value)


def render_detail(detail: VersionDetail) -> str:
    v = detail.version
    spec = v.spec
    lines = [f"{v.key}  ({v.uri})", f"  manifest: {detail.path}"]
    if spec.description:
        lines.append(f"  description: {spec.description}")
    lines.append(f"  fingerprint: {spec.fingerprint.digest} ({spec.fingerprint.algorithm})")
    lines.append(f"  files: {spec.fileCount:,}, {human_size(spec.size)}, format {spec.format or '-'}")
    if spec.filesIndex:
        lines.append(f"  file list: store blob {spec.filesIndex}")
    for f in spec.files[:MAX_LISTED]:
        lines.append(f"    {f.path}  {human_size(f.size)}  {f.digest}")
    if len(spec.files) > MAX_LISTED:
        lines.append(f"    ... and {len(spec.files) - MAX_LISTED:,} more")
    if spec.rows is not None:
        lines.append(f"  rows: {spec.rows:,}")
    if spec.columns:
        rows = [["COLUMN", "TYPE", "NULLS", "DISTINCT", "MIN", "MAX", "MEAN", "STD"]]
        for c in spec.columns:
            s = c.stats
            rows.append(
                [
                    c.name,
                    c.type,
                    str(s.nulls) if s else ("yes" if c.nullable else "no"),
                    str(s.distinct) if s and s.distinct is not None else "-",
                    *(_stat(s, k) for k in ("min", "max", "mean", "std")),
                ]
            )
        lines += ["  " + line for line in _table(rows).splitlines()]
    q = spec.quality
    quality = f"  quality: {q.status.value}"
    if q.score is not None:
        quality += f", score {q.score:.2f}"
    if q.threshold is not None:
        quality += f" (threshold {q.threshold:.2f})"
    if q.rules:
        quality += f", rules {q.rules}"
    if q.checkedAt:
        quality += f", checked {q.checkedAt}"
    lines.append(quality)
    if q.failed:
        lines.append(f"  failed checks: {', '.join(q.failed)}")
    if spec.tags:
        lines.append("  tags: " + ", ".join(f"{k}={x}" for k, x in sorted(spec.tags.items())))
    if spec.createdBy or spec.createdAt:
        lines.append(f"  created: {spec.createdAt or '-'} by {spec.createdBy or '-'}")
    if detail.used_by:
        words = {"ModelVersion": "model", "Pipeline": "pipeline"}
        lines.append("  used by: " + ", ".join(f"{words.get(u.kind, u.kind)} {u.key}" for u in detail.used_by))
    return "\n".join(lines)


def detail_json(detail: VersionDetail) -> str:
    data = detail.version.model_dump(mode="json", exclude_none=True)
    data["uri"] = detail.version.uri
    data["path"] = detail.path
    data["usedBy"] = [{"kind": u.kind, "key": u.key, "path": u.path} for u in detail.used_by]
    return json.dumps(data, indent=2, sort_keys=False)


def list_json(summaries: list[DatasetSummary]) -> str:
    out = []
    for s in summaries:
        out.append(
            {
                "name": s.name,
                "owner": s.dataset.spec.owner if s.dataset else None,
                "threshold": s.rules.spec.threshold if s.rules else None,
                "versions": [
                    {
                        "version": v.spec.version,
                        "uri": v.uri,
                        "fingerprint": v.spec.fingerprint.digest,
                        "files": v.spec.fileCount,
                        "size": v.spec.size,
                        "rows": v.spec.rows,
                        "quality": v.spec.quality.status.value,
                        "score": v.spec.quality.score,
                        "createdAt": v.spec.createdAt,
                    }
                    for v in s.versions
                ],
            }
        )
    return json.dumps(out, indent=2)


# ------------------------------------------------------------------------------------------ diff


def render_diff(result: DiffResult) -> str:
    a, b = result.a, result.b
    lines = [f"{a.key} -> {b.key}"]
    fd = result.files
    lines.append(
        f"files: {len(fd.added):,} added, {len(fd.removed):,} removed, {len(fd.changed):,} changed, "
        f"{fd.unchanged:,} unchanged"
    )
    listed = [("added", f.path, human_size(f.size)) for f in fd.added]
    listed += [("removed", f.path, human_size(f.size)) for f in fd.removed]
    listed += [("changed", new.path, f"{human_size(old.size)} -> {human_size(new.size)}") for old, new in fd.changed]
    for word, path, size in listed[:MAX_LISTED]:
        lines.append(f"  {word:<8} {path}  {size}")
    if len(listed) > MAX_LISTED:
        lines.append(f"  ... and {len(listed) - MAX_LISTED:,} more")
    rd = result.rows
    if rd is not None:
        how = f"matched on {rd.key}" if rd.key else "whole rows compared"
        lines.append(
            f"rows: {rd.before:,} -> {rd.after:,} ({how}): {rd.added:,} added, {rd.removed:,} removed"
            + (f", {rd.changed:,} changed" if rd.key else "")
        )
        for example in rd.examples:
            lines.append("  " + _row_example(example, rd.key))
    schema = result.schema
    if not (schema.added or schema.removed or schema.retyped):
        lines.append("schema: unchanged")
    else:
        lines.append("schema:")
        lines += [f"  + {c.name} ({c.type})" for c in schema.added]
        lines += [f"  - {c.name} ({c.type})" for c in schema.removed]
        lines += [f"  ~ {name}: {was} -> {now}" for name, was, now in schema.retyped]
    if schema.stats:
        lines.append("statistics:")
        for change in schema.stats:
            relative = change.relative
            extra = f" ({relative:+.1%})" if relative is not None else ""
            lines.append(f"  {change.column}.{change.stat}: {_value(change.before)} -> {_value(change.after)}{extra}")
    lines.append(f"quality: {_quality_word(a)} -> {_quality_word(b)}")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _row_example(example: dict[str, Any], key: str | None) -> str:
    change = example.get("change")
    if change == "changed" and key is not None:
        cells = ", ".join(f"{c} {_value(was)} -> {_value(now)}" for c, (was, now) in example["values"].items())
        return f"changed {key}={_value(example[key])}: {cells}"
    fields = {k: v for k, v in example.items() if k not in ("change", "row")}
    shown = ", ".join(f"{k}={_value(v)}" for k, v in list(fields.items())[:6])
    where = f" row {example['row']}" if "row" in example else ""
    return f"{change}{where}: {shown}"


def diff_json(result: DiffResult) -> str:
    fd, schema, rd = result.files, result.schema, result.rows
    data: dict[str, Any] = {
        "a": result.a.key,
        "b": result.b.key,
        "files": {
            "added": [f.model_dump() for f in fd.added],
            "removed": [f.model_dump() for f in fd.removed],
            "changed": [
                {"path": new.path, "before": old.model_dump(), "after": new.model_dump()} for old, new in fd.changed
            ],
            "unchanged": fd.unchanged,
        },
        "schema": {
            "added": [c.model_dump(exclude_none=True) for c in schema.added],
            "removed": [c.model_dump(exclude_none=True) for c in schema.removed],
            "retyped": [{"column": n, "before": w, "after": x} for n, w, x in schema.retyped],
        },
        "statistics": [
            {"column": s.column, "stat": s.stat, "before": s.before, "after": s.after, "relative": s.relative}
            for s in schema.stats
        ],
        "rows": None
        if rd is None
        else {
            "key": rd.key,
            "before": rd.before,
            "after": rd.after,
            "added": rd.added,
            "removed": rd.removed,
            "changed": rd.changed,
            "examples": rd.examples,
        },
        "quality": {"a": result.a.spec.quality.status.value, "b": result.b.spec.quality.status.value},
        "notes": result.notes,
    }
    return json.dumps(data, indent=2, default=str)


# ------------------------------------------------------------------------------------------ quality


def _quality_headline(result: QualityResult, rules: str | None) -> list[str]:
    passed = len(result.checks) - len(result.failed)
    where = f", rules {rules}" if rules else ""
    return [
        f"quality: {result.status.value}, score {result.score:.2f} (threshold {result.threshold:.2f}); "
        f"{passed} of {len(result.checks)} checks passed on {result.rows:,} rows{where}"
    ]


def _failures_text(result: QualityResult) -> list[str]:
    lines = []
    for check in result.failed:
        lines.append(f"  FAIL {check.name} [{check.severity.value}]: {check.message}")
        for example in check.examples:
            cells = ", ".join(f"{k}={_value(v)}" for k, v in example.items() if k != "row")
            lines.append(f"       row {example['row']}: {cells}")
        if check.hint:
            lines.append(f"       fix: {check.hint}")
    return lines


def render_quality(run: ValidationRun, output_format: str) -> str:
    if output_format == "json":
        return quality_json(run)
    if output_format == "markdown":
        return quality_markdown(run)
    if output_format == "html":
        return quality_html(run)
    return quality_text(run)


def quality_text(run: ValidationRun) -> str:
    result = run.result
    lines = [f"{run.target}: " + _quality_headline(result, run.rules)[0].removeprefix("quality: ")]
    if run.previous is not None and run.previous is not result.status:
        lines.append(f"status: {run.previous.value} -> {result.status.value}")
    for check in result.checks:
        if check.passed:
            lines.append(f"  ok   {check.name}: {check.message}")
    lines += _failures_text(result)
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _check_json(check: CheckResult) -> dict[str, Any]:
    return {
        "name": check.name,
        "rule": check.rule,
        "column": check.column,
        "check": check.check,
        "severity": check.severity.value,
        "weight": check.weight,
        "passed": check.passed,
        "failingRows": check.failing,
        "rows": check.total,
        "message": check.message,
        "hint": check.hint,
        "examples": list(check.examples),
    }


def quality_data(run: ValidationRun) -> dict[str, Any]:
    result = run.result
    data: dict[str, Any] = {
        "target": run.target,
        "rules": run.rules,
        "status": result.status.value,
        "previous": run.previous.value if run.previous is not None else None,
        "score": result.score,
        "threshold": result.threshold,
        "rows": result.rows,
        "checks": [_check_json(c) for c in result.checks],
        "notes": list(result.notes),
    }
    if result.profile is not None:
        data["columns"] = [
            {
                "name": c.name,
                "type": c.type,
                "nulls": c.nulls,
                "distinct": c.distinct,
                "min": c.min,
                "max": c.max,
                "mean": c.mean,
                "std": c.std,
            }
            for c in result.profile.columns
        ]
    if run.publication is not None:
        data["commit"] = run.publication.commit
    data["notifications"] = [{"target": d.target, "ok": d.ok, "error": d.error} for d in run.deliveries]
    return data


def quality_json(run: ValidationRun) -> str:
    return json.dumps(quality_data(run), indent=2, default=str)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def quality_markdown(run: ValidationRun) -> str:
    result = run.result
    icon = {"validated": "✅", "failed": "❌", "quarantined": "⛔"}.get(result.status.value, "")
    lines = [
        f"### {icon} Data quality: `{run.target}` is **{result.status.value}**",
        "",
        f"Score **{result.score:.2f}** (threshold {result.threshold:.2f}) on {result.rows:,} rows; "
        f"rules `{run.rules}`.",
        "",
        "| check | severity | result | failing rows | details |",
        "|---|---|---|---:|---|",
    ]
    for check in result.checks:
        word = "pass" if check.passed else "**FAIL**"
        lines.append(
            f"| `{_md(check.name)}` | {check.severity.value} | {word} | {check.failing:,} | {_md(check.message)} |"
        )
    for check in result.failed:
        if not check.examples and not check.hint:
            continue
        summary = f"<code>{html.escape(check.name)}</code>: {html.escape(check.message)}"
        lines += ["", f"<details><summary>{summary}</summary>", ""]
        if check.examples:
            columns = list(check.examples[0])
            lines.append("| " + " | ".join(columns) + " |")
            lines.append("|" + "---|" * len(columns))
            for example in check.examples:
                lines.append("| " + " | ".join(_md(_value(example.get(c))) for c in columns) + " |")
        if check.hint:
            lines += ["", f"Fix: {_md(check.hint)}"]
        lines += ["", "</details>"]
    for note in result.notes:
        lines += ["", f"> {_md(note)}"]
    return "\n".join(lines) + "\n"


@contextmanager
def _deterministic_matplotlib() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(
        {
            "svg.hashsalt": "mlops-data",
            "svg.fonttype": "path",
            "font.size": 8,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        yield


def _figure() -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2, 2.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _identifier_like(column: ColumnProfile) -> bool:
    """Mostly distinct text (ids, names): a chart of its "most frequent" values would show noise."""
    present = column.rows - column.nulls
    return column.distinct is not None and present > 0 and column.distinct > max(50, present // 2)


def _column_chart(column: ColumnProfile, failing: bool) -> str | None:
    color = COLOR_FAIL if failing else COLOR
    figure = _figure()
    axes = figure.subplots()
    if column.histogram:
        lows = [b[0] for b in column.histogram]
        widths = [max(b[1] - b[0], 1e-12) for b in column.histogram]
        counts = [b[2] for b in column.histogram]
        axes.bar(lows, counts, width=widths, align="edge", color=color, edgecolor="white", linewidth=0.5)
        axes.set_ylabel("rows")
    elif column.top and not _identifier_like(column):
        labels = [label if len(label) <= 18 else label[:17] + "…" for label, _ in column.top][::-1]
        counts = [count for _, count in column.top][::-1]
        axes.barh(range(len(labels)), counts, color=color)
        axes.set_yticks(range(len(labels)), labels)
        axes.set_xlabel("rows")
    else:
        return None
    axes.grid(alpha=0.25)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1040px;
color:#222;line-height:1.45;padding:0 1rem}h1{font-size:1.4rem;margin-bottom:.2rem}
h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}.sub{color:#555;margin-top:0}
.verdict{font-size:1.1rem;font-weight:600;padding:.7rem 1rem;border-radius:6px;background:#f1f5fb;
border-left:5px solid #4c72b0}.verdict.failed,.verdict.quarantined{background:#fdecea;border-left-color:#c62828}
table{border-collapse:collapse;width:100%;font-size:.88rem}th,td{padding:.3rem .5rem;border-bottom:1px solid #e5e5e5;
text-align:left;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.pass{color:#2e7d32;font-weight:600}.fail{color:#c62828;font-weight:600}.small{color:#666;font-size:.85rem}
.columns{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:1rem}
.column{border:1px solid #e5e5e5;border-radius:6px;padding:.5rem}.column svg{max-width:100%;height:auto}
.column.failing{border-color:#c62828}
"""


def quality_html(run: ValidationRun) -> str:
    result = run.result
    e = html.escape
    status = result.status.value
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Data quality: {e(run.target)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Data quality: {e(run.target)}</h1>",
        f'<p class="sub">rules {e(run.rules)}; {result.rows:,} rows</p>',
        f'<p class="verdict {e(status)}">{e(status)}: score {result.score:.2f} '
        f"(threshold {result.threshold:.2f}); {len(result.checks) - len(result.failed)} of "
        f"{len(result.checks)} checks passed</p>",
        "<h2>Checks</h2><table><thead><tr><th>check</th><th>severity</th><th>weight</th><th>result</th>"
        "<th>failing rows</th><th>details</th></tr></thead><tbody>",
    ]
    for check in result.checks:
        word = '<span class="pass">pass</span>' if check.passed else '<span class="fail">FAIL</span>'
        details = e(check.message)
        if check.hint:
            details += f'<br><span class="small">fix: {e(check.hint)}</span>'
        if check.examples:
            shown = "; ".join(
                f"row {x['row']}: " + ", ".join(f"{k}={_value(v)}" for k, v in x.items() if k != "row")
                for x in check.examples
            )
            details += f'<br><span class="small">{e(shown)}</span>'
        parts.append(
            f"<tr><td><code>{e(check.name)}</code></td><td>{e(check.severity.value)}</td>"
            f"<td class=num>{check.weight:g}</td><td>{word}</td><td class=num>{check.failing:,}</td>"
            f"<td>{details}</td></tr>"
        )
    parts.append("</tbody></table>")
    if result.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in result.notes) + "</ul>")
    if result.profile is not None:
        failing_columns = {c.column for c in result.failed if c.column}
        parts.append("<h2>Columns</h2>")
        columns = result.profile.columns
        if len(columns) > MAX_CHARTS:
            parts.append(f'<p class="small">the first {MAX_CHARTS} of {len(columns)} columns are drawn</p>')
        parts.append('<div class="columns">')
        with _deterministic_matplotlib():
            for column in columns[:MAX_CHARTS]:
                failing = column.name in failing_columns
                chart = _column_chart(column, failing)
                if chart is None and _identifier_like(column):
                    chart = f'<p class="small">{column.distinct:,} distinct values (an identifier?): not drawn</p>'
                stats = [
                    ("type", column.type),
                    ("missing", f"{column.nulls:,} ({100 * column.null_ratio:.1f}%)"),
                    ("distinct", "-" if column.distinct is None else f"{column.distinct:,}"),
                ]
                stats += [(k, _stat(column, k)) for k in ("min", "max", "mean", "std") if _stat(column, k) != "-"]
                table = "".join(f"<tr><th>{e(k)}</th><td class=num>{e(str(v))}</td></tr>" for k, v in stats)
                css = "column failing" if failing else "column"
                parts.append(
                    f'<div class="{css}"><strong>{e(column.name)}</strong>{chart or ""}<table>{table}</table></div>'
                )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
