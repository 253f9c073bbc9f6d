"""Property tests: whatever arrives, in whatever order and however often, the rollout stays safe.

Hypothesis drives random programs of approvals (new, repeated, older), rejections, alarms, operator
commands, duplicated triggers, passing time (with or without clients calling: zero-traffic steps),
`sagepilot:deploy` flipped false and back, and SageMaker finishing its updates, and checks after every
move that:
- the endpoint's traffic shares always sum to 1;
- the candidate's share only ever moves to the next configured step, or back to 0 (rollback);
- SageMaker never refuses a call (no update while Updating, no autoscaled variant removed);
- no promotion without the minimum evidence: a canary step moves on (or promotes) only when the candidate
  served the policy's minimum of invocations in it, unless an operator promoted it;
- with deploy=false nothing new is deployed (no endpoint created, no rollout started);
- a shadow test (strategy `shadow`) gives users none of the candidate's answers (its production share is 0,
  it is only a shadow variant) and ends (canary or promotion) only with the minimum evidence;
and at the end, once things settle, the newest Approved version serves all traffic, alone, autoscaled.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from sagepilot.domain import rollout as plan
from sagepilot.domain.rollout import AfterShadow, Command, Phase, RolloutPolicy, RolloutState, Strategy
from unit.rollout_world import World

# Weighted towards the moves that make progress, so that programs reach late steps and promotions.
_PROGRESS = ["tick"] * 8 + ["settle"] * 6 + ["duplicate", "wait"]
_DISRUPTIONS = ["approve_new", "approve_new", "approve_old", "reject_candidate", "reject_live", "alarm", "alarm_ok"]
_TRAFFIC = ["silence", "calls", "deploy_off", "deploy_on"]
_OPERATOR = ["pause", "resume", "promote", "rollback"]
OPS = st.sampled_from(_PROGRESS + _DISRUPTIONS + _OPERATOR + _TRAFFIC)
MIN_INVOCATIONS = 100
STEPS = st.sampled_from([(10, 50, 100), (100,), (5, 25, 50, 75, 100), (50, 100)])


class Checker:
    def __init__(self, world: World) -> None:
        self.world = world
        self.last: dict[str, float] = {}
        self.allowed = {0.0, *(s / 100 for s in world.policy.steps)}

    def check(self) -> None:
        for before, decision, evidence in self.world.moves:
            self._check_move(before, decision, evidence)
        self.world.moves.clear()
        self._check_shares()

    def _check_move(self, before: RolloutState | None, decision: plan.Decision, evidence: int | None) -> None:
        after = decision.state
        if before is None or after is None:
            if not self.world.deploy:
                assert not any(isinstance(a, plan.CreateEndpoint) for a in decision.actions), decision
            return
        if (
            before.phase is Phase.SHADOW
            and before.command is not Command.PROMOTE
            and after.phase in (Phase.CANARY, Phase.PROMOTING)
        ):
            assert (evidence or 0) >= self.world.policy.min_invocations, (before.history[-1:], evidence)
        if before.phase is Phase.CANARY and before.command is not Command.PROMOTE:
            moved_on = (after.phase is Phase.CANARY and after.step > before.step) or after.phase is Phase.PROMOTING
            if moved_on:
                assert (evidence or 0) >= self.world.policy.min_invocations, (
                    f"step {before.step} of v{before.candidate and before.candidate.version} moved on with "
                    f"{evidence} invocations, minimum {self.world.policy.min_invocations}"
                )
        if not self.world.deploy:
            assert not any(isinstance(a, (plan.CreateEndpoint, plan.NativeUpdate)) for a in decision.actions)
            started = before.phase is Phase.STABLE and after.phase in (
                Phase.CANARY,
                Phase.NATIVE,
                Phase.PROMOTING,
                Phase.SHADOW,
            )
            assert not started, f"deploy=false, yet {before.phase} -> {after.phase}"

    def _check_shares(self) -> None:
        shares = self.world.endpoint.shares()
        if self.world.endpoint.status is None or not shares:
            self.last = {}
            return
        assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-9), shares
        state = self.world.state
        if state and state.phase is Phase.SHADOW and state.candidate and self.world.endpoint.status == "InService":
            assert shares.get(state.candidate.variant, 0.0) == 0.0, f"users get the shadow's answers: {shares}"
            shadows = self.world.endpoint.shadows
            assert not shadows or (len(shadows) == 1 and len(shares) == 1), (shares, shadows)
        if len(shares) == 2 and self.world.state and self.world.state.candidate:
            candidate = self.world.state.candidate.variant
            share = round(shares.get(candidate, 0.0), 6)
            assert share in self.allowed, (share, self.allowed)
            before = self.last.get(candidate)
            if before is not None and share != before:
                steps = sorted(self.allowed - {0.0})
                nxt = next((s for s in steps if s > before), None)
                assert share == 0.0 or share == nxt, f"candidate moved {before} -> {share}, steps {steps}"
            self.last = {candidate: share}
        else:
            self.last = {}


def _operate(world: World, op: str, versions: list[int]) -> None:
    state = world.state
    if op == "approve_new":
        versions.append(versions[-1] + 1 if versions else 1)
        world.approve(versions[-1])
    elif op == "approve_old" and versions:
        world.approve(versions[0])
    elif op == "reject_candidate" and state and state.candidate:
        world.reject(state.candidate.version)
    elif op == "reject_live" and state and state.stable:
        world.reject(state.stable.version)
    elif op == "alarm" and state and state.candidate:
        world.firing.add(f"{state.candidate.variant}-5xx")
    elif op == "alarm_ok":
        world.firing.clear()
    elif op == "tick":
        world.advance(world.policy.bake_seconds / 2)
        world.reconcile()
    elif op in ("silence", "calls"):
        world.calling = op == "calls"
    elif op in ("deploy_off", "deploy_on"):
        world.deploy = op == "deploy_on"
    elif op == "duplicate":
        world.reconcile()
        world.reconcile()
    elif op == "settle":
        world.settle()
    elif op in ("pause", "resume") and state and state.phase in (Phase.CANARY, Phase.SHADOW):
        world.state = state.evolve(world.now, op, paused=op == "pause")
    elif op in ("promote", "rollback") and state and state.phase in (Phase.CANARY, Phase.SHADOW):
        world.state = state.evolve(world.now, op, command=Command(op))


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(OPS, min_size=30, max_size=120), steps=STEPS)
def test_any_sequence_of_events_keeps_the_rollout_safe_and_converges(ops: list[str], steps: tuple[int, ...]) -> None:
    world = World(policy=RolloutPolicy(Strategy.AB, steps, 600, min_invocations=MIN_INVOCATIONS, max_bake_seconds=1800))
    _run_and_converge(world, ops)


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(OPS, min_size=30, max_size=120),
    steps=STEPS,
    percent=st.sampled_from([1, 30, 100]),
    after=st.sampled_from(list(AfterShadow)),
)
def test_shadow_rollouts_keep_users_on_stable_until_passed_and_converge(
    ops: list[str], steps: tuple[int, ...], percent: int, after: AfterShadow
) -> None:
    policy = RolloutPolicy(
        Strategy.SHADOW,
        steps,
        600,
        min_invocations=MIN_INVOCATIONS,
        max_bake_seconds=1800,
        shadow_percent=percent,
        after_shadow=after,
    )
    _run_and_converge(World(policy=policy), ops)


def _run_and_converge(world: World, ops: list[str]) -> None:
    checker = Checker(world)
    versions: list[int] = []
    for op in ops:
        _operate(world, op, versions)
        checker.check()
    # Settle: alarms clear, operators let go, clients call, deployment is on, time passes; the newest Approved
    # version must end up alone.
    world.firing.clear()
    world.calling, world.deploy = True, True
    if world.state and world.state.paused:
        world.state = world.state.evolve(world.now, "resume", paused=False)
    for _ in range(3):
        world.run(max_moves=200)
        checker.check()
    target = world.target
    if target is None:
        return
    if world.state is None:
        assert world.endpoint.status is None
        return
    assert world.state.phase in (Phase.STABLE, Phase.FAILED)
    if world.state.phase is Phase.STABLE:
        assert world.endpoint.variants == {target.variant: 1.0}
        assert world.endpoint.autoscaled == {target.variant}
        assert world.endpoint.shadows == {}


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(OPS, min_size=10, max_size=60))
def test_every_decision_on_a_busy_endpoint_is_a_wait(ops: list[str]) -> None:
    world = World()
    versions: list[int] = []
    for op in ops:
        _operate(world, op, versions)
        if world.endpoint.status in ("Creating", "Updating"):
            decision = world.decide()
            assert decision.is_wait, decision
