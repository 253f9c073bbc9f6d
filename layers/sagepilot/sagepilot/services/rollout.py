"""Reconcile an endpoint toward what the registry wants, one safe move per trigger.

Every trigger (a registry approval or rejection, an endpoint state change, a rollout alarm, an
operator command, the periodic schedule) comes down to `reconcile(endpoint)`: take the endpoint's
lease, read the recorded state, the endpoint, the newest Approved version and the rollout's alarms,
ask `domain.rollout.decide` for the next move, apply it, record it, and (an alarm's trigger, or the schedule)
hand the alarms to `EndpointHealth` (services/endpoint_health.py) before letting go. No waiting happens here:
bake times elapse between triggers, and an endpoint that is Updating is left alone until its next
state-change event (or the next scheduled reconcile).

Crash safety: a move whose state is recorded first (an intent) records with it the names of the models
and endpoint config it is about to create and the notices it will send; the notices go out once its
calls have gone through, by this handler or by the one that repairs the move after a crash. A registry
trigger records its group with the lease, so that the schedule deploys a first approval whose handler
died before recording anything.

Images: a version is deployed only if its inference image(s) are in the stack's ImageRepositoriesAllowed;
another is announced (IMAGE NOT ALLOWED), marked Rejected, and never reaches the endpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagepilot.adapters.alarms import VariantAlarms
from sagepilot.adapters.autoscaling import VariantAutoscaling
from sagepilot.adapters.endpoints import EndpointBusy, Endpoints
from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import GroupNotFound, ModelRegistry
from sagepilot.adapters.rollout_reports import RolloutReports
from sagepilot.adapters.rollout_state import Lease, LeaseBusy, NotManaged, RolloutStore
from sagepilot.clock import epoch
from sagepilot.domain import ownership
from sagepilot.domain import rollout as plan
from sagepilot.domain.canary_gate import Assessment, ErrorComparison
from sagepilot.domain.deployment import Deployment, InvalidGroupSettings, resolve, resolve_under_way
from sagepilot.domain.names import endpoint_config_name, endpoint_model_name, rollout_alarm_names
from sagepilot.domain.rollout import Phase, Release, RolloutState, Strategy
from sagepilot.domain.statuses import RolloutResult
from sagepilot.errors import CapacityError, TransientError
from sagepilot.events import AlarmSignal, EndpointSignal, PackageChanged, RolloutTrigger
from sagepilot.metrics import NONE, SECONDS, NoRecorder, Recorder
from sagepilot.observability import logger
from sagepilot.services.canary_analysis import compare_step, judge_step, record_look
from sagepilot.services.endpoint_health import EndpointHealth
from sagepilot.settings import RolloutSettings

_MAX_RERUNS = 3
_MAX_IMAGE_REFUSALS = 5  # Approved versions refused for their image in one move (each is marked Rejected)
_NOT_MANAGED = "no rollout record for this endpoint: not managed by this stack"


@dataclass
class Outcome:
    endpoint: str
    result: RolloutResult
    phase: str = ""
    actions: list[str] = field(default_factory=list)
    note: str = ""
    again: bool = False  # a finishing move left another move due at once (e.g. a superseding version)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", []) and k != "again"}


@dataclass
class _Move:
    """One move under a lease: the state as far as the move got (`state`), and what is saved of it
    (`lease.state`)."""

    lease: Lease
    state: RolloutState | None = None
    forgotten: bool = False  # the endpoint's record was forgotten (retired): no lease left to let go of


class Rollouts:
    def __init__(
        self,
        settings: RolloutSettings,
        store: RolloutStore,
        registry: ModelRegistry,
        endpoints: Endpoints,
        autoscaling: VariantAutoscaling,
        alarms: VariantAlarms,
        notifier: Notifier,
        health: EndpointHealth,
        clock: Callable[[], float] = epoch,
        metrics: Recorder | None = None,
        reports: RolloutReports | None = None,
    ) -> None:
        self._settings = settings
        self._reports = reports  # the canary gate's reports (None: not kept)
        self._store = store
        self._registry = registry
        self._endpoints = endpoints
        self._autoscaling = autoscaling
        self._alarms = alarms
        self._notifier = notifier
        self._health = health  # what an alarm means, once the move is done (and a quota refusal)
        self._clock = clock
        self._metrics: Recorder = metrics or NoRecorder()
        # Group tags as read for the trigger being handled: every trigger reads them afresh (a person's
        # change to a group's settings takes effect for the next decision), at most once per group.
        self._tags: dict[str, dict[str, str]] = {}
        # When this process last looked for groups approved but never deployed (`_missed_first_approvals`).
        self._looked_for_missed_at = -math.inf

    # Triggers ---------------------------------------------------------------------------------------
    def handle(self, trigger: RolloutTrigger) -> list[Outcome]:
        """The one entry point of the handler: what each kind of trigger reconciles."""
        if isinstance(trigger, PackageChanged):
            return [self.on_package_change(trigger.group)]
        if isinstance(trigger, EndpointSignal):
            return [self.on_endpoint_signal(trigger.endpoint)]
        if isinstance(trigger, AlarmSignal):
            return [self.on_alarm(trigger.endpoint, trigger.alarm)]
        return self.on_schedule()

    def on_package_change(self, group: str) -> Outcome:
        """An approval or rejection in the registry: reconcile the group's endpoint."""
        self._tags.clear()
        try:
            # Read fresh (tags are read once per trigger): a person's change to the group's tags (e.g. its endpoint
            # name, or sagepilot:deploy) counts for this approval.
            deployment = self.deployment(group)
        except InvalidGroupSettings as exc:
            what_to_do = (
                "Fix the group's sagepilot: tags: nothing was deployed; the reconcile schedule deploys the approved "
                f"version within {_duration(self._settings.stable_check_seconds)} of the fix (or approve it again to "
                "deploy it at once)."
            )
            self._notifier.publish(
                f"INVALID SETTINGS: model package group {group}",
                {"group": group, "what": str(exc), "whatToDo": what_to_do},
            )
            logger.error("group settings are invalid", extra={"group": group, "error": str(exc)})
            return Outcome(endpoint="", result="invalid", note=str(exc))
        except GroupNotFound:
            return Outcome(endpoint="", result="ignored", note=f"model package group {group} does not exist")
        if not deployment.enabled and self._store.group_of(deployment.endpoint) is None:
            return Outcome(deployment.endpoint, "ignored", note="the group's sagepilot:deploy tag is false")
        # deploy=false on a managed endpoint: the decision itself holds (and says so in the history).
        return self.reconcile(deployment.endpoint, group)

    def on_endpoint_signal(self, endpoint: str) -> Outcome:
        """An endpoint state change, a rollout alarm or an operator command for a managed endpoint."""
        self._tags.clear()
        return self.reconcile(endpoint, None)

    def on_alarm(self, endpoint: str, alarm: str) -> Outcome:
        """An alarm of a managed endpoint changed state: the endpoint's move under its lease (a canary's alarm
        rolls it back), then, still under the lease, the alarm judged by `EndpointHealth` (an incident, its
        recovery, or a scale-in). A trigger that finds the lease taken leaves its alarm to the lease's holder
        (`RolloutStore.acquire(alarm=)`), which judges it before letting go."""
        self._tags.clear()
        return self.reconcile(endpoint, None, alarm=alarm)

    def on_schedule(self) -> list[Outcome]:
        """Periodic repair: every endpoint in a rollout, and each stable one now and then (a lost event
        must not leave an approval undeployed for long)."""
        self._tags.clear()
        now = self._clock()
        outcomes = []
        overdue = 0.0
        recorded, pending = self._store.survey()
        # A group with two recorded endpoints is moving to a new name: its old endpoint is looked at on every
        # pass (it is retired once the new one serves), not only every STABLE_CHECK_SECONDS.
        per_group = Counter(state.group for state, _ in recorded)
        renaming = {g for g, endpoints in per_group.items() if endpoints > 1}
        live: dict[str, str] | None = None
        for state, checked_at in recorded:
            if state.phase in (Phase.CANARY, Phase.SHADOW) and not state.paused:
                overdue = max(overdue, now - state.step_started_at - self._overdue_after(state.group))
            if (
                state.phase is Phase.STABLE
                and now - checked_at < self._settings.stable_check_seconds
                and state.group not in renaming
            ):
                # Checked lately; but an endpoint deleted out of band sends no event this stack hears of:
                # one ListEndpoints per run finds those (gone, or being deleted) within one period.
                if live is None:
                    live = self._endpoints.statuses(f"{self._settings.name_prefix}-")
                if live.get(state.endpoint, "Deleting") != "Deleting":
                    continue
            outcomes.append(self.reconcile(state.endpoint, state.group, scheduled=True))
        for endpoint, group in pending:
            # A registry trigger whose handler died before recording anything (its lease expires):
            # nobody else would come back to it.
            outcomes.append(self.reconcile(endpoint, group, scheduled=True))
        known = {state.group for state, _ in recorded} | {group for _, group in pending}
        outcomes += self._missed_first_approvals(now, known)
        self._metrics.emit("ReconcileRuns")
        self._metrics.emit("RolloutOverdueSeconds", max(0.0, overdue), SECONDS)
        return outcomes

    def _missed_first_approvals(self, now: float, known: set[str]) -> list[Outcome]:
        """Groups with an Approved version and no endpoint this stack records: a first approval whose event was
        lost, or whose tags were invalid then and fixed since (every later approval has a record the schedule
        repairs). Once per STABLE_CHECK_SECONDS per process: one ListModelPackageGroups (a call per 100 groups),
        then one ListModelPackages per group with no record. A group whose tags are invalid or say deploy=false,
        or whose endpoint another group owns, is left as it is (each was said when it was approved)."""
        if now - self._looked_for_missed_at < self._settings.stable_check_seconds:
            return []
        self._looked_for_missed_at = now
        outcomes = []
        for group in self._registry.group_names():
            if not group.startswith(self._settings.deployable_group_prefix) or group in known:
                continue  # another stack's group (the approval rule's filter), or one this stack records
            if self._registry.newest_approved(group) is None:
                continue
            try:
                deployment = self.deployment(group)
            except (InvalidGroupSettings, GroupNotFound):
                continue
            if deployment.enabled and self._store.group_of(deployment.endpoint) is None:
                logger.warning("an approved group was never deployed: deploying it", extra={"group": group})
                outcomes.append(self.reconcile(deployment.endpoint, group, scheduled=True))
        return outcomes

    def _overdue_after(self, group: str) -> int:
        try:
            return self.deployment(group).rollout.overdue_after
        except (InvalidGroupSettings, GroupNotFound):
            return self._settings.defaults.rollout.overdue_after

    # The loop ---------------------------------------------------------------------------------------
    def reconcile(
        self, endpoint: str, group: str | None, *, alarm: str | None = None, scheduled: bool = False
    ) -> Outcome:
        if group is None and self._store.group_of(endpoint) is None:
            # A trigger naming no group (an endpoint change, an alarm, an operator's command) about an
            # endpoint this stack has no record of: decided by a read, so that it writes nothing.
            return Outcome(endpoint, "ignored", note=_NOT_MANAGED)
        owner = f"reconcile-{uuid.uuid4()}"
        try:
            lease = self._store.acquire(
                endpoint, owner, self._clock(), group=group, existing=group is None, alarm=alarm
            )
        except LeaseBusy:
            holder = self._store.group_of(endpoint) if group is not None else None
            if group is not None and holder is not None and holder != group:
                return self._refuse(endpoint, group, holder, None)
            handed = f" and judge {alarm}" if alarm is not None else ""
            return Outcome(
                endpoint, "deferred", note=f"another handler is acting on this endpoint; it will rerun{handed}"
            )
        except NotManaged:
            return Outcome(endpoint, "ignored", note=_NOT_MANAGED)
        # The owner is the group recorded with the lease (written only if none was: see `acquire`), so of two
        # groups naming one endpoint exactly one gets it.
        holder = lease.state.group if lease.state else lease.group
        if group is not None and holder is not None and holder != group:
            try:
                refused = self._refuse(endpoint, group, holder, lease)
            except BaseException:
                self._store.release(lease, self._clock(), force=True)
                raise
            if self._store.release(lease, self._clock()):
                return refused
            # Another trigger for the owner's endpoint came meanwhile: reconcile it for the owner.
            lease = dataclasses.replace(lease, state=self._store.read(endpoint))
            group = None
        move = _Move(lease, lease.state)
        outcome = Outcome(endpoint, "waiting")
        try:
            for _ in range(_MAX_RERUNS):
                outcome = self._step(move, group, alarm, scheduled)
                if move.forgotten:
                    return outcome  # the record and its lease are gone together (`RolloutStore.forget`)
                if outcome.again:
                    move = self._again(move)
                    continue
                # Nothing recorded and nothing to repair: the group left with the lease goes too.
                if self._store.release(move.lease, self._clock(), forget=move.lease.state is None):
                    return outcome
                move = self._again(move)
        except BaseException:
            # Hand the lease back (the error is re-raised); a rerun asked for meanwhile stays flagged, and
            # so does the group a registry trigger left (the schedule comes back to it).
            self._store.release(move.lease, self._clock(), force=True)
            raise
        # Still more to do after the reruns: let go; the flag (if any) brings the next holder back to it.
        self._store.release(move.lease, self._clock(), force=True)
        return outcome

    def _refuse(self, endpoint: str, group: str, owner: str, lease: Lease | None) -> Outcome:
        """`group` names `endpoint`, which `owner` owns: INVALID SETTINGS for `group`, a line in the endpoint's
        history (when the lease is ours), and nothing else: nothing deployed, nothing of the owner's changed.
        Once per version the group wants deployed: a redelivered event finds its line and says nothing again."""
        what = ownership.refusal(endpoint, group, owner)
        wanted = self._registry.newest_approved(group)
        line = f"refused group {group} ({f'v{wanted.version}' if wanted else 'no version'} approved): it names " + (
            f"{endpoint}, which belongs to group {owner}"
        )
        state = lease.state if lease is not None else self._store.read(endpoint)
        if state is not None and any(h.what == line for h in state.history):
            return Outcome(endpoint, "invalid", note=f"{what} (already reported)")
        detail = {"group": group, "endpoint": endpoint, "owner": owner, "what": what}
        self._notifier.publish(f"INVALID SETTINGS: model package group {group}", detail)
        logger.error("endpoint owned by another group", extra=detail)
        if lease is not None and lease.state is not None:
            self._store.save(lease, lease.state.evolve(self._clock(), line), self._clock())
        return Outcome(endpoint, "invalid", note=what)

    def _again(self, move: _Move) -> _Move:
        # A rerun serves the triggers that came meanwhile (an approval handed over with the lease, say): the
        # group's tags are read again, or a version tagged for a shadow test would go out with the old settings.
        self._tags.clear()
        lease = self._store.reread(move.lease)
        return _Move(lease, lease.state)

    def _save(self, move: _Move, state: RolloutState) -> None:
        move.lease = self._store.save(move.lease, state, self._clock())
        move.state = state

    def _step(self, move: _Move, group_hint: str | None, alarm: str | None, scheduled: bool) -> Outcome:
        state, endpoint = move.lease.state, move.lease.endpoint
        group = state.group if state else (move.lease.group or group_hint)
        if group is None:
            return Outcome(endpoint, "ignored", note=_NOT_MANAGED)
        group_gone = under_way_invalid = False
        now = self._clock()
        try:
            deployment = self.deployment(group)  # as read for this trigger (see `deployment`)
        except InvalidGroupSettings as exc:
            if state is None or state.phase in ownership.AT_REST:
                return Outcome(endpoint, "invalid", note=str(exc))
            # A rollout under way: it goes on (and rolls back on its alarms and commands) with the invalid tags
            # left at the stack's defaults, said once; nothing new is deployed on them (the branch above).
            deployment, state = self._under_way_settings(state, group, endpoint, exc, now)
            move.state, under_way_invalid = state, True
        except GroupNotFound:
            deployment = self._settings.defaults
            group_gone = True
        view = self._endpoints.describe(endpoint)
        if state is not None and group_gone and view is None:
            return self._forget(move, state, f"group {group} and endpoint {endpoint} are both gone; forgotten", now)
        if not group_gone and deployment.endpoint != endpoint:
            if state is None:
                # A trigger recorded the group with the lease, then the group was pointed elsewhere: nothing here.
                return Outcome(endpoint, "ignored", note=f"group {group} now deploys to {deployment.endpoint}")
            if state.phase in ownership.AT_REST:
                return self._retire(move, state, view, deployment.endpoint, now)
        # A first deployment (nothing recorded, no endpoint) starts from the version below the target, if any: the
        # two newest Approved versions are read with one call on that path only (the same one call as the others).
        first = state is None and view is None
        newest, below = (
            self._registry.two_newest_approved(group) if first else (self._registry.newest_approved(group), None)
        )
        target, state = self._allowed_target(state, newest, group, endpoint, now)
        baseline = self._baseline(target, newest, below, group, endpoint) if first else None
        if under_way_invalid and state and state.candidate and target and target.version > state.candidate.version:
            target = state.candidate  # a newer approval waits for valid tags; the rollout under way goes on
        firing: tuple[str, ...] = ()
        invocations: int | None = None
        assessment: Assessment | None = None
        comparison: ErrorComparison | None = None
        if state and state.candidate and state.phase in (Phase.CANARY, Phase.SHADOW):
            firing = self._alarms.firing(endpoint, state.candidate.variant)
            assessment = judge_step(self._alarms, state, deployment, now)
            # The gate off: once baked (below 100%), the same one call for the plain comparison of the error rates.
            comparison = compare_step(self._alarms, state, deployment, now) if assessment is None else None
            evidence = assessment.evidence if assessment else comparison.evidence if comparison else None
            if evidence is not None:
                # The gate's one GetMetricData call also gave the candidate's invocations in the step.
                invocations = evidence.candidate.invocations
            elif (
                deployment.rollout.min_invocations > 0
                and now >= state.step_started_at + deployment.rollout.bake_seconds
            ):
                # The evidence of the step (read only once it has baked: before, it decides nothing).
                invocations = self._alarms.invocations(endpoint, state.candidate.variant, state.step_started_at, now)
        decision = plan.decide(
            state,
            view,
            target,
            firing,
            deployment.rollout,
            now,
            endpoint=endpoint,
            group=group,
            deploy=deployment.enabled,
            invocations=invocations,
            assessment=assessment,
            live_approved=self._live_approved(state, view, target),
            comparison=comparison,
            baseline=baseline,
        )
        if assessment is not None and state is not None and self._reports is not None:
            record_look(self._reports, state, decision, assessment, deployment.rollout.steps)
        outcome = Outcome(
            endpoint,
            "acted" if decision.actions else "waiting",
            phase=(decision.state.phase.value if decision.state else ""),
            actions=[type(a).__name__ for a in decision.actions],
            note=decision.note,
        )
        actions = decision.actions
        move.state = decision.state
        if decision.state is not None and decision.commit_first:
            move.state, actions = self._intent(decision.state, actions, view, deployment, endpoint)
            if move.state != state:
                self._save(move, move.state)
        try:
            self._apply(move, actions, view, deployment, endpoint)
            move.state = self._announce(move.state)
        except EndpointBusy as exc:
            outcome.result, outcome.note = "waiting", str(exc)
        except CapacityError as exc:
            outcome.result, outcome.note = "waiting", str(exc)
            move.state = self._health.quota_reported(move.state, exc, deployment, now)
        applied = move.state
        # This trigger's alarm, and those handed over by triggers that found the lease taken (see `acquire`).
        alarms = tuple(dict.fromkeys((*((alarm,) if alarm is not None else ()), *move.lease.alarms)))
        if applied is not None and (alarms or scheduled):
            # The endpoint as read for the move, unless the move changed it (then read it again).
            current = view if not decision.actions else None
            applied, notes = self._health.judge_all(applied, alarms, deployment, now, current, scheduled=scheduled)
            outcome.note = "; ".join(n for n in (outcome.note, *notes) if n)
        if applied is not None and applied != move.lease.state:
            self._save(move, applied)
        shifted = outcome.result == "acted"
        moved_to = next((a for a in actions if isinstance(a, plan.SetWeights)), None) if shifted else None
        self._record(state, applied, view, now, moved_to)
        # A rollback finished while a newer version waits (it superseded the canary): start it now.
        outcome.again = plan.newer_version_waits(decision, applied, target)
        logger.info("reconciled", extra=outcome.as_dict())
        return outcome

    def _live_approved(
        self, state: RolloutState | None, view: plan.EndpointView | None, target: Release | None
    ) -> bool | None:
        """Whether the recorded live version is Approved now, where a decision depends on it (None: not read): a
        canary or shadow test of the newest Approved version (a rejected live version is said), and an endpoint
        that is gone while a version is approved (a rejected live version is not created again)."""
        if state is None or state.stable is None or target is None:
            return None
        testing = state.phase in (Phase.CANARY, Phase.SHADOW) and target == state.candidate
        if not testing and view is not None:
            return None
        return self._registry.approval_status(state.stable.package_arn) == "Approved"

    def _allowed_target(
        self, state: RolloutState | None, target: Release | None, group: str, endpoint: str, now: float
    ) -> tuple[Release | None, RolloutState | None]:
        """The newest Approved version the endpoint may run, and the state with what was refused on the way: a
        version whose inference image is outside ImageRepositoriesAllowed is announced (once: a line in the
        endpoint's history stops a repeat while its rejection fails), marked Rejected, and the next newest
        Approved one is taken (the live version, usually: it keeps serving). A redelivered approval or a later
        reconcile no longer sees the rejected version: nothing is said twice."""
        for _ in range(_MAX_IMAGE_REFUSALS):
            if not plan.needs_image_check(state, target):
                return target, state
            assert target is not None
            images = self._registry.inference_images(target.package_arn)
            refusal = plan.refuse_image(
                target, images, self._settings.image_repositories, state, endpoint=endpoint, group=group
            )
            if refusal is None:
                return target, state
            told = state is not None and any(h.what == refusal.what for h in state.history)
            if not told:
                self._notifier.publish(refusal.subject, dict(refusal.detail))
                if state is not None:
                    state = state.evolve(now, refusal.what)
            logger.error("inference image not allowed; version rejected", extra=dict(refusal.detail))
            self._registry.reject(target.package_arn, refusal.description)
            target = self._registry.newest_approved(group)
        raise TransientError(
            f"more than {_MAX_IMAGE_REFUSALS} Approved versions of {group} have inference images the stack does not "
            "allow; each was rejected, and the next reconcile goes on with the rest"
        )

    def _baseline(
        self, target: Release | None, newest: Release | None, below: Release | None, group: str, endpoint: str
    ) -> Release | None:
        """The version a first deployment creates the endpoint with before `target` gets its rollout: `below`, the
        newest Approved one under `newest` (read again under `target` if the newest was refused for its image), if
        its inference images are allowed (one DescribeModelPackage); None otherwise (the target is deployed
        directly)."""
        if target is None:
            return None
        if target != newest:
            below = self._registry.newest_approved(group, below=target.version)
        if below is None:
            return None
        images = self._registry.inference_images(below.package_arn)
        baseline = plan.first_baseline(target, below, images, self._settings.image_repositories)
        if baseline is None:
            logger.warning(
                "the version below the target may not be deployed (its inference image is not allowed): "
                "the target is deployed directly",
                extra={"endpoint": endpoint, "group": group, "target": target.version, "skipped": below.version},
            )
        return baseline

    def _intent(
        self,
        state: RolloutState,
        actions: tuple[plan.Action, ...],
        view: plan.EndpointView | None,
        deployment: Deployment,
        endpoint: str,
    ) -> tuple[RolloutState, tuple[plan.Action, ...]]:
        """The state to record before a move's first call: with the names of the models and endpoint
        config it will create (a move interrupted half-way leaves nothing CleanUp does not know of), and
        its notices, taken out of the actions (sent once the move has gone through, even by another
        handler after a crash: `_announce`)."""
        rest: list[plan.Action] = []
        for action in actions:
            match action:
                case plan.CreateEndpoint(release=release) | plan.NativeUpdate(release=release):
                    specs, config, _ = self._specs(deployment, endpoint, ((release, 1.0),), view)
                    state = _with_names(state, [str(s["ModelName"]) for s in specs], config)
                case plan.ApplyVariants(variants=variants, shadow=shadow):
                    specs, config, shadows = self._specs(deployment, endpoint, variants, view, shadow)
                    state = _with_names(state, [str(s["ModelName"]) for s in specs + shadows], config)
                case plan.Notify(subject=subject, detail=detail):
                    notice = (subject, json.dumps(dict(detail), sort_keys=True, default=str))
                    state = state.evolve(0, announcements=(*state.announcements, notice))
                    continue
            rest.append(action)
        return state, tuple(rest)

    def _announce(self, state: RolloutState | None) -> RolloutState | None:
        """Send the notices of a recorded move that has gone through; they are then forgotten (saved with
        the move's state), so each goes out once (twice only if a crash comes between the two)."""
        if state is None or not state.announcements:
            return state
        for subject, detail in state.announcements:
            self._notifier.publish(subject, json.loads(detail))
        return state.evolve(0, announcements=())

    def _record(
        self,
        before: RolloutState | None,
        after: RolloutState | None,
        view: plan.EndpointView | None,
        now: float,
        moved_to: plan.SetWeights | None = None,
    ) -> None:
        """The metrics of what this move decided (phase changes), and the live weights: as this move set
        them when it shifted traffic, otherwise as read for it."""
        if after is None:
            return
        old, new = (before.phase if before else None), after.phase
        emit = self._metrics.emit
        if old is Phase.CREATING and new is Phase.STABLE:
            emit("EndpointsDeployed")
        elif old is Phase.STABLE and new in (Phase.CANARY, Phase.NATIVE, Phase.SHADOW):
            emit("RolloutsStarted")
        elif old is Phase.CANARY and new is Phase.CANARY and before is not None and after.step > before.step:
            emit("RolloutSteps")
        elif old is Phase.SHADOW and new is Phase.CANARY:
            emit("RolloutSteps")  # the shadow test passed: the canary's first step
        elif old in (Phase.CANARY, Phase.SHADOW) and new is Phase.PROMOTING:
            emit("Promotions")
        elif new is Phase.ROLLING_BACK and old is not Phase.ROLLING_BACK:
            emit("Rollbacks", Cause=after.cause or "unknown")
        elif (
            old in (Phase.CANARY, Phase.PROMOTING, Phase.SHADOW)
            and new is Phase.STABLE
            and before is not None
            and after.stable == before.stable
            and after.candidate is None
        ):
            emit("Rollbacks", Cause="failed-to-start")  # SageMaker could not start the candidate
        elif old is Phase.CREATING and new is Phase.FAILED:
            emit("Rollbacks", Cause="failed-to-start")
        elif old is Phase.NATIVE and new is Phase.STABLE and before is not None:
            if after.stable == before.stable:
                emit("Rollbacks", Cause="guardrails")
            else:
                emit("Promotions")
        finished = old in (Phase.PROMOTING, Phase.NATIVE) and new is Phase.STABLE
        if finished and before is not None and after.stable != before.stable and before.started_at:
            emit("ApprovalToFullTrafficSeconds", max(0.0, now - before.started_at), SECONDS)
        live: dict[str, float] = dict(view.shares()) if view is not None else {}
        live.update(moved_to.weights if moved_to is not None else ())
        # A variant this move dropped from the rollout (rolled back, rejected, replaced) now takes no
        # traffic: say so, or its weight series would stay at its last share on the dashboard.
        kept = {v.variant for v in (after.stable, after.candidate) if v is not None}
        earlier = (before.stable, before.candidate) if before is not None else ()
        for dropped in (v.variant for v in earlier if v is not None):
            if dropped not in kept:
                live.setdefault(dropped, 0.0)
        for variant, share in sorted(live.items()):
            emit("VariantWeight", share, NONE, Endpoint=after.endpoint, Variant=variant)

    # Retirement (a renamed endpoint) --------------------------------------------------------------
    def _retire(
        self, move: _Move, state: RolloutState, view: plan.EndpointView | None, successor: str, now: float
    ) -> Outcome:
        """The owner names `successor` now: once it serves, take this endpoint down and forget it."""
        endpoint = state.endpoint
        retirement = ownership.retire(state, view, successor, self._store.read(successor), now)
        if retirement.step is ownership.Step.FORGET:
            return self._forget(move, state, retirement.note, now, retired_for=successor)
        if retirement.state != move.lease.state:
            self._save(move, retirement.state)
        if retirement.step is ownership.Step.WAIT:
            return Outcome(endpoint, "waiting", phase=state.phase.value, note=retirement.note)
        for variant in retirement.variants:
            self._autoscaling.deregister(endpoint, variant)
            self._alarms.delete(endpoint, variant)
        try:
            self._endpoints.delete(endpoint)
        except EndpointBusy as exc:
            return Outcome(endpoint, "waiting", phase=state.phase.value, note=str(exc))
        return Outcome(endpoint, "acted", phase=state.phase.value, actions=["DeleteEndpoint"], note=retirement.note)

    def _forget(
        self, move: _Move, state: RolloutState, what: str, now: float, *, retired_for: str | None = None
    ) -> Outcome:
        """The endpoint is gone: delete the configs and models recorded for it, say so, forget the record
        (which releases the name: another group may claim it)."""
        for config in state.configs:
            self._endpoints.delete_config(config)
        for model in state.models:
            self._endpoints.delete_model(model)
        subject = f"RETIRED: {state.endpoint}" if retired_for else f"RELEASED: {state.endpoint}"
        detail = {"endpoint": state.endpoint, "group": state.group, "what": what}
        if retired_for:
            detail["successor"] = retired_for
        self._notifier.publish(subject, detail)
        self._store.forget(move.lease, now)
        move.forgotten = True
        return Outcome(state.endpoint, "acted", actions=["Forget"], note=what)

    # Settings ---------------------------------------------------------------------------------------
    def _under_way_settings(
        self, state: RolloutState, group: str, endpoint: str, error: InvalidGroupSettings, now: float
    ) -> tuple[Deployment, RolloutState]:
        """The settings a rollout under way goes on with while its group's tags are invalid (`resolve_under_way`),
        and its state with a line saying so (INVALID SETTINGS, announced once per wording)."""
        try:
            deployment, left_out = resolve_under_way(
                self._settings.defaults, self._settings.name_prefix, group, self._group_tags(group), endpoint
            )
        except InvalidGroupSettings:
            raise error from None
        line = (
            f"INVALID SETTINGS: {error}; the rollout under way goes on with the stack's defaults for "
            f"{', '.join(left_out) or 'them'} (fix the tags: it takes them at its next move)"
        )
        if any(h.what == line for h in state.history):
            return deployment, state
        detail = {"group": group, "endpoint": endpoint, "what": str(error), "leftOut": list(left_out)}
        self._notifier.publish(f"INVALID SETTINGS: model package group {group}", detail)
        logger.error("group settings are invalid during a rollout", extra=detail)
        return deployment, state.evolve(now, line)

    def deployment(self, group: str) -> Deployment:
        """The group's deployment settings: stack defaults plus the group's tags, read once per trigger (so a
        person's change to them counts for the next decision)."""
        return resolve(self._settings.defaults, self._settings.name_prefix, group, self._group_tags(group))

    def _group_tags(self, group: str) -> dict[str, str]:
        """The group's tags, read once per trigger (`self._tags`, cleared by each trigger and each rerun)."""
        tags = self._tags.get(group)
        if tags is None:
            tags = self._tags[group] = self._registry.group_tags(group)
        return tags

    # Applying a decision ----------------------------------------------------------------------------
    def _apply(
        self,
        move: _Move,
        actions: tuple[plan.Action, ...],
        view: plan.EndpointView | None,
        deployment: Deployment,
        endpoint: str,
    ) -> None:
        """Carry out the actions in order; `move.state` records the resources they create."""
        for action in actions:
            match action:
                case plan.CreateEndpoint() | plan.ApplyVariants() | plan.NativeUpdate():
                    self._with_fallback(move, action, view, deployment, endpoint)
                case plan.SetWeights(weights=weights):
                    self._endpoints.set_weights(endpoint, weights)
                case plan.RegisterAutoscaling(variant=variant):
                    self._autoscaling.register(endpoint, variant, deployment.autoscaling)
                case plan.CreateVariantAlarms(variant=variant, low_traffic=low_traffic):
                    self._alarms.create(endpoint, variant, deployment.alarms, low_traffic=low_traffic)
                case plan.DeleteVariantAlarms(variant=variant):
                    self._alarms.delete(endpoint, variant)
                case plan.RejectInRegistry(release=release, description=description):
                    self._registry.reject(release.package_arn, description)
                case plan.WithdrawApprovals(newer_than=newer_than, older_than=older_than, description=description):
                    assert move.state
                    withdrawn = self._registry.withdraw_approvals(move.state.group, newer_than, older_than, description)
                    if withdrawn:
                        names = ", ".join(f"v{v}" for v in withdrawn)
                        what = (
                            f"{names} (superseded by v{older_than}, which was rolled back) set back to "
                            "PendingManualApproval: approve again to roll out"
                        )
                        move.state = move.state.evolve(self._clock(), what)
                case plan.DeleteEndpoint():
                    self._endpoints.delete(endpoint)
                case plan.CleanUp():
                    assert move.state and view
                    move.state = self._clean_up(move.state, view.config_name)
                case plan.Notify(subject=subject, detail=detail):
                    move.state = self._announce(move.state)  # an earlier move's notices first
                    self._notifier.publish(subject, dict(detail))

    def _with_fallback(
        self,
        move: _Move,
        action: plan.CreateEndpoint | plan.ApplyVariants | plan.NativeUpdate,
        view: plan.EndpointView | None,
        deployment: Deployment,
        endpoint: str,
    ) -> None:
        """Send an endpoint change; on ResourceLimitExceeded, once more on the fallback instance type."""
        try:
            self._change_endpoint(move, action, view, deployment, endpoint)
        except CapacityError as exc:
            fallback = deployment.fallback_instance_type
            if not fallback or fallback == deployment.instance_type:
                raise
            assert move.state
            what = (
                f"no capacity for {deployment.instance_type} ({exc}); trying the fallback {fallback}. Raise the quota "
                f"'{deployment.instance_type} for endpoint usage' to use the preferred type again."
            )
            self._notifier.publish(
                f"QUOTA: {endpoint}", {"endpoint": endpoint, "group": move.state.group, "what": what}
            )
            move.state = move.state.evolve(self._clock(), what)
            fallback_deployment = dataclasses.replace(deployment, instance_type=fallback)
            self._change_endpoint(move, action, view, fallback_deployment, endpoint)

    def _change_endpoint(
        self,
        move: _Move,
        action: plan.CreateEndpoint | plan.ApplyVariants | plan.NativeUpdate,
        view: plan.EndpointView | None,
        deployment: Deployment,
        endpoint: str,
    ) -> None:
        assert move.state
        match action:
            case plan.CreateEndpoint(release=release):
                config = self._config(move, deployment, endpoint, ((release, 1.0),), view)
                self._endpoints.create(endpoint, config, self._tags_for(move.state))
            case plan.ApplyVariants(variants=variants, deregister=deregister, shadow=shadow):
                for variant in deregister:
                    self._deregister(move, endpoint, variant, deployment)
                config = self._config(move, deployment, endpoint, variants, view, shadow)
                self._endpoints.update(endpoint, config)
            case plan.NativeUpdate(release=release, deregister=deregister, strategy=strategy):
                for variant in deregister:
                    self._deregister(move, endpoint, variant, deployment)
                config = self._config(move, deployment, endpoint, ((release, 1.0),), view)
                alarms = rollout_alarm_names(endpoint, release.variant)
                self._endpoints.update(endpoint, config, _guardrails(strategy, deployment, alarms))

    def _deregister(self, move: _Move, endpoint: str, variant: str, deployment: Deployment) -> None:
        """Remove a variant's autoscaling before it leaves the endpoint. Scaling settings a person made on it
        (min/max, their own policies) are not carried over to the variant that replaces it, which gets the
        group's settings: the loss is recorded and announced, naming them, so that they can be re-applied."""
        assert move.state
        own = self._autoscaling.own_settings(endpoint, variant, deployment.autoscaling)
        if own:
            what = (
                f"{variant} leaves {endpoint} with scaling settings made by hand that are not carried over: {own}. "
                "The variant that serves now has the group's autoscaling (tags sagepilot:autoscaling-min / -max / "
                "-target); re-apply them to it, or set those tags to keep them."
            )
            self._notifier.publish(
                f"SCALING NOT CARRIED OVER: {endpoint} {variant}",
                {"endpoint": endpoint, "group": move.state.group, "variant": variant, "lost": own, "what": what},
            )
            self._save(move, move.state.evolve(self._clock(), what))
        self._autoscaling.deregister(endpoint, variant)

    def _specs(
        self,
        deployment: Deployment,
        endpoint: str,
        variants: tuple[tuple[Release, float], ...],
        view: plan.EndpointView | None,
        shadow: tuple[tuple[Release, float], ...] = (),
    ) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
        """The production variants of an endpoint config holding exactly `variants` (and `shadow` as its
        ShadowProductionVariants), its name, and the shadow variants; a live variant keeps its current instance
        count (autoscaling may have moved it)."""
        specs: list[dict[str, Any]] = []
        shadows: list[dict[str, Any]] = []
        for into, releases in ((specs, variants), (shadows, shadow)):
            for release, share in releases:
                live = view.instances(release.variant) if view and into is specs else None
                into.append(
                    {
                        "VariantName": release.variant,
                        "ModelName": endpoint_model_name(endpoint, release.version, release.package_arn),
                        "InstanceType": deployment.instance_type,
                        "InitialInstanceCount": live or deployment.instance_count,
                        "InitialVariantWeight": share,
                    }
                )
        # A shadow's spec is named apart ("shadow|..."), so that the same variants with and without it differ.
        keys = [_spec_key(s) for s in specs] + [f"shadow|{_spec_key(s)}" for s in shadows]
        return specs, endpoint_config_name(endpoint, keys), shadows

    def _config(
        self,
        move: _Move,
        deployment: Deployment,
        endpoint: str,
        variants: tuple[tuple[Release, float], ...],
        view: plan.EndpointView | None,
        shadow: tuple[tuple[Release, float], ...] = (),
    ) -> str:
        """Models and an endpoint config holding exactly `variants` (and `shadow`), their names recorded before
        they are created (already so by `_intent`, unless a fallback instance type changed them)."""
        assert move.state
        specs, name, shadows = self._specs(deployment, endpoint, variants, view, shadow)
        named = _with_names(move.state, [str(s["ModelName"]) for s in specs + shadows], name)
        if named != move.state:
            self._save(move, named)
        for spec, (release, _) in zip(specs + shadows, variants + shadow, strict=True):
            self._endpoints.ensure_model(str(spec["ModelName"]), release.package_arn)
        self._endpoints.ensure_config(name, specs, self._tags_for(move.state), shadows)
        return name

    def _clean_up(self, state: RolloutState, live_config: str) -> RolloutState:
        """Delete configs and models of this endpoint that the live shape no longer uses."""
        keep_models = {
            endpoint_model_name(state.endpoint, r.version, r.package_arn) for r in (state.stable, state.candidate) if r
        }
        for config in state.configs:
            if config != live_config:
                self._endpoints.delete_config(config)
        for model in state.models:
            if model not in keep_models:
                self._endpoints.delete_model(model)
        return state.evolve(
            0,
            configs=tuple(c for c in state.configs if c == live_config),
            models=tuple(m for m in state.models if m in keep_models),
        )

    def _tags_for(self, state: RolloutState) -> dict[str, str]:
        return {"sagepilot:managed-by": self._settings.name_prefix, "sagepilot:group": state.group}


def _spec_key(spec: Mapping[str, Any]) -> str:
    return "|".join(str(spec[k]) for k in sorted(spec))


def _with_names(state: RolloutState, models: list[str], config: str) -> RolloutState:
    """`state` knowing of these models and this endpoint config (CleanUp deletes those not live)."""
    new_models = tuple(m for m in dict.fromkeys(models) if m not in state.models)
    if not new_models and config in state.configs:
        return state
    configs = state.configs if config in state.configs else (*state.configs, config)
    return state.evolve(0, models=(*state.models, *new_models), configs=configs)


def _guardrails(strategy: Strategy, deployment: Deployment, alarms: tuple[str, ...]) -> dict[str, Any]:
    """SageMaker deployment guardrails: blue/green traffic shifting with automatic rollback on alarms."""
    bake = deployment.rollout.bake_seconds
    first = deployment.rollout.steps[0]
    routing: dict[str, Any]
    if strategy is Strategy.CANARY:
        routing = {"Type": "CANARY", "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": first}}
    elif strategy is Strategy.LINEAR:
        routing = {"Type": "LINEAR", "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": first}}
    else:
        routing = {"Type": "ALL_AT_ONCE"}
    routing["WaitIntervalInSeconds"] = bake
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": min(bake, 3600),
            "MaximumExecutionTimeoutInSeconds": max(600, min(28_800, bake * (len(deployment.rollout.steps) + 2))),
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]},
    }


def _duration(seconds: int) -> str:
    """A period as a person reads it in a notice: `15 minutes`, `90 seconds`."""
    if seconds % 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
