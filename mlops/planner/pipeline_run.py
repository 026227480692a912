"""What a pipeline run will do, as a value (pure): each step's resolved inputs, resources, retries, and cache key.

A run is planned from the Pipeline manifest at one commit, the parameter overrides and the dataset
versions its steps read. The plan is written to the run's folder as JSON and is all the driver on the
cluster needs; nothing in it depends on the machine that planned it.

A step's cache key is the digest of everything that decides its outputs: the pipeline's code (the git
tree of its folder), the step's action, its resolved inputs (literal and parameter values, dataset
fingerprints, the digests of upstream outputs) and what its outputs must satisfy. Two runs whose keys
match may share outputs (UC-05: unchanged steps are taken from the cache).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops.errors import UsageError
from mlops.manifests import DatasetVersion, Pipeline
from mlops.manifests.base import Scalar, parse_versioned_uri, version_key
from mlops.manifests.dataset_version import DataFile
from mlops.manifests.pipeline import PARAM_RE, STEP_OUTPUT_RE, Step
from mlops.planner.desired import duration_seconds, memory_bytes

PLAN_FORMAT = 1


@dataclass(frozen=True)
class DatasetInput:
    key: str  # customers@1
    fingerprint: str
    files: tuple[tuple[str, str, int], ...]  # (relative path, digest, size)
    format: str | None


@dataclass(frozen=True)
class StepInput:
    """One argument of a step: exactly one of ``value``, ``dataset`` or ``upstream`` (step, output)."""

    kind: str  # "value" | "dataset" | "output"
    value: Scalar | None = None
    dataset: DatasetInput | None = None
    upstream: tuple[str, str] | None = None


@dataclass(frozen=True)
class StepPlan:
    name: str
    run: str | None
    command: tuple[str, ...] | None
    inputs: dict[str, StepInput]
    outputs: dict[str, dict[str, Any]]  # name -> {"type": ..., "checks": {...}} as in the manifest
    needs: tuple[str, ...]  # every step that must finish first (explicit needs and output references)
    cpus: float
    gpus: float
    memory: int | None
    retries: int
    backoff_s: float
    timeout_s: float | None
    cache: bool

    @classmethod
    def from_json_step(cls, raw: Mapping[str, Any]) -> StepPlan:
        inputs = {}
        for name, item in raw["inputs"].items():
            dataset = item.get("dataset")
            inputs[name] = StepInput(
                kind=item["kind"],
                value=item.get("value"),
                dataset=(
                    DatasetInput(
                        dataset["key"],
                        dataset["fingerprint"],
                        tuple((str(f[0]), str(f[1]), int(f[2])) for f in dataset["files"]),
                        dataset.get("format"),
                    )
                    if dataset
                    else None
                ),
                upstream=(str(item["upstream"][0]), str(item["upstream"][1])) if item.get("upstream") else None,
            )
        return cls(
            name=raw["name"],
            run=raw.get("run"),
            command=tuple(raw["command"]) if raw.get("command") else None,
            inputs=inputs,
            outputs=dict(raw["outputs"]),
            needs=tuple(raw["needs"]),
            cpus=float(raw["cpus"]),
            gpus=float(raw["gpus"]),
            memory=raw.get("memory"),
            retries=int(raw["retries"]),
            backoff_s=float(raw["backoff_s"]),
            timeout_s=raw.get("timeout_s"),
            cache=bool(raw["cache"]),
        )

    def to_json(self) -> dict[str, Any]:
        # By hand rather than dataclasses.asdict, which deep-copies every nested dict: the result is only
        # serialised, and a 200-step plan spent 50 ms in asdict before each run.
        return {
            "name": self.name,
            "run": self.run,
            "command": list(self.command) if self.command is not None else None,
            "inputs": {name: _input_json(item) for name, item in self.inputs.items()},
            "outputs": self.outputs,
            "needs": list(self.needs),
            "cpus": self.cpus,
            "gpus": self.gpus,
            "memory": self.memory,
            "retries": self.retries,
            "backoff_s": self.backoff_s,
            "timeout_s": self.timeout_s,
            "cache": self.cache,
        }


def _input_json(item: StepInput) -> dict[str, Any]:
    dataset = item.dataset
    return {
        "kind": item.kind,
        "value": item.value,
        "dataset": (
            {
                "key": dataset.key,
                "fingerprint": dataset.fingerprint,
                "files": [list(f) for f in dataset.files],
                "format": dataset.format,
            }
            if dataset is not None
            else None
        ),
        "upstream": list(item.upstream) if item.upstream is not None else None,
    }


@dataclass(frozen=True)
class RunPlan:
    pipeline: str
    commit: str
    code_digest: str
    params: dict[str, Scalar]
    steps: tuple[StepPlan, ...]  # in an order where every step comes after what it needs
    registers: dict[str, str | None] | None = None  # {"model", "output", "metrics"}
    format: int = PLAN_FORMAT
    datasets: tuple[str, ...] = field(default_factory=tuple)

    def step(self, name: str) -> StepPlan:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "commit": self.commit,
            "code_digest": self.code_digest,
            "params": self.params,
            "steps": [step.to_json() for step in self.steps],
            "registers": self.registers,
            "format": self.format,
            "datasets": list(self.datasets),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunPlan:
        steps = [StepPlan.from_json_step(raw) for raw in data["steps"]]
        return cls(
            pipeline=data["pipeline"],
            commit=data["commit"],
            code_digest=data["code_digest"],
            params=dict(data["params"]),
            steps=tuple(steps),
            registers=data.get("registers"),
            format=int(data.get("format", PLAN_FORMAT)),
            datasets=tuple(data.get("datasets", ())),
        )


def parse_param_overrides(pipeline: Pipeline, pairs: Mapping[str, str]) -> dict[str, Scalar]:
    """``--param k=v`` values typed like the pipeline's defaults; an unknown name is a usage error."""
    declared = pipeline.spec.params
    typed: dict[str, Scalar] = {}
    for key, text in pairs.items():
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise UsageError(f"--param {key}: pipeline {pipeline.name} has no parameter {key!r} (parameters: {known})")
        default = declared[key]
        try:
            typed[key] = _typed_like(default, text)
        except ValueError:
            raise UsageError(
                f"--param {key}={text}: expected {type(default).__name__} like the default {default!r}"
            ) from None
    return typed


def _typed_like(default: Scalar, text: str) -> Scalar:
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(text)
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


def datasets_read(pipeline: Pipeline) -> list[str]:
    """Every dataset version the pipeline's steps read, as ``name@version`` keys."""
    keys = []
    for step in pipeline.spec.steps:
        for value in step.inputs.values():
            if isinstance(value, str) and value.startswith("dataset://"):
                _, name, version = parse_versioned_uri(value)
                keys.append(version_key(name, version))
    return sorted(set(keys))


def build_run_plan(
    pipeline: Pipeline,
    commit: str,
    code_digest: str,
    overrides: Mapping[str, Scalar],
    datasets: Mapping[str, tuple[DatasetVersion, list[DataFile]]],
) -> RunPlan:
    """The run's plan; the pipeline is assumed valid. ``datasets``: key -> (manifest, every file, checked)."""
    params = {**pipeline.spec.params, **overrides}
    planned = {step.name: _plan_step(step, params, datasets) for step in pipeline.spec.steps}
    ordered = tuple(planned[name] for name in topological_order({n: list(s.needs) for n, s in planned.items()}))
    registers = None
    if pipeline.spec.registers is not None:
        reg = pipeline.spec.registers
        registers = {"model": reg.model, "output": reg.output, "metrics": reg.metrics}
    return RunPlan(
        pipeline=pipeline.name,
        commit=commit,
        code_digest=code_digest,
        params=params,
        steps=ordered,
        registers=registers,
        datasets=tuple(datasets_read(pipeline)),
    )


def _plan_step(
    step: Step, params: Mapping[str, Scalar], datasets: Mapping[str, tuple[DatasetVersion, list[DataFile]]]
) -> StepPlan:
    inputs: dict[str, StepInput] = {}
    needs = list(step.needs)
    for name, value in step.inputs.items():
        if isinstance(value, str) and (ref := STEP_OUTPUT_RE.match(value)):
            inputs[name] = StepInput("output", upstream=(ref["step"], ref["output"]))
            needs.append(ref["step"])
        elif isinstance(value, str) and (param := PARAM_RE.match(value)):
            inputs[name] = StepInput("value", value=params[param["param"]])
        elif isinstance(value, str) and value.startswith("dataset://"):
            _, dataset_name, version = parse_versioned_uri(value)
            key = version_key(dataset_name, version)
            manifest, listed = datasets[key]
            files = tuple((f.path, f.digest, f.size) for f in listed)
            fingerprint = manifest.spec.fingerprint.digest
            inputs[name] = StepInput("dataset", dataset=DatasetInput(key, fingerprint, files, manifest.spec.format))
        else:
            inputs[name] = StepInput("value", value=value)
    outputs = {name: output.model_dump(mode="json", exclude_defaults=False) for name, output in step.outputs.items()}
    return StepPlan(
        name=step.name,
        run=step.run,
        command=tuple(step.command) if step.command is not None else None,
        inputs=inputs,
        outputs=outputs,
        needs=tuple(dict.fromkeys(needs)),
        cpus=float(step.resources.cpus),
        gpus=float(step.resources.gpus),
        memory=memory_bytes(step.resources.memory),
        retries=step.retries.max,
        backoff_s=duration_seconds(step.retries.backoff),
        timeout_s=duration_seconds(step.timeout) if step.timeout else None,
        cache=step.cache,
    )


def topological_order(edges: Mapping[str, list[str]]) -> list[str]:
    """Steps so that each comes after everything it needs, ties kept in declaration order (acyclic input)."""
    remaining = {name: set(needs) & set(edges) for name, needs in edges.items()}
    order: list[str] = []
    while remaining:
        ready = [name for name, needs in remaining.items() if not needs]
        if not ready:
            raise ValueError("circular dependency among: " + ", ".join(remaining))
        for name in ready:
            order.append(name)
            del remaining[name]
        for needs in remaining.values():
            needs.difference_update(ready)
    return order


def cache_key(plan: RunPlan, step: StepPlan, upstream: Mapping[tuple[str, str], str]) -> str | None:
    """The digest of what decides the step's outputs, or None when an upstream output is not known yet."""
    return step_cache_key(plan.pipeline, plan.code_digest, step, upstream)


def step_cache_key(
    pipeline: str, code_digest: str, step: StepPlan, upstream: Mapping[tuple[str, str], str]
) -> str | None:
    """:func:`cache_key` from the two things of the plan it needs (a worker computes it without the whole plan)."""
    resolved: dict[str, Any] = {}
    for name, item in sorted(step.inputs.items()):
        if item.kind == "output":
            assert item.upstream is not None
            digest = upstream.get(item.upstream)
            if digest is None:
                return None
            resolved[name] = {"output": digest}
        elif item.kind == "dataset":
            assert item.dataset is not None
            resolved[name] = {"dataset": item.dataset.fingerprint}
        else:
            resolved[name] = {"value": item.value}
    material = {
        "format": PLAN_FORMAT,
        "pipeline": pipeline,
        "code": code_digest,
        "step": step.name,
        "run": step.run,
        "command": list(step.command) if step.command else None,
        "inputs": resolved,
        "outputs": step.outputs,
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def downstream_of(plan: RunPlan, names: set[str]) -> set[str]:
    """``names`` and every step that needs one of them, directly or not."""
    out = set(names)
    for step in plan.steps:  # topological order: one pass suffices
        if out.intersection(step.needs):
            out.add(step.name)
    return out
