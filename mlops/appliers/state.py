"""What the cluster remembers about each environment, in a detached named actor (``mlops-env-<env>`` in the
``mlops`` namespace): the reconcile lock (holder, commit, time), the last applied commit, the last good
configuration, the rollout in progress (with pause / resume / abort requests), the applications kept
for a grace period, and the routers' traffic weights as the reconciler last published them.

The actor lives as long as the cluster (detached). It is an asyncio actor only so that routers can wait
for new weights (:meth:`EnvironmentState.watch_routes`) without holding it up; every other method is
synchronous, and Ray runs those on the actor's one event-loop thread, one at a time, so acquiring the lock
is still atomic. If the cluster restarts, the record starts empty: the next reconcile applies HEAD and
records it.

Router weights: Serve delivers a router's ``user_config`` only after a whole declarative config went
through its controller (one to two seconds with 40 applications on two cores). The reconciler
therefore publishes the new weights here first; each router replica has a request waiting in
:meth:`~EnvironmentState.watch_routes` and applies them within milliseconds. The Serve config that
follows carries the same weights and stays the record of what runs (a replica that starts later reads
it from Serve).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from mlops.errors import MlopsError

ACTOR_PREFIX = "mlops-env-"
MAX_EVENTS = 200
# A router's request for new weights returns empty after this long, and is sent again.
WATCH_TIMEOUT_S = 30.0
# How long a router waits before looking for its environment's state actor again (none yet, or it died).
WATCH_RETRY_S = 5.0


class EnvironmentState:
    """The actor's class (plain Python; :func:`state_actor` makes it a detached actor)."""

    def __init__(self, environment: str) -> None:
        self.environment = environment
        self.lock: dict[str, Any] | None = None
        self.applied: dict[str, Any] | None = None
        self.last_good: dict[str, Any] | None = None
        self.rollout: dict[str, Any] | None = None
        self.retained: dict[str, float] = {}
        self.events: list[dict[str, Any]] = []
        self.routes: dict[str, dict[str, Any]] = {}  # router app -> {"serial": n, "config": user_config}
        self._serial = 0
        self._published = asyncio.Event()

    # ------------------------------------------------------------------ the lock

    def acquire(self, holder: dict[str, Any]) -> dict[str, Any]:
        """Take the lock for ``holder`` ({id, who, host, pid, commit}); refused while another holds it."""
        if self.lock is not None and self.lock.get("id") != holder.get("id"):
            return {"ok": False, "lock": dict(self.lock)}
        self.lock = {**holder, "since": time.time()}
        return {"ok": True, "lock": dict(self.lock)}

    def release(self, holder_id: str) -> bool:
        if self.lock is not None and self.lock.get("id") == holder_id:
            self.lock = None
            return True
        return False

    def break_lock(self) -> dict[str, Any] | None:
        broken, self.lock = self.lock, None
        if broken is not None:
            self._event("lock-broken", f"lock of {broken.get('who')} (pid {broken.get('pid')}) broken")
        return broken

    def holds(self, holder_id: str) -> bool:
        return self.lock is not None and self.lock.get("id") == holder_id

    # ------------------------------------------------------------------ records

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        self.retained = {app: until for app, until in self.retained.items() if until > now - 86400}
        return {
            "environment": self.environment,
            "lock": self.lock,
            "applied": self.applied,
            "last_good": self.last_good,
            "rollout": self.rollout,
            "retained": dict(self.retained),
            "events": self.events[-20:],
            "routes": {app: dict(entry) for app, entry in self.routes.items()},
            "now": now,
        }

    def record_applied(self, commit: str, config: dict[str, Any], holder_id: str | None = None) -> None:
        self.applied = {"commit": commit, "at": time.time(), "by": holder_id}
        self.last_good = {"commit": commit, "config": config, "at": time.time()}
        self._event("applied", f"applied {commit[:12]}")

    def set_rollout(self, rollout: dict[str, Any] | None) -> dict[str, Any] | None:
        control = (self.rollout or {}).get("control")
        self.rollout = None if rollout is None else {**rollout, "control": rollout.get("control", control)}
        return self.rollout

    def control(self, action: str, who: str, reason: str = "") -> dict[str, Any]:
        """pause / resume / abort the rollout in progress (the reconciler running it reads this)."""
        if self.rollout is None or self.rollout.get("phase") in ("complete", "failed", "aborted"):
            return {"ok": False, "rollout": self.rollout}
        self.rollout["control"] = {"action": action, "who": who, "reason": reason, "at": time.time()}
        self._event(f"rollout-{action}", f"{action} by {who}" + (f": {reason}" if reason else ""))
        return {"ok": True, "rollout": dict(self.rollout)}

    def retain(self, app: str, until: float) -> None:
        self.retained[app] = until

    def forget(self, app: str) -> None:
        self.retained.pop(app, None)

    def event(self, kind: str, message: str) -> None:
        self._event(kind, message)

    # ------------------------------------------------------------------ router weights

    def publish_routes(self, configs: dict[str, dict[str, Any]]) -> int:
        """New ``user_config`` of the routers named (router app -> config); returns its serial."""
        self._serial += 1
        for app, config in configs.items():
            self.routes[app] = {"serial": self._serial, "config": config}
        published, self._published = self._published, asyncio.Event()
        published.set()
        return self._serial

    async def watch_routes(self, app: str, after: int | None, timeout: float) -> dict[str, Any]:
        """The router's weights once they are newer than serial ``after`` ({"serial", "config"}), or
        ``config`` None when ``timeout`` passes first. ``after`` None subscribes: the current serial at once,
        without a config (a replica starts from the config Serve gives it, never from an older one here)."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.routes.get(app)
            serial = int(entry["serial"]) if entry is not None else 0
            if after is None:
                return {"serial": serial, "config": None}
            if entry is not None and serial > after:
                return {"serial": serial, "config": entry["config"]}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {"serial": after, "config": None}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._published.wait(), remaining)

    def _event(self, kind: str, message: str) -> None:
        self.events.append({"at": time.time(), "kind": kind, "message": message})
        del self.events[:-MAX_EVENTS]


class StateUnavailable(MlopsError):
    exit_code = 1


def actor_name(environment: str) -> str:
    return f"{ACTOR_PREFIX}{environment}"


def state_actor(environment: str, create: bool = True) -> Any:
    """The environment's state actor (created when missing); the process must be connected to the cluster."""
    import ray

    from mlops.appliers.cluster import NAMESPACE

    name = actor_name(environment)
    try:
        if not create:
            return ray.get_actor(name, namespace=NAMESPACE)
        remote_class = ray.remote(num_cpus=0, max_restarts=0)(EnvironmentState)
        return remote_class.options(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote(
            environment
        )
    except ValueError:
        return None
    except Exception as exc:
        raise StateUnavailable(f"cannot reach the state of environment {environment} in the cluster: {exc}") from None


class StateClient:
    """Blocking calls to an environment's state actor."""

    def __init__(self, environment: str, create: bool = True, timeout: float = 30.0) -> None:
        self.environment = environment
        self.timeout = timeout
        self.actor = state_actor(environment, create)

    @property
    def exists(self) -> bool:
        return self.actor is not None

    def call(self, method: str, *args: Any) -> Any:
        import ray

        if self.actor is None:
            return None
        try:
            return ray.get(getattr(self.actor, method).remote(*args), timeout=self.timeout)
        except Exception as exc:
            raise StateUnavailable(f"the state of environment {self.environment} did not answer: {exc}") from None

    def snapshot(self) -> dict[str, Any]:
        if self.actor is None:
            return {
                "environment": self.environment,
                "lock": None,
                "applied": None,
                "last_good": None,
                "rollout": None,
                "retained": {},
                "events": [],
                "routes": {},
                "now": time.time(),
            }
        result: dict[str, Any] = self.call("snapshot")
        return result


class RoutesFollower:
    """A router replica's side of :meth:`EnvironmentState.publish_routes`: a daemon thread that keeps one
    request waiting in :meth:`EnvironmentState.watch_routes` and hands each newer config to ``apply``.

    Best effort by design: while the state actor is missing (not created yet, killed, a cluster restart) or is
    an older one without ``watch_routes``, the router simply follows Serve's reconfigure alone.
    """

    def __init__(
        self,
        environment: str,
        app: str,
        apply: Callable[[dict[str, Any]], None],
        timeout: float = WATCH_TIMEOUT_S,
        retry: float = WATCH_RETRY_S,
    ) -> None:
        self.environment = environment
        self.app = app
        self.apply = apply
        self.timeout = timeout
        self.retry = retry
        self.applied = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mlops-routes-{app}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import ray

        from mlops.appliers.cluster import NAMESPACE

        actor: Any = None
        known: int | None = None
        while not self._stop.is_set():
            try:
                if actor is None:
                    actor = ray.get_actor(actor_name(self.environment), namespace=NAMESPACE)
                    known = None
                answer = ray.get(actor.watch_routes.remote(self.app, known, self.timeout), timeout=self.timeout + 30)
            except Exception:
                actor = None
                self._stop.wait(self.retry)
                continue
            config = answer.get("config")
            if known is not None and config is not None:
                try:
                    self.apply(config)
                    self.applied += 1
                except Exception:
                    pass  # a config the router refuses is Serve's to report when it delivers the same one
            known = int(answer.get("serial") or 0)
