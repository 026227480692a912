"""All valid manifests of one repository state, by kind and key (pure)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from mlops.manifests import KINDS, Manifest
from mlops.validation.facts import ManifestFacts, facts_of

M = TypeVar("M", bound=Manifest)


class Entry:
    """One valid manifest: its facts always, its full model when a rule asks for it.

    An entry made from cached facts holds the parsed data and validates it on first use
    (it validated before, under the same schema version, so this cannot fail).

    ``accessed`` says whether anything asked for the full model: a verdict computed over an index
    depends on the full content of exactly these entries, and on the facts of the others.
    """

    __slots__ = ("_data", "_load", "_manifest", "accessed", "facts", "path")

    def __init__(
        self,
        path: str,
        manifest: Manifest | None = None,
        *,
        facts: ManifestFacts | None = None,
        data: Any = None,
        load: Callable[[], Any] | None = None,
    ) -> None:
        if manifest is None and (facts is None or (data is None and load is None)):
            raise ValueError("an entry needs a manifest, or facts with the data (or a way to load it)")
        self.path = path
        self._manifest = manifest
        self._data = data
        self._load = load
        self.accessed = False
        self.facts = facts if facts is not None else facts_of(manifest)  # type: ignore[arg-type]

    @property
    def manifest(self) -> Manifest:
        self.accessed = True
        if self._manifest is None:
            data = self._data if self._data is not None or self._load is None else self._load()
            self._manifest = KINDS[self.facts.kind].model_validate(data)
            self._data = self._load = None
        return self._manifest

    @property
    def kind(self) -> str:
        return self.facts.kind

    @property
    def key(self) -> str:
        return self.facts.key


class RepoIndex:
    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._by_kind: dict[str, dict[str, Entry]] = {}
        # Files that exist but did not validate: pointers to them are not reported as dangling too.
        self.broken_paths: set[str] = set()
        for entry in entries:
            self.add(entry)

    def add(self, entry: Entry) -> None:
        self._by_kind.setdefault(entry.kind, {})[entry.key] = entry

    def get(self, kind: str, key: str) -> Entry | None:
        return self._by_kind.get(kind, {}).get(key)

    def keys(self, kind: str) -> Iterable[str]:
        return self._by_kind.get(kind, {}).keys()

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        if kind is not None:
            yield from self._by_kind.get(kind, {}).values()
            return
        for by_key in self._by_kind.values():
            yield from by_key.values()

    def of(self, cls: type[M]) -> Iterator[tuple[str, M]]:
        for entry in self.entries(cls.KIND):
            manifest = entry.manifest
            assert isinstance(manifest, cls)
            yield entry.path, manifest

    def find(self, cls: type[M], key: str) -> M | None:
        entry = self.get(cls.KIND, key)
        if entry is None:
            return None
        manifest = entry.manifest
        assert isinstance(manifest, cls)
        return manifest

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_kind.values())
