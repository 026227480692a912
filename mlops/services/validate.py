"""`mlops validate`: read a repository state, check it, and say what a change does."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.errors import Category, ExitCode, Problem, Severity
from mlops.loader.cache import ParseCache, blob_id, rules_version
from mlops.loader.config import load_settings
from mlops.loader.snapshot import Progress, WorktreeSnapshot, load_documents
from mlops.services.repository import repo_root
from mlops.validation import SourceDocument, Verdict, build_index, check_change, check_repository
from mlops.validation.index import RepoIndex
from mlops.validation.reuse import (
    ArtifactUse,
    CodeInputs,
    RecordedVerdict,
    artifact_uses,
    plan_reuse,
    record,
    replay,
    reuse_refusal,
    updated,
)

if TYPE_CHECKING:
    from mlops.validation.changes import Change

# Files that may differ from those of the recorded verdict before a reusing run records the verdict again.
_REWRITE_AFTER = 64


@dataclass
class ValidationReport:
    root: Path
    documents: int
    problems: list[Problem] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    base: str | None = None
    store_url: str | None = None
    # The cross-file rules did not run: the last verdict was reused (see mlops.validation.reuse). Says how, not what.
    reused: bool = False

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.WARNING]

    @property
    def exit_code(self) -> ExitCode:
        if any(p.category is Category.UNREADABLE for p in self.errors):
            return ExitCode.UNREADABLE
        return ExitCode.VIOLATIONS if self.errors else ExitCode.OK


def validate_repository(
    root: Path,
    base: str | None = None,
    check_store: bool = True,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> ValidationReport:
    """Validate the working tree of ``root`` (and, with ``base``, the change from that ref).

    With the cache, a run without ``base`` records its verdict, and a later run reuses it when no file a rule
    depends on changed (:mod:`mlops.validation.reuse`): only the changed files are validated then. Either way
    the report is the same; the artifact store is always asked.
    """
    root = repo_root(root)
    settings = load_settings(root)
    with _gc_paused():
        cache = ParseCache.for_repo(root, enabled=use_cache)
        worktree = WorktreeSnapshot(root)
        documents = load_documents(worktree, cache, progress)
        recording = use_cache and base is None
        rules = rules_version(cache.schema) if recording else ""
        blobs = {doc.path: doc.blob for doc in documents}
        reused = None
        if recording:
            reused, documents = _reuse(root, documents, blobs, cache, rules)
        report = ValidationReport(root=root, documents=len(documents), base=base, reused=reused is not None)
        decision = _from_reused(reused) if reused is not None else _decide(root, documents, cache, recording)
        problems = decision.problems  # the verdict's own list: the change checks below add to it
        decided = len(problems)  # what a verdict records: the store is asked every time
        if check_store:
            report.store_url, missing = _check_store(settings.store, root, decision.artifacts)
            problems.extend(missing)
        if base is not None:
            assert decision.verdict is not None
            _check_change(root, base, cache, decision.verdict, report)
        located = _located(problems, worktree)
        if recording:
            _record_verdict(cache, rules, blobs, reused, decision, decided, located)
        report.problems = sorted(located, key=lambda p: (p.path, p.line or 0, p.col or 0, p.message))
    return report


@dataclass
class _Decision:
    """What the rules said (or what a reused verdict says they would), before the store and the change checks."""

    problems: list[Problem]
    artifacts: list[ArtifactUse]
    verdict: Verdict | None = None  # None when reused: the rules did not run
    code: CodeInputs | None = None  # the step code the verdict depends on, when it is to be recorded


def _from_reused(reused: _Reused) -> _Decision:
    return _Decision(reused.problems, list(reused.recorded.artifacts))


def _decide(root: Path, documents: list[SourceDocument], cache: ParseCache, recording: bool) -> _Decision:
    verdict = check_repository(_indexed(documents, cache))
    # Read before the check reads the files: a file changed in between then only fails the next reuse.
    code = _code_inputs(root, _code_modules(verdict.index)) if recording else None
    verdict.problems.extend(pipeline_code_problems(root, verdict.index))
    return _Decision(verdict.problems, artifact_uses(verdict.index), verdict, code)


def _check_change(root: Path, base: str, cache: ParseCache, verdict: Verdict, report: ValidationReport) -> None:
    """Add to ``verdict`` what the change from ``base`` breaks: immutable fields, gates, approvals."""
    from mlops.loader.git import snapshot_at  # GitPython only when a base is asked for
    from mlops.services.gates import change_gate_problems

    base_snapshot = snapshot_at(root, base)
    base_index = _indexed(load_documents(base_snapshot, cache), cache).index
    check_change(base_index, verdict)
    verdict.problems.extend(change_gate_problems(root, base, base_index, verdict.index, verdict.changes))
    report.base = base_snapshot.label
    report.changes = verdict.changes


def _record_verdict(
    cache: ParseCache,
    rules: str,
    blobs: dict[str, str | None],
    reused: _Reused | None,
    decision: _Decision,
    decided: int,
    located: list[Problem],
) -> None:
    """Keep the verdict for the next run: the first ``decided`` problems (``located``: placed), not the store's."""
    if reused is not None:
        # The recorded verdict stands for these documents as it is. Rewriting it (2 MB for 10,000 files)
        # pays once problems had to be placed again (not again next time), or many files differ.
        if not reused.placed or len(reused.changed) > _REWRITE_AFTER:
            cache.write_verdict(updated(reused.recorded, blobs, located[:decided]).dump())
    elif decision.verdict is not None and decision.code is not None:
        problems, placed = decision.problems[:decided], located[:decided]
        made = record(rules, blobs, decision.verdict.index, problems, placed, decision.code)
        cache.write_verdict(made.dump())


@dataclass
class _Reused:
    recorded: RecordedVerdict
    problems: list[Problem]  # placed as recorded, except in the changed files
    changed: list[str]  # the paths whose blobs differ from the recorded ones
    placed: bool  # no problem had to be placed again (none is in a changed file)


def _reuse(
    root: Path, documents: list[SourceDocument], blobs: dict[str, str | None], cache: ParseCache, rules: str
) -> tuple[_Reused | None, list[SourceDocument]]:
    """The recorded verdict and its problems if it holds for ``documents``.

    Validates the changed documents only, and remembers their facts as a full run would. Also returns the
    documents, those validated here with their facts, so a full run after all does not validate them again.
    """
    raw = cache.read_verdict()
    recorded = RecordedVerdict.load(raw, rules) if raw is not None else None
    if recorded is None:
        return None, documents
    planned = plan_reuse(recorded, blobs, cache.facts)
    if isinstance(planned, str):
        return None, documents
    code = _code_inputs(root, [(folder, module) for folder, module, *_ in recorded.code])
    if code != recorded.code:
        return None, documents
    changed = set(planned)
    fresh = build_index(doc for doc in documents if doc.path in changed)
    if fresh.fresh_facts:
        cache.put_facts(fresh.fresh_facts)
        cache.save()
    validated = {entry.path: entry.facts for entry in fresh.index.entries()}
    if code is None or reuse_refusal(recorded, planned, cache.facts, validated, code) is not None:
        known = fresh.fresh_facts
        return None, [doc._replace(facts=known[doc.blob]) if doc.blob in known else doc for doc in documents]
    placed = not any(problem.path in changed for problem in recorded.problems)
    return _Reused(recorded, replay(recorded, planned), planned, placed), documents


def verdict_at(root: Path, ref: str) -> Verdict:
    """The repository checks of commit ``ref`` (read from git's objects; the working tree is not involved)."""
    from mlops.loader.git import snapshot_at

    cache = ParseCache.for_repo(root)
    return check_repository(_indexed(load_documents(snapshot_at(root, ref), cache), cache))


def pipeline_code_problems(root: Path, index: RepoIndex) -> list[Problem]:
    """Step callables that cannot be called, judged from the source (``mlops pipeline validate`` imports them)."""
    from mlops.inspect.pipeline_code import static_problem
    from mlops.manifests import Pipeline

    problems = []
    for entry in index.entries("Pipeline"):
        pipeline = entry.manifest
        assert isinstance(pipeline, Pipeline)
        folder = root / "pipelines" / pipeline.name
        parsed: dict[Path, set[str] | str] = {}
        for i, step in enumerate(pipeline.spec.steps):
            why = static_problem(folder, step.run, parsed) if step.run else None
            if why:
                problems.append(Problem(entry.path, why, field=("spec", "steps", i, "run"), code="missing-callable"))
    return problems


def _indexed(documents: list[SourceDocument], cache: ParseCache) -> Verdict:
    """Build the index, and remember the facts of what validated for the next run."""
    verdict = build_index(documents)
    if verdict.fresh_facts:
        cache.put_facts(verdict.fresh_facts)
        cache.save()
    return verdict


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Run without the cyclic garbage collector, then restore it without a pass over what was built.

    Validation allocates a few hundred container objects per manifest (parsed data, then models) and keeps
    all of them to the end, so the collector finds nothing to free: it only rescans the growing heap, which
    cost about half of the schema pass on 10,000 manifests. Re-enabling it as is would then scan the whole
    young generation (every object of the run) at the next allocation; freeze + unfreeze first moves those
    objects to the oldest generation in O(1), where they are examined at the next full collection, as
    long-lived objects are. Nothing is leaked: unreachable cycles are still collected then.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def located(root: Path, problems: list[Problem]) -> list[Problem]:
    """``problems`` with line and column from the files they are about, sorted like `mlops validate` prints them."""
    found = _located(problems, WorktreeSnapshot(root))
    return sorted(found, key=lambda p: (p.path, p.line or 0, p.col or 0, p.message))


def _located(problems: list[Problem], worktree: WorktreeSnapshot) -> list[Problem]:
    """Positions for problems that have a field but no line; ruamel's round trip only when there are some."""
    if all(p.line is not None for p in problems):
        return list(problems)
    from mlops.loader.positions import locate

    return locate(problems, worktree.read)


def _check_store(spec: str, root: Path, wanted: list[ArtifactUse]) -> tuple[str, list[Problem]]:
    """The store's address, and a problem for each promised digest it does not hold."""
    from mlops.stores.factory import open_artifact_store

    store = open_artifact_store(spec, root)
    missing = store.missing(digest for _, digest, _ in wanted)
    problems = [
        Problem(
            path,
            f"{digest} is not in the artifact store {store.url} "
            "(add the file with `mlops store add FILE`, or point MLOPS_STORE at the store that has it)",
            field=where,
            category=Category.STORE,
            code="missing-blob",
        )
        for path, digest, where in wanted
        if digest in missing
    ]
    return store.url, problems


def _code_modules(index: RepoIndex) -> list[tuple[str, str]]:
    """(pipeline folder, module) of every step callable :func:`pipeline_code_problems` looks up, once each."""
    from mlops.manifests import Pipeline

    wanted: dict[tuple[str, str], None] = {}
    for _, pipeline in index.of(Pipeline):
        for step in pipeline.spec.steps:
            if step.run:
                wanted[(f"pipelines/{pipeline.name}", step.run.partition(":")[0])] = None
    return list(wanted)


def _code_inputs(root: Path, modules: list[tuple[str, str]]) -> CodeInputs | None:
    """What the step-code check reads for each (pipeline folder, module), or None when it cannot be told.

    The digest of the content of both places the module may live (None: not a file), and, when it lives in
    neither, whether an installed package provides it: what :func:`mlops.inspect.pipeline_code.static_problem`
    decides from. Content, not stats: a file edited within the clock's resolution of the previous run is not
    mistaken for unchanged.
    """
    from mlops.inspect.pipeline_code import installed, module_candidates

    out = []
    for folder, module in modules:
        try:
            candidates = module_candidates(root / folder, module)
        except ValueError:
            return None
        digests = tuple(_file_digest(candidate) for candidate in candidates)
        provided = None if any(d is not None for d in digests) else installed(module)
        out.append((folder, module, *digests, provided))
    return tuple(out)


def _file_digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        return blob_id(path.read_bytes())
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
