"""Promotion gates (pure): does a version meet what the target environment's policy demands?

Every criterion is judged on evidence gathered by the caller (git history,
recorded evaluations, reviews) and reported with that evidence, met or not, so
a refused promotion says exactly what is missing (UC-02 2a, 3a).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from mlops.manifests import AccessPolicy, Model, ModelVersion, PromotionPolicy, RiskPolicy
from mlops.manifests.policies import PromotionPolicySpec

_DURATION = re.compile(r"^(?P<n>[0-9]+)(?P<unit>m|h|d)$")


def parse_duration(text: str) -> dt.timedelta:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}")
    n = int(match["n"])
    return {"m": dt.timedelta(minutes=n), "h": dt.timedelta(hours=n), "d": dt.timedelta(days=n)}[match["unit"]]


@dataclass(frozen=True)
class Stint:
    """A period in which an environment pointed at a version (``until`` None: it still does)."""

    version: int
    since: dt.datetime
    until: dt.datetime | None
    commit: str


@dataclass(frozen=True)
class Approval:
    who: str
    source: str  # "github review" or "Approved-by trailer in <sha>"


@dataclass(frozen=True)
class GateEvidence:
    candidate: ModelVersion
    model: Model | None
    incumbent: ModelVersion | None
    previous_stints: list[Stint]  # of the candidate's model in the previous environment
    approvals: list[Approval]
    authors: list[str]
    now: dt.datetime
    access: list[AccessPolicy] = field(default_factory=list)
    risk: list[RiskPolicy] = field(default_factory=list)
    check_approvals: bool = True


@dataclass(frozen=True)
class Criterion:
    name: str
    met: bool
    evidence: str
    pending: bool = False  # cannot be met yet (approvals before review), not a failure of the version
    # "history", "metric", "comparison", "risk" or "approvals"; metric and risk criteria are also static
    # policies that `validate` checks on every run, so a change's gate does not report them twice.
    kind: str = "history"


@dataclass(frozen=True)
class GateResult:
    policy: str
    environment: str
    candidate: str
    criteria: list[Criterion]

    @property
    def passed(self) -> bool:
        return all(c.met for c in self.criteria)

    @property
    def unmet(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.met]


def evaluate_gate(policy: PromotionPolicy, evidence: GateEvidence) -> GateResult:
    spec = policy.spec
    criteria: list[Criterion] = []
    candidate = evidence.candidate
    if spec.previousEnvironment is not None:
        criteria.extend(_previous_environment(spec.previousEnvironment, spec.soak, candidate, evidence))
    for floor in spec.metrics:
        if floor.model is not None and floor.model != candidate.metadata.name:
            continue
        if floor.task is not None and (evidence.model is None or evidence.model.spec.task is not floor.task):
            continue
        criteria.append(_floor(floor.metric, floor.min, floor.max, candidate))
    if spec.comparison is not None:
        criteria.append(_comparison(spec, candidate, evidence.incumbent))
    if spec.maxRiskTier is not None and evidence.model is not None:
        tier = evidence.model.spec.riskTier
        criteria.append(
            Criterion(
                "risk tier",
                tier.rank <= spec.maxRiskTier.rank,
                f"{evidence.model.metadata.name} is {tier.value}; {spec.environment} accepts up to "
                f"{spec.maxRiskTier.value}",
                kind="risk",
            )
        )
    if evidence.check_approvals:
        criteria.append(_approvals(policy, evidence))
    return GateResult(policy.metadata.name, spec.environment, candidate.key, criteria)


def _previous_environment(
    previous: str, soak: str | None, candidate: ModelVersion, evidence: GateEvidence
) -> Iterable[Criterion]:
    mine = [s for s in evidence.previous_stints if s.version == candidate.spec.version]
    if not mine:
        yield Criterion(
            f"served in {previous} first",
            False,
            f"{candidate.key} has never been deployed in {previous} (git history of environments/{previous}.yaml)",
        )
        return
    latest = max(mine, key=lambda s: s.since)
    stay = (latest.until or evidence.now) - latest.since
    where = f"in {previous} since {latest.since:%Y-%m-%d %H:%M} UTC (commit {latest.commit[:8]})"
    if latest.until is not None:
        where += f" until {latest.until:%Y-%m-%d %H:%M} UTC"
    yield Criterion(f"served in {previous} first", True, f"{candidate.key} {where}")
    if soak is not None:
        needed = parse_duration(soak)
        yield Criterion(
            f"soak {soak} in {previous}",
            stay >= needed,
            f"{_human(stay)} in {previous}; the policy asks for {_human(needed)}",
        )


def _floor(metric: str, low: float | None, high: float | None, candidate: ModelVersion) -> Criterion:
    value = candidate.spec.metrics.get(metric)
    bounds = " and ".join(
        b for b in (f">= {low:g}" if low is not None else "", f"<= {high:g}" if high is not None else "") if b
    )
    if value is None:
        return Criterion(f"{metric} {bounds}", False, f"{candidate.key} has no recorded {metric}", kind="metric")
    ok = (low is None or value >= low) and (high is None or value <= high)
    return Criterion(f"{metric} {bounds}", ok, f"{candidate.key} has {metric} = {value:g}", kind="metric")


def _comparison(spec: PromotionPolicySpec, candidate: ModelVersion, incumbent: ModelVersion | None) -> Criterion:
    rule = spec.comparison
    assert rule is not None
    name = f"{rule.test} on {rule.metric} vs current"
    if incumbent is None:
        return Criterion(
            name, True, f"{spec.environment} serves no version of this model yet: nothing to compare", kind="comparison"
        )
    if incumbent.key == candidate.key:
        return Criterion(name, True, f"{candidate.key} is already the current version", kind="comparison")
    found = [e for e in candidate.spec.evaluations if e.against == incumbent.key and e.metric == rule.metric]
    if not found:
        return Criterion(
            name,
            False,
            f"no recorded comparison of {candidate.key} with {incumbent.key} on {rule.metric}; run "
            f"`mlops model compare {incumbent.key} {candidate.key} --data EVAL --label COL --record`",
            kind="comparison",
        )
    evaluation = found[-1]
    interval = (
        f"difference {evaluation.difference:+.4g} ({evaluation.confidence:.0%} CI {evaluation.ciLow:+.4g} to "
        f"{evaluation.ciHigh:+.4g}, {evaluation.rows} rows, {evaluation.test})"
    )
    # Gains are candidate - baseline for metrics where higher is better, baseline - candidate otherwise.
    sign = 1.0 if evaluation.higherIsBetter else -1.0
    worst_gain = min(sign * evaluation.ciLow, sign * evaluation.ciHigh)
    direction = "higher" if evaluation.higherIsBetter else "lower"
    if rule.test == "non-inferiority":
        ok = worst_gain > -rule.margin
        return Criterion(
            name,
            ok,
            f"{interval}; non-inferior ({direction} is better) needs the CI to exclude a loss of "
            f"{rule.margin:g} or more",
            kind="comparison",
        )
    p = evaluation.pValue
    ok = sign * evaluation.difference > 0 and p is not None and p < rule.alpha
    shown = "none" if p is None else f"{p:.3g}"
    return Criterion(
        name,
        ok,
        f"{interval}; p = {shown}, superiority ({direction} is better) needs p < {rule.alpha:g}",
        kind="comparison",
    )


def _approvals(policy: PromotionPolicy, evidence: GateEvidence) -> Criterion:
    rule = policy.spec.approvals
    needed = rule.count
    tier = evidence.model.spec.riskTier if evidence.model is not None else None
    for risk in evidence.risk:
        for requirement in risk.spec.tiers:
            if requirement.tier is tier:
                needed = max(needed, requirement.requiredApprovals)
    members: dict[str, set[str]] = {}
    for access in evidence.access:
        for role in access.spec.roles:
            for member in role.members:
                members.setdefault(member.lower(), set()).add(role.name)
    authors = {a.lower() for a in evidence.authors}
    counted: list[str] = []
    refused: list[str] = []
    for approval in evidence.approvals:
        who = approval.who.lower()
        if who in counted:
            continue
        if who in authors and not rule.authorMayApprove:
            refused.append(f"{approval.who} (an author of the change)")
            continue
        if rule.roles and not (members.get(who, set()) & set(rule.roles)):
            refused.append(f"{approval.who} (not in {', '.join(rule.roles)})")
            continue
        counted.append(who)
    name = f"{needed} approval{'s' if needed != 1 else ''}" + (f" from {', '.join(rule.roles)}" if rule.roles else "")
    detail = f"approved by {', '.join(counted) or 'nobody yet'}"
    if refused:
        detail += f"; not counted: {', '.join(refused)}"
    met = len(counted) >= needed
    return Criterion(name, met, detail, pending=not met and not evidence.approvals, kind="approvals")


def _human(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


def stints_from(pointers: Iterable[tuple[str, dt.datetime, int | None]]) -> list[Stint]:
    """Turn (commit, time, version) snapshots, oldest first, into periods of service per version."""
    out: list[Stint] = []
    current: Stint | None = None
    for commit, time, version in pointers:
        if current is not None and current.version == version:
            continue
        if current is not None:
            out.append(Stint(current.version, current.since, time, current.commit))
        current = Stint(version, time, None, commit) if version is not None else None
    if current is not None:
        out.append(current)
    return out
