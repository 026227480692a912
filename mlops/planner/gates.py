"""Analysis gates of a rollout step (pure): the router's counters for the new version in, a verdict out.

``pass`` lets the rollout go on, ``fail`` routes all traffic back at once, ``wait`` means not enough
requests were seen to judge (the rollout keeps the current weights until there are, or until someone
resumes or aborts it). During a step's pause a crossed threshold fails at once; the other verdicts are
given at the end of the pause.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MIN_REQUESTS = 20


@dataclass(frozen=True)
class GateVerdict:
    state: str  # pass | fail | wait
    reasons: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "; ".join(self.reasons)


def judge_step(analysis: Mapping[str, Any] | None, candidate: Mapping[str, Any] | None, final: bool) -> GateVerdict:
    if not analysis:
        return GateVerdict("pass")
    stats = candidate or {}
    requests = int(stats.get("requests", 0))
    minimum = int(analysis.get("minRequests", DEFAULT_MIN_REQUESTS))
    failures = []
    if requests >= max(1, minimum):
        max_error_rate = analysis.get("maxErrorRate")
        errors = int(stats.get("errors", 0))
        if max_error_rate is not None and errors / requests > float(max_error_rate):
            failures.append(
                f"error rate {errors / requests:.3f} > {float(max_error_rate):g} ({errors} of {requests} requests)"
            )
        max_p99 = analysis.get("maxP99LatencyMs")
        p99 = stats.get("p99_ms")
        if max_p99 is not None and p99 is not None and float(p99) > float(max_p99):
            failures.append(f"p99 latency {float(p99):.1f} ms > {float(max_p99):g} ms over {requests} requests")
    min_agreement = analysis.get("minAgreement")
    compared = int(stats.get("compared", 0))
    if min_agreement is not None and compared >= max(1, minimum):
        agreement = int(stats.get("agreed", 0)) / compared
        if agreement < float(min_agreement):
            failures.append(
                f"agreement with the current version {agreement:.3f} < {float(min_agreement):g} "
                f"({compared} requests compared)"
            )
    if failures:
        return GateVerdict("fail", tuple(failures))
    if not final:
        return GateVerdict("wait")
    waiting = []
    if requests < minimum:
        waiting.append(f"{requests} of {minimum} requests seen")
    if min_agreement is not None and compared < minimum:
        waiting.append(f"{compared} of {minimum} requests compared with the current version")
    if waiting:
        return GateVerdict("wait", tuple(waiting))
    passed = [f"{requests} requests", f"error rate {int(stats.get('errors', 0)) / requests:.3f}"]
    if stats.get("p99_ms") is not None:
        passed.append(f"p99 {float(stats['p99_ms']):.1f} ms")
    if min_agreement is not None:
        passed.append(f"agreement {int(stats.get('agreed', 0)) / compared:.3f}")
    return GateVerdict("pass", tuple(passed))
