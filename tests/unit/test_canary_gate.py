"""The `ab` canary's statistical gate (domain.canary_gate) and how a canary step acts on its verdict."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import pytest

from sagepilot.domain import rollout as plan
from sagepilot.domain.canary_gate import (
    ERRORS,
    LATENCY,
    GateSettings,
    Inconclusive,
    StepEvidence,
    VariantCounts,
    assess,
    gated_steps,
)
from sagepilot.domain.deployment import InvalidGroupSettings, _gate
from sagepilot.domain.rollout import Phase, RolloutPolicy, Strategy
from sagepilot.domain.sequential import Verdict
from unit.rollout_world import ENDPOINT, GROUP, World


def evidence(stable: tuple[int, int, int], candidate: tuple[int, int, int]) -> StepEvidence:
    return StepEvidence(VariantCounts(*stable, stable[0]), VariantCounts(*candidate, candidate[0]), 0.0, 60.0)


def test_assess_names_the_worse_metric_and_splits_the_level() -> None:
    a = assess(evidence((50_000, 500, 2_500), (5_000, 50, 600)), GateSettings(), (10, 50, 100))
    assert a.verdict is Verdict.WORSE
    worst = a.worst()
    assert worst is not None and worst.metric == LATENCY
    assert a.alpha == pytest.approx(0.05 / (2 * 2))  # two metrics, two steps with stable serving
    assert gated_steps((10, 50, 100)) == 2 and gated_steps((100,)) == 0


def test_assess_not_worse_needs_every_metric() -> None:
    same = assess(evidence((90_000, 900, 4_500), (10_000, 100, 500)), GateSettings(), (10, 100))
    assert same.verdict is Verdict.NOT_WORSE
    few = assess(evidence((90_000, 900, 4_500), (50, 0, 0)), GateSettings(), (10, 100))
    assert few.verdict is Verdict.CONTINUE  # under the minimum of trials: nothing is judged
    assert {j.metric for j in few.judgements} == {ERRORS, LATENCY}
    no_latency = StepEvidence(VariantCounts(90_000, 900, 0, 0), VariantCounts(10_000, 100, 0, 0), 0.0, 60.0)
    assert assess(no_latency, GateSettings(), (10, 100)).verdict is Verdict.CONTINUE  # latency unknown


def test_gate_tags_are_read_and_checked() -> None:
    gate = _gate(
        {
            "sagepilot:analysis": "off",
            "sagepilot:confidence": "0.99",
            "sagepilot:error-margin": "0.01",
            "sagepilot:latency-objective-ms": "250",
            "sagepilot:on-inconclusive": "Rollback",
        },
        GateSettings(),
    )
    assert gate == GateSettings(False, 0.99, 0.01, 0.02, 250, Inconclusive.ROLLBACK)
    assert _gate({}, GateSettings()) == GateSettings()
    with pytest.raises(InvalidGroupSettings, match="on-inconclusive must be one of hold, rollback, promote"):
        _gate({"sagepilot:on-inconclusive": "maybe"}, GateSettings())
    with pytest.raises(InvalidGroupSettings, match="confidence must be between"):
        _gate({"sagepilot:confidence": "1.5"}, GateSettings())
    with pytest.raises(InvalidGroupSettings, match="analysis must be sequential or off"):
        _gate({"sagepilot:analysis": "bayes"}, GateSettings())


@dataclass
class GateWorld(World):
    """The rollout world whose variants fail / miss the latency objective at set rates; every canary step
    below 100% is judged by the gate on the counts served since the step began."""

    error_rate: dict[str, float] = field(default_factory=dict)
    slow_rate: dict[str, float] = field(default_factory=dict)
    assessments: list[Verdict] = field(default_factory=list)

    def counts(self, variant: str, since: float) -> VariantCounts:
        n = self.invocations(variant, since)
        return VariantCounts(
            n, round(n * self.error_rate.get(variant, 0.01)), round(n * self.slow_rate.get(variant, 0.05)), n
        )

    def decide(self) -> plan.Decision:
        state = self.state
        assessment = None
        if (
            state
            and state.candidate
            and state.stable
            and ((state.phase is Phase.CANARY and self.policy.steps[state.step] < 100) or state.phase is Phase.SHADOW)
            and self.policy.gate.enabled
        ):
            since = state.step_started_at
            step = StepEvidence(
                self.counts(state.stable.variant, since), self.counts(state.candidate.variant, since), since, self.now
            )
            assessment = assess(step, self.policy.gate, self.policy.steps, stages=self.policy.judged_stages)
            self.assessments.append(assessment.verdict)
        firing = tuple(sorted(a for a in self.firing if state and state.candidate and a.startswith("v2")))
        return plan.decide(
            state,
            self.endpoint.view(),
            self.target,
            firing,
            self.policy,
            self.now,
            endpoint=ENDPOINT,
            group=GROUP,
            deploy=self.deploy,
            invocations=self.evidence(),
            assessment=assessment,
            live_approved=self.live_approved(),
        )


def gate_world(on_inconclusive: Inconclusive = Inconclusive.HOLD, rate: float = 100.0) -> GateWorld:
    world = GateWorld(
        policy=RolloutPolicy(
            Strategy.AB,
            (10, 50, 100),
            3600,
            min_invocations=100,
            max_bake_seconds=3600,
            gate=GateSettings(on_inconclusive=on_inconclusive),
        ),
        rate=rate,
    )
    world.v2_under_test()
    return world


def test_a_candidate_worse_under_the_alarms_is_rolled_back_and_rejected_naming_the_metric() -> None:
    world = gate_world()
    world.error_rate = {"v1": 0.01, "v2": 0.03}
    for _ in range(60):
        decision = world.tick()
        if decision.state and decision.state.phase is not Phase.CANARY:
            break
    assert decision.state is not None and decision.state.phase is Phase.ROLLING_BACK
    assert decision.state.cause == "gate" and decision.state.reject_candidate
    assert "worse than v1 on errors" in decision.state.reason
    assert world.now - 1000 < 3600  # well before the bake's end
    world.run()
    assert world.endpoint.variants == {"v1": 1.0} and "worse than v1 on errors" in world.rejected[2]


def test_a_good_candidate_moves_on_before_the_bake_and_reaches_full_traffic_early() -> None:
    world = gate_world()
    start = world.now
    for _ in range(120):
        world.tick()
        if world.endpoint.shares().get("v2") == 1.0:
            break
    assert world.endpoint.shares() == {"v1": 0.0, "v2": 1.0}
    assert world.now - start < 3600  # today's schedule: 2 x 3600 s to reach 100%
    assert any("not worse than stable" in entry.what for entry in world.state.history)  # type: ignore[union-attr]


def test_an_undecided_step_is_held_and_announced_once_by_default() -> None:
    world = gate_world(rate=2.0)  # 0.2 requests a second at 10%: the test cannot decide within the bake
    for _ in range(59):
        world.tick()
    assert world.notifications.count("INCONCLUSIVE: sp-churn v2") == 0
    held = world.tick(60)
    assert held.state and held.state.inconclusive and world.notifications[-1] == "INCONCLUSIVE: sp-churn v2"
    for _ in range(10):
        assert world.tick().is_wait
    assert world.notifications.count("INCONCLUSIVE: sp-churn v2") == 1
    assert world.endpoint.shares() == {"v1": 0.9, "v2": 0.1}


@pytest.mark.parametrize(("policy", "phase", "share"), [(Inconclusive.ROLLBACK, Phase.STABLE, {"v1": 1.0})])
def test_an_undecided_step_follows_a_rollback_policy(
    policy: Inconclusive, phase: Phase, share: dict[str, float]
) -> None:
    world = gate_world(policy, rate=2.0)
    for _ in range(62):
        world.tick()
    world.run()
    assert world.state and world.state.phase is phase and world.endpoint.variants == share
    assert "inconclusive" in world.rejected[2]  # Rejected: the same approval does not start it again


def test_an_undecided_step_follows_a_promote_policy_but_never_on_silence() -> None:
    world = gate_world(Inconclusive.PROMOTE, rate=2.0)
    for _ in range(62):
        world.tick()
    assert world.state and world.state.step == 1  # moved on at the longest bake
    silent = gate_world(Inconclusive.PROMOTE)
    silent.calling = False
    for _ in range(200):
        silent.tick()
    assert silent.state and silent.state.step == 0 and silent.state.starved  # NO TRAFFIC, held


def test_an_operator_promote_overrides_the_gate() -> None:
    world = gate_world()
    world.error_rate = {"v1": 0.01, "v2": 0.5}
    world.state = world.state and world.state.evolve(world.now, "promote", command=plan.Command.PROMOTE)
    decision = world.tick()
    assert decision.state and decision.state.phase is Phase.PROMOTING


def test_the_inconclusive_flag_survives_the_state_record() -> None:
    from sagepilot.adapters.rollout_state import from_json, to_json

    world = gate_world()
    assert world.state is not None
    held = world.state.evolve(world.now, "held", inconclusive=True)
    assert from_json(to_json(held)).inconclusive


def test_user_metrics_are_read_from_the_tag_and_judged_in_their_good_direction() -> None:
    gate = _gate({"sagepilot:metrics": "Shop/Checkout/Conversion:higher:0.01 Shop/Wrong:lower:0.005"}, GateSettings())
    conversion, wrong = gate.custom
    assert (conversion.namespace, conversion.name, conversion.higher_is_better, conversion.margin) == (
        "Shop/Checkout",
        "Conversion",
        True,
        0.01,
    )
    assert wrong.label == "Shop/Wrong" and not wrong.higher_is_better
    with pytest.raises(InvalidGroupSettings, match=r"Namespace/Name:lower\|higher:margin"):
        _gate({"sagepilot:metrics": "Conversion:up"}, GateSettings())
    with pytest.raises(InvalidGroupSettings, match="Namespace/Name"):
        _gate({"sagepilot:metrics": "Shop/Conversion:higher:2"}, GateSettings())

    def step(cand_conversions: int) -> StepEvidence:
        return StepEvidence(
            VariantCounts(90_000, 900, 4_500, 90_000, ((9_000, 90_000), (90, 90_000))),
            VariantCounts(10_000, 100, 500, 10_000, ((cand_conversions, 10_000), (10, 10_000))),
            0.0,
            60.0,
        )

    worse = assess(step(600), gate, (10, 100))  # converts 6% where stable converts 10%: fewer is worse
    assert worse.verdict is Verdict.WORSE and worse.worst() is not None
    assert worse.worst().metric == "Shop/Checkout/Conversion"  # type: ignore[union-attr]
    assert worse.alpha == pytest.approx(0.05 / 4)  # four metrics, one judged step
    assert assess(step(1_100), gate, (10, 100)).verdict is Verdict.NOT_WORSE  # converting more is fine


def test_a_step_edit_that_changes_the_share_is_judged_afresh_at_the_new_share() -> None:
    """`sagepilot:canary-steps` edited from 10,50,100 to 30,50,100 just as the gate would pass v2's 10% step: the
    evidence gathered at 10% does not pass its step at 30% (before: the next look, still counting from the start of
    the 10% step, moved v2 on to 50% without a look at 30%)."""
    probe = copy.deepcopy(gate_world())
    minutes = 0
    while probe.state is not None and probe.state.step == 0 and minutes < 120:
        probe.tick()
        minutes += 1
    assert probe.state is not None and probe.state.step == 1  # the gate passes the 10% step after `minutes`
    world = gate_world()
    for _ in range(minutes - 1):
        world.tick()
    assert world.state is not None and world.state.step == 0
    world.policy = dataclasses.replace(world.policy, steps=(30, 50, 100))
    edited = world.tick()
    assert [a.subject for a in edited.actions if isinstance(a, plan.Notify)] == ["CANARY STEPS CHANGED: sp-churn v2"]
    assert world.endpoint.shares() == {"v1": 0.7, "v2": 0.3}
    world.tick()
    assert world.state.step == 0 and world.endpoint.shares() == {"v1": 0.7, "v2": 0.3}  # judged afresh at 30%
