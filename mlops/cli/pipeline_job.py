"""Entry point of a pipeline run's Ray job: ``python -m mlops.cli.pipeline_job ROOT RUN_ID [--push] [--pull-request]``.

:func:`mlops.services.pipelines.start_run` submits it; what it does is :func:`mlops.services.pipeline_job.run_job`.
Exit 0 when the run succeeded, 1 when it failed or could not start, 2 for a malformed command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlops.errors import MlopsError


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        sys.stderr.write("usage: python -m mlops.cli.pipeline_job ROOT RUN_ID [--push] [--pull-request]\n")
        return 2
    from mlops.appliers.pipeline_jobs import inside_job
    from mlops.planner.pipeline_state import RUN_SUCCEEDED
    from mlops.services.pipeline_job import run_job

    root, run_id, flags = Path(args[0]), args[1], set(args[2:])
    options = {"push": "--push" in flags, "pull_request": "--pull-request" in flags}
    try:
        with inside_job():
            state = run_job(root, run_id, options)
    except MlopsError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return 1
    sys.stdout.write(f"pipeline run {run_id}: {state.status}\n")
    return 0 if state.status == RUN_SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
