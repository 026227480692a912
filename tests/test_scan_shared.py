"""A large folder is walked by two processes: the same files as one process finds, the same refusals.

Each scenario runs in a fresh interpreter (see test_hash_workers): forking needs a process with one thread.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_hash_workers import run_python

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")

# The parent process takes no job (Workers.take says the queue is empty), so the forked walker walks everything.
WORKER_ONLY = """
    from mlops.loader import hash_workers
    hash_workers.Workers.take = lambda self: None
"""


def tree(root: Path, folders: int = 12, files: int = 20) -> Path:
    for d in range(folders):
        sub = root / f"part-{d:02d}" / "inner"
        sub.mkdir(parents=True)
        for f in range(files):
            (sub / f"f{f:03d}.bin").write_bytes(f"{d}/{f}".encode())
    (root / "top.csv").write_text("a\n1\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("setup", ["", WORKER_ONLY], ids=["shared", "worker-only"])
def test_a_shared_walk_finds_what_one_process_finds(tmp_path: Path, setup: str) -> None:
    folder = tree(tmp_path / "data")
    out = run_python(
        setup
        + """
    import json, os, sys
    from pathlib import Path
    from mlops.loader import file_scan, hash_workers

    walked_by_workers = []
    real_collect = hash_workers.Workers.collect

    def collect(self, waiting=None):
        got = real_collect(self, waiting)
        walked_by_workers.append(sum(len(walked) for results, _ in got for _, walked in results))
        return got

    hash_workers.Workers.collect = collect
    shared = file_scan.scan(Path(sys.argv[1]), 2)
    alone = file_scan.scan(Path(sys.argv[1]), 1)
    print(json.dumps({
        "same": shared == alone, "files": len(shared), "by_workers": walked_by_workers,
        "types": sorted({type(f).__name__ for f in shared}), "first": list(shared[0][:2]),
    }))
    """,
        str(folder),
    )
    assert out["same"] is True
    assert out["files"] == 12 * 20 + 1
    assert out["types"] == ["ScannedFile"]
    assert out["first"] == ["part-00/inner/f000.bin", str(folder / "part-00" / "inner" / "f000.bin")]
    assert len(out["by_workers"]) == 1  # type: ignore[arg-type]  # the walk was shared: one collect
    if setup:
        assert out["by_workers"] == [12 * 20 + 1]


def test_a_refusal_found_by_the_forked_walker_is_the_same_error(tmp_path: Path) -> None:
    folder = tree(tmp_path / "data")
    outside = tmp_path / "secret.txt"
    outside.write_text("not part of the data\n", encoding="utf-8")
    (folder / "part-07" / "inner" / "link.txt").symlink_to(outside)
    out = run_python(
        WORKER_ONLY
        + """
    import json, sys
    from pathlib import Path
    from mlops.errors import InputError
    from mlops.loader import file_scan

    try:
        file_scan.scan(Path(sys.argv[1]), 2)
    except InputError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    """,
        str(folder),
    )
    link = folder / "part-07" / "inner" / "link.txt"
    assert out == {
        "error": "InputError",
        "message": f"{link}: a symbolic link to {outside}, outside {folder}; a snapshot holds only the folder's own "
        "files: copy the file in, or snapshot the folder it lives in",
    }


def test_when_the_system_refuses_a_fork_one_process_walks(tmp_path: Path) -> None:
    folder = tree(tmp_path / "data")
    out = run_python(
        """
    import errno, json, os, sys
    from pathlib import Path
    from mlops.loader import file_scan

    def refuse():
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    os.fork = refuse
    print(json.dumps({"files": len(file_scan.scan(Path(sys.argv[1]), 2))}))
    """,
        str(folder),
    )
    assert out == {"files": 12 * 20 + 1}
