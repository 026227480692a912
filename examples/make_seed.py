"""Build the tiny, deterministic "seed" artifacts for the example state repository.

Why this exists
---------------
The example repository shipped with this project commits a *tiny seed of real
artifacts* (one small dataset, a few small models and a manifest describing
them) so that a newcomer's fresh clone can validate and serve something
immediately, without training anything first.  These files are the only
artifacts that ever live in git: users' own datasets and models never go into
the repository, they live in artifact stores.

Because the seed is committed, it must be reproducible: every random choice is
seeded, archive timestamps and object ids are normalised, floats are written
with a fixed format, so re-running this script produces byte-identical files
on the same machine (same library versions).  The script also checks its own
output: every ONNX model is loaded in onnxruntime and compared with
scikit-learn's ``predict_proba``, and every skops file is re-loaded and
compared with the in-memory estimator.

Usage::

    python examples/make_seed.py [--out DIR]

Outputs (in ``examples/seed/`` by default):

* ``customers-v1.csv``            synthetic customer table (2,000 rows)
* ``churn-1.onnx`` .. ``churn-3.onnx``  binary churn classifiers (ONNX)
* ``ltv-1.skops``, ``ltv-2.skops``  lifetime-value regressors (skops)
* ``manifest.json``               digests, sizes, metrics, hyperparameters,
                                  signatures of everything above
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import skl2onnx
import sklearn
import skops
import skops.io as sio
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

# --------------------------------------------------------------------------- #
# Constants
# --------------------------------------------------------------------------- #

DATA_SEED = 7
N_ROWS = 2_000
N_TRAIN = 1_500  # first 1,500 rows train, last 500 rows test
FEATURES = ["monthly_spend", "tenure_months", "support_tickets", "age"]
CLASS_TARGET = "churned"
REG_TARGET = "lifetime_value"
DATASET_FILE = "customers-v1.csv"
MANIFEST_FILE = "manifest.json"

ONNX_OPSET: dict[str, int] = {"": 17, "ai.onnx.ml": 3}
ONNX_INPUT_NAME = "features"
PROBA_TOLERANCE = 1e-4

# Fixed timestamp / attributes for every member of a skops zip archive.
ZIP_DATE_TIME = (2024, 1, 1, 0, 0, 0)
ZIP_EXTERNAL_ATTR = 0o644 << 16
ZIP_CREATE_SYSTEM = 3  # unix
# skops stores members uncompressed by default; its schema.json is verbose JSON,
# so deflate keeps the seed small.  zlib output is deterministic for a given
# zlib version and level.
SKOPS_COMPRESSION = zipfile.ZIP_DEFLATED
SKOPS_COMPRESSLEVEL = 9

PLANS = ["basic", "standard", "premium"]
REGIONS = ["north", "south", "east", "west"]
SIGNUP_START = dt.date(2022, 1, 1)
SIGNUP_END = dt.date(2024, 12, 31)

# Estimator parameters recorded in the manifest ("the ones that matter").
HYPERPARAMETER_KEYS: dict[str, list[str]] = {
    "LogisticRegression": ["C", "l1_ratio", "solver", "max_iter", "tol", "fit_intercept", "class_weight"],
    "RandomForestClassifier": [
        "n_estimators",
        "max_depth",
        "max_features",
        "min_samples_split",
        "min_samples_leaf",
        "criterion",
        "bootstrap",
        "random_state",
    ],
    "GradientBoostingClassifier": [
        "n_estimators",
        "max_depth",
        "learning_rate",
        "subsample",
        "min_samples_leaf",
        "loss",
        "random_state",
    ],
    "LinearRegression": ["fit_intercept", "positive"],
    "GradientBoostingRegressor": [
        "n_estimators",
        "max_depth",
        "learning_rate",
        "subsample",
        "min_samples_leaf",
        "loss",
        "random_state",
    ],
}


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_entry(path: Path, fmt: str) -> dict[str, Any]:
    """Fields common to every manifest entry."""
    return {
        "file": path.name,
        "format": fmt,
        "size_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def r4(x: float) -> float:
    return round(float(x), 4)


def hyperparameters(est: BaseEstimator) -> dict[str, Any]:
    """A small flat dict of the estimator's main params, JSON scalars only."""
    params = est.get_params(deep=False)
    keys = HYPERPARAMETER_KEYS[type(est).__name__]
    out: dict[str, Any] = {}
    for key in keys:
        value = params[key]
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TypeError(f"{type(est).__name__}.{key}={value!r} is not a JSON scalar")
        out[key] = value
    return out


# --------------------------------------------------------------------------- #
# Dataset
# --------------------------------------------------------------------------- #


def make_customers(seed: int = DATA_SEED, n: int = N_ROWS) -> pd.DataFrame:
    """Synthetic customer table; churn and lifetime value depend on the features."""
    rng = np.random.default_rng(seed)

    n_days = (SIGNUP_END - SIGNUP_START).days + 1
    day_offsets = rng.integers(0, n_days, size=n)
    signup = [(SIGNUP_START + dt.timedelta(days=int(d))).isoformat() for d in day_offsets]

    plan_idx = rng.choice(len(PLANS), size=n, p=[0.5, 0.33, 0.17])
    plan_base = np.array([25.0, 55.0, 110.0])[plan_idx]
    monthly_spend = np.round(np.maximum(plan_base * np.exp(rng.normal(0.0, 0.25, size=n)), 5.0), 2)

    tenure_months = np.clip(1 + np.floor(rng.exponential(20.0, size=n)), 1, 72).astype(np.int64)
    support_tickets = np.clip(rng.poisson(1.6, size=n), 0, 15).astype(np.int64)
    age = np.clip(np.round(rng.normal(42.0, 14.0, size=n)), 18, 90).astype(np.int64)
    region_idx = rng.choice(len(REGIONS), size=n, p=[0.3, 0.25, 0.25, 0.2])

    # Churn: more tickets and higher price -> more churn; long tenure, older
    # customers and premium plans -> less churn.  Two non-linear effects (an
    # onboarding cliff for new customers, a jump once tickets pile up) give the
    # tree models something the linear model cannot capture.
    plan_effect = np.array([0.3, 0.0, -0.5])[plan_idx]
    region_effect = np.array([0.0, 0.15, -0.1, 0.05])[region_idx]
    logit = (
        -2.0
        + 0.35 * support_tickets
        + 1.0 * (support_tickets >= 4)
        - 0.04 * tenure_months
        + 1.2 * (tenure_months <= 6)
        + 0.012 * (monthly_spend - 50.0)
        - 0.02 * (age - 42.0)
        + plan_effect
        + region_effect
    )
    churned = (rng.random(n) < sigmoid(logit)).astype(np.int64)

    # Lifetime value: spend x (tenure + expected remaining months), with noise.
    ltv = monthly_spend * (tenure_months + 6.0) * np.exp(rng.normal(0.0, 0.2, size=n))
    ltv = np.round(np.maximum(ltv + rng.normal(0.0, 25.0, size=n), 1.0), 2)

    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(1, n + 1)],
            "signup_date": signup,
            "plan": np.array(PLANS, dtype=object)[plan_idx],
            "monthly_spend": monthly_spend,
            "tenure_months": tenure_months,
            "support_tickets": support_tickets,
            "age": age,
            "region": np.array(REGIONS, dtype=object)[region_idx],
            "churned": churned,
            "lifetime_value": ltv,
        }
    )


def write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, float_format="%.2f", lineterminator="\n")


def column_dtype(series: pd.Series) -> str:
    kind = series.dtype.kind
    if kind == "i":
        return "int64"
    if kind == "f":
        return "float64"
    return "string"


def dataset_entry(df: pd.DataFrame, path: Path) -> dict[str, Any]:
    return {
        **file_entry(path, "csv"),
        "kind": "dataset",
        "name": "customers",
        "version": 1,
        "rows": len(df),
        "columns": [{"name": c, "dtype": column_dtype(df[c])} for c in df.columns],
        "churned_positive_rate": r4(df[CLASS_TARGET].mean()),
        "split": {
            "train_rows": N_TRAIN,
            "test_rows": int(len(df) - N_TRAIN),
            "rule": f"first {N_TRAIN} rows train, remaining rows test",
        },
        "generator": {"script": "examples/make_seed.py", "numpy_default_rng_seed": DATA_SEED},
    }


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def split(df: pd.DataFrame, target: str, dtype: type) -> Split:
    x = df[FEATURES].to_numpy(dtype=dtype)
    y = df[target].to_numpy()
    return Split(x[:N_TRAIN], x[N_TRAIN:], y[:N_TRAIN], y[N_TRAIN:])


# --------------------------------------------------------------------------- #
# Model specs
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: int
    factory: Callable[[], BaseEstimator]

    @property
    def file_stem(self) -> str:
        return f"{self.name}-{self.version}"


CHURN_MODELS = [
    ModelSpec("churn", 1, lambda: LogisticRegression(max_iter=1000)),
    ModelSpec("churn", 2, lambda: RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0)),
    ModelSpec("churn", 3, lambda: GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0)),
]

LTV_MODELS = [
    ModelSpec("ltv", 1, LinearRegression),
    ModelSpec("ltv", 2, lambda: GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0)),
]


def fit(spec: ModelSpec, data: Split) -> BaseEstimator:
    est = spec.factory()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(data.x_train, data.y_train)
    return est


# --------------------------------------------------------------------------- #
# ONNX classifiers
# --------------------------------------------------------------------------- #


def onnx_dtype_name(elem_type: int) -> str:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name


def onnx_value_info(vi: onnx.ValueInfoProto) -> dict[str, Any]:
    tensor = vi.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    return {"name": vi.name, "dtype": onnx_dtype_name(tensor.elem_type), "shape": shape}


def onnx_signature(model: onnx.ModelProto) -> dict[str, Any]:
    return {
        "inputs": [onnx_value_info(v) for v in model.graph.input],
        "outputs": [onnx_value_info(v) for v in model.graph.output],
    }


def export_onnx(clf: BaseEstimator, spec: ModelSpec, path: Path) -> onnx.ModelProto:
    model: onnx.ModelProto = to_onnx(
        clf,
        initial_types=[(ONNX_INPUT_NAME, FloatTensorType([None, len(FEATURES)]))],
        target_opset=ONNX_OPSET,
        options={id(clf): {"zipmap": False}},
        name=spec.file_stem,
    )
    # skl2onnx collects opsets in a set: fix their order so the bytes do not
    # depend on PYTHONHASHSEED.
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in opsets)
    model.model_version = spec.version
    model.doc_string = (
        f"{spec.name} v{spec.version}: {type(clf).__name__} predicting '{CLASS_TARGET}' "
        f"from {FEATURES}. Seed artifact generated by examples/make_seed.py."
    )
    onnx.helper.set_model_props(
        model,
        {
            "model_name": spec.name,
            "model_version": str(spec.version),
            "estimator": type(clf).__name__,
            "features": ",".join(FEATURES),
            "target": CLASS_TARGET,
        },
    )
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return model


def onnx_predict(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels, probabilities) from onnxruntime."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, proba = sess.run(["label", "probabilities"], {ONNX_INPUT_NAME: x})
    return np.asarray(labels), np.asarray(proba)


def classifier_metrics(y: np.ndarray, labels: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    p1 = proba[:, 1].astype(np.float64)
    return {
        "auc": r4(roc_auc_score(y, p1)),
        "accuracy": r4(accuracy_score(y, labels)),
        "f1": r4(f1_score(y, labels)),
        "log_loss": r4(log_loss(y, np.clip(p1, 1e-15, 1 - 1e-15), labels=[0, 1])),
    }


def build_churn(spec: ModelSpec, data: Split, out: Path) -> dict[str, Any]:
    clf = fit(spec, data)
    path = out / f"{spec.file_stem}.onnx"
    model = export_onnx(clf, spec, path)

    labels, proba = onnx_predict(path, data.x_test)
    sk_proba = clf.predict_proba(data.x_test)
    max_diff = float(np.max(np.abs(proba - sk_proba)))
    assert max_diff < PROBA_TOLERANCE, f"{path.name}: onnx vs sklearn proba differ by {max_diff:g}"
    assert np.array_equal(labels, clf.predict(data.x_test)), f"{path.name}: labels differ"

    return {
        **file_entry(path, "onnx"),
        "kind": "model",
        "name": spec.name,
        "version": spec.version,
        "task": "binary_classification",
        "estimator": type(clf).__name__,
        "features": FEATURES,
        "target": CLASS_TARGET,
        "hyperparameters": hyperparameters(clf),
        "metrics": classifier_metrics(data.y_test, labels, proba),
        "signature": onnx_signature(model),
        "opset": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "_check": {"max_abs_proba_diff_vs_sklearn": max_diff},
    }


# --------------------------------------------------------------------------- #
# skops regressors
# --------------------------------------------------------------------------- #


def _canonical_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Replace run-dependent ids in a skops schema with stable ordinals.

    skops records ``id(obj)`` (a memory address) as ``__id__`` and names array
    members ``<id>.npy`` / ``<id>.npz``; raw bytes go to ``<uuid4>.bin``.  Ids
    are renumbered 1, 2, ... in document order (0 is avoided: skops treats a
    falsy id as "no id"), which keeps shared references intact.
    Returns the new schema and the old->new member-name mapping.
    """
    ids: dict[int, int] = {}
    renames: dict[str, str] = {}

    def new_id(old: int) -> int:
        return ids.setdefault(old, len(ids) + 1)

    def rename(member: str) -> str:
        if member not in renames:
            stem, _, ext = member.rpartition(".")
            if ext in ("npy", "npz") and stem.isdigit():
                renames[member] = f"{new_id(int(stem))}.{ext}"
            else:  # e.g. uuid4 names for bytes objects
                renames[member] = f"blob-{len(renames) + 1}.{ext}"
        return renames[member]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    out[key] = new_id(value)
                elif key == "file" and isinstance(value, str):
                    out[key] = rename(value)
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema), renames


def deterministic_skops_bytes(obj: Any) -> bytes:
    """skops.io.dumps, with timestamps, ids and member order made stable."""
    raw = sio.dumps(obj, compression=SKOPS_COMPRESSION, compresslevel=SKOPS_COMPRESSLEVEL)
    members: dict[str, tuple[bytes, int]] = {}
    with zipfile.ZipFile(io.BytesIO(raw)) as src:
        schema, renames = _canonical_schema(json.loads(src.read("schema.json")))
        for info in src.infolist():
            if info.filename == "schema.json":
                data = json.dumps(schema, indent=2).encode("utf-8")
                name = info.filename
            else:
                data = src.read(info.filename)
                name = renames[info.filename]
            members[name] = (data, info.compress_type)

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        for name in sorted(members):
            data, compress_type = members[name]  # keep skops's compression
            zi = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            zi.compress_type = compress_type
            zi.external_attr = ZIP_EXTERNAL_ATTR
            zi.create_system = ZIP_CREATE_SYSTEM
            dst.writestr(zi, data, compresslevel=SKOPS_COMPRESSLEVEL)
    return buf.getvalue()


def skops_signature() -> dict[str, Any]:
    return {
        "inputs": [{"name": "features", "dtype": "float64", "shape": [-1, len(FEATURES)]}],
        "outputs": [{"name": "prediction", "dtype": "float64", "shape": [-1]}],
    }


def regressor_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "rmse": r4(np.sqrt(mean_squared_error(y, pred))),
        "mae": r4(mean_absolute_error(y, pred)),
        "r2": r4(r2_score(y, pred)),
    }


def build_ltv(spec: ModelSpec, data: Split, out: Path) -> dict[str, Any]:
    reg = fit(spec, data)
    path = out / f"{spec.file_stem}.skops"
    path.write_bytes(deterministic_skops_bytes(reg))

    untrusted = sio.get_untrusted_types(file=path)
    loaded = sio.load(path, trusted=untrusted)
    pred = np.asarray(loaded.predict(data.x_test), dtype=np.float64)
    assert np.array_equal(pred, reg.predict(data.x_test)), f"{path.name}: reloaded predictions differ"

    return {
        **file_entry(path, "skops"),
        "kind": "model",
        "name": spec.name,
        "version": spec.version,
        "task": "regression",
        "estimator": type(reg).__name__,
        "features": FEATURES,
        "target": REG_TARGET,
        "hyperparameters": hyperparameters(reg),
        "metrics": regressor_metrics(data.y_test, pred),
        "signature": skops_signature(),
        "untrusted_types": sorted(untrusted),
    }


# --------------------------------------------------------------------------- #
# Manifest, summary, CLI
# --------------------------------------------------------------------------- #


def build_manifest(entries: list[dict[str, Any]]) -> dict[str, Any]:
    # Internal check values are printed, not committed.
    files = [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries]
    return {
        "manifest_version": 1,
        "description": (
            "Tiny seed of real artifacts for the example repository, so a fresh clone "
            "can validate and serve without training. Generated by examples/make_seed.py."
        ),
        "generated_with": {
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "skops": skops.__version__,
        },
        "files": files,
    }


def print_summary(entries: list[dict[str, Any]]) -> None:
    header = f"{'file':<18} {'format':<6} {'bytes':>8}  {'sha256':<16}  estimator / metrics"
    print(header)
    print("-" * len(header))
    for e in entries:
        if e["kind"] == "dataset":
            detail = f"{e['rows']} rows, churned rate {e['churned_positive_rate']}"
        else:
            metrics = " ".join(f"{k}={v}" for k, v in e["metrics"].items())
            detail = f"{e['estimator']}: {metrics}"
            if "_check" in e:
                detail += f" (max |Δp| vs sklearn {e['_check']['max_abs_proba_diff_vs_sklearn']:.1e})"
        print(f"{e['file']:<18} {e['format']:<6} {e['size_bytes']:>8}  {e['sha256'][:16]}  {detail}")


def make_seed(out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)

    df = make_customers()
    csv_path = out / DATASET_FILE
    write_csv(df, csv_path)
    entries: list[dict[str, Any]] = [dataset_entry(df, csv_path)]

    churn_data = split(df, CLASS_TARGET, np.float32)
    entries += [build_churn(spec, churn_data, out) for spec in CHURN_MODELS]

    ltv_data = split(df, REG_TARGET, np.float64)
    entries += [build_ltv(spec, ltv_data, out) for spec in LTV_MODELS]

    manifest = build_manifest(entries)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    print_summary(entries)
    print(f"\nwrote {len(entries)} artifacts + {MANIFEST_FILE} to {out}")
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "seed",
        help="output directory (default: examples/seed next to this script)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    make_seed(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
