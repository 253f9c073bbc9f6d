"""Rollout decisions: from what the registry wants and what the endpoint is doing, the one next move.

Everything here is plain data and pure functions. A service reads the persisted `RolloutState`, the
endpoint (`EndpointView`), the newest Approved package version of the group (`target`) and the
rollout's alarms that are in ALARM, calls `decide`, and applies the `Decision`: its actions (AWS calls)
and its new state. The state is the *desired* shape of the endpoint; each call moves the endpoint one
step towards it, or, when the endpoint already matches, moves the desired shape on (next canary step,
promotion, rollback). Because a decision depends only on its inputs, a duplicated, late or
re-ordered event leads to the same decision or to "wait", never to a second change.

Phases (per endpoint):

    CREATING      endpoint being created with `stable` as its only variant
    STABLE        `stable` serves all traffic; a newer approved version starts a rollout
    CANARY        `candidate` beside `stable`, at steps[step] percent, baking since step_started_at
    PROMOTING     `candidate` becomes the only variant (also used to revert to an older version)
    ROLLING_BACK  traffic back on `stable` at once, then `candidate` removed
    NATIVE        SageMaker's own blue/green update (CANARY / LINEAR / ALL_AT_ONCE) to `candidate`
    SHADOW        `candidate` as the endpoint's shadow variant beside `stable` (the only production variant):
                  it gets a copy of `shadow_percent` % of the requests, its answers are discarded; judged by
                  the canary gate on that mirrored traffic, then a canary from the first step (or promoted)
    FAILED        the endpoint failed to create; waits for another version or a person
    (STABLE with `repair` set: the stable variant is being put back after a change made by hand)

Policy for order and concurrency (documented in docs/rollouts.md):
- The target is always the newest Approved version of the group. Approving an older version than the
  live one therefore changes nothing; approving the same version twice changes nothing.
- A first deployment (no rollout recorded, no endpoint) that finds an older Approved version below the target
  (its first approval lost, late, or its handler dead with the lease held) creates the endpoint with the newest
  of those, the baseline, and the target then gets its rollout against it, as in-order delivery would have
  done: a crash or a delay never deploys a version without the care it would have had. A baseline whose
  images are not allowed is skipped (the target is deployed directly); one whose endpoint ends Failed is
  rejected as any first deployment, and the target is deployed.
- A newer approval during a canary supersedes it: the running candidate is rolled back (not marked
  Rejected), then the newer version is rolled out from the first step.
- Rejecting the candidate, an alarm of the rollout in ALARM, or an operator's rollback sends all
  traffic back to `stable` at once. An alarm or an operator rollback also marks the candidate Rejected
  in the registry with the reason, so that it is not rolled out again unless approved again; the
  Approved versions it had superseded (between the live one and it) go back to PendingManualApproval,
  so that none of them starts a canary by itself.
- Evidence: an `ab` step moves on (and the last one promotes) only once the candidate has served the
  policy's minimum of invocations in it, with no alarm firing; short of them past the longest bake, the
  step is held and announced once (NO TRAFFIC). Only an operator's promote skips it.
- `sagepilot:deploy=false`: nothing new is deployed; a running `ab` canary is rolled back (see `_disabled`).
- Rejecting the live version after a finished rollout reverts to the newest remaining Approved version
  at once (no canary: it was live before). Rejecting it during a canary or shadow test of the newest Approved
  version is said once (LIVE VERSION REJECTED); the test goes on by its rules, never cut short.
- An edit of the canary steps under a running canary is said (CANARY STEPS CHANGED); the step keeps its number
  (the last if past it), and its bake and evidence start again if its share changed.
- Nothing is sent to an endpoint that is not InService; the decision waits for its next state change.
- An update SageMaker could not apply (the candidate's container did not start: the endpoint is back
  InService on the old variants with a FailureReason newer than the update) is a verdict, not something
  to retry: the candidate is marked Rejected with SageMaker's reason and FAILED is announced once. A
  first deployment whose endpoint ends Failed is treated the same way.
- An endpoint that disappears is reported (ENDPOINT MISSING) and created again (with nothing Approved: said
  once, not created until a version is approved; never again with a live version no longer Approved); a
  change made by hand to a stable endpoint is undone, and once done the repaired variant gets back its
  autoscaling and alarms and the repair is announced (REPAIRED, with what had changed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sagepilot.domain.canary_gate import Assessment, ErrorComparison, GateSettings, Inconclusive
from sagepilot.domain.images import PARAMETER as IMAGES_PARAMETER
from sagepilot.domain.images import images_not_allowed, not_allowed_reason
from sagepilot.domain.model_versions import Release as Release
from sagepilot.domain.sequential import Verdict

BUSY_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
HISTORY_LIMIT = 50
_WEIGHT_TOLERANCE = 1e-6


class Phase(StrEnum):
    CREATING = "CREATING"
    STABLE = "STABLE"
    CANARY = "CANARY"
    PROMOTING = "PROMOTING"
    ROLLING_BACK = "ROLLING_BACK"
    NATIVE = "NATIVE"
    FAILED = "FAILED"
    SHADOW = "SHADOW"


class Strategy(StrEnum):
    """`AB`: our canary with two production variants; the others: SageMaker deployment guardrails."""

    AB = "ab"
    CANARY = "canary"
    LINEAR = "linear"
    ALL_AT_ONCE = "all-at-once"
    SHADOW = "shadow"  # a shadow test first (SageMaker ShadowProductionVariants), then `AB` (or a promotion)


class AfterShadow(StrEnum):
    """What a candidate shown not worse in its shadow test does next."""

    CANARY = "canary"  # the `ab` canary from its first step (users now get its answers, gradually)
    PROMOTE = "promote"  # straight to all traffic


class Command(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class RolloutPolicy:
    strategy: Strategy
    steps: tuple[int, ...]  # candidate's share in percent, strictly increasing, ending at 100
    bake_seconds: int
    # Evidence (`ab` only): a step moves on only once the candidate has served this many invocations in
    # it (0: no minimum); a step still short of them after `max_bake_seconds` (or the bake, if longer) is
    # held and announced (NO TRAFFIC), never promoted on silence.
    min_invocations: int = 0
    max_bake_seconds: int = 0
    # The statistical gate of `ab` steps where stable still serves (see domain.canary_gate).
    gate: GateSettings = field(default_factory=GateSettings)
    # `shadow`: the share of live requests SageMaker copies to the shadow variant, and what follows the test.
    shadow_percent: int = 100
    after_shadow: AfterShadow = AfterShadow.CANARY

    def __post_init__(self) -> None:
        if not self.steps or self.steps[-1] != 100:
            raise ValueError(f"canary steps must end at 100, got {self.steps}")
        if any(not 0 < s <= 100 for s in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise ValueError(f"canary steps must be strictly increasing percentages, got {self.steps}")
        if self.bake_seconds < 0:
            raise ValueError("bake time cannot be negative")
        if self.min_invocations < 0 or self.max_bake_seconds < 0:
            raise ValueError("the minimum of invocations and the longest bake cannot be negative")
        if not 1 <= self.shadow_percent <= 100:
            raise ValueError(f"the shadow's sampling percentage must be between 1 and 100, got {self.shadow_percent}")

    @property
    def judged_stages(self) -> int:
        """How many looks of one rollout the canary gate may act on (its level is split over them): each
        `ab` step where stable still serves, and the shadow test of a `shadow` rollout."""
        steps = sum(1 for s in self.steps if s < 100)
        if self.strategy is Strategy.SHADOW:
            return 1 + (steps if self.after_shadow is AfterShadow.CANARY else 0)
        return steps

    @property
    def held_after(self) -> int:
        """Seconds into a step after which a candidate still short of evidence is held (NO TRAFFIC)."""
        return max(self.bake_seconds, self.max_bake_seconds)

    @property
    def overdue_after(self) -> int:
        """Seconds into a canary or shadow step after which the rollout is late (RolloutOverdueSeconds, the
        rollout-stuck alarm): its bake; where the step waits for evidence (a minimum of invocations, or the
        statistical gate), the longest it waits before it is held and announced (NO TRAFFIC, INCONCLUSIVE), so
        that waiting for traffic is not reported as stuck before it is reported as what it is."""
        waits_for_evidence = self.min_invocations > 0 or (
            self.gate.enabled and self.strategy in (Strategy.AB, Strategy.SHADOW)
        )
        return self.held_after if waits_for_evidence else self.bake_seconds


@dataclass(frozen=True)
class VariantView:
    name: str
    weight: float  # CurrentWeight (relative)
    instances: int | None = None  # CurrentInstanceCount


@dataclass(frozen=True)
class EndpointView:
    """What DescribeEndpoint says, reduced to what decisions need."""

    status: str
    config_name: str
    variants: tuple[VariantView, ...]
    last_modified: float = 0.0  # epoch seconds
    failure_reason: str = ""
    # ShadowProductionVariants: weight relative to the production variant's = the share of requests copied.
    shadows: tuple[VariantView, ...] = ()

    @property
    def shadow_names(self) -> frozenset[str]:
        return frozenset(v.name for v in self.shadows)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(v.name for v in self.variants)

    def shares(self) -> dict[str, float]:
        """Each variant's share of traffic (weights are relative: 9 and 1 mean 90/10)."""
        total = sum(v.weight for v in self.variants)
        if total <= 0:
            return {v.name: 0.0 for v in self.variants}
        return {v.name: v.weight / total for v in self.variants}

    def instances(self, variant: str) -> int | None:
        return next((v.instances for v in self.variants if v.name == variant), None)


@dataclass(frozen=True)
class HistoryEntry:
    at: float
    what: str


@dataclass(frozen=True)
class RolloutState:
    endpoint: str
    group: str
    phase: Phase
    stable: Release | None
    candidate: Release | None = None
    step: int = 0
    step_started_at: float = 0.0
    paused: bool = False
    command: Command | None = None
    reason: str = ""
    reject_candidate: bool = False  # on finishing a rollback, mark the candidate Rejected
    incidents: tuple[str, ...] = ()  # alarms whose incident is open (see domain.health)
    started_at: float = 0.0  # when the running rollout (or revert) began
    cause: str = ""  # why a rollback runs: alarm | operator | rejected | superseded | gate | compared ... (metrics)
    # NATIVE: the endpoint's LastModifiedTime before the update was sent (SageMaker's clock, not ours),
    # so that a later InService with the old variant can only mean SageMaker rolled the update back.
    endpoint_modified_at: float = 0.0
    orphan_notified: bool = False
    # ENDPOINT MISSING was said for an endpoint that is not created again (deploy=false, or no version Approved).
    missing_notified: bool = False
    starved: bool = False  # NO TRAFFIC was announced for the running canary step
    inconclusive: bool = False  # INCONCLUSIVE (the gate's verdict at the longest bake) was announced for it
    # CANARY: the steps (percent) the running canary goes by, as read when it started or last said a change of
    # them (an edit of sagepilot:canary-steps under it is told by them; (): a record from before this field).
    steps: tuple[int, ...] = ()
    # CANARY / SHADOW: LIVE REJECTED was said for the running test (the live version is no longer Approved).
    live_rejected: bool = False
    # When the live (stable) variant began serving alone (0: unknown, a record from before this field).
    serving_since: float = 0.0
    # STABLE: what a person changed that is being undone (set when the repair is sent; the repair is
    # finished, announced and forgotten once the endpoint serves the stable variant alone again).
    repair: str = ""
    # Endpoint configs and models this stack created (or is about to create: recorded before the calls,
    # so that a move interrupted half-way leaves nothing CleanUp does not know of) for the endpoint.
    configs: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    # (subject, detail as JSON) of the notices of a move recorded as an intent, not sent yet: sent once
    # its actions have gone through (by this handler, or by whichever repairs the move after a crash).
    announcements: tuple[tuple[str, str], ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    def evolve(self, now: float, what: str = "", **changes: object) -> RolloutState:
        history = self.history
        if what:
            history = (*history, HistoryEntry(now, what))[-HISTORY_LIMIT:]
        return dataclasses.replace(self, history=history, **changes)  # type: ignore[arg-type]


# Actions: what the service must do against AWS, in order. -------------------------------------------
@dataclass(frozen=True)
class CreateEndpoint:
    release: Release


@dataclass(frozen=True)
class ApplyVariants:
    """UpdateEndpoint to a config with exactly these variants, after deregistering autoscaling from
    every variant the update removes (SageMaker refuses to remove an autoscaled variant)."""

    variants: tuple[tuple[Release, float], ...]  # (release, share)
    deregister: tuple[str, ...]
    # ShadowProductionVariants (with one production variant): (release, share of the requests copied to it).
    shadow: tuple[tuple[Release, float], ...] = ()


@dataclass(frozen=True)
class NativeUpdate:
    """UpdateEndpoint with SageMaker deployment guardrails replacing `remove` by `release`."""

    release: Release
    deregister: tuple[str, ...]
    strategy: Strategy


@dataclass(frozen=True)
class SetWeights:
    weights: tuple[tuple[str, float], ...]  # (variant, share)


@dataclass(frozen=True)
class RegisterAutoscaling:
    variant: str


@dataclass(frozen=True)
class CreateVariantAlarms:
    """The variant's 5xx and latency alarms (a candidate's roll it back; a live variant's open incidents),
    and for a variant that serves alone, its low-traffic alarm (scale-in)."""

    variant: str
    low_traffic: bool = False


@dataclass(frozen=True)
class DeleteVariantAlarms:
    variant: str


@dataclass(frozen=True)
class RejectInRegistry:
    release: Release
    description: str


@dataclass(frozen=True)
class WithdrawApprovals:
    """Set the group's Approved versions strictly between `newer_than` and `older_than` back to
    PendingManualApproval with `description`: they were superseded by a version that was then rolled
    back, and are not rolled out again unless a person approves them again."""

    newer_than: int
    older_than: int
    description: str


@dataclass(frozen=True)
class DeleteEndpoint:
    reason: str


@dataclass(frozen=True)
class CleanUp:
    """Delete the endpoint configs and models of this endpoint that the live config does not use."""


@dataclass(frozen=True)
class Notify:
    subject: str
    detail: Mapping[str, object] = field(default_factory=dict)


Action = (
    CreateEndpoint
    | ApplyVariants
    | NativeUpdate
    | SetWeights
    | RegisterAutoscaling
    | CreateVariantAlarms
    | DeleteVariantAlarms
    | RejectInRegistry
    | WithdrawApprovals
    | DeleteEndpoint
    | CleanUp
    | Notify
)


@dataclass(frozen=True)
class Decision:
    state: RolloutState | None
    actions: tuple[Action, ...] = ()
    # True: record the new state before acting (an intent, so that a crash mid-way is resumed);
    # False: act first, then record (finishing moves whose actions are safe to repeat).
    commit_first: bool = True
    note: str = ""

    @property
    def is_wait(self) -> bool:
        return not self.actions


def _wait(state: RolloutState | None, note: str) -> Decision:
    return Decision(state, (), note=note)


def _same_shares(view: EndpointView, wanted: Mapping[str, float]) -> bool:
    shares = view.shares()
    return view.names == frozenset(wanted) and all(
        abs(shares[name] - share) <= _WEIGHT_TOLERANCE for name, share in wanted.items()
    )


def canary_shares(state: RolloutState, policy: RolloutPolicy) -> dict[str, float]:
    assert state.stable and state.candidate
    share = policy.steps[min(state.step, len(policy.steps) - 1)] / 100
    return {state.stable.variant: round(1 - share, 6), state.candidate.variant: share}


def decide(
    state: RolloutState | None,
    view: EndpointView | None,
    target: Release | None,
    firing: tuple[str, ...],
    policy: RolloutPolicy,
    now: float,
    *,
    endpoint: str,
    group: str,
    deploy: bool = True,
    invocations: int | None = None,
    assessment: Assessment | None = None,
    live_approved: bool | None = None,
    comparison: ErrorComparison | None = None,
    baseline: Release | None = None,
) -> Decision:
    """The next move for one endpoint. `firing`: names of the rollout's alarms now in ALARM; `deploy`: the
    group's `sagepilot:deploy` setting as read for this decision; `invocations`: what the canary's
    candidate has served since its step began (None: not read); `assessment`: the canary gate's verdict on the
    step's evidence (None: not judged, e.g. at 100% or with the gate off); `live_approved`: whether the recorded
    live (stable) version is Approved in the registry now (None: not read; read during a canary or shadow test
    and for an endpoint that is gone); `comparison`: with the gate off, a baked step's error rates compared
    (None: not read, e.g. before the bake, at 100% or with the gate on); `baseline`: on a first deployment (no
    record, no endpoint), the newest Approved version below `target` that may be deployed (see `first_baseline`;
    None: there is none, or it was not read)."""
    if not deploy:
        disabled = _disabled(state, view, now)
        if disabled is not None:
            return disabled
    if state is None:
        return _first(view, target, policy, now, endpoint=endpoint, group=group, baseline=baseline)
    if state.phase is Phase.FAILED:
        return _failed(state, view, target, now)
    if view is None:
        if target is None:
            if state.phase is Phase.STABLE and not state.missing_notified:
                # Deleted outside sagepilot with nothing Approved to create it with: not created again, but never
                # in silence (said once, as when sagepilot:deploy is false); an approval creates it again.
                what = (
                    f"endpoint {state.endpoint} is gone (deleted outside sagepilot) and no version of {state.group} "
                    "is Approved: it is not created again. Approve a version to create it again with that version."
                )
                gone = state.evolve(now, what, missing_notified=True)
                return Decision(
                    gone, (Notify(f"ENDPOINT MISSING: {state.endpoint}", {**_facts(gone, what), "recreating": None}),)
                )
            if state.phase in (Phase.STABLE, Phase.CREATING):
                return _wait(state, "endpoint does not exist and no version is approved")
            # Gone in the middle of a move, with nothing left to recreate it with: the move is over (said
            # once); an approval later recreates the endpoint as for any missing one.
            what = (
                f"endpoint {state.endpoint} is gone (deleted outside sagepilot while {state.phase.value}) "
                "and no version is approved to create it again"
            )
            state = state.evolve(
                now, what, phase=Phase.STABLE, candidate=None, step=0, command=None, reason="", repair=""
            )
            return Decision(state, (Notify(f"ENDPOINT MISSING: {state.endpoint}", _facts(state, what)),))
        if state.phase is not Phase.CREATING:
            # Recreated with the version that was live, never with a newer one that had not earned its
            # promotion (a canary's candidate): that one starts its canary again once the endpoint serves.
            # An older target means the live version was rejected meanwhile: the newest Approved one; so does a
            # live version known to be no longer Approved (`live_approved`): a rejected version is not recreated.
            again = (
                state.stable
                if state.stable is not None and state.stable.version < target.version and live_approved is not False
                else target
            )
            what = (
                f"endpoint {state.endpoint} is gone (deleted outside sagepilot while {state.phase.value}"
                + (f" with v{state.stable.version}" if state.stable else "")
                + f"); creating it again with v{again.version}"
            )
            told = state.missing_notified  # ENDPOINT MISSING was said when it could not be created again
            state = state.evolve(
                now,
                what,
                phase=Phase.CREATING,
                stable=again,
                candidate=None,
                step=0,
                command=None,
                reason="",
                repair="",
                missing_notified=False,
            )
            if told:  # not said twice for one deletion: DEPLOYED says when it serves again
                return Decision(state, (CreateEndpoint(again),))
            missing = Notify(
                f"ENDPOINT MISSING: {state.endpoint}", {**_facts(state, what), "recreating": again.version}
            )
            return Decision(state, (CreateEndpoint(again), missing))
        return Decision(state, (CreateEndpoint(state.stable or target),))
    if view.status == "Failed":
        what = f"endpoint {state.endpoint} is Failed: {view.failure_reason or 'no reason given'}"
        failed = state.evolve(now, what, phase=Phase.FAILED, reason=view.failure_reason)
        if state.phase is Phase.CREATING and state.stable is not None:
            # SageMaker could not start the version being deployed: a verdict on it, as for an update.
            version = state.stable.version
            reason = f"SageMaker could not deploy v{version}: {view.failure_reason or 'no reason given'}"
            return Decision(
                failed,
                (
                    RejectInRegistry(state.stable, f"Failed to deploy (sagepilot): {reason}"),
                    Notify(f"FAILED: {state.endpoint} v{version}", {**_facts(failed, what), "failed": version}),
                ),
                commit_first=False,
            )
        return Decision(failed, (Notify(f"FAILED: {state.endpoint}", _facts(failed, what)),), commit_first=False)
    if view.status in BUSY_STATUSES:
        return _wait(state, f"endpoint is {view.status}; waiting for InService")
    if view.status != "InService":
        return _wait(state, f"endpoint status {view.status!r} is not one this control plane acts on")
    if not deploy and state.phase is Phase.STABLE:
        return _withheld(state, view, target, firing, policy, now)
    if state.phase is Phase.CANARY:
        return _canary(state, view, target, firing, policy, now, invocations, assessment, live_approved, comparison)
    if state.phase is Phase.SHADOW:
        return _shadow(state, view, target, firing, policy, now, invocations, assessment, live_approved, comparison)
    if state.phase is Phase.CREATING:
        # The version that goes next, if any (none while the group's sagepilot:deploy tag is false).
        return _creating(state, view, target if deploy else None, firing, policy, now)
    handler = {
        Phase.STABLE: _stable,
        Phase.CANARY: _canary,
        Phase.PROMOTING: _promoting,
        Phase.ROLLING_BACK: _rolling_back,
        Phase.NATIVE: _native,
    }[state.phase]
    return handler(state, view, target, firing, policy, now)


def newer_version_waits(decision: Decision, settled: RolloutState | None, target: Release | None) -> bool:
    """Whether the endpoint needs another move at once, once `decision` has been carried out (`settled`: the
    state it left). So it does when a finishing move (acted on, not recorded first: a rollback's end) left it
    STABLE on another version than the newest Approved one, `target`: a newer version that superseded the
    canary waited while the rollback finished; its rollout starts now, not at the next trigger."""
    return (
        not decision.commit_first
        and bool(decision.actions)
        and settled is not None
        and settled.phase is Phase.STABLE
        and target is not None
        and settled.stable is not None
        and target != settled.stable
    )


def _disabled(state: RolloutState | None, view: EndpointView | None, now: float) -> Decision | None:
    """`sagepilot:deploy=false`: nothing new is deployed. No endpoint is created (or created again), a
    failed one is not replaced, and a running `ab` canary is rolled back to the stable version (not
    marked Rejected: it rolls out again once deploy is true). None: the move that was under way goes on
    (an endpoint being created, a promotion or rollback, a SageMaker deployment, which cannot be stopped)."""
    if state is not None and state.phase is not Phase.FAILED and view is None and not state.missing_notified:
        # Deleted outside sagepilot while the group may not deploy: not created again, but never in silence.
        what = (
            f"endpoint {state.endpoint} is gone (deleted outside sagepilot while {state.phase.value}); the group's "
            "sagepilot:deploy tag is false, so it is not created again until the tag is true"
        )
        gone = state.evolve(now, what, missing_notified=True)
        return Decision(
            gone, (Notify(f"ENDPOINT MISSING: {state.endpoint}", {**_facts(gone, what), "recreating": None}),)
        )
    if state is None or state.phase is Phase.FAILED or view is None:
        what = "the group's sagepilot:deploy tag is false: nothing is deployed"
        return _wait(state, what)
    if state.phase not in (Phase.CANARY, Phase.SHADOW) or view.status != "InService":
        return None
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    test = "shadow test" if state.phase is Phase.SHADOW else "canary"
    reason = f"the group's sagepilot:deploy tag is false; the {test} of v{candidate.version} stops"
    back = state.evolve(
        now,
        f"rolling back: {reason}",
        phase=Phase.ROLLING_BACK,
        reason=reason,
        cause="disabled",
        reject_candidate=False,
        command=None,
        paused=False,
        endpoint_modified_at=view.last_modified,
    )
    both = frozenset({stable.variant, candidate.variant})
    first: Action = (
        SetWeights(((stable.variant, 1.0), (candidate.variant, 0.0)))
        if view.names == both
        else ApplyVariants(((stable, 1.0),), tuple(sorted(view.names - {stable.variant})))
    )
    return Decision(back, (first, Notify(f"ROLLING BACK: {state.endpoint} v{candidate.version}", _facts(back, reason))))


def _withheld(
    state: RolloutState,
    view: EndpointView,
    target: Release | None,
    firing: tuple[str, ...],
    policy: RolloutPolicy,
    now: float,
) -> Decision:
    """A stable endpoint of a group with deploy=false keeps serving its live version: drift is still
    repaired back to it, but no other version (newer, or older after a rejection) is deployed."""
    stable = state.stable
    assert stable
    if view.names != {stable.variant}:
        return _stable(state, view, stable, firing, policy, now)
    if target is None or target == stable:
        return _wait(state, "the group's sagepilot:deploy tag is false; serving the live version")
    what = (
        f"v{target.version} is the newest Approved version but the group's sagepilot:deploy tag is false: "
        f"{state.endpoint} keeps serving v{stable.version}. Set the tag to true to deploy it."
    )
    if state.history and state.history[-1].what == what:
        return _wait(state, what)
    return _wait(state.evolve(now, what), what)


def _update_failed(state: RolloutState, view: EndpointView) -> bool:
    """SageMaker rejected the update sent since `endpoint_modified_at`: the endpoint changed after it was
    sent and carries a FailureReason (SageMaker clears it when an update starts)."""
    return (
        bool(view.failure_reason) and state.endpoint_modified_at > 0 and view.last_modified > state.endpoint_modified_at
    )


def _start_failed(state: RolloutState, view: EndpointView, now: float) -> Decision:
    """SageMaker could not start the candidate and kept the old fleet: a verdict on it, not a retry."""
    candidate = state.candidate
    assert candidate
    reason = f"SageMaker could not deploy v{candidate.version}: {view.failure_reason}"
    failed = state.evolve(
        now,
        reason,
        phase=Phase.STABLE,
        candidate=None,
        step=0,
        reason="",
        reject_candidate=False,
        command=None,
        paused=False,
    )
    return Decision(
        failed,
        (
            DeleteVariantAlarms(candidate.variant),
            RejectInRegistry(candidate, f"Failed to deploy (sagepilot): {reason}"),
            CleanUp(),
            Notify(
                f"FAILED: {state.endpoint} v{candidate.version}",
                {**_facts(failed, reason), "failed": candidate.version},
            ),
        ),
        commit_first=False,
    )


_REPAIR_FAILED = "repair failed: "


def _facts(state: RolloutState, what: str) -> dict[str, object]:
    return {
        "endpoint": state.endpoint,
        "group": state.group,
        "phase": state.phase.value,
        "stable": state.stable.version if state.stable else None,
        "candidate": state.candidate.version if state.candidate else None,
        "what": what,
    }


def first_baseline(
    target: Release | None, below: Release | None, images: tuple[str, ...], allowed: tuple[str, ...]
) -> Release | None:
    """The version a first deployment creates the endpoint with before `target` gets its rollout: `below`, the
    newest Approved version older than the target, if its inference images (`images`) are allowed; None (the
    target is deployed directly) if there is none or its images are not allowed."""
    if target is None or below is None or below.version >= target.version:
        return None
    return None if images_not_allowed(images, allowed) else below


def _first(
    view: EndpointView | None,
    target: Release | None,
    policy: RolloutPolicy,
    now: float,
    *,
    endpoint: str,
    group: str,
    baseline: Release | None,
) -> Decision:
    if target is None:
        return _wait(None, f"group {group} has no approved version")
    if view is not None:
        return Decision(
            None,
            (
                Notify(
                    f"NOT MANAGED: {endpoint}",
                    {
                        "endpoint": endpoint,
                        "group": group,
                        "what": f"endpoint {endpoint} exists but this stack has no record of it, so it will not "
                        "touch it. Delete the endpoint, or point the group at another endpoint name with "
                        "the sagepilot:endpoint-name tag.",
                    },
                ),
            ),
        )
    if baseline is not None and baseline.version < target.version:
        # Held up (a lost or late first approval, a dead handler): what in-order delivery would have done.
        what = (
            f"v{baseline.version} deployed first as the baseline: v{target.version} (newer, Approved) gets its "
            f"{_rollout_kind(policy)} against it once {endpoint} is InService; creating endpoint {endpoint}"
        )
        state = RolloutState(endpoint=endpoint, group=group, phase=Phase.CREATING, stable=baseline).evolve(now, what)
        return Decision(state, (CreateEndpoint(baseline),))
    state = RolloutState(endpoint=endpoint, group=group, phase=Phase.CREATING, stable=target).evolve(
        now, f"v{target.version} approved; creating endpoint {endpoint}"
    )
    return Decision(state, (CreateEndpoint(target),))


def _rollout_kind(policy: RolloutPolicy) -> str:
    """The rollout a newer version gets under `policy`, as a person reads it."""
    if policy.strategy is Strategy.AB:
        return "canary"
    if policy.strategy is Strategy.SHADOW:
        return "shadow test"
    return f"SageMaker {policy.strategy.value} deployment"


def _failed(state: RolloutState, view: EndpointView | None, target: Release | None, now: float) -> Decision:
    if target is None or target == state.stable:
        return _wait(state, "endpoint failed; waiting for another approved version (see the notification)")
    if view is not None:
        if view.status in BUSY_STATUSES:
            return _wait(state, f"endpoint is {view.status}")
        return Decision(state, (DeleteEndpoint(f"v{target.version} approved; replacing the failed endpoint"),))
    created = state.evolve(
        now,
        f"v{target.version} approved; creating endpoint again",
        phase=Phase.CREATING,
        stable=target,
        candidate=None,
        reason="",
    )
    return Decision(created, (CreateEndpoint(target),))


def _creating(
    state: RolloutState,
    view: EndpointView,
    target: Release | None,
    firing: tuple[str, ...],
    policy: RolloutPolicy,
    now: float,
) -> Decision:
    assert state.stable
    if view.names != {state.stable.variant}:
        return _wait(state, f"endpoint serves {sorted(view.names)}, expected {state.stable.variant}")
    what = f"endpoint {state.endpoint} InService with v{state.stable.version}"
    if target is not None and target.version > state.stable.version:
        # A baseline (see `_first`), or the live version put back on an endpoint that was gone: said, so that an
        # operator sees why an older version was deployed (`target` is None where nothing new is deployed).
        what += f"; v{target.version} (newer, Approved) gets its {_rollout_kind(policy)} against it next"
    done = state.evolve(now, what, phase=Phase.STABLE, serving_since=now)
    actions: tuple[Action, ...] = (
        RegisterAutoscaling(state.stable.variant),
        CreateVariantAlarms(state.stable.variant, low_traffic=True),
        Notify(f"DEPLOYED: {state.endpoint} v{state.stable.version}", _facts(done, what)),
    )
    return Decision(done, actions, commit_first=False)


def _stable(
    state: RolloutState,
    view: EndpointView,
    target: Release | None,
    firing: tuple[str, ...],
    policy: RolloutPolicy,
    now: float,
) -> Decision:
    stable = state.stable
    assert stable
    if state.command is not None:
        state = state.evolve(now, f"operator {state.command.value} ignored: no rollout running", command=None)
    if view.names != {stable.variant}:
        # Drift (a change made by hand, or a crash between two moves): back to the recorded shape.
        extra = tuple(sorted(view.names - {stable.variant}))
        if state.repair and _update_failed(state, view):
            # SageMaker could not start the stable variant again: said once, not sent again until the
            # endpoint changes (a person's next update clears the FailureReason).
            what = (
                f"{_REPAIR_FAILED}SageMaker could not put v{stable.version} back on {state.endpoint} "
                f"({state.repair}): {view.failure_reason}. The endpoint is left as it is; fix it by hand."
            )
            failed = state.evolve(now, what, repair="", reason=what, endpoint_modified_at=view.last_modified)
            return Decision(
                failed,
                (Notify(f"FAILED: {state.endpoint} repair", _facts(failed, what)),),
                commit_first=False,
            )
        if (
            state.reason.startswith(_REPAIR_FAILED)
            and view.failure_reason
            and view.last_modified <= state.endpoint_modified_at
        ):
            return _wait(state, "the repair failed (see the notification); waiting for the endpoint to change")
        what = state.repair or (
            f"endpoint {state.endpoint} served {', '.join(sorted(view.names)) or 'no variant'} "
            f"(config {view.config_name}) instead of {stable.variant} (v{stable.version}) alone"
        )
        repairing = state.evolve(
            now,
            "" if state.repair else f"drift: {what}; putting it back",
            repair=what,
            reason="",
            endpoint_modified_at=view.last_modified,
        )
        return Decision(repairing, (ApplyVariants(((stable, 1.0),), extra),), note="repairing drift")
    if state.repair:
        what = f"repaired: {state.repair}; v{stable.version} serves alone again, with its autoscaling and alarms"
        repaired = state.evolve(now, what, repair="")
        return Decision(
            repaired,
            (
                RegisterAutoscaling(stable.variant),
                CreateVariantAlarms(stable.variant, low_traffic=True),
                CleanUp(),
                Notify(f"REPAIRED: {state.endpoint}", {**_facts(repaired, what), "changed": state.repair}),
            ),
            commit_first=False,
        )
    if target is None:
        if state.orphan_notified:
            return _wait(state, "no approved version; serving the last one")
        what = (
            f"no version of {state.group} is Approved any more; {state.endpoint} keeps serving v{stable.version}. "
            "Approve a version to deploy it, or delete the endpoint."
        )
        return Decision(
            state.evolve(now, what, orphan_notified=True),
            (Notify(f"NO APPROVED VERSION: {state.endpoint}", _facts(state, what)),),
            commit_first=False,
        )
    if target == stable:
        return _wait(state.evolve(now, orphan_notified=False) if state.orphan_notified else state, "up to date")
    if target.version < stable.version:
        what = f"v{stable.version} is no longer Approved; reverting to v{target.version}, the newest Approved"
        reverting = state.evolve(
            now,
            what,
            phase=Phase.PROMOTING,
            candidate=target,
            reason=what,
            step=0,
            orphan_notified=False,
            started_at=now,
            endpoint_modified_at=view.last_modified,
        )
        return Decision(
            reverting,
            (
                ApplyVariants(((target, 1.0),), (stable.variant,)),
                Notify(f"REVERTING: {state.endpoint}", _facts(reverting, what)),
            ),
        )
    if policy.strategy is Strategy.SHADOW:
        return _start_shadow(state, view, target, policy, now)
    if policy.strategy is not Strategy.AB:
        what = f"v{target.version} approved; SageMaker {policy.strategy.value} deployment from v{stable.version}"
        native = state.evolve(
            now,
            what,
            phase=Phase.NATIVE,
            started_at=now,
            candidate=target,
            step_started_at=now,
            reason="",
            endpoint_modified_at=view.last_modified,
        )
        return Decision(
            native,
            (CreateVariantAlarms(target.variant), NativeUpdate(target, (stable.variant,), policy.strategy)),
        )
    what = f"v{target.version} approved; canary at {policy.steps[0]}% beside v{stable.version}"
    canary = _test_started(state, view, target, Phase.CANARY, what, now, steps=policy.steps)
    shares = canary_shares(canary, policy)
    return Decision(
        canary,
        (
            CreateVariantAlarms(target.variant),
            ApplyVariants(((stable, shares[stable.variant]), (target, shares[target.variant])), ()),
            Notify(f"ROLLOUT STARTED: {state.endpoint} v{target.version}", _facts(canary, what)),
        ),
    )


def _rollback_reason(
    state: RolloutState, target: Release | None, firing: tuple[str, ...]
) -> tuple[str, bool, str] | None:
    """Why the running candidate must go, whether to mark it Rejected, and the cause's short name;
    None if it may stay."""
    candidate = state.candidate
    assert candidate
    if firing:
        return f"alarm {', '.join(sorted(firing))} in ALARM during the canary of v{candidate.version}", True, "alarm"
    if state.command is Command.ROLLBACK:
        return f"operator rolled back v{candidate.version}", True, "operator"
    if target is None or target.version < candidate.version:
        return f"v{candidate.version} is no longer Approved", False, "rejected"
    if target.version > candidate.version:
        return f"v{target.version} approved; it supersedes the canary of v{candidate.version}", False, "superseded"
    return None


def _test_started(
    state: RolloutState,
    view: EndpointView,
    target: Release,
    phase: Phase,
    what: str,
    now: float,
    steps: tuple[int, ...] = (),
) -> RolloutState:
    """The state of a canary or shadow test of `target` starting now: its first step (of `steps`, for a canary),
    and nothing left over from the test before it (command, pause, reason, notices, the gate's flags)."""
    return state.evolve(
        now,
        what,
        phase=phase,
        started_at=now,
        candidate=target,
        step=0,
        step_started_at=now,
        paused=False,
        command=None,
        reason="",
        reject_candidate=False,
        orphan_notified=False,
        starved=False,
        inconclusive=False,
        steps=steps,
        live_rejected=False,
        endpoint_modified_at=view.last_modified,
    )


def _rollback_move(
    state: RolloutState,
    view: EndpointView,
    target: Release | None,
    firing: tuple[str, ...],
    policy: RolloutPolicy,
    now: float,
    invocations: int | None,
    assessment: Assessment | None,
    comparison: ErrorComparison | None = None,
) -> tuple[RolloutState, str] | None:
    """The state of a canary or shadow test that must roll back (an alarm, the operator, the registry, or the
    gate's verdict unless the operator promotes; with the gate off, the baked step's error rates compared), with
    the reason; None if the candidate may stay."""
    cause = _rollback_reason(state, target, firing)
    if cause is None and assessment is not None and state.command is not Command.PROMOTE:
        cause = _gate_rollback(state, policy, assessment, invocations, now)
    if cause is None and comparison is not None and comparison.worse and state.command is not Command.PROMOTE:
        cause = _compared_rollback(state, comparison)
    if cause is None:
        return None
    reason, reject, short = cause
    back = state.evolve(
        now,
        f"rolling back: {reason}",
        phase=Phase.ROLLING_BACK,
        reason=reason,
        cause=short,
        reject_candidate=reject,
        command=None,
        paused=False,
        endpoint_modified_at=view.last_modified,
    )
    return back, reason


def _canary(
    state: RolloutState,
    view: EndpointView,
    target: Release | None,
    firing: tuple[str, ...],
    policy: RolloutPolicy,
    now: float,
    invocations: int | None = None,
    assessment: Assessment | None = None,
    live_approved: bool | None = None,
    comparison: ErrorComparison | None = None,
) -> Decision:
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    both = frozenset({stable.variant, candidate.variant})
    if candidate.variant not in view.names and _update_failed(state, view):
        return _start_failed(state, view, now)
    rolling_back = _rollback_move(state, view, target, firing, policy, now, invocations, assessment, comparison)
    if rolling_back is not None:
        back, reason = rolling_back
        first: Action = (
            SetWeights(((stable.variant, 1.0), (candidate.variant, 0.0)))
            if view.names == both
            else ApplyVariants(((stable, 1.0),), tuple(sorted(view.names - {stable.variant})))
        )
        return Decision(
            back, (first, Notify(f"ROLLING BACK: {state.endpoint} v{candidate.version}", _facts(back, reason)))
        )
    state, notices = _live_approval(state, policy, now, live_approved)
    if state.command is not Command.PROMOTE and state.steps and state.steps != policy.steps:
        state, edited, restarted = _steps_edited(state, policy, now)
        notices = (*notices, edited)
        if restarted:
            invocations, assessment = None, None  # measured at the old share: the step's evidence starts again
    return _with_notices(_canary_on(state, view, policy, now, invocations, assessment), notices)


def _canary_on(
    state: RolloutState,
    view: EndpointView,
    policy: RolloutPolicy,
    now: float,
    invocations: int | None,
    assessment: Assessment | None,
) -> Decision:
    """A canary that is not rolled back: promoted, its shape (re)applied, held, or moved on."""
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    both = frozenset({stable.variant, candidate.variant})
    if state.command is Command.PROMOTE or (
        view.names == both
        and _same_shares(view, canary_shares(state, policy))
        and state.step >= len(policy.steps) - 1  # steps shortened by a tag edit: the last one
        and now >= state.step_started_at + policy.bake_seconds
        and not state.paused
        and _has_evidence(policy, invocations)
    ):
        how = "operator promoted" if state.command is Command.PROMOTE else "baked at 100%"
        what = f"{how}; promoting v{candidate.version}, removing v{stable.version}"
        promoting = state.evolve(now, what, phase=Phase.PROMOTING, command=None, paused=False, reason=how)
        deregister = tuple(sorted(view.names - {candidate.variant}))
        return Decision(promoting, (ApplyVariants(((candidate, 1.0),), deregister),))
    shares = canary_shares(state, policy)
    if view.names != both:
        # The candidate is not (or no longer) beside the stable variant: (re)apply the recorded shape.
        extra = tuple(sorted(view.names - both))
        return Decision(
            state.evolve(now, endpoint_modified_at=view.last_modified),
            (
                CreateVariantAlarms(candidate.variant),
                ApplyVariants(((stable, shares[stable.variant]), (candidate, shares[candidate.variant])), extra),
            ),
            note="adding the candidate",
        )
    if not _same_shares(view, shares):
        return Decision(state, (SetWeights(tuple(shares.items())),), note="weights to the recorded step")
    if state.paused:
        return _wait(state, "paused by an operator")
    if assessment is not None:
        gated = _gated(state, policy, assessment, invocations, now)
        if gated is not None:
            return gated
    due = state.step_started_at + policy.bake_seconds
    if now < due:
        return _wait(state, f"baking step {state.step + 1}/{len(policy.steps)} for {due - now:.0f} s more")
    if not _has_evidence(policy, invocations):
        return _short_of_evidence(state, policy, invocations, now)
    served = f", {invocations} invocations" if policy.min_invocations and invocations is not None else ""
    return _next_step(state, policy, now, f"v{candidate.version} healthy after {policy.bake_seconds} s{served}")


def _next_step(state: RolloutState, policy: RolloutPolicy, now: float, why: str) -> Decision:
    """The canary moves on to its next step (its evidence and hold flags start afresh)."""
    step = state.step + 1
    nxt = state.evolve(
        now,
        f"{why}; shifting to {policy.steps[step]}%",
        step=step,
        step_started_at=now,
        starved=False,
        inconclusive=False,
    )
    return Decision(nxt, (SetWeights(tuple(canary_shares(nxt, policy).items())),))


def _percents(steps: tuple[int, ...]) -> str:
    return ",".join(str(s) for s in steps)


def _steps_edited(state: RolloutState, policy: RolloutPolicy, now: float) -> tuple[RolloutState, Notify, bool]:
    """The group's canary steps (sagepilot:canary-steps) changed under the running canary: said (a line in the
    history and a notice, with the old and new steps and the candidate's share now). The canary keeps its step
    (one at or past the new last step is the last); if that step's share changed, its bake and its evidence start
    again at the new share (none measured at the old share counts for it). Also whether they did."""
    candidate = state.candidate
    assert candidate
    old = state.steps
    before = old[min(state.step, len(old) - 1)]
    step = min(state.step, len(policy.steps) - 1)
    share = policy.steps[step]
    where = f"step {step + 1}/{len(policy.steps)}"
    restarted = share != before
    if restarted:
        what = (
            f"canary steps changed from {_percents(old)} to {_percents(policy.steps)} (sagepilot:canary-steps): "
            f"v{candidate.version} goes from {before}% to {share}% of the traffic ({where}); the step's bake and "
            f"evidence start again at {share}%"
        )
        edited = state.evolve(
            now, what, steps=policy.steps, step=step, step_started_at=now, starved=False, inconclusive=False
        )
    else:
        what = (
            f"canary steps changed from {_percents(old)} to {_percents(policy.steps)} (sagepilot:canary-steps): "
            f"v{candidate.version} stays at {share}% ({where}); the step's bake goes on"
        )
        edited = state.evolve(now, what, steps=policy.steps, step=step)
    detail = {
        **_facts(edited, what),
        "previousSteps": list(old),
        "steps": list(policy.steps),
        "previousShare": before,
        "share": share,
    }
    return edited, Notify(f"CANARY STEPS CHANGED: {state.endpoint} v{candidate.version}", detail), restarted


def _live_approval(
    state: RolloutState, policy: RolloutPolicy, now: float, live_approved: bool | None
) -> tuple[RolloutState, tuple[Action, ...]]:
    """The live (stable) version's approval during a canary or shadow test (`live_approved`; None: not read).
    Rejected: the test goes on by its own rules (never cut short: the candidate is promoted only on its full
    evidence; what the live version serves meanwhile is what it would serve at rest beside a newer Approved
    version), said once (LIVE VERSION REJECTED) with what happens next and what a person may do."""
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    if live_approved and state.live_rejected:
        return state.evolve(now, f"v{stable.version} is Approved again", live_rejected=False), ()
    if live_approved is not False or state.live_rejected:
        return state, ()
    test = "shadow test" if state.phase is Phase.SHADOW else "canary"
    what = (
        f"v{stable.version}, the live version, is no longer Approved in the registry while v{candidate.version} is "
        f"judged {_where(state, policy)}. The {test} goes on by its rules, not cut short: "
        f"v{candidate.version} is promoted only on its full evidence, and v{stable.version} then leaves the endpoint. "
        f"If the {test} is rolled back, v{stable.version} serves alone until, as for a live version rejected at "
        "rest, the newest Approved version replaces it (an older one at once); with none, "
        f"v{stable.version} keeps serving (NO APPROVED VERSION). To take v{stable.version} out of service now: "
        f"sagepilot promote {state.endpoint} (v{candidate.version} gets all traffic on the evidence so far); "
        f"if the rejection was a mistake, approve v{stable.version} again."
    )
    said = state.evolve(now, what, live_rejected=True)
    return said, (Notify(f"LIVE VERSION REJECTED: {state.endpoint} v{stable.version}", _facts(said, what)),)


def _with_notices(decision: Decision, notices: tuple[Action, ...]) -> Decision:
    """`decision` with `notices` sent after its actions (recorded with its intent when it is recorded first)."""
    if not notices:
        return decision
    return dataclasses.replace(decision, actions=(*decision.actions, *notices))


def _gate_rollback(
    state: RolloutState, policy: RolloutPolicy, assessment: Assessment, invocations: int | None, now: float
) -> tuple[str, bool, str] | None:
    """The gate's reasons to roll back (the candidate marked Rejected with them): shown worse on a metric, or
    a step still undecided at its longest bake in a group whose `on-inconclusive` policy is rollback."""
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    worst = assessment.worst()
    if worst is not None:
        return (
            f"canary analysis: v{candidate.version} is worse than v{stable.version} on {worst.metric} "
            f"({worst.describe()})",
            True,
            "gate",
        )
    if (
        assessment.verdict is Verdict.CONTINUE
        and policy.gate.on_inconclusive is Inconclusive.ROLLBACK
        and _has_evidence(policy, invocations)
        and now - state.step_started_at >= policy.held_after
    ):
        return (
            f"canary analysis inconclusive after {now - state.step_started_at:.0f} s "
            f"({assessment.summary()}); the group's policy is to roll back",
            True,  # Rejected too: else the same approval would start the same canary again
            "inconclusive",
        )
    return None


def _compared_rollback(state: RolloutState, comparison: ErrorComparison) -> tuple[str, bool, str]:
    """With the gate off, the reason to roll back a candidate whose baked step's error rate exceeds stable's by
    more than the margin (the candidate marked Rejected with it): a plain comparison, said as such."""
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    return (
        f"error rates compared: v{candidate.version} is worse than v{stable.version} on errors "
        f"({comparison.describe(f'v{stable.version}', f'v{candidate.version}')})",
        True,
        "compared",
    )


def _gated(
    state: RolloutState,
    policy: RolloutPolicy,
    assessment: Assessment,
    invocations: int | None,
    now: float,
    move_on: Callable[[RolloutState, RolloutPolicy, float, str], Decision] | None = None,
) -> Decision | None:
    """The gate's move for a step that is not rolled back; None: the bake and evidence rules decide (the
    candidate is short of its minimum of invocations: it waits, and is held as NO TRAFFIC, as without the gate).
    `move_on`: how the rollout moves on from where it is (the next step by default; the end of a shadow test)."""
    candidate = state.candidate
    assert candidate
    if not _has_evidence(policy, invocations):
        return None
    elapsed = now - state.step_started_at
    if assessment.verdict is Verdict.NOT_WORSE or (
        elapsed >= policy.held_after and policy.gate.on_inconclusive is Inconclusive.PROMOTE
    ):
        why = (
            "not worse than stable"
            if assessment.verdict is Verdict.NOT_WORSE
            else "inconclusive at the longest bake (the group's policy: promote)"
        )
        return (move_on or _next_step)(
            state,
            policy,
            now,
            f"canary analysis: v{candidate.version} {why} after {elapsed:.0f} s, {invocations} invocations "
            f"({assessment.summary()})",
        )
    if elapsed < policy.held_after or state.inconclusive:
        held = " (held: INCONCLUSIVE)" if state.inconclusive else ""
        return _wait(state, f"canary analysis collecting evidence{held}: {assessment.summary()}")
    where = _where(state, policy)
    what = (
        f"INCONCLUSIVE: the canary analysis of v{candidate.version} {where} is undecided after {elapsed:.0f} s "
        f"({assessment.summary()}); held {where} (it moves on or rolls back as soon as the evidence "
        "decides), or decide: sagepilot promote / rollback."
    )
    held_state = state.evolve(now, what, inconclusive=True)
    return Decision(
        held_state, (Notify(f"INCONCLUSIVE: {state.endpoint} v{candidate.version}", _facts(held_state, what)),)
    )


def _withdraw(stable: Release, candidate: Release) -> WithdrawApprovals:
    """Versions between the live one and a candidate that was rolled back (by an alarm, an operator or
    SageMaker's guardrails) were superseded by it: they do not roll out by themselves once it is gone."""
    return WithdrawApprovals(
        stable.version,
        candidate.version,
        f"Superseded by v{candidate.version}, which was rolled back; sagepilot will not roll this version out "
        "unless it is approved again.",
    )


def _has_evidence(policy: RolloutPolicy, invocations: int | None) -> bool:
    """Whether the candidate served enough in its step to judge it (unknown counts as nothing served)."""
    return policy.min_invocations <= 0 or (invocations or 0) >= policy.min_invocations


def _short_of_evidence(state: RolloutState, policy: RolloutPolicy, invocations: int | None, now: float) -> Decision:
    """Baked, no alarm, but too few invocations to tell: wait for them; past the longest bake, hold the
    step and say so once (NO TRAFFIC). Silence never promotes."""
    candidate = state.candidate
    assert candidate
    where = _where(state, policy)
    served = invocations or 0
    elapsed = now - state.step_started_at
    if state.starved or elapsed < policy.held_after:
        return _wait(
            state,
            f"v{candidate.version} served {served} of the {policy.min_invocations} invocations needed {where}; "
            "waiting for traffic" + (" (held: NO TRAFFIC)" if state.starved else ""),
        )
    what = (
        f"NO TRAFFIC: v{candidate.version} served {served} of the {policy.min_invocations} invocations needed "
        f"{where} in {elapsed:.0f} s; the {'shadow test' if state.phase is Phase.SHADOW else 'canary'} is held "
        f"{where} and will not be promoted on silence. Send it "
        "traffic (it moves on once it has enough), or decide: sagepilot promote / rollback."
    )
    held = state.evolve(now, what, starved=True)
    return Decision(held, (Notify(f"NO TRAFFIC: {state.endpoint} v{candidate.version}", _facts(held, what)),))


def _promoting(
    state: RolloutState,
    view: EndpointView,
    target: Release | None,
    firing: tuple[str, ...],
    policy: RolloutPolicy,
    now: float,
) -> Decision:
    candidate = state.candidate
    assert candidate
    if candidate.variant not in view.names and _update_failed(state, view):
        return _start_failed(state, view, now)  # e.g. a revert to an older version that SageMaker could not start
    if view.names != {candidate.variant} or view.shadows:
        deregister = tuple(sorted(view.names - {candidate.variant}))
        return Decision(
            state.evolve(now, endpoint_modified_at=view.last_modified),
            (ApplyVariants(((candidate, 1.0),), deregister),),
            note="removing the old variant",
        )
    previous = state.stable
    what = f"v{candidate.version} serves all traffic" + (f" (was v{previous.version})" if previous else "")
    done = state.evolve(
        now,
        what,
        phase=Phase.STABLE,
        stable=candidate,
        candidate=None,
        step=0,
        reason="",
        reject_candidate=False,
        serving_since=now if candidate != previous else state.serving_since,
    )
    retired = (DeleteVariantAlarms(previous.variant),) if previous and previous != candidate else ()
    actions: tuple[Action, ...] = (
        RegisterAutoscaling(candidate.variant),
        CreateVariantAlarms(candidate.variant, low_traffic=True),
        *retired,
        CleanUp(),
        Notify(f"PROMOTED: {state.endpoint} v{candidate.version}", _facts(done, what)),
    )
    return Decision(done, actions, commit_first=False)


def _rolling_back(
    state: RolloutState,
    view: EndpointView,
    target: Release | None,
    firing: tuple[str, ...],
    policy: RolloutPolicy,
    now: float,
) -> Decision:
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    if view.names == {stable.variant} and not view.shadows:
        what = f"rolled back to v{stable.version}: {state.reason}"
        done = state.evolve(now, what, phase=Phase.STABLE, candidate=None, step=0, reason="", reject_candidate=False)
        actions: list[Action] = [
            RegisterAutoscaling(stable.variant),
            CreateVariantAlarms(stable.variant, low_traffic=True),
            DeleteVariantAlarms(candidate.variant),
        ]
        if state.reject_candidate:
            actions.append(RejectInRegistry(candidate, f"Rolled back by sagepilot: {state.reason}"))
            actions.append(_withdraw(stable, candidate))
        actions += [CleanUp(), Notify(f"ROLLED BACK: {state.endpoint} v{candidate.version}", _facts(done, what))]
        return Decision(done, tuple(actions), commit_first=False)
    if stable.variant not in view.names and _update_failed(state, view):
        # Putting the stable variant back (someone had removed it) is what SageMaker could not start: said
        # once, not sent again; the endpoint is left to a person as a failed repair is.
        what = (
            f"{_REPAIR_FAILED}SageMaker could not put v{stable.version} back on {state.endpoint} while rolling "
            f"back v{candidate.version} ({state.reason}): {view.failure_reason}. The endpoint is left as it is; "
            "fix it by hand."
        )
        done = state.evolve(
            now,
            what,
            phase=Phase.STABLE,
            candidate=None,
            step=0,
            reason=what,
            reject_candidate=False,
            endpoint_modified_at=view.last_modified,
        )
        rejected: tuple[Action, ...] = (
            (RejectInRegistry(candidate, f"Rolled back by sagepilot: {state.reason}"),)
            if state.reject_candidate
            else ()
        )
        return Decision(
            done,
            (
                DeleteVariantAlarms(candidate.variant),
                *rejected,
                Notify(f"FAILED: {state.endpoint} repair", _facts(done, what)),
            ),
            commit_first=False,
        )
    if stable.variant in view.names and view.shares().get(candidate.variant, 0.0) > _WEIGHT_TOLERANCE:
        weights = tuple((name, 1.0 if name == stable.variant else 0.0) for name in sorted(view.names))
        return Decision(state, (SetWeights(weights),), note="all traffic to the stable variant")
    extra = tuple(sorted(view.names - {stable.variant}))
    return Decision(
        state.evolve(now, endpoint_modified_at=view.last_modified),
        (ApplyVariants(((stable, 1.0),), extra),),
        note="removing the candidate",
    )


def _native(
    state: RolloutState,
    view: EndpointView,
    target: Release | None,
    firing: tuple[str, ...],
    policy: RolloutPolicy,
    now: float,
) -> Decision:
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    if view.names == {candidate.variant}:
        what = f"SageMaker deployment finished: v{candidate.version} serves all traffic"
        done = state.evolve(now, what, phase=Phase.STABLE, stable=candidate, candidate=None, serving_since=now)
        return Decision(
            done,
            (
                RegisterAutoscaling(candidate.variant),
                CreateVariantAlarms(candidate.variant, low_traffic=True),
                DeleteVariantAlarms(stable.variant),
                CleanUp(),
                Notify(f"PROMOTED: {state.endpoint} v{candidate.version}", _facts(done, what)),
            ),
            commit_first=False,
        )
    if view.names == {stable.variant} and view.last_modified > state.endpoint_modified_at:
        # The update ran and SageMaker put the old fleet back: its auto-rollback alarms fired.
        reason = f"SageMaker rolled back the {policy.strategy.value} deployment of v{candidate.version}"
        if view.failure_reason:
            reason += f": {view.failure_reason}"
        done = state.evolve(now, reason, phase=Phase.STABLE, candidate=None, reason="")
        return Decision(
            done,
            (
                RegisterAutoscaling(stable.variant),
                DeleteVariantAlarms(candidate.variant),
                RejectInRegistry(candidate, f"Rolled back by SageMaker deployment guardrails: {reason}"),
                _withdraw(stable, candidate),
                CleanUp(),
                Notify(f"ROLLED BACK: {state.endpoint} v{candidate.version}", _facts(done, reason)),
            ),
            commit_first=False,
        )
    extra = tuple(sorted(view.names - {candidate.variant}))
    return Decision(state, (NativeUpdate(candidate, extra, policy.strategy),), note="starting the SageMaker deployment")


# Shadow tests ------------------------------------------------------------------------------------------
def _where(state: RolloutState, policy: RolloutPolicy) -> str:
    """Where the candidate is being judged, for the history and notices."""
    if state.phase is Phase.SHADOW:
        return f"in its shadow test ({policy.shadow_percent}% of requests copied to it)"
    return f"at {policy.steps[min(state.step, len(policy.steps) - 1)]}%"


def _shadow_shape(stable: Release, candidate: Release, policy: RolloutPolicy) -> ApplyVariants:
    """The endpoint of a shadow test: stable the only production variant, the candidate its shadow."""
    return ApplyVariants(((stable, 1.0),), (), shadow=((candidate, round(policy.shadow_percent / 100, 6)),))


def _is_shadow_shape(view: EndpointView, stable: Release, candidate: Release, policy: RolloutPolicy) -> bool:
    if view.names != {stable.variant} or view.shadow_names != {candidate.variant}:
        return False
    production = sum(v.weight for v in view.variants)
    copied = view.shadows[0].weight / production if production > 0 else 0.0
    return abs(copied - policy.shadow_percent / 100) <= _WEIGHT_TOLERANCE


def _start_shadow(
    state: RolloutState, view: EndpointView, target: Release, policy: RolloutPolicy, now: float
) -> Decision:
    stable = state.stable
    assert stable
    what = (
        f"v{target.version} approved; shadow test beside v{stable.version}: {policy.shadow_percent}% of the requests "
        "copied to it, its answers discarded (no user sees them)"
    )
    shadow = _test_started(state, view, target, Phase.SHADOW, what, now)
    return Decision(
        shadow,
        (
            CreateVariantAlarms(target.variant),
            _shadow_shape(stable, target, policy),
            Notify(f"ROLLOUT STARTED: {state.endpoint} v{target.version}", _facts(shadow, what)),
        ),
    )


def _after_shadow(state: RolloutState, policy: RolloutPolicy, now: float, why: str) -> Decision:
    """The shadow test is passed: users start getting the candidate's answers (a canary from its first step,
    or all of them at once, per the group's `shadow-then`)."""
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    if policy.after_shadow is AfterShadow.PROMOTE:
        what = f"{why}; promoting v{candidate.version}, removing v{stable.version}"
        promoting = state.evolve(
            now, what, phase=Phase.PROMOTING, command=None, paused=False, reason="shadow test passed"
        )
        return Decision(promoting, (ApplyVariants(((candidate, 1.0),), (stable.variant,)),))
    canary = state.evolve(
        now,
        f"{why}; canary at {policy.steps[0]}% beside v{stable.version}",
        phase=Phase.CANARY,
        step=0,
        step_started_at=now,
        starved=False,
        inconclusive=False,
        steps=policy.steps,
    )
    shares = canary_shares(canary, policy)
    return Decision(
        canary, (ApplyVariants(((stable, shares[stable.variant]), (candidate, shares[candidate.variant])), ()),)
    )


def _shadow(
    state: RolloutState,
    view: EndpointView,
    target: Release | None,
    firing: tuple[str, ...],
    policy: RolloutPolicy,
    now: float,
    invocations: int | None = None,
    assessment: Assessment | None = None,
    live_approved: bool | None = None,
    comparison: ErrorComparison | None = None,
) -> Decision:
    """A shadow test: the candidate gets a copy of live requests, users get stable's answers only. Rolled back
    (the shadow removed) on an alarm of the candidate, the gate's WORSE (without the gate, its baked error rates
    compared), an operator or a newer approval; passed on the gate's NOT_WORSE with its minimum of invocations
    (or, without the gate, after the bake)."""
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    if candidate.variant not in view.shadow_names and _update_failed(state, view):
        return _start_failed(state, view, now)
    rolling_back = _rollback_move(state, view, target, firing, policy, now, invocations, assessment, comparison)
    if rolling_back is not None:
        back, reason = rolling_back
        extra = tuple(sorted(view.names - {stable.variant}))
        return Decision(
            back,
            (
                ApplyVariants(((stable, 1.0),), extra),
                Notify(f"ROLLING BACK: {state.endpoint} v{candidate.version}", _facts(back, reason)),
            ),
        )
    state, notices = _live_approval(state, policy, now, live_approved)
    return _with_notices(_shadow_on(state, view, policy, now, invocations, assessment), notices)


def _shadow_on(
    state: RolloutState,
    view: EndpointView,
    policy: RolloutPolicy,
    now: float,
    invocations: int | None,
    assessment: Assessment | None,
) -> Decision:
    """A shadow test that is not rolled back: promoted, its shape (re)applied, held, or passed."""
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    if state.command is Command.PROMOTE:
        what = f"operator promoted; promoting v{candidate.version} from its shadow test, removing v{stable.version}"
        promoting = state.evolve(
            now, what, phase=Phase.PROMOTING, command=None, paused=False, reason="operator promoted"
        )
        deregister = tuple(sorted(view.names - {candidate.variant}))
        return Decision(promoting, (ApplyVariants(((candidate, 1.0),), deregister),))
    if not _is_shadow_shape(view, stable, candidate, policy):
        # Not (or no longer, or at another sampling percentage) the recorded shape: (re)apply it.
        shape = _shadow_shape(stable, candidate, policy)
        extra = tuple(sorted(view.names - {stable.variant}))
        return Decision(
            state.evolve(now, endpoint_modified_at=view.last_modified),
            (CreateVariantAlarms(candidate.variant), dataclasses.replace(shape, deregister=extra)),
            note="the candidate as the shadow variant",
        )
    if state.paused:
        return _wait(state, "paused by an operator")
    if assessment is not None:
        gated = _gated(state, policy, assessment, invocations, now, move_on=_after_shadow)
        if gated is not None:
            return gated
    due = state.step_started_at + policy.bake_seconds
    if now < due:
        return _wait(state, f"shadow test for {due - now:.0f} s more")
    if not _has_evidence(policy, invocations):
        return _short_of_evidence(state, policy, invocations, now)
    served = f", {invocations} invocations" if policy.min_invocations and invocations is not None else ""
    return _after_shadow(
        state, policy, now, f"shadow test: v{candidate.version} healthy after {policy.bake_seconds} s{served}"
    )


# Inference images (ImageRepositoriesAllowed) ----------------------------------------------------------------
@dataclass(frozen=True)
class ImageRefusal:
    """An Approved version the rollout never deploys: its inference image(s) come from a repository the stack's
    ImageRepositoriesAllowed does not allow. It is marked Rejected with `description` (so that no later trigger
    takes it again, and the registry says why), announced once (`subject`, `detail`), and `what` is the line
    in the endpoint's history; what is live keeps serving."""

    release: Release
    images: tuple[str, ...]  # those not allowed
    description: str
    subject: str
    detail: Mapping[str, object]
    what: str


def needs_image_check(state: RolloutState | None, target: Release | None) -> bool:
    """The newest Approved version is checked before it goes anywhere near the endpoint: unless it is already
    there (the live version or the running candidate, checked when they were deployed)."""
    if target is None:
        return False
    return state is None or target not in (state.stable, state.candidate)


def refuse_image(
    target: Release,
    images: tuple[str, ...],
    allowed: tuple[str, ...],
    state: RolloutState | None,
    *,
    endpoint: str,
    group: str,
) -> ImageRefusal | None:
    """None if every inference image of `target` is in an allowed repository; the refusal otherwise."""
    foreign = images_not_allowed(images, allowed)
    if not foreign:
        return None
    reason = not_allowed_reason(foreign, allowed)
    live = state.stable if state is not None else None
    what = (
        f"v{target.version} of {group} is not deployed to {endpoint}: its {reason}. It is marked Rejected; "
        + (f"v{live.version} keeps serving" if live is not None else "nothing is deployed")
        + ". Register and approve a version whose inference image is in an allowed repository, or have the "
        f"operator add its repository to the stack parameter {IMAGES_PARAMETER}."
    )
    detail: dict[str, object] = {
        "endpoint": endpoint,
        "group": group,
        "version": target.version,
        "modelPackageArn": target.package_arn,
        "imagesNotAllowed": list(foreign),
        "allowed": list(allowed),
        "parameter": IMAGES_PARAMETER,
        "stable": live.version if live is not None else None,
        "what": what,
    }
    return ImageRefusal(
        release=target,
        images=foreign,
        description=f"Not deployed (sagepilot): {reason}",
        subject=f"IMAGE NOT ALLOWED: {group} v{target.version}",
        detail=detail,
        what=what,
    )
