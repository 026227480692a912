"""`mlops validate`: read a repository state, check it, and say what a change does."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mlops.errors import Category, ExitCode, Problem, Severity
from mlops.loader.cache import ParseCache
from mlops.loader.config import load_settings
from mlops.loader.snapshot import Progress, WorktreeSnapshot, load_documents
from mlops.services.repository import repo_root
from mlops.stores.factory import open_artifact_store
from mlops.validation import Change, SourceDocument, Verdict, build_index, check_change, check_repository
from mlops.validation.index import RepoIndex


@dataclass
class ValidationReport:
    root: Path
    documents: int
    problems: list[Problem] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    base: str | None = None
    store_url: str | None = None

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
    root = repo_root(root)
    settings = load_settings(root)
    with _gc_paused():
        cache = ParseCache.for_repo(root, enabled=use_cache)
        worktree = WorktreeSnapshot(root)
        verdict = check_repository(_indexed(load_documents(worktree, cache, progress), cache))
        verdict.problems.extend(pipeline_code_problems(root, verdict.index))
        report = ValidationReport(root=root, documents=verdict.documents, base=base)
        if check_store:
            report.store_url = _check_store(settings.store, root, verdict)
        if base is not None:
            from mlops.loader.git import snapshot_at  # GitPython only when a base is asked for

            base_snapshot = snapshot_at(root, base)
            base_index = _indexed(load_documents(base_snapshot, cache), cache).index
            check_change(base_index, verdict)
            from mlops.services.gates import change_gate_problems

            verdict.problems.extend(change_gate_problems(root, base, base_index, verdict.index, verdict.changes))
            report.base = base_snapshot.label
        report.changes = verdict.changes
        report.problems = sorted(
            _located(verdict.problems, worktree),
            key=lambda p: (p.path, p.line or 0, p.col or 0, p.message),
        )
    return report


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


def _check_store(spec: str, root: Path, verdict: Verdict) -> str:
    store = open_artifact_store(spec, root)
    wanted = [(entry.path, ref) for entry in verdict.index.entries() for ref in entry.facts.artifacts]
    missing = store.missing(ref.digest for _, ref in wanted)
    for path, ref in wanted:
        if ref.digest in missing:
            verdict.problems.append(
                Problem(
                    path,
                    f"{ref.digest} is not in the artifact store {store.url} "
                    "(add the file with `mlops store add FILE`, or point MLOPS_STORE at the store that has it)",
                    field=ref.field,
                    category=Category.STORE,
                    code="missing-blob",
                )
            )
    return store.url
