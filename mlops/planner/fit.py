"""Does a desired environment fit where it goes (UC-07 2a)? Pure checks that say what would fit.

* the model server loads ONNX and skops artifacts for classification and regression models, fed one
  2-D float matrix: anything else is refused before any traffic moves, with the alternatives;
* the resources the cluster must hold at the peak of the change (old and new versions side by side
  during a switch, plus the routers and whatever else runs there) must not exceed its total.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops.manifests import Model, ModelVersion
from mlops.manifests.base import version_key
from mlops.manifests.common import ArtifactFormat, Task
from mlops.planner.desired import DesiredState, ManifestLookup, parse_app_name

SERVABLE_FORMATS = (ArtifactFormat.ONNX, ArtifactFormat.SKOPS)
SERVABLE_TASKS = (Task.CLASSIFICATION, Task.REGRESSION)


@dataclass(frozen=True)
class Usage:
    cpus: float = 0.0
    gpus: float = 0.0
    memory: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.cpus + other.cpus, self.gpus + other.gpus, self.memory + other.memory)


def compatibility_problems(desired: DesiredState, lookup: ManifestLookup, only: set[str] | None = None) -> list[str]:
    """Why a deployment's model version cannot be served here (only the deployments named in ``only``)."""
    problems = []
    for deployment in desired.deployments:
        if only is not None and deployment.name not in only:
            continue
        ref = deployment.ref
        version = lookup.find(ModelVersion, version_key(deployment.model, deployment.version))
        model = lookup.find(Model, deployment.model)
        if version is None or model is None:
            problems.append(f"{deployment.name}: {ref} is not registered")
            continue
        fmt = version.spec.artifact.format
        if fmt not in SERVABLE_FORMATS:
            problems.append(
                f"{deployment.name}: {ref} is a {fmt.value} artifact; the model server loads "
                f"{' and '.join(f.value for f in SERVABLE_FORMATS)} (convert it, e.g. with skl2onnx, and register "
                "the result as a new version)"
            )
        if fmt is ArtifactFormat.SKOPS and model.spec.flavor != "sklearn":
            problems.append(
                f"{deployment.name}: {ref} is a skops artifact of flavor {model.spec.flavor}; skops holds "
                "scikit-learn models (flavor sklearn): export other frameworks to ONNX"
            )
        if model.spec.task not in SERVABLE_TASKS:
            problems.append(
                f"{deployment.name}: {deployment.model} is a {model.spec.task.value} model; the model server serves "
                f"{' and '.join(t.value for t in SERVABLE_TASKS)} models"
            )
        signature = version.spec.signature or model.spec.signature
        if signature is None or not signature.inputs:
            problems.append(
                f"{deployment.name}: {ref} has no signature; add spec.signature with its input (and an example for "
                "the canary prediction of the health check)"
            )
        elif len(signature.inputs) != 1 or len(signature.inputs[0].shape) not in (0, 2):
            problems.append(
                f"{deployment.name}: {ref} takes {len(signature.inputs)} input(s) of shape "
                f"{signature.inputs[0].shape}; the model server feeds one 2-D matrix ([-1, N])"
            )
        if deployment.replicas < 1:
            problems.append(
                f"{deployment.name}: replicas: 0 serves nothing; remove the deployment from the environment "
                "(reconcile --prune deletes it) or give it at least 1 replica"
            )
    return problems


def app_usage(app: Mapping[str, Any]) -> Usage:
    total = Usage()
    for deployment in app.get("deployments", []):
        replicas = deployment.get("num_replicas", 1)
        replicas = int(replicas) if isinstance(replicas, int | float) else 1
        options = deployment.get("ray_actor_options") or {}
        total = total + Usage(
            replicas * float(options.get("num_cpus", 1.0)),
            replicas * float(options.get("num_gpus", 0.0)),
            replicas * float(options.get("memory", 0.0)),
        )
    return total


def resource_problems(
    environment: str,
    peak: Mapping[str, Any],
    cluster: Mapping[str, float],
    label: str = "while switching versions",
) -> list[str]:
    """Whether ``peak`` (a full config at its largest) fits the cluster's totals; if not, what would fit."""
    ours = Usage()
    others = Usage()
    routers = Usage()
    per_replica: dict[str, float] = {}
    for app in peak.get("applications", []):
        parsed = parse_app_name(str(app.get("name", "")))
        usage = app_usage(app)
        if parsed is None or parsed[0] != environment:
            others = others + usage
        elif parsed[2] is None:
            routers = routers + usage
        else:
            ours = ours + usage
            for deployment in app.get("deployments", []):
                options = deployment.get("ray_actor_options") or {}
                per_replica.setdefault(parsed[1], float(options.get("num_cpus", 1.0)))
    needed = ours + routers + others
    problems = []
    total_cpus = float(cluster.get("CPU", 0.0))
    if needed.cpus > total_cpus + 1e-9:
        room = total_cpus - routers.cpus - others.cpus
        factor = room / ours.cpus if ours.cpus else 0.0
        advice = []
        if factor > 0:
            scaled = ", ".join(
                f"{name} {cpus:g} -> {max(0.1, math.floor(cpus * factor * 10) / 10):g}"
                for name, cpus in sorted(per_replica.items())
            )
            advice.append(f"resources.cpus {scaled}")
        advice.append("fewer replicas")
        advice.append("a cluster with more CPUs (`mlops cluster down`, then `mlops cluster up --num-cpus "
                      f"{math.ceil(needed.cpus)}` for the embedded one)")
        problems.append(
            f"{environment} does not fit: it needs {needed.cpus:g} CPUs {label} (model servers {ours.cpus:g}, "
            f"routers {routers.cpus:g}, other applications {others.cpus:g}); the cluster has {total_cpus:g}. "
            f"What would fit: {'; or '.join(advice)}"
        )
    total_gpus = float(cluster.get("GPU", 0.0))
    if needed.gpus > total_gpus + 1e-9:
        problems.append(
            f"{environment} does not fit: it needs {needed.gpus:g} GPUs {label}; the cluster has {total_gpus:g}. "
            "What would fit: resources.gpus: 0 (CPU inference), or a cluster with GPUs"
        )
    total_memory = float(cluster.get("memory", 0.0))
    if total_memory and needed.memory > total_memory:
        problems.append(
            f"{environment} does not fit: it needs {needed.memory / 2**30:.1f} GiB of memory {label}; the cluster "
            f"has {total_memory / 2**30:.1f} GiB. What would fit: smaller resources.memory or fewer replicas"
        )
    return problems
