"""With `sagepilot:analysis` `off` (alarm-only), a baked step below 100% compares the two variants' error rates
(4xx + 5xx over invocations): a candidate that refuses what the live version serves (4xx, which its alarms do
not watch) is rolled back and Rejected, not promoted on the bake (domain.canary_gate.compare_errors, how a
canary acts on it, and when the service reads it: services.canary_analysis.compare_step)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from sagepilot.adapters.alarms import VariantAlarms
from sagepilot.domain import rollout as plan
from sagepilot.domain.canary_gate import (
    MIN_COMPARED_ERRORS,
    CustomMetric,
    ErrorComparison,
    GateSettings,
    StepEvidence,
    VariantCounts,
    compare_errors,
)
from sagepilot.domain.deployment import AlarmThresholds, Autoscaling, Deployment
from sagepilot.domain.rollout import Phase, RolloutPolicy, Strategy
from sagepilot.services.canary_analysis import compare_step
from unit.rollout_world import ENDPOINT, GROUP, World

MARGIN = 0.005  # the gate's default error margin


def step(stable: tuple[int, int], candidate: tuple[int, int]) -> StepEvidence:
    """(invocations, errors) of each variant in the step."""
    return StepEvidence(
        VariantCounts(stable[0], stable[1], 0, stable[0]),
        VariantCounts(candidate[0], candidate[1], 0, candidate[0]),
        0,
        600,
    )


# ------------------------------------------------------------------------------------------- the pure rule
def test_a_candidate_refusing_what_stable_serves_is_worse() -> None:
    compared = compare_errors(step((7_200, 0), (800, 800)), MARGIN)
    assert compared.worse
    said = compared.describe("v1", "v2")
    assert said.startswith("4xx+5xx: v2 800/800 = 100.00%, v1 0/7200 = 0.00%")
    assert "margin 0.50%" in said and "not the sequential test" in said


def test_callers_mistakes_hitting_both_variants_alike_are_not_worse() -> None:
    # A fifth of the callers send 4 features to models expecting 5: both variants refuse them alike.
    assert not compare_errors(step((7_200, 1_440), (800, 160)), MARGIN).worse
    # ... and a little noise on top stays within the margin.
    assert not compare_errors(step((7_200, 1_440), (800, 163)), MARGIN).worse
    # Over the margin is worse, whatever stable's own rate.
    assert compare_errors(step((7_200, 1_440), (800, 170)), MARGIN).worse


def test_the_margin_is_the_groups() -> None:
    evidence = step((10_000, 100), (1_000, 25))  # 2.5% against 1%
    assert compare_errors(evidence, MARGIN).worse
    assert not compare_errors(evidence, 0.02).worse  # a group allowing 2 points more
    assert not compare_errors(step((10_000, 100), (1_000, 15)), MARGIN).worse  # exactly at the margin: not over it


def test_too_few_of_the_candidates_errors_are_no_verdict() -> None:
    few = MIN_COMPARED_ERRORS - 1
    assert not compare_errors(step((180, 0), (20, few)), MARGIN).worse  # one stray burst at low traffic
    assert compare_errors(step((180, 0), (20, MIN_COMPARED_ERRORS)), MARGIN).worse
    assert not compare_errors(step((0, 0), (800, 800)), MARGIN).worse  # stable served nothing: nothing to compare
    assert not compare_errors(step((7_200, 0), (0, 0)), MARGIN).worse


def test_counts_published_apart_are_clamped_and_bad_settings_refused() -> None:
    compared = compare_errors(step((7_200, 0), (100, 103)), MARGIN)  # minutes published a request apart
    assert compared.worse and ErrorComparison.rate(compared.evidence.candidate) == 1.0
    with pytest.raises(ValueError, match="error margin must be in"):
        compare_errors(step((1, 0), (1, 1)), 0)
    with pytest.raises(ValueError, match="minimum of errors"):
        compare_errors(step((1, 0), (1, 1)), MARGIN, min_errors=0)


# ----------------------------------------------------------------------------------- a canary acting on it
@dataclass
class AlarmOnlyWorld(World):
    """The rollout world with the gate off, whose variants answer errors (4xx or 5xx) at set rates; once a step
    below 100% has baked, it is given the comparison of the two variants' error rates (as the service does)."""

    error_rate: dict[str, float] = field(default_factory=dict)
    compared: list[ErrorComparison] = field(default_factory=list)

    def decide(self) -> plan.Decision:
        state, comparison = self.state, None
        if (
            state
            and state.candidate
            and state.stable
            and ((state.phase is Phase.CANARY and self.policy.steps[state.step] < 100) or state.phase is Phase.SHADOW)
            and self.now >= state.step_started_at + self.policy.bake_seconds
        ):
            since = state.step_started_at

            def counts(variant: str) -> VariantCounts:
                n = self.invocations(variant, since)
                return VariantCounts(n, round(n * self.error_rate.get(variant, 0.0)), 0, n)

            evidence = StepEvidence(counts(state.stable.variant), counts(state.candidate.variant), since, self.now)
            comparison = compare_errors(evidence, self.policy.gate.error_margin)
            self.compared.append(comparison)
        return plan.decide(
            state,
            self.endpoint.view(),
            self.target,
            (),
            self.policy,
            self.now,
            endpoint=ENDPOINT,
            group=GROUP,
            deploy=self.deploy,
            invocations=self.evidence(),
            live_approved=self.live_approved(),
            comparison=comparison,
        )


def alarm_only_world(error_rate: dict[str, float], strategy: Strategy = Strategy.AB) -> AlarmOnlyWorld:
    world = AlarmOnlyWorld(
        policy=RolloutPolicy(
            strategy, (10, 50, 100), 600, min_invocations=100, gate=GateSettings(enabled=False), shadow_percent=50
        ),
        rate=10.0,
    )
    world.v2_under_test()
    world.error_rate = error_rate
    return world


def test_a_refusing_candidate_is_rolled_back_and_rejected_once_its_step_has_baked() -> None:
    world = alarm_only_world({"v2": 1.0})
    for _ in range(9):
        assert world.tick().is_wait  # baking: nothing is compared before the bake
    assert not world.compared
    decision = world.tick()
    assert decision.state is not None and decision.state.phase is Phase.ROLLING_BACK
    assert decision.state.cause == "compared" and decision.state.reject_candidate
    reason = decision.state.reason
    assert reason.startswith("error rates compared: v2 is worse than v1 on errors")
    assert "v2 600/600 = 100.00%, v1 0/5400 = 0.00%" in reason and "not the sequential test" in reason
    assert decision.state.history[-1].what == f"rolling back: {reason}"
    assert world.notifications[-1] == f"ROLLING BACK: {ENDPOINT} v2"
    world.run()
    assert world.endpoint.variants == {"v1": 1.0} and reason in world.rejected[2]


def test_callers_mistakes_on_both_variants_do_not_stop_the_canary() -> None:
    world = alarm_only_world({"v1": 0.2, "v2": 0.2})
    for _ in range(10):
        world.tick()
    assert world.endpoint.shares() == {"v1": 0.5, "v2": 0.5}  # moved on after the bake, as alarm-only does
    assert world.compared and not any(c.worse for c in world.compared)


def test_a_shadow_test_refusing_the_copies_is_rolled_back_once_baked_with_no_user_impact() -> None:
    world = alarm_only_world({"v2": 1.0}, Strategy.SHADOW)
    assert world.state and world.state.phase is Phase.SHADOW and world.endpoint.shadows == {"v2": 0.5}
    for _ in range(9):
        assert world.tick().is_wait
    decision = world.tick()
    assert decision.state is not None and decision.state.phase is Phase.ROLLING_BACK
    assert decision.state.reason.startswith("error rates compared: v2 is worse than v1 on errors")
    world.run()
    assert world.endpoint.variants == {"v1": 1.0} and world.endpoint.shadows == {} and 2 in world.rejected


def test_an_operator_promote_overrides_the_comparison() -> None:
    world = alarm_only_world({"v2": 1.0})
    for _ in range(9):
        world.tick()
    world.state = world.state and world.state.evolve(world.now, "promote", command=plan.Command.PROMOTE)
    decision = world.tick()
    assert decision.state and decision.state.phase is Phase.PROMOTING


# ------------------------------------------------------------------------ when the service reads the counts
class CountingAlarms:
    """VariantAlarms' step_counts, counted: the candidate refused everything in the step."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float, float, tuple[CustomMetric, ...]]] = []

    def step_counts(
        self,
        endpoint: str,
        stable: str,
        candidate: str,
        start: float,
        end: float,
        objective_ms: int,
        custom: tuple[CustomMetric, ...] = (),
    ) -> StepEvidence:
        self.calls.append((stable, candidate, start, end, custom))
        return step((900, 0), (100, 100))


def deployment(**gate: Any) -> Deployment:
    return Deployment(
        enabled=True,
        endpoint=ENDPOINT,
        rollout=RolloutPolicy(Strategy.AB, (10, 50, 100), 600, gate=GateSettings(**gate)),
        instance_type="ml.m5.large",
        instance_count=1,
        autoscaling=Autoscaling(1, 10, 1000.0, 300, 60),
        alarms=AlarmThresholds(5, 2000, 60, 10),
    )


def test_the_counts_are_read_only_once_baked_below_100_percent_with_the_gate_off() -> None:
    world = alarm_only_world({})
    state = world.state
    assert state is not None and state.phase is Phase.CANARY
    alarms = CountingAlarms()
    read = cast(VariantAlarms, alarms)
    off = deployment(enabled=False, custom=(CustomMetric("Shop", "Conversion", True, 0.01),))
    started = state.step_started_at
    assert compare_step(read, state, off, started + 599) is None  # baking: not read
    assert compare_step(read, state, deployment(), started + 600) is None  # the gate on: judge_step reads them
    last = dataclasses.replace(state, step=2)
    assert compare_step(read, last, off, started + 600) is None  # 100%: nothing to compare against
    assert alarms.calls == []
    compared = compare_step(read, state, off, started + 600)
    assert compared is not None and compared.worse and compared.margin == off.rollout.gate.error_margin
    assert alarms.calls == [("v1", "v2", started, started + 600, ())]  # errors only: no user metric is read
