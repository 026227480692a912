"""A snapshot's format: the one suffix its files share (found with one test per name), else "files"."""

from __future__ import annotations

import pytest

from mlops.loader.hashing import HashedFile
from mlops.services.snapshot_register import _common_suffix, _format


def files(*rels: str) -> list[HashedFile]:
    return [HashedFile(rel, f"/data/{rel}", (1, 0, 0, i), "sha256:" + "0" * 64) for i, rel in enumerate(rels)]


@pytest.mark.parametrize(
    ("rels", "common", "fmt"),
    [
        (("a/x.bin", "b/y.bin", "z.bin"), ".bin", "bin"),
        (("x.tar.gz",), ".gz", "gz"),
        (("a/x.bin", "b/.bin"), None, "files"),  # a hidden file named like the suffix has none
        ((".bin",), None, "files"),
        (("x.BIN", "y.bin"), None, "bin"),  # one format, spelled two ways: found the slow way
        (("x.bin", "y.png"), None, "files"),
        (("x.bin", "README"), None, "files"),
        (("x.", "y."), None, "files"),  # a trailing dot is no suffix
    ],
)
def test_the_common_suffix_and_the_format(rels: tuple[str, ...], common: str | None, fmt: str) -> None:
    listed = files(*rels)
    assert _common_suffix(listed) == common
    assert _format(listed, None, common) == fmt
