"""What a snapshot returns (:func:`mlops.services.snapshot.snapshot`).

A module of its own: the command's first half, which starts hashing, does not need it, and every class
defined before the workers fork is time they wait for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.analysis.quality import QualityResult
    from mlops.services.publish import Publication
    from mlops.stores.notify import Delivery


@dataclass
class SnapshotResult:
    key: str
    path: str  # the manifest's repository path
    created: bool  # False: the same content is already registered as ``key``
    fingerprint: str
    files: int
    size: int
    hashed: int  # files read (the rest came from the stat cache)
    stored: int  # blobs the store did not have
    stored_bytes: int
    streamed: int = 0  # large files hashed while they were copied into the store (new or not)
    processes: int = 1  # that hashed small files (forked workers and the command's own)
    format: str | None = None
    rows: int | None = None
    columns: int = 0
    quality: QualityResult | None = None
    rules: str | None = None
    notes: list[str] = field(default_factory=list)
    publication: Publication | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # stdout notifications, for the CLI to print

    @property
    def uri(self) -> str:
        return f"dataset://{self.key}"
