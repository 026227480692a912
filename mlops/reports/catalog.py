"""Registry listings as text tables and JSON."""

from __future__ import annotations

import json
from typing import Any

from mlops.services.catalog import ModelSummary, VersionDetail, key_of


def _table(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def _metrics(detail: VersionDetail | Any) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in detail.version.spec.metrics.items())


def render_models(summaries: list[ModelSummary]) -> str:
    rows = [["MODEL", "VERSIONS", "LATEST", "TASK", "RISK", "OWNER", "DEPLOYED"]]
    for s in summaries:
        deployed = ", ".join(f"{env}@{v}" for v, envs in sorted(s.deployed.items()) for env in envs)
        latest = str(s.versions[-1].spec.version) if s.versions else "-"
        spec = s.model.spec
        rows.append(
            [
                s.model.metadata.name,
                str(len(s.versions)),
                latest,
                spec.task.value,
                spec.riskTier.value,
                spec.owner,
                deployed or "-",
            ]
        )
    return _table(rows) if summaries else "no models registered"


def render_versions(details: list[VersionDetail]) -> str:
    if not details:
        return "no matching versions"
    rows = [["VERSION", "FORMAT", "STATUS", "ENVIRONMENTS", "METRICS"]]
    for d in details:
        rows.append(
            [
                key_of(d),
                d.version.spec.artifact.format.value,
                d.version.spec.status.value,
                ", ".join(d.environments) or "-",
                _metrics(d),
            ]
        )
    return _table(rows)


def render_summary(summary: ModelSummary) -> str:
    spec = summary.model.spec
    head = [
        f"model {summary.model.metadata.name}: {spec.description}".rstrip(": "),
        f"  owner {spec.owner}; task {spec.task.value}; flavor {spec.flavor}; risk tier {spec.riskTier.value}",
    ]
    rows = [["VERSION", "FORMAT", "STATUS", "ENVIRONMENTS", "CREATED", "METRICS"]]
    for v in summary.versions:
        envs = ", ".join(summary.deployed.get(v.spec.version, [])) or "-"
        rows.append(
            [
                str(v.spec.version),
                v.spec.artifact.format.value,
                v.spec.status.value,
                envs,
                (v.spec.createdAt or "-")[:10],
                ", ".join(f"{k}={x:g}" for k, x in v.spec.metrics.items()),
            ]
        )
    return "\n".join(head) + "\n" + _table(rows)


def render_detail(detail: VersionDetail) -> str:
    spec = detail.version.spec
    lines = [
        f"{key_of(detail)}  ({detail.path})",
        f"  description: {spec.description or '-'}",
        f"  artifact:    {spec.artifact.digest} ({spec.artifact.format.value}, {spec.artifact.size:,} bytes)",
        f"  status:      {spec.status.value}; serving in: {', '.join(detail.environments) or 'no environment'}",
        f"  metrics:     {_metrics(detail) or '-'}",
        f"  params:      {', '.join(f'{k}={v}' for k, v in spec.params.items()) or '-'}",
        f"  lineage:     datasets {', '.join(spec.lineage.datasets) or '-'}; pipeline {spec.lineage.pipeline or '-'};"
        f" run {spec.lineage.run or '-'}",
        f"  created:     {spec.createdAt or '-'} by {spec.createdBy or '-'}",
    ]
    if spec.signature is not None:
        for tensor in spec.signature.inputs:
            lines.append(f"  input:       {tensor.name} {tensor.dtype} {tensor.shape}")
        for tensor in spec.signature.outputs:
            lines.append(f"  output:      {tensor.name} {tensor.dtype} {tensor.shape}")
    return "\n".join(lines)


def versions_json(details: list[VersionDetail]) -> str:
    return json.dumps(
        [
            {
                "key": key_of(d),
                "path": d.path,
                "environments": d.environments,
                **d.version.spec.model_dump(mode="json", exclude_defaults=True),
            }
            for d in details
        ],
        indent=2,
    )
