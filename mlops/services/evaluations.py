"""Recording a comparison as evidence in the candidate's manifest, where promotion gates read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops.errors import UsageError
from mlops.loader.manifest_io import edited_text
from mlops.manifests import ModelVersion
from mlops.manifests.model_version import Evaluation
from mlops.services.publish import CommitOptions, Publication, publish
from mlops.services.repository import load_index, repo_root


def record_evaluation(root: Path, candidate: str, evaluation: Evaluation, options: CommitOptions) -> Publication:
    root = repo_root(root)
    index = load_index(root)
    version = index.find(ModelVersion, candidate)
    if version is None:
        raise UsageError(f"{candidate} is not registered")
    name, _, number = candidate.partition("@")
    path = f"registry/models/{name}/versions/{number}.yaml"
    entry = evaluation.model_dump(mode="json", exclude_none=True)

    def add(tree: Any) -> None:
        evaluations = tree["spec"].setdefault("evaluations", [])
        # One record per (baseline, metric, data): a re-run replaces the older evidence.
        keep = [
            e
            for e in evaluations
            if (e.get("against"), e.get("metric"), e.get("data"))
            != (evaluation.against, evaluation.metric, evaluation.data)
        ]
        evaluations.clear()
        evaluations.extend([*keep, entry])

    text = edited_text((root / path).read_text(encoding="utf-8"), add)
    verdict = "p = n/a" if evaluation.pValue is None else f"p = {evaluation.pValue:.3g}"
    message = (
        f"Record evaluation of {candidate} against {evaluation.against} on {evaluation.metric}\n\n"
        f"{evaluation.metric}: {evaluation.candidate:.4g} vs {evaluation.baseline:.4g}, difference "
        f"{evaluation.difference:+.4g} ({evaluation.confidence:.0%} CI {evaluation.ciLow:+.4g} to "
        f"{evaluation.ciHigh:+.4g}), {evaluation.test}, {verdict}, {evaluation.rows} rows of {evaluation.data}"
    )
    return publish(root, {path: text}, message, options)
