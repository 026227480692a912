"""`mlops runs ...` and `mlops projects report` on runs made by a real instrumented script, and MLflow's own files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import Result, git

from mlops.stores.tracking_sqlite import SqliteTrackingStore
from mlops.tracking import start_run

SCRIPT = Path(__file__).parent / "fixtures" / "train_script.py"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def repo(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("MLOPS_TRACKING_URI", "MLOPS_PARAMS", "MLOPS_REPO", "MLOPS_HEARTBEAT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLOPS_USER", "lead@example.com")
    monkeypatch.chdir(example_repo)
    yield example_repo


def sweep(repo: Path, configs: list[dict[str, object]]) -> list[str]:
    """Run the script once per config (MLOPS_PARAMS overrides its params), two at a time."""
    ids: list[str] = []
    procs = []
    for config in configs:
        env = {**os.environ, "MLOPS_PARAMS": json.dumps(config)}
        procs.append(subprocess.Popen([sys.executable, str(SCRIPT), "ok"], cwd=repo, env=env, stderr=subprocess.PIPE))
        if len(procs) == 2:
            for proc in procs:
                assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
            procs = []
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    store = SqliteTrackingStore(repo / ".mlops" / "tracking.db")
    runs = store.list_runs()
    store.close()
    for config in configs:
        ids += [r.run_id for r in runs if all(r.params.get(k) == v for k, v in config.items())]
    return ids


@pytest.fixture
def seeded(repo: Path) -> list[str]:
    return sweep(repo, [{"depth": depth, "seed": seed} for depth in (4, 6) for seed in (1, 2, 3)])


def test_three_seeds_per_config_compared_with_significance(
    repo: Path, seeded: list[str], mlops: Callable[..., Result], tmp_path: Path
) -> None:
    result = mlops("runs", "compare", *[i[:8] for i in seeded], "--metric", "auc", "--format", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["grouped_by"] == ["depth"]  # the seed is not a configuration
    groups = {g["name"]: g for g in data["groups"]}
    assert set(groups) == {"depth=4", "depth=6"} and all(len(g["runs"]) == 3 for g in groups.values())
    low, high = groups["depth=6"]["stats"]["auc"]["ci"]
    assert low < groups["depth=6"]["stats"]["auc"]["mean"] < high
    (test,) = data["tests"]
    assert test["significant"] is True and test["better"] == "depth=6"
    assert test["welch"]["p_holm"] < 0.05
    assert test["mann_whitney"]["p"] == pytest.approx(0.1)  # the smallest exact p with 3 vs 3, and the note says so
    assert any("cannot go below 0.1" in n for n in data["notes"])
    text = mlops("runs", "compare", *seeded, "--metric", "auc").out
    assert "depth=6 better" in text and "*params.depth" in text and "*params.seed" in text
    html = tmp_path / "compare.html"
    result = mlops("runs", "compare", *seeded, "--format", "html", "--out", str(html))
    assert result.code == 0 and "1 significant difference(s)" in result.out
    page = html.read_text()
    assert page.count("<svg") == 2  # group means and metric curves, inline
    assert "<script" not in page and "src=" not in page and "<link" not in page  # nothing fetched from elsewhere
    markdown = mlops("runs", "compare", *seeded, "--metric", "auc", "--format", "markdown").out
    assert "| depth=4 | depth=6 |" in markdown.replace("  ", " ") or "**depth=6 better**" in markdown


def test_list_and_filter(repo: Path, seeded: list[str], mlops: Callable[..., Result]) -> None:
    result = mlops("runs", "list", "--format", "json")
    assert json.loads(result.out)["total"] == 6
    result = mlops("runs", "list", "--filter", "metrics.auc > 0.815 and params.depth == 6", "--format", "json")
    found = {r["run_id"] for r in json.loads(result.out)["runs"]}
    assert found == set(seeded[3:])
    result = mlops("runs", "list", "--filter", "params.depth in (4) and status == finished", "--project", "retention")
    assert result.code == 0 and "3 run(s) of 6" in result.out
    result = mlops("runs", "list", "--filter", "metrics.acu > 0.5")
    assert result.code == 0 and "no run in scope has metrics.acu (did you mean metrics.auc?)" in result.out
    result = mlops("runs", "list", "--filter", "metrics.auc >> 0.5")
    assert result.code == 2 and result.err.startswith("error: --filter: column 14: expected a value")
    show = mlops("runs", "show", seeded[0][:6])
    assert show.code == 0 and "loss = " in show.out and "(100 points)" in show.out


def test_runs_that_are_not_comparable_are_named_with_comparable_suggestions(
    repo: Path, mlops: Callable[..., Result]
) -> None:
    shutil.copy(
        repo / "registry" / "experiments" / "retention.yaml", repo / "registry" / "experiments" / "pricing.yaml"
    )
    path = repo / "registry" / "experiments" / "pricing.yaml"
    path.write_text(path.read_text().replace("name: retention", "name: pricing"))
    with start_run(project="retention", experiment="churn-gbm") as a:
        a.log_metric("auc", 0.8)
    with start_run(project="retention", experiment="churn-gbm") as b:
        b.log_metric("auc", 0.82)
    with start_run(project="pricing", experiment="price-gbm") as c:
        c.log_metric("rmse", 3.0)
    result = mlops("runs", "compare", a.run_id, c.run_id)
    assert result.code == 1
    assert "belong(s) to project 'pricing', the others to 'retention'" in result.err or "project" in result.err
    assert f"comparable runs: {b.run_id[:12]}" in result.err
    result = mlops("runs", "compare", a.run_id, b.run_id, "--metric", "loss")
    assert result.code == 1 and "did not log metric 'loss'" in result.err


def test_register_run_links_lineage(repo: Path, mlops: Callable[..., Result], tmp_path: Path) -> None:
    with start_run(
        project="retention", experiment="churn-gbm", params={"depth": 6}, datasets=["dataset://customers@1"]
    ) as run:
        run.log_metrics({"auc": 0.91, "accuracy": 0.87})
    seed_model = next((Path(__file__).parent.parent / "examples" / "seed").rglob("*.onnx"))
    result = mlops("model", "register", str(seed_model), "--name", "churn", "--run", run.run_id[:10])
    assert result.code == 0, result.err
    version = yaml.safe_load((repo / "registry" / "models" / "churn" / "versions" / "4.yaml").read_text())["spec"]
    assert version["lineage"]["run"] == run.run_id
    assert version["lineage"]["datasets"] == ["dataset://customers@1"]
    assert version["lineage"]["commit"] == git(repo, "rev-parse", "HEAD~1")
    assert version["metrics"]["auc"] == 0.91 and version["params"]["depth"] == 6
    assert mlops("validate", "--repo", str(repo)).code == 0


@pytest.mark.parametrize("source", ["mlruns", "sqlite"])
def test_import_from_mlflow_matches_what_mlflow_logged(
    repo: Path, mlops: Callable[..., Result], tmp_path: Path, source: str
) -> None:
    expected = json.loads((FIXTURES / "mlruns-expected.json").read_text())[source]
    if source == "mlruns":
        uri = str(FIXTURES / "mlruns")
    else:  # a moved database: its artifact paths point elsewhere and are found beside it
        shutil.copytree(FIXTURES / "mlflow-sqlite", tmp_path / "moved")
        uri = f"sqlite:///{tmp_path / 'moved' / 'mlflow.db'}"
    result = mlops("runs", "import-mlflow", uri, "--project", "retention")
    assert result.code == 0, result.err
    assert f"imported {len(expected)} run(s)" in result.out and "30 metric points, 3 artifact(s)" in result.out
    assert "renamed 'train/auc' to 'train.auc'" in result.out
    store = SqliteTrackingStore(repo / ".mlops" / "tracking.db")
    try:
        for run_id, want in expected.items():
            record = store.get_run(run_id)
            assert record is not None
            assert record.experiment == {"churn-gbm": "churn-gbm", "Churn RF": "churn-rf"}[want["experiment"]]
            assert record.name == want["name"] and record.status.value == want["status"].lower()
            assert record.params == want["params"]
            assert record.tags["team"] == "growth" and record.environment["git"]["commit"]
            history = store.metric_history(run_id)
            for key, points in want["metrics"].items():
                assert [[p.step, p.value] for p in history[key.replace("/", ".")]] == points
            (artifact,) = record.artifacts
            blob = repo / ".mlops" / "store" / "sha256" / artifact.blob[7:9] / artifact.blob[9:]
            assert artifact.name == "notes.txt" and blob.read_text() == want["artifacts"]["notes.txt"]
    finally:
        store.close()
    again = mlops("runs", "import-mlflow", uri, "--project", "retention")
    assert again.code == 0 and "imported 0 run(s)" in again.out and f"{len(expected)} already there" in again.out
    listed = mlops("runs", "list", "--filter", "params.depth == 6 and source like 'mlflow:*'", "--format", "json")
    assert len(json.loads(listed.out)["runs"]) == 1


def test_import_errors_are_one_line(repo: Path, mlops: Callable[..., Result], tmp_path: Path) -> None:
    result = mlops("runs", "import-mlflow", str(tmp_path / "nothing"), "--project", "retention")
    assert result.code == 2 and result.err.startswith("error: ") and "no such folder" in result.err
    result = mlops("runs", "import-mlflow", str(FIXTURES / "mlruns"), "--project", "nope")
    assert result.code == 2 and "project 'nope' does not exist" in result.err


def test_project_report(repo: Path, seeded: list[str], mlops: Callable[..., Result]) -> None:
    result = mlops("projects", "report", "retention", "--metric", "auc", "--format", "json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["runs"] == 6 and report["by_member"] == {"lead@example.com": 6}
    assert report["members_without_runs"] == ["growth-ml@example.com"]
    (cpu,) = report["budget"]
    assert cpu["resource"] == "CPU" and cpu["limit_hours"] == 500 and 0 < cpu["used_hours"] < 1
    assert cpu["forecast_hours"] >= cpu["used_hours"]
    (best,) = report["best"]
    assert best["experiment"] == "churn-gbm" and best["run_id"] in seeded[3:] and best["runs"] == 6
    text = mlops("projects", "report", "retention").out
    assert "runs per member" in text and "best run per experiment" in text and "FORECAST" in text
    assert mlops("projects", "report", "nope").code == 2
