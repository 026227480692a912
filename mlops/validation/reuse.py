"""When the last verdict still stands: re-validating one changed file without re-running every rule (pure).

The cross-file rules (:func:`mlops.validation.check_repository`, and the step-code check beside it) are
deterministic functions of what they can see, and they see only:

* the facts (:class:`~mlops.validation.facts.ManifestFacts`) of every valid document, through the index;
* the full content of the entries whose ``manifest`` they ask for (:attr:`Entry.accessed`);
* which paths hold a file that did not validate (``broken_paths``);
* the step code of each pipeline (outside the manifests: recorded as :data:`CodeInputs`).

So a run over the same paths in which every file that changed still validates, has the same facts as
before, was not read in full by any rule and was not broken, with unchanged step code, would compute
exactly the recorded problems: every rule takes the same branches on the same values, and therefore also
asks for the same entries. Only the positions of the problems in the changed files may have moved (a line
inserted above them), so those are placed again; per-file problems (schema, placement) of a changed file
are none, since it must validate. The artifact list is a function of the facts, so it is the recorded one.

A :class:`RecordedVerdict` also names the code that produced it (``rules``: the schema, the rules, the
step-code check, the positions, Python and pydantic): another version of any of them never reuses it.
The verdict may stay recorded while files differ from it: each later run compares with it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mlops.errors import Category, FieldPath, Problem, Severity
from mlops.validation.facts import ManifestFacts
from mlops.validation.index import RepoIndex

VERDICT_FORMAT = 1

# What the step-code check read, one tuple per (pipeline folder, module), compared as is; see
# mlops.services.validate for what the tuples hold. Plain values only (they are stored with marshal).
CodeInputs = tuple[tuple[Any, ...], ...]
# (path, digest, field) of every artifact a valid manifest promises, in index order.
ArtifactUse = tuple[str, str, FieldPath]


@dataclass(frozen=True)
class RecordedVerdict:
    """What a full run over the working tree decided, and what that decision depended on."""

    rules: str  # the version of the code that decided (schema, rules, positions)
    blobs: Mapping[str, str | None]  # every document's path -> git blob id (None: read without one)
    accessed: frozenset[str]  # entries whose full content a rule read
    broken: frozenset[str]  # documents that did not validate
    code: CodeInputs
    problems: tuple[Problem, ...]  # from the rules and the schema, in order, before positions were added
    located: tuple[Problem, ...]  # the same problems with the positions they were given
    artifacts: tuple[ArtifactUse, ...]

    @property
    def documents(self) -> int:
        return len(self.blobs)

    def dump(self) -> dict[str, Any]:
        """Plain values for marshal."""
        return {
            "format": VERDICT_FORMAT,
            "rules": self.rules,
            "blobs": dict(self.blobs),
            "accessed": sorted(self.accessed),
            "broken": sorted(self.broken),
            "code": self.code,
            "problems": tuple(_dump_problem(p, at) for p, at in zip(self.problems, self.located, strict=True)),
            "artifacts": self.artifacts,
        }

    @classmethod
    def load(cls, raw: Any, rules: str) -> RecordedVerdict | None:
        """The verdict of :meth:`dump`, or None when ``raw`` is not one, or was decided by other code."""
        try:
            if raw["format"] != VERDICT_FORMAT or raw["rules"] != rules:
                return None
            blobs = raw["blobs"]
            if not isinstance(blobs, dict):
                return None
            # A full check of each value would cost more than the rest of a warm run; marshal gives plain values.
            problems, located = [], []
            for item in raw["problems"]:
                path, message, severity, category, field, line, col, code, at_line, at_col = item
                problem = Problem(
                    path, message, Severity(severity), Category(category), tuple(field), line, col, code
                )
                problems.append(problem)
                located.append(problem.located(at_line, at_col))
            return cls(
                rules=rules,
                blobs=blobs,
                accessed=frozenset(raw["accessed"]),
                broken=frozenset(raw["broken"]),
                code=tuple(tuple(item) for item in raw["code"]),
                problems=tuple(problems),
                located=tuple(located),
                artifacts=_artifacts(raw["artifacts"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _artifacts(raw: Any) -> tuple[ArtifactUse, ...]:
    """Recorded artifact uses as loaded: written as tuples of plain values (10,000 of them are not rebuilt)."""
    if not isinstance(raw, tuple) or not all(type(use) is tuple and len(use) == 3 for use in raw):
        raise ValueError("not a list of artifact uses")
    return raw


def _dump_problem(problem: Problem, at: Problem) -> tuple[Any, ...]:
    return (
        problem.path,
        problem.message,
        problem.severity.value,
        problem.category.value,
        tuple(problem.field),
        problem.line,
        problem.col,
        problem.code,
        at.line,
        at.col,
    )


def artifact_uses(index: RepoIndex) -> list[ArtifactUse]:
    """Every artifact digest the index's manifests promise, with where each is promised (index order)."""
    return [(entry.path, ref.digest, ref.field) for entry in index.entries() for ref in entry.facts.artifacts]


def record(
    rules: str,
    blobs: Mapping[str, str | None],
    index: RepoIndex,
    problems: Iterable[Problem],
    located: Iterable[Problem],
    code: CodeInputs,
) -> RecordedVerdict:
    """The verdict of a full run: call it after every rule has run over ``index`` (it reads the accesses)."""
    problems, located = tuple(problems), tuple(located)
    if len(problems) != len(located):
        raise ValueError("every problem needs its located form")
    return RecordedVerdict(
        rules=rules,
        blobs=dict(blobs),
        accessed=frozenset(entry.path for entry in index.entries() if entry.accessed),
        broken=frozenset(index.broken_paths),
        code=code,
        problems=problems,
        located=located,
        artifacts=tuple((path, digest, tuple(field)) for path, digest, field in artifact_uses(index)),
    )


def plan_reuse(recorded: RecordedVerdict, blobs: Mapping[str, str | None], facts: Mapping[str, Any]) -> list[str] | str:
    """The paths whose documents must be validated to decide, or why the verdict cannot stand whatever they hold.

    ``blobs`` are the documents now (path -> blob id, None for a file read without one); ``facts`` maps a
    blob id to the facts of that blob (the facts cache), which must know every changed path's recorded blob,
    and the blob of every valid document (not needed to decide; see below). It runs over every document on
    every warm run, so it sticks to comprehensions and set operations.
    """
    before = recorded.blobs
    if len(blobs) != len(before) or blobs.keys() != before.keys():
        return "files were added or removed"
    changed = [path for path, blob in blobs.items() if blob is None or blob != before[path]]
    for path in changed:
        old = before[path]
        if blobs[path] is None:
            return f"{path} cannot be read"
        if old is None or path in recorded.broken:
            return f"{path} did not validate before"
        if path in recorded.accessed:
            return f"{path} was read in full by a rule"
        if facts.get(old) is None:
            return f"{path}: the facts of its previous content are not known any more"
    # Not needed to decide, but a full run rebuilds the facts cache that the next change needs.
    valid = set(blobs.values()).difference([blobs[path] for path in (*recorded.broken, *changed)])
    valid.discard(None)
    if not valid.issubset(facts):
        for path, blob in blobs.items():
            if blob is not None and blob in valid and blob not in facts:
                return f"{path}: its facts are not cached any more"
    return changed


def reuse_refusal(
    recorded: RecordedVerdict,
    changed: Iterable[str],
    facts: Mapping[str, Any],
    validated: Mapping[str, ManifestFacts],
    code: CodeInputs,
) -> str | None:
    """Why the recorded verdict is not the verdict of the documents now, or None when it is.

    ``changed`` is what :func:`plan_reuse` returned for the documents now (not a reason); ``validated``
    holds the facts of each of those paths whose document validates now (schema and placement), and
    ``code`` what the step code is now, read as :data:`CodeInputs` of the (folder, module) pairs the
    recorded ones name.
    """
    for path in changed:
        now = validated.get(path)
        if now is None:
            return f"{path} does not validate"
        before = ManifestFacts.load(facts.get(recorded.blobs[path] or ""))
        # Both through load: equal facts, whatever container types produced them.
        if before is None or before != ManifestFacts.load(now.dump()):
            return f"{path}: its identity, pointers or artifacts changed"
    if code != recorded.code:
        return "pipeline step code changed"
    return None


def replay(recorded: RecordedVerdict, changed: Iterable[str]) -> list[Problem]:
    """The recorded problems in their order: placed as recorded, except in ``changed`` files (to place again)."""
    moved = set(changed)
    if not moved:
        return list(recorded.located)
    pairs = zip(recorded.problems, recorded.located, strict=True)
    return [problem if problem.path in moved else at for problem, at in pairs]


def updated(recorded: RecordedVerdict, blobs: Mapping[str, str | None], located: Iterable[Problem]) -> RecordedVerdict:
    """The verdict recorded for the documents now, after :func:`reuse_refusal` found nothing (new positions)."""
    located = tuple(located)
    if len(located) != len(recorded.problems):
        raise ValueError("every problem needs its located form")
    return RecordedVerdict(
        rules=recorded.rules,
        blobs=dict(blobs),
        accessed=recorded.accessed,
        broken=recorded.broken,
        code=recorded.code,
        problems=recorded.problems,
        located=located,
        artifacts=recorded.artifacts,
    )
