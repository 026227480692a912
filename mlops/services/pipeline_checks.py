"""`mlops pipeline validate NAME`: everything `mlops validate` says about a pipeline, and what needs more.

Beyond the repository checks (cycles with their path, unknown steps and outputs, parameters, datasets,
callables that the source does not define) this imports every step's code in a child Python, and
compares each step's resources with the nodes of the target cluster (UC-04 5a: what would fit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlops.errors import MlopsError, Problem, Severity
from mlops.inspect.pipeline_code import import_problems
from mlops.services.pipelines import find_pipeline, pipeline_problems
from mlops.services.repository import repo_root


@dataclass(frozen=True)
class PipelineCheck:
    pipeline: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]


def check_pipeline_fully(root: Path, name: str, environment: str | None = None) -> PipelineCheck:
    root = repo_root(root)
    pipeline = find_pipeline(root, name)
    problems = pipeline_problems(root, name)
    repository_errors = bool(problems)  # planning needs a valid manifest; import failures do not stop it
    notes: list[str] = []
    path = f"pipelines/{name}/pipeline.yaml"
    targets = {i: step.run for i, step in enumerate(pipeline.spec.steps) if step.run}
    already = {p.field for p in problems if p.code == "missing-callable"}
    failures = import_problems(root / "pipelines" / name, [t for t in targets.values() if t])
    for i, target in targets.items():
        field_path = ("spec", "steps", i, "run")
        if target in failures and field_path not in already:
            problems.append(Problem(path, f"{target}: {failures[target]}", field=field_path, code="import-failed"))
    if repository_errors:
        notes.append("resources not checked: the pipeline's manifest has errors (fix them first)")
    else:
        problems += _resource_problems(root, name, environment, notes)
    from mlops.services.validate import located

    return PipelineCheck(name, located(root, problems), notes)


def _resource_problems(root: Path, name: str, environment: str | None, notes: list[str]) -> list[Problem]:
    from mlops.appliers.cluster import LocalCluster, connected, resolve_target
    from mlops.appliers.pipeline_driver import infeasible
    from mlops.services.pipelines import RunRequest, cluster_address, plan_run

    try:
        plan, _ = plan_run(root, RunRequest(name, environment=environment, allow_dirty=True))
    except MlopsError as exc:
        notes.append(f"resources not checked: {exc.message}")
        return []
    remote = resolve_target(cluster_address(root, environment))
    if remote is None:
        local = LocalCluster()
        if not local.status().running:
            notes.append("resources not checked against a cluster: the local cluster is not running (mlops cluster up)")
            return []
        target = local.target()
    else:
        target = remote
    try:
        with connected(target):
            import ray

            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    except MlopsError as exc:
        notes.append(f"resources not checked: {exc.message}")
        return []
    notes.append(f"resources checked against {target.label}: {len(nodes)} node(s)")
    path = f"pipelines/{name}/pipeline.yaml"
    positions = {step.name: i for i, step in enumerate(find_pipeline(root, name).spec.steps)}
    return [
        Problem(path, f"step {step}: {why}", field=("spec", "steps", positions[step], "resources"), code="infeasible")
        for step, why in infeasible(plan, nodes).items()
    ]
