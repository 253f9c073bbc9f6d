"""Property tests for what SageMaker and people do behind the rollout's back: updates SageMaker cannot apply
(the new variant's container never becomes healthy: InService again on the old variants with a
FailureReason), endpoints deleted out of band, variants swapped by hand. Mixed into the random programs of
test_rollout_properties, and checked after every move:
- no update is sent twice for one failed attempt: once an update starting a variant has failed, that variant
  is not sent to SageMaker again unless its version is approved again or a person changes the endpoint;
- SageMaker never refuses a call, traffic shares stay whole and canary steps only move forward or to 0;
and at the end, once things settle, the newest Approved version serves alone and is autoscaled (a repaired or
recreated endpoint has everything a deployment gives it), unless putting the stable variant back after a
person's change itself failed (reported, and left to a person).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from sagepilot.domain import rollout as plan
from sagepilot.domain.rollout import Phase, RolloutPolicy, RolloutState, Strategy
from unit.rollout_world import World, release
from unit.test_rollout_properties import _DISRUPTIONS, _OPERATOR, _PROGRESS, STEPS, Checker, _operate

_BEHIND_ITS_BACK = ["fail_update", "fail_update", "delete_by_hand", "edit_by_hand"]
OPS = st.sampled_from(_PROGRESS + _DISRUPTIONS + _OPERATOR + _BEHIND_ITS_BACK)
REASON = "The primary container for production variant {} did not pass the ping health check."


@dataclass
class FailingWorld(World):
    barred: set[str] = field(default_factory=set)  # variants whose start failed, not approved again since
    seen_failures: int = 0

    def approve(self, version: int) -> None:
        super().approve(version)
        self.barred.discard(release(version).variant)

    def apply(self, action: plan.Action, state: RolloutState | None) -> None:
        sent: set[str] = set()
        if isinstance(action, plan.ApplyVariants):
            sent = {r.variant for r, _ in action.variants}
        elif isinstance(action, plan.NativeUpdate | plan.CreateEndpoint):
            sent = {action.release.variant}
        assert not sent & self.barred, f"{sorted(sent & self.barred)} sent again after their start failed"
        super().apply(action, state)

    def settle(self) -> bool:
        moved = super().settle()
        for started in self.endpoint.failed_updates[self.seen_failures :]:
            self.barred |= started
        self.seen_failures = len(self.endpoint.failed_updates)
        return moved


def _behind_its_back(world: FailingWorld, op: str) -> None:
    ep, state = world.endpoint, world.state
    if op == "fail_update":
        candidate = state.candidate if state and state.candidate else None
        ep.fail_next_update = REASON.format(candidate.variant if candidate else "AllTraffic")
    elif op == "delete_by_hand" and ep.status in ("InService", "Failed"):
        ep.status, ep.variants, ep.pending, ep.autoscaled, ep.failure_reason = None, {}, None, set(), ""
        world.barred.clear()  # a new situation: trying again is a new attempt, not a resend
    elif (
        op == "edit_by_hand"
        and ep.status == "InService"
        and state is not None
        and state.phase in (Phase.STABLE, Phase.CANARY)
    ):
        ep.autoscaled -= set(ep.variants)  # SageMaker makes a person deregister before removing a variant
        ep.variants, ep.failure_reason = {"manual": 1.0}, ""
        ep.last_modified = max(world.now, ep.last_modified + 0.001)
        world.barred.clear()


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(OPS, min_size=30, max_size=120), steps=STEPS)
def test_failures_deletions_and_edits_never_loop_and_the_rollout_converges(
    ops: list[str], steps: tuple[int, ...]
) -> None:
    world = FailingWorld(policy=RolloutPolicy(Strategy.AB, steps, 600))
    checker = Checker(world)
    versions: list[int] = []
    for op in ops:
        if op in _BEHIND_ITS_BACK:
            _behind_its_back(world, op)
        else:
            _operate(world, op, versions)
        checker.check()
    world.firing.clear()
    world.endpoint.fail_next_update = ""
    if world.state and world.state.paused:
        world.state = world.state.evolve(world.now, "resume", paused=False)
    for _ in range(3):
        world.run(max_moves=200)
        checker.check()
    target = world.target
    if target is None or world.state is None:
        return
    assert world.state.phase in (Phase.STABLE, Phase.FAILED)
    if world.state.reason.startswith("repair failed: "):
        # SageMaker could not start the stable variant again after a person's change: reported, left alone.
        assert world.notifications.count(f"FAILED: {world.state.endpoint} repair") >= 1
        assert world.endpoint.failure_reason
        return
    if world.state.phase is Phase.STABLE:
        assert world.endpoint.variants == {target.variant: 1.0}
        assert world.endpoint.autoscaled == {target.variant}
        assert world.state.repair == ""
