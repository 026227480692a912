"""All valid manifests of one repository state, by kind and key (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from mlops.manifests import Manifest

M = TypeVar("M", bound=Manifest)


@dataclass(frozen=True)
class Entry:
    path: str
    manifest: Manifest


class RepoIndex:
    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._by_kind: dict[str, dict[str, Entry]] = {}
        # Files that exist but did not validate: pointers to them are not reported as dangling too.
        self.broken_paths: set[str] = set()
        for entry in entries:
            self.add(entry)

    def add(self, entry: Entry) -> None:
        self._by_kind.setdefault(entry.manifest.kind, {})[entry.manifest.key] = entry

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
            assert isinstance(entry.manifest, cls)
            yield entry.path, entry.manifest

    def find(self, cls: type[M], key: str) -> M | None:
        entry = self.get(cls.KIND, key)
        if entry is None:
            return None
        assert isinstance(entry.manifest, cls)
        return entry.manifest

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_kind.values())
