"""Load a registered model version from a local, already verified file, for scoring.

Only formats that load without running code from the file are accepted: ONNX (onnxruntime) and
skops. skops trusts its own defaults plus the types the caller passes (taken from the repository's
ArtifactPolicy), never the list the artifact itself carries; a file with other types is refused
with their names. Pickle, joblib and cloudpickle are refused outright.

The result is a :class:`Scorer` with ``predict(X)`` (labels or values) and, for classifiers,
``predict_proba(X)`` (the probability of the positive class, label 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops.errors import MlopsError
from mlops.inspect.formats import inspect_artifact
from mlops.manifests.common import UNSAFE_FORMATS, ArtifactFormat, Signature, Task

FloatArray = npt.NDArray[np.float64]

_NUMPY_DTYPES: dict[str, type[np.generic]] = {
    "float16": np.float16,
    "float32": np.float32,
    "float": np.float32,
    "float64": np.float64,
    "double": np.float64,
    "int32": np.int32,
    "int64": np.int64,
}
_ONNX_TENSOR_DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}
# Names skl2onnx and other converters give the probability output of a classifier.
_PROBABILITY_OUTPUT_NAMES = ("probabilities", "output_probability", "probability", "probs")


class ModelLoadError(MlopsError):
    """A model that cannot be loaded or scored as asked (exit 1)."""


class UnsafeFormatRefused(ModelLoadError):
    """A format that runs code from the file when loaded."""


@dataclass(frozen=True)
class Scorer:
    """A loaded model: turn a feature matrix into predictions.

    ``input_dtype`` is what the model is fed (the signature's dtype, e.g. float32 for the example's
    ONNX models); ``input_width`` the number of feature columns it takes, when known.
    """

    ref: str
    task: Task
    artifact_format: ArtifactFormat
    input_dtype: type[np.generic]
    input_width: int | None
    _predict: Callable[[npt.NDArray[Any]], npt.NDArray[Any]]
    _predict_proba: Callable[[npt.NDArray[Any]], FloatArray] | None

    def predict(self, features: npt.ArrayLike) -> FloatArray:
        """Labels (classification) or predicted values (regression), one per row, as float64."""
        matrix = self._matrix(features)
        try:
            values = np.asarray(self._predict(matrix))
        except MlopsError:
            raise
        except Exception as exc:  # the runtime's own message says what it disliked about the input
            raise ModelLoadError(f"{self.ref}: prediction failed: {_first_line(exc)}") from None
        return _one_per_row(values, matrix.shape[0], self.ref, "predictions")

    def predict_proba(self, features: npt.ArrayLike) -> FloatArray:
        """P(label = 1) per row, for binary classifiers."""
        if self._predict_proba is None:
            raise ModelLoadError(f"{self.ref}: a {self.task.value} model gives no class probabilities")
        matrix = self._matrix(features)
        try:
            return _one_per_row(self._predict_proba(matrix), matrix.shape[0], self.ref, "probabilities")
        except MlopsError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{self.ref}: prediction failed: {_first_line(exc)}") from None

    def _matrix(self, features: npt.ArrayLike) -> npt.NDArray[Any]:
        matrix = np.asarray(features, dtype=self.input_dtype)
        if matrix.ndim != 2:
            raise ModelLoadError(f"{self.ref}: expected a 2-D feature matrix, got {matrix.ndim} dimension(s)")
        if self.input_width is not None and matrix.shape[1] != self.input_width:
            raise ModelLoadError(f"{self.ref}: takes {self.input_width} feature columns, was given {matrix.shape[1]}")
        return np.ascontiguousarray(matrix)


def load_scorer(
    path: Path,
    artifact_format: ArtifactFormat,
    task: Task,
    signature: Signature | None = None,
    trusted_skops_types: Sequence[str] = (),
    ref: str = "",
) -> Scorer:
    """Load the model file at ``path`` (already fetched and digest-verified) for scoring."""
    ref = ref or path.name
    if artifact_format in UNSAFE_FORMATS:
        raise UnsafeFormatRefused(
            f"{ref}: {artifact_format.value} artifacts run code from the file when loaded; "
            "compare loads only onnx and skops models"
        )
    detected = _detected_format(path, ref)
    if detected in UNSAFE_FORMATS:
        raise UnsafeFormatRefused(
            f"{ref}: the manifest says {artifact_format.value} but the file is {detected.value}, "
            "which runs code from the file when loaded; refusing to load it"
        )
    if detected is not artifact_format:
        raise ModelLoadError(f"{ref}: the manifest says {artifact_format.value} but the file is {detected.value}")
    if artifact_format is ArtifactFormat.ONNX:
        return _load_onnx(path, task, signature, ref)
    if artifact_format is ArtifactFormat.SKOPS:
        return _load_skops(path, task, signature, trusted_skops_types, ref)
    raise ModelLoadError(
        f"{ref}: loading {artifact_format.value} models for scoring is not supported yet (onnx and skops are)"
    )


def _detected_format(path: Path, ref: str) -> ArtifactFormat:
    # The manifest's word is not enough: a file whose bytes are pickle must never reach a loader.
    try:
        return inspect_artifact(path).format
    except MlopsError as exc:
        raise ModelLoadError(f"{ref}: {exc.message}") from None
    except Exception as exc:
        raise ModelLoadError(f"{ref}: not a model file we can read: {_first_line(exc)}") from None


# --------------------------------------------------------------------------- ONNX


def _load_onnx(path: Path, task: Task, signature: Signature | None, ref: str) -> Scorer:
    try:
        import onnxruntime
    except ImportError:
        raise ModelLoadError(f"{ref}: scoring ONNX models needs onnxruntime (pip install onnxruntime)") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: the runtime's warnings are not the user's business
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelLoadError(f"{ref}: not a loadable ONNX model: {_first_line(exc)}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ModelLoadError(f"{ref}: the ONNX graph takes {len(inputs)} inputs ({names}); compare feeds one matrix")
    graph_input = inputs[0]
    graph_dtype = _ONNX_TENSOR_DTYPES.get(graph_input.type)
    dtype = _signature_dtype(signature) or graph_dtype
    if dtype is None:
        raise ModelLoadError(f"{ref}: cannot feed the ONNX input {graph_input.name} of type {graph_input.type}")
    if graph_dtype is not None and dtype is not graph_dtype:
        # The runtime refuses any other dtype; say which of the two descriptions is wrong.
        raise ModelLoadError(
            f"{ref}: the signature says {np.dtype(dtype).name} but the ONNX graph takes {np.dtype(graph_dtype).name}"
        )
    width = _signature_width(signature) or _static_width(graph_input.shape)
    outputs = session.get_outputs()

    def run(matrix: npt.NDArray[Any], output: str) -> Any:
        return session.run([output], {graph_input.name: matrix})[0]

    if task is Task.CLASSIFICATION:
        probability_output = _probability_output(outputs)
        label_output = _label_output(outputs, probability_output)

        def proba(matrix: npt.NDArray[Any]) -> FloatArray:
            if probability_output is None:
                raise ModelLoadError(f"{ref}: the ONNX graph has no probability output; AUC and log_loss need one")
            return _positive_class_probability(run(matrix, probability_output), ref)

        def labels(matrix: npt.NDArray[Any]) -> npt.NDArray[Any]:
            if label_output is not None:
                return np.asarray(run(matrix, label_output))
            # No label output: the class with the larger probability, as a converted classifier would say.
            return (proba(matrix) > 0.5).astype(np.int64)

        return Scorer(ref, task, ArtifactFormat.ONNX, dtype, width, labels, proba)

    value_output = outputs[0].name

    def values(matrix: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.asarray(run(matrix, value_output))

    return Scorer(ref, task, ArtifactFormat.ONNX, dtype, width, values, None)


def _probability_output(outputs: Sequence[Any]) -> str | None:
    for output in outputs:
        if output.name in _PROBABILITY_OUTPUT_NAMES:
            return str(output.name)
    for output in outputs:
        # skl2onnx's ZipMap makes a seq(map(int64, tensor(float))); without it, a float tensor of shape [N, classes].
        if output.type.startswith("seq(map(") or (
            output.type in ("tensor(float)", "tensor(double)") and len(output.shape) == 2
        ):
            return str(output.name)
    return None


def _label_output(outputs: Sequence[Any], probability_output: str | None) -> str | None:
    for output in outputs:
        if output.name != probability_output and output.type in ("tensor(int64)", "tensor(int32)", "tensor(bool)"):
            return str(output.name)
    return None


def _positive_class_probability(raw: Any, ref: str) -> FloatArray:
    if isinstance(raw, list):
        # ZipMap output: one {class: probability} dict per row; the positive class is 1 (or True).
        if raw and set(raw[0]) - {0, 1}:
            raise ModelLoadError(f"{ref}: classes {sorted(raw[0])} are not 0/1; compare handles binary classifiers")
        return np.array([row.get(1, 0.0) for row in raw], dtype=np.float64)
    proba = np.asarray(raw, dtype=np.float64)
    if proba.ndim == 1:
        return proba
    if proba.ndim != 2 or proba.shape[1] not in (1, 2):
        raise ModelLoadError(f"{ref}: probabilities of shape {list(proba.shape)}; compare handles binary classifiers")
    # Columns follow the sorted classes (0, 1), as scikit-learn's classes_ and its converters order them.
    return proba[:, -1]


# --------------------------------------------------------------------------- skops


def _load_skops(path: Path, task: Task, signature: Signature | None, trusted_types: Sequence[str], ref: str) -> Scorer:
    try:
        import skops.io as skops_io
    except ImportError:
        raise ModelLoadError(f"{ref}: scoring skops models needs skops (pip install skops)") from None
    trusted = sorted(set(trusted_types))
    try:
        # Reading the type list runs no code from the file; it tells us what loading would construct.
        needed = skops_io.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelLoadError(f"{ref}: not a readable skops file: {_first_line(exc)}") from None
    untrusted = sorted(set(needed) - set(trusted))
    if untrusted:
        raise ModelLoadError(
            f"{ref}: the skops file needs types that are not trusted: {', '.join(untrusted)}; "
            "if you trust them, list them in spec.trustedSkopsTypes of an ArtifactPolicy"
        )
    try:
        model = skops_io.load(path, trusted=trusted)
    except Exception as exc:
        raise ModelLoadError(f"{ref}: cannot load the skops file: {_first_line(exc)}") from None
    if not callable(getattr(model, "predict", None)):
        raise ModelLoadError(f"{ref}: the skops file holds a {type(model).__name__}, which has no predict()")
    dtype = _signature_dtype(signature) or np.float64
    width = _signature_width(signature) or _int_or_none(getattr(model, "n_features_in_", None))

    def predict(matrix: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.asarray(model.predict(matrix))

    proba: Callable[[npt.NDArray[Any]], FloatArray] | None = None
    if task is Task.CLASSIFICATION:
        if not callable(getattr(model, "predict_proba", None)):
            raise ModelLoadError(f"{ref}: the {type(model).__name__} classifier has no predict_proba()")
        classes = [c.item() if hasattr(c, "item") else c for c in getattr(model, "classes_", [0, 1])]
        # bool classes compare equal to 0 and 1, so this also accepts False/True.
        if len(classes) > 2 or not set(classes) <= {0, 1}:
            raise ModelLoadError(f"{ref}: classes {classes} are not 0/1; compare handles binary classifiers")
        positive = classes.index(1) if 1 in classes else None

        def proba(matrix: npt.NDArray[Any]) -> FloatArray:
            table = np.asarray(model.predict_proba(matrix), dtype=np.float64)
            if positive is None:
                return np.zeros(table.shape[0])
            return table[:, positive]

    return Scorer(ref, task, ArtifactFormat.SKOPS, dtype, width, predict, proba)


# --------------------------------------------------------------------------- helpers


def _signature_dtype(signature: Signature | None) -> type[np.generic] | None:
    if signature is None or not signature.inputs:
        return None
    return _NUMPY_DTYPES.get(signature.inputs[0].dtype.lower())


def _signature_width(signature: Signature | None) -> int | None:
    if signature is None or not signature.inputs:
        return None
    return _static_width(signature.inputs[0].shape)


def _static_width(shape: Sequence[Any]) -> int | None:
    if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
        return shape[1]
    return None


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | np.integer) else None


def _one_per_row(values: npt.ArrayLike, rows: int, ref: str, what: str) -> FloatArray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.shape != (rows,):
        raise ModelLoadError(f"{ref}: {what} have shape {list(array.shape)}, expected one per row ({rows})")
    try:
        return array.astype(np.float64)
    except (TypeError, ValueError):
        raise ModelLoadError(f"{ref}: {what} are not numbers (e.g. {array[0]!r}); compare needs 0/1 labels") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
