"""A 200-step pipeline DAG of trivial steps on the embedded local Ray, against the same DAG written with Ray tasks.

Run from the repository root with the project's virtualenv::

    .venv/bin/python benchmarks/pipeline_dag.py [--steps 200] [--width 10] [--repeat 3] [--cpus 8]

It starts an embedded local Ray cluster in a temporary state folder (stopped at the end), makes a
state repository with ``mlops init`` and commits ``pipelines/dag200/pipeline.yaml`` and its
``steps.py``: ``--steps`` trivial steps in layers of ``--width`` (200 = 20 layers of 10). A step of the
first layer reads the parameter ``seed``; every later step needs one step of the layer before (odd
positions) or two (even positions), and every step passes a small output along (its output ``out``,
``metrics`` ``{"value": x}`` with a ``min`` check, stored in the artifact store like any output). Every
step asks for 1 CPU and is cacheable. Then, each ``--repeat`` times (median reported):

* baseline: the same DAG as plain ``@ray.remote(num_cpus=1)`` functions passing ObjectRefs, in this
  process, connected to the same cluster (``ray.get`` of every step's result);
* (a) pipeline in process: ``start_run(repo, RunRequest("dag200", {"seed": N}), inline=True)`` in this
  process, connected to the same cluster: planning (validate, plan), the run record and worktree, a
  tracked run, the driver, the cleanup. A new ``seed`` per run, so nothing comes from the cache;
  the final values must equal the baseline's;
* (b) the CLI end to end: ``mlops pipeline run dag200 --param seed=N --wait`` as a subprocess (interpreter
  start, planning, Ray job submission, a job driver process with workers of its own, following the record);
* (c) a fully cached re-run: the same command again with the seed of the last (b) run; it must say
  that nothing ran (``nothing to run``, every step ``cached``). Process start-up included.

Before the timed rounds one untimed round of the baseline and of (a) starts and warms the workers the
two share (both run in this process's Ray job). (b) cannot share them: each Ray job gets workers of
its own, so every CLI run pays for starting them.

Goals: (a) / baseline <= 1.5, and (c) under 2 s. After the table it prints where (a) spent its time
(planning, the driver, the rest), ``Driver.run`` alone against the baseline, and from the last run's
record how long steps were in flight (submitted to collected). ``--fail-on-miss`` exits 1 on a miss;
otherwise the exit code is 0 unless something broke (a run that fails, wrong values: the benchmark stops).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RATIO_GOAL = 1.5  # (a) / baseline
CACHED_GOAL = 2.0  # seconds for a fully cached re-run through the CLI
PIPELINE = "dag200"


def say(message: str) -> None:
    print(message, flush=True)


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("mlops.exe" if os.name == "nt" else "mlops")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from mlops.cli.main import main; main()"]


# --------------------------------------------------------------------------------------------
# The DAG: the same shape for the pipeline and the baseline


@dataclass(frozen=True)
class Node:
    name: str
    layer: int
    index: int
    needs: tuple[str, ...]  # 0 (first layer), 1 or 2 steps of the layer before


def dag(steps: int, width: int) -> list[Node]:
    nodes: list[Node] = []
    for n in range(steps):
        layer, index = divmod(n, width)
        name = f"l{layer:02d}-s{index:02d}"
        if layer == 0:
            needs: tuple[str, ...] = ()
        else:
            row = min(width, steps - (layer - 1) * width)
            first = f"l{layer - 1:02d}-s{index % row:02d}"
            second = f"l{layer - 1:02d}-s{(index + 1) % row:02d}"
            needs = (first, second) if index % 2 == 0 and second != first else (first,)
        nodes.append(Node(name, layer, index, needs))
    return nodes


STEPS_PY = '''"""Trivial steps of the dag200 pipeline of benchmarks/pipeline_dag.py: a small value passed along."""


def source(seed: int, index: int) -> dict[str, float]:
    return {"value": float(seed * 1000 + index + 1)}


def forward(a: dict[str, float]) -> dict[str, float]:
    return {"value": a["value"] + 1.0}


def combine(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {"value": a["value"] + b["value"] / 2.0 + 1.0}
'''


def pipeline_yaml(nodes: list[Node]) -> str:
    lines = [
        "apiVersion: mlops/v1",
        "kind: Pipeline",
        "metadata:",
        f"  name: {PIPELINE}",
        "spec:",
        f"  description: {len(nodes)} trivial steps in layers, each passing a small value along "
        "(benchmarks/pipeline_dag.py).",
        "  params:",
        "    seed: 0",
        "  steps:",
    ]
    output = "{out: {type: metrics, checks: {metrics: {value: {min: 0}}}}}"
    for node in nodes:
        if not node.needs:
            run, inputs = "steps:source", f"{{seed: params.seed, index: {node.index}}}"
        elif len(node.needs) == 1:
            run, inputs = "steps:forward", f"{{a: steps.{node.needs[0]}.outputs.out}}"
        else:
            run = "steps:combine"
            inputs = f"{{a: steps.{node.needs[0]}.outputs.out, b: steps.{node.needs[1]}.outputs.out}}"
        lines += [
            f"    - name: {node.name}",
            f"      run: {run}",
            f"      inputs: {inputs}",
            f"      outputs: {output}",
        ]
    return "\n".join(lines) + "\n"


def expected_values(nodes: list[Node], seed: int) -> dict[str, float]:
    values: dict[str, float] = {}
    for node in nodes:
        if not node.needs:
            values[node.name] = float(seed * 1000 + node.index + 1)
        elif len(node.needs) == 1:
            values[node.name] = values[node.needs[0]] + 1.0
        else:
            values[node.name] = values[node.needs[0]] + values[node.needs[1]] / 2.0 + 1.0
    return values


# --------------------------------------------------------------------------------------------
# The baseline: the same DAG as Ray tasks passing ObjectRefs


def _source(seed: int, index: int) -> dict[str, float]:
    return {"value": float(seed * 1000 + index + 1)}


def _forward(a: dict[str, float]) -> dict[str, float]:
    return {"value": a["value"] + 1.0}


def _combine(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {"value": a["value"] + b["value"] / 2.0 + 1.0}


class Baseline:
    def __init__(self, nodes: list[Node]) -> None:
        import ray
        from ray import cloudpickle

        if __name__ != "__main__":  # imported (profiling): workers cannot import this file, so ship the functions
            cloudpickle.register_pickle_by_value(sys.modules[__name__])
        self.nodes = nodes
        options = {"num_cpus": 1, "max_retries": 0}
        self.source = ray.remote(**options)(_source)
        self.forward = ray.remote(**options)(_forward)
        self.combine = ray.remote(**options)(_combine)

    def run(self, seed: int) -> tuple[float, dict[str, float]]:
        import ray

        start = time.perf_counter()
        refs: dict[str, Any] = {}
        for node in self.nodes:
            if not node.needs:
                refs[node.name] = self.source.remote(seed, node.index)
            elif len(node.needs) == 1:
                refs[node.name] = self.forward.remote(refs[node.needs[0]])
            else:
                refs[node.name] = self.combine.remote(refs[node.needs[0]], refs[node.needs[1]])
        results = ray.get(list(refs.values()))
        elapsed = time.perf_counter() - start
        return elapsed, {name: r["value"] for name, r in zip(refs, results, strict=True)}


# --------------------------------------------------------------------------------------------
# (a) the pipeline in this process


DRIVER = "driver: the DAG on Ray (Driver.run)"


@dataclass
class Phases:
    spent: dict[str, float] = field(default_factory=dict)  # label -> seconds, summed over the runs
    driver: list[float] = field(default_factory=list)  # Driver.run per run

    def add(self, label: str, seconds: float) -> None:
        self.spent[label] = self.spent.get(label, 0.0) + seconds
        if label == DRIVER:
            self.driver.append(seconds)


@contextmanager
def timed_phases(phases: Phases) -> Iterator[None]:
    """Wrap the names ``start_run`` / ``run_job`` call, so one run says where its time went (missing names skipped)."""
    from mlops.appliers import pipeline_driver
    from mlops.services import pipeline_job, pipelines

    wrapped: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                phases.add(label, time.perf_counter() - start)

        wrapped.append((owner, name, original))
        setattr(owner, name, wrapper)

    wrap(pipelines, "plan_run", "plan: validate the repository, read the pipeline, plan the run")
    wrap(pipelines, "settle_from_cache", "cache lookup before submitting")
    wrap(pipelines, "add_worktree", "git worktree of the run's commit")
    wrap(pipeline_job, "_start_tracking", "tracked run: start")
    wrap(pipeline_job, "_end_tracking", "tracked run: end")
    wrap(pipeline_job, "remove_worktree", "remove the worktree")
    wrap(pipeline_driver.Driver, "run", DRIVER)
    try:
        yield
    finally:
        for owner, name, original in reversed(wrapped):
            setattr(owner, name, original)


def run_inline(repo: Path, seed: int, phases: Phases | None = None) -> tuple[float, Any]:
    from mlops.services.pipelines import RunRequest, start_run

    request = RunRequest(pipeline=PIPELINE, params={"seed": str(seed)})
    start = time.perf_counter()
    if phases is None:
        submitted = start_run(repo, request, inline=True)
    else:
        with timed_phases(phases):
            submitted = start_run(repo, request, inline=True)
    elapsed = time.perf_counter() - start
    return elapsed, submitted.state


def check_run(state: Any, expected: dict[str, float], want: str) -> None:
    states = {s.state for s in state.steps.values()}
    if state.status != "succeeded" or states != {want}:
        raise SystemExit(
            f"pipeline run {state.run_id}: {state.status}, steps {sorted(states)} (wanted {want}): {state.error}"
        )
    got = {name: s.outputs["out"].summary["metrics"]["value"] for name, s in state.steps.items()}
    if got != expected:
        wrong = sorted(n for n in expected if got.get(n) != expected[n])
        raise SystemExit(f"pipeline run {state.run_id}: wrong values for {', '.join(wrong[:5])}")


# --------------------------------------------------------------------------------------------
# (b), (c) the CLI


def run_cli(repo: Path, seed: int, env: dict[str, str], want: str) -> tuple[float, dict[str, Any], str]:
    command = [
        *cli_command(),
        "pipeline",
        "run",
        PIPELINE,
        "--param",
        f"seed={seed}",
        "--wait",
        "--format",
        "json",
        "--repo",
        str(repo),
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    try:
        run = json.loads(result.stdout)
    except ValueError:
        run = {}
    states = {s["state"] for s in run.get("steps", {}).values()}
    if result.returncode != 0 or run.get("status") != "succeeded" or states != {want}:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(
            f"mlops pipeline run (seed {seed}) did not succeed with every step {want} "
            f"(exit {result.returncode}, steps {sorted(states)})"
        )
    return elapsed, run, result.stderr


@dataclass
class Measured:
    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def text(self) -> str:
        return " ".join(f"{r:.2f}" for r in self.runs)


def step_spans(state: Any) -> dict[str, float]:
    """From the run record: how long steps were in flight (submit to collected), median and total; the span."""
    attempts = [a for s in state.steps.values() for a in s.attempts if a.finished_at is not None]
    if not attempts:
        return {}
    spans = [a.finished_at - a.started_at for a in attempts]
    return {
        "attempts": float(len(attempts)),
        "median in flight": statistics.median(spans),
        "first submit to last collected": max(a.finished_at for a in attempts) - min(a.started_at for a in attempts),
    }


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=200, help="steps of the DAG")
    parser.add_argument("--width", type=int, default=10, help="steps per layer")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument(
        "--cpus", type=float, default=8, help="logical CPUs of the local Ray head (as `mlops cluster up`)"
    )
    parser.add_argument("--skip-cli", action="store_true", help="measure the baseline and (a) only")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.width < 1:
        raise SystemExit("--steps must be at least 2 and --width at least 1")
    try:
        import ray  # noqa: F401

        import mlops.services.pipelines  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"cannot import {exc.name}: run this with the project's virtualenv "
            "(.venv/bin/python benchmarks/pipeline_dag.py)"
        ) from None
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-dag-"))
    try:
        return _run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path, args: argparse.Namespace) -> int:
    from mlops.appliers.cluster import LocalCluster, connected

    cluster_dir = work / "cluster"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "MLOPS_STORE"}
    env.update({"MLOPS_CLUSTER_DIR": str(cluster_dir), "MLOPS_USER": "bench@example.com"})
    for role in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{role}_NAME"] = "bench"
        env[f"GIT_{role}_EMAIL"] = "bench@example.com"
    os.environ.update({k: v for k, v in env.items() if k.startswith(("MLOPS_", "GIT_"))})
    os.environ.pop("MLOPS_STORE", None)

    nodes = dag(args.steps, args.width)
    repo = make_repo(work / "repo", nodes, env)
    two = sum(1 for n in nodes if len(n.needs) == 2)
    say(
        f"{len(nodes)} steps in {nodes[-1].layer + 1} layers of {args.width} ({two} need two steps, "
        f"{len(nodes) - two - args.width} one); repository {repo}"
    )

    local = LocalCluster(cluster_dir)
    try:
        say(f"starting a local Ray head with {args.cpus:g} CPUs (state {cluster_dir}) ...")
        started = time.perf_counter()
        target, _ = local.up(num_cpus=args.cpus, timeout=300)
        say(f"  ready in {time.perf_counter() - started:.1f} s")
        base, inline = Measured(), Measured()
        phases = Phases()
        last_state: Any = None
        with connected(target):
            baseline = Baseline(nodes)
            say("warm-up (untimed): one baseline round and one pipeline run, so both find their workers started")
            seconds, values = baseline.run(0)
            if values != expected_values(nodes, 0):
                raise SystemExit("the baseline computed wrong values")
            say(f"  baseline {seconds:.2f} s")
            seconds, state = run_inline(repo, 0)
            check_run(state, expected_values(nodes, 0), "succeeded")
            say(f"  pipeline {seconds:.2f} s")
            for i in range(1, args.repeat + 1):
                seconds, values = baseline.run(i)
                if values != expected_values(nodes, i):
                    raise SystemExit("the baseline computed wrong values")
                base.runs.append(seconds)
                say(f"  baseline {i}/{args.repeat}: {seconds:.2f} s")
                seconds, last_state = run_inline(repo, i, phases)
                check_run(last_state, expected_values(nodes, i), "succeeded")
                inline.runs.append(seconds)
                say(f"  (a) pipeline in process {i}/{args.repeat}: {seconds:.2f} s")
        cli, cached = Measured(), Measured()
        if not args.skip_cli:
            seed = 100
            for i in range(1, args.repeat + 1):
                seed = 100 + i
                seconds, _, _ = run_cli(repo, seed, env, "succeeded")
                cli.runs.append(seconds)
                say(f"  (b) CLI run --wait {i}/{args.repeat}: {seconds:.2f} s")
            for i in range(1, args.repeat + 1):
                seconds, _, err = run_cli(repo, seed, env, "cached")
                if "nothing to run" not in err:
                    raise SystemExit(f"the cached re-run did not say that nothing ran:\n{err[-2000:]}")
                cached.runs.append(seconds)
                say(f"  (c) cached re-run {i}/{args.repeat}: {seconds:.2f} s")
    finally:
        say("stopping the local Ray head")
        local.down()

    say("")
    say(
        f"{len(nodes)} trivial steps, median of {args.repeat}; cluster of {args.cpus:g} logical CPUs on "
        f"{os.cpu_count()} cores"
    )
    say(f"{'measurement':<44}{'median':>9}   runs")
    rows = [("baseline: Ray tasks passing ObjectRefs", base), ("(a) pipeline in process (start_run inline)", inline)]
    if not args.skip_cli:
        rows += [("(b) CLI: mlops pipeline run --wait", cli), ("(c) CLI: fully cached re-run", cached)]
    for label, measured in rows:
        say(f"{label:<44}{measured.median:>7.2f} s   {measured.text()}")

    say("")
    say(f"where (a) spent its time (sum over {args.repeat} runs, divided by {args.repeat})")
    accounted = 0.0
    for label, seconds in phases.spent.items():
        say(f"  {label:<66}{seconds / args.repeat:>7.3f} s")
        accounted += seconds
    say(
        f"  {'the rest: run record files, git identity and branch, settings':<66}"
        f"{(sum(inline.runs) - accounted) / args.repeat:>7.3f} s"
    )
    if last_state is not None:
        for label, value in step_spans(last_state).items():
            text = f"{value:.0f}" if label == "attempts" else f"{value:.3f} s"
            say(f"  last run, {label:<56}{text:>9}")

    ratio = inline.median / base.median
    ratio_ok = ratio <= RATIO_GOAL
    say("")
    say(f"(a) / baseline      = {ratio:6.2f}     goal <= {RATIO_GOAL:.1f}    {'PASS' if ratio_ok else 'MISS'}")
    if phases.driver:
        driver = statistics.median(phases.driver) / base.median
        say(f"driver / baseline   = {driver:6.2f}     (Driver.run alone: the DAG without planning and the run record)")
    cached_ok = True
    if not args.skip_cli:
        cached_ok = cached.median < CACHED_GOAL
        say(f"(b) / baseline      = {cli.median / base.median:6.2f}     (the CLI end to end; no goal)")
        say(
            f"(c) cached re-run   = {cached.median:6.2f} s   goal <  {CACHED_GOAL:.1f} s  "
            f"{'PASS' if cached_ok else 'MISS'}"
        )
    return 1 if args.fail_on_miss and not (ratio_ok and cached_ok) else 0


def make_repo(root: Path, nodes: list[Node], env: dict[str, str]) -> Path:
    def run(*command: str) -> None:
        subprocess.run(command, cwd=root if root.exists() else None, env=env, check=True, capture_output=True)

    run(*cli_command(), "init", str(root))
    folder = root / "pipelines" / PIPELINE
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.yaml").write_text(pipeline_yaml(nodes), encoding="utf-8")
    (folder / "steps.py").write_text(STEPS_PY, encoding="utf-8")
    with (root / ".gitignore").open("a", encoding="utf-8") as ignore:
        ignore.write("__pycache__/\n")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", f"Add pipeline {PIPELINE}")
    return root


if __name__ == "__main__":
    sys.exit(main())
