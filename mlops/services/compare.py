"""`mlops model compare`: score two registered versions on the same rows and compare them (UC-03).

Orchestration only: read the evaluation table, look both versions up in the working tree,
fetch their artifacts from the store into a temporary folder (the store verifies every digest),
load them with the trusted skops types of the repository's ArtifactPolicies, score the same rows,
and hand the predictions to :mod:`mlops.analysis.compare`. Every check on the user's input runs
before anything is fetched, and nothing is written inside the repository.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import numpy as np

from mlops.analysis.compare import (
    ComparisonResult,
    ModelSide,
    Predictions,
    comparability_warnings,
    compare_predictions,
    not_comparable,
    resolve_metrics,
)
from mlops.errors import InputError, UsageError
from mlops.inspect.loading import Scorer, load_scorer
from mlops.manifests import ArtifactPolicy, Model, ModelVersion
from mlops.manifests.common import Task
from mlops.services.repository import load_index, repo_root
from mlops.services.store import repo_store
from mlops.stores.artifacts import sha256_file
from mlops.validation.index import RepoIndex

_REF_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]{0,62})@(?P<version>[1-9][0-9]*)$")
FEATURES_TAG = "features"
_SHOWN_COLUMNS = 30


@dataclass(frozen=True)
class CompareRequest:
    version_a: str
    version_b: str
    data: Path
    label: str
    metrics: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    resamples: int = 2000
    seed: int = 0
    alpha: float = 0.05


@dataclass(frozen=True)
class ComparisonRun:
    """A comparison and what it was run on, for the reports."""

    result: ComparisonResult
    data: Path
    data_digest: str
    label: str
    features: tuple[str, ...]
    features_from: str


@dataclass(frozen=True)
class _Version:
    ref: str
    version: ModelVersion
    model: Model

    @property
    def side(self) -> ModelSide:
        spec = self.version.spec
        return ModelSide(
            ref=self.ref,
            task=self.model.spec.task,
            signature=spec.signature or self.model.spec.signature,
            registered_metrics=dict(spec.metrics),
            artifact_format=spec.artifact.format.value,
        )

    @property
    def input_width(self) -> int | None:
        signature = self.side.signature
        if signature is None or not signature.inputs:
            return None
        shape = signature.inputs[0].shape
        return shape[1] if len(shape) == 2 and shape[1] > 0 else None


def compare_versions(root: Path, request: CompareRequest) -> ComparisonRun:
    root = repo_root(root)
    refs = (_parse_ref(request.version_a), _parse_ref(request.version_b))
    table = read_table(request.data)
    _require_columns(table, request.data, [request.label], "label")
    index = load_index(root)
    version_a, version_b = (_find_version(index, name, number) for name, number in refs)
    side_a, side_b = version_a.side, version_b.side
    warnings = comparability_warnings(side_a, side_b)
    if version_a.version.spec.artifact.digest == version_b.version.spec.artifact.digest:
        warnings.append(f"{side_a.ref} and {side_b.ref} have the same artifact: they are the same model")
    data_digest = sha256_file(request.data)[0]
    if side_a.task != side_b.task:
        result = not_comparable(side_a, side_b, len(table), warnings, request.alpha)
        return ComparisonRun(result, request.data, data_digest, request.label, (), "")
    metrics = resolve_metrics(side_a.task, request.metrics)
    features, features_from = _choose_features(table, request, (version_a, version_b))
    labels = _label_values(table, request, side_a.task)
    matrix = table[list(features)].to_numpy(dtype=np.float64)
    trusted = sorted({t for _, policy in index.of(ArtifactPolicy) for t in policy.spec.trustedSkopsTypes})
    store = repo_store(root)
    predictions: list[Predictions] = []
    with tempfile.TemporaryDirectory(prefix="mlops-compare-") as folder:
        for slot, version in zip(("a", "b"), (version_a, version_b), strict=True):
            artifact = version.version.spec.artifact
            local = Path(folder) / f"{slot}-{artifact.filename or 'artifact'}"
            store.get_file(artifact.digest, local)
            scorer = load_scorer(
                local, artifact.format, version.side.task, version.side.signature, trusted, version.ref
            )
            _check_width(scorer, features, features_from)
            predictions.append(_predict(scorer, matrix))
    result = compare_predictions(
        side_a,
        side_b,
        labels,
        predictions[0],
        predictions[1],
        metrics,
        label=request.label,
        resamples=request.resamples,
        seed=request.seed,
        alpha=request.alpha,
        warnings=warnings,
    )
    return ComparisonRun(result, request.data, data_digest, request.label, features, features_from)


def _parse_ref(ref: str) -> tuple[str, int]:
    match = _REF_RE.match(ref)
    if match is None:
        raise UsageError(f"{ref!r}: expected NAME@VERSION, e.g. churn@2")
    return match["name"], int(match["version"])


def _find_version(index: RepoIndex, name: str, number: int) -> _Version:
    ref = f"{name}@{number}"
    version = index.find(ModelVersion, ref)
    if version is None:
        path = f"registry/models/{name}/versions/{number}.yaml"
        if path in index.broken_paths:
            raise InputError(f"{ref}: {path} does not validate; run `mlops validate` to see why")
        known = sorted(v.spec.version for _, v in index.of(ModelVersion) if v.metadata.name == name)
        have = f"{name} has versions {', '.join(map(str, known))}" if known else f"no model {name!r} is registered"
        raise UsageError(f"{ref} is not registered; {have}")
    model = index.find(Model, name)
    if model is None:
        raise InputError(f"{ref}: registry/models/{name}/model.yaml is missing or does not validate; it gives the task")
    return _Version(ref, version, model)


# --------------------------------------------------------------------------- the evaluation table


def read_table(path: Path) -> Any:
    """The evaluation rows as a pandas DataFrame, from .csv (.csv.gz, .tsv) or .parquet."""
    import pandas as pd

    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        kind = "Parquet"
    elif name.endswith((".csv", ".csv.gz", ".tsv")):
        kind = "CSV"
    else:
        raise UsageError(f"--data {path}: unsupported file type; use a .csv or .parquet file")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        if kind == "Parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
    except ImportError as exc:
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow): {exc}") from None
    except Exception as exc:  # pandas and pyarrow raise many kinds; all mean "this is not a readable table"
        detail = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise InputError(f"{path}: cannot read as {kind}: {detail}") from None
    if len(table) == 0:
        raise InputError(f"{path}: no rows to compare on")
    return table


def _columns_text(table: Any) -> str:
    columns = [str(c) for c in table.columns]
    shown = ", ".join(columns[:_SHOWN_COLUMNS])
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > _SHOWN_COLUMNS else "")


def _require_columns(table: Any, path: Path, columns: Sequence[str], what: str) -> None:
    present = [str(c) for c in table.columns]
    missing = [c for c in columns if c not in present]
    if not missing:
        return
    hint = get_close_matches(missing[0], present, n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
    names = ", ".join(f"'{c}'" for c in missing)
    plural = "s" if len(missing) > 1 else ""
    raise InputError(f"{path}: no {what} column{plural} {names}{suggestion}; columns present: {_columns_text(table)}")


def _choose_features(table: Any, request: CompareRequest, versions: Sequence[_Version]) -> tuple[tuple[str, ...], str]:
    """Which columns feed the models: --features, else a ``features`` tag, else the numeric columns but the label."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if request.features:
        features, source = tuple(request.features), "--features"
    else:
        tagged = {v.ref: _features_tag(v) for v in versions}
        found = {ref: cols for ref, cols in tagged.items() if cols}
        if len({cols for cols in found.values()}) > 1:
            shown = "; ".join(f"{ref}: {', '.join(cols)}" for ref, cols in found.items())
            raise UsageError(
                f"the versions' '{FEATURES_TAG}' tags disagree ({shown}); choose the columns with --features"
            )
        if found:
            ref, features = next(iter(found.items()))
            source = f"the '{FEATURES_TAG}' tag of {ref}"
        else:
            features = tuple(
                str(c)
                for c in table.columns
                if str(c) != request.label and is_numeric_dtype(table[c]) and not is_bool_dtype(table[c])
            )
            source = "the numeric columns other than the label"
            if not features:
                raise InputError(
                    f"{request.data}: no numeric columns besides the label; columns: {_columns_text(table)}"
                )
    if request.label in features:
        raise UsageError(f"the features ({source}) include the label column '{request.label}'")
    if len(set(features)) != len(features):
        raise UsageError(f"the features ({source}) name a column twice: {', '.join(features)}")
    _require_columns(table, request.data, features, "feature")
    for column in features:
        if not is_numeric_dtype(table[column]):
            raise InputError(
                f"{request.data}: feature column '{column}' is not numeric ({table[column].dtype}); "
                "the models take numbers"
            )
    for version in versions:
        width = version.input_width
        if width is not None and width != len(features):
            raise UsageError(
                f"{version.ref} takes {width} input columns but {source} are {len(features)}: "
                f"{', '.join(features)}; name the {width} columns in order with --features"
            )
    _require_complete(table, request.data, [*features, request.label])
    return features, source


def _features_tag(version: _Version) -> tuple[str, ...]:
    raw = version.version.spec.tags.get(FEATURES_TAG) or version.model.spec.tags.get(FEATURES_TAG)
    if raw is None:
        param = version.version.spec.params.get(FEATURES_TAG)
        raw = param if isinstance(param, str) else None
    return tuple(c.strip() for c in raw.split(",") if c.strip()) if raw else ()


def _require_complete(table: Any, path: Path, columns: Sequence[str]) -> None:
    gaps = table[list(columns)].isna()
    rows = int(gaps.any(axis=1).sum())
    if rows:
        where = ", ".join(str(c) for c in columns if bool(gaps[c].any()))
        raise InputError(f"{path}: {rows} row(s) have missing values in {where}; drop or fill them first")


def _label_values(table: Any, request: CompareRequest, task: Task) -> Any:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    column = table[request.label]
    if is_bool_dtype(column):
        return column.to_numpy(dtype=np.float64)
    if not is_numeric_dtype(column):
        examples = ", ".join(repr(v) for v in column.drop_duplicates().head(3).tolist())
        wanted = "0/1" if task is Task.CLASSIFICATION else "numbers"
        raise InputError(
            f"{request.data}: label column '{request.label}' holds text (e.g. {examples}); "
            f"comparing {task.value} models needs {wanted}"
        )
    return column.to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------- scoring


def _check_width(scorer: Scorer, features: Sequence[str], source: str) -> None:
    if scorer.input_width is not None and scorer.input_width != len(features):
        raise UsageError(
            f"{scorer.ref} takes {scorer.input_width} input columns but {source} are {len(features)}: "
            f"{', '.join(features)}; name the {scorer.input_width} columns in order with --features"
        )


def _predict(scorer: Scorer, matrix: Any) -> Predictions:
    if scorer.task is Task.CLASSIFICATION:
        return Predictions(values=scorer.predict(matrix), scores=scorer.predict_proba(matrix))
    return Predictions(values=scorer.predict(matrix))
