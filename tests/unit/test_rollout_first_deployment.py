"""A first deployment held up until newer versions are Approved: the baseline first, then the target's rollout.

A first approval whose event is lost or late, or whose handler died holding the lease, leaves nothing recorded
and no endpoint while newer versions are approved. The decision then creates the endpoint with the newest
Approved version below the target (the baseline) and gives the target its rollout against it, as delivering the
events in order would have done: never the target alone without its canary.
"""

from __future__ import annotations

import pytest

from sagepilot.domain import rollout as plan
from sagepilot.domain.rollout import Phase, RolloutPolicy, Strategy
from unit.rollout_world import ALLOWED, ENDPOINT, GROUP, World, release


def created_with(world: World) -> list[int]:
    return [a.release.version for a in world.actions if isinstance(a, plan.CreateEndpoint)]


def test_one_approved_version_is_deployed_directly() -> None:
    world = World()
    world.approve(1)
    first = world.reconcile()
    assert [type(a) for a in first.actions] == [plan.CreateEndpoint]
    assert first.state and first.state.stable == release(1)
    world.run()
    assert world.notifications == ["DEPLOYED: sp-churn v1"]
    assert "newer" not in world.state.history[-1].what  # type: ignore[union-attr]


def test_two_approved_versions_deploy_the_older_as_baseline_then_canary_the_newer() -> None:
    world = World()
    world.approve(1)
    world.approve(2)  # v1's approval was lost, late, or its handler died: both are Approved at the first move
    first = world.reconcile()
    assert [a.release for a in first.actions if isinstance(a, plan.CreateEndpoint)] == [release(1)]
    assert first.state and first.state.phase is Phase.CREATING and first.state.stable == release(1)
    why = first.state.history[-1].what
    assert why.startswith("v1 deployed first as the baseline: v2 (newer, Approved) gets its canary against it"), why
    world.settle()
    deployed = world.reconcile()
    [notice] = [a for a in deployed.actions if isinstance(a, plan.Notify)]
    assert notice.subject == "DEPLOYED: sp-churn v1"
    assert "v2 (newer, Approved) gets its canary against it next" in str(notice.detail["what"])
    # The service runs the next move at once (a newer version waits): the canary of v2 against v1.
    assert deployed.state and plan.newer_version_waits(deployed, deployed.state, world.target)
    started = world.reconcile()
    assert started.state and started.state.phase is Phase.CANARY
    assert (started.state.stable, started.state.candidate) == (release(1), release(2))
    world.settle()
    assert world.endpoint.shares() == {"v1": 0.9, "v2": 0.1}
    assert world.notifications == ["DEPLOYED: sp-churn v1", "ROLLOUT STARTED: sp-churn v2"]


def test_the_baselines_canary_is_rolled_back_by_its_alarm_as_in_order_delivery_would() -> None:
    world = World()
    world.approve(1)
    world.approve(2)
    for _ in range(3):
        world.reconcile()
        world.settle()
    assert world.state and world.state.phase is Phase.CANARY
    world.firing.add("v2-5xx")
    world.run()
    assert world.endpoint.variants == {"v1": 1.0}
    assert set(world.approved) == {1} and 2 in world.rejected
    assert created_with(world) == [1]  # v2 never served all traffic alone


def test_three_approved_versions_take_the_newest_below_the_target_as_baseline() -> None:
    world = World()
    for version in (1, 2, 3):
        world.approve(version)
    for _ in range(3):
        world.reconcile()
        world.settle()
    assert created_with(world) == [2]
    assert world.state and (world.state.stable, world.state.candidate) == (release(2), release(3))


def test_a_baseline_whose_image_is_not_allowed_is_skipped_and_the_target_deployed_directly() -> None:
    world = World()
    world.foreign.add(1)
    world.approve(1)
    world.approve(2)
    world.run()
    assert created_with(world) == [2]
    assert world.endpoint.variants == {"v2": 1.0} and world.notifications == ["DEPLOYED: sp-churn v2"]


def test_a_baseline_that_fails_to_start_is_rejected_and_the_target_deployed() -> None:
    world = World()
    world.endpoint.fail_next = "ClientError: the container did not pass the ping health check"
    world.approve(1)
    world.approve(2)
    world.run()
    assert world.notifications[0] == "FAILED: sp-churn v1"
    assert "ping health check" in world.rejected[1]  # the existing verdict on a first deployment that failed
    assert created_with(world) == [1, 2]
    assert world.endpoint.variants == {"v2": 1.0} and world.state and world.state.phase is Phase.STABLE


@pytest.mark.parametrize(
    ("strategy", "kind"),
    [(Strategy.SHADOW, "shadow test"), (Strategy.CANARY, "SageMaker canary deployment")],
)
def test_the_baseline_note_names_the_rollout_the_policy_gives(strategy: Strategy, kind: str) -> None:
    world = World(policy=RolloutPolicy(strategy, (10, 100), 600))
    world.approve(1)
    world.approve(2)
    first = world.reconcile()
    assert first.state and f"v2 (newer, Approved) gets its {kind} against it" in first.state.history[-1].what


def test_no_baseline_is_deployed_where_a_rollout_is_recorded_or_an_endpoint_exists() -> None:
    # `baseline` is only for the first deployment: a record (here CREATING with v1) or an endpoint makes it moot.
    world = World()
    world.approve(1)
    world.reconcile()
    world.approve(2)
    decision = plan.decide(
        world.state, world.endpoint.view(), release(2), (), world.policy, world.now,
        endpoint=ENDPOINT, group=GROUP, baseline=release(1),
    )  # fmt: skip
    assert decision.is_wait  # v1 is being created; nothing else happens
    unmanaged = plan.decide(
        None, world.endpoint.view(), release(2), (), world.policy, world.now,
        endpoint=ENDPOINT, group=GROUP, baseline=release(1),
    )  # fmt: skip
    assert [a.subject for a in unmanaged.actions if isinstance(a, plan.Notify)] == ["NOT MANAGED: sp-churn"]


def test_deploy_false_says_nothing_of_a_next_version_when_the_baseline_is_in_service() -> None:
    world = World()
    world.approve(1)
    world.approve(2)
    world.reconcile()
    world.settle()
    world.deploy = False
    deployed = world.reconcile()
    assert deployed.state and deployed.state.phase is Phase.STABLE
    assert deployed.state.history[-1].what == "endpoint sp-churn InService with v1"


def test_first_baseline_is_the_version_below_the_target_if_its_images_are_allowed() -> None:
    allowed_image = (f"{ALLOWED[0]}:1",)
    assert plan.first_baseline(release(2), release(1), allowed_image, ALLOWED) == release(1)
    assert plan.first_baseline(release(2), None, (), ALLOWED) is None
    assert plan.first_baseline(None, release(1), allowed_image, ALLOWED) is None
    assert plan.first_baseline(release(2), release(2), allowed_image, ALLOWED) is None  # not below the target
    assert plan.first_baseline(release(2), release(3), allowed_image, ALLOWED) is None
    foreign = ("999999999999.dkr.ecr.us-east-1.amazonaws.com/other:1",)
    assert plan.first_baseline(release(2), release(1), foreign, ALLOWED) is None
    assert plan.first_baseline(release(2), release(1), (), ALLOWED) is None  # no image named: cannot be checked
