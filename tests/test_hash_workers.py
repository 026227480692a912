"""Forked hashing workers: every job done once, errors carried back, nothing left behind.

Each scenario runs in a fresh Python process, as a CLI command does: forking is only done (and only
safe) in a process with one thread, and this test process may have others (Ray, thread pools).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from s3_server import moto_s3_bucket

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")


def run_python(code: str, *args: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it prints one JSON object, returned here."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_every_job_is_done_exactly_once_by_the_workers_and_the_parent() -> None:
    out = run_python(
        """
        import json, os
        from mlops.loader.hash_workers import Workers

        with Workers(200, 3, lambda worker, job: [job, worker, os.getpid()], lambda worker: worker * 10) as workers:
            mine = []
            while (job := workers.take()) is not None:
                mine.append(job)
                if len(mine) == 5:
                    break  # the parent does a few, then leaves the rest to the workers
            collected = workers.collect()
        done = sorted(mine + [job for results, _ in collected for job, _ in results])
        pids = {pid for results, _ in collected for _, (_, _, pid) in results}
        print(json.dumps({
            "done": done, "finish": [value for _, value in collected], "parent": os.getpid(), "pids": sorted(pids),
            "results_match": all(r[0] == job for results, _ in collected for job, r in results),
        }))
        """
    )
    assert out["done"] == list(range(200))
    assert out["finish"] == [0, 10, 20]
    assert out["results_match"] is True
    assert out["parent"] not in out["pids"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("raise_", "expected"),
    [
        ("FileChanged('data/a.bin changed while the snapshot was reading it')", "FileChanged: data/a.bin changed"),
        ("InputError('data/b.bin: cannot read: Permission denied')", "InputError: data/b.bin: cannot read"),
        ("ValueError('boom')", "WorkerFailed: a worker process failed: ValueError: boom"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "WorkerFailed: a worker process stopped without its results "),
    ],
)
def test_a_worker_failure_reaches_the_parent_as_one_clear_error(raise_: str, expected: str) -> None:
    out = run_python(
        f"""
        import json, os, signal
        from mlops.errors import InputError
        from mlops.loader.hashing import FileChanged
        from mlops.loader.hash_workers import Workers

        def job(worker, number):
            if number == 7:
                {"raise " if not raise_.startswith("os.") else ""}{raise_}
            return number

        try:
            with Workers(20, 2, job, lambda worker: None) as workers:
                workers.collect()
            print(json.dumps({{"error": None}}))
        except Exception as exc:
            print(json.dumps({{"error": f"{{type(exc).__name__}}: {{exc}}"}}))
        """
    )
    assert str(out["error"]).startswith(expected), out
    if "SIGKILL" in raise_:
        assert "(killed by SIGKILL); nothing was registered" in str(out["error"])


def test_close_stops_workers_that_are_still_busy_and_reaps_them() -> None:
    out = run_python(
        """
        import json, os, time
        from mlops.loader.hash_workers import Workers

        workers = Workers(4, 2, lambda worker, job: time.sleep(600), lambda worker: None)
        pids = list(workers._pids.values())
        workers.close()
        gone = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                gone.append(False)
            except ProcessLookupError:
                gone.append(True)  # killed and reaped: not even a zombie is left
        print(json.dumps({"gone": gone}))
        """
    )
    assert out["gone"] == [True, True]


def test_the_workers_progress_shows_before_their_results_arrive() -> None:
    out = run_python(
        """
        import json, time
        from mlops.loader.hash_workers import Workers

        def job(worker, number):
            time.sleep(0.02)
            return number

        with Workers(40, 2, job, lambda worker: None, weight=lambda number: 3) as workers:
            seen = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (not seen or seen[-1] < 120):
                seen.append(workers.done())
                time.sleep(0.005)
            waited = []
            results = workers.collect(lambda: waited.append(workers.done()))
        print(json.dumps({"seen": seen, "jobs": sum(len(r) for r, _ in results)}))
        """
    )
    seen = out["seen"]
    assert isinstance(seen, list)
    assert seen == sorted(seen)  # one writer per slot, counts only grow
    assert any(0 < n < 120 for n in seen)  # read while the workers were still at it, before any result came
    assert seen[-1] == 120 and out["jobs"] == 40  # 40 jobs of weight 3


def test_progress_counts_the_workers_files_and_never_goes_back(tmp_path: Path) -> None:
    _tree(tmp_path / "src", 3000)
    out = run_python(
        """
        import json, sys
        from pathlib import Path
        from mlops.loader.file_scan import scan
        from mlops.loader.hash_cache import HashCache
        from mlops.loader.hashing import start_hashing

        reports = []
        with start_hashing(scan(Path(sys.argv[1])), HashCache(None), 3) as run:
            hashed, _ = run.finish(lambda done, total: reports.append((done, total)))
        print(json.dumps({"reports": reports, "hashed": len(hashed), "processes": run.processes}))
        """,
        str(tmp_path / "src"),
    )
    reports = out["reports"]
    assert isinstance(reports, list) and out["processes"] == 3
    done = [d for d, _ in reports]
    assert done == sorted(done)
    assert {t for _, t in reports} == {3000}
    assert done[-1] == 3000 == out["hashed"]


SCRIPT = """
import hashlib, json, os, sys
from pathlib import Path
from mlops.loader.file_scan import scan
from mlops.loader.hash_cache import HashCache
from mlops.loader.hashing import start_hashing
from mlops.stores.artifacts import LocalArtifactStore

source, store_root, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
store = LocalArtifactStore(store_root)
scanned = scan(source)
if mode == "remove-one":
    (source / "d1" / "f00105.bin").unlink()  # after the scan listed it: whichever process reads it finds it gone
out = {}
try:
    with store.pack_writer() as pack, start_hashing(scanned, HashCache(None), 3, pack) as run:
        out["processes"] = run.processes
        if mode == "fail-before-join":
            raise RuntimeError("the parent failed while the workers hashed")
        hashed, read = run.finish()
        out["stored"] = pack.staged_with_parts[0]
        pack.commit()
    out["digests"] = {h.rel: h.digest for h in hashed}
    out["read"] = read
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
out["missing"] = len(LocalArtifactStore(store_root).missing(
    "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in source.rglob("*.bin")
))
out["leftovers"] = sorted(p.name for p in (store_root / "tmp").glob("*")) if (store_root / "tmp").is_dir() else []
out["packs"] = len(list((store_root / "packs").glob("*.idx"))) if (store_root / "packs").is_dir() else 0
print(json.dumps(out))
"""


def _tree(folder: Path, count: int) -> dict[str, bytes]:
    contents = {}
    for i in range(count):
        rel = f"d{i // 100}/f{i:05d}.bin"
        data = f"file {i % 450}\n".encode() * (1 + i % 450 % 7)  # 450 distinct contents at most
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
        contents[rel] = data
    return contents


def test_when_the_system_refuses_a_fork_the_command_hashes_alone(tmp_path: Path) -> None:
    contents = _tree(tmp_path / "src", 500)
    out = run_python(
        """
        import errno, json, os, sys
        from pathlib import Path
        from mlops.loader.file_scan import scan
        from mlops.loader.hash_cache import HashCache
        from mlops.loader.hashing import start_hashing
        from mlops.stores.artifacts import LocalArtifactStore

        def refused():  # what a process limit looks like
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

        os.fork = refused
        store_root = Path(sys.argv[2])
        with LocalArtifactStore(store_root).pack_writer() as pack:
            with start_hashing(scan(Path(sys.argv[1])), HashCache(None), 3, pack) as run:
                hashed, _ = run.finish()
            pack.commit()
        missing = LocalArtifactStore(store_root).missing(h.digest for h in hashed)
        print(json.dumps({"processes": run.processes, "digests": {h.rel: h.digest for h in hashed},
                          "missing": len(missing)}))
        """,
        str(tmp_path / "src"),
        str(tmp_path / "store"),
    )
    assert out["processes"] == 1
    assert out["digests"] == {rel: "sha256:" + hashlib.sha256(data).hexdigest() for rel, data in contents.items()}
    assert out["missing"] == 0


def test_forked_workers_hash_like_hashlib_and_their_packs_are_committed_with_the_parents(tmp_path: Path) -> None:
    contents = _tree(tmp_path / "src", 500)
    out = run_python(SCRIPT, str(tmp_path / "src"), str(tmp_path / "store"), "ok")
    assert out.get("error") is None, out
    assert out["processes"] == 3
    assert out["digests"] == {rel: "sha256:" + hashlib.sha256(data).hexdigest() for rel, data in contents.items()}
    assert out["read"] == 500
    assert out["stored"] == 450  # contents staged by two processes are counted once
    assert out["missing"] == 0  # every blob readable from the committed packs
    assert 1 <= out["packs"] <= 3  # one per process that staged anything (a slow starter may find the queue empty)
    assert out["leftovers"] == []


def test_a_parent_failure_while_workers_hash_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    _tree(tmp_path / "src", 500)
    out = run_python(SCRIPT, str(tmp_path / "src"), str(tmp_path / "store"), "fail-before-join")
    assert out["error"] == "RuntimeError: the parent failed while the workers hashed"
    assert out["missing"] == 450
    assert out["packs"] == 0
    assert out["leftovers"] == []  # the workers' pack files are removed with the parent's


def test_a_file_gone_before_it_is_read_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    _tree(tmp_path / "src", 500)
    out = run_python(SCRIPT, str(tmp_path / "src"), str(tmp_path / "store"), "remove-one")
    path = tmp_path / "src" / "d1" / "f00105.bin"
    assert out["error"] == f"FileChanged: {path}: removed while the snapshot read it; nothing was registered"
    assert out["packs"] == 0
    assert out["leftovers"] == []


def data_cli(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``mlops data ARGS --repo REPO`` as its own process (one thread: it may fork workers), checked to succeed."""
    command = [str(Path(sys.executable).with_name("mlops")), "data", *args, "--repo", str(repo)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.bin")}


def test_the_cli_hashes_with_the_processes_asked_for_and_gets_back_every_byte(
    example_repo: Path, tmp_path: Path
) -> None:
    contents = _tree(tmp_path / "src", 1200)
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_STORE"}
    snapshot = ["snapshot", str(tmp_path / "src"), "--owner", "o@example.com"]
    done = data_cli(example_repo, *snapshot, "--name", "many", "--jobs", "3", env=env)
    assert "hashed 1,200 files in 3 processes; stored 450 new blobs" in done.stdout
    data_cli(example_repo, "get", "many@1", str(tmp_path / "back"), env=env)
    assert files_under(tmp_path / "back") == contents

    serial = data_cli(example_repo, *snapshot, "--name", "alone", "--jobs", "1", env=env)
    assert " processes" not in serial.stdout

    def fingerprint(out: str) -> str:
        return next(line.split()[1] for line in out.splitlines() if line.startswith("fingerprint "))

    assert fingerprint(serial.stdout) == fingerprint(done.stdout)


def test_with_an_s3_store_workers_only_hash_and_the_command_uploads(example_repo: Path, tmp_path: Path) -> None:
    """A remote store takes no packs: the workers hash, the command uploads what the store lacks, once each."""
    contents = _tree(tmp_path / "src", 1200)
    with moto_s3_bucket("hashing") as endpoint:
        env = {**os.environ, "MLOPS_STORE": "s3://hashing/team", "MLOPS_S3_ENDPOINT_URL": endpoint}
        snapshot = ["snapshot", str(tmp_path / "src"), "--name", "remote", "--owner", "o@example.com", "--jobs", "2"]
        done = data_cli(example_repo, *snapshot, env=env)
        assert "hashed 1,200 files in 2 processes; stored 450 new blobs" in done.stdout
        data_cli(example_repo, "get", "remote@1", str(tmp_path / "back"), env=env)
    assert files_under(tmp_path / "back") == contents
