"""What an endpoint alarm means, and what to do about it: health checks and scale-in, decided without I/O.

Every live variant of a managed endpoint has three alarms, named `<endpoint>-<variant>-<kind>`:

    5xx          Invocation5XXErrors (Sum per minute) at or above the group's threshold
    latency      ModelLatency p99 above the group's threshold for two minutes
    low-traffic  Invocations (Sum per 5 minutes) below the group's threshold for its idle window

A candidate's 5xx / latency alarm during a canary belongs to the rollout (it rolls back). Otherwise
5xx / latency in ALARM open an incident: a health check of the endpoint, recorded and notified with
what was found and what to do; their return to OK closes it. low-traffic in ALARM scales the variant in
to its autoscaling minimum (the seed's failure case: target tracking's scale-in cooldown keeps an idle
endpoint at its peak size), never below the registered minimum, never during a rollout or while the
endpoint is updating. The alarm's *current* state is what counts: a late or duplicated ALARM event for
an alarm that is OK again does nothing.

Idle means `IdleMinutes` of measured low traffic on a variant that has served alone at least that long.
The low-traffic alarm counts missing data as no traffic, so its first evaluation after a variant goes
into service looks back at minutes when the variant did not serve yet (and goes to ALARM at once): an
ALARM whose evaluated range (the start CloudWatch records in the alarm's StateReasonData) began before
the variant went into service is not idleness yet (NOT_YET); the service resets the alarm so that
CloudWatch judges it again on a range that lies within the variant's service.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sagepilot.domain.names import AlarmKind as AlarmKind
from sagepilot.domain.rollout import EndpointView, Phase, RolloutState


@dataclass(frozen=True)
class AlarmRef:
    name: str
    variant: str
    kind: AlarmKind


def parse_alarm_name(endpoint: str, name: str) -> AlarmRef | None:
    """`<endpoint>-<variant>-<kind>` -> its parts; None for an alarm that is not one of ours."""
    if not name.startswith(endpoint + "-"):
        return None
    rest = name[len(endpoint) + 1 :]
    for kind in AlarmKind:
        if rest.endswith("-" + kind.value):
            variant = rest[: -len(kind.value) - 1]
            if variant.startswith("v") and variant[1:].isdigit():
                return AlarmRef(name, variant, kind)
    return None


class Verdict(StrEnum):
    ROLLOUT = "rollout"  # the candidate's alarm: the rollout's reconcile handles it
    INCIDENT = "incident"
    RECOVERED = "recovered"
    SCALE_IN = "scale-in"
    NOT_YET = "not-yet"  # low traffic measured over a range that began before the variant served
    NOTHING = "nothing"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    summary: str
    findings: tuple[str, ...] = ()
    what_to_do: str = ""
    scale_to: int | None = None
    saved_instances: int = 0


_ADVICE = {
    AlarmKind.ERRORS: (
        "Look at the container's logs in CloudWatch Logs group /aws/sagemaker/Endpoints/{endpoint} for the "
        "errors; if the live version is at fault, reject it in the registry to revert to the previous Approved one."
    ),
    AlarmKind.LATENCY: (
        "Check CPUUtilization / MemoryUtilization of the variant in AWS/SageMaker; if the instances are saturated "
        "raise the autoscaling maximum (tag sagepilot:autoscaling-max) or use a larger instance type "
        "(sagepilot:instance-type) with the next approval."
    ),
}


def _findings(view: EndpointView | None, variant: str, min_capacity: int | None) -> list[str]:
    if view is None:
        return ["the endpoint does not exist"]
    found = [f"endpoint status {view.status}"]
    if view.failure_reason:
        found.append(f"SageMaker's FailureReason: {view.failure_reason}")
    if variant not in view.names:
        found.append(f"variant {variant} is no longer on the endpoint")
    else:
        share = view.shares().get(variant, 0.0)
        instances = view.instances(variant)
        found.append(f"variant {variant} takes {share:.0%} of the traffic on {instances} instance(s)")
        if min_capacity is not None:
            found.append(f"autoscaling minimum {min_capacity}")
    return found


def judge(
    alarm: AlarmRef,
    alarm_state: str,
    state: RolloutState,
    view: EndpointView | None,
    min_capacity: int | None,
    configured_min: int,
    open_incident: bool,
    *,
    evaluated_from: float | None = None,
) -> Judgement:
    """The verdict on one alarm of a managed endpoint, from the alarm's state *now*.

    `min_capacity`: the registered scalable target's minimum (None if not registered); `configured_min`:
    the group's autoscaling minimum, used when nothing is registered; `open_incident`: whether an
    incident for this alarm is open (so that OK closes it, once); `evaluated_from`: the start (epoch
    seconds) of the range the alarm's last evaluation looked at (None: not recorded, e.g. set by hand)."""
    endpoint = state.endpoint
    if alarm.kind in (AlarmKind.ERRORS, AlarmKind.LATENCY):
        if state.candidate and alarm.variant == state.candidate.variant:
            # In any phase of a rollout (canary, rolling back, promoting) the candidate's alarms are its own.
            return Judgement(Verdict.ROLLOUT, f"{alarm.name} belongs to the rollout of {alarm.variant}")
        if alarm_state == "OK":
            if not open_incident:
                return Judgement(Verdict.NOTHING, f"{alarm.name} is OK; no incident open")
            return Judgement(Verdict.RECOVERED, f"{alarm.name} is OK again: {endpoint} {alarm.variant} recovered")
        if alarm_state != "ALARM":
            return Judgement(Verdict.NOTHING, f"{alarm.name} is {alarm_state}: nothing to judge yet")
        if open_incident:
            return Judgement(Verdict.NOTHING, f"the incident for {alarm.name} is already open")
        findings = _findings(view, alarm.variant, min_capacity)
        what = _ADVICE[alarm.kind].format(endpoint=endpoint)
        if view is not None and view.status == "Failed":
            what = (
                f"The endpoint is Failed ({view.failure_reason or 'no reason given'}): it serves nothing. Approve a "
                "version to replace it, or delete it."
            )
        kind = "server errors" if alarm.kind is AlarmKind.ERRORS else "high latency"
        return Judgement(Verdict.INCIDENT, f"{kind} on {endpoint} {alarm.variant}", tuple(findings), what)
    # Low traffic: scale in.
    if alarm_state != "ALARM":
        return Judgement(Verdict.NOTHING, f"{alarm.name} is {alarm_state}: traffic is back or unknown")
    if state.phase is not Phase.STABLE:
        return Judgement(Verdict.NOTHING, f"no scale-in during a rollout ({state.phase.value})")
    if view is None or view.status != "InService":
        status = view.status if view else "missing"
        return Judgement(Verdict.NOTHING, f"no scale-in while the endpoint is {status}; the next reconcile retries")
    if alarm.variant not in view.names:
        return Judgement(Verdict.NOTHING, f"variant {alarm.variant} is no longer on the endpoint")
    if evaluated_from is not None and evaluated_from < state.serving_since:
        served = evaluated_from - state.serving_since
        return Judgement(
            Verdict.NOT_YET,
            f"{alarm.name} judged a range starting {-served:.0f} s before {alarm.variant} went into service: "
            "not idle yet (idle is low traffic measured while the variant serves)",
        )
    floor = min_capacity if min_capacity is not None else configured_min
    current = view.instances(alarm.variant) or 0
    if current <= floor:
        return Judgement(Verdict.NOTHING, f"{alarm.variant} already runs {current} instance(s), its minimum {floor}")
    return Judgement(
        Verdict.SCALE_IN,
        f"{endpoint} {alarm.variant} idle: {current} -> {floor} instance(s)",
        (f"{current} instance(s) running", f"autoscaling minimum {floor}"),
        scale_to=floor,
        saved_instances=current - floor,
    )
