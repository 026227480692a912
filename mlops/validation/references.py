"""Every pointer between manifests resolves (pure)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from mlops.errors import Category, Problem
from mlops.validation.index import RepoIndex
from mlops.validation.layout import path_for

_FRIENDLY = {
    "ModelVersion": "model version",
    "DatasetVersion": "dataset version",
    "Model": "model",
    "Dataset": "dataset",
    "Pipeline": "pipeline",
    "Environment": "environment",
}


def check_references(index: RepoIndex) -> Iterable[Problem]:
    for entry in index.entries():
        for ref in entry.facts.references:
            if not ref.required or index.get(ref.kind, ref.key) is not None:
                continue
            if path_for(ref.kind, ref.key) in index.broken_paths:
                continue  # the target exists but is broken, and is reported once, in its own file
            noun = _FRIENDLY.get(ref.kind, ref.kind)
            yield Problem(
                entry.path,
                f"{noun} {ref.key!r} does not exist{_alternatives(index, ref.kind, ref.key)}",
                field=ref.field,
                category=Category.REFERENCE,
                code="dangling-reference",
            )


def _alternatives(index: RepoIndex, kind: str, key: str) -> str:
    if "@" in key:
        name = key.split("@", 1)[0]
        versions = sorted(int(k.split("@", 1)[1]) for k in index.keys(kind) if k.split("@", 1)[0] == name)
        if versions:
            return f"; {name} has versions {', '.join(map(str, versions))}"
        parent = "Model" if kind == "ModelVersion" else "Dataset"
        if index.get(parent, name) is None:
            return f"; there is no {_FRIENDLY[parent]} {name!r}"
        return f"; {name} has no versions yet"
    close = difflib.get_close_matches(key, list(index.keys(kind)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
