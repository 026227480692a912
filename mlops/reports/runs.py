"""Render tracked runs: lists, one run, comparisons (text, JSON, Markdown, self-contained HTML) and project reports.

HTML comparisons embed their charts as inline SVG drawn with matplotlib on the Agg canvas (no pyplot
state, no external file or script), so the page can be mailed or attached as it is (UC-14 7a).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mlops.stores.tracking import RunRecord, RunStatus

if TYPE_CHECKING:  # annotations only: listing runs must not pay for importing scipy
    from matplotlib.figure import Figure

    from mlops.analysis.run_compare import PairTest, RunComparison, Stats
    from mlops.services.projects import ProjectReport
    from mlops.services.runs import RunComparisonView, RunDetail, RunListing

COMPARE_FORMATS = ("text", "json", "markdown", "html")
_SPARK = "▁▂▃▄▅▆▇█"
_PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def _time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.{digits}g}"


def _state(run: RunRecord) -> str:
    return run.status.value + (" (partial)" if run.partial and run.status is not RunStatus.RUNNING else "")


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "project": run.project,
        "experiment": run.experiment,
        "name": run.name,
        "user": run.user,
        "status": run.status.value,
        "partial": run.partial,
        "start_time": _time(run.start_time),
        "end_time": _time(run.end_time) if run.end_time is not None else None,
        "duration_s": run.duration,
        "error": run.error or None,
        "source": run.source,
        "params": run.params,
        "metrics": run.metrics,
        "metric_steps": run.metric_steps,
        "tags": run.tags,
        "inputs": run.inputs,
        "artifacts": [
            {
                "name": a.name,
                "digest": a.digest,
                "size": a.size,
                "stored_as": a.blob,
                "stored_size": a.stored_size,
                "compression": a.compression or None,
            }
            for a in run.artifacts
        ],
        "environment": run.environment,
    }


# --------------------------------------------------------------------------- list and show


def render_run_list(listing: RunListing, output_format: str = "text") -> str:
    if output_format == "json":
        return json.dumps(
            {
                "total": listing.total,
                "shown": len(listing.runs),
                "warnings": listing.warnings,
                "runs": [run_json(r) for r in listing.runs],
            },
            default=str,  # one line: the C encoder, fast for thousands of runs
        )
    lines = [f"warning: {w}" for w in listing.warnings]
    if not listing.runs:
        lines.append("no runs" + (f" match (of {listing.total} in scope)" if listing.total else ""))
        return "\n".join(lines)
    metric_names = sorted({k for r in listing.runs for k in r.metrics})
    shown_metrics = metric_names[:4]
    rows = [["RUN", "PROJECT/EXPERIMENT", "STATE", "STARTED (UTC)", "TIME", "USER", *shown_metrics]]
    for run in listing.runs:
        rows.append(
            [
                run.run_id[:12],
                f"{run.project}/{run.experiment}",
                _state(run),
                _time(run.start_time),
                _duration(run.duration),
                run.user or "-",
                *(_num(run.metrics.get(m)) for m in shown_metrics),
            ]
        )
    lines += _table(rows)
    more = f"; {len(metric_names) - 4} more metric(s) in --format json" if len(metric_names) > 4 else ""
    lines.append(f"{len(listing.runs)} run(s) of {listing.total}{more}")
    return "\n".join(lines)


def sparkline(values: Sequence[float], width: int = 24) -> str:
    if not values:
        return ""
    if len(values) > width:
        picks = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    else:
        picks = list(values)
    low, high = min(picks), max(picks)
    if high == low:
        return _SPARK[3] * len(picks)
    return "".join(_SPARK[int((v - low) / (high - low) * (len(_SPARK) - 1))] for v in picks)


def render_run_detail(detail: RunDetail, output_format: str = "text") -> str:
    run = detail.run
    if output_format == "json":
        data = run_json(run)
        data["history"] = {
            key: [{"step": p.step, "value": p.value, "timestamp": p.timestamp} for p in points]
            for key, points in detail.history.items()
        }
        return json.dumps(data, indent=2, default=str)
    lines = [
        f"run {run.run_id}" + (f" ({run.name})" if run.name else ""),
        f"  project     {run.project} / experiment {run.experiment}",
        f"  state       {_state(run)}" + (f": {run.error}" if run.error else ""),
        f"  user        {run.user or '-'}",
        f"  started     {_time(run.start_time)} UTC, ran {_duration(run.duration)}",
        f"  source      {run.source}",
    ]
    env = run.environment
    git = env.get("git") if isinstance(env.get("git"), dict) else None
    if git:
        dirty = git.get("dirty")
        state = (
            " (dirty: " + str(git.get("diff_digest", "?"))[:19] + ")"
            if dirty
            else (" (clean)" if dirty is False else "")
        )
        lines.append(
            f"  git         {git.get('commit', '?')}{state}" + (f" on {git['branch']}" if git.get("branch") else "")
        )
    python: dict[str, Any] | None = env.get("python") if isinstance(env.get("python"), dict) else None
    packages: dict[str, Any] | None = env.get("packages") if isinstance(env.get("packages"), dict) else None
    if python:
        lines.append(
            f"  python      {python.get('version')}"
            + (f", {packages.get('count')} packages {str(packages.get('digest'))[:19]}" if packages else "")
        )
    if env.get("host"):
        cpu: dict[str, Any] = env["cpu"] if isinstance(env.get("cpu"), dict) else {}
        gpus = env.get("gpus") or []
        lines.append(
            f"  host        {env.get('host')}, {cpu.get('count', '?')} x {cpu.get('model', '?')}"
            + (f", GPUs: {'; '.join(gpus)}" if gpus else ", no GPU")
        )
    if env.get("command"):
        lines.append(f"  command     {' '.join(str(c) for c in env['command'])}")
    if run.params:
        lines.append("params")
        lines += [f"  {k} = {v!r}" for k, v in sorted(run.params.items())]
    if run.metrics:
        lines.append("metrics (last value, at step; curve)")
        for key in sorted(run.metrics):
            curve = [p.value for p in detail.history.get(key, [])]
            lines.append(
                f"  {key} = {_num(run.metrics[key], 6)} @ {run.metric_steps.get(key, 0)}"
                f"  ({run.metric_counts.get(key, len(curve))} points) {sparkline(curve)}"
            )
    if run.tags:
        lines.append("tags")
        lines += [f"  {k} = {v}" for k, v in sorted(run.tags.items())]
    if run.inputs:
        lines.append("inputs")
        lines += [f"  {i}" for i in run.inputs]
    if run.artifacts:
        lines.append("artifacts")
        for a in run.artifacts:
            stored = f", stored {a.compression} {a.stored_size:,} bytes as {a.blob}" if a.compression else ""
            lines.append(f"  {a.name}  {a.size:,} bytes  {a.digest}{stored}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- compare


def _stats_text(stats: Stats) -> str:
    if stats.n < 2:
        return _num(stats.mean)
    return f"{_num(stats.mean)} ± {_num(stats.std, 2)} [{_num(stats.ci_low)}, {_num(stats.ci_high)}]"


def _p(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _verdict(test: PairTest) -> str:
    if test.significant:
        return f"{test.better} better"
    return "no significant difference"


def _side_by_side(result: RunComparison) -> list[list[str]]:
    rows = [["", *(r.run_id[:8] for r in result.runs)]]
    for param in result.params:
        mark = "*" if param in result.differing_params else " "
        rows.append([f"{mark}params.{param}", *(str(r.params.get(param, "-")) for r in result.runs)])
    for metric in result.metrics:
        values = [r.metrics[metric] for r in result.runs]
        best = max(values) if result.higher_is_better[metric] else min(values)
        rows.append(
            [f" metrics.{metric}", *((_num(v) + (" <" if v == best and len(set(values)) > 1 else "")) for v in values)]
        )
    return rows


def comparison_json(view: RunComparisonView) -> dict[str, Any]:
    result = view.comparison
    return {
        "runs": [
            {
                "run_id": r.run_id,
                "experiment": r.experiment,
                "params": dict(r.params),
                "metrics": dict(r.metrics),
                "curves": {k: [[s, v] for s, v in points] for k, points in r.curves.items()},
            }
            for r in result.runs
        ],
        "metrics": list(result.metrics),
        "higher_is_better": dict(result.higher_is_better),
        "differing_params": list(result.differing_params),
        "grouped_by": list(result.grouped_by),
        "alpha": result.alpha,
        "groups": [
            {
                "name": g.name,
                "config": dict(g.config),
                "runs": list(g.run_ids),
                "stats": {
                    m: {
                        "n": s.n,
                        "mean": _finite(s.mean),
                        "std": _finite(s.std),
                        "ci": [_finite(s.ci_low), _finite(s.ci_high)],
                    }
                    for m, s in g.stats.items()
                },
            }
            for g in result.groups
        ],
        "tests": [
            {
                "metric": t.metric,
                "a": t.group_a,
                "b": t.group_b,
                "difference": t.difference,
                "welch": {"t": t.welch_t, "p": _finite(t.welch_p), "p_holm": _finite(t.welch_p_adjusted)},
                "mann_whitney": {
                    "u": t.mann_whitney_u,
                    "p": _finite(t.mann_whitney_p),
                    "p_holm": _finite(t.mann_whitney_p_adjusted),
                },
                "significant": t.significant,
                "better": t.better,
                "note": t.note or None,
            }
            for t in result.tests
        ],
        "notes": list(result.notes),
        "warnings": view.warnings,
    }


def _comparison_text(view: RunComparisonView) -> str:
    result = view.comparison
    lines = [f"warning: {w}" for w in view.warnings]
    lines.append(f"{len(result.runs)} runs, metrics: {', '.join(result.metrics)}  (* params that differ, < best value)")
    lines += ["", *_table(_side_by_side(result))]
    lines += ["", "curves (first to last step)"]
    for metric in result.metrics:
        for run in result.runs:
            curve = [v for _, v in run.curves.get(metric, [])]
            lines.append(f"  {metric:<16} {run.run_id[:8]}  {sparkline(curve)}  ({len(curve)} points)")
    level = f"{result.level:.0%}"
    lines += ["", f"groups by {', '.join(result.grouped_by) or 'configuration'}: mean ± sd [{level} CI]"]
    rows = [["GROUP", "RUNS", *result.metrics]]
    for group in result.groups:
        rows.append([group.name, str(len(group.run_ids)), *(_stats_text(group.stats[m]) for m in result.metrics)])
    lines += ["  " + line for line in _table(rows)]
    if result.tests:
        lines += ["", "tests between groups (Welch t primary, Mann-Whitney U; p Holm-adjusted)"]
        rows = [["METRIC", "A", "B", "B - A", "WELCH p", "MW p", "RESULT"]]
        for test in result.tests:
            rows.append(
                [
                    test.metric,
                    test.group_a,
                    test.group_b,
                    _num(test.difference),
                    _p(test.welch_p_adjusted),
                    _p(test.mann_whitney_p_adjusted),
                    _verdict(test) + (f" ({test.note})" if test.note else ""),
                ]
            )
        lines += ["  " + line for line in _table(rows)]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(_md(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows[1:]]
    return out


def _comparison_markdown(view: RunComparisonView) -> str:
    result = view.comparison
    lines = ["## Run comparison", ""]
    lines += [f"> warning: {_md(w)}" for w in view.warnings]
    rows = _side_by_side(result)
    rows = [[("**" + c.strip("* ") + "**") if c.startswith("*") else c.strip() for c in rows[0]]] + [
        [("**" + row[0].strip("* ") + "**") if row[0].startswith("*") else row[0].strip(), *row[1:]] for row in rows[1:]
    ]
    lines += _md_table(rows)
    lines += ["", f"### Groups (mean ± sd [{result.level:.0%} CI])", ""]
    group_rows = [["group", "runs", *result.metrics]]
    group_rows += [
        [g.name, str(len(g.run_ids)), *(_stats_text(g.stats[m]) for m in result.metrics)] for g in result.groups
    ]
    lines += _md_table(group_rows)
    if result.tests:
        lines += ["", "### Tests (Welch t primary, Mann-Whitney U; Holm-adjusted p)", ""]
        test_rows = [["metric", "A", "B", "B - A", "Welch p", "MW p", "result"]]
        test_rows += [
            [
                t.metric,
                t.group_a,
                t.group_b,
                _num(t.difference),
                _p(t.welch_p_adjusted),
                _p(t.mann_whitney_p_adjusted),
                ("**" + _verdict(t) + "**") if t.significant else _verdict(t),
            ]
            for t in result.tests
        ]
        lines += _md_table(test_rows)
    lines += [""] + [f"<sub>{_md(n)}</sub><br>" for n in result.notes]
    return "\n".join(lines) + "\n"


@contextmanager
def _matplotlib() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(
        {
            "svg.hashsalt": "mlops-runs",
            "svg.fonttype": "path",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        yield


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _curves_svg(result: RunComparison) -> str:
    metrics = [m for m in result.metrics if any(r.curves.get(m) for r in result.runs)]
    if not metrics:
        return ""
    colors = {g.name: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(result.groups)}
    group_of = {run_id: g.name for g in result.groups for run_id in g.run_ids}
    figure = _figure(9, 2.8 * len(metrics))
    axes_list = figure.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for axes, metric in zip(axes_list, metrics, strict=True):
        labelled: set[str] = set()
        for run in result.runs:
            points = run.curves.get(metric, [])
            if not points:
                continue
            group = group_of[run.run_id]
            axes.plot(
                [s for s, _ in points],
                [v for _, v in points],
                color=colors[group],
                alpha=0.8,
                linewidth=1.2,
                label=group if group not in labelled else None,
            )
            labelled.add(group)
        direction = "higher" if result.higher_is_better[metric] else "lower"
        axes.set_title(f"{metric} over steps ({direction} is better)", fontsize=10, loc="left")
        axes.set_xlabel("step")
        axes.grid(alpha=0.25)
        axes.legend(loc="best", fontsize=8, frameon=False)
    return _svg(figure)


def _groups_svg(result: RunComparison) -> str:
    if len(result.groups) < 2:
        return ""
    figure = _figure(9, 0.6 * len(result.groups) * len(result.metrics) + 1.0)
    axes_list = figure.subplots(len(result.metrics), 1, squeeze=False)[:, 0]
    for axes, metric in zip(axes_list, result.metrics, strict=True):
        for i, group in enumerate(result.groups):
            stats = group.stats[metric]
            color = _PALETTE[i % len(_PALETTE)]
            if stats.n >= 2 and math.isfinite(stats.ci_low):
                axes.errorbar(
                    [stats.mean],
                    [i],
                    xerr=[[stats.mean - stats.ci_low], [stats.ci_high - stats.mean]],
                    fmt="o",
                    color=color,
                    capsize=4,
                )
            else:
                axes.plot([stats.mean], [i], "o", color=color)
            values = [r.metrics[metric] for r in result.runs if r.run_id in group.run_ids]
            axes.plot(values, [i] * len(values), "|", color=color, markersize=10, alpha=0.6)
        axes.set_yticks(range(len(result.groups)), [g.name for g in result.groups])
        axes.set_title(
            f"{metric}: group means with {result.level:.0%} CI (ticks: single runs)", fontsize=10, loc="left"
        )
        axes.grid(axis="x", alpha=0.25)
    return _svg(figure)


_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1000px;
color:#222;line-height:1.45;padding:0 1rem}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;
border-bottom:1px solid #ddd}table{border-collapse:collapse;width:100%;font-size:.88rem}th,td{padding:.3rem .5rem;
border-bottom:1px solid #e5e5e5;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.diff td:first-child{font-weight:600}tr.diff{background:#fff8e1}.best{color:#2e7d32;font-weight:600}
.sig{color:#2e7d32;font-weight:600}.small{color:#666;font-size:.85rem}.chart svg{max-width:100%;height:auto}
.warn{background:#fff8e1;border-left:5px solid #f9a825;padding:.4rem 1rem}
"""


def _comparison_html(view: RunComparisonView) -> str:
    result = view.comparison
    e = html.escape
    project = result.runs[0].project
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Run comparison: {e(project)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Run comparison: {e(project)}</h1>",
        f'<p class="small">{len(result.runs)} runs; metrics {e(", ".join(result.metrics))}; '
        f"grouped by {e(', '.join(result.grouped_by) or 'configuration')}</p>",
    ]
    parts += [f'<p class="warn">{e(w)}</p>' for w in view.warnings]
    parts.append("<h2>Side by side</h2><table><thead><tr><th></th>")
    parts += [f"<th>{e(r.run_id[:8])}<br><span class=small>{e(r.experiment)}</span></th>" for r in result.runs]
    parts.append("</tr></thead><tbody>")
    for param in result.params:
        css = ' class="diff"' if param in result.differing_params else ""
        cells = "".join(f"<td>{e(str(r.params.get(param, '-')))}</td>" for r in result.runs)
        parts.append(f"<tr{css}><td>params.{e(param)}</td>{cells}</tr>")
    for metric in result.metrics:
        values = [r.metrics[metric] for r in result.runs]
        best = max(values) if result.higher_is_better[metric] else min(values)
        cells = "".join(
            f'<td class="num{" best" if v == best and len(set(values)) > 1 else ""}">{_num(v)}</td>' for v in values
        )
        parts.append(f"<tr><td>metrics.{e(metric)}</td>{cells}</tr>")
    parts.append("</tbody></table><p class=small>Highlighted rows: params that differ; green: the best value.</p>")
    parts.append("<h2>Groups</h2><table><thead><tr><th>group</th><th>runs</th>")
    parts += [f"<th>{e(m)}: mean ± sd [{result.level:.0%} CI]</th>" for m in result.metrics]
    parts.append("</tr></thead><tbody>")
    for group in result.groups:
        cells = "".join(f"<td class=num>{e(_stats_text(group.stats[m]))}</td>" for m in result.metrics)
        parts.append(f"<tr><td>{e(group.name)}</td><td class=num>{len(group.run_ids)}</td>{cells}</tr>")
    parts.append("</tbody></table>")
    if result.tests:
        parts.append(
            "<h2>Significance</h2><table><thead><tr><th>metric</th><th>A</th><th>B</th><th>B - A</th>"
            "<th>Welch p (Holm)</th><th>Mann-Whitney p (Holm)</th><th>result</th></tr></thead><tbody>"
        )
        for t in result.tests:
            css = ' class="sig"' if t.significant else ""
            parts.append(
                f"<tr><td>{e(t.metric)}</td><td>{e(t.group_a)}</td><td>{e(t.group_b)}</td>"
                f"<td class=num>{_num(t.difference)}</td><td class=num>{_p(t.welch_p_adjusted)}</td>"
                f"<td class=num>{_p(t.mann_whitney_p_adjusted)}</td><td{css}>{e(_verdict(t))}</td></tr>"
            )
        parts.append("</tbody></table>")
    with _matplotlib():
        groups = _groups_svg(result)
        curves = _curves_svg(result)
    if groups:
        parts.append(f'<h2>Group means</h2><div class="chart">{groups}</div>')
    if curves:
        parts.append(f'<h2>Metric curves</h2><div class="chart">{curves}</div>')
    parts += [f'<p class="small">{e(n)}</p>' for n in result.notes]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render_comparison(view: RunComparisonView, output_format: str = "text") -> str:
    if output_format == "json":
        return json.dumps(comparison_json(view), indent=2, default=str)
    if output_format == "markdown":
        return _comparison_markdown(view)
    if output_format == "html":
        return _comparison_html(view)
    return _comparison_text(view)


# --------------------------------------------------------------------------- projects


def project_json(report: ProjectReport) -> dict[str, Any]:
    return {
        "project": report.project,
        "period": report.period,
        "period_start": _time(report.period_start),
        "period_end": _time(report.period_end),
        "runs": report.runs,
        "by_status": report.by_status,
        "by_member": report.by_member,
        "members_without_runs": report.members_without_runs,
        "by_week": [{"week": w, "runs": n, "cpu_hours": h} for w, n, h in report.by_week],
        "budget": [
            {
                "resource": b.resource,
                "used_hours": b.used,
                "limit_hours": b.limit,
                "forecast_hours": b.forecast,
                "forecast_method": b.method,
            }
            for b in report.budget
        ],
        "best": [
            {
                "experiment": b.experiment,
                "metric": b.metric,
                "higher_is_better": b.higher_is_better,
                "run_id": b.run_id,
                "value": b.value,
                "runs": b.runs,
            }
            for b in report.best
        ],
        "notes": report.notes,
    }


def render_project_report(report: ProjectReport, output_format: str = "text") -> str:
    if output_format == "json":
        return json.dumps(project_json(report), indent=2)
    md = output_format == "markdown"
    lines = [f"## Project {report.project}" if md else f"project {report.project}: {report.runs} run(s)"]
    if md:
        lines += ["", f"{report.runs} run(s). {report.description}", ""]
    states = ", ".join(f"{n} {s}" for s, n in report.by_status.items()) or "none"
    lines.append(f"states: {states}")
    budget_rows = [["RESOURCE", "USED (h)", "BUDGET (h)", "SHARE", f"FORECAST FOR THE {report.period.upper()} (h)"]]
    for b in report.budget:
        budget_rows.append(
            [
                b.resource,
                f"{b.used:.1f}",
                "-" if b.limit is None else f"{b.limit:g}",
                "-" if b.share is None else f"{b.share:.0%}",
                f"{b.forecast:.1f}",
            ]
        )
    member_rows = [["MEMBER", "RUNS"], *([m, str(n)] for m, n in report.by_member.items())]
    member_rows += [[m, "0"] for m in report.members_without_runs]
    week_rows = [["WEEK", "RUNS", "CPU HOURS"], *([w, str(n), f"{h:.1f}"] for w, n, h in report.by_week)]
    best_rows = [["EXPERIMENT", "BEST RUN", "METRIC", "VALUE", "RUNS"]]
    best_rows += [
        [
            b.experiment,
            b.run_id[:12],
            f"{b.metric} ({'max' if b.higher_is_better else 'min'})",
            _num(b.value, 6),
            str(b.runs),
        ]
        for b in report.best
    ]
    sections = [
        (
            f"compute this {report.period} ({_time(report.period_start)[:10]} to {_time(report.period_end)[:10]})",
            budget_rows,
        ),
        ("runs per member", member_rows),
        ("runs per week", week_rows),
        ("best run per experiment", best_rows),
    ]
    for title, rows in sections:
        if len(rows) < 2:
            continue
        lines += ["", f"### {title}" if md else f"{title}:", ""] if md else ["", f"{title}:"]
        lines += _md_table(rows) if md else ["  " + line for line in _table(rows)]
    for b in report.budget:
        lines.append(f"forecast ({b.resource}): {b.method}")
    lines += [f"warning: {n}" for n in report.notes]
    if report.needs_review:
        lines.append(f"listed without approval: {', '.join(report.needs_review)}")
    return "\n".join(lines)
