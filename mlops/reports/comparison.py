"""Render a model comparison (UC-03) as text, JSON, Markdown, a self-contained HTML report, or a PDF.

Charts are drawn with matplotlib on the Agg canvas, without pyplot (no global figure state):
ROC and precision-recall curves of both models for classifiers, residual plots for regressors,
and a forest plot of every metric's difference B - A with its confidence interval. HTML embeds
them as inline SVG (no external file, script or font), so the report can be mailed or attached as
it is. SVG ids are salted with a constant and dates are left out, so the same comparison renders
to the same bytes.
"""

from __future__ import annotations

import html
import io
import json
import math
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.analysis.compare import (
    METRICS,
    ComparisonResult,
    MetricComparison,
    SignificanceTest,
    average_precision,
    format_p,
    precision_recall_points,
    roc_points,
)
from mlops.manifests.common import Task
from mlops.services.compare import ComparisonRun

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = ("text", "json", "markdown", "html", "pdf")
COLOR_A = "#4c72b0"
COLOR_B = "#dd8452"
COLOR_NEUTRAL = "#7f7f7f"
COLOR_BETTER = "#2e7d32"
COLOR_WORSE = "#c62828"
# Residual plots draw at most this many points (evenly spaced rows), so big evaluation sets stay light.
MAX_SCATTER_POINTS = 2000
MULTIPLE_TESTING_NOTE = "p-values are per metric, not adjusted for multiple comparisons"


# --------------------------------------------------------------------------- shared wording


def _decimals(metric: MetricComparison) -> int:
    """One precision per metric, from the size of its values, so values, difference and CI line up."""
    magnitude = max(abs(metric.value_a), abs(metric.value_b)) if math.isfinite(metric.value_a + metric.value_b) else 0
    return 1 if magnitude >= 100 else 3 if magnitude >= 10 else 4


def _number(value: float, decimals: int = 4, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:{'+' if signed else ''},.{decimals}f}"


def _cells(metric: MetricComparison) -> tuple[str, str, str, str]:
    """Value of A, value of B, difference and CI, formatted alike."""
    places = _decimals(metric)
    return (
        _number(metric.value_a, places),
        _number(metric.value_b, places),
        _number(metric.difference, places, signed=True),
        f"[{_number(metric.ci.low, places, True)}, {_number(metric.ci.high, places, True)}]",
    )


def _p_cell(p_value: float) -> str:
    return format_p(p_value).removeprefix("p").removeprefix("=")


def _winner(result: ComparisonResult, metric: MetricComparison) -> str:
    if metric.better is None:
        return "no significant difference"
    return f"{result.ref_of(metric.better)} better"


def _title(run: ComparisonRun) -> str:
    result = run.result
    return f"{result.a.ref} (A) vs {result.b.ref} (B)"


def _subtitle(run: ComparisonRun) -> str:
    result = run.result
    task = result.task.value if result.task is not None else "tasks differ"
    return f"{task}, {result.rows:,} rows of {run.data.name}, label '{run.label}'"


def _method_note(result: ComparisonResult) -> str:
    parts = []
    if any(m.metric == "auc" for m in result.metrics):
        parts.append("auc: DeLong's test and CI")
    if any(m.metric == "accuracy" for m in result.metrics):
        parts.append("accuracy: McNemar's test")
    parts.append(f"other CIs: paired bootstrap, {result.resamples:,} resamples, seed {result.seed}")
    return "; ".join(parts)


def _level(result: ComparisonResult) -> str:
    return f"{1 - result.alpha:.0%}"


# --------------------------------------------------------------------------- text


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def render_text(run: ComparisonRun) -> str:
    result = run.result
    lines = [f"{_title(run)}: {_subtitle(run)}"]
    if run.features:
        lines.append(f"features: {', '.join(run.features)} (from {run.features_from})")
    if result.metrics:
        rows = [["METRIC", "A", "B", "B - A", f"{_level(result)} CI", "TEST", "P", "RESULT"]]
        for metric in result.metrics:
            rows.append(
                [
                    metric.metric,
                    *_cells(metric),
                    metric.test.name,
                    _p_cell(metric.test.p_value),
                    _winner(result, metric),
                ]
            )
            for other in metric.other_tests:
                rows.append(["", "", "", "", "", other.name, _p_cell(other.p_value), ""])
        lines += ["", _table(rows), ""]
    lines.append(f"verdict: {result.verdict}")
    lines += [f"warning: {w}" for w in result.warnings]
    if result.metrics:
        lines.append(f"note: {MULTIPLE_TESTING_NOTE}; {_method_note(result)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- JSON


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _test_json(test: SignificanceTest) -> dict[str, Any]:
    return {"name": test.name, "statistic": _finite(test.statistic), "pValue": test.p_value, "detail": test.detail}


def _metric_json(result: ComparisonResult, metric: MetricComparison) -> dict[str, Any]:
    return {
        "metric": metric.metric,
        "higherIsBetter": metric.higher_is_better,
        "a": _finite(metric.value_a),
        "b": _finite(metric.value_b),
        "difference": _finite(metric.difference),
        "ci": {
            "low": _finite(metric.ci.low),
            "high": _finite(metric.ci.high),
            "level": metric.ci.level,
            "method": metric.ci.method,
        },
        "test": _test_json(metric.test),
        "otherTests": [_test_json(t) for t in metric.other_tests],
        "better": result.ref_of(metric.better) if metric.better else None,
        "verdict": metric.verdict,
    }


def to_json(run: ComparisonRun) -> dict[str, Any]:
    result = run.result
    return {
        "a": _side_json(result, "A"),
        "b": _side_json(result, "B"),
        "task": result.task.value if result.task is not None else None,
        "comparable": result.comparable,
        "data": {"path": str(run.data), "digest": run.data_digest, "rows": result.rows},
        "label": run.label,
        "features": list(run.features),
        "featuresFrom": run.features_from,
        "alpha": result.alpha,
        "bootstrap": {"resamples": result.resamples, "seed": result.seed},
        "metrics": [_metric_json(result, m) for m in result.metrics],
        "verdict": result.verdict,
        "warnings": list(result.warnings),
        "notes": [MULTIPLE_TESTING_NOTE] if result.metrics else [],
    }


def _side_json(result: ComparisonResult, side: str) -> dict[str, Any]:
    model = result.a if side == "A" else result.b
    return {
        "ref": model.ref,
        "task": model.task.value,
        "format": model.artifact_format,
        "registeredMetrics": dict(model.registered_metrics),
    }


def render_json(run: ComparisonRun) -> str:
    return json.dumps(to_json(run), indent=2, allow_nan=False)


# --------------------------------------------------------------------------- Markdown


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(run: ComparisonRun) -> str:
    result = run.result
    lines = [f"### Model comparison: {_title(run)}", "", f"{_subtitle(run)}.", "", f"**{_md(result.verdict)}**", ""]
    if result.metrics:
        lines += [
            f"| metric | A | B | B - A | {_level(result)} CI | test | p | result |",
            "|---|---:|---:|---:|---|---|---:|---|",
        ]
        for metric in result.metrics:
            tests = "<br>".join(f"{_md(t.name)} ({format_p(t.p_value)})" for t in metric.other_tests)
            test_cell = _md(metric.test.name) + (f"<br>{tests}" if tests else "")
            value_a, value_b, difference, interval = _cells(metric)
            lines.append(
                f"| {metric.metric} | {value_a} | {value_b} | {difference} | {interval} | {test_cell} | "
                f"{_p_cell(metric.test.p_value)} | {_md(_winner(result, metric))} |"
            )
        lines.append("")
    if result.warnings:
        lines += ["**Warnings**", ""] + [f"- {_md(w)}" for w in result.warnings] + [""]
    details = []
    if run.features:
        details.append(f"features: {', '.join(run.features)} (from {run.features_from})")
    details.append(f"data: `{run.data.name}` ({run.data_digest})")
    if result.metrics:
        details += [MULTIPLE_TESTING_NOTE, _method_note(result)]
    lines += [f"<sub>{_md(d)}</sub><br>" for d in details]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- charts


@contextmanager
def _deterministic_matplotlib() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(
        {
            "svg.hashsalt": "mlops-compare",
            "svg.fonttype": "path",
            "pdf.fonttype": 42,
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


def _curves_figure(result: ComparisonResult) -> Figure | None:
    sample = result.sample
    if sample is None or result.task is None:
        return None
    if result.task is Task.CLASSIFICATION:
        if sample.a.scores is None or sample.b.scores is None:
            return None
        figure = _figure(9, 4)
        roc_axes, pr_axes = figure.subplots(1, 2)
        for ref, scores, color in (
            (result.a.ref, sample.a.scores, COLOR_A),
            (result.b.ref, sample.b.scores, COLOR_B),
        ):
            fpr, tpr = roc_points(sample.y_true, scores)
            auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
            roc_axes.plot(fpr, tpr, color=color, label=f"{ref} (AUC {auc:.3f})")
            recall, precision = precision_recall_points(sample.y_true, scores)
            pr_axes.step(
                np.r_[0.0, recall],
                np.r_[precision[0], precision],
                where="pre",
                color=color,
                label=f"{ref} (AP {average_precision(sample.y_true, scores):.3f})",
            )
        roc_axes.plot([0, 1], [0, 1], color=COLOR_NEUTRAL, linestyle=":", linewidth=1, label="chance")
        _style(roc_axes, "ROC curve", "false positive rate", "true positive rate")
        prevalence = float(np.mean(sample.y_true))
        pr_axes.axhline(
            prevalence, color=COLOR_NEUTRAL, linestyle=":", linewidth=1, label=f"base rate {prevalence:.2f}"
        )
        _style(pr_axes, "Precision-recall curve", "recall", "precision")
        return figure
    figure = _figure(9, 3.6)
    axes_a, axes_b, axes_hist = figure.subplots(1, 3)
    rows = np.unique(np.linspace(0, result.rows - 1, min(result.rows, MAX_SCATTER_POINTS)).astype(int))
    residuals = {}
    for axes, ref, predictions, color in (
        (axes_a, result.a.ref, sample.a.values, COLOR_A),
        (axes_b, result.b.ref, sample.b.values, COLOR_B),
    ):
        residual = predictions - sample.y_true
        residuals[ref] = (residual, color)
        axes.scatter(predictions[rows], residual[rows], s=6, alpha=0.5, color=color, linewidths=0)
        axes.axhline(0, color=COLOR_NEUTRAL, linewidth=1)
        _style(axes, f"Residuals of {ref}", "predicted", "predicted - actual", legend=False)
    axes_b.sharey(axes_a)
    everything = np.concatenate([r for r, _ in residuals.values()])
    edges = np.histogram_bin_edges(everything, bins=40)
    for ref, (residual, color) in residuals.items():
        axes_hist.hist(residual, bins=edges, alpha=0.5, color=color, label=ref)
    _style(axes_hist, "Residual distribution", "predicted - actual", "rows")
    return figure


def _style(axes: Axes, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    axes.set_title(title, fontsize=10, loc="left")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.25)
    if legend:
        axes.legend(loc="best", fontsize=8, frameon=False)


def _forest_figure(result: ComparisonResult) -> Figure | None:
    """One row per metric (each on its own scale: AUC and RMSE differences do not share units)."""
    if not result.metrics:
        return None
    figure = _figure(9, 0.85 * len(result.metrics) + 0.9)
    axes_list = figure.subplots(len(result.metrics), 1, squeeze=False)[:, 0]
    for axes, metric in zip(axes_list, result.metrics, strict=True):
        color = COLOR_NEUTRAL
        if metric.better is not None:
            color = COLOR_BETTER if metric.better == "B" else COLOR_WORSE
        low, high = metric.ci.low, metric.ci.high
        if math.isfinite(low) and math.isfinite(high):
            axes.errorbar(
                [metric.difference],
                [0],
                xerr=[[metric.difference - low], [high - metric.difference]],
                fmt="o",
                color=color,
                capsize=4,
                markersize=6,
            )
            span = max(abs(low), abs(high), abs(metric.difference)) or 1.0
        else:
            axes.plot([metric.difference], [0], "o", color=color)
            span = abs(metric.difference) or 1.0
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_xlim(-1.15 * span, 1.15 * span)
        axes.set_yticks([])
        axes.spines["left"].set_visible(False)
        direction = "higher" if METRICS[metric.metric].higher_is_better else "lower"
        _, _, difference, interval = _cells(metric)
        axes.set_title(
            f"{metric.metric}: B - A = {difference}, {_level(result)} CI {interval} "
            f"({direction} is better; {format_p(metric.test.p_value)})",
            fontsize=9,
            loc="left",
            color=color if metric.better is not None else "black",
        )
        axes.grid(axis="x", alpha=0.25)
    figure.suptitle(
        f"Differences {result.b.ref} - {result.a.ref} with confidence intervals", fontsize=10, x=0.01, ha="left"
    )
    return figure


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:980px;
color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.4rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
.sub{color:#555;margin-top:0}.verdict{font-size:1.1rem;font-weight:600;padding:.7rem 1rem;border-radius:6px;
background:#f1f5fb;border-left:5px solid #4c72b0}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{padding:.35rem .5rem;border-bottom:1px solid #e5e5e5;
text-align:left;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.better-B{color:#2e7d32;font-weight:600}.better-A{color:#c62828;font-weight:600}
.warnings li{margin:.3rem 0}.warnings{background:#fff8e1;border-left:5px solid #f9a825;padding:.5rem 1rem .5rem 2rem}
.chart svg{max-width:100%;height:auto}.small{color:#666;font-size:.85rem}
"""


def render_html(run: ComparisonRun) -> str:
    result = run.result
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(_title(run))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Model comparison: {e(_title(run))}</h1>",
        f'<p class="sub">{e(_subtitle(run))}</p>',
        f'<p class="verdict">{e(result.verdict)}</p>',
    ]
    if result.warnings:
        parts.append('<h2>Warnings</h2><ul class="warnings">')
        parts += [f"<li>{e(w)}</li>" for w in result.warnings]
        parts.append("</ul>")
    if result.metrics:
        parts.append("<h2>Metrics</h2><table><thead><tr>")
        headers = ["metric", "A", "B", "B - A", f"{_level(result)} CI", "test", "p", "result"]
        parts.append("".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead><tbody>")
        for metric in result.metrics:
            tests = [f"{e(metric.test.name)}"] + [
                f'<span class="small">{e(t.name)} ({e(format_p(t.p_value))})</span>' for t in metric.other_tests
            ]
            css = f' class="better-{metric.better}"' if metric.better else ""
            value_a, value_b, difference, interval = _cells(metric)
            parts.append(
                f"<tr><td>{e(metric.metric)}</td><td class=num>{value_a}</td>"
                f"<td class=num>{value_b}</td><td class=num>{difference}</td>"
                f"<td class=num>{e(interval)}</td><td>{'<br>'.join(tests)}</td>"
                f"<td class=num>{e(_p_cell(metric.test.p_value))}</td>"
                f"<td{css}>{e(_winner(result, metric))}</td></tr>"
            )
        parts.append("</tbody></table>")
        parts.append(f'<p class="small">{e(MULTIPLE_TESTING_NOTE)}; {e(_method_note(result))}.</p>')
        with _deterministic_matplotlib():
            curves = _curves_figure(result)
            forest = _forest_figure(result)
            if forest is not None:
                parts.append(f'<h2>Differences</h2><div class="chart">{_svg(forest)}</div>')
            if curves is not None:
                title = "ROC and precision-recall curves" if result.task is Task.CLASSIFICATION else "Residuals"
                parts.append(f'<h2>{title}</h2><div class="chart">{_svg(curves)}</div>')
    parts.append(_details_html(run))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _details_html(run: ComparisonRun) -> str:
    result = run.result
    e = html.escape
    rows = [
        ("data", f"{run.data.name} ({run.data_digest}), {result.rows:,} rows"),
        ("label", run.label),
    ]
    if run.features:
        rows.append(("features", f"{', '.join(run.features)} (from {run.features_from})"))
    if result.metrics:
        rows.append(("significance level", f"alpha = {result.alpha:g}"))
        rows.append(("bootstrap", f"{result.resamples:,} paired resamples, seed {result.seed}"))
    for model in (result.a, result.b):
        registered = ", ".join(f"{k} {v:g}" for k, v in model.registered_metrics.items()) or "none"
        rows.append((model.ref, f"{model.task.value}, {model.artifact_format}; registered metrics: {registered}"))
    body = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    return f"<h2>Details</h2><table>{body}</table>"


# --------------------------------------------------------------------------- PDF

_PAGE = (11.69, 8.27)  # A4 landscape, inches: the metrics table is wide
_LINES_PER_PAGE = 44
_LINE_STEP = 0.019
_WRAP = 165


def render_pdf(run: ComparisonRun) -> bytes:
    """A PDF (UC-03 6a): the text report on the first page(s), then the charts, one per page."""
    from matplotlib.backends.backend_pdf import PdfPages

    lines: list[str] = []
    for line in render_text(run).splitlines():
        if len(line) <= _WRAP:
            lines.append(line)  # table rows keep their column spacing
        else:
            lines += textwrap.wrap(line, _WRAP, subsequent_indent="    ")
    for model in (run.result.a, run.result.b):
        registered = ", ".join(f"{k} {v:g}" for k, v in model.registered_metrics.items()) or "none"
        lines += textwrap.wrap(f"registered metrics of {model.ref}: {registered}", _WRAP, subsequent_indent="    ")
    lines += textwrap.wrap(f"data: {run.data.name} ({run.data_digest})", _WRAP, subsequent_indent="    ")
    buffer = io.BytesIO()
    with (
        _deterministic_matplotlib(),
        PdfPages(
            buffer, metadata={"Title": f"Model comparison: {_title(run)}", "Creator": "mlops", "CreationDate": None}
        ) as pdf,
    ):
        for figure in [*_text_pages(run, lines), _forest_figure(run.result), _curves_figure(run.result)]:
            if figure is not None:
                pdf.savefig(figure)
    return buffer.getvalue()


def _text_pages(run: ComparisonRun, lines: list[str]) -> list[Figure]:
    pages = []
    for start in range(0, max(len(lines), 1), _LINES_PER_PAGE):
        page = _figure(*_PAGE)
        page.set_layout_engine("none")
        if start == 0:
            page.text(0.05, 0.94, f"Model comparison: {_title(run)}", fontsize=14, weight="bold")
        for row, line in enumerate(lines[start : start + _LINES_PER_PAGE]):
            page.text(0.05, 0.9 - row * _LINE_STEP, line, family="monospace", fontsize=7)
        pages.append(page)
    return pages


def render(run: ComparisonRun, output_format: str) -> str | bytes:
    """The report in one of :data:`FORMATS` (text formats as str, PDF as bytes)."""
    if output_format == "text":
        return render_text(run)
    if output_format == "json":
        return render_json(run)
    if output_format == "markdown":
        return render_markdown(run)
    if output_format == "html":
        return render_html(run)
    if output_format == "pdf":
        return render_pdf(run)
    raise ValueError(f"unknown report format {output_format!r}")
