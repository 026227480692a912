"""Profiles of tables and differences between dataset versions (pure: DataFrames and file lists in, values out).

A profile is what a snapshot records about a table (row count, each column's type, nulls,
distinct values, numeric range, mean and spread) plus what reports draw (histograms and the
most frequent values), which stays out of the manifest.

Column types are the words manifests use: ``string``, ``int64``, ``float64``, ``bool``,
``datetime`` and ``mixed``. A text column whose values are mostly numbers but not all is
``mixed``: that is almost always a broken export (a stray "n/a" in a numeric column), and
the profile keeps the first offending value and its row to say so.

Differences compare two versions by their file lists (added, removed, changed), their schemas
(columns added, removed, retyped), their statistics, and, when both tables are at hand, their
rows: matched on a key column when there is one, otherwise as multisets of whole rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.manifests.dataset_version import Column, ColumnStats, DataFile

HISTOGRAM_BINS = 20
TOP_VALUES = 10
EXAMPLES = 5
# A text column is "mixed" when at least this share of its values are numbers, but not all of them.
MIXED_NUMERIC_SHARE = 0.5


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    type: str
    rows: int
    nulls: int
    distinct: int | None = None
    min: float | str | None = None
    max: float | str | None = None
    mean: float | None = None
    std: float | None = None
    histogram: tuple[tuple[float, float, int], ...] = ()  # (low, high, count) for numbers
    top: tuple[tuple[str, int], ...] = ()  # the most frequent values, for text and booleans
    mixed_example: tuple[int, str] | None = None  # (row, value) of the first non-number in a mixed column
    numbers: int = 0  # values that read as numbers, for mixed columns

    @property
    def null_ratio(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0

    def to_column(self) -> Column:
        stats = ColumnStats(
            nulls=self.nulls,
            distinct=self.distinct,
            min=self.min,
            max=self.max,
            mean=self.mean,
            std=self.std,
        )
        return Column(name=self.name, type=self.type, nullable=self.nulls > 0, stats=stats)


@dataclass(frozen=True)
class TableProfile:
    rows: int
    columns: tuple[ColumnProfile, ...]

    @property
    def notes(self) -> list[str]:
        """What a person should know about the table before using it (mixed types, empty columns)."""
        notes = []
        for column in self.columns:
            if column.type == "mixed" and column.mixed_example is not None:
                row, value = column.mixed_example
                others = column.rows - column.nulls - column.numbers
                notes.append(
                    f"column {column.name!r} has mixed types: {column.numbers:,} numbers and {others:,} "
                    f"{'value' if others == 1 else 'values'} that are not (first at row {row}: {value!r})"
                )
            elif self.rows and column.nulls == self.rows:
                notes.append(f"column {column.name!r} is empty (every value is missing)")
        return notes


def _round(value: float) -> float | None:
    if not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def column_type(series: pd.Series[Any]) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return str(dtype).lower()
    if pd.api.types.is_float_dtype(dtype):
        return str(dtype).lower()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


def profile_column(name: str, series: pd.Series[Any]) -> ColumnProfile:
    rows = len(series)
    nulls = int(series.isna().sum())
    kind = column_type(series)
    try:
        distinct: int | None = int(series.nunique(dropna=True))
    except TypeError:  # lists or mappings from JSON lines: no equality to count by
        return ColumnProfile(name, "object", rows, nulls)
    if kind == "bool":
        present = series.dropna().astype(bool)
        mean = _round(float(present.mean())) if len(present) else None
        return ColumnProfile(name, kind, rows, nulls, distinct, mean=mean, top=_top(series))
    if kind.startswith(("int", "float")):
        values = series.dropna().to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            return ColumnProfile(name, kind, rows, nulls, distinct)
        whole = kind.startswith("int")
        return ColumnProfile(
            name,
            kind,
            rows,
            nulls,
            distinct,
            min=int(values.min()) if whole else _round(float(values.min())),
            max=int(values.max()) if whole else _round(float(values.max())),
            mean=_round(float(values.mean())),
            std=_round(float(values.std(ddof=1))) if len(values) > 1 else 0.0,
            histogram=_histogram(values),
        )
    if kind == "datetime":
        present = series.dropna()
        if not len(present):
            return ColumnProfile(name, kind, rows, nulls, distinct)
        return ColumnProfile(
            name, kind, rows, nulls, distinct, min=present.min().isoformat(), max=present.max().isoformat()
        )
    present = series.dropna()
    numbers = pd.to_numeric(present, errors="coerce") if len(present) else present
    count = int(numbers.notna().sum()) if len(present) else 0
    if len(present) and MIXED_NUMERIC_SHARE * len(present) <= count < len(present):
        first = int(numbers.isna().to_numpy().argmax())
        label = present.index[first]
        # Rows are numbered from 1 in the table's order, the header not counted.
        row = int(label) + 1 if isinstance(label, int | np.integer) else first + 1
        finite = numbers.dropna().to_numpy(dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        return ColumnProfile(
            name,
            "mixed",
            rows,
            nulls,
            distinct,
            histogram=_histogram(finite) if len(finite) else (),
            top=_top(series),
            mixed_example=(row, str(present.iloc[first])),
            numbers=count,
        )
    return ColumnProfile(name, kind, rows, nulls, distinct, top=_top(series))


def _histogram(values: np.ndarray[Any, np.dtype[np.float64]]) -> tuple[tuple[float, float, int], ...]:
    low, high = float(values.min()), float(values.max())
    if low == high:
        return ((low, high, len(values)),)
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    return tuple((float(edges[i]), float(edges[i + 1]), int(c)) for i, c in enumerate(counts))


def _top(series: pd.Series[Any]) -> tuple[tuple[str, int], ...]:
    counts = series.dropna().astype(str).value_counts().head(TOP_VALUES)
    return tuple((str(k), int(v)) for k, v in counts.items())


def profile_table(frame: pd.DataFrame) -> TableProfile:
    columns = tuple(profile_column(str(name), frame[name]) for name in frame.columns)
    return TableProfile(rows=len(frame), columns=columns)


# ------------------------------------------------------------------------------------------ differences


@dataclass(frozen=True)
class FileDiff:
    added: list[DataFile] = field(default_factory=list)
    removed: list[DataFile] = field(default_factory=list)
    changed: list[tuple[DataFile, DataFile]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff_files(before: Sequence[DataFile], after: Sequence[DataFile]) -> FileDiff:
    old = {f.path: f for f in before}
    new = {f.path: f for f in after}
    added = [new[p] for p in sorted(set(new) - set(old))]
    removed = [old[p] for p in sorted(set(old) - set(new))]
    changed = [(old[p], new[p]) for p in sorted(set(old) & set(new)) if old[p].digest != new[p].digest]
    unchanged = sum(1 for p in set(old) & set(new) if old[p].digest == new[p].digest)
    return FileDiff(added, removed, changed, unchanged)


@dataclass(frozen=True)
class StatChange:
    column: str
    stat: str
    before: float | str | None
    after: float | str | None

    @property
    def relative(self) -> float | None:
        """(after - before) / |before| for numbers, when before is not zero."""
        if isinstance(self.before, int | float) and isinstance(self.after, int | float) and self.before:
            return (self.after - self.before) / abs(self.before)
        return None


@dataclass(frozen=True)
class SchemaDiff:
    added: list[Column] = field(default_factory=list)
    removed: list[Column] = field(default_factory=list)
    retyped: list[tuple[str, str, str]] = field(default_factory=list)  # (column, before, after)
    stats: list[StatChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.retyped or self.stats)


_STATS = ("nulls", "distinct", "min", "max", "mean", "std")


def diff_columns(before: Sequence[Column], after: Sequence[Column]) -> SchemaDiff:
    old = {c.name: c for c in before}
    new = {c.name: c for c in after}
    added = [c for c in after if c.name not in old]
    removed = [c for c in before if c.name not in new]
    retyped = [(c.name, old[c.name].type, c.type) for c in after if c.name in old and old[c.name].type != c.type]
    stats = []
    for column in after:
        previous = old.get(column.name)
        if previous is None or previous.stats is None or column.stats is None:
            continue
        for stat in _STATS:
            was, now = getattr(previous.stats, stat), getattr(column.stats, stat)
            if was != now:
                stats.append(StatChange(column.name, stat, was, now))
    return SchemaDiff(added, removed, retyped, stats)


@dataclass(frozen=True)
class RowDiff:
    key: str | None  # the column rows were matched on; None: whole rows compared as multisets
    before: int
    after: int
    added: int
    removed: int
    changed: int  # rows whose key is in both tables with other values (only with a key)
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few changed/added/removed rows


def pick_key(before: pd.DataFrame, after: pd.DataFrame, preferred: Sequence[str] = ()) -> str | None:
    """A column that identifies rows in both tables: the first preferred one, else the first unique column."""
    shared = [str(c) for c in after.columns if c in before.columns]
    for name in [*preferred, *shared]:
        if name not in shared:
            continue
        if _is_key(before[name]) and _is_key(after[name]):
            return name
    return None


def _is_key(series: pd.Series[Any]) -> bool:
    try:
        return bool(series.notna().all() and series.is_unique)
    except TypeError:
        return False


def diff_rows(before: pd.DataFrame, after: pd.DataFrame, key: str | None) -> RowDiff:
    if key is not None:
        return _diff_by_key(before, after, key)
    old = _row_hashes(before)
    new = _row_hashes(after)
    old_counts = old.value_counts()
    new_counts = new.value_counts()
    joined = pd.concat([old_counts.rename("a"), new_counts.rename("b")], axis=1).fillna(0)
    removed = int((joined["a"] - joined["b"]).clip(lower=0).sum())
    added = int((joined["b"] - joined["a"]).clip(lower=0).sum())
    examples = []
    extra = set(joined.index[joined["b"] > joined["a"]])
    for position in np.flatnonzero(new.isin(extra).to_numpy())[:EXAMPLES]:
        examples.append({"change": "added", "row": int(position) + 1, **_plain(after.iloc[int(position)])})
    return RowDiff(None, len(before), len(after), added, removed, 0, examples)


def _diff_by_key(before: pd.DataFrame, after: pd.DataFrame, key: str) -> RowDiff:
    old = before.set_index(key, drop=False)
    new = after.set_index(key, drop=False)
    old_keys, new_keys = old.index, new.index
    added_keys = new_keys.difference(old_keys)
    removed_keys = old_keys.difference(new_keys)
    common = new_keys.intersection(old_keys)
    shared = [c for c in after.columns if c in before.columns]
    left = old.loc[common, shared]
    right = new.loc[common, shared]
    differs = pd.Series(False, index=common)
    for column in shared:
        a, b = left[column], right[column]
        try:
            same = (a == b) | (a.isna() & b.isna())
        except TypeError:
            same = a.astype(str) == b.astype(str)
        differs |= ~same.to_numpy()
    changed_keys = common[differs.to_numpy()]
    examples: list[dict[str, Any]] = []
    for k in changed_keys[:EXAMPLES]:
        was, now = old.loc[k], new.loc[k]
        cells = {c: (_plain_value(was[c]), _plain_value(now[c])) for c in shared if not _same(was[c], now[c])}
        examples.append({"change": "changed", key: _plain_value(k), "values": cells})
    for k in added_keys[: max(0, EXAMPLES - len(examples))]:
        examples.append({"change": "added", **_plain(new.loc[k])})
    for k in removed_keys[: max(0, EXAMPLES - len(examples))]:
        examples.append({"change": "removed", **_plain(old.loc[k])})
    return RowDiff(key, len(before), len(after), len(added_keys), len(removed_keys), len(changed_keys), examples)


def _same(a: Any, b: Any) -> bool:
    if _is_missing(a) and _is_missing(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _row_hashes(frame: pd.DataFrame) -> pd.Series[Any]:
    try:
        return pd.util.hash_pandas_object(frame, index=False)
    except TypeError:  # unhashable cells (lists from JSON lines): hash their text
        return pd.util.hash_pandas_object(frame.astype(str), index=False)


def _plain(row: pd.Series[Any]) -> dict[str, Any]:
    return {str(k): _plain_value(v) for k, v in row.items()}


def plain_value(value: Any) -> Any:
    """A cell as a JSON-friendly Python value (numpy scalars unwrapped, missing values as None)."""
    return _plain_value(value)


def _plain_value(value: Any) -> Any:
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)
