"""What a model artifact is, decided from its bytes (never its extension), and what it carries.

Supported out of the box: ONNX, scikit-learn via skops, an MLflow model
directory (MLmodel file), safetensors and numpy ``.npz`` weights (with a model
class from the repository). Pickle, joblib and cloudpickle are recognised so
they can be refused by name: loading them runs code from the file.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import InputError
from mlops.manifests.common import ArtifactFormat, Signature, TensorSpec

SUPPORTED = (
    "ONNX (.onnx), scikit-learn saved with skops (.skops), an MLflow model directory (with an MLmodel file), "
    "safetensors or numpy .npz weights with --model-class module:Class from the repository"
)
_HEAD = 4096


class UnsupportedArtifact(InputError):
    """The bytes are not a model format we load safely."""


@dataclass
class ArtifactInfo:
    format: ArtifactFormat
    signature: Signature | None = None
    params: dict[str, str | bool | int | float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    flavor: str | None = None
    untrusted_types: list[str] = field(default_factory=list)


def inspect_artifact(path: Path) -> ArtifactInfo:
    if path.is_dir():
        if (path / "MLmodel").is_file():
            return _inspect_mlflow(path)
        raise UnsupportedArtifact(f"{path}: a directory that is not a model (no MLmodel file); supported: {SUPPORTED}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open("rb") as handle:
        head = handle.read(_HEAD)
    if not head:
        raise UnsupportedArtifact(f"{path}: empty file; supported: {SUPPORTED}")
    pickled = _pickle_kind(head)
    if pickled is not None:
        return ArtifactInfo(format=pickled)
    if head.startswith(b"PK\x03\x04"):
        return _inspect_zip(path)
    if _looks_like_safetensors(head, path.stat().st_size):
        return _inspect_safetensors(path)
    return _inspect_onnx(path, head)


def _pickle_kind(head: bytes) -> ArtifactFormat | None:
    compressed_joblib = head[:2] in (b"\x78\x9c", b"\x78\x01", b"\x78\xda") or head.startswith(b"ZF")
    if compressed_joblib:
        return ArtifactFormat.JOBLIB
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        if b"cloudpickle" in head:
            return ArtifactFormat.CLOUDPICKLE
        if b"joblib" in head or b"NumpyArrayWrapper" in head:
            return ArtifactFormat.JOBLIB
        return ArtifactFormat.PICKLE
    return None


def _inspect_zip(path: Path) -> ArtifactInfo:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "schema.json" in names:
                schema = json.loads(archive.read("schema.json"))
                return _skops_info(path, schema)
            if names and all(n.endswith(".npy") for n in names):
                return ArtifactInfo(format=ArtifactFormat.NPZ, metadata={"arrays": ",".join(sorted(names))})
    except (zipfile.BadZipFile, json.JSONDecodeError, KeyError) as exc:
        raise UnsupportedArtifact(f"{path}: a damaged zip archive ({exc}); supported: {SUPPORTED}") from None
    raise UnsupportedArtifact(f"{path}: a zip archive that is neither skops nor .npz; supported: {SUPPORTED}")


def _skops_info(path: Path, schema: dict[str, Any]) -> ArtifactInfo:
    import skops.io

    try:
        untrusted = sorted(skops.io.get_untrusted_types(file=path))
    except Exception as exc:  # skops raises many types for damaged files
        raise UnsupportedArtifact(f"{path}: not a readable skops file ({exc})") from None
    params: dict[str, str | bool | int | float] = {}
    content = schema.get("content", {})
    attributes = content.get("content", {}) if isinstance(content, dict) else {}
    if isinstance(attributes, dict):
        for key, node in attributes.items():
            # Fitted attributes end with "_" by scikit-learn's convention; parameters do not.
            if key.endswith("_") or key.startswith("_") or not isinstance(node, dict):
                continue
            value = node.get("content")
            if node.get("is_json") and isinstance(value, str):
                # skops keeps JSON-able values as JSON text
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    continue
            elif node.get("__loader__") != "JSONLoader":
                continue
            if isinstance(value, str | bool | int | float):
                params[key] = value
    estimator = f"{schema.get('__module__', '')}.{schema.get('__class__', '')}".strip(".")
    return ArtifactInfo(
        format=ArtifactFormat.SKOPS,
        params=params,
        metadata={"estimator": estimator, "skops_protocol": str(schema.get("protocol", ""))},
        flavor="sklearn",
        untrusted_types=untrusted,
    )


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 2 <= header_len <= size - 8 and head[8:9] == b"{"


def _inspect_safetensors(path: Path) -> ArtifactInfo:
    with path.open("rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        if header_len > 100 * 1024 * 1024:
            raise UnsupportedArtifact(f"{path}: safetensors header of {header_len} bytes is not plausible")
        try:
            header = json.loads(handle.read(header_len))
        except json.JSONDecodeError as exc:
            raise UnsupportedArtifact(f"{path}: damaged safetensors header ({exc})") from None
    metadata = {str(k): str(v) for k, v in (header.pop("__metadata__", None) or {}).items()}
    metadata["tensors"] = str(len(header))
    return ArtifactInfo(format=ArtifactFormat.SAFETENSORS, metadata=metadata)


_ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "string",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
}


def _inspect_onnx(path: Path, head: bytes) -> ArtifactInfo:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if head[:1] == b"\x08":  # ONNX files begin with the ir_version field
            raise UnsupportedArtifact(f"{path}: not a valid ONNX model (truncated or damaged: {detail})") from None
        raise UnsupportedArtifact(f"{path}: unrecognised model format; supported: {SUPPORTED}") from None
    if model.ir_version <= 0 or not model.graph.node:
        raise UnsupportedArtifact(f"{path}: unrecognised model format; supported: {SUPPORTED}")

    def tensors(values: Any) -> list[TensorSpec]:
        out = []
        for value in values:
            tensor = value.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            out.append(TensorSpec(name=value.name, dtype=_ONNX_DTYPES.get(tensor.elem_type, "unknown"), shape=shape))
        return out

    metadata = {p.key: p.value for p in model.metadata_props}
    metadata["producer"] = f"{model.producer_name} {model.producer_version}".strip()
    metadata["opset"] = ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import)
    return ArtifactInfo(
        format=ArtifactFormat.ONNX,
        signature=Signature(inputs=tensors(model.graph.input), outputs=tensors(model.graph.output)),
        metadata=metadata,
        flavor="onnx",
    )


def _inspect_mlflow(path: Path) -> ArtifactInfo:
    import yaml

    try:
        mlmodel = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UnsupportedArtifact(f"{path / 'MLmodel'}: not readable ({exc})") from None
    if not isinstance(mlmodel, dict) or not isinstance(mlmodel.get("flavors"), dict):
        raise UnsupportedArtifact(f"{path / 'MLmodel'}: has no flavors; not an MLflow model")
    flavors = sorted(mlmodel["flavors"])
    flavor = next((f for f in flavors if f != "python_function"), flavors[0] if flavors else None)
    signature = _mlflow_signature(mlmodel.get("signature"))
    run_id = mlmodel.get("run_id")
    params, metrics = _mlflow_run_values(path)
    return ArtifactInfo(
        format=ArtifactFormat.MLFLOW,
        signature=signature,
        params=params,
        metrics=metrics,
        metadata={"flavors": ",".join(flavors), "model_uuid": str(mlmodel.get("model_uuid", ""))},
        run_id=str(run_id) if run_id else None,
        flavor=flavor,
    )


def _mlflow_signature(raw: Any) -> Signature | None:
    if not isinstance(raw, dict):
        return None

    def columns(text: Any) -> list[TensorSpec]:
        try:
            items = json.loads(text) if isinstance(text, str) else []
        except json.JSONDecodeError:
            return []
        out = []
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                continue
            dtype = item.get("tensor-spec", {}).get("dtype") or item.get("type") or "unknown"
            shape = item.get("tensor-spec", {}).get("shape", [-1])
            out.append(TensorSpec(name=str(item.get("name", f"col{i}")), dtype=str(dtype), shape=list(shape)))
        return out

    return Signature(inputs=columns(raw.get("inputs")), outputs=columns(raw.get("outputs")))


def _mlflow_run_values(model_dir: Path) -> tuple[dict[str, str | bool | int | float], dict[str, float]]:
    """Params and last metric values of the run that logged the model, when it sits in an mlruns folder."""
    for parent in list(model_dir.parents)[:4]:
        if (parent / "meta.yaml").is_file() and ((parent / "metrics").is_dir() or (parent / "params").is_dir()):
            params: dict[str, str | bool | int | float] = {}
            for file in sorted((parent / "params").glob("*")) if (parent / "params").is_dir() else []:
                params[file.name] = file.read_text(encoding="utf-8").strip()
            metrics: dict[str, float] = {}
            for file in sorted((parent / "metrics").glob("*")) if (parent / "metrics").is_dir() else []:
                lines = file.read_text(encoding="utf-8").split("\n")
                last = [line for line in lines if line.strip()]
                if last:
                    try:
                        metrics[file.name] = float(last[-1].split()[1])
                    except (IndexError, ValueError):
                        continue
            return params, metrics
    return {}, {}


def pack_directory(path: Path) -> bytes:
    """A directory as a deterministic tar (sorted names, no times or owners): the same tree, the same digest."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
            rel = file.relative_to(path).as_posix()
            data = file.read_bytes()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
