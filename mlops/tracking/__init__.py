"""The tracking API training code and pipelines call (UC-13)::

import mlops

with mlops.start_run(project="retention", experiment="churn-gbm", params={"depth": 6}) as run:
    run.log_metric("loss", 0.31, step=10)
    run.log_metrics({"auc": 0.91, "accuracy": 0.87})
    run.log_artifact("model.onnx")
"""

from __future__ import annotations

from mlops.tracking.run import Run, start_run

__all__ = ["Run", "start_run"]
