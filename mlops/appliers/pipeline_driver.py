"""Run a pipeline's DAG on a connected Ray cluster: each step a Ray task with its resources.

Independent steps run in parallel as far as the cluster's resources allow. The driver (this loop) keeps
the retries itself rather than Ray's ``max_retries``, because a retry waits a backoff, an output check
that failed is not retried, and each attempt gets its own log and line in the run record. A worker that
dies mid-step surfaces as a failed task and is retried like an exception. A step that outlives its
timeout is cancelled (its worker killed) and counts as a failed attempt.

Before a step runs, its cache key is computed from its inputs' digests; when an earlier run recorded
outputs under that key (and the store still has their blobs) they are reused and the step is
``cached``. A step whose dependencies failed is ``skipped``; independent branches still finish, so a
resume has as little to redo as possible.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mlops.appliers.pipeline_step import execute
from mlops.planner.pipeline_run import RunPlan, StepPlan, cache_key
from mlops.planner.pipeline_state import (
    CACHED,
    DONE_STATES,
    FAILED,
    PENDING,
    RETRYING,
    RUN_FAILED,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Attempt,
    OutputRecord,
    RunState,
    StepState,
)
from mlops.stores.artifacts import ArtifactStore
from mlops.stores.pipeline_runs import PipelineRunStore

STATE_WRITE_INTERVAL_S = 0.25  # the CLI polls the record; more often than this only costs the driver time
WAIT_SLICE_S = 0.5


@dataclass(frozen=True)
class DriverSettings:
    root: str  # the repository the run belongs to (its settings locate the store)
    store: str  # artifact store spec, absolute
    src: str  # the pipeline's folder at the run's commit
    blob_cache: str  # where inputs are fetched to on each node (a shared folder on a laptop)


@dataclass
class _Running:
    step: StepPlan
    ref: Any
    attempt: Attempt
    deadline: float | None


def initial_steps(plan: RunPlan, state: RunState) -> None:
    """Give every step of the plan a record; a step already done (resume) keeps its outputs."""
    for step in plan.steps:
        current = state.steps.get(step.name)
        if current is None or current.state not in DONE_STATES:
            state.steps[step.name] = StepState(
                name=step.name,
                attempts=current.attempts if current else [],
                resources={"cpus": step.cpus, "gpus": step.gpus, "memory": step.memory},
            )


def infeasible(plan: RunPlan, nodes: list[Mapping[str, float]]) -> dict[str, str]:
    """Steps no node of the cluster could ever run, with what the largest node has (instead of waiting forever)."""
    out = {}
    for step in plan.steps:
        wanted = {"CPU": step.cpus, "GPU": step.gpus, "memory": float(step.memory or 0)}
        if any(all(node.get(k, 0.0) >= v for k, v in wanted.items() if v) for node in nodes):
            continue
        best = max(nodes, key=lambda n: n.get("CPU", 0.0), default={})
        out[step.name] = f"no node can run it: it asks for {_describe(wanted)}; the largest node has {_describe(best)}"
    return out


def _describe(resources: Mapping[str, float]) -> str:
    parts = [f"{resources.get('CPU', 0):g} CPU", f"{resources.get('GPU', 0):g} GPU"]
    if resources.get("memory"):
        parts.append(f"{resources['memory'] / 2**30:.1f} GiB memory")
    return ", ".join(parts)


class Driver:
    def __init__(
        self,
        plan: RunPlan,
        state: RunState,
        runs: PipelineRunStore,
        store: ArtifactStore,
        settings: DriverSettings,
        on_change: Callable[[RunState], None] | None = None,
    ) -> None:
        self.plan = plan
        self.state = state
        self.runs = runs
        self.store = store
        self.settings = settings
        self.on_change = on_change
        self._running: dict[str, _Running] = {}
        self._retry_at: dict[str, float] = {}
        self._last_write = 0.0
        self._dirty = False
        self.outcome = RUN_FAILED

    # ------------------------------------------------------------------ the loop

    def run(self) -> RunState:
        import ray

        initial_steps(self.plan, self.state)
        self.state.status = RUN_RUNNING
        self.state.started_at = self.state.started_at or time.time()
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        for name, why in infeasible(self.plan, nodes).items():
            if self.state.steps[name].state == PENDING:
                self._fail(name, why)
        self._flush(force=True)
        remote = ray.remote(execute)
        while True:
            progressed = self._start_ready(remote)
            if not self._running and not self._retry_at and not progressed:
                break
            self._collect()
            self._flush()
        self.state.finished_at = time.time()
        done = all(s.state in DONE_STATES for s in self.state.steps.values())
        if not done:
            failed = self.state.failed_steps
            self.state.error = "; ".join(f"{n}: {self.state.steps[n].failure}" for n in failed) or "stopped"
        self._flush(force=True)
        # The run stays "running" here: its caller settles it after what follows the DAG (registration).
        self.outcome = RUN_SUCCEEDED if done else RUN_FAILED
        return self.state

    def _start_ready(self, remote: Any) -> bool:
        """Start (or take from the cache, or skip) every step whose dependencies are settled."""
        progressed = False
        now = time.monotonic()
        changed = True
        while changed:
            changed = False
            for step in self.plan.steps:
                record = self.state.steps[step.name]
                if record.state not in (PENDING, RETRYING) or step.name in self._running:
                    continue
                if record.state == RETRYING and self._retry_at.get(step.name, 0.0) > now:
                    continue
                needs = [self.state.steps[n].state for n in step.needs]
                if any(s in (FAILED, SKIPPED) for s in needs):
                    record.state = SKIPPED
                    record.failure = (
                        "not run: "
                        + ", ".join(n for n in step.needs if self.state.steps[n].state in (FAILED, SKIPPED))
                        + " did not succeed"
                    )
                    changed = progressed = self._dirty = True
                    continue
                if not all(s in DONE_STATES for s in needs):
                    continue
                upstream = self._upstream_digests(step)
                record.cache_key = cache_key(self.plan, step, upstream)
                if record.state == PENDING and self._from_cache(step, record):
                    changed = progressed = self._dirty = True
                    continue
                self._submit(remote, step, record)
                progressed = self._dirty = True
        return progressed

    def _upstream_digests(self, step: StepPlan) -> dict[tuple[str, str], str]:
        out = {}
        for item in step.inputs.values():
            if item.upstream is not None:
                source = self.state.steps[item.upstream[0]].outputs.get(item.upstream[1])
                if source is not None:
                    out[item.upstream] = source.digest
        return out

    def _from_cache(self, step: StepPlan, record: StepState) -> bool:
        if not step.cache or record.cache_key is None:
            return False
        hit = self.runs.cache_get(record.cache_key)
        if hit is None:
            return False
        run_id, outputs = hit
        if set(outputs) != set(step.outputs) or self.store.missing([o.digest for o in outputs.values()]):
            return False
        record.state = CACHED
        record.outputs = outputs
        record.cached_from = run_id
        return True

    def _submit(self, remote: Any, step: StepPlan, record: StepState) -> None:
        number = len(record.attempts) + 1
        log = self.runs.log_path(self.state.run_id, step.name, number)
        attempt = Attempt(number=number, started_at=time.time(), log=str(log.relative_to(log.parents[1])))
        payload = {
            "run_id": self.state.run_id,
            "step": step.to_json(),
            "attempt": number,
            "log": str(log),
            "root": self.settings.root,
            "store": self.settings.store,
            "src": self.settings.src,
            "blob_cache": self.settings.blob_cache,
            "scratch": str(self.runs.run_dir(self.state.run_id) / "scratch" / step.name),
            "params": self.plan.params,
            "upstream": {
                f"{i.upstream[0]}/{i.upstream[1]}": vars(self.state.steps[i.upstream[0]].outputs[i.upstream[1]])
                for i in step.inputs.values()
                if i.upstream is not None
            },
        }
        options: dict[str, Any] = {"num_cpus": step.cpus, "num_gpus": step.gpus, "max_retries": 0}
        if step.memory:
            options["memory"] = step.memory
        ref = remote.options(name=f"{self.plan.pipeline}.{step.name}", **options).remote(payload)
        record.attempts.append(attempt)
        record.state = RUNNING
        self._retry_at.pop(step.name, None)
        deadline = time.monotonic() + step.timeout_s if step.timeout_s else None
        self._running[step.name] = _Running(step, ref, attempt, deadline)

    def _collect(self) -> None:
        import ray

        if not self._running:
            wake = min(self._retry_at.values(), default=time.monotonic())
            time.sleep(max(0.0, min(WAIT_SLICE_S, wake - time.monotonic())))
            return
        refs = {id(r.ref): name for name, r in self._running.items()}
        timeout = WAIT_SLICE_S
        deadlines = [r.deadline for r in self._running.values() if r.deadline is not None]
        deadlines += list(self._retry_at.values())
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        ready, _ = ray.wait([r.ref for r in self._running.values()], num_returns=1, timeout=timeout)
        for ref in ready:
            name = refs[id(ref)]
            running = self._running.pop(name)
            try:
                result = ray.get(ref)
            except Exception as exc:  # the task itself failed: worker died, out of memory, cancelled
                result = {"ok": False, "error": _first_line(exc), "retry": True}
            self._finish(running, result)
        now = time.monotonic()
        for name, running in list(self._running.items()):
            if running.deadline is not None and now >= running.deadline:
                ray.cancel(running.ref, force=True)
                del self._running[name]
                limit = running.step.timeout_s or 0.0
                self._finish(running, {"ok": False, "error": f"timed out after {limit:g} s", "retry": True})

    def _finish(self, running: _Running, result: Mapping[str, Any]) -> None:
        step, attempt = running.step, running.attempt
        record = self.state.steps[step.name]
        attempt.finished_at = time.time()
        attempt.node = str(result.get("node", ""))
        self._dirty = True
        if result.get("ok"):
            record.state = SUCCEEDED
            record.outputs = {k: OutputRecord(**v) for k, v in result.get("outputs", {}).items()}
            if step.cache and record.cache_key is not None:
                self.runs.cache_put(record.cache_key, self.state.run_id, record.outputs)
            return
        attempt.error = str(result.get("error", "failed"))
        if result.get("retry") and len(record.attempts) <= step.retries:
            record.state = RETRYING
            delay = step.backoff_s * (2 ** (len(record.attempts) - 1))
            self._retry_at[step.name] = time.monotonic() + delay
            return
        tries = len(record.attempts)
        suffix = f" (after {tries} attempts)" if tries > 1 else ""
        self._fail(step.name, attempt.error + suffix)

    def _fail(self, name: str, why: str) -> None:
        record = self.state.steps[name]
        record.state = FAILED
        record.failure = why
        self._dirty = True

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not (force or (self._dirty and now - self._last_write >= STATE_WRITE_INTERVAL_S)):
            return
        self.runs.write_state(self.state)
        self._last_write = now
        self._dirty = False
        if self.on_change is not None:
            self.on_change(self.state)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    # Ray's task errors put the cause last ("...RuntimeError: boom"); the first line is boilerplate.
    return f"{type(exc).__name__}: {lines[-1] if lines else text}"[:500]
