"""The model server: one Ray Serve deployment per model version (its own application).

At start it fetches the artifact by digest from the content-addressed store into a local cache (the store
verifies the digest; a cached copy is hashed again before use), loads it with
:func:`mlops.inspect.loading.load_scorer` (ONNX, or skops with the repository's trusted types) and runs a
canary prediction on the signature's example. ``check_health`` (called by Serve at start and then every
``health_check_period_s``) fails unless all three hold, so a version that cannot serve never receives
traffic: its application ends DEPLOY_FAILED with our reason.

Requests come from the router (:meth:`ModelServer.predict`, raw JSON bytes in, status and bytes out) or,
for a bare deployment, over HTTP (:meth:`ModelServer.__call__`). Each prediction is logged through the
prediction log's background writer (version, environment, commit, inputs, output, latency).

Ray and Starlette are imported only where Serve runs this code.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlops.errors import MlopsError
from mlops.inspect.loading import ModelLoadError, Scorer, load_scorer
from mlops.manifests.common import ArtifactFormat, Signature, Task
from mlops.stores.artifacts import sha256_file
from mlops.stores.factory import open_artifact_store
from mlops.stores.predictions import BackgroundWriter, PredictionRecord, open_prediction_log

DEPLOYMENT_NAME = "ModelServer"
MAX_LOGGED_INPUT_CHARS = 20_000


@dataclass(frozen=True)
class ServerSpec:
    """What one model server serves; the application's ``args`` (they change only with the version)."""

    environment: str
    deployment: str
    model: str
    version: int
    digest: str
    format: str
    task: str
    store: str
    cache_dir: str
    predictions: str | None = None
    commit: str = ""
    signature: dict[str, Any] | None = None
    trusted_skops_types: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> ServerSpec:
        known = {k: v for k, v in args.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"


class ModelServer:
    """The deployment class (plain Python: Serve wraps it in :func:`build`)."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = dict(args)
        self.spec = ServerSpec.from_args(args)
        self.loaded = False
        self.digest_verified = False
        self.error: str | None = None
        self.scorer: Scorer | None = None
        self.signature = Signature.model_validate(self.spec.signature) if self.spec.signature else None
        self._writer: BackgroundWriter | None = None
        try:
            path = self._fetch()
            self.digest_verified = True
            self.scorer = load_scorer(
                path,
                ArtifactFormat(self.spec.format),
                Task(self.spec.task),
                self.signature,
                self.spec.trusted_skops_types,
                self.spec.ref,
            )
            self.loaded = True
        except MlopsError as exc:
            self.error = exc.message
        except Exception as exc:
            self.error = f"{self.spec.ref}: {type(exc).__name__}: {exc}"
        if self.spec.predictions:
            try:
                self._writer = BackgroundWriter(open_prediction_log(self.spec.predictions))
            except MlopsError as exc:
                self.error = self.error or exc.message

    # ------------------------------------------------------------------ loading

    def _fetch(self) -> Path:
        hexdigest = self.spec.digest.removeprefix("sha256:")
        cached = Path(self.spec.cache_dir) / hexdigest[:2] / hexdigest[2:]
        if cached.is_file():
            digest, _ = sha256_file(cached)
            if digest == self.spec.digest:
                return cached
            with contextlib.suppress(OSError):
                cached.unlink()
        store = open_artifact_store(self.spec.store, Path(self.spec.cache_dir))
        store.get_file(self.spec.digest, cached)  # verifies the digest while copying
        digest, _ = sha256_file(cached)
        if digest != self.spec.digest:
            raise ModelLoadError(f"{self.spec.ref}: the cached artifact hashes to {digest}, not {self.spec.digest}")
        return cached

    def canary_input(self) -> list[list[float]]:
        if self.signature is not None and self.signature.example:
            return [list(row) for row in self.signature.example]
        width = self.scorer.input_width if self.scorer is not None else None
        return [[0.0] * (width or 1)]

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "model": self.spec.model,
            "version": self.spec.version,
            "digest": self.spec.digest,
            "loaded": self.loaded,
            "digest_verified": self.digest_verified,
            "canary": False,
            "error": self.error,
        }
        if self.loaded and self.scorer is not None:
            try:
                report["canary_output"] = self._outputs(np.asarray(self.canary_input()))["predictions"]
                report["canary"] = True
            except MlopsError as exc:
                report["error"] = f"canary prediction on the signature's example failed: {exc.message}"
            except Exception as exc:
                report["error"] = f"canary prediction on the signature's example failed: {type(exc).__name__}: {exc}"
        report["healthy"] = bool(report["loaded"] and report["digest_verified"] and report["canary"])
        if self._writer is not None:
            report["prediction_log"] = self._writer.stats()
        return report

    def describe_args(self) -> dict[str, Any]:
        """The arguments this server was built with (the router builds an in-process copy from them)."""
        return dict(self.args)

    def check_health(self) -> None:
        report = self.health()
        if not report["healthy"]:
            raise RuntimeError(f"mlops health check failed: {report['error'] or 'model not loaded'}")

    # ------------------------------------------------------------------ predictions

    def _outputs(self, matrix: Any) -> dict[str, Any]:
        assert self.scorer is not None
        predictions = self.scorer.predict(matrix)
        out: dict[str, Any] = {}
        if self.scorer.task is Task.CLASSIFICATION:
            out["predictions"] = [int(v) for v in predictions]
            with contextlib.suppress(ModelLoadError):
                out["probabilities"] = [round(float(v), 6) for v in self.scorer.predict_proba(matrix)]
        else:
            out["predictions"] = [float(v) for v in predictions]
        return out

    def score(self, body: bytes, prediction_id: str) -> tuple[int, dict[str, Any]]:
        """Parse a request body and predict: (HTTP status, JSON document)."""
        if not self.loaded or self.scorer is None:
            return 503, {"error": f"{self.spec.ref} is not loaded: {self.error}"}
        try:
            document = json.loads(body or b"null")
        except ValueError as exc:
            return 400, {"error": f"the request body is not JSON: {exc}"}
        if not isinstance(document, dict) or "inputs" not in document:
            return 400, {"error": 'expected a JSON object {"inputs": [[...], ...]}'}
        inputs = document["inputs"]
        try:
            matrix = np.asarray(inputs, dtype=np.float64)
            if matrix.ndim == 1:
                matrix = matrix.reshape(1, -1)
            out = self._outputs(matrix)
        except ModelLoadError as exc:
            return 400, {"error": exc.message}
        except (TypeError, ValueError) as exc:
            return 400, {"error": f"inputs must be a matrix of numbers: {exc}"}
        except Exception as exc:
            return 500, {"error": f"{self.spec.ref}: {type(exc).__name__}: {exc}"}
        return 200, {"id": prediction_id, "model": self.spec.model, "version": self.spec.version, **out}

    async def predict(self, body: bytes, prediction_id: str, log: bool = True) -> tuple[int, bytes]:
        started = time.perf_counter()
        status, document = self.score(body, prediction_id)
        payload = json.dumps(document).encode()
        if log and self._writer is not None:
            inputs = body.decode("utf-8", errors="replace")[:MAX_LOGGED_INPUT_CHARS]
            self._writer.submit(
                PredictionRecord(
                    id=prediction_id,
                    time=time.time(),
                    environment=self.spec.environment,
                    deployment=self.spec.deployment,
                    model=self.spec.model,
                    version=self.spec.version,
                    commit=self.spec.commit,
                    inputs=inputs,
                    outputs=payload.decode(),
                    latency_ms=(time.perf_counter() - started) * 1000,
                    status=status,
                )
            )
        return status, payload

    async def __call__(self, request: Any) -> Any:
        """Direct HTTP (a bare deployment without the router)."""
        from starlette.responses import Response

        if request.method == "GET":
            return Response(json.dumps(self.health()), media_type="application/json")
        prediction_id = uuid.uuid4().hex
        status, payload = await self.predict(await request.body(), prediction_id)
        headers = {"X-Model-Version": self.spec.ref, "X-Prediction-Id": prediction_id}
        return Response(payload, status_code=status, media_type="application/json", headers=headers)

    def __del__(self) -> None:
        writer = getattr(self, "_writer", None)
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()


def build(args: dict[str, Any]) -> Any:
    """Serve's application builder (``import_path: mlops.appliers.server:build``)."""
    from ray import serve

    return serve.deployment(name=DEPLOYMENT_NAME)(ModelServer).bind(args)
