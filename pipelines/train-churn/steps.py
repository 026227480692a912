"""Steps of the train-churn pipeline (pipeline.yaml beside this file names them as steps:<function>).

Each step gets its inputs as keyword arguments (a dataset or a table as a pandas DataFrame, a model as
the path of its file, metrics as a dict) and returns its outputs by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["monthly_spend", "tenure_months", "support_tickets", "age"]
TARGET = "churned"
ONNX_INPUT = "features"  # the input name the churn model's signature declares


def prepare(data: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A reproducible 75/25 split of the snapshot, keeping only what the model reads."""
    clean = data.dropna(subset=[*FEATURES, TARGET])[[*FEATURES, TARGET]]
    shuffled = clean.sample(frac=1.0, random_state=0).reset_index(drop=True)
    cut = int(len(shuffled) * 0.75)
    return {"train": shuffled.iloc[:cut], "test": shuffled.iloc[cut:]}


def train(train: pd.DataFrame, max_depth: int, n_estimators: int, context: Any) -> Path:
    """Gradient boosting, exported to ONNX with the signature the model declares."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingClassifier

    x = train[FEATURES].to_numpy(dtype=np.float32)
    y = train[TARGET].to_numpy(dtype=np.int64)
    model = GradientBoostingClassifier(n_estimators=int(n_estimators), max_depth=int(max_depth), random_state=0)
    model.fit(x, y)
    onnx_model = to_onnx(
        model,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, len(FEATURES)]))],
        target_opset=17,
        options={id(model): {"zipmap": False}},
    )
    path = Path(context.scratch) / "churn.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    print(f"trained {n_estimators} trees of depth {max_depth} on {len(train)} rows")
    return path


def evaluate(model: Path, test: pd.DataFrame) -> dict[str, float]:
    """AUC, accuracy and log loss of the exported model on the held-out rows (through onnxruntime, as served)."""
    import onnxruntime as ort
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = test[FEATURES].to_numpy(dtype=np.float32)
    y = test[TARGET].to_numpy(dtype=np.int64)
    labels, probabilities = session.run(None, {ONNX_INPUT: x})
    return {
        "auc": round(float(roc_auc_score(y, probabilities[:, 1])), 4),
        "accuracy": round(float(accuracy_score(y, labels)), 4),
        "log_loss": round(float(log_loss(y, probabilities)), 4),
    }
