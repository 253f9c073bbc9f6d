"""Shadow tests (issue 18): the candidate first runs as the endpoint's shadow variant (ShadowProductionVariants),
answering copies of live requests that no caller sees, judged by the canary gate on them; then a canary from its
first step, or a promotion. Decisions (domain.rollout) against the in-memory endpoint of rollout_world."""

from __future__ import annotations

import pytest

from sagepilot.domain import rollout as plan
from sagepilot.domain.canary_gate import GateSettings, Inconclusive
from sagepilot.domain.deployment import InvalidGroupSettings, resolve
from sagepilot.domain.rollout import AfterShadow, Phase, RolloutPolicy, Strategy
from unit.rollout_world import GROUP
from unit.test_canary_gate import GateWorld
from unit.test_group_settings import DEFAULTS


def shadow_world(
    after: AfterShadow = AfterShadow.CANARY,
    percent: int = 50,
    rate: float = 100.0,
    gate: GateSettings | None = None,
) -> GateWorld:
    world = GateWorld(
        policy=RolloutPolicy(
            Strategy.SHADOW,
            (10, 50, 100),
            3600,
            min_invocations=100,
            max_bake_seconds=3600,
            gate=gate or GateSettings(),
            shadow_percent=percent,
            after_shadow=after,
        ),
        rate=rate,
    )
    world.v2_under_test()
    return world


def until_out_of_shadow(world: GateWorld, ticks: int = 120) -> list[dict[str, float]]:
    """Minute ticks while the shadow test runs; what the callers were served by (production shares) each minute."""
    served = []
    for _ in range(ticks):
        served.append(world.endpoint.shares())
        world.tick()
        if world.state is None or world.state.phase is not Phase.SHADOW:
            break
    return served


def test_the_candidate_starts_as_a_shadow_variant_copied_a_share_of_requests_and_answering_none() -> None:
    world = shadow_world(percent=50)
    assert world.state and world.state.phase is Phase.SHADOW
    assert world.endpoint.variants == {"v1": 1.0}  # callers get v1's answers only
    assert world.endpoint.shadows == {"v2": 0.5}  # a copy of half the requests goes to v2
    [apply] = [a for a in world.actions if isinstance(a, plan.ApplyVariants) and a.shadow]
    assert [(r.variant, w) for r, w in apply.variants] == [("v1", 1.0)]
    assert [(r.variant, w) for r, w in apply.shadow] == [("v2", 0.5)]
    assert any(isinstance(a, plan.CreateVariantAlarms) and a.variant == "v2" for a in world.actions)
    assert world.notifications[-1] == "ROLLOUT STARTED: sp-churn v2"


def test_a_good_candidate_passes_its_shadow_test_then_runs_the_canary_and_is_promoted() -> None:
    world = shadow_world()
    served = until_out_of_shadow(world)
    assert all(shares == {"v1": 1.0} for shares in served)  # zero user impact during the test
    assert world.state and world.state.phase is Phase.CANARY and world.state.step == 0
    assert world.endpoint.shares() == {"v1": 0.9, "v2": 0.1} and world.endpoint.shadows == {}
    assert any("not worse than stable" in h.what and "canary at 10%" in h.what for h in world.state.history)
    for _ in range(240):
        world.tick()
        if world.endpoint.variants == {"v2": 1.0}:
            break
    world.run()
    assert world.endpoint.variants == {"v2": 1.0}
    assert world.state and world.state.phase is Phase.STABLE and world.state.stable == world.target


def test_shadow_then_promote_goes_to_all_traffic_once_passed() -> None:
    world = shadow_world(after=AfterShadow.PROMOTE)
    until_out_of_shadow(world)
    assert world.state and world.state.phase is Phase.PROMOTING
    world.run()
    assert world.endpoint.variants == {"v2": 1.0} and world.endpoint.shadows == {}
    assert world.state and world.state.phase is Phase.STABLE


def test_a_candidate_worse_on_its_copies_is_rolled_back_before_any_user_gets_its_answers() -> None:
    world = shadow_world()
    world.error_rate = {"v1": 0.01, "v2": 0.04}
    served = until_out_of_shadow(world)
    assert all(shares == {"v1": 1.0} for shares in served)
    assert world.state and world.state.phase is Phase.ROLLING_BACK and world.state.cause == "gate"
    world.run()
    assert world.endpoint.variants == {"v1": 1.0} and world.endpoint.shadows == {}
    assert "worse than v1 on errors" in world.rejected[2]
    assert world.state and world.state.phase is Phase.STABLE and world.state.candidate is None


def test_an_alarm_of_the_shadow_rolls_it_back() -> None:
    world = shadow_world()
    world.firing = {"v2-5xx"}
    decision = world.tick()
    assert decision.state and decision.state.phase is Phase.ROLLING_BACK and decision.state.cause == "alarm"
    world.run()
    assert world.endpoint.variants == {"v1": 1.0} and world.endpoint.shadows == {} and 2 in world.rejected


def test_a_shadow_nobody_calls_is_held_never_moved_on_on_silence() -> None:
    world = shadow_world()
    world.calling = False
    for _ in range(200):
        world.tick()
    assert world.state and world.state.phase is Phase.SHADOW and world.state.starved
    assert world.notifications.count("NO TRAFFIC: sp-churn v2") == 1
    assert world.endpoint.variants == {"v1": 1.0}


def test_an_undecided_shadow_test_is_held_and_announced_once() -> None:
    world = shadow_world(percent=1, rate=2.0)  # 0.02 copies a second: never enough to decide
    world.policy = RolloutPolicy(
        Strategy.SHADOW, (10, 50, 100), 3600, min_invocations=1, max_bake_seconds=3600, shadow_percent=1
    )
    world.rate = 10.0
    for _ in range(200):
        world.tick()
    assert world.state and world.state.phase is Phase.SHADOW and world.state.inconclusive
    assert world.notifications.count("INCONCLUSIVE: sp-churn v2") == 1


def test_without_the_gate_the_shadow_test_lasts_the_bake_and_needs_its_invocations() -> None:
    world = shadow_world(gate=GateSettings(enabled=False))
    for _ in range(59):
        world.tick()
    assert world.state and world.state.phase is Phase.SHADOW  # the bake (3600 s) is not over
    world.tick(61)
    assert world.state and world.state.phase is Phase.CANARY
    assert any("shadow test: v2 healthy after 3600 s" in h.what for h in world.state.history)


def test_a_shadow_removed_by_hand_is_put_back_and_a_newer_approval_supersedes_it() -> None:
    world = shadow_world()
    world.endpoint.shadows = {}
    decision = world.reconcile()
    assert any(isinstance(a, plan.ApplyVariants) and a.shadow for a in decision.actions)
    world.settle()
    assert world.endpoint.shadows == {"v2": 0.5}
    world.approve(3)
    decision = world.reconcile()
    assert decision.state and decision.state.phase is Phase.ROLLING_BACK and decision.state.cause == "superseded"
    for _ in range(4):  # no time passes: the rollback finishes, then v3's shadow test starts at once
        world.reconcile()
        world.settle()
    assert world.state and world.state.phase is Phase.SHADOW and world.state.candidate == world.target
    assert world.endpoint.shadows == {"v3": 0.5} and 2 not in world.rejected


def test_deploy_false_stops_a_shadow_test_without_rejecting() -> None:
    world = shadow_world()
    world.deploy = False
    decision = world.reconcile()
    assert decision.state and decision.state.phase is Phase.ROLLING_BACK and decision.state.cause == "disabled"
    world.settle()
    world.reconcile()
    assert world.endpoint.variants == {"v1": 1.0} and world.endpoint.shadows == {} and 2 not in world.rejected


def test_an_operator_promote_ends_the_shadow_test() -> None:
    world = shadow_world()
    world.state = world.state and world.state.evolve(world.now, "promote", command=plan.Command.PROMOTE)
    decision = world.tick()
    assert decision.state and decision.state.phase is Phase.PROMOTING
    world.run()
    assert world.endpoint.variants == {"v2": 1.0} and world.endpoint.shadows == {}


def test_the_gate_level_is_split_over_the_shadow_test_too() -> None:
    shadow = RolloutPolicy(Strategy.SHADOW, (10, 50, 100), 600)
    assert shadow.judged_stages == 3  # the shadow test and the two steps where stable still serves
    assert RolloutPolicy(Strategy.SHADOW, (10, 100), 600, after_shadow=AfterShadow.PROMOTE).judged_stages == 1
    assert RolloutPolicy(Strategy.AB, (10, 50, 100), 600).judged_stages == 2
    with pytest.raises(ValueError, match="sampling percentage"):
        RolloutPolicy(Strategy.SHADOW, (100,), 600, shadow_percent=0)


def test_shadow_tags_are_read_and_checked() -> None:
    tags = {"sagepilot:strategy": "shadow", "sagepilot:shadow-percent": "20", "sagepilot:shadow-then": "Promote"}
    policy = resolve(DEFAULTS, "sp", GROUP, tags).rollout
    assert (policy.strategy, policy.shadow_percent, policy.after_shadow) == (Strategy.SHADOW, 20, AfterShadow.PROMOTE)
    default = resolve(DEFAULTS, "sp", GROUP, {"sagepilot:strategy": "shadow"}).rollout
    assert (default.shadow_percent, default.after_shadow) == (100, AfterShadow.CANARY)
    with pytest.raises(InvalidGroupSettings, match="shadow-percent must be between 1 and 100"):
        resolve(DEFAULTS, "sp", GROUP, {"sagepilot:shadow-percent": "0"})
    with pytest.raises(InvalidGroupSettings, match="shadow-then must be canary or promote"):
        resolve(DEFAULTS, "sp", GROUP, {"sagepilot:shadow-then": "later"})


def test_inconclusive_policy_rollback_applies_to_a_shadow_test() -> None:
    world = shadow_world(percent=1, gate=GateSettings(on_inconclusive=Inconclusive.ROLLBACK))
    world.policy = RolloutPolicy(
        Strategy.SHADOW,
        (10, 50, 100),
        3600,
        min_invocations=1,
        max_bake_seconds=3600,
        shadow_percent=1,
        gate=GateSettings(on_inconclusive=Inconclusive.ROLLBACK),
    )
    world.rate = 10.0
    until_out_of_shadow(world, 200)
    world.run()
    assert world.endpoint.variants == {"v1": 1.0} and "inconclusive" in world.rejected[2]


def test_rejecting_the_live_version_during_a_shadow_test_is_said_once_and_the_test_goes_on() -> None:
    world = shadow_world()
    started = world.state.step_started_at  # type: ignore[union-attr]
    world.reject(1)
    said = world.tick()
    assert [a.subject for a in said.actions if isinstance(a, plan.Notify)] == ["LIVE VERSION REJECTED: sp-churn v1"]
    assert world.state is not None and world.state.phase is Phase.SHADOW and world.state.step_started_at == started
    assert "while v2 is judged in its shadow test (50% of requests copied to it)" in world.state.history[-1].what
    until_out_of_shadow(world)
    assert world.notifications.count("LIVE VERSION REJECTED: sp-churn v1") == 1
