"""kind: Pipeline — a training DAG whose step code lives beside it in the repository.

Lives at ``pipelines/<name>/pipeline.yaml``. A step input is a literal, a
dataset address (``dataset://customers@1``), an earlier step's output
(``steps.prepare.outputs.train``) or a pipeline parameter (``params.max_depth``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from mlops.manifests.base import (
    Manifest,
    Metrics,
    Name,
    Reference,
    Scalar,
    StrictModel,
    TextEnum,
    parse_versioned_uri,
    version_key,
)
from mlops.manifests.common import Resources

STEP_OUTPUT_RE = re.compile(r"^steps\.(?P<step>[a-z0-9][a-z0-9-]*)\.outputs\.(?P<output>[A-Za-z_][A-Za-z0-9_-]*)$")
PARAM_RE = re.compile(r"^params\.(?P<param>[A-Za-z_][A-Za-z0-9_-]*)$")
CALLABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
DURATION_PATTERN = r"^[0-9]+(ms|s|m|h|d)$"


class OutputType(TextEnum):
    TABLE = "table"
    MODEL = "model"
    METRICS = "metrics"
    FILE = "file"


class Range(StrictModel):
    min: float | None = None
    max: float | None = None


class OutputChecks(StrictModel):
    rows: Range | None = None
    columns: list[str] = Field(default_factory=list, description="Columns the table must have")
    metrics: dict[str, Range] = Field(default_factory=dict)
    signature: bool = Field(default=False, description="The model must carry an input/output signature")


class Output(StrictModel):
    type: OutputType = OutputType.FILE
    checks: OutputChecks = Field(default_factory=OutputChecks)


class Retries(StrictModel):
    max: Annotated[int, Field(ge=0, le=100)] = 0
    backoff: str = Field(default="2s", pattern=DURATION_PATTERN)


class Step(StrictModel):
    name: Name
    run: str | None = Field(default=None, pattern=CALLABLE_PATTERN, description="module:function")
    command: list[str] | None = None
    inputs: dict[str, Scalar] = Field(default_factory=dict)
    outputs: dict[str, Output] = Field(default_factory=dict)
    needs: list[Name] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    retries: Retries = Field(default_factory=Retries)
    timeout: str | None = Field(default=None, pattern=DURATION_PATTERN)
    cache: bool = True

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if (self.run is None) == (self.command is None):
            raise ValueError("a step needs exactly one of 'run' (module:function) or 'command'")
        return self


class Registration(StrictModel):
    model: Name
    output: str = Field(description="steps.<step>.outputs.<name> holding the model artifact")
    metrics: str | None = Field(default=None, description="steps.<step>.outputs.<name> holding its metrics")


class PipelineSpec(StrictModel):
    description: str = ""
    params: dict[str, Scalar] = Field(default_factory=dict)
    schedule: str | None = Field(default=None, description="cron expression (5 fields, UTC)")
    steps: list[Step] = Field(min_length=1)
    registers: Registration | None = None
    expectedMetrics: Metrics = Field(default_factory=dict)


class Pipeline(Manifest):
    KIND: ClassVar[str] = "Pipeline"
    kind: Literal["Pipeline"]
    spec: PipelineSpec

    def references(self) -> Iterator[Reference]:
        for i, step in enumerate(self.spec.steps):
            for input_name, value in step.inputs.items():
                if isinstance(value, str) and value.startswith("dataset://"):
                    field = ("spec", "steps", i, "inputs", input_name)
                    try:
                        _, name, version = parse_versioned_uri(value)
                    except ValueError:
                        # Reported by the pipeline checks with the field; nothing to point at.
                        continue
                    yield Reference("DatasetVersion", version_key(name, version), field)
        if self.spec.registers is not None:
            yield Reference("Model", self.spec.registers.model, ("spec", "registers", "model"))
