"""`mlops runs import-mlflow URI`: bring MLflow runs over, so a team can switch (UC-13).

Reads MLflow's own storage, without MLflow installed:

* an ``mlruns`` folder (``file:`` URI or path): ``<experiment>/meta.yaml``, ``<experiment>/<run>/meta.yaml``,
  ``params/``, ``metrics/`` (lines ``timestamp value step``), ``tags/``, ``artifacts/``;
* its SQLite database (``sqlite:///mlflow.db``, MLflow's default backend since 3.7): tables ``experiments``,
  ``runs``, ``params``, ``metrics``, ``tags``; artifacts from each run's ``artifact_uri`` (or, when the
  database was moved, the ``<run id>/artifacts`` folder found beside it);
* a tracking server (``http(s)://``): its REST API (experiments/search, runs/search,
  metrics/get-history, artifacts/list and the server's artifact proxy).

Run ids are kept, so importing again skips what is already there. Names our store refuses are renamed
and reported: ``/`` becomes ``.`` (``train/auc`` -> ``train.auc``), other characters ``_``. Artifact
files keep their names; an artifact folder (an MLflow model, say) is packed as ``<folder>.tar``.
Non-finite metric values (MLflow stores NaN) are left out and counted.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.errors import InputError
from mlops.stores.tracking import (
    KEY_MAX,
    ArtifactEntry,
    RunRecord,
    RunStatus,
    TrackingStore,
)

_STATUS = {
    "FINISHED": RunStatus.FINISHED,
    "FAILED": RunStatus.FAILED,
    "KILLED": RunStatus.KILLED,
    "RUNNING": RunStatus.CRASHED,
    "SCHEDULED": RunStatus.CRASHED,
}
_FILE_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.:+-]")
HTTP_TIMEOUT_S = 30


@dataclass
class MlflowRun:
    run_id: str
    experiment: str
    name: str
    status: str
    start_ms: int
    end_ms: int | None
    user: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)  # key, value, step, timestamp ms
    artifacts: Path | None = None  # a local folder holding the run's artifacts


@dataclass
class ImportSummary:
    source: str
    project: str
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    metric_points: int = 0
    artifacts: int = 0
    notes: list[str] = field(default_factory=list)


def key_name(key: str) -> str:
    fixed = _BAD_KEY_CHARS.sub("_", key.replace("/", ".").replace("\\", "."))
    fixed = re.sub(r"\.{2,}", ".", fixed).lstrip(".-") or "_"
    return fixed[:KEY_MAX]


def experiment_name(name: str) -> str:
    fixed = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return (fixed or "default")[:63]


# --------------------------------------------------------------------------- readers


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read MLflow metadata: {str(exc).splitlines()[0]}") from None
    return data if isinstance(data, dict) else {}


def _files_under(folder: Path) -> Iterator[tuple[str, Path]]:
    """(key with '/' for nested folders, file) for every file: MLflow writes 'a/b' keys as folders."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path.relative_to(folder).as_posix(), path


def read_mlruns(folder: Path) -> Iterator[MlflowRun]:
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (expected an MLflow mlruns folder)")
    experiments = [d for d in sorted(folder.iterdir()) if d.is_dir() and (d / "meta.yaml").is_file()]
    if not experiments:
        raise InputError(f"{folder}: not an MLflow mlruns folder (no <experiment>/meta.yaml)")
    for exp_dir in experiments:
        exp_meta = _yaml(exp_dir / "meta.yaml")
        if exp_meta.get("lifecycle_stage") == "deleted":
            continue
        exp_name = str(exp_meta.get("name") or exp_dir.name)
        for run_dir in sorted(d for d in exp_dir.iterdir() if d.is_dir() and (d / "meta.yaml").is_file()):
            meta = _yaml(run_dir / "meta.yaml")
            if meta.get("lifecycle_stage") == "deleted":
                continue
            status = meta.get("status", 3)
            run = MlflowRun(
                run_id=str(meta.get("run_id") or meta.get("run_uuid") or run_dir.name),
                experiment=exp_name,
                name=str(meta.get("run_name") or ""),
                status=_FILE_STATUS.get(status, "FINISHED") if isinstance(status, int) else str(status),
                start_ms=int(meta.get("start_time") or 0),
                end_ms=int(meta["end_time"]) if meta.get("end_time") else None,
                user=str(meta.get("user_id") or ""),
                artifacts=run_dir / "artifacts",
            )
            for key, path in _files_under(run_dir / "params"):
                run.params[key] = path.read_text(encoding="utf-8")
            for key, path in _files_under(run_dir / "tags"):
                run.tags[key] = path.read_text(encoding="utf-8")
            for key, path in _files_under(run_dir / "metrics"):
                for line in path.read_text(encoding="utf-8").splitlines():
                    parts = line.split()
                    if len(parts) >= 2:
                        step = int(parts[2]) if len(parts) > 2 else 0
                        run.metrics.append((key, float(parts[1]), step, int(parts[0])))
            yield run


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
    if "://" not in uri and uri:
        return Path(uri)
    return None


def read_mlflow_sqlite(path: Path) -> Iterator[MlflowRun]:
    if not path.is_file():
        raise InputError(f"{path}: no such MLflow database")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        experiments = {
            str(row[0]): str(row[1])
            for row in conn.execute("SELECT experiment_id, name FROM experiments WHERE lifecycle_stage != 'deleted'")
        }
        runs = conn.execute(
            "SELECT run_uuid, name, status, start_time, end_time, user_id, artifact_uri, experiment_id "
            "FROM runs WHERE lifecycle_stage != 'deleted' ORDER BY start_time"
        ).fetchall()
    except sqlite3.Error as exc:
        raise InputError(f"{path}: not an MLflow tracking database ({exc})") from None
    try:
        for run_uuid, name, status, start, end, user, artifact_uri, experiment_id in runs:
            if str(experiment_id) not in experiments:
                continue
            run = MlflowRun(
                run_id=run_uuid,
                experiment=experiments[str(experiment_id)],
                name=name or "",
                status=status or "FINISHED",
                start_ms=int(start or 0),
                end_ms=int(end) if end else None,
                user=user or "",
            )
            for key, value in conn.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_uuid,)):
                run.params[key] = value
            for key, value in conn.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_uuid,)):
                run.tags[key] = value or ""
            for key, value, step, ts, is_nan in conn.execute(
                "SELECT key, value, step, timestamp, is_nan FROM metrics WHERE run_uuid = ? "
                "ORDER BY key, step, timestamp",
                (run_uuid,),
            ):
                run.metrics.append((key, math.nan if is_nan else float(value), int(step), int(ts)))
            local = _local_path(artifact_uri or "")
            if local is None or not local.is_dir():
                moved = sorted(path.parent.rglob(f"{run_uuid}/artifacts"))
                local = moved[0] if moved else None
            run.artifacts = local
            yield run
    finally:
        conn.close()


def _http_json(
    base: str, endpoint: str, payload: dict[str, Any] | None = None, query: dict[str, Any] | None = None
) -> Any:
    url = f"{base.rstrip('/')}/api/2.0/mlflow/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise InputError(f"MLflow server {base}: {endpoint} answered {exc.code}: {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InputError(f"MLflow server {base}: cannot reach {endpoint}: {exc}") from None


def read_mlflow_rest(base: str, scratch: Path) -> Iterator[MlflowRun]:
    experiments: dict[str, str] = {}
    token = None
    while True:
        page = _http_json(base, "experiments/search", {"max_results": 1000, **({"page_token": token} if token else {})})
        for exp in page.get("experiments", []):
            if exp.get("lifecycle_stage", "active") == "active":
                experiments[str(exp["experiment_id"])] = str(exp["name"])
        token = page.get("next_page_token")
        if not token:
            break
    if not experiments:
        return
    token = None
    while True:
        body: dict[str, Any] = {"experiment_ids": sorted(experiments), "max_results": 1000}
        if token:
            body["page_token"] = token
        page = _http_json(base, "runs/search", body)
        for item in page.get("runs", []):
            info, data = item.get("info", {}), item.get("data", {})
            run_id = str(info.get("run_id") or info.get("run_uuid"))
            run = MlflowRun(
                run_id=run_id,
                experiment=experiments.get(str(info.get("experiment_id")), "default"),
                name=str(info.get("run_name") or ""),
                status=str(info.get("status") or "FINISHED"),
                start_ms=int(info.get("start_time") or 0),
                end_ms=int(info["end_time"]) if info.get("end_time") else None,
                user=str(info.get("user_id") or ""),
                params={p["key"]: str(p.get("value", "")) for p in data.get("params", [])},
                tags={t["key"]: str(t.get("value", "")) for t in data.get("tags", [])},
            )
            for key in sorted({m["key"] for m in data.get("metrics", [])}):
                history_token = None
                while True:
                    query = {"run_id": run_id, "metric_key": key, "max_results": 25000}
                    if history_token:
                        query["page_token"] = history_token
                    history = _http_json(base, "metrics/get-history", query=query)
                    for m in history.get("metrics", []):
                        value = m.get("value")
                        number = math.nan if value in (None, "NaN") else float(value)
                        run.metrics.append((key, number, int(m.get("step", 0)), int(m.get("timestamp", 0))))
                    history_token = history.get("next_page_token")
                    if not history_token:
                        break
            run.artifacts = _download_artifacts(base, run_id, scratch / run_id)
            yield run
        token = page.get("next_page_token")
        if not token:
            break


def _download_artifacts(base: str, run_id: str, dest: Path, path: str = "") -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    listing = _http_json(base, "artifacts/list", query={"run_id": run_id, **({"path": path} if path else {})})
    for item in listing.get("files", []):
        rel = str(item["path"])
        if ".." in rel.split("/") or rel.startswith("/"):
            continue
        if item.get("is_dir"):
            _download_artifacts(base, run_id, dest, rel)
            continue
        url = f"{base.rstrip('/')}/get-artifact?" + urllib.parse.urlencode({"path": rel, "run_uuid": run_id})
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
                target.write_bytes(response.read())
        except (urllib.error.URLError, OSError) as exc:
            raise InputError(f"MLflow server {base}: cannot download artifact {rel} of run {run_id}: {exc}") from None
    return dest


# --------------------------------------------------------------------------- import


def _source_runs(uri: str, scratch: Path) -> Iterator[MlflowRun]:
    if uri.startswith(("http://", "https://")):
        return read_mlflow_rest(uri, scratch)
    if uri.startswith("sqlite:///"):
        return read_mlflow_sqlite(Path(uri.removeprefix("sqlite:///")))
    path = _local_path(uri) or Path(uri)
    if path.is_file() and path.suffix == ".db":
        return read_mlflow_sqlite(path)
    return read_mlruns(path)


def import_runs(
    root: Path,
    uri: str,
    project: str,
    store: TrackingStore,
    experiment: str | None = None,
) -> ImportSummary:
    """Copy every active run of the MLflow source into ``store`` under ``project`` (see the module)."""
    from mlops.inspect.formats import pack_directory
    from mlops.services.runs import load_project
    from mlops.services.store import repo_store
    from mlops.stores.artifacts import sha256_file

    load_project(root, project)
    summary = ImportSummary(uri, project)
    renamed: dict[str, str] = {}
    skipped_nan = 0
    artifact_store = repo_store(root)
    with tempfile.TemporaryDirectory(prefix="mlops-mlflow-") as tmp:
        scratch = Path(tmp)
        for source in _source_runs(uri, scratch):
            if store.get_run(source.run_id) is not None:
                summary.skipped.append(source.run_id)
                continue

            def name(key: str) -> str:
                fixed = key_name(key)
                if fixed != key:
                    renamed[key] = fixed
                return fixed

            points: list[tuple[str, int, float, float]] = []
            for key, value, step, ts in source.metrics:
                if not math.isfinite(value):
                    skipped_nan += 1
                    continue
                points.append((name(key), step, ts / 1000, value))
            artifacts: list[ArtifactEntry] = []
            if source.artifacts is not None and source.artifacts.is_dir():
                for item in sorted(source.artifacts.iterdir()):
                    if item.is_symlink():
                        continue
                    if item.is_dir():
                        packed = scratch / "packed" / (name(item.name) + ".tar")
                        packed.parent.mkdir(parents=True, exist_ok=True)
                        packed.write_bytes(pack_directory(item))
                        file, artifact = packed, packed.name
                    elif item.is_file():
                        file, artifact = item, name(item.name)
                    else:
                        continue
                    digest, size = sha256_file(file)
                    blob, stored = artifact_store.put_file(file)
                    artifacts.append(ArtifactEntry(artifact, digest, size, blob, stored, "", time.time()))
            status = _STATUS.get(source.status.upper(), RunStatus.FINISHED)
            start = source.start_ms / 1000
            end = source.end_ms / 1000 if source.end_ms else None
            git: dict[str, Any] = {}
            if source.tags.get("mlflow.source.git.commit"):
                git["commit"] = source.tags["mlflow.source.git.commit"]
            if source.tags.get("mlflow.source.git.branch"):
                git["branch"] = source.tags["mlflow.source.git.branch"]
            record = RunRecord(
                run_id=source.run_id,
                project=project,
                experiment=experiment or experiment_name(source.experiment),
                name=source.name or source.tags.get("mlflow.runName", ""),
                user=source.tags.get("mlflow.user") or source.user,
                status=status,
                start_time=start,
                end_time=end if end is not None else start,
                heartbeat=end if end is not None else start,
                partial=status is not RunStatus.FINISHED,
                error="" if status is not RunStatus.CRASHED else f"was {source.status} in MLflow when imported",
                source=f"mlflow:{uri}",
                environment={"git": git or None, "mlflow": {"experiment": source.experiment}},
                params={name(k): v for k, v in source.params.items()},
                tags={name(k): v for k, v in source.tags.items()},
                artifacts=artifacts,
            )
            store.create_run(record, points)  # one transaction: an interrupted import leaves no half run
            summary.imported.append(source.run_id)
            summary.metric_points += len(points)
            summary.artifacts += len(artifacts)
    for old, new in sorted(renamed.items()):
        summary.notes.append(f"renamed {old!r} to {new!r} (names cannot contain '/' or other path characters)")
    if skipped_nan:
        summary.notes.append(f"left out {skipped_nan} non-finite metric value(s) (NaN or infinite)")
    return summary
