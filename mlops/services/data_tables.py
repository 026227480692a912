"""Reading a snapshot's tables into pandas: CSV, TSV, Parquet and JSON lines, with clear refusals.

A snapshot is one table when its tabular files share one format and the same columns (a
single CSV, or a partitioned Parquet folder); they are read in path order and stacked. Files
that are not tables (images, READMEs, ...) are hashed and stored like any other but left out
of the table. A tabular file that cannot be read is refused with what pandas said about it
(exit 2), since a snapshot with a silently missing profile would pass quality rules it never met.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

TABULAR = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_NAMES = {"csv": "CSV", "tsv": "TSV", "parquet": "Parquet", "jsonl": "JSON lines"}


def table_format(rel: str) -> str | None:
    dot = rel.rfind(".")
    return TABULAR.get(rel[dot:].lower()) if dot > rel.rfind("/") else None


@dataclass(frozen=True)
class TableSource:
    shown: str  # how messages name the file (its path in the snapshot)
    path: Path  # where its bytes are now
    format: str


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    format: str
    files: int


def read_table(source: TableSource) -> pd.DataFrame:
    import pandas as pd

    name = _NAMES[source.format]
    try:
        size = source.path.stat().st_size
    except OSError as exc:
        raise InputError(f"{source.shown}: cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise InputError(f"{source.shown}: empty file; a {name} table needs at least a header (or schema)")
    try:
        if source.format in ("csv", "tsv"):
            return pd.read_csv(
                source.path,
                sep="," if source.format == "csv" else "\t",
                low_memory=False,
                encoding="utf-8",
                encoding_errors="strict",
            )
        if source.format == "parquet":
            return pd.read_parquet(source.path)
        return pd.read_json(source.path, lines=True, dtype=True)
    except UnicodeDecodeError as exc:
        raise InputError(f"{source.shown}: cannot read as {name}: not UTF-8 text (byte {exc.start})") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{source.shown}: cannot read as {name}: no columns (the file holds no header)") from None
    except pd.errors.ParserError as exc:
        raise InputError(f"{source.shown}: cannot read as {name}: {_first_line(exc)}") from None
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{source.shown}: cannot read as {name}: {_first_line(exc)}") from None
    except Exception as exc:  # pyarrow's own errors (ArrowInvalid, ...) do not share a base we can import lazily
        if type(exc).__module__.startswith("pyarrow"):
            raise InputError(f"{source.shown}: cannot read as {name}: {_first_line(exc)}") from None
        raise


def read_tables(sources: Sequence[TableSource]) -> tuple[Table | None, list[str]]:
    """The snapshot's table (or None) and notes on why there is none when tabular files exist."""
    if not sources:
        return None, []
    formats = sorted({s.format for s in sources})
    if len(formats) > 1:
        return None, [f"tables in several formats ({', '.join(formats)}): no table profile"]
    import pandas as pd

    frames = [read_table(s) for s in sources]
    columns = [list(map(str, f.columns)) for f in frames]
    if any(c != columns[0] for c in columns[1:]):
        odd = next(s.shown for s, c in zip(sources, columns, strict=True) if c != columns[0])
        return None, [f"{len(sources)} tables whose columns differ (first: {odd}): no table profile"]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return Table(frame, formats[0], len(frames)), []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()
