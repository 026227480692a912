"""The router: the HTTP entry of one environment deployment, in front of its model versions.

Its application's ``args`` never change (environment and deployment names); the traffic weights live in
its ``user_config``, which Serve applies through :meth:`Router.reconfigure` without restarting anything.
That takes a whole declarative config through Serve's controller (well over a second with dozens of
applications), so the reconciler first publishes the same weights in the environment's state actor, where
each replica has a request waiting (:class:`mlops.appliers.state.RoutesFollower`): a switch or a rollback
reaches every replica within milliseconds, and Serve's reconfigure that follows changes nothing. Each
request goes to one version drawn by weight, gets a prediction id, and comes back with ``X-Model-Version``
(``NAME@N``), ``X-Prediction-Id`` and ``X-Environment`` headers.

A request normally costs one hop more than a bare deployment (router, then the version's server). To
avoid it, the router builds an in-process copy of each version's model server (same arguments, asked
of the server itself; same digest check, scoring and prediction log) in the background, and once that
copy is healthy it scores there; until then, and whenever the copy fails, requests go through the
version's own application, so a switch never waits for a load. Copies are built only once the weights
have held for LOCAL_COPY_DELAY_S (steady state), never in the middle of a switch or a rollback.

Per-version counters (requests, server errors, latencies, and agreement with the other version when
``shadow`` is on) are what the reconciler's analysis gates read (:meth:`Router.stats`). With shadowing on,
a request served by one version is also sent to the other one after the answer is returned (never
delaying it), and the two predictions are compared.

user_config::

    {"model": "churn", "routes": [{"app": "development.churn.v3", "version": 3, "weight": 90},
                                  {"app": "development.churn.v4", "version": 4, "weight": 10}],
     "shadow": false}
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mlops.appliers.server import DEPLOYMENT_NAME as SERVER_DEPLOYMENT
from mlops.appliers.state import RoutesFollower
from mlops.planner.desired import router_app_name

DEPLOYMENT_NAME = "Router"
LATENCY_SAMPLES = 20_000
AGREEMENT_TOLERANCE = 1e-6
# A copy is built only once the weights have held this long: a load competes with requests for the
# replica's CPU, and during a switch or a rollback every millisecond of the replica is wanted.
LOCAL_COPY_DELAY_S = 10.0


@dataclass(frozen=True)
class Route:
    app: str
    version: int
    weight: int


@dataclass(frozen=True)
class _Table:
    """Everything a request reads about the weights, replaced as one object: the replica's event loop reads it
    while the thread following published weights may replace it."""

    model: str
    routes: tuple[Route, ...] = ()
    cumulative: tuple[int, ...] = ()
    shadow: bool = False


@dataclass
class VersionStats:
    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    compared: int = 0
    agreed: int = 0

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "client_errors": self.client_errors,
            "error_rate": (self.errors / self.requests) if self.requests else 0.0,
            "p50_ms": _quantile(ordered, 0.5),
            "p99_ms": _quantile(ordered, 0.99),
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement": (self.agreed / self.compared) if self.compared else None,
        }


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two answers to the same request say the same thing (labels equal; values within 1e-6 relative)."""
    left, right = a.get("predictions"), b.get("predictions")
    if not isinstance(left, list) or not isinstance(right, list) or len(left) != len(right):
        return False
    for x, y in zip(left, right, strict=True):
        if isinstance(x, int) and isinstance(y, int):
            if x != y:
                return False
        elif abs(float(x) - float(y)) > AGREEMENT_TOLERANCE * max(1.0, abs(float(x)), abs(float(y))):
            return False
    return True


class Router:
    def __init__(self, args: dict[str, Any]) -> None:
        self.environment = str(args.get("environment", ""))
        self.deployment = str(args.get("deployment", ""))
        self._table = _Table(str(args.get("model", self.deployment)))
        self._reconfiguring = threading.Lock()
        self._handles: dict[str, Any] = {}
        self._stats: dict[int, VersionStats] = {}
        self._since = time.time()
        self._random = random.Random()
        self._background: set[asyncio.Task[None]] = set()
        self._local: dict[str, Any] = {}  # app -> in-process ModelServer, healthy
        self._loading: set[str] = set()
        self._configured_at = time.monotonic()
        self._follower: RoutesFollower | None = None
        if self.environment and self.deployment and _in_ray_actor():
            self._follower = RoutesFollower(
                self.environment, router_app_name(self.environment, self.deployment), self.reconfigure
            )
            self._follower.start()

    @property
    def model(self) -> str:
        return self._table.model

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._table.routes

    @property
    def shadow(self) -> bool:
        return self._table.shadow

    # ------------------------------------------------------------------ configuration

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Serve's user_config, or the same weights published by the reconciler (the follower's thread)."""
        routes = tuple(Route(str(r["app"]), int(r["version"]), int(r["weight"])) for r in config.get("routes", []))
        total = 0
        cumulative = []
        for route in routes:
            total += max(0, route.weight)
            cumulative.append(total)
        with self._reconfiguring:
            self._table = _Table(
                str(config.get("model", self.model)), routes, tuple(cumulative), bool(config.get("shadow", False))
            )
            self._configured_at = time.monotonic()
            for route in routes:
                self._stats.setdefault(route.version, VersionStats())
            wanted = {r.app for r in routes if r.weight > 0}
            for app in [a for a in list(self._local) if a not in wanted]:
                self._local.pop(app, None)

    def _choose(self) -> Route | None:
        table = self._table
        if not table.routes or not table.cumulative or table.cumulative[-1] <= 0:
            return None
        point = self._random.random() * table.cumulative[-1]
        return table.routes[bisect.bisect_right(table.cumulative, point)]

    def _handle(self, app: str) -> Any:
        handle = self._handles.get(app)
        if handle is None:
            from ray import serve

            handle = serve.get_deployment_handle(SERVER_DEPLOYMENT, app_name=app)
            self._handles[app] = handle
        return handle

    # ------------------------------------------------------------------ requests

    async def _call(self, route: Route, body: bytes, prediction_id: str, log: bool = True) -> tuple[int, bytes]:
        local = self._local.get(route.app)
        if local is not None:
            try:
                status, payload = await local.predict(body, prediction_id, log)
                if status < 500:
                    return int(status), bytes(payload)
            except Exception:
                pass
            self._local.pop(route.app, None)  # misbehaving copy: back to the version's application
        elif (
            route.app not in self._loading
            and route.weight > 0
            and time.monotonic() - self._configured_at > LOCAL_COPY_DELAY_S
        ):
            self._start_local_load(route.app)
        status, payload = await self._handle(route.app).predict.remote(body, prediction_id, log)
        return int(status), bytes(payload)

    def _start_local_load(self, app: str) -> None:
        self._loading.add(app)
        task = asyncio.get_running_loop().create_task(self._load_local(app))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _load_local(self, app: str) -> None:
        try:
            args = await self._handle(app).describe_args.remote()
            loop = asyncio.get_running_loop()
            server = await loop.run_in_executor(None, _build_local_server, dict(args))
            if server is not None and any(r.app == app and r.weight > 0 for r in self.routes):
                self._local[app] = server
        except Exception:
            pass  # the application keeps serving; a later request tries again
        finally:
            self._loading.discard(app)

    async def handle(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        route = self._choose()
        prediction_id = uuid.uuid4().hex
        headers = {"X-Prediction-Id": prediction_id, "X-Environment": self.environment}
        if route is None:
            return 503, json.dumps({"error": f"{self.deployment}: no version receives traffic"}).encode(), headers
        started = time.perf_counter()
        try:
            status, payload = await self._call(route, body, prediction_id)
        except Exception as exc:
            # The chosen version went away (replica stopped mid-request): one retry on the other version.
            fallback = next((r for r in self.routes if r.app != route.app and r.weight > 0), None)
            if fallback is None:
                status, payload = 503, json.dumps({"error": f"{route.app}: {type(exc).__name__}"}).encode()
            else:
                route = fallback
                try:
                    status, payload = await self._call(route, body, prediction_id)
                except Exception as again:
                    status, payload = 503, json.dumps({"error": f"{route.app}: {type(again).__name__}"}).encode()
        latency = (time.perf_counter() - started) * 1000
        stats = self._stats.setdefault(route.version, VersionStats())
        stats.requests += 1
        if status >= 500:
            stats.errors += 1
        elif status >= 400:
            stats.client_errors += 1
        stats.latencies_ms.append(latency)
        headers["X-Model-Version"] = f"{self.model}@{route.version}"
        if self.shadow and status == 200:
            other = next((r for r in self.routes if r.app != route.app), None)
            if other is not None:
                task = asyncio.get_running_loop().create_task(self._compare(route, other, body, payload))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        return status, payload, headers

    async def _compare(self, served: Route, other: Route, body: bytes, payload: bytes) -> None:
        with contextlib.suppress(Exception):
            status, shadow_payload = await self._call(other, body, uuid.uuid4().hex, log=False)
            if status != 200:
                return
            stats = self._stats.setdefault(served.version, VersionStats())
            stats.compared += 1
            if agree(json.loads(payload), json.loads(shadow_payload)):
                stats.agreed += 1

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response

        if request.method == "GET":
            return Response(json.dumps(self.describe()), media_type="application/json")
        status, payload, headers = await self.handle(await request.body())
        return Response(payload, status_code=status, media_type="application/json", headers=headers)

    # ------------------------------------------------------------------ what the reconciler reads

    def describe(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "deployment": self.deployment,
            "model": self.model,
            "routes": [{"app": r.app, "version": r.version, "weight": r.weight} for r in self.routes],
            "shadow": self.shadow,
        }

    def stats(self, reset: bool = False) -> dict[str, Any]:
        out = {
            "since": self._since,
            "until": time.time(),
            "routes": self.describe()["routes"],
            "versions": {str(v): s.snapshot() for v, s in self._stats.items()},
        }
        if reset:
            self._stats = {r.version: VersionStats() for r in self.routes}
            self._since = time.time()
        return out


def _in_ray_actor() -> bool:
    """Whether this process is a Ray actor (a Serve replica), not a test or a driver building a Router."""
    try:
        import ray

        return bool(ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None)
    except Exception:
        return False


def _build_local_server(args: dict[str, Any]) -> Any:
    """An in-process model server, or None unless it is healthy (loaded, digest verified, canary answered)."""
    from mlops.appliers.server import ModelServer

    server = ModelServer(args)
    return server if server.health().get("healthy") else None


def build(args: dict[str, Any]) -> Any:
    """Serve's application builder (``import_path: mlops.appliers.router:build``)."""
    from ray import serve

    return serve.deployment(name=DEPLOYMENT_NAME)(Router).bind(args)
