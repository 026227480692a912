"""The Ray cluster a command talks to: the embedded local head, or a remote cluster by address.

The embedded cluster
--------------------
``mlops cluster up`` starts ``ray start --head --block`` as a background process in its own session, so
the head outlives the CLI. Everything about it lives in one state folder (``MLOPS_CLUSTER_DIR``, default
``~/.mlops/cluster``): ``cluster.json`` (process id, addresses, ports; written atomically), ``auth_token``
(mode 0600) and ``ray.log``. One embedded cluster per state folder, like minikube's one per user.

* Ports are chosen free at start (GCS, dashboard, Ray client, dashboard agent); Serve's HTTP port is 8000
  when free, else a free one (``--serve-port`` picks it). Workers bind random ports, so two embedded
  clusters (two state folders, e.g. parallel test runs) never collide.
* Ray's session files go under ``/tmp/mlops-ray-<hash of the state folder>``: Ray's Unix socket paths must
  stay under ~107 characters, which a temporary folder of a test run easily exceeds.
* The dashboard and Serve's HTTP proxy listen on 127.0.0.1. Ray itself turns a loopback
  ``--node-ip-address`` into the machine's address, so the GCS listens on the machine's address: token auth
  is what protects it.
* ``mlops cluster down`` ends exactly the processes of that head: the blocking ``ray start`` and its
  descendants (workers included), by process id; never ``ray stop``, which kills every Ray on the machine.

Token auth (Ray 2.60)
---------------------
Ray 2.60 enables token authentication on new local clusters. We generate our own token (``secrets``, 32
bytes hex) into the state folder and start the head with ``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN_PATH``; clients do the same: ``ray.init`` reads both variables (the C++ token loader), and
REST calls to the dashboard send ``Authorization: Bearer <token>``. Serve's HTTP proxy is not behind the
token (it is the public endpoint). For a remote cluster the token comes from where Ray itself looks:
``RAY_AUTH_TOKEN``, then the file at ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``.

Remote clusters
---------------
An environment's ``cluster.address`` (or ``RAY_ADDRESS`` when the environment says ``local``) names a Ray
address: ``ray://host:10001`` (Ray client), ``host:6379`` (GCS), or ``http(s)://host:8265`` (dashboard).
The dashboard is at ``http://host:8265`` and Serve at ``http://host:8000`` unless ``MLOPS_RAY_DASHBOARD_URL``
and ``MLOPS_SERVE_URL`` say otherwise. On a remote cluster ``mlops`` must be importable by the workers
(installed in the cluster's image): Serve's declarative config accepts only remote URIs for ``py_modules``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import urlparse

from mlops.errors import InputError, MlopsError
from mlops.loader.atomic import atomic_write_bytes, atomic_write_text

STATE_DIR_ENV = "MLOPS_CLUSTER_DIR"
NAMESPACE = "mlops"
DEFAULT_SERVE_PORT = 8000
DEFAULT_NUM_CPUS = 8
DEFAULT_OBJECT_STORE_BYTES = 512 * 1024 * 1024
STATE_FILE = "cluster.json"
TOKEN_FILE = "auth_token"
LOG_FILE = "ray.log"

Progress = Callable[[str], None]


class ClusterUnavailable(MlopsError):
    """The cluster cannot be reached (not running, wrong address, refused our token): nothing was changed."""

    exit_code = 1


class ClusterError(MlopsError):
    """Starting or stopping the embedded cluster failed."""

    exit_code = 1


# --------------------------------------------------------------------------- where a command talks to


@dataclass(frozen=True)
class ClusterTarget:
    """Everything a client needs to talk to one cluster."""

    label: str
    local: bool
    ray_address: str
    dashboard_url: str
    serve_url: str
    token: str | None = None
    token_path: str | None = None
    serve_host: str | None = None
    serve_port: int | None = None

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def ray_environment(self) -> dict[str, str]:
        """Variables ``ray.init`` (and its C++ token loader) read to authenticate."""
        if self.token_path:
            return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token_path}
        if self.token:
            return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        return {}

    def http_options(self) -> dict[str, Any] | None:
        """Serve's HTTP options to send with a config (only the embedded cluster's are ours to choose)."""
        if self.serve_port is None:
            return None
        return {"host": self.serve_host or "127.0.0.1", "port": self.serve_port}


def resolve_target(address: str, environ: Mapping[str, str] | None = None) -> ClusterTarget | None:
    """The remote cluster an address names, or None for the embedded local one.

    An explicit address in the environment file wins; ``local`` defers to ``RAY_ADDRESS`` when it is set.
    """
    environ = os.environ if environ is None else environ
    chosen = address.strip()
    if chosen in ("", "local", "auto"):
        chosen = environ.get("RAY_ADDRESS", "").strip()
        if chosen in ("", "local", "auto"):
            return None
    return remote_target(chosen, environ)


def remote_target(address: str, environ: Mapping[str, str]) -> ClusterTarget:
    parsed = urlparse(address if "://" in address else f"gcs://{address}")
    host = parsed.hostname
    if not host:
        raise InputError(f"cluster address {address!r}: expected ray://HOST:PORT, HOST:PORT or http(s)://HOST:PORT")
    if parsed.scheme in ("http", "https"):
        dashboard = address.rstrip("/")
        ray_address = f"ray://{host}:10001"
    elif parsed.scheme in ("ray", "gcs"):
        dashboard = f"http://{host}:8265"
        ray_address = address if parsed.scheme == "ray" else f"{host}:{parsed.port or 6379}"
    else:
        raise InputError(f"cluster address {address!r}: unknown scheme {parsed.scheme!r} (use ray:// or http://)")
    dashboard = environ.get("MLOPS_RAY_DASHBOARD_URL", dashboard).rstrip("/")
    serve = environ.get("MLOPS_SERVE_URL", f"http://{host}:8000").rstrip("/")
    token, token_path = _ray_token(environ)
    return ClusterTarget(address, False, ray_address, dashboard, serve, token, token_path)


def _ray_token(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The token the way Ray finds it: RAY_AUTH_TOKEN, then RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token."""
    if environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None, None
    if environ.get("RAY_AUTH_TOKEN"):
        return environ["RAY_AUTH_TOKEN"].strip(), None
    for candidate in (environ.get("RAY_AUTH_TOKEN_PATH"), str(Path.home() / ".ray" / "auth_token")):
        if candidate and Path(candidate).is_file():
            with contextlib.suppress(OSError):
                text = Path(candidate).read_text(encoding="utf-8").strip()
                if text:
                    return text, candidate
    return None, None


# --------------------------------------------------------------------------- the embedded local head


@dataclass
class LocalClusterInfo:
    pid: int
    gcs_address: str
    dashboard_url: str
    serve_port: int
    client_port: int
    temp_dir: str
    token_file: str
    log_file: str
    num_cpus: float
    started_at: float
    ray_version: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalStatus:
    state_dir: Path
    running: bool
    info: LocalClusterInfo | None
    reason: str = ""


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    configured = environ.get(STATE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".mlops" / "cluster"


class LocalCluster:
    """The embedded Ray head of one state folder."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = (state_dir or default_state_dir()).expanduser().absolute()

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def token_file(self) -> Path:
        return self.state_dir / TOKEN_FILE

    def temp_dir(self) -> Path:
        tag = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:10]
        base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
        return base / f"mlops-ray-{os.getuid() if hasattr(os, 'getuid') else 0}-{tag}"

    def info(self) -> LocalClusterInfo | None:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            return LocalClusterInfo(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            return None

    def status(self) -> LocalStatus:
        info = self.info()
        if info is None:
            return LocalStatus(self.state_dir, False, None, "no local cluster was started from this state folder")
        if not _pid_alive(info.pid):
            return LocalStatus(self.state_dir, False, info, f"the head process {info.pid} is not running")
        return LocalStatus(self.state_dir, True, info)

    def target(self) -> ClusterTarget:
        status = self.status()
        if not status.running or status.info is None:
            raise ClusterUnavailable(
                f"no local Ray cluster is running ({status.reason}); start one with `mlops cluster up` "
                f"(state folder {self.state_dir})"
            )
        return self._target(status.info)

    def _target(self, info: LocalClusterInfo) -> ClusterTarget:
        token = _read_text(Path(info.token_file))
        return ClusterTarget(
            label=f"local ({info.gcs_address})",
            local=True,
            ray_address=info.gcs_address,
            dashboard_url=info.dashboard_url,
            serve_url=f"http://127.0.0.1:{info.serve_port}",
            token=token,
            token_path=info.token_file,
            serve_host="127.0.0.1",
            serve_port=info.serve_port,
        )

    # ------------------------------------------------------------------ up

    def up(
        self,
        num_cpus: float | None = None,
        serve_port: int | None = None,
        timeout: float = 180.0,
        progress: Progress | None = None,
    ) -> tuple[ClusterTarget, bool]:
        """Start the head unless it runs; returns the target and whether it was started now."""
        say = progress or (lambda _message: None)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.state_dir / "up.lock"):
            status = self.status()
            if status.running and status.info is not None:
                return self._target(status.info), False
            if status.info is not None:
                # A head that died (machine restart, killed): clean what is left of it before starting anew.
                _terminate_tree(status.info.pid, grace=5.0)
            info = self._start(num_cpus, serve_port, timeout, say)
            return self._target(info), True

    def _start(self, num_cpus: float | None, serve_port: int | None, timeout: float, say: Progress) -> LocalClusterInfo:
        ray_cli = _ray_executable()
        token_file = self._ensure_token()
        temp_dir = self.temp_dir()
        if temp_dir.exists():
            # Sessions of earlier heads of this state folder only (the folder name is ours).
            shutil.rmtree(temp_dir, ignore_errors=True)
        temp_dir.mkdir(parents=True, exist_ok=True)
        gcs_port, dashboard_port, client_port, agent_port = _free_ports(4)
        chosen_serve_port = serve_port or (DEFAULT_SERVE_PORT if _port_free(DEFAULT_SERVE_PORT) else _free_ports(1)[0])
        if serve_port is not None and not _port_free(serve_port):
            raise ClusterError(f"port {serve_port} is taken; choose another with --serve-port")
        cpus = num_cpus if num_cpus is not None else float(max(DEFAULT_NUM_CPUS, os.cpu_count() or 1))
        command = [
            *ray_cli,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            "--include-dashboard=true",
            f"--ray-client-server-port={client_port}",
            f"--dashboard-agent-listen-port={agent_port}",
            "--min-worker-port=0",
            "--max-worker-port=0",
            f"--num-cpus={_number(cpus)}",
            f"--object-store-memory={DEFAULT_OBJECT_STORE_BYTES}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ]
        # Ray's own settings (RAY_SERVE_*, ...) pass through; the address and the auth variables are ours to set.
        dropped = {"RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"}
        env = {key: value for key, value in os.environ.items() if key not in dropped}
        env.update(
            {
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(token_file),
                "RAY_USAGE_STATS_ENABLED": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        log_path = self.state_dir / LOG_FILE
        say(f"starting a local Ray head (log: {log_path})")
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self.state_dir),
                start_new_session=True,  # outlives the CLI; its own process group
            )
        dashboard_url = f"http://127.0.0.1:{dashboard_port}"
        info = LocalClusterInfo(
            pid=process.pid,
            gcs_address="",
            dashboard_url=dashboard_url,
            serve_port=chosen_serve_port,
            client_port=client_port,
            temp_dir=str(temp_dir),
            token_file=str(token_file),
            log_file=str(log_path),
            num_cpus=cpus,
            started_at=time.time(),
            ray_version=_ray_version(),
        )
        try:
            info.gcs_address = self._wait_ready(process, info, timeout, say)
        except BaseException:
            _terminate_tree(process.pid, grace=5.0)
            with contextlib.suppress(OSError):
                process.wait(timeout=5)
            raise
        atomic_write_text(self.state_file, json.dumps(asdict(info), indent=2, sort_keys=True) + "\n")
        return info

    def _ensure_token(self) -> Path:
        path = self.token_file
        if not path.is_file() or not _read_text(path):
            atomic_write_bytes(path, secrets.token_hex(32).encode(), mode=0o600)
        return path

    def _wait_ready(
        self, process: subprocess.Popen[bytes], info: LocalClusterInfo, timeout: float, say: Progress
    ) -> str:
        deadline = time.monotonic() + timeout
        next_note = time.monotonic() + 10
        bootstrap = Path(info.temp_dir) / "ray_current_cluster"
        token = _read_text(Path(info.token_file))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        while True:
            code = process.poll()
            if code is not None:
                tail = _tail(Path(info.log_file))
                raise ClusterError(
                    f"the Ray head exited with code {code} while starting: {tail} (log: {info.log_file})"
                )
            if bootstrap.is_file() and _http_ok(f"{info.dashboard_url}/api/version", headers):
                address = _read_text(bootstrap)
                if address:
                    return address
            now = time.monotonic()
            if now > deadline:
                raise ClusterError(
                    f"the Ray head did not become ready within {timeout:.0f} s (log: {info.log_file}); it was stopped"
                )
            if now > next_note:
                say(f"still starting the Ray head ({now - deadline + timeout:.0f} s)")
                next_note = now + 10
            time.sleep(0.5)

    # ------------------------------------------------------------------ down

    def down(self, grace: float = 20.0) -> LocalClusterInfo | None:
        """Stop the head and every process it started; returns what was stopped (None if nothing ran)."""
        with _file_lock(self.state_dir / "up.lock") if self.state_dir.is_dir() else contextlib.nullcontext():
            info = self.info()
            if info is None:
                return None
            _terminate_tree(info.pid, grace=grace)
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()
            shutil.rmtree(info.temp_dir, ignore_errors=True)
            return info


# --------------------------------------------------------------------------- a driver connection (ray.init)


class _Connection:
    address: str | None = None
    depth: int = 0


def _own_sigterm_handler() -> Callable[[int, FrameType | None], Any] | None:
    """The SIGTERM handler this process installed itself (None: the default, or not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    handler = signal.getsignal(signal.SIGTERM)
    return handler if callable(handler) else None


@contextlib.contextmanager
def connected(target: ClusterTarget) -> Iterator[None]:
    """Run with this process connected to the cluster as a Ray driver; reentrant for the same cluster.

    The outermost scope disconnects at its end, so a command leaves no connection behind (tests run
    many commands, against several clusters, in one process).
    """
    import ray

    if _Connection.depth and _Connection.address == target.ray_address and ray.is_initialized():
        _Connection.depth += 1
        try:
            yield
        finally:
            _Connection.depth -= 1
        return
    if ray.is_initialized():
        ray.shutdown()
    _set_auth_environment(target)
    # ray.init replaces the SIGTERM handler with one that exits at once; a command that turned SIGTERM
    # into an orderly stop (reconcile: release the lock, mark the rollout interrupted) keeps its own.
    on_term = _own_sigterm_handler()
    try:
        ray.init(
            address=target.ray_address,
            namespace=NAMESPACE,
            logging_level=logging.ERROR,
            log_to_driver=False,
            configure_logging=True,
        )
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
    except Exception as exc:
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise ClusterUnavailable(
            f"cannot connect to the Ray cluster at {target.ray_address}: {_first_line(exc)}"
        ) from None
    _Connection.address, _Connection.depth = target.ray_address, 1
    try:
        yield
    finally:
        _Connection.depth = 0
        _Connection.address = None
        with contextlib.suppress(Exception):
            ray.shutdown()


def _set_auth_environment(target: ClusterTarget) -> None:
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        os.environ.pop(name, None)
    os.environ.update(target.ray_environment())
    os.environ.pop("RAY_ADDRESS", None)
    # The C++ side caches the auth mode and the token per process: refresh both for this cluster.
    with contextlib.suppress(Exception):
        import importlib

        raylet: Any = importlib.import_module("ray._raylet")
        raylet.Config.initialize("")
        raylet.AuthenticationTokenLoader.instance().reset_cache()


def cluster_resources() -> dict[str, float]:
    """Total logical resources of the connected cluster (CPU, GPU, memory in bytes)."""
    import ray

    resources: dict[str, Any] = cast(Any, ray).cluster_resources()
    return {str(k): float(v) for k, v in resources.items()}


# --------------------------------------------------------------------------- helpers


def _ray_executable() -> list[str]:
    beside = Path(sys.executable).parent / "ray"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("ray")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]


def _ray_version() -> str:
    try:
        from importlib.metadata import version

        return version("ray")
    except Exception:
        return "unknown"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return _free_ports(1)[0]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _http_ok(url: str, headers: dict[str, str]) -> bool:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that exited but was not reaped) is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _process_table() -> dict[int, int]:
    """pid -> parent pid of every process (``ps`` works on Linux and macOS)."""
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    table: dict[int, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            table[int(parts[0])] = int(parts[1])
    return table


def _descendants(pid: int) -> list[int]:
    table = _process_table()
    children: dict[int, list[int]] = {}
    for child, parent in table.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        for child in children.get(current, []):
            if child not in found:
                found.append(child)
                stack.append(child)
    return found


def _terminate_tree(pid: int, grace: float) -> None:
    """SIGTERM the head and its descendants (workers too), SIGKILL what is left after ``grace`` seconds."""
    pids = [pid, *_descendants(pid)]
    group = _process_group(pid)
    for target in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not any(_pid_alive(p) for p in pids):
            break
        time.sleep(0.2)
    # Processes that appeared meanwhile (a worker being started) are in the tree too.
    for target in {*pids, *_descendants(pid)}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if _pid_alive(target):
                os.kill(target, signal.SIGKILL)
    if group is not None and group == pid:
        # The head's own process group (it was started in a new session): what is left of it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    _reap(pid)


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_text(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    wanted = [line.strip() for line in text if line.strip()][-lines:]
    return " | ".join(wanted) or "no output"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
