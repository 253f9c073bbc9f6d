"""Rollout decisions, driven without AWS against an endpoint that behaves (and refuses) like SageMaker's."""

from __future__ import annotations

import pytest

from sagepilot.domain import rollout as plan
from sagepilot.domain.rollout import Command, Phase, RolloutPolicy, Strategy
from unit.rollout_world import Refused, World, release


def deployed(version: int = 1) -> World:
    world = World()
    world.approve(version)
    world.run()
    assert world.state and world.state.phase is Phase.STABLE
    return world


def test_first_approval_creates_the_endpoint_then_registers_autoscaling_once_in_service() -> None:
    world = World()
    world.approve(1)
    first = world.reconcile()
    assert [type(a) for a in first.actions] == [plan.CreateEndpoint]
    assert first.commit_first and first.state and first.state.phase is Phase.CREATING
    # Creating: nothing else may happen, however many triggers arrive.
    for _ in range(3):
        assert world.reconcile().is_wait
    world.settle()
    done = world.reconcile()
    assert [type(a) for a in done.actions] == [plan.RegisterAutoscaling, plan.CreateVariantAlarms, plan.Notify]
    assert not done.commit_first  # act, then record: repeating it is harmless
    assert world.endpoint.variants == {"v1": 1.0} and world.endpoint.autoscaled == {"v1"}
    assert world.notifications == ["DEPLOYED: sp-churn v1"]


def test_no_approved_version_does_nothing() -> None:
    world = World()
    decision = world.reconcile()
    assert decision.is_wait and decision.state is None


def test_canary_moves_through_every_step_after_its_bake_then_promotes() -> None:
    world = deployed(1)
    world.approve(2)
    started = world.reconcile()
    assert [type(a) for a in started.actions] == [plan.CreateVariantAlarms, plan.ApplyVariants, plan.Notify]
    world.settle()
    shares = [world.endpoint.shares()]
    for _ in range(40):
        decision = world.reconcile()
        if world.settle():
            shares.append(world.endpoint.shares())
        elif decision.is_wait:
            if world.state and world.state.phase is Phase.STABLE:
                break
            world.now += 300  # half a bake: nothing may move before the full bake time
    assert [round(s.get("v2", 0.0), 2) for s in shares] == [0.1, 0.5, 1.0, 1.0]
    assert world.endpoint.variants == {"v2": 1.0}
    assert world.endpoint.autoscaled == {"v2"}
    assert world.state and world.state.stable == release(2) and world.state.candidate is None
    assert world.endpoint.removed_variants == ["v1"]
    assert "PROMOTED: sp-churn v2" in world.notifications


def test_a_step_waits_for_the_full_bake_time() -> None:
    world = deployed(1)
    world.approve(2)
    world.reconcile()
    world.settle()
    world.now += 599
    assert world.reconcile().is_wait
    world.now += 1
    moved = world.reconcile()
    assert [type(a) for a in moved.actions] == [plan.SetWeights]
    assert moved.state and moved.state.step == 1


def test_alarm_during_canary_sends_all_traffic_back_at_once_then_removes_the_candidate() -> None:
    world = deployed(1)
    world.approve(2)
    world.reconcile()
    world.settle()
    world.firing.add("v2-5xx")
    back = world.reconcile()
    assert back.state and back.state.phase is Phase.ROLLING_BACK and back.state.reject_candidate
    assert isinstance(back.actions[0], plan.SetWeights)
    assert dict(back.actions[0].weights) == {"v1": 1.0, "v2": 0.0}
    world.settle()
    assert world.endpoint.shares() == {"v1": 1.0, "v2": 0.0}
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}
    assert world.state and world.state.phase is Phase.STABLE and world.state.stable == release(1)
    assert 2 in world.rejected and "alarm v2-5xx in ALARM" in world.rejected[2]
    assert "ROLLED BACK: sp-churn v2" in world.notifications
    # The registry now says Rejected: nothing starts the same version again.
    world.firing.clear()
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}


def test_rejecting_the_candidate_rolls_back_without_touching_the_registry() -> None:
    world = deployed(1)
    world.approve(2)
    world.reconcile()
    world.settle()
    world.now += 600
    world.reconcile()
    world.settle()
    assert world.endpoint.shares()["v2"] == 0.5
    world.reject(2)
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}
    assert not any(isinstance(a, plan.RejectInRegistry) for a in world.actions)


def test_a_newer_approval_supersedes_a_running_canary() -> None:
    world = deployed(1)
    world.approve(2)
    world.reconcile()
    world.settle()
    world.approve(3)
    decision = world.reconcile()
    assert decision.state and decision.state.phase is Phase.ROLLING_BACK
    assert "supersedes" in decision.state.reason and not decision.state.reject_candidate
    world.run()
    assert world.endpoint.variants == {"v3": 1.0}
    assert 2 in world.approved  # superseded, not rejected


def test_approving_an_older_version_than_the_live_one_does_nothing() -> None:
    world = deployed(3)
    world.approve(2)
    assert world.reconcile().is_wait
    assert world.endpoint.variants == {"v3": 1.0}


def test_rejecting_the_live_version_reverts_to_the_previous_approved_one_at_once() -> None:
    world = deployed(1)
    world.approve(2)
    world.run()
    assert world.endpoint.variants == {"v2": 1.0}
    world.reject(2)
    revert = world.reconcile()
    assert revert.state and revert.state.phase is Phase.PROMOTING and revert.state.candidate == release(1)
    apply = next(a for a in revert.actions if isinstance(a, plan.ApplyVariants))
    assert apply.deregister == ("v2",)
    world.run()
    assert world.endpoint.variants == {"v1": 1.0} and world.endpoint.autoscaled == {"v1"}


def test_rejecting_every_version_notifies_once_and_keeps_serving() -> None:
    world = deployed(1)
    world.reject(1)
    world.run()
    world.run()
    assert world.notifications.count("NO APPROVED VERSION: sp-churn") == 1
    assert world.endpoint.variants == {"v1": 1.0}


def test_nothing_is_sent_to_an_updating_endpoint() -> None:
    world = deployed(1)
    world.approve(2)
    world.reconcile()
    assert world.endpoint.status == "Updating"
    world.firing.add("v2-5xx")
    world.now += 10_000
    for _ in range(3):
        assert world.reconcile().is_wait


def test_pause_holds_the_step_and_promote_now_finishes_it() -> None:
    world = deployed(1)
    world.approve(2)
    world.reconcile()
    world.settle()
    assert world.state
    world.state = world.state.evolve(world.now, "paused", paused=True)
    world.now += 10_000
    assert world.reconcile().is_wait
    world.state = world.state.evolve(world.now, "promote", command=Command.PROMOTE)
    decision = world.reconcile()
    assert decision.state and decision.state.phase is Phase.PROMOTING
    world.run()
    assert world.endpoint.variants == {"v2": 1.0}


def test_operator_rollback_marks_the_candidate_rejected() -> None:
    world = deployed(1)
    world.approve(2)
    world.reconcile()
    world.settle()
    assert world.state
    world.state = world.state.evolve(world.now, "rollback", command=Command.ROLLBACK)
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}
    assert "operator" in world.rejected[2]


def test_a_failed_endpoint_is_reported_and_replaced_when_another_version_is_approved() -> None:
    world = World()
    world.endpoint.fail_next = "ClientError: the container did not pass the ping health check"
    world.approve(1)
    world.run()
    assert world.state and world.state.phase is Phase.FAILED
    assert world.notifications == ["FAILED: sp-churn v1"]
    assert "did not pass the ping health check" in world.rejected[1]  # a verdict on v1, with SageMaker's reason
    world.run()
    assert world.notifications == ["FAILED: sp-churn v1"]  # once
    world.approve(2)
    world.run()
    assert world.endpoint.variants == {"v2": 1.0}
    assert world.state and world.state.phase is Phase.STABLE


def test_an_endpoint_deleted_by_hand_is_created_again() -> None:
    world = deployed(1)
    world.notifications.clear()
    world.endpoint = type(world.endpoint)()
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}
    assert world.notifications == ["ENDPOINT MISSING: sp-churn", "DEPLOYED: sp-churn v1"]


def test_a_canary_update_sagemaker_cannot_apply_rejects_the_candidate_once_and_sends_nothing_again() -> None:
    world = deployed(1)
    world.endpoint.fail_next_update = (
        "The primary container for production variant v2 did not pass the ping health check."
    )
    world.approve(2)
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}
    assert world.endpoint.updates == 1  # the canary's one UpdateEndpoint, not sent again
    assert world.notifications[-1] == "FAILED: sp-churn v2"
    assert "did not pass the ping health check" in world.rejected[2]
    assert world.state and world.state.phase is Phase.STABLE and world.state.candidate is None
    world.approve(3)
    world.run()
    assert world.endpoint.variants == {"v3": 1.0}


def test_a_candidate_missing_without_a_newer_failure_is_added_again() -> None:
    world = deployed(1)
    world.approve(2)
    world.reconcile()  # the canary's update is sent ...
    world.endpoint.status, world.endpoint.pending = "InService", None  # ... and lost (as if never applied)
    world.reconcile()
    assert world.endpoint.pending == {"v1": 0.9, "v2": 0.1}  # sent again: nothing says it failed


def test_a_change_by_hand_is_repaired_with_autoscaling_and_announced() -> None:
    world = deployed(1)
    world.notifications.clear()
    world.endpoint.autoscaled.clear()
    world.endpoint.variants = {"manual": 1.0}
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}
    assert world.endpoint.autoscaled == {"v1"}
    assert world.notifications == ["REPAIRED: sp-churn"]
    assert world.state and world.state.repair == ""
    assert [h.what for h in world.state.history if "drift" in h.what or "repaired" in h.what]


def test_an_existing_endpoint_without_a_record_is_left_alone() -> None:
    world = World()
    world.endpoint.status, world.endpoint.variants = "InService", {"AllTraffic": 1.0}
    world.approve(1)
    decision = world.reconcile()
    assert decision.state is None and [type(a) for a in decision.actions] == [plan.Notify]


def test_drift_on_a_stable_endpoint_is_repaired() -> None:
    world = deployed(1)
    world.endpoint.variants["manual"] = 1.0
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}


@pytest.mark.parametrize("strategy", [Strategy.CANARY, Strategy.LINEAR, Strategy.ALL_AT_ONCE])
def test_native_strategy_hands_the_rollout_to_sagemaker(strategy: Strategy) -> None:
    world = deployed(1)
    world.policy = RolloutPolicy(strategy, (10, 50, 100), 600)
    world.approve(2)
    decision = world.reconcile()
    assert [type(a) for a in decision.actions] == [plan.CreateVariantAlarms, plan.NativeUpdate]
    world.run()
    assert world.endpoint.variants == {"v2": 1.0} and world.endpoint.autoscaled == {"v2"}


def test_native_rollback_by_sagemaker_is_recorded_and_autoscaling_restored() -> None:
    world = deployed(1)
    world.policy = RolloutPolicy(Strategy.CANARY, (10, 100), 600)
    world.endpoint.native_rollback_next = True
    world.approve(2)
    world.now += 1
    world.run()
    assert world.endpoint.variants == {"v1": 1.0} and world.endpoint.autoscaled == {"v1"}
    assert 2 in world.rejected and "guardrails" in world.rejected[2]


def test_the_fake_endpoint_refuses_what_sagemaker_refuses() -> None:
    world = deployed(1)
    with pytest.raises(Refused, match="deregistered"):
        world.endpoint.update({"v2": 1.0}, world.now)
    world.endpoint.status = "Updating"
    with pytest.raises(Refused, match="in-progress"):
        world.endpoint.set_weights({"v1": 1.0}, world.now)


@pytest.mark.parametrize("steps", [(), (10, 50), (50, 10, 100), (0, 100), (10, 10, 100)])
def test_policy_rejects_bad_steps(steps: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        RolloutPolicy(Strategy.AB, steps, 60)


@pytest.mark.parametrize(
    ("strategy", "min_invocations", "gate", "late_after"),
    [
        (Strategy.AB, 0, False, 600),  # alarm-only, no minimum: a step moves at its bake, late after it
        (Strategy.AB, 100, False, 3600),  # waits for its invocations until it is held (NO TRAFFIC)
        (Strategy.AB, 0, True, 3600),  # the gate collects evidence until it holds the step (INCONCLUSIVE)
        (Strategy.SHADOW, 0, True, 3600),
        (Strategy.CANARY, 0, True, 600),  # SageMaker's guardrails: no gate
    ],
)
def test_a_step_is_late_only_after_the_longest_it_may_wait(
    strategy: Strategy, min_invocations: int, gate: bool, late_after: int
) -> None:
    """The rollout-stuck alarm must not call a step stuck while it legitimately waits for traffic: it would fire
    before the NO TRAFFIC or INCONCLUSIVE notice that says what is going on."""
    from sagepilot.domain.canary_gate import GateSettings

    policy = RolloutPolicy(
        strategy, (10, 50, 100), 600, min_invocations=min_invocations, max_bake_seconds=3600, gate=GateSettings(gate)
    )
    assert policy.overdue_after == late_after


def test_steps_shortened_by_a_tag_edit_under_a_canary_past_them_promote_instead_of_failing_every_reconcile() -> None:
    """`sagepilot:canary-steps` edited from 10,50,100 to 100 while the canary is at its second step: its step is
    now beyond the last one. It is treated as the last (100%), baked and promoted; before, `_next_step` indexed
    past the steps and every reconcile raised IndexError, leaving the candidate at 100% for ever."""
    world = canary_at_second_step()
    world.policy = RolloutPolicy(Strategy.AB, (100,), 600)
    for _ in range(4):
        world.reconcile()
        world.settle()
        world.advance(world.policy.bake_seconds)
    assert world.state is not None and world.state.phase is Phase.STABLE
    assert world.endpoint.shares() == {"v2": 1.0}


# Issue 15 -------------------------------------------------------------------------------------------------
def evidence_world(min_invocations: int = 100, max_bake: int = 1800) -> World:
    world = World(
        policy=RolloutPolicy(
            Strategy.AB, (10, 50, 100), 600, min_invocations=min_invocations, max_bake_seconds=max_bake
        )
    )
    world.approve(1)
    world.run()
    return world


def test_a_baked_step_without_its_evidence_waits_then_is_held_and_announced_once() -> None:
    world = evidence_world()
    world.calling = False
    world.approve(2)
    world.reconcile()
    world.settle()
    world.advance(600)
    waiting = world.reconcile()
    assert waiting.is_wait and "served 0 of the 100" in waiting.note
    world.advance(1200)  # the step is 1800 s old: MaxBakeSeconds
    held = world.reconcile()
    assert [type(a) for a in held.actions] == [plan.Notify] and held.state and held.state.starved
    assert world.notifications[-1] == "NO TRAFFIC: sp-churn v2"
    for _ in range(5):
        world.advance(600)
        assert world.reconcile().is_wait  # held: no second notice, no step
    assert world.endpoint.shares() == {"v1": 0.9, "v2": 0.1}
    world.calling = True
    world.advance(1000)  # 100 of v2's in its step: it moves on
    moved = world.reconcile()
    assert [type(a) for a in moved.actions] == [plan.SetWeights] and moved.state and not moved.state.starved


def test_the_last_step_does_not_promote_on_silence_but_an_operator_may() -> None:
    world = evidence_world()
    world.approve(2)
    world.run()  # clients call: it goes all the way
    assert world.endpoint.variants == {"v2": 1.0}
    world.calling = False
    world.approve(3)
    world.reconcile()
    world.settle()
    world.state = world.state and world.state.evolve(world.now, "at 100%", step=2, step_started_at=world.now)
    world.reconcile()
    world.settle()
    world.advance(5000)
    assert world.reconcile().state.phase is Phase.CANARY  # type: ignore[union-attr]
    world.state = world.state and world.state.evolve(world.now, "promote", command=Command.PROMOTE)
    assert world.reconcile().state.phase is Phase.PROMOTING  # type: ignore[union-attr]


def test_deploy_false_rolls_a_canary_back_without_rejecting_and_starts_nothing() -> None:
    world = evidence_world()
    world.approve(2)
    world.reconcile()
    world.settle()
    world.deploy = False
    back = world.reconcile()
    assert back.state and back.state.phase is Phase.ROLLING_BACK and back.state.cause == "disabled"
    world.run()
    assert world.endpoint.variants == {"v1": 1.0} and 2 in world.approved and world.rejected == {}
    withheld = world.reconcile()
    assert withheld.is_wait and "sagepilot:deploy tag is false" in withheld.note
    history = [h.what for h in world.state.history]  # type: ignore[union-attr]
    assert world.reconcile().is_wait and history == [h.what for h in world.state.history]  # type: ignore[union-attr]
    world.deploy = True
    assert world.reconcile().state.phase is Phase.CANARY  # type: ignore[union-attr]


def test_deploy_false_creates_nothing() -> None:
    world = World()
    world.deploy = False
    world.approve(1)
    assert world.reconcile().is_wait and world.endpoint.status is None


def test_a_rollback_withdraws_the_approvals_its_candidate_had_superseded() -> None:
    world = evidence_world(min_invocations=0)
    world.approve(2)
    world.reconcile()
    world.settle()
    world.approve(3)  # supersedes v2's canary
    for _ in range(6):
        world.reconcile()
        world.settle()
    assert world.state and world.state.phase is Phase.CANARY and world.state.candidate == release(3)
    world.state = world.state.evolve(world.now, "rollback", command=Command.ROLLBACK)
    world.run()
    withdrawn = [a for a in world.actions if isinstance(a, plan.WithdrawApprovals)]
    assert withdrawn == [plan.WithdrawApprovals(1, 3, withdrawn[0].description)]
    assert world.endpoint.variants == {"v1": 1.0} and set(world.approved) == {1}


def test_an_endpoint_deleted_during_a_canary_is_recreated_with_the_live_version_not_the_unproven_candidate() -> None:
    world = evidence_world()
    world.calling = False
    world.approve(2)
    world.reconcile()
    world.settle()
    assert world.endpoint.shares() == {"v1": 0.9, "v2": 0.1}
    world.endpoint = type(world.endpoint)()  # deleted by hand while v2, with no evidence, has 10%
    recreated = world.reconcile()
    creates = [action for action in recreated.actions if isinstance(action, plan.CreateEndpoint)]
    assert [action.release.version for action in creates] == [1]
    world.settle()
    assert world.endpoint.variants == {"v1": 1.0}


def test_an_endpoint_deleted_while_deploy_is_false_is_reported_missing_once_and_not_recreated() -> None:
    world = deployed(1)
    world.deploy = False
    world.endpoint = type(world.endpoint)()  # deleted by hand
    first, again = world.reconcile(), world.reconcile()
    assert [a.subject for a in first.actions if isinstance(a, plan.Notify)] == ["ENDPOINT MISSING: sp-churn"]
    assert not any(isinstance(a, plan.CreateEndpoint) for a in first.actions)
    assert again.actions == ()
    world.deploy = True  # allowed again: created again, and a later deletion is reported again
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}
    world.deploy = False
    world.endpoint = type(world.endpoint)()
    notices = [a.subject for a in world.reconcile().actions if isinstance(a, plan.Notify)]
    assert notices == ["ENDPOINT MISSING: sp-churn"]


def v2_under_test() -> World:
    """v1 serves, v2's canary runs at its first step."""
    world = deployed(1)
    world.approve(2)
    world.reconcile()
    world.settle()
    return world


def finish_rollback(world: World) -> plan.Decision:
    """Reconcile (SageMaker settling each change) until a move leaves the rolled-back endpoint STABLE."""
    for _ in range(10):
        decision = world.reconcile()
        world.settle()
        if decision.state and decision.state.phase is Phase.STABLE:
            return decision
    raise AssertionError(f"the rollback never finished: {world.notes[-5:]}")


def test_a_rollback_that_ends_while_a_newer_version_waits_asks_for_its_rollout_at_once() -> None:
    world = v2_under_test()
    world.approve(3)  # supersedes the canary of v2
    rolling_back = world.reconcile()
    assert rolling_back.state and rolling_back.state.phase is Phase.ROLLING_BACK
    assert not plan.newer_version_waits(rolling_back, rolling_back.state, world.target)  # recorded first: not done
    world.settle()
    finished = finish_rollback(world)
    assert finished.state and finished.state.stable == release(1) and not finished.commit_first
    assert plan.newer_version_waits(finished, finished.state, world.target)
    assert not plan.newer_version_waits(finished, finished.state, release(1))  # nothing newer: done
    assert not plan.newer_version_waits(finished, None, world.target)


def test_a_rollback_for_an_alarm_ends_with_nothing_waiting() -> None:
    world = v2_under_test()
    world.firing.add("v2-5xx")
    world.reconcile()
    world.settle()
    finished = finish_rollback(world)
    assert finished.state and finished.state.stable == release(1) and world.target == release(1)  # v2 rejected
    assert not plan.newer_version_waits(finished, finished.state, world.target)
    waiting = world.reconcile()  # nothing to do on the stable endpoint
    assert waiting.is_wait and not plan.newer_version_waits(waiting, waiting.state, release(3))


# canary9: what a person changes under a running canary, and an endpoint gone with nothing Approved ----------------
def canary_at_second_step(policy: RolloutPolicy | None = None) -> World:
    """v1 serves, v2's canary at its second step (50%), baked there for a full bake already."""
    world = World(policy=policy) if policy is not None else World()
    world.approve(1)
    world.run()
    world.approve(2)
    for _ in range(10):
        world.reconcile()
        world.settle()
        if world.state is not None and world.state.step == 1 and world.endpoint.shares() == {"v1": 0.5, "v2": 0.5}:
            break
        world.advance(world.policy.bake_seconds)
    assert world.state is not None and world.state.step == 1
    world.advance(world.policy.bake_seconds)  # the step at 50% has baked
    return world


def notices(decision: plan.Decision) -> list[plan.Notify]:
    return [a for a in decision.actions if isinstance(a, plan.Notify)]


def test_a_step_edit_that_changes_the_candidates_share_is_said_and_restarts_the_steps_bake() -> None:
    """`sagepilot:canary-steps` edited from 10,50,100 to 100 while v2 has baked at 50%: its share goes to 100% with a
    line and a notice naming the old and new steps, and it is not promoted on the bake it had at 50% (before: the
    weights moved in silence and the next reconcile promoted it without a second at 100%)."""
    world = canary_at_second_step()
    world.policy = RolloutPolicy(Strategy.AB, (100,), 600)
    edited = world.reconcile()
    [notice] = notices(edited)
    assert notice.subject == "CANARY STEPS CHANGED: sp-churn v2"
    assert notice.detail["previousSteps"] == [10, 50, 100] and notice.detail["steps"] == [100]
    assert notice.detail["previousShare"] == 50 and notice.detail["share"] == 100
    assert edited.state is not None and edited.commit_first
    assert "from 10,50,100 to 100" in edited.state.history[-1].what and "50% to 100%" in edited.state.history[-1].what
    assert edited.state.step_started_at == world.now and edited.state.steps == (100,)
    world.settle()
    assert world.endpoint.shares() == {"v1": 0.0, "v2": 1.0}
    world.advance(world.policy.bake_seconds - 1)
    assert world.reconcile().is_wait and world.state is not None and world.state.phase is Phase.CANARY
    world.advance(1)
    assert world.reconcile().state.phase is Phase.PROMOTING  # type: ignore[union-attr]
    assert world.notifications.count("CANARY STEPS CHANGED: sp-churn v2") == 1


def test_a_step_edit_restarts_the_steps_evidence_window() -> None:
    """With a minimum of invocations, what v2 served at 50% does not count for its step at 100% (the service reads
    the step's invocations from `step_started_at`, which the edit moves to now)."""
    world = canary_at_second_step(RolloutPolicy(Strategy.AB, (10, 50, 100), 600, min_invocations=100))
    assert world.invocations("v2", world.state.step_started_at) >= 100  # type: ignore[union-attr]
    world.policy = RolloutPolicy(Strategy.AB, (100,), 600, min_invocations=100)
    world.reconcile()
    world.settle()
    world.calling = False  # nobody calls it at 100%
    world.advance(world.policy.bake_seconds)
    held = world.reconcile()
    assert [n.subject for n in notices(held)] == ["NO TRAFFIC: sp-churn v2"]  # held at 100%, not promoted
    assert world.state is not None and world.state.phase is Phase.CANARY
    assert "served 0 of the 100 invocations needed at 100%" in world.state.history[-1].what


def test_a_step_edit_that_keeps_the_share_is_said_and_the_bake_goes_on() -> None:
    world = canary_at_second_step()
    started = world.state.step_started_at  # type: ignore[union-attr]
    world.policy = RolloutPolicy(Strategy.AB, (10, 50, 75, 100), 600)
    edited = world.reconcile()
    assert [n.subject for n in notices(edited)] == ["CANARY STEPS CHANGED: sp-churn v2"]
    assert "stays at 50%" in edited.state.history[-2].what  # type: ignore[union-attr]
    # The step had baked at 50% already: it moves on now, to the new next step (75%), as it would have.
    assert edited.state is not None and edited.state.step == 2 and edited.state.step_started_at == world.now
    assert started < world.now
    world.settle()
    assert world.endpoint.shares() == {"v1": 0.25, "v2": 0.75}
    assert world.reconcile().is_wait  # said once


def test_a_step_edit_at_rest_says_nothing() -> None:
    world = deployed(1)
    world.policy = RolloutPolicy(Strategy.AB, (100,), 600)
    assert world.reconcile().is_wait
    assert world.notifications == ["DEPLOYED: sp-churn v1"]


def test_rejecting_the_live_version_during_a_canary_is_said_once_and_the_canary_is_not_cut_short() -> None:
    world = v2_under_test()
    started = world.state.step_started_at  # type: ignore[union-attr]
    world.reject(1)
    said = world.reconcile()
    assert [n.subject for n in notices(said)] == ["LIVE VERSION REJECTED: sp-churn v1"]
    assert said.state is not None and said.state.phase is Phase.CANARY and said.state.step == 0
    assert said.state.step_started_at == started  # v2 is judged on its full evidence
    line = said.state.history[-1].what
    assert "v1, the live version, is no longer Approved" in line and "sagepilot promote" in line
    assert world.endpoint.shares() == {"v1": 0.9, "v2": 0.1}
    assert world.reconcile().is_wait  # once
    world.run()  # every step, each on its full bake, then the promotion
    assert world.endpoint.variants == {"v2": 1.0}
    steps = [round(s, 2) for s in (world.endpoint.shares()["v2"],)]
    assert steps == [1.0]
    assert world.notifications.count("LIVE VERSION REJECTED: sp-churn v1") == 1
    assert sum("shifting to" in note.what for note in world.state.history) == 2  # type: ignore[union-attr]


def test_a_canary_rolled_back_after_its_live_version_was_rejected_reverts_to_the_newest_approved_one() -> None:
    """As at rest: the rejected live version serves alone only until the newest Approved version replaces it."""
    world = deployed(1)
    world.approve(2)
    world.run()
    world.approve(3)
    world.reconcile()
    world.settle()
    world.reject(2)
    assert [n.subject for n in notices(world.reconcile())] == ["LIVE VERSION REJECTED: sp-churn v2"]
    world.firing = {"v3-5xx"}
    world.reconcile()
    world.settle()
    world.firing = set()
    done = finish_rollback(world)
    assert plan.newer_version_waits(done, world.state, world.target)  # the revert follows at once
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}


def test_a_live_version_approved_again_during_the_canary_is_said_again_if_rejected_again() -> None:
    world = v2_under_test()
    world.reject(1)
    world.reconcile()
    world.approve(1)
    assert world.reconcile().state.live_rejected is False  # type: ignore[union-attr]
    world.reject(1)
    assert [n.subject for n in notices(world.reconcile())] == ["LIVE VERSION REJECTED: sp-churn v1"]


def test_an_endpoint_deleted_with_no_version_approved_is_reported_missing_once_and_not_recreated() -> None:
    world = deployed(1)
    world.reject(1)
    world.run()
    assert world.notifications[-1] == "NO APPROVED VERSION: sp-churn"
    world.endpoint = type(world.endpoint)()  # deleted by hand
    first, again = world.reconcile(), world.reconcile()
    [missing] = notices(first)
    assert missing.subject == "ENDPOINT MISSING: sp-churn" and missing.detail["recreating"] is None
    assert "no version of churn is Approved" in str(missing.detail["what"])
    assert not any(isinstance(a, plan.CreateEndpoint) for a in first.actions)
    assert again.actions == ()
    # A version approved later creates it again, with that version: never with the rejected v1.
    world.approve(2)
    recreated = world.reconcile()
    assert [a.release.version for a in recreated.actions if isinstance(a, plan.CreateEndpoint)] == [2]
    assert notices(recreated) == []  # ENDPOINT MISSING was said for this deletion already; DEPLOYED follows
    world.run()
    assert world.endpoint.variants == {"v2": 1.0}
    assert world.notifications[-1] == "DEPLOYED: sp-churn v2"
