"""Pipeline schedules kept by the cluster: a detached actor per environment (``mlops-schedules-<env>``).

``mlops reconcile`` hands the actor the environment's whole set of schedules (replacing what it had), so
a schedule fires on time while no CLI runs anywhere; the laptop that applied it may be closed. When a
schedule is due the actor starts ``mlops pipeline run NAME --at COMMIT --trigger schedule --wait`` as a
child process on its node: the run is planned from the commit that was applied (not from whatever a
checkout holds now) and goes through the same path as a manual run (Ray job, cache, registration).

A schedule whose previous run is still going is skipped for that tick (and the skip is recorded), so a
slow pipeline never piles up runs. Times are UTC; a 6th cron field counts seconds (``* * * * * */10``).

Schedule (what reconcile sends)::

    {"pipeline": "train-churn", "cron": "0 3 * * 1", "commit": "<sha>", "code": "<tree id>",
     "params": {"max_depth": 4}, "root": "/path/to/repo", "env": {"MLOPS_STORE": ..., ...}}
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from typing import Any

ACTOR_PREFIX = "mlops-schedules-"
TICK_S = 1.0
MAX_HISTORY = 50


def next_fire(cron: str, after: float) -> float:
    """The first time strictly after ``after`` (epoch seconds, UTC) that ``cron`` names."""
    from croniter import croniter

    start = dt.datetime.fromtimestamp(after, dt.UTC)
    found: dt.datetime = croniter(cron, start).get_next(dt.datetime)
    return found.timestamp()


class PipelineScheduler:
    """The actor's class (plain Python; :func:`scheduler_actor` makes it a detached actor)."""

    def __init__(self, environment: str) -> None:
        self.environment = environment
        self.schedules: dict[str, dict[str, Any]] = {}
        self.next_at: dict[str, float] = {}
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.history: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="mlops-scheduler", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ what reconcile calls

    def apply(self, schedules: list[dict[str, Any]]) -> dict[str, Any]:
        """Replace the set of schedules; a schedule whose cron did not change keeps its next time."""
        now = time.time()
        with self._lock:
            wanted = {s["pipeline"]: dict(s) for s in schedules}
            for name in list(self.schedules):
                if name not in wanted:
                    del self.schedules[name]
                    self.next_at.pop(name, None)
            for name, schedule in wanted.items():
                old = self.schedules.get(name)
                self.schedules[name] = schedule
                if old is None or old.get("cron") != schedule["cron"] or name not in self.next_at:
                    self.next_at[name] = next_fire(schedule["cron"], now)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            out = {}
            for name, schedule in self.schedules.items():
                child = self.children.get(name)
                out[name] = {
                    **{k: v for k, v in schedule.items() if k != "env"},
                    "next": self.next_at.get(name),
                    "active": child is not None and child.poll() is None,
                }
            history = list(self.history)
        return {"environment": self.environment, "schedules": out, "history": history, "now": time.time()}

    # ------------------------------------------------------------------ the clock

    def _loop(self) -> None:
        while True:
            time.sleep(TICK_S)
            try:
                self._tick(time.time())
            except Exception as exc:  # the clock must keep going; the error is in the history
                self._record("-", "error", f"{type(exc).__name__}: {exc}")

    def _tick(self, now: float) -> None:
        with self._lock:
            due = [name for name, at in self.next_at.items() if at <= now]
            for name in due:
                schedule = self.schedules[name]
                self.next_at[name] = next_fire(schedule["cron"], now)
                child = self.children.get(name)
                if child is not None and child.poll() is None:
                    self._record(name, "skipped", "the previous scheduled run is still going")
                    continue
                self.children[name] = self._start(schedule)
                self._record(name, "started", f"pid {self.children[name].pid}")

    def _start(self, schedule: dict[str, Any]) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-c",
            "from mlops.cli.main import main; main()",
            "pipeline",
            "run",
            schedule["pipeline"],
            "--repo",
            schedule["root"],
            "--at",
            schedule["commit"],
            "--trigger",
            f"schedule {schedule['cron']}",
            "--wait",
        ]
        if self.environment:
            command += ["--env", self.environment]
        for key, value in sorted(schedule.get("params", {}).items()):
            command += ["--param", f"{key}={value}"]
        env = {**os.environ, **schedule.get("env", {})}
        # Output goes nowhere: the run's own record and step logs are the place to look.
        return subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def _record(self, pipeline: str, what: str, detail: str) -> None:
        self.history.append({"at": time.time(), "pipeline": pipeline, "event": what, "detail": detail})
        del self.history[:-MAX_HISTORY]


def actor_name(environment: str) -> str:
    return f"{ACTOR_PREFIX}{environment}"


def scheduler_actor(environment: str, create: bool) -> Any:
    """The environment's scheduler (created when missing and ``create``); the process must be connected."""
    import ray

    from mlops.appliers.cluster import NAMESPACE

    name = actor_name(environment)
    try:
        if not create:
            return ray.get_actor(name, namespace=NAMESPACE)
        remote_class = ray.remote(num_cpus=0, max_restarts=0)(PipelineScheduler)
        return remote_class.options(
            name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote(environment)
    except ValueError:
        return None


def live_schedules(environment: str, timeout: float = 30.0) -> dict[str, Any]:
    """What the cluster's scheduler for ``environment`` holds (empty when it has none)."""
    import ray

    actor = scheduler_actor(environment, create=False)
    if actor is None:
        return {"environment": environment, "schedules": {}, "history": [], "now": time.time()}
    result: dict[str, Any] = ray.get(actor.describe.remote(), timeout=timeout)
    return result


def apply_schedules(environment: str, schedules: list[dict[str, Any]], timeout: float = 30.0) -> dict[str, Any]:
    import ray

    actor = scheduler_actor(environment, create=bool(schedules))
    if actor is None:  # nothing to schedule and no scheduler: nothing to do
        return {"environment": environment, "schedules": {}, "history": [], "now": time.time()}
    result: dict[str, Any] = ray.get(actor.apply.remote(schedules), timeout=timeout)
    return result
