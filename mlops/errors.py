"""One exception root for everything a user can cause.

The CLI catches :class:`MlopsError` at one boundary, prints its message as one
line per problem and exits with its ``exit_code``; anything else is a bug and
shows a traceback only with ``--traceback``.

::

    MlopsError                        exit 1 unless a subclass says otherwise
    ├── DetailedError                 a headline, then one indented line per reason (refusals, rollbacks)
    ├── UsageError                    exit 2: bad arguments or options
    ├── InputError                    exit 2: input we cannot read (missing file, not a repository, bad config)
    │   └── UnreadableManifest        exit 2: a manifest that cannot be parsed (path:line:col)
    ├── ValidationFailed              exit 1: the repository was read and breaks rules (carries every Problem)
    ├── GitError                      exit 2: a ref that does not exist, a repository git cannot read
    └── StoreError                    exit 1: the artifact store could not do what was asked
        ├── BlobNotFound              a digest the store does not hold
        └── DigestMismatch            bytes whose sha256 is not the one promised

Problems (not exceptions) are the unit of validation output: validation
collects all of them in one run and the caller decides how to render them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum

FieldPath = tuple[str | int, ...]


class ExitCode(IntEnum):
    """Every exit code the CLI uses, in one place.

    ``validate``: 0 valid, 1 violations, 2 unreadable input or usage.
    ``plan`` (like Terraform's -detailed-exitcode): 0 no changes, 2 changes, 1 error.
    """

    OK = 0
    VIOLATIONS = 1
    UNREADABLE = 2
    USAGE = 2
    PLAN_HAS_CHANGES = 2
    INTERNAL = 70


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


class Category(StrEnum):
    """Why a problem exists; decides the exit code (unreadable input is 2, violations 1)."""

    UNREADABLE = "unreadable"
    SCHEMA = "schema"
    REFERENCE = "reference"
    POLICY = "policy"
    STORE = "store"


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth saying) about one file.

    ``field`` is the path inside the document (``("spec", "metrics", "auc")``);
    the loader turns it into ``line``/``col`` (1-based) using the file's
    round-trip positions. A problem without a position points at the file.
    """

    path: str
    message: str
    severity: Severity = Severity.ERROR
    category: Category = Category.SCHEMA
    field: FieldPath = ()
    line: int | None = None
    col: int | None = None
    code: str = ""

    @property
    def field_text(self) -> str:
        return format_field(self.field)

    def located(self, line: int | None, col: int | None) -> Problem:
        return Problem(
            path=self.path,
            message=self.message,
            severity=self.severity,
            category=self.category,
            field=self.field,
            line=line,
            col=col,
            code=self.code,
        )

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}:{self.col or 1}"
        prefix = f"{self.field_text}: " if self.field else ""
        tag = "" if self.severity is Severity.ERROR else f"{self.severity.value}: "
        return f"{where}: {tag}{prefix}{self.message}"


def format_field(field_path: FieldPath) -> str:
    out = ""
    for part in field_path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class MlopsError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def lines(self) -> list[str]:
        return [self.message]


class DetailedError(MlopsError):
    """A headline and the reasons behind it, each printed on its own indented line."""

    def __init__(self, headline: str, details: Sequence[str]) -> None:
        super().__init__(headline)
        self.details = list(details)

    def lines(self) -> list[str]:
        return [self.message, *(f"  {d}" for d in self.details)]


class UsageError(MlopsError):
    exit_code = 2


class InputError(MlopsError):
    exit_code = 2


class UnreadableManifest(InputError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class ValidationFailed(MlopsError):
    exit_code = 1

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = list(problems)

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class GitError(MlopsError):
    exit_code = 2


class StoreError(MlopsError):
    exit_code = 1


class BlobNotFound(StoreError):
    pass


class DigestMismatch(StoreError):
    pass
