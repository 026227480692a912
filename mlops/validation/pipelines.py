"""A pipeline's DAG is well formed (pure): known steps, no cycles, every input produced."""

from __future__ import annotations

from collections.abc import Iterable

from mlops.errors import Category, Problem
from mlops.manifests import Environment, Pipeline
from mlops.manifests.base import parse_versioned_uri
from mlops.manifests.pipeline import PARAM_RE, STEP_OUTPUT_RE, Step
from mlops.manifests.retraining import cron_problem


def check_pipeline(path: str, pipeline: Pipeline) -> Iterable[Problem]:
    steps = pipeline.spec.steps
    index = {step.name: i for i, step in enumerate(steps)}

    def problem(message: str, field: tuple[str | int, ...], code: str) -> Problem:
        return Problem(path, message, field=field, category=Category.SCHEMA, code=code)

    seen: set[str] = set()
    for i, step in enumerate(steps):
        if step.name in seen:
            yield problem(f"step name {step.name!r} is used twice", ("spec", "steps", i, "name"), "duplicate-step")
        seen.add(step.name)

    edges: dict[str, list[str]] = {step.name: [] for step in steps}
    for i, step in enumerate(steps):
        for j, need in enumerate(step.needs):
            if need not in index:
                yield problem(
                    f"needs unknown step {need!r}; steps are {', '.join(index)}",
                    ("spec", "steps", i, "needs", j),
                    "unknown-step",
                )
            else:
                edges[step.name].append(need)
        for input_name, value in step.inputs.items():
            field = ("spec", "steps", i, "inputs", input_name)
            if not isinstance(value, str):
                continue
            output_ref = STEP_OUTPUT_RE.match(value)
            if output_ref:
                source = output_ref["step"]
                if source not in index:
                    yield problem(f"{value!r} names unknown step {source!r}", field, "unknown-step")
                elif output_ref["output"] not in steps[index[source]].outputs:
                    produced = ", ".join(steps[index[source]].outputs) or "nothing"
                    yield problem(
                        f"step {source!r} has no output {output_ref['output']!r} (it produces {produced})",
                        field,
                        "unknown-output",
                    )
                else:
                    edges[step.name].append(source)
            elif value.startswith("params."):
                param = PARAM_RE.match(value)
                if param is None or param["param"] not in pipeline.spec.params:
                    known = ", ".join(pipeline.spec.params) or "none"
                    yield problem(
                        f"{value!r} is not a pipeline parameter (parameters: {known})", field, "unknown-param"
                    )
            elif value.startswith("steps."):
                yield problem(f"{value!r}: expected steps.<step>.outputs.<name>", field, "bad-step-ref")
            elif value.startswith("dataset://"):
                # Pipeline.references() skips an address it cannot parse; this is where it is reported.
                try:
                    parse_versioned_uri(value)
                except ValueError as exc:
                    yield problem(str(exc), field, "bad-dataset-address")

    cycle = find_cycle(edges)
    if cycle:
        first = index[cycle[0]]
        yield problem("circular dependency: " + " -> ".join(cycle), ("spec", "steps", first, "needs"), "cycle")

    if pipeline.spec.schedule is not None and (why := schedule_problem(pipeline.spec.schedule)):
        yield problem(why, ("spec", "schedule"), "bad-cron")

    registers = pipeline.spec.registers
    if registers is not None:
        for label, target in (("output", registers.output), ("metrics", registers.metrics)):
            if target is None:
                continue
            ref = STEP_OUTPUT_RE.match(target)
            if ref is None or ref["step"] not in index or ref["output"] not in _outputs(steps, index, ref["step"]):
                yield problem(
                    f"{target!r} is not an output of any step", ("spec", "registers", label), "unknown-output"
                )


def schedule_problem(expression: str) -> str | None:
    """What is wrong with a pipeline schedule: 5 cron fields (UTC), or 6 where the last counts seconds."""
    if len(expression.split()) == 6:
        from croniter import croniter

        if croniter.is_valid(expression):
            return None
        return f"invalid cron expression {expression!r} (with 6 fields the last one counts seconds)"
    return cron_problem(expression)


def check_environment_schedules(path: str, environment: Environment) -> Iterable[Problem]:
    for i, scheduled in enumerate(environment.spec.pipelines):
        if scheduled.schedule is not None and (why := schedule_problem(scheduled.schedule)):
            yield Problem(path, why, field=("spec", "pipelines", i, "schedule"), code="bad-cron")


def _outputs(steps: list[Step], index: dict[str, int], name: str) -> dict[str, object]:
    return dict(steps[index[name]].outputs)


def find_cycle(edges: dict[str, list[str]]) -> list[str]:
    """A dependency cycle as a path that returns to its start, or []; iterative so deep DAGs are fine."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(edges, white)
    for start in edges:
        if color[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        color[start] = grey
        path.append(start)
        while stack:
            node, next_child = stack[-1]
            children = [c for c in edges.get(node, []) if c in color]
            if next_child < len(children):
                stack[-1] = (node, next_child + 1)
                child = children[next_child]
                if color[child] == grey:
                    return [*path[path.index(child) :], child]
                if color[child] == white:
                    color[child] = grey
                    path.append(child)
                    stack.append((child, 0))
            else:
                color[node] = black
                path.pop()
                stack.pop()
    return []
