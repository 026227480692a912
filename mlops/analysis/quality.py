"""Data quality: a table and its QualityRules in, per-check results and a score out (pure; UC-18).

The checks run on pandera (https://pandera.readthedocs.io): each check of a rule becomes a
small pandera schema (a column with a dtype to coerce to, ``nullable``/``unique`` flags, or a
built-in ``Check`` such as ``in_range``, ``isin``, ``str_matches``; a DataFrame-level ``Check``
for cross-column comparisons, row counts and freshness) validated lazily, so pandera collects
*every* failing row with its index rather than stopping at the first. One schema per check
keeps the attribution exact: each result says which column, which check, how many rows and
which rows (UC-18 3a).

Scoring: every check carries its rule's weight; the score is the weighted share of checks
that pass. A failed ``critical`` check quarantines the version, a score below the threshold
fails it, anything else validates it.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlops.analysis.tabular import TableProfile, plain_value
from mlops.manifests.dataset_version import QualityStatus
from mlops.manifests.quality import ColumnType, QualityRulesSpec, Rule, RuleSeverity, split_version_ref

EXAMPLES = 5

_DTYPES = {
    ColumnType.STRING: "str",
    ColumnType.INT: "Int64",
    ColumnType.FLOAT: "float64",
    ColumnType.BOOL: "boolean",
    ColumnType.DATETIME: "datetime64[ns]",
}
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_UNITS = {"m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class CheckResult:
    name: str  # "customer_id.unique"
    rule: str
    column: str | None
    check: str
    severity: RuleSeverity
    weight: float
    passed: bool
    failing: int  # rows that fail (0 for table checks such as row counts)
    total: int  # rows checked
    message: str
    hint: str = ""
    examples: tuple[dict[str, Any], ...] = ()  # {"row": n, "value": v, ...}, rows numbered from 1

    @property
    def critical(self) -> bool:
        return self.severity is RuleSeverity.CRITICAL


@dataclass(frozen=True)
class QualityResult:
    checks: tuple[CheckResult, ...]
    score: float
    threshold: float
    status: QualityStatus
    rows: int
    profile: TableProfile | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def critical_failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.critical]


def reference_key(dataset: str, column: str) -> str:
    """How :func:`evaluate` is handed another version's column: ``customers@1.customer_id``."""
    name, version = split_version_ref(dataset)
    return f"{name}@{version}.{column}"


def references_needed(rules: QualityRulesSpec) -> list[tuple[str, int, str]]:
    """(dataset, version, column) of every cross-table check, for the caller to load."""
    out = []
    for rule in rules.rules:
        if rule.existsIn is not None:
            name, version = split_version_ref(rule.existsIn.dataset)
            if (name, version, rule.existsIn.column) not in out:
                out.append((name, version, rule.existsIn.column))
    return out


def evaluate(
    frame: pd.DataFrame,
    rules: QualityRulesSpec,
    references: Mapping[str, pd.Series[Any]] | None = None,
    now: dt.datetime | None = None,
    profile: TableProfile | None = None,
) -> QualityResult:
    """Run every check of ``rules`` on ``frame``. ``now`` (UTC) judges freshness; ``references`` cross-table checks."""
    import pandera.pandas  # noqa: F401 - imported here: pandera costs ~0.3 s, and only validation needs it

    now = now or dt.datetime.now(dt.UTC)
    references = references or {}
    results: list[CheckResult] = []
    for rule in rules.rules:
        for check in rule.checks():
            results.append(_run(frame, rule, check, references, now))
    total = sum(r.weight for r in results)
    score = sum(r.weight for r in results if r.passed) / total if total else 1.0
    score = round(score, 4)
    if any(not r.passed and r.critical for r in results):
        status = QualityStatus.QUARANTINED
    elif score < rules.threshold:
        status = QualityStatus.FAILED
    else:
        status = QualityStatus.VALIDATED
    notes = tuple(profile.notes) if profile is not None else ()
    return QualityResult(tuple(results), score, rules.threshold, status, len(frame), profile, notes)


# ------------------------------------------------------------------------------------------ one check


@dataclass
class _Outcome:
    passed: bool
    failing: pd.Index | None  # row labels that fail; None for table checks
    message: str
    hint: str = ""
    extra_columns: tuple[str, ...] = ()


def _run(
    frame: pd.DataFrame,
    rule: Rule,
    check: str,
    references: Mapping[str, pd.Series[Any]],
    now: dt.datetime,
) -> CheckResult:
    column = rule.column
    rows = len(frame)
    if column is not None and column not in frame.columns:
        known = ", ".join(map(str, frame.columns[:12]))
        outcome = _Outcome(False, None, f"column {column!r} is missing (columns: {known})", "fix the rule or the data")
    else:
        outcome = _CHECKS[check](frame, rule, references, now)
    failing = 0 if outcome.failing is None else len(outcome.failing)
    examples: tuple[dict[str, Any], ...] = ()
    if outcome.failing is not None and failing and column is not None:
        shown = [column, *outcome.extra_columns]
        examples = tuple(_example(frame, label, shown) for label in outcome.failing[:EXAMPLES])
    return CheckResult(
        name=f"{rule.label}.{check}",
        rule=rule.label,
        column=column,
        check=check,
        severity=rule.severity,
        weight=rule.weight,
        passed=outcome.passed,
        failing=failing,
        total=rows,
        message=outcome.message,
        hint="" if outcome.passed else outcome.hint,
        examples=examples,
    )


def _example(frame: pd.DataFrame, label: Any, columns: list[str]) -> dict[str, Any]:
    position = frame.index.get_loc(label)
    row = int(position) + 1 if isinstance(position, int) else str(label)
    out: dict[str, Any] = {"row": row}
    for column in columns:
        out[column] = plain_value(frame.at[label, column])
    return out


def _failing_rows(frame: pd.DataFrame, schema: Any) -> tuple[pd.Index, bool]:
    """Row labels pandera reports for ``schema``, and whether it reported a failure of the whole column."""
    import pandera.pandas as pa

    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        labels = cases["index"].dropna()
        whole = bool(cases["index"].isna().any())
        return pd.Index(pd.unique(labels.to_numpy())).sort_values(), whole
    return pd.Index([]), False


def _share(count: int, rows: int) -> str:
    return f"{count:,} of {rows:,} rows ({100 * count / rows:.2f}%)" if rows else f"{count:,} rows"


def _column_frame(frame: pd.DataFrame, column: str, series: pd.Series[Any] | None = None) -> pd.DataFrame:
    return pd.DataFrame({column: frame[column] if series is None else series}, index=frame.index)


def _check_type(frame: pd.DataFrame, rule: Rule, _refs: Any, _now: Any) -> _Outcome:
    import pandera.pandas as pa

    column, wanted = str(rule.column), rule.type
    assert wanted is not None
    if wanted is ColumnType.STRING:
        return _Outcome(True, pd.Index([]), f"{column} reads as text")
    dtype = "float64" if wanted is ColumnType.INT else _DTYPES[wanted]
    schema = pa.DataFrameSchema({column: pa.Column(dtype, coerce=True, nullable=True)})
    data = _column_frame(frame, column)
    failing, whole = _failing_rows(data, schema)
    if wanted is ColumnType.INT and not whole:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        fractional = pa.DataFrameSchema(
            {column: pa.Column("float64", pa.Check(lambda s: s % 1 == 0, name="whole"), nullable=True)}
        )
        more, _ = _failing_rows(_column_frame(frame, column, numbers.astype("float64")), fractional)
        failing = failing.union(more.difference(failing)).sort_values() if len(more) else failing
    if whole and not len(failing):
        present = frame[column].notna()
        failing = frame.index[present.to_numpy()]
    if not len(failing):
        return _Outcome(True, failing, f"every value of {column} reads as {wanted.value}")
    return _Outcome(
        False,
        failing,
        f"{_share(len(failing), len(frame))} are not {wanted.value} values",
        f"fix those values or leave them empty, or change the rule's type if {column} really holds other values",
    )


def _check_nulls(frame: pd.DataFrame, rule: Rule, _refs: Any, _now: Any) -> _Outcome:
    import pandera.pandas as pa

    column = str(rule.column)
    schema = pa.DataFrameSchema({column: pa.Column(nullable=False)})
    failing, _ = _failing_rows(_column_frame(frame, column), schema)
    rows = len(frame)
    if rule.maxNullRatio is None:
        if not len(failing):
            return _Outcome(True, failing, f"no value of {column} is missing")
        return _Outcome(
            False,
            failing,
            f"{_share(len(failing), rows)} have no {column}",
            "fill the missing values, or allow some with maxNullRatio",
        )
    ratio = len(failing) / rows if rows else 0.0
    limit = rule.maxNullRatio
    if ratio <= limit:
        return _Outcome(True, pd.Index([]), f"{100 * ratio:.2f}% missing, at most {100 * limit:.2f}% allowed")
    return _Outcome(
        False,
        failing,
        f"{_share(len(failing), rows)} have no {column}; at most {100 * limit:.2f}% may",
        "fill the missing values, or raise maxNullRatio if they are expected",
    )


def _check_unique(frame: pd.DataFrame, rule: Rule, _refs: Any, _now: Any) -> _Outcome:
    import pandera.pandas as pa

    column = str(rule.column)
    schema = pa.DataFrameSchema({column: pa.Column(nullable=True, unique=True)})
    failing, _ = _failing_rows(_column_frame(frame, column), schema)
    if not len(failing):
        return _Outcome(True, failing, f"every value of {column} is unique")
    values = frame.loc[failing, column].nunique()
    return _Outcome(
        False,
        failing,
        f"{_share(len(failing), len(frame))} share {values:,} duplicated {'value' if values == 1 else 'values'}",
        "remove or merge the duplicate rows",
    )


def _numeric(frame: pd.DataFrame, column: str) -> tuple[pd.Series[Any], pd.Index]:
    """The column as numbers, and the rows whose values are present but not numbers."""
    series = frame[column]
    numbers = pd.to_numeric(series, errors="coerce").astype("float64")
    not_numbers = frame.index[(series.notna() & numbers.isna()).to_numpy()]
    return numbers, not_numbers


def _check_range(frame: pd.DataFrame, rule: Rule, _refs: Any, _now: Any) -> _Outcome:
    import pandera.pandas as pa

    column = str(rule.column)
    bounds = rule.range
    assert bounds is not None
    numbers, not_numbers = _numeric(frame, column)
    if rule.type is not None:
        not_numbers = pd.Index([])  # values that are not numbers at all fail the rule's type check, once
    if bounds.min is not None and bounds.max is not None:
        check = pa.Check.in_range(bounds.min, bounds.max)
        words = f"between {bounds.min:g} and {bounds.max:g}"
    elif bounds.min is not None:
        check = pa.Check.ge(bounds.min)
        words = f"at least {bounds.min:g}"
    else:
        assert bounds.max is not None
        check = pa.Check.le(bounds.max)
        words = f"at most {bounds.max:g}"
    schema = pa.DataFrameSchema({column: pa.Column("float64", check, nullable=True)})
    failing, _ = _failing_rows(_column_frame(frame, column, numbers), schema)
    failing = failing.union(not_numbers).sort_values() if len(not_numbers) else failing
    if not len(failing):
        return _Outcome(True, failing, f"every value of {column} is {words}")
    return _Outcome(
        False, failing, f"{_share(len(failing), len(frame))} are not {words}", "fix the values or widen the range"
    )


def _check_allowed(frame: pd.DataFrame, rule: Rule, _refs: Any, _now: Any) -> _Outcome:
    import pandera.pandas as pa

    column = str(rule.column)
    allowed = list(rule.allowed or [])
    schema = pa.DataFrameSchema({column: pa.Column(checks=pa.Check.isin(allowed), nullable=True)})
    failing, _ = _failing_rows(_column_frame(frame, column), schema)
    shown = ", ".join(repr(v) for v in allowed[:8]) + (", ..." if len(allowed) > 8 else "")
    if not len(failing):
        return _Outcome(True, failing, f"every value of {column} is one of {shown}")
    others = frame.loc[failing, column].astype(str).value_counts().head(3)
    seen = ", ".join(f"{v!r} x{n:,}" for v, n in others.items())
    return _Outcome(
        False,
        failing,
        f"{_share(len(failing), len(frame))} hold other values ({seen})",
        f"fix the values, or add them to 'allowed' if they are legitimate ({shown})",
    )


def _check_pattern(frame: pd.DataFrame, rule: Rule, _refs: Any, _now: Any) -> _Outcome:
    import pandera.pandas as pa

    column, pattern = str(rule.column), str(rule.pattern)
    text = frame[column].astype("string")
    whole = re.compile(f"(?:{pattern})\\Z")
    schema = pa.DataFrameSchema({column: pa.Column(checks=pa.Check.str_matches(whole), nullable=True)})
    failing, _ = _failing_rows(_column_frame(frame, column, text), schema)
    if not len(failing):
        return _Outcome(True, failing, f"every value of {column} matches {pattern}")
    return _Outcome(
        False,
        failing,
        f"{_share(len(failing), len(frame))} do not match {pattern}",
        "fix the values, or the pattern if the format changed on purpose",
    )


def _check_compare(frame: pd.DataFrame, rule: Rule, _refs: Any, _now: Any) -> _Outcome:
    import pandera.pandas as pa

    column = str(rule.column)
    compare = rule.compare
    assert compare is not None
    other = compare.other
    if other not in frame.columns:
        missing = f"column {other!r} (compared with {column}) is missing"
        return _Outcome(False, None, missing, "fix the rule or the data")
    op = _OPS[compare.op]

    def holds(data: pd.DataFrame) -> pd.Series[Any]:
        left, right = data[column], data[other]
        try:
            result = op(left, right)
        except TypeError:
            result = op(pd.to_numeric(left, errors="coerce"), pd.to_numeric(right, errors="coerce"))
        # Rows missing either side are the business of notNull checks, not of this comparison.
        return result.fillna(False).astype(bool) | left.isna() | right.isna()

    schema = pa.DataFrameSchema(checks=pa.Check(holds, name=f"{column} {compare.op} {other}"))
    failing, _ = _failing_rows(frame[[column, other]], schema)
    words = f"{column} {compare.op} {other}"
    if not len(failing):
        return _Outcome(True, failing, f"{words} on every row")
    return _Outcome(
        False, failing, f"{_share(len(failing), len(frame))} break {words}", "fix those rows", extra_columns=(other,)
    )


def _check_exists_in(
    frame: pd.DataFrame, rule: Rule, references: Mapping[str, pd.Series[Any]], _now: Any
) -> _Outcome:
    import pandera.pandas as pa

    column = str(rule.column)
    target = rule.existsIn
    assert target is not None
    key = reference_key(target.dataset, target.column)
    values = references.get(key)
    where = f"{target.dataset.removeprefix('dataset://')} column {target.column}"
    if values is None:
        return _Outcome(False, None, f"{where} could not be read", "check that the version exists and has that column")
    schema = pa.DataFrameSchema({column: pa.Column(checks=pa.Check.isin(values.dropna().unique()), nullable=True)})
    failing, _ = _failing_rows(_column_frame(frame, column), schema)
    if not len(failing):
        return _Outcome(True, failing, f"every {column} exists in {where}")
    return _Outcome(
        False,
        failing,
        f"{_share(len(failing), len(frame))} have a {column} that {where} does not hold",
        f"fix those rows, or point existsIn at a version of {target.dataset.split('@')[0]} that has them",
    )


def _check_freshness(frame: pd.DataFrame, rule: Rule, _refs: Any, now: dt.datetime) -> _Outcome:
    import pandera.pandas as pa

    column, limit = str(rule.column), str(rule.freshness)
    max_age = dt.timedelta(seconds=int(limit[:-1]) * _UNITS[limit[-1]])
    dates = pd.to_datetime(frame[column], errors="coerce", utc=True)
    newest = dates.max()
    reference = pd.Timestamp(now).tz_convert("UTC") if now.tzinfo else pd.Timestamp(now, tz="UTC")
    schema = pa.DataFrameSchema(checks=pa.Check(lambda _: bool(pd.notna(newest)) and newest >= reference - max_age))
    failing, whole = _failing_rows(frame[[column]], schema)
    if pd.isna(newest):
        return _Outcome(False, None, f"{column} holds no readable date", "fix the dates")
    age = reference - newest
    shown = f"newest {column} is {newest.isoformat()}, {_age(age)} old"
    if whole or len(failing):
        return _Outcome(False, None, f"{shown}; at most {limit} allowed", "export fresh data before snapshotting")
    return _Outcome(True, None, f"{shown} (at most {limit})")


def _age(delta: dt.timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{max(seconds, 0) / 60:.0f} minutes"


def _check_rows(frame: pd.DataFrame, rule: Rule, _refs: Any, _now: Any) -> _Outcome:
    import pandera.pandas as pa

    bounds = rule.rows
    assert bounds is not None
    low = -1.0 if bounds.min is None else bounds.min
    high = float("inf") if bounds.max is None else bounds.max
    schema = pa.DataFrameSchema(checks=pa.Check(lambda data: low <= len(data) <= high, name="row count"))
    _, whole = _failing_rows(frame, schema)
    words = " and ".join(
        part
        for part in (
            f"at least {bounds.min:,.0f}" if bounds.min is not None else "",
            f"at most {bounds.max:,.0f}" if bounds.max is not None else "",
        )
        if part
    )
    if not whole:
        return _Outcome(True, None, f"{len(frame):,} rows ({words})")
    return _Outcome(False, None, f"{len(frame):,} rows; {words} expected", "check the export for truncation")


_CHECKS: dict[str, Callable[[pd.DataFrame, Rule, Mapping[str, pd.Series[Any]], dt.datetime], _Outcome]] = {
    "type": _check_type,
    "notNull": _check_nulls,
    "maxNullRatio": _check_nulls,
    "unique": _check_unique,
    "range": _check_range,
    "allowed": _check_allowed,
    "pattern": _check_pattern,
    "compare": _check_compare,
    "existsIn": _check_exists_in,
    "freshness": _check_freshness,
    "rows": _check_rows,
}
