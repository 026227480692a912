"""Pipeline runs as Ray jobs: submitted through the dashboard's job API, so a run outlives the CLI that started it."""

from __future__ import annotations

import contextlib
import logging
import shlex
from collections.abc import Iterator
from typing import Any

from mlops.appliers.cluster import ClusterTarget, ClusterUnavailable

_FINISHED = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


def _client(target: ClusterTarget) -> Any:
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(target.dashboard_url, headers=target.auth_headers())
    except Exception as exc:
        raise ClusterUnavailable(
            f"cannot reach the Ray job API at {target.dashboard_url}: {str(exc).splitlines()[0] if str(exc) else exc}"
        ) from None


def submit_job(target: ClusterTarget, entrypoint: list[str], env: dict[str, str], submission_id: str) -> str:
    """Submit ``entrypoint`` as a job on the head node; returns the job's submission id."""
    client = _client(target)
    try:
        return str(
            client.submit_job(
                entrypoint=shlex.join(entrypoint),
                submission_id=submission_id,
                runtime_env={"env_vars": {**env, **target.ray_environment()}},
                entrypoint_num_cpus=0,
            )
        )
    except Exception as exc:
        raise ClusterUnavailable(f"the cluster at {target.label} refused the pipeline job: {exc}") from None


def job_finished(target: ClusterTarget, submission_id: str) -> bool:
    try:
        status = _client(target).get_job_status(submission_id)
    except Exception:  # cannot tell: keep following the run's record
        return False
    return str(getattr(status, "value", status)) in _FINISHED


def job_logs(target: ClusterTarget, submission_id: str) -> str:
    try:
        return str(_client(target).get_job_logs(submission_id))
    except Exception as exc:
        return f"(job logs unavailable: {exc})"


@contextlib.contextmanager
def inside_job() -> Iterator[None]:
    """Connected to the cluster that runs this process as a job (Ray sets the address for it)."""
    import ray

    ray.init(address="auto", logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
