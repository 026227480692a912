"""Ray Serve through the dashboard's REST API: read what runs, send a whole declarative config, wait.

* ``GET /api/serve/applications/`` gives every application's status and the config it was deployed with
  (``deployed_app_config``): live state is read from the cluster, never from a local file.
* ``PUT /api/serve/applications/`` (what ``serve deploy`` sends) replaces the whole declarative config:
  applications it leaves out are deleted, so callers always send the full set.
* Success is decided by polling until every application we sent is RUNNING (and those we left out are
  gone), or one is DEPLOY_FAILED, or our own timeout passes: a deployment waiting for resources stays
  DEPLOYING forever.

Only the standard library is used (urllib); the token goes in ``Authorization: Bearer``.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops.appliers.cluster import ClusterTarget, ClusterUnavailable
from mlops.errors import MlopsError

Progress = Callable[[str], None]
HEALTH_MARK = "mlops health check failed"


class DeployFailed(MlopsError):
    """Serve could not bring the applications up (or our timeout passed)."""

    exit_code = 1

    def __init__(self, message: str, failed: dict[str, str] | None = None, timed_out: bool = False) -> None:
        super().__init__(message)
        self.failed = failed or {}
        self.timed_out = timed_out


@dataclass(frozen=True)
class AppStatus:
    name: str
    status: str
    message: str
    config: dict[str, Any]
    last_deployed: float
    deployments: dict[str, str] = field(default_factory=dict)
    deployment_messages: dict[str, str] = field(default_factory=dict)
    running_replicas: int = 0
    target_replicas: int = 0
    route_prefix: str | None = None

    def why(self) -> str:
        """The most telling message: a deployment's (with the replica's error) before the application's."""
        for message in self.deployment_messages.values():
            if HEALTH_MARK in message:
                return message
        return "\n".join([*self.deployment_messages.values(), self.message]).strip()


class ServeApi:
    def __init__(self, target: ClusterTarget, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self.base = f"{target.dashboard_url}/api/serve/applications/"

    def _request(self, method: str, body: bytes | None = None) -> Any:
        headers = {"Accept": "application/json", **self.target.auth_headers()}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace").strip()
            if exc.code in (401, 403):
                raise ClusterUnavailable(
                    f"the Ray dashboard at {self.target.dashboard_url} refused our token (HTTP {exc.code}); "
                    "set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to the cluster's token"
                ) from None
            raise MlopsError(
                f"Ray Serve at {self.target.dashboard_url} answered HTTP {exc.code}: {_last_line(detail)}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClusterUnavailable(
                f"cannot reach the Ray dashboard of {self.target.label} at {self.target.dashboard_url}: {reason}"
            ) from None
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise MlopsError(f"Ray Serve at {self.target.dashboard_url} answered something that is not JSON") from None

    def details(self) -> dict[str, Any]:
        data = self._request("GET")
        return data if isinstance(data, dict) else {}

    def applications(self) -> dict[str, AppStatus]:
        return parse_applications(self.details())

    def deploy(self, config: Mapping[str, Any]) -> float:
        """Send the whole declarative config; returns the time it was sent."""
        sent = time.time()
        self._request("PUT", json.dumps(config).encode())
        return sent

    def wait(
        self,
        expected: Iterable[str],
        absent: Iterable[str] = (),
        timeout: float = 300.0,
        progress: Progress | None = None,
        sent_at: float = 0.0,
        poll: float = 0.5,
    ) -> dict[str, AppStatus]:
        """Poll until ``expected`` are RUNNING and ``absent`` are gone; raise :class:`DeployFailed` otherwise."""
        expected = list(expected)
        absent = list(absent)
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        last_note = ""
        next_note = time.monotonic() + 5
        apps: dict[str, AppStatus] = {}
        while True:
            try:
                apps = self.applications()
            except ClusterUnavailable as exc:
                # A busy controller (dozens of replicas starting on two cores) can miss one poll: our deadline
                # decides, not one slow answer.
                if time.monotonic() > deadline:
                    raise DeployFailed(f"no answer from Serve within {timeout:.0f} s: {exc.message}",
                                       timed_out=True) from None
                if progress is not None:
                    progress(f"Serve is slow to answer ({exc.message}); asking again")
                time.sleep(poll)
                continue
            failed = {
                name: apps[name].why()
                for name in expected
                if name in apps
                and apps[name].last_deployed >= sent_at - 1
                and (apps[name].status == "DEPLOY_FAILED" or HEALTH_MARK in apps[name].why())
            }
            if failed:
                # A replica that failed our health check will fail it again: no need to wait for Serve's retries.
                name = sorted(failed)[0]
                raise DeployFailed(f"{name} did not start: {reason_of(failed[name])}", failed)
            waiting = [n for n in expected if n not in apps or apps[n].status != "RUNNING"]
            lingering = [n for n in absent if n in apps]
            if not waiting and not lingering:
                return apps
            now = time.monotonic()
            if now > deadline:
                states = ", ".join(f"{n} {apps[n].status if n in apps else 'missing'}" for n in waiting)
                gone = ", ".join(f"{n} still {apps[n].status}" for n in lingering)
                raise DeployFailed(
                    f"not RUNNING after {timeout:.0f} s: {'; '.join(x for x in (states, gone) if x)} "
                    "(a deployment that waits for resources stays DEPLOYING: check `ray status`)",
                    {n: apps[n].status if n in apps else "missing" for n in waiting},
                    timed_out=True,
                )
            if progress is not None and now >= next_note:
                note = _summary(apps, waiting, lingering)
                if note != last_note or now - started > 15:
                    progress(f"waiting ({now - started:.0f} s): {note}")
                    last_note = note
                next_note = now + 5
            time.sleep(poll)


def _summary(apps: Mapping[str, AppStatus], waiting: list[str], lingering: list[str], shown: int = 4) -> str:
    states = [f"{n} {apps[n].status if n in apps else 'starting'}" for n in waiting]
    states += [f"{n} {apps[n].status if n in apps else 'gone'} (to be removed)" for n in lingering]
    if len(states) <= shown:
        return ", ".join(states)
    counts: dict[str, int] = {}
    for name in waiting:
        status = apps[name].status if name in apps else "starting"
        counts[status] = counts.get(status, 0) + 1
    if lingering:
        counts["to be removed"] = len(lingering)
    return ", ".join(states[:shown]) + f" and {len(states) - shown} more (" + ", ".join(
        f"{count} {status}" for status, count in sorted(counts.items())) + ")"


def parse_applications(details: Mapping[str, Any]) -> dict[str, AppStatus]:
    out: dict[str, AppStatus] = {}
    for name, app in (details.get("applications") or {}).items():
        deployments: dict[str, str] = {}
        messages: dict[str, str] = {}
        running = target = 0
        for dep_name, dep in (app.get("deployments") or {}).items():
            deployments[dep_name] = str(dep.get("status", ""))
            if dep.get("message"):
                messages[dep_name] = str(dep["message"])
            target += int(dep.get("target_num_replicas") or 0)
            running += sum(1 for r in dep.get("replicas") or [] if r.get("state") == "RUNNING")
        out[name] = AppStatus(
            name=name,
            status=str(app.get("status", "")),
            message=str(app.get("message", "") or ""),
            config=dict(app.get("deployed_app_config") or {}),
            last_deployed=float(app.get("last_deployed_time_s") or 0.0),
            deployments=deployments,
            deployment_messages=messages,
            running_replicas=running,
            target_replicas=target,
            route_prefix=app.get("route_prefix"),
        )
    return out


def reason_of(message: str) -> str:
    """The line of a Serve failure message that says why (ours start with 'mlops health check failed')."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if HEALTH_MARK in line:
            return line[line.index(HEALTH_MARK) :].rstrip("'\")")
    for line in reversed(lines):
        if line.startswith(("RuntimeError", "ModelLoadError", "ValueError", "ImportError", "ModuleNotFoundError")):
            return line
    return lines[-1] if lines else "no message"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no detail"


# --------------------------------------------------------------------------- handles (needs a driver connection)


def call_deployment(app: str, deployment: str, method: str, *args: Any, timeout: float = 30.0) -> Any:
    """Call a method of a deployment through a Serve handle (the process must be connected to the cluster)."""
    from ray import serve

    # Importing Serve configures its logger at INFO, and handles warn about slow queue-length probes on a
    # busy machine: neither is the user's business in a CLI.
    logging.getLogger("ray.serve").setLevel(logging.ERROR)
    handle = serve.get_deployment_handle(deployment, app_name=app)
    return getattr(handle, method).remote(*args).result(timeout_s=timeout)
