"""Schemas, references and policies: what `mlops validate` decides, without any I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from mlops.errors import Problem
from mlops.validation.facts import ManifestFacts
from mlops.validation.index import Entry, RepoIndex
from mlops.validation.layout import check_identity, check_placement
from mlops.validation.schema import validate_document

if TYPE_CHECKING:
    from mlops.validation.changes import Change


class SourceDocument(NamedTuple):  # a tuple: a warm run over 10,000 files makes 10,000 of these and little else
    """One file as read: parsed data, or the problems that stopped the reader.

    ``facts`` are what a cache remembers of this blob from an earlier run in which it
    validated under the same schema version; ``blob`` lets new facts be remembered.
    """

    path: str
    data: Any
    problems: tuple[Problem, ...] = ()
    blob: str | None = None
    facts: Any = None
    load: Callable[[], Any] | None = None  # the parsed data, read only when needed (with cached facts)


@dataclass
class Verdict:
    index: RepoIndex
    problems: list[Problem] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    documents: int = 0
    # blob id -> facts of the documents validated in this run, for the caller's cache
    fresh_facts: dict[str, Any] = field(default_factory=dict)


def build_index(documents: Iterable[SourceDocument]) -> Verdict:
    """Schema and placement of each document; the valid ones form the index."""
    verdict = Verdict(RepoIndex())
    for doc in documents:
        verdict.documents += 1
        if doc.problems:
            verdict.problems.extend(doc.problems)
            verdict.index.broken_paths.add(doc.path)
            continue
        known = ManifestFacts.load(doc.facts) if doc.facts is not None else None
        if known is not None:
            # Validated before under this schema: only where it lives can make it wrong now.
            problems = check_identity(doc.path, known.kind, known.name, known.version)
            if not problems:
                verdict.index.add(Entry(doc.path, facts=known, data=doc.data, load=doc.load))
                continue
            verdict.problems.extend(problems)
            verdict.index.broken_paths.add(doc.path)
            continue
        manifest, problems = validate_document(doc.path, doc.data)
        if manifest is not None:
            problems = check_placement(doc.path, manifest)
        verdict.problems.extend(problems)
        if manifest is not None and not problems:
            entry = Entry(doc.path, manifest)
            verdict.index.add(entry)
            if doc.blob is not None:
                verdict.fresh_facts[doc.blob] = entry.facts.dump()
        else:
            verdict.index.broken_paths.add(doc.path)
    return verdict


def check_repository(verdict: Verdict) -> Verdict:
    """Cross-document rules on an index built by :func:`build_index`."""
    # Imported here: a run that reuses its last verdict (mlops.validation.reuse) never needs them.
    from mlops.manifests import Environment, Pipeline
    from mlops.validation.pipelines import check_environment_schedules, check_pipeline
    from mlops.validation.policies import check_policies
    from mlops.validation.references import check_references
    from mlops.validation.retraining import check_retraining

    verdict.problems.extend(check_references(verdict.index))
    for path, pipeline in verdict.index.of(Pipeline):
        verdict.problems.extend(check_pipeline(path, pipeline))
    for path, environment in verdict.index.of(Environment):
        verdict.problems.extend(check_environment_schedules(path, environment))
    verdict.problems.extend(check_policies(verdict.index))
    verdict.problems.extend(check_retraining(verdict.index))
    return verdict


def check_change(base: RepoIndex, head: Verdict) -> Verdict:
    """What the change from base to head does, and the rules only a change can break."""
    from mlops.validation.changes import describe_changes, immutability_problems

    head.changes = describe_changes(base, head.index)
    head.problems.extend(immutability_problems(base, head.index))
    return head


__all__ = [
    "RepoIndex",
    "SourceDocument",
    "Verdict",
    "build_index",
    "check_change",
    "check_repository",
]
