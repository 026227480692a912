"""What the cluster remembers about each environment, in a detached named actor (``mlops-env-<env>`` in the
``mlops`` namespace): the reconcile lock (holder, commit, time), the last applied commit, the last good
configuration, the rollout in progress (with pause / resume / abort requests) and the applications kept
for a grace period.

The actor lives as long as the cluster (detached); an actor serializes its calls, so acquiring the lock is
atomic. If the cluster restarts, the record starts empty: the next reconcile applies HEAD and records it.
"""

from __future__ import annotations

import time
from typing import Any

from mlops.errors import MlopsError

ACTOR_PREFIX = "mlops-env-"
MAX_EVENTS = 200


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
            "now": now,
        }

    def record_applied(self, commit: str, config: dict[str, Any], holder_id: str | None = None) -> None:
        self.applied = {"commit": commit, "at": time.time(), "by": holder_id}
        self.last_good = {"commit": commit, "config": config, "at": time.time()}
        self._event("applied", f"applied {commit[:12]}")

    def set_last_good(self, commit: str, config: dict[str, Any]) -> None:
        self.last_good = {"commit": commit, "config": config, "at": time.time()}

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
        return remote_class.options(
            name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote(environment)
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
            return {"environment": self.environment, "lock": None, "applied": None, "last_good": None,
                    "rollout": None, "retained": {}, "events": [], "now": time.time()}
        result: dict[str, Any] = self.call("snapshot")
        return result
