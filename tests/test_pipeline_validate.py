"""`mlops validate` and `mlops pipeline validate|run|runs|show` on broken pipelines (UC-04 6a), without Ray.

Every case runs the real CLI on a real temporary git repository (the example state). Nothing here reaches a
cluster: a pipeline with errors is refused before anything is planned or submitted, the other refusals happen
while planning, and ``MLOPS_CLUSTER_DIR`` points at an empty folder so that `mlops pipeline validate` says it did
not check resources instead of looking for a running local cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result, git

Run = Callable[..., Result]

# Line numbers are part of the expected messages below: keep the shape of these files.
CYCLE = """\
apiVersion: mlops/v1
kind: Pipeline
metadata:
  name: loop
spec:
  steps:
    - name: a
      run: steps:a
      needs: [b]
      outputs:
        x: {type: file}
    - name: b
      run: steps:b
      inputs:
        x: steps.a.outputs.x
      outputs:
        y: {type: file}
"""

TWO_STEPS = """\
apiVersion: mlops/v1
kind: Pipeline
metadata:
  name: small
spec:
  params:
    depth: 3
  steps:
    - name: load
      run: {load}
      outputs:
        table: {{type: table}}
    - name: fit
      run: {fit}
      inputs:
        table: steps.load.outputs.table
        depth: params.depth
      outputs:
        model: {{type: model}}
"""

STEPS_PY = """\
def load():
    return b"rows"


def fit(table, depth):
    return b"model"


def _helper():
    return None
"""


@pytest.fixture(autouse=True)
def _no_local_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No running local cluster is ever found (and none is started)."""
    empty = tmp_path / "no-cluster"
    empty.mkdir()
    monkeypatch.setenv("MLOPS_CLUSTER_DIR", str(empty))


def write_pipeline(repo: Path, name: str, manifest: str, files: dict[str, str] | None = None) -> Path:
    folder = repo / "pipelines" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.yaml").write_text(manifest, encoding="utf-8")
    for rel, text in (files or {}).items():
        (folder / rel).write_text(text, encoding="utf-8")
    return folder


def small(repo: Path, load: str = "steps:load", fit: str = "steps:fit", steps_py: str = STEPS_PY) -> Path:
    return write_pipeline(repo, "small", TWO_STEPS.format(load=load, fit=fit), {"steps.py": steps_py})


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def problem_lines(result: Result) -> list[str]:
    return [line for line in result.out.splitlines() if line.startswith("pipelines/")]


def runs_folder(repo: Path) -> Path:
    return repo / ".mlops" / "pipelines" / "runs"


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.out + result.err, result.out + result.err


# --- a cycle ---------------------------------------------------------------------------------------------------------

CYCLE_LINE = "pipelines/loop/pipeline.yaml:9:7: spec.steps[0].needs: circular dependency: a -> b -> a"


def test_a_cycle_is_reported_by_validate_with_its_position(example_repo: Path, mlops: Run) -> None:
    write_pipeline(example_repo, "loop", CYCLE, {"steps.py": "def a():\n    pass\n\n\ndef b(x):\n    pass\n"})
    result = mlops("validate", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 1
    assert problem_lines(result) == [CYCLE_LINE]


def test_a_cycle_is_reported_by_pipeline_validate(example_repo: Path, mlops: Run) -> None:
    write_pipeline(example_repo, "loop", CYCLE, {"steps.py": "def a():\n    pass\n\n\ndef b(x):\n    pass\n"})
    result = mlops("pipeline", "validate", "loop", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 1
    assert result.out.splitlines() == [CYCLE_LINE]
    assert result.err.splitlines() == [
        "resources not checked: the pipeline's manifest has errors (fix them first)",
        "pipeline loop: 1 error(s); it cannot run or be activated until they are fixed",
    ]


def test_a_pipeline_with_errors_is_refused_before_anything_is_submitted(example_repo: Path, mlops: Run) -> None:
    write_pipeline(example_repo, "loop", CYCLE, {"steps.py": "def a():\n    pass\n\n\ndef b(x):\n    pass\n"})
    commit_all(example_repo, "a pipeline with a cycle")  # committed: the refusal is about the errors
    result = mlops("pipeline", "run", "loop", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 1
    assert result.out == ""
    assert result.err.splitlines() == [
        "error: pipeline loop has 1 error(s) and cannot run:",
        CYCLE_LINE,
    ]
    assert not runs_folder(example_repo).exists() or not any(runs_folder(example_repo).iterdir())
    assert git(example_repo, "worktree", "list").count("\n") == 0  # no worktree was made for a run


def test_a_cycle_through_output_references_only(example_repo: Path, mlops: Run) -> None:
    manifest = CYCLE.replace("      needs: [b]\n", "      inputs:\n        y: steps.b.outputs.y\n")
    write_pipeline(example_repo, "loop", manifest, {"steps.py": "def a(y):\n    pass\n\n\ndef b(x):\n    pass\n"})
    result = mlops("validate", "--repo", str(example_repo))
    assert result.code == 1
    # no needs: to point at, so the position is the step's
    assert problem_lines(result) == [
        "pipelines/loop/pipeline.yaml:7:7: spec.steps[0].needs: circular dependency: a -> b -> a"
    ]


# --- step code that cannot be called ---------------------------------------------------------------------------------


def test_a_missing_callable_names_what_the_module_defines(example_repo: Path, mlops: Run) -> None:
    small(example_repo, fit="steps:nope")
    expected = [
        "pipelines/small/pipeline.yaml:14:7: spec.steps[1].run: steps:nope: steps.py defines no nope "
        "(it defines fit, load)"
    ]
    result = mlops("validate", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 1
    assert problem_lines(result) == expected
    # the full check says it once (the import check does not repeat what the source already showed)
    result = mlops("pipeline", "validate", "small", "--repo", str(example_repo))
    assert result.code == 1
    assert result.out.splitlines() == expected


def test_a_module_that_does_not_exist(example_repo: Path, mlops: Run) -> None:
    small(example_repo, load="training:load")
    result = mlops("validate", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 1
    assert problem_lines(result) == [
        "pipelines/small/pipeline.yaml:10:7: spec.steps[0].run: training:load: no module training in small/ "
        "(expected training.py)"
    ]


def test_a_syntax_error_in_the_step_module(example_repo: Path, mlops: Run) -> None:
    small(example_repo, steps_py=STEPS_PY.replace("def fit(table, depth):", "def fit(table, depth)"))
    result = mlops("validate", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 1
    # both steps live in steps.py; the syntax error is at line 5 of it
    assert problem_lines(result) == [
        "pipelines/small/pipeline.yaml:10:7: spec.steps[0].run: steps:load: steps.py:5: syntax error: expected ':'",
        "pipelines/small/pipeline.yaml:14:7: spec.steps[1].run: steps:fit: steps.py:5: syntax error: expected ':'",
    ]


def test_a_module_that_raises_at_import_time(example_repo: Path, mlops: Run) -> None:
    small(example_repo, steps_py='import json\n\nraise RuntimeError("no GPU here")\n\n\n' + STEPS_PY)
    # the source looks fine: `mlops validate` (CI, no imports) passes it
    assert mlops("validate", "--repo", str(example_repo)).code == 0
    result = mlops("pipeline", "validate", "small", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 1
    assert result.out.splitlines() == [
        "pipelines/small/pipeline.yaml:10:7: spec.steps[0].run: steps:load: importing steps failed: "
        "RuntimeError: no GPU here",
        "pipelines/small/pipeline.yaml:14:7: spec.steps[1].run: steps:fit: importing steps failed: "
        "RuntimeError: no GPU here",
    ]
    assert result.err.splitlines()[-1] == (
        "pipeline small: 2 error(s); it cannot run or be activated until they are fixed"
    )


def test_a_module_that_imports_a_missing_package(example_repo: Path, mlops: Run) -> None:
    small(example_repo, steps_py="import surely_not_installed_pkg\n\n\n" + STEPS_PY)
    result = mlops("pipeline", "validate", "small", "--repo", str(example_repo))
    assert result.code == 1
    assert result.out.splitlines()[0] == (
        "pipelines/small/pipeline.yaml:10:7: spec.steps[0].run: steps:load: importing steps failed: "
        "ModuleNotFoundError: No module named 'surely_not_installed_pkg'"
    )


def test_a_clean_pipeline_validates_and_says_resources_were_not_checked(
    example_repo: Path, mlops: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a repository that does not ignore __pycache__: importing the steps must not leave the folder dirty
    (example_repo / ".gitignore").write_text(".mlops/\n", encoding="utf-8")
    small(example_repo)
    commit_all(example_repo, "a small pipeline")
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    result = mlops("pipeline", "validate", "small", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 0, result.out + result.err
    assert result.out == ""
    assert result.err.splitlines() == [
        "resources not checked against a cluster: the local cluster is not running (mlops cluster up)",
        "ok: pipeline small",
    ]
    assert git(example_repo, "status", "--porcelain", "--untracked-files=all") == ""


# --- what `mlops pipeline` refuses -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_unknown_pipeline_lists_the_pipelines(example_repo: Path, mlops: Run, command: str) -> None:
    result = mlops("pipeline", command, "train-chrun", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 2
    assert result.err.splitlines() == ["error: no pipeline 'train-chrun' (pipelines: train-churn)"]


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("dpeth=4", "error: --param dpeth: pipeline train-churn has no parameter 'dpeth' "
                    "(parameters: max_depth, n_estimators)"),
        ("max_depth=deep", "error: --param max_depth=deep: expected int like the default 3"),
        ("n_estimators=4.5", "error: --param n_estimators=4.5: expected int like the default 40"),
        ("max_depth", "error: --param 'max_depth': expected NAME=VALUE"),
        ("=4", "error: --param '=4': expected NAME=VALUE"),
    ],
    ids=["unknown", "not-an-int", "float-for-int", "no-value", "no-name"],
)
def test_bad_params_are_usage_errors(example_repo: Path, mlops: Run, param: str, message: str) -> None:
    result = mlops("pipeline", "run", "train-churn", "--param", param, "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 2
    assert result.err.splitlines() == [message]
    assert not runs_folder(example_repo).exists()


def test_uncommitted_changes_are_refused_without_allow_dirty(example_repo: Path, mlops: Run) -> None:
    steps = example_repo / "pipelines" / "train-churn" / "steps.py"
    steps.write_text(steps.read_text(encoding="utf-8") + "\n# tweak\n", encoding="utf-8")
    (example_repo / "pipelines" / "train-churn" / "notes.txt").write_text("wip\n", encoding="utf-8")
    result = mlops("pipeline", "run", "train-churn", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 2
    assert result.err.splitlines() == [
        "error: pipelines/train-churn has uncommitted changes (pipelines/train-churn/steps.py, "
        "pipelines/train-churn/notes.txt): a run records the commit its code came from, so commit them first "
        "(or pass --allow-dirty)"
    ]
    assert not runs_folder(example_repo).exists()


def test_runs_on_a_repository_without_runs(example_repo: Path, mlops: Run) -> None:
    for args in ((), ("train-churn",)):
        result = mlops("pipeline", "runs", *args, "--repo", str(example_repo))
        no_traceback(result)
        assert result.code == 0
        assert result.out.splitlines() == ["no pipeline runs yet (start one with `mlops pipeline run NAME`)"]
    result = mlops("pipeline", "runs", "--format", "json", "--repo", str(example_repo))
    assert (result.code, result.out.strip()) == (0, "[]")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nonexistent", "error: invalid pipeline run id 'nonexistent'"),
        ("abc123", "error: no pipeline run abc123 (runs are listed by `mlops pipeline runs`)"),
    ],
)
def test_show_and_resume_of_a_run_that_does_not_exist(example_repo: Path, mlops: Run, ref: str, message: str) -> None:
    for command in ("show", "resume"):
        result = mlops("pipeline", command, ref, "--repo", str(example_repo))
        no_traceback(result)
        assert result.code == 2
        assert result.err.splitlines() == [message]


def test_a_pipeline_with_errors_cannot_be_activated_by_reconcile(example_repo: Path, mlops: Run) -> None:
    """UC-04 6a: listing a broken pipeline in an environment is refused before any cluster is touched."""
    write_pipeline(example_repo, "loop", CYCLE, {"steps.py": "def a():\n    pass\n\n\ndef b(x):\n    pass\n"})
    (example_repo / "environments/nightly.yaml").write_text(
        "apiVersion: mlops/v1\nkind: Environment\nmetadata:\n  name: nightly\nspec:\n"
        "  cluster: {address: local}\n  pipelines:\n    - name: loop\n      schedule: '0 3 * * *'\n",
        encoding="utf-8",
    )
    commit_all(example_repo, "Activate a broken pipeline")
    for command in (("plan", "--env", "nightly"), ("reconcile", "--env", "nightly")):
        result = mlops(*command, "--repo", str(example_repo))
        no_traceback(result)
        assert result.code == 1, result.out + result.err
        assert "circular dependency: a -> b -> a" in result.out + result.err
    assert not any(Path(example_repo / ".mlops").glob("**/ray*")), "no cluster may be started"


def test_a_bad_schedule_is_reported_where_it_is_written(example_repo: Path, mlops: Run) -> None:
    (example_repo / "environments/nightly.yaml").write_text(
        "apiVersion: mlops/v1\nkind: Environment\nmetadata:\n  name: nightly\nspec:\n"
        "  pipelines:\n    - name: train-churn\n      schedule: '0 25 * * *'\n",
        encoding="utf-8",
    )
    result = mlops("validate", "--repo", str(example_repo))
    no_traceback(result)
    assert result.code == 1
    [line] = [x for x in result.out.splitlines() if x.startswith("environments/nightly.yaml")]
    assert line.startswith("environments/nightly.yaml:8:7: spec.pipelines[0].schedule: invalid cron expression")
    assert "the hour field '25' is not valid" in line
