"""Register a 1 GB artifact and compare its throughput with hashlib's sha256 over the same file, in one run.

    .venv/bin/python benchmarks/register_1g.py [--size-mb 1024] [--keep DIR]

The artifact is a safetensors file (an 8-byte header length, a JSON header, raw tensor bytes), so format
detection reads only its head, as it would for a real checkpoint. `mlops model register` streams the file
once: hashing and copying into the content-addressed store happen in the same pass, then the manifest is
written and committed. Goal: register time within 1.5x of hashing alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1024 * 1024


def make_safetensors(path: Path, size_mb: int) -> None:
    payload = size_mb * CHUNK
    header = json.dumps({"weight": {"dtype": "F32", "shape": [payload // 4], "data_offsets": [0, payload]}}).encode()
    block = os.urandom(CHUNK)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(header)))
        out.write(header)
        for _ in range(size_mb):
            out.write(block)


def hash_file(path: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return time.perf_counter() - start


def mlops_command() -> list[str]:
    script = Path(sys.executable).with_name("mlops")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlops.cli.main"]


def register(repo: Path, artifact: Path, version: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [*mlops_command(), "model", "register", str(artifact), "--name", "big", "--version", str(version),
         "--model-class", "models.big:Net", "--repo", str(repo)],
        check=True, capture_output=True, text=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="Work in this folder and leave it behind.")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="mlops-bench-register-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        repo = work / "state"
        subprocess.run([*mlops_command(), "init", str(repo)], check=True, capture_output=True)
        subprocess.run([*mlops_command(), "model", "register", "--help"], check=True, capture_output=True)
        model = repo / "registry" / "models" / "big" / "model.yaml"
        model.parent.mkdir(parents=True)
        model.write_text(
            "apiVersion: mlops/v1\nkind: Model\nmetadata:\n  name: big\nspec:\n  owner: bench@example.com\n"
            "  task: generation\n  flavor: torch\n"
        )
        print(f"writing a {args.size_mb:,} MB safetensors artifact", flush=True)
        artifacts = []
        for i in range(args.repeat):  # distinct bytes each time: a stored blob would make registering free
            artifact = work / f"weights-{i}.safetensors"
            make_safetensors(artifact, args.size_mb)
            artifacts.append(artifact)
        hashes, registers = [], []
        for i, artifact in enumerate(artifacts, 1):
            hashes.append(hash_file(artifact))
            registers.append(register(repo, artifact, i))
            print(f"run {i}: sha256 {hashes[-1]:.2f} s, register {registers[-1]:.2f} s", flush=True)
        hashed, registered = statistics.median(hashes), statistics.median(registers)
        mb = args.size_mb
        print()
        print(f"{'measurement':<34}{'median':>10}{'MB/s':>10}")
        print(f"{'hashlib sha256 of the file':<34}{hashed:>9.2f}s{mb / hashed:>10.0f}")
        print(f"{'mlops model register':<34}{registered:>9.2f}s{mb / registered:>10.0f}")
        ratio = registered / hashed
        print(f"\nregister / sha256 = {ratio:.2f}   goal <= 1.5   {'PASS' if ratio <= 1.5 else 'MISS'}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
