"""One attempt of one pipeline step, inside a Ray worker: resolve inputs, call the code, store and check outputs.

The step's code is a ``module:function`` in the pipeline's folder (at the run's commit), called with one
keyword argument per input:

* a dataset version: a pandas DataFrame when it is one table (csv, parquet, json lines), otherwise the
  ``Path`` of a folder holding its files;
* an earlier step's output: a DataFrame (table), a dict (metrics) or a ``Path`` (model, file);
* a parameter or a literal: its value;
* ``context`` (when the function has such a parameter): run id, step, attempt and a scratch folder.

It returns a dict with one entry per declared output (a bare value when there is one output): a DataFrame
for a table, a dict of numbers for metrics, a path (or bytes) for a model or a file. A ``command`` step
runs in the pipeline's folder with ``MLOPS_INPUTS`` (JSON: name -> value or file path) and
``MLOPS_OUTPUT_DIR`` in its environment and writes each output as a file named after it there.

The result is a plain dict for the driver: ``{"ok": True, "outputs": {...}}``, or ``{"ok": False,
"error": ..., "retry": bool}`` (a failed output check is not retried: the same code and inputs would
fail it again). An exception in the step's code is retried; so is a worker that dies (the driver sees
the task fail).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import io
import json
import os
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.analysis.output_checks import check_output
from mlops.planner.pipeline_run import DatasetInput, StepInput, StepPlan, step_cache_key
from mlops.planner.pipeline_state import OutputRecord
from mlops.stores.artifacts import ArtifactStore
from mlops.stores.factory import open_artifact_store
from mlops.stores.pipeline_runs import PipelineRunStore

TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}
_loaded_src: str | None = None
_stores: dict[tuple[str, str], ArtifactStore] = {}  # per worker process: (store spec, repository root) -> store
_run_stores: dict[str, PipelineRunStore] = {}  # per worker process: the step cache of each runs folder
_takes_context: dict[str, bool] = {}  # per loaded code folder: module:function -> has a ``context`` parameter
_folders: set[str] = set()  # folders this process made (or found), so each costs one mkdir per process


@dataclass(frozen=True)
class StepContext:
    run_id: str
    step: str
    attempt: int
    scratch: Path  # a folder of the step's own for files it writes (kept until the run ends)
    params: Mapping[str, Any]


def execute(payload: Mapping[str, Any], *needed: Mapping[str, Any]) -> dict[str, Any]:
    """Run one attempt; never raises for a failure of the step's own code (the result says it).

    ``needed`` are the results of steps the driver submitted this one behind before they finished (Ray
    passes them once they are done; ``payload["awaited"]`` names them in order). When one of them did not
    succeed this attempt never starts: the result is ``{"ok": False, "blocked": step}`` and the driver
    does not count it. Otherwise their outputs join the known ones, and the step's cache is looked up
    here, since the driver could not compute the key before those outputs existed.
    """
    raw = payload["step"]
    step = raw if isinstance(raw, StepPlan) else StepPlan.from_json_step(raw)
    started = time.time()
    if needed:
        upstream = dict(payload["upstream"])
        for name, result in zip(payload["awaited"], needed, strict=True):
            if not result.get("ok"):
                return {"ok": False, "blocked": name}
            for output, record in result.get("outputs", {}).items():
                upstream[f"{name}/{output}"] = record
        payload = {**payload, "upstream": upstream}
        hit = _cached(payload, step)
        if hit is not None:
            return hit
    log_path = Path(payload["log"])
    try:
        log = log_path.open("a", encoding="utf-8")
    except FileNotFoundError:  # the run's logs folder is made with the run; a worker on another machine makes it
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("a", encoding="utf-8")
    with log, _captured(log):
        try:
            return {**_execute(payload, step), "started_at": started, "cache_key": payload.get("cache_key")}
        except _StepFailed as failed:
            _say(failed.message)
            return {"ok": False, "error": failed.message, "retry": failed.retry, "node": socket.gethostname()}
        except Exception as exc:  # the step's own code failed: the log has the traceback, the run the last line
            traceback.print_exc()
            summary = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return {"ok": False, "error": summary, "retry": True, "node": socket.gethostname()}


def _cached(payload: dict[str, Any], step: StepPlan) -> dict[str, Any] | None:
    """The step's outputs from the cache as a result, a request to the driver to look, or None (run it).

    ``payload["cache_key"]`` is set either way. The cache is the driver's SQLite file, read here only on
    the driver's node; on another node the path means nothing, so the step hands back to the driver
    (``{"ok": False, "recheck": True}``), which looks the key up and submits the step again on a miss.
    """
    spec = payload["cache"]
    upstream = {_pair(k): str(v["digest"]) for k, v in payload["upstream"].items()}
    key = step_cache_key(spec["pipeline"], spec["code"], step, upstream)
    payload["cache_key"] = key
    if key is None or not step.cache:
        return None
    if spec["node"] != _node_id():
        return {"ok": False, "recheck": True, "cache_key": key}
    runs = _run_stores.get(spec["folder"])
    if runs is None:
        runs = _run_stores[spec["folder"]] = PipelineRunStore(Path(spec["folder"]))
    hit = runs.cache_get(key)
    if hit is None or set(hit[1]) != set(step.outputs):
        return None
    store = _open_store(str(payload["store"]), str(payload["root"]))
    if store.missing([o.digest for o in hit[1].values()]):
        return None
    return {"ok": True, "cached_from": hit[0], "cache_key": key, "outputs": {k: vars(v) for k, v in hit[1].items()}}


def _node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


def _say(line: str) -> None:
    sys.stdout.write(f"[mlops] {line}\n")
    sys.stdout.flush()


class _StepFailed(Exception):
    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry


@contextlib.contextmanager
def _captured(log: io.TextIOBase) -> Iterator[None]:
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def _open_store(spec: str, root: str) -> ArtifactStore:
    """The store of ``spec``, made once per worker process (an S3 client is costly to make for every step)."""
    key = (spec, root)
    store = _stores.get(key)
    if store is None:
        store = _stores[key] = open_artifact_store(spec, Path(root))
    return store


def _execute(payload: Mapping[str, Any], step: StepPlan) -> dict[str, Any]:
    store = _open_store(str(payload["store"]), str(payload["root"]))
    scratch = Path(payload["scratch"])  # made when something uses it: most steps never do
    upstream = {_pair(k): OutputRecord(**v) for k, v in payload["upstream"].items()}
    cache = Path(payload["blob_cache"])
    _say(f"step {step.name} attempt {payload['attempt']} on {socket.gethostname()}")
    if step.run is not None:
        values = _call(payload, step, store, upstream, cache, scratch)
    else:
        values = _run_command(payload, step, store, upstream, cache, scratch)
    outputs: dict[str, OutputRecord] = {}
    failures: list[str] = []
    for name, spec in step.outputs.items():
        record = _store_output(store, name, str(spec.get("type", "file")), values[name], scratch.parent, step.name)
        outputs[name] = record
        failures += check_output(name, spec, record.summary)
    if failures:
        raise _StepFailed("; ".join(failures), retry=False)
    return {"ok": True, "outputs": {k: vars(v) for k, v in outputs.items()}, "node": socket.gethostname()}


# --------------------------------------------------------------------------- inputs


def _pair(key: str) -> tuple[str, str]:
    step, _, output = key.partition("/")
    return step, output


def _call(
    payload: Mapping[str, Any],
    step: StepPlan,
    store: ArtifactStore,
    upstream: Mapping[tuple[str, str], OutputRecord],
    cache: Path,
    scratch: Path,
) -> dict[str, Any]:
    assert step.run is not None
    function = _load_callable(Path(payload["src"]), step.run)
    kwargs = {name: _input_value(store, item, upstream, cache) for name, item in step.inputs.items()}
    wants = _takes_context.get(step.run)
    if wants is None:
        wants = _takes_context[step.run] = "context" in inspect.signature(function).parameters
    if wants:
        _folder(scratch)
        kwargs["context"] = StepContext(
            payload["run_id"], step.name, int(payload["attempt"]), scratch, dict(payload.get("params", {}))
        )
    result = function(**kwargs)
    return _named_outputs(step, result)


def _named_outputs(step: StepPlan, result: Any) -> dict[str, Any]:
    declared = list(step.outputs)
    if not declared:
        return {}
    if len(declared) == 1 and not (isinstance(result, dict) and set(result) == set(declared)):
        return {declared[0]: result}
    if not isinstance(result, dict):
        raise _StepFailed(
            f"{step.run} returned {type(result).__name__}; expected a dict with {', '.join(declared)}", retry=False
        )
    missing = [name for name in declared if name not in result]
    extra = [name for name in result if name not in step.outputs]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no {', '.join(missing)}")
        if extra:
            parts.append(f"undeclared {', '.join(map(str, extra))}")
        raise _StepFailed(f"{step.run} returned {'; '.join(parts)} (outputs: {', '.join(declared)})", retry=False)
    return dict(result)


def _load_callable(src: Path, target: str) -> Any:
    """Import ``module:function`` from the run's copy of the pipeline, never from an earlier run's copy."""
    global _loaded_src
    folder = str(src)
    if _loaded_src != folder:
        if _loaded_src is not None:
            stale = [
                name
                for name, module in sys.modules.items()
                if (getattr(module, "__file__", None) or "").startswith(_loaded_src + os.sep)
            ]
            for name in stale:
                del sys.modules[name]
            with contextlib.suppress(ValueError):
                sys.path.remove(_loaded_src)
        sys.path.insert(0, folder)
        importlib.invalidate_caches()
        _takes_context.clear()
        _loaded_src = folder
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _StepFailed(f"cannot import {module_name} ({src}): {type(exc).__name__}: {exc}", retry=False) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise _StepFailed(f"{module_name} has no function {attribute}", retry=False)
    return function


def _input_value(
    store: ArtifactStore, item: StepInput, upstream: Mapping[tuple[str, str], OutputRecord], cache: Path
) -> Any:
    if item.kind == "value":
        return item.value
    if item.dataset is not None:
        folder = _dataset_folder(store, item.dataset, cache)
        tables = [rel for rel, _, _ in item.dataset.files if Path(rel).suffix.lower() in TABLE_SUFFIXES]
        if len(item.dataset.files) == 1 and len(tables) == 1:
            return _read_table(folder / tables[0])
        return folder
    assert item.upstream is not None
    record = upstream[item.upstream]
    if record.type == "metrics":
        metrics = _metrics_in_record(record)
        if metrics is not None:
            return metrics
    path = _blob(store, record, cache)
    if record.type == "table":
        return _read_table(path)
    if record.type == "metrics":
        return json.loads(path.read_text(encoding="utf-8"))
    return path


def _metrics_in_record(record: OutputRecord) -> dict[str, Any] | None:
    """Metrics from the upstream record's summary when they are exactly the stored blob's bytes (no fetch), else None.

    The blob is ``json.dumps(metrics, sort_keys=True)`` of the same dict the summary holds: when that text hashes
    to the record's digest it *is* the blob, so the step gets what reading the blob would give.
    """
    metrics = record.summary.get("metrics")
    if not isinstance(metrics, dict):
        return None
    try:
        data = json.dumps(metrics, sort_keys=True).encode("utf-8")
    except (TypeError, ValueError):
        return None
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != record.digest:
        return None
    loaded: dict[str, Any] = json.loads(data)
    return loaded


def _dataset_folder(store: ArtifactStore, dataset: DatasetInput, cache: Path) -> Path:
    """The version's files, fetched once per machine (verified against their digests while copied)."""
    folder = cache / "datasets" / dataset.fingerprint.removeprefix("sha256:")
    for rel, digest, _size in dataset.files:
        target = folder / rel
        if not target.is_file():
            store.get_file(digest, target)
    return folder


def _blob(store: ArtifactStore, record: OutputRecord, cache: Path) -> Path:
    path = cache / "blobs" / record.digest.removeprefix("sha256:") / record.filename
    if not path.is_file():
        store.get_file(record.digest, path)
    return path


def _read_table(path: Path) -> Any:
    import pandas as pd

    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind == "parquet":
        return pd.read_parquet(path)
    if kind == "jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_csv(path)


# --------------------------------------------------------------------------- outputs


def _store_output(store: ArtifactStore, name: str, kind: str, value: Any, staging: Path, step: str) -> OutputRecord:
    """Put one output into the store; a value held in memory goes through one file in ``staging``, removed after."""
    summary: dict[str, Any] = {}
    if kind == "table":
        import pandas as pd  # only here: a worker that never sees a table never pays for importing pandas

        if not isinstance(value, pd.DataFrame):
            raise _StepFailed(f"output {name}: a table must be a pandas DataFrame, got {type(value).__name__}", False)
        summary = {"rows": len(value), "columns": [str(c) for c in value.columns]}
        with _staged(staging, step, name) as path:
            value.to_parquet(path, index=False)
            digest, size = store.put_file(path)
        return OutputRecord(digest=digest, size=size, type=kind, filename=f"{name}.parquet", summary=summary)
    if kind == "metrics":
        if not isinstance(value, Mapping):
            raise _StepFailed(f"output {name}: metrics must be a dict of numbers, got {type(value).__name__}", False)
        metrics = {
            str(k): (float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)
            for k, v in value.items()
        }
        with _staged(staging, step, name) as path:
            path.write_text(json.dumps(metrics, sort_keys=True), encoding="utf-8")
            digest, size = store.put_file(path)
        return OutputRecord(digest=digest, size=size, type=kind, filename=f"{name}.json", summary={"metrics": metrics})
    if isinstance(value, bytes | bytearray):
        with _staged(staging, step, name) as path:
            path.write_bytes(bytes(value))
            if kind == "model":
                summary = {"signature": _has_signature(path)}
            digest, size = store.put_file(path)
        return OutputRecord(digest=digest, size=size, type=kind, filename=name, summary=summary)
    path = _file_value(name, value)
    if kind == "model":
        summary = {"signature": _has_signature(path)}
    digest, size = store.put_file(path)
    return OutputRecord(digest=digest, size=size, type=kind, filename=path.name, summary=summary)


@contextlib.contextmanager
def _staged(staging: Path, step: str, name: str) -> Iterator[Path]:
    """A new file name in ``staging`` (the run's scratch folder: no folder to make and remove), unlinked after."""
    path = _folder(staging) / f".{step}.{name}.{os.getpid()}.{uuid.uuid4().hex}"
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _folder(path: Path) -> Path:
    """``path``, made if need be; once made (or found) by this process it is not asked for again."""
    key = str(path)
    if key not in _folders:
        path.mkdir(parents=True, exist_ok=True)
        _folders.add(key)
    return path


def _file_value(name: str, value: Any) -> Path:
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise _StepFailed(f"output {name}: {path} is not a file", retry=False)
        return path
    raise _StepFailed(f"output {name}: expected a file path or bytes, got {type(value).__name__}", retry=False)


def _has_signature(path: Path) -> bool:
    from mlops.inspect.formats import inspect_artifact

    try:
        return inspect_artifact(path).signature is not None
    except Exception:  # an unknown format has no signature we can read
        return False


def _run_command(
    payload: Mapping[str, Any],
    step: StepPlan,
    store: ArtifactStore,
    upstream: Mapping[tuple[str, str], OutputRecord],
    cache: Path,
    scratch: Path,
) -> dict[str, Any]:
    assert step.command is not None
    inputs: dict[str, Any] = {}
    for name, item in step.inputs.items():
        if item.kind == "value":
            inputs[name] = item.value
        elif item.dataset is not None:
            folder = _dataset_folder(store, item.dataset, cache)
            files = item.dataset.files
            inputs[name] = str(folder / files[0][0]) if len(files) == 1 else str(folder)
        elif item.upstream is not None:
            inputs[name] = str(_blob(store, upstream[item.upstream], cache))
    out_dir = _folder(scratch / "outputs")
    env = {**os.environ, "MLOPS_INPUTS": json.dumps(inputs), "MLOPS_OUTPUT_DIR": str(out_dir)}
    sys.stdout.flush()
    completed = subprocess.run(
        list(step.command), cwd=payload["src"], env=env, stdout=sys.stdout, stderr=subprocess.STDOUT, check=False
    )
    if completed.returncode != 0:
        raise _StepFailed(f"{' '.join(step.command)} exited with {completed.returncode}", retry=True)
    values: dict[str, Any] = {}
    for name, spec in step.outputs.items():
        found = sorted(out_dir.glob(f"{name}.*")) + ([out_dir / name] if (out_dir / name).is_file() else [])
        if not found:
            raise _StepFailed(f"output {name}: the command wrote no {name} or {name}.* in $MLOPS_OUTPUT_DIR", False)
        if spec.get("type") == "metrics":
            values[name] = json.loads(found[0].read_text(encoding="utf-8"))
        elif spec.get("type") == "table":
            values[name] = _read_table(found[0])
        else:
            values[name] = found[0]
    return values
