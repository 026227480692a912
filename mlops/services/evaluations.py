"""Recording a comparison as evidence in the candidate's manifest, where promotion gates read it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from mlops.errors import UsageError
from mlops.loader.manifest_io import edited_text
from mlops.manifests import ModelVersion
from mlops.manifests.model_version import Evaluation
from mlops.services.compare import ComparisonRun
from mlops.services.publish import CommitOptions, Publication, publish
from mlops.services.repository import load_index, repo_root


def evaluations_of(run: ComparisonRun) -> tuple[str, list[Evaluation]]:
    """The comparison as evidence about B (the candidate) against A (the baseline), one entry per metric."""
    result = run.result
    if not result.comparable or not result.metrics:
        raise UsageError("nothing to record: the versions could not be compared (see the warnings)")
    at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    evaluations = [
        Evaluation(
            against=result.a.ref,
            metric=m.metric,
            data=run.data_digest,
            rows=result.rows,
            candidate=m.value_b,
            baseline=m.value_a,
            difference=m.difference,
            higherIsBetter=m.higher_is_better,
            ciLow=m.ci.low,
            ciHigh=m.ci.high,
            confidence=m.ci.level,
            test=m.test.name,
            pValue=m.test.p_value,
            at=at,
        )
        for m in result.metrics
    ]
    return result.b.ref, evaluations


def record_evaluations(
    root: Path, candidate: str, evaluations: list[Evaluation], options: CommitOptions
) -> Publication:
    root = repo_root(root)
    if load_index(root).find(ModelVersion, candidate) is None:
        raise UsageError(f"{candidate} is not registered")
    name, _, number = candidate.partition("@")
    path = f"registry/models/{name}/versions/{number}.yaml"
    entries = [e.model_dump(mode="json", exclude_none=True) for e in evaluations]
    replaced = {(e.against, e.metric, e.data) for e in evaluations}

    def add(tree: Any) -> None:
        recorded = tree["spec"].setdefault("evaluations", [])
        # One record per (baseline, metric, data): a re-run replaces the older evidence.
        keep = [e for e in recorded if (e.get("against"), e.get("metric"), e.get("data")) not in replaced]
        recorded.clear()
        recorded.extend([*keep, *entries])

    text = edited_text((root / path).read_text(encoding="utf-8"), add)
    lines = [f"Record evaluation of {candidate} against {evaluations[0].against}", ""]
    for e in evaluations:
        p = "" if e.pValue is None else f", p = {e.pValue:.3g}"
        lines.append(
            f"{e.metric}: {e.candidate:.4g} vs {e.baseline:.4g}, difference {e.difference:+.4g} "
            f"({e.confidence:.0%} CI {e.ciLow:+.4g} to {e.ciHigh:+.4g}, {e.test}{p})"
        )
    lines += ["", f"{evaluations[0].rows} rows of {evaluations[0].data}"]
    return publish(root, {path: text}, "\n".join(lines), options)
