"""kind: QualityRules — the checks a dataset's versions must pass (UC-18).

Lives beside the dataset at ``registry/datasets/<name>/quality.yaml``, so the rules are
reviewed in the same pull requests as the data they judge, and an AccessPolicy can name
who may change them. ``mlops data snapshot`` runs them on every new version (UC-16 2a),
``mlops data validate NAME@N`` on a registered one.

Each rule names a column (or the whole table) and one or more checks; every check is
scored on its own (``customer_id.unique``), weighted by its rule's ``weight``. The score is
the weighted share of checks that pass. A failed ``critical`` check quarantines the
version; a score below ``threshold`` fails it. ``mlops validate`` then refuses pipelines
that read it and deployments beyond the first environment of models trained on it.

The checks themselves run on pandera (see ``mlops/analysis/quality.py``); this module only
describes them, so a typo in a rule is a schema error with a line and column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from mlops.manifests.base import (
    Manifest,
    Name,
    Reference,
    StrictModel,
    TextEnum,
    parse_versioned_uri,
    version_key,
)

DURATION_PATTERN = r"^[0-9]+(m|h|d)$"
_VERSION_REF = re.compile(r"^(?:dataset://)?(?P<name>[a-z0-9][a-z0-9-]{0,62})@(?P<version>[1-9][0-9]*)$")


class RuleSeverity(TextEnum):
    CRITICAL = "critical"
    ERROR = "error"


class ColumnType(TextEnum):
    """What the values must be readable as; nulls are judged by ``notNull`` / ``maxNullRatio`` alone."""

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DATETIME = "datetime"


class Bounds(StrictModel):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class Compare(StrictModel):
    """Cross-column consistency: ``<column> <op> <other>`` on every row where both are present."""

    op: Literal[">", ">=", "<", "<=", "==", "!="]
    other: str = Field(min_length=1, description="The column on the right-hand side")


def _check_version_ref(value: str) -> str:
    if not _VERSION_REF.match(value):
        raise ValueError(f"invalid dataset version {value!r}: expected 'NAME@N' or 'dataset://NAME@N'")
    return value


VersionRef = Annotated[
    str,
    AfterValidator(_check_version_ref),
    WithJsonSchema({"type": "string", "pattern": r"^(dataset://)?[a-z0-9][a-z0-9-]{0,62}@[1-9][0-9]*$"}),
]


def split_version_ref(value: str) -> tuple[str, int]:
    """``customers@1`` or ``dataset://customers@1`` -> ("customers", 1)."""
    if value.startswith("dataset://"):
        _, name, version = parse_versioned_uri(value)
        return name, version
    match = _VERSION_REF.match(value)
    if match is None:
        raise ValueError(f"invalid dataset version {value!r}")
    return match["name"], int(match["version"])


class ExistsIn(StrictModel):
    """Cross-table consistency: every value of the column appears in a column of another dataset version."""

    dataset: VersionRef = Field(description="NAME@N or dataset://NAME@N (a registered, immutable version)")
    column: str = Field(min_length=1)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_check_regex)]

# Checks that need a column, in the order results are listed.
COLUMN_CHECKS = (
    "type",
    "notNull",
    "maxNullRatio",
    "unique",
    "range",
    "allowed",
    "pattern",
    "compare",
    "existsIn",
    "freshness",
)


class Rule(StrictModel):
    name: Name | None = Field(default=None, description="Names this rule's results; defaults to the column")
    description: str = ""
    column: str | None = Field(default=None, min_length=1, description="The column checked; none for table checks")
    type: ColumnType | None = None
    notNull: bool = Field(default=False, description="No value may be missing")
    maxNullRatio: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="Largest share of missing values allowed (0.01 = 1%)"
    )
    unique: bool = False
    range: Bounds | None = Field(default=None, description="Inclusive bounds for numbers")
    allowed: list[str | int | float | bool] | None = Field(default=None, min_length=1)
    pattern: Regex | None = Field(default=None, description="Regular expression every value must match whole")
    compare: Compare | None = None
    existsIn: ExistsIn | None = None
    freshness: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="The newest date in the column is at most this old when checked (30d, 12h)",
    )
    rows: Bounds | None = Field(default=None, description="Row-count bounds of the whole table")
    severity: RuleSeverity = Field(
        default=RuleSeverity.ERROR, description="critical: a failure quarantines the version"
    )
    weight: Annotated[float, Field(ge=0, le=1000)] = Field(default=1.0, description="Weight of each check in the score")

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        used = [c for c in COLUMN_CHECKS if getattr(self, c) not in (None, False)]
        if self.column is None and used:
            raise ValueError(f"{', '.join(used)} need a column: add 'column'")
        if self.column is None and self.rows is None:
            raise ValueError("a rule needs a column with checks, or 'rows' bounds for the whole table")
        if self.column is not None and not used and self.rows is None:
            raise ValueError(f"rule on column {self.column!r} has no check: add type, notNull, range, ...")
        if self.notNull and self.maxNullRatio is not None:
            raise ValueError("use notNull or maxNullRatio, not both")
        if self.rows is not None and self.rows.min is not None and self.rows.min < 0:
            raise ValueError("rows.min cannot be negative")
        return self

    @property
    def label(self) -> str:
        return self.name or self.column or "table"

    def checks(self) -> list[str]:
        found = [c for c in COLUMN_CHECKS if getattr(self, c) not in (None, False)]
        if self.rows is not None:
            found.append("rows")
        return found


Outcome = Literal["validated", "failed", "quarantined"]
DEFAULT_OUTCOMES: tuple[Outcome, ...] = ("failed", "quarantined")


class NotifyTarget(StrictModel):
    type: Literal["stdout", "file", "webhook"]
    path: str | None = Field(default=None, description="file: where JSON lines are appended (relative to the repo)")
    url: str | None = Field(default=None, pattern=r"^https?://\S+$", description="webhook: where results are POSTed")
    on: list[Outcome] = Field(default_factory=lambda: list(DEFAULT_OUTCOMES), description="Which outcomes are sent")

    @model_validator(mode="after")
    def _has_destination(self) -> NotifyTarget:
        if self.type == "file" and not self.path:
            raise ValueError("a file target needs 'path'")
        if self.type == "webhook" and not self.url:
            raise ValueError("a webhook target needs 'url'")
        if self.type != "file" and self.path is not None:
            raise ValueError(f"'path' is for file targets, not {self.type}")
        if self.type != "webhook" and self.url is not None:
            raise ValueError(f"'url' is for webhook targets, not {self.type}")
        return self


class QualityRulesSpec(StrictModel):
    description: str = ""
    threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        default=1.0, description="Lowest weighted score a usable version may have"
    )
    rules: list[Rule] = Field(min_length=1)
    notify: list[NotifyTarget] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> QualityRulesSpec:
        seen: set[str] = set()
        for rule in self.rules:
            for check in rule.checks():
                key = f"{rule.label}.{check}"
                if key in seen:
                    raise ValueError(f"check {key!r} appears twice: give one of the rules a distinct 'name'")
                seen.add(key)
        return self


class QualityRules(Manifest):
    KIND: ClassVar[str] = "QualityRules"
    kind: Literal["QualityRules"]
    spec: QualityRulesSpec

    def references(self) -> Iterator[Reference]:
        yield Reference("Dataset", self.metadata.name, ("metadata", "name"))
        for i, rule in enumerate(self.spec.rules):
            if rule.existsIn is not None:
                name, version = split_version_ref(rule.existsIn.dataset)
                field = ("spec", "rules", i, "existsIn", "dataset")
                yield Reference("DatasetVersion", version_key(name, version), field)
