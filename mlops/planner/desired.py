"""What an environment should run on Ray Serve, from a validated repository state (pure).

One environment deployment becomes:

* one **model application per version** (``<env>.<deployment>.v<N>``): the model server, not exposed over
  HTTP. Its ``import_path`` and ``args`` change only with the version (Serve restarts an application whose
  import path, args or runtime_env change), so traffic changes never restart it;
* one **router application** (``<env>.<deployment>``) at the deployment's ``routePrefix``: its args never
  change, and the traffic weights are its ``user_config`` (Serve reconfigures it in place).

Application names use ``.`` as separator: manifest names are ``[a-z0-9-]``, so a name parses back unambiguously.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from mlops.errors import MlopsError
from mlops.manifests import Environment, Model, ModelVersion
from mlops.manifests.base import Manifest, version_key
from mlops.manifests.environment import Deployment, Strategy

SERVER_IMPORT = "mlops.appliers.server:build"
ROUTER_IMPORT = "mlops.appliers.router:build"
SERVER_DEPLOYMENT = "ModelServer"
ROUTER_DEPLOYMENT = "Router"
MANAGED_IMPORTS = frozenset({SERVER_IMPORT, ROUTER_IMPORT})

_APP_RE = re.compile(
    r"^(?P<env>[a-z0-9][a-z0-9-]*)\.(?P<deployment>[a-z0-9][a-z0-9-]*)(?:\.v(?P<version>[1-9][0-9]*))?$"
)
_DURATION_RE = re.compile(r"^([0-9]+)(ms|s|m|h|d)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MEMORY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_MEMORY_UNITS = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}

M = TypeVar("M", bound=Manifest)


class PlanningError(MlopsError):
    """The repository state cannot be turned into a deployable configuration (exit 1)."""


class ManifestLookup(Protocol):
    """What the planner needs of a repository index (``mlops.validation.index.RepoIndex`` fits)."""

    def find(self, cls: type[M], key: str) -> M | None: ...


@dataclass(frozen=True)
class ServeSettings:
    """How model servers reach their artifacts and log, chosen by the service layer for a repository."""

    store: str
    cache_dir: str
    predictions: str | None = None
    trusted_skops_types: tuple[str, ...] = ()
    router_cpus: float = 0.1
    router_replicas: int = 1
    router_max_ongoing: int = 1000
    server_max_ongoing: int = 64
    health_check_period_s: float = 5.0
    health_check_timeout_s: float = 10.0
    graceful_shutdown_timeout_s: float = 10.0


@dataclass(frozen=True)
class DesiredDeployment:
    name: str
    model: str
    version: int
    route_prefix: str
    router_app: str
    model_app: str
    model_config: dict[str, Any]
    router_args: dict[str, Any]
    replicas: int
    cpus: float
    gpus: float
    memory_bytes: int | None
    strategy: Strategy | None = None

    @property
    def ref(self) -> str:
        return version_key(self.model, self.version)


@dataclass(frozen=True)
class DesiredState:
    environment: str
    commit: str
    deployments: tuple[DesiredDeployment, ...]
    settings: ServeSettings
    rollbacks: frozenset[str] = field(default_factory=frozenset)

    def deployment(self, name: str) -> DesiredDeployment | None:
        return next((d for d in self.deployments if d.name == name), None)


# --------------------------------------------------------------------------- names


def model_app_name(environment: str, deployment: str, version: int) -> str:
    return f"{environment}.{deployment}.v{version}"


def router_app_name(environment: str, deployment: str) -> str:
    return f"{environment}.{deployment}"


def parse_app_name(name: str) -> tuple[str, str, int | None] | None:
    """(environment, deployment, version or None for the router), or None for an application not named by us."""
    found = _APP_RE.match(name)
    if found is None:
        return None
    version = found.group("version")
    return found.group("env"), found.group("deployment"), int(version) if version else None


def duration_seconds(text: str) -> float:
    found = _DURATION_RE.match(text)
    if found is None:
        raise PlanningError(f"invalid duration {text!r}: expected a number and one of ms, s, m, h, d")
    return int(found.group(1)) * _DURATION_UNITS[found.group(2)]


def memory_bytes(text: str | None) -> int | None:
    if text is None:
        return None
    found = _MEMORY_RE.match(text)
    if found is None:
        raise PlanningError(f"invalid memory quantity {text!r}")
    return int(float(found.group(1)) * _MEMORY_UNITS[found.group(2)])


# --------------------------------------------------------------------------- configs


def router_user_config(model: str, routes: Iterable[tuple[str, int, int]], shadow: bool = False) -> dict[str, Any]:
    """The router's user_config: ``routes`` is (application, version, weight) in the order given."""
    return {
        "model": model,
        "routes": [{"app": app, "version": version, "weight": weight} for app, version, weight in routes],
        "shadow": shadow,
    }


def router_config(
    environment: str, deployment: DesiredDeployment, settings: ServeSettings, user_config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": deployment.router_app,
        "route_prefix": deployment.route_prefix,
        "import_path": ROUTER_IMPORT,
        "args": dict(deployment.router_args),
        "deployments": [
            {
                "name": ROUTER_DEPLOYMENT,
                "num_replicas": settings.router_replicas,
                "max_ongoing_requests": settings.router_max_ongoing,
                "ray_actor_options": {"num_cpus": float(settings.router_cpus)},
                "max_surge_percent": 100,
                "user_config": user_config,
            }
        ],
    }


def final_router_config(environment: str, deployment: DesiredDeployment, settings: ServeSettings) -> dict[str, Any]:
    """The router once the deployment's version takes all traffic."""
    user = router_user_config(deployment.model, [(deployment.model_app, deployment.version, 100)])
    return router_config(environment, deployment, settings, user)


def _model_config(
    environment: str,
    deployment: Deployment,
    version: ModelVersion,
    model: Model | None,
    commit: str,
    settings: ServeSettings,
) -> dict[str, Any]:
    signature = version.spec.signature or (model.spec.signature if model is not None else None)
    task = model.spec.task.value if model is not None else "other"
    args: dict[str, Any] = {
        "environment": environment,
        "deployment": deployment.name,
        "model": deployment.model,
        "version": deployment.version,
        "digest": version.spec.artifact.digest,
        "format": version.spec.artifact.format.value,
        "task": task,
        "signature": signature.model_dump(mode="json", exclude_none=True) if signature is not None else None,
        "trusted_skops_types": sorted(settings.trusted_skops_types),
        "store": settings.store,
        "cache_dir": settings.cache_dir,
        "predictions": settings.predictions,
        "commit": commit,
    }
    actor: dict[str, Any] = {"num_cpus": float(deployment.resources.cpus)}
    if deployment.resources.gpus:
        actor["num_gpus"] = float(deployment.resources.gpus)
    memory = memory_bytes(deployment.resources.memory)
    if memory:
        actor["memory"] = memory
    return {
        "name": model_app_name(environment, deployment.name, deployment.version),
        "route_prefix": None,
        "import_path": SERVER_IMPORT,
        "args": args,
        "deployments": [
            {
                "name": SERVER_DEPLOYMENT,
                "num_replicas": deployment.replicas,
                "max_ongoing_requests": settings.server_max_ongoing,
                "ray_actor_options": actor,
                "health_check_period_s": float(settings.health_check_period_s),
                "health_check_timeout_s": float(settings.health_check_timeout_s),
                "graceful_shutdown_timeout_s": float(settings.graceful_shutdown_timeout_s),
                # A restart in place (new args) starts the new replicas before stopping the old ones.
                "max_surge_percent": 100,
            }
        ],
    }


def desired_state(
    environment: Environment,
    lookup: ManifestLookup,
    commit: str,
    settings: ServeSettings,
    rollbacks: Iterable[str] = (),
) -> DesiredState:
    """Every deployment of ``environment`` as Serve applications (the final state, all traffic on the
    versions the environment names)."""
    env = environment.metadata.name
    deployments = []
    prefixes: dict[str, str] = {}
    for deployment in environment.spec.deployments:
        key = version_key(deployment.model, deployment.version)
        version = lookup.find(ModelVersion, key)
        if version is None:
            raise PlanningError(f"environments/{env}.yaml: deployment {deployment.name}: {key} is not registered")
        model = lookup.find(Model, deployment.model)
        prefix = deployment.routePrefix or f"/{deployment.name}"
        if prefix in prefixes:
            raise PlanningError(
                f"environments/{env}.yaml: deployments {prefixes[prefix]} and {deployment.name} both use "
                f"route prefix {prefix}"
            )
        prefixes[prefix] = deployment.name
        deployments.append(
            DesiredDeployment(
                name=deployment.name,
                model=deployment.model,
                version=deployment.version,
                route_prefix=prefix,
                router_app=router_app_name(env, deployment.name),
                model_app=model_app_name(env, deployment.name, deployment.version),
                model_config=_model_config(env, deployment, version, model, commit, settings),
                router_args={"environment": env, "deployment": deployment.name},
                replicas=deployment.replicas,
                cpus=float(deployment.resources.cpus),
                gpus=float(deployment.resources.gpus),
                memory_bytes=memory_bytes(deployment.resources.memory),
                strategy=deployment.strategy,
            )
        )
    return DesiredState(env, commit, tuple(deployments), settings, frozenset(rollbacks))
