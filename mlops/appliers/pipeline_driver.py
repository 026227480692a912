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

A step is submitted as soon as every step it needs has finished or is in flight: the in-flight ones'
ObjectRefs are its arguments, so Ray starts it the moment they end, with no trip through this loop in
between (a 20-layer DAG paid that trip 20 times). Such a step stays ``pending`` in the record until
its needs are done; its worker looks up the cache itself (the key needs their outputs' digests), and
returns ``blocked`` without running when one of them did not succeed, which is not an attempt.
"""

from __future__ import annotations

import heapq
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
STATE_WRITE_SHARE = 0.1  # at most this share of the driver's time goes to rewriting the run record
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
    awaited: dict[str, Any]  # needs in flight when it was submitted -> the ObjectRef it was given
    started: bool  # every need is done: the attempt is in the record and its timeout runs


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
    """The loop that runs one plan: event-driven, so its cost per step does not grow with the size of the DAG.

    Each step keeps a count of the steps it needs that are not done yet; when a step settles (succeeded,
    cached, failed, skipped) only its dependents are looked at. Steps whose needs are all done wait in a
    queue in plan order. Each turn of the loop blocks in one ``ray.wait`` until a step's task ends (or a
    deadline or a retry is due), then takes every other task that has ended by then too, settles them,
    starts what became ready, and only then writes cache entries and (at most every
    ``STATE_WRITE_INTERVAL_S``) the run record, so the next steps are not kept waiting by the bookkeeping.
    """

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
        self._by_ref: dict[Any, str] = {}  # the running task's ObjectRef -> its step
        self._variants: dict[tuple[float, float, int | None], Any] = {}
        self._retry_at: dict[str, float] = {}
        self._last_write = 0.0
        self._write_interval = STATE_WRITE_INTERVAL_S
        self._dirty = False
        self._order = {step.name: i for i, step in enumerate(plan.steps)}
        self._steps = {step.name: step for step in plan.steps}
        self._dependents: dict[str, list[str]] = {step.name: [] for step in plan.steps}
        self._unmet: dict[str, int] = {}  # per step: how many of its needs are not done yet
        self._ready: list[tuple[int, str]] = []  # heap of (plan position, step) whose needs are all done
        self._cache_writes: list[tuple[str, dict[str, OutputRecord]]] = []
        self._advanced: list[str] = []  # steps submitted or settled since dependents were last looked at
        self._node = ""
        self._folder = str(runs.run_dir(state.run_id))  # paths per step as strings: Path objects cost the loop
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
        self._index()
        self._flush(force=True)
        self._node = str(ray.get_runtime_context().get_node_id())
        remote = ray.remote(execute)
        while True:
            self._start_ready(remote)
            self._write_cache_entries()
            self._flush()
            if not self._running and not self._retry_at:
                break
            self._collect()
        self.state.finished_at = time.time()
        done = all(s.state in DONE_STATES for s in self.state.steps.values())
        if not done:
            failed = self.state.failed_steps
            self.state.error = "; ".join(f"{n}: {self.state.steps[n].failure}" for n in failed) or "stopped"
        self._flush(force=True)
        # The run stays "running" here: its caller settles it after what follows the DAG (registration).
        self.outcome = RUN_SUCCEEDED if done else RUN_FAILED
        return self.state

    def _index(self) -> None:
        """Count each step's unmet needs; queue what can start; skip what can never run (resume, infeasible)."""
        for step in self.plan.steps:
            for need in step.needs:
                self._dependents.setdefault(need, []).append(step.name)
            self._unmet[step.name] = sum(1 for n in step.needs if self.state.steps[n].state not in DONE_STATES)
        for step in self.plan.steps:  # plan order: a skip is seen by every later step that needs it
            record = self.state.steps[step.name]
            if record.state != PENDING:
                continue
            if any(self.state.steps[n].state in (FAILED, SKIPPED) for n in step.needs):
                self._skip(step)
            elif self._unmet[step.name] == 0:
                heapq.heappush(self._ready, (self._order[step.name], step.name))

    def _start_ready(self, remote: Any) -> None:
        """Start (or take from the cache) every queued step; retries whose backoff is over join the queue."""
        if self._retry_at:
            now = time.monotonic()
            for name, at in list(self._retry_at.items()):
                if at <= now:
                    del self._retry_at[name]
                    heapq.heappush(self._ready, (self._order[name], name))
        while self._ready:
            _, name = heapq.heappop(self._ready)
            step = self._steps[name]
            record = self.state.steps[name]
            if record.state == RETRYING:
                self._submit(remote, step, record)
                continue
            if record.state != PENDING:
                continue
            record.cache_key = cache_key(self.plan, step, self._upstream_digests(step))
            self._dirty = True
            if self._from_cache(step, record):
                self._settled(name)
                continue
            self._submit(remote, step, record)
        self._submit_early(remote)

    def _submit_early(self, remote: Any) -> None:
        """Submit the pending dependents of what advanced whose needs are all done or in flight (and theirs)."""
        while self._advanced:
            name = self._advanced.pop()
            for dependent in self._dependents.get(name, ()):
                record = self.state.steps[dependent]
                if record.state != PENDING or dependent in self._running or self._unmet[dependent] == 0:
                    continue  # running, settled, or queued to start the usual way
                step = self._steps[dependent]
                if all(self.state.steps[n].state in DONE_STATES or n in self._running for n in step.needs):
                    self._submit(remote, step, record)

    def _settled(self, name: str) -> None:
        """``name`` reached a final state: its dependents lose an unmet need, or are skipped (and theirs, ...)."""
        self._advanced.append(name)
        stack = [name]
        while stack:
            settled = stack.pop()
            done = self.state.steps[settled].state in DONE_STATES
            for dependent in self._dependents.get(settled, ()):
                if self.state.steps[dependent].state != PENDING:
                    continue
                if done:
                    self._unmet[dependent] -= 1
                    if self._unmet[dependent] == 0:
                        if dependent in self._running:
                            self._started(self._running[dependent], time.time())
                        else:
                            heapq.heappush(self._ready, (self._order[dependent], dependent))
                else:
                    self._skip(self._steps[dependent])
                    stack.append(dependent)

    def _skip(self, step: StepPlan) -> None:
        record = self.state.steps[step.name]
        record.state = SKIPPED
        failed = [n for n in step.needs if self.state.steps[n].state in (FAILED, SKIPPED)]
        record.failure = "not run: " + ", ".join(failed) + " did not succeed"
        self._dirty = True

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
        """Submit an attempt; with needs still in flight it waits for them in Ray, not here."""
        number = len(record.attempts) + 1
        log = f"logs/{step.name}.{number}.log"  # the layout of PipelineRunStore.log_path, relative to the run
        attempt = Attempt(number=number, started_at=time.time(), log=log)
        awaited = {n: self._running[n].ref for n in step.needs if self.state.steps[n].state not in DONE_STATES}
        payload = {
            "run_id": self.state.run_id,
            "step": step,  # pickled as it is (a frozen dataclass): cheaper than to_json() here and back there
            "attempt": number,
            "log": f"{self._folder}/{log}",
            "root": self.settings.root,
            "store": self.settings.store,
            "src": self.settings.src,
            "blob_cache": self.settings.blob_cache,
            "scratch": f"{self._folder}/scratch/{step.name}",
            "params": self.plan.params,
            "upstream": {
                f"{i.upstream[0]}/{i.upstream[1]}": vars(self.state.steps[i.upstream[0]].outputs[i.upstream[1]])
                for i in step.inputs.values()
                if i.upstream is not None and i.upstream[0] not in awaited
            },
        }
        if awaited:
            payload["awaited"] = list(awaited)
            payload["cache"] = {
                "folder": str(self.runs.folder),
                "node": self._node,
                "pipeline": self.plan.pipeline,
                "code": self.plan.code_digest,
            }
        options: dict[str, Any] = {"num_cpus": step.cpus, "num_gpus": step.gpus, "max_retries": 0}
        if step.memory:
            options["memory"] = step.memory
        key = (step.cpus, step.gpus, step.memory)
        submit = self._variants.get(key)
        if submit is None:  # one options() per resource shape: building it per step costs the driver CPU
            submit = self._variants[key] = remote.options(**options)
        ref = submit.remote(payload, *awaited.values())
        self._retry_at.pop(step.name, None)
        running = _Running(step, ref, attempt, None, awaited, started=False)
        self._running[step.name] = running
        self._by_ref[ref] = step.name
        self._advanced.append(step.name)
        if not awaited:
            self._started(running, attempt.started_at)

    def _started(self, running: _Running, at: float) -> None:
        """Every need of the step is done: its attempt counts from here, and so does its timeout."""
        if running.started:
            return
        running.started = True
        running.attempt.started_at = at
        record = self.state.steps[running.step.name]
        record.attempts.append(running.attempt)
        record.state = RUNNING
        self._dirty = True
        if running.step.timeout_s:
            running.deadline = time.monotonic() + running.step.timeout_s

    def _not_started(self, running: _Running) -> None:
        """An early attempt that did not run its step (a need failed, or the driver must look up the cache)."""
        record = self.state.steps[running.step.name]
        if running.started:
            record.attempts.remove(running.attempt)
            running.started = False
        if record.state in (RUNNING, PENDING):
            record.state = PENDING
            self._dirty = True
            if self._unmet[running.step.name] == 0:
                heapq.heappush(self._ready, (self._order[running.step.name], running.step.name))
            elif not any(n in self._running and self._running[n].ref == ref for n, ref in running.awaited.items()):
                # no need is still the attempt it failed behind: submit it again behind their new attempts
                # (or, for a need waiting out a backoff, once that need is submitted again)
                self._advanced.extend(running.awaited)

    def _collect(self) -> None:
        """Wait for the first task to end (or a deadline), then take every task that has ended by then."""
        import ray

        if not self._running:
            wake = min(self._retry_at.values(), default=time.monotonic())
            time.sleep(max(0.0, min(WAIT_SLICE_S, wake - time.monotonic())))
            return
        timeout = WAIT_SLICE_S
        deadlines = [r.deadline for r in self._running.values() if r.deadline is not None]
        deadlines += list(self._retry_at.values())
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        refs = list(self._by_ref)
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        results: list[Any] | None = None
        if ready:
            try:
                results = ray.get(ready)
            except Exception:  # one of them failed: take them one by one below
                results = None
        outcomes = []
        for i, ref in enumerate(ready):
            name = self._by_ref.pop(ref)
            running = self._running.pop(name)
            if results is not None:
                result = results[i]
            else:
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the task itself failed: worker died, out of memory, cancelled
                    result = {"ok": False, "error": _first_line(exc), "retry": True, "crashed": True}
            outcomes.append((self._order[name], running, result))
        outcomes.sort(key=lambda item: item[0])  # plan order: a step's needs are settled before it
        for _, running, result in outcomes:
            self._outcome(running, result)
        now = time.monotonic()
        for name, running in list(self._running.items()):
            if running.deadline is not None and now >= running.deadline:
                ray.cancel(running.ref, force=True)
                del self._running[name]
                self._by_ref.pop(running.ref, None)
                limit = running.step.timeout_s or 0.0
                self._finish(running, {"ok": False, "error": f"timed out after {limit:g} s", "retry": True})

    def _outcome(self, running: _Running, result: Mapping[str, Any]) -> None:
        """What an attempt's task returned, including early attempts that never ran the step."""
        name = running.step.name
        record = self.state.steps[name]
        if record.state not in (PENDING, RUNNING):
            return  # skipped (a need failed) while it waited
        if result.get("blocked") or result.get("recheck"):
            if result.get("cache_key"):
                record.cache_key = str(result["cache_key"])
            self._not_started(running)
            return
        needs_done = all(self.state.steps[n].state in DONE_STATES for n in running.step.needs)
        if result.get("crashed") and not running.started and not needs_done:
            self._not_started(running)  # it died waiting for a need that failed: not an attempt of its own
            return
        if result.get("cache_key"):
            record.cache_key = str(result["cache_key"])
        if result.get("cached_from"):
            if running.started:
                record.attempts.remove(running.attempt)
            record.state = CACHED
            record.outputs = {k: OutputRecord(**v) for k, v in result.get("outputs", {}).items()}
            record.cached_from = str(result["cached_from"])
            self._dirty = True
            self._settled(name)
            return
        started_at = float(result.get("started_at") or time.time())
        self._started(running, started_at)
        running.attempt.started_at = (
            started_at  # when its worker began, not when the driver learned its needs were done
        )
        self._finish(running, result)

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
                self._cache_writes.append((record.cache_key, record.outputs))
            self._settled(step.name)
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
        self._settled(step.name)

    def _fail(self, name: str, why: str) -> None:
        record = self.state.steps[name]
        record.state = FAILED
        record.failure = why
        self._dirty = True

    def _write_cache_entries(self) -> None:
        """Record the outputs of steps that succeeded (after their dependents were started: off their path)."""
        if self._cache_writes:
            self.runs.cache_put_many((key, self.state.run_id, outputs) for key, outputs in self._cache_writes)
            self._cache_writes.clear()

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not (force or (self._dirty and now - self._last_write >= self._write_interval)):
            return
        started = time.perf_counter()
        self.runs.write_state(self.state)
        # A big run's record costs more to write: keep writing it to a small share of the driver's time.
        self._write_interval = max(STATE_WRITE_INTERVAL_S, (time.perf_counter() - started) / STATE_WRITE_SHARE)
        self._last_write = time.monotonic()
        self._dirty = False
        if self.on_change is not None:
            self.on_change(self.state)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    # Ray's task errors put the cause last ("...RuntimeError: boom"); the first line is boilerplate.
    return f"{type(exc).__name__}: {lines[-1] if lines else text}"[:500]
