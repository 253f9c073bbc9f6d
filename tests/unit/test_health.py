"""What each endpoint alarm means: rollout, incident, recovery, scale-in, or nothing."""

from __future__ import annotations

import pytest

from sagepilot.domain.health import AlarmKind, AlarmRef, Verdict, judge, parse_alarm_name
from sagepilot.domain.rollout import EndpointView, Phase, Release, RolloutState, VariantView

EP = "sagepilot-churn"


def state(phase: Phase = Phase.STABLE, candidate: int | None = None) -> RolloutState:
    return RolloutState(
        endpoint=EP,
        group="churn",
        phase=phase,
        stable=Release(1, "arn:1"),
        candidate=Release(candidate, f"arn:{candidate}") if candidate else None,
    )


def view(
    instances: int = 4, status: str = "InService", variants: tuple[str, ...] = ("v1",), reason: str = ""
) -> EndpointView:
    return EndpointView(status, "cfg", tuple(VariantView(v, 1.0, instances) for v in variants), failure_reason=reason)


def ref(kind: AlarmKind, variant: str = "v1") -> AlarmRef:
    return AlarmRef(f"{EP}-{variant}-{kind.value}", variant, kind)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (f"{EP}-v1-5xx", ("v1", AlarmKind.ERRORS)),
        (f"{EP}-v12-latency", ("v12", AlarmKind.LATENCY)),
        (f"{EP}-v3-low-traffic", ("v3", AlarmKind.LOW_TRAFFIC)),
        (f"{EP}-eu-v3-5xx", None),  # another endpoint whose name starts like ours
        (f"{EP}-v3-cpu", None),
        ("TargetTracking-endpoint/sagepilot-churn/variant/v1-AlarmHigh-1", None),
        (f"{EP}-x1-5xx", None),
    ],
)
def test_alarm_names_are_parsed_strictly(name, expected):
    parsed = parse_alarm_name(EP, name)
    assert (parsed.variant, parsed.kind) == expected if expected else parsed is None


@pytest.mark.parametrize("phase", [Phase.CANARY, Phase.ROLLING_BACK, Phase.PROMOTING, Phase.NATIVE])
def test_a_candidate_alarm_belongs_to_the_rollout_in_every_phase_of_it(phase):
    verdict = judge(ref(AlarmKind.ERRORS, "v2"), "ALARM", state(phase, 2), view(variants=("v1", "v2")), 1, 1, False)
    assert verdict.verdict is Verdict.ROLLOUT


@pytest.mark.parametrize("kind", [AlarmKind.ERRORS, AlarmKind.LATENCY])
def test_an_alarm_on_a_live_variant_opens_an_incident_with_findings_and_advice(kind):
    verdict = judge(ref(kind), "ALARM", state(), view(instances=2), 1, 1, False)
    assert verdict.verdict is Verdict.INCIDENT
    assert any("2 instance(s)" in f for f in verdict.findings)
    assert verdict.what_to_do


def test_a_failed_endpoint_is_said_plainly_with_sagemakers_reason():
    verdict = judge(
        ref(AlarmKind.ERRORS), "ALARM", state(), view(status="Failed", reason="ping timed out"), None, 1, False
    )
    assert verdict.verdict is Verdict.INCIDENT
    assert "Failed" in verdict.what_to_do and "ping timed out" in verdict.what_to_do


def test_ok_closes_an_open_incident_once():
    assert judge(ref(AlarmKind.ERRORS), "OK", state(), view(), 1, 1, True).verdict is Verdict.RECOVERED
    assert judge(ref(AlarmKind.ERRORS), "OK", state(), view(), 1, 1, False).verdict is Verdict.NOTHING


def test_a_repeated_alarm_does_not_open_a_second_incident():
    assert judge(ref(AlarmKind.ERRORS), "ALARM", state(), view(), 1, 1, True).verdict is Verdict.NOTHING


@pytest.mark.parametrize("alarm_state", ["INSUFFICIENT_DATA", "OK"])
def test_no_data_or_ok_is_nothing_to_act_on(alarm_state):
    assert judge(ref(AlarmKind.LATENCY), alarm_state, state(), view(), 1, 1, False).verdict is Verdict.NOTHING
    assert judge(ref(AlarmKind.LOW_TRAFFIC), alarm_state, state(), view(), 1, 1, False).verdict is Verdict.NOTHING


def test_low_traffic_scales_in_to_the_registered_minimum_and_counts_the_saving():
    verdict = judge(ref(AlarmKind.LOW_TRAFFIC), "ALARM", state(), view(instances=6), 2, 1, False)
    assert verdict.verdict is Verdict.SCALE_IN and verdict.scale_to == 2 and verdict.saved_instances == 4


def test_without_a_registered_target_the_configured_minimum_is_the_floor():
    verdict = judge(ref(AlarmKind.LOW_TRAFFIC), "ALARM", state(), view(instances=3), None, 1, False)
    assert verdict.scale_to == 1


@pytest.mark.parametrize(
    ("st", "vw", "minimum"),
    [
        (state(), view(instances=2), 2),  # already at the minimum
        (state(), view(instances=1), 2),  # below it (never "scale in" upwards)
        (state(Phase.CANARY, 2), view(instances=5, variants=("v1", "v2")), 1),  # during a rollout
        (state(), view(instances=5, status="Updating"), 1),  # while updating
        (state(), None, 1),  # no endpoint
        (state(), view(instances=5, variants=("v2",)), 1),  # the variant is gone
    ],
)
def test_low_traffic_never_scales_in_when_it_must_not(st, vw, minimum):
    assert judge(ref(AlarmKind.LOW_TRAFFIC), "ALARM", st, vw, minimum, 1, False).verdict is Verdict.NOTHING


@pytest.mark.parametrize(
    ("evaluated_from", "expected"),
    [
        (9_000.0, Verdict.NOT_YET),  # the range began before v1 served (a new endpoint's first evaluation)
        (10_000.0, Verdict.SCALE_IN),  # measured entirely while v1 served
        (13_600.0, Verdict.SCALE_IN),
        (None, Verdict.SCALE_IN),  # no evaluation record (set by hand): taken as it is
    ],
)
def test_low_traffic_is_idle_only_when_measured_while_the_variant_served(evaluated_from, expected):
    serving = state().evolve(0, serving_since=10_000.0)
    verdict = judge(
        ref(AlarmKind.LOW_TRAFFIC), "ALARM", serving, view(instances=10), 1, 1, False, evaluated_from=evaluated_from
    )
    assert verdict.verdict is expected
