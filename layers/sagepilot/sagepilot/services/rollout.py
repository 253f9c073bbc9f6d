"""Reconcile an endpoint toward what the registry wants, one safe move per trigger.

Every trigger (a registry approval or rejection, an endpoint state change, a rollout alarm, an
operator command, the periodic schedule) comes down to `reconcile(endpoint)`: take the endpoint's
lease, read the recorded state, the endpoint, the newest Approved version and the rollout's alarms,
ask `domain.rollout.decide` for the next move, apply it, record it, let go. No waiting happens here:
bake times elapse between triggers, and an endpoint that is Updating is left alone until its next
state-change event (or the next scheduled reconcile).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagepilot.adapters.alarms import VariantAlarms, rollout_alarm_names
from sagepilot.adapters.autoscaling import VariantAutoscaling
from sagepilot.adapters.endpoints import EndpointBusy, Endpoints
from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import GroupNotFound, ModelRegistry
from sagepilot.adapters.rollout_state import Lease, LeaseBusy, RolloutStore
from sagepilot.domain import health
from sagepilot.domain import rollout as plan
from sagepilot.domain.deployment import Deployment, InvalidGroupSettings, resolve
from sagepilot.domain.health import AlarmKind, AlarmRef, parse_alarm_name
from sagepilot.domain.names import alarm_name, endpoint_config_name, endpoint_model_name
from sagepilot.domain.rollout import Phase, Release, RolloutState, Strategy
from sagepilot.errors import CapacityError
from sagepilot.events import AlarmSignal, EndpointSignal, PackageChanged, RolloutTrigger
from sagepilot.metrics import NONE, SECONDS, NoRecorder, Recorder
from sagepilot.observability import logger
from sagepilot.settings import RolloutSettings

_MAX_RERUNS = 3
_TAGS_CACHE_SECONDS = 60.0


@dataclass
class Outcome:
    endpoint: str
    result: str  # acted | waiting | deferred | ignored | invalid
    phase: str = ""
    actions: list[str] = field(default_factory=list)
    note: str = ""
    again: bool = False  # a finishing move left another move due at once (e.g. a superseding version)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", []) and k != "again"}


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
        clock: Callable[[], float] = time.time,
        metrics: Recorder | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._registry = registry
        self._endpoints = endpoints
        self._autoscaling = autoscaling
        self._alarms = alarms
        self._notifier = notifier
        self._clock = clock
        self._metrics: Recorder = metrics or NoRecorder()
        self._tags: dict[str, tuple[float, dict[str, str]]] = {}

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
        try:
            deployment = self.deployment(group)
        except InvalidGroupSettings as exc:
            self._notifier.publish(f"INVALID SETTINGS: model package group {group}", {"group": group, "what": str(exc)})
            logger.error("group settings are invalid", extra={"group": group, "error": str(exc)})
            return Outcome(endpoint="", result="invalid", note=str(exc))
        except GroupNotFound:
            return Outcome(endpoint="", result="ignored", note=f"model package group {group} does not exist")
        if not deployment.enabled:
            return Outcome(deployment.endpoint, "ignored", note="the group's sagepilot:deploy tag is false")
        return self.reconcile(deployment.endpoint, group)

    def on_endpoint_signal(self, endpoint: str) -> Outcome:
        """An endpoint state change, a rollout alarm or an operator command for a managed endpoint."""
        return self.reconcile(endpoint, None)

    def on_alarm(self, endpoint: str, alarm: str) -> Outcome:
        """An alarm of a managed endpoint changed state: the rollout's reconcile (a canary alarm rolls
        back), then the alarm's own meaning (an incident, its recovery, or a scale-in)."""
        return self.reconcile(endpoint, None, alarm=alarm)

    def on_schedule(self) -> list[Outcome]:
        """Periodic repair: every endpoint in a rollout, and each stable one now and then (a lost event
        must not leave an approval undeployed for long)."""
        now = self._clock()
        outcomes = []
        overdue = 0.0
        for state, checked_at in self._store.all():
            if state.phase is Phase.CANARY and not state.paused:
                bake = self._bake_seconds(state.group)
                overdue = max(overdue, now - state.step_started_at - bake)
            if state.phase is Phase.STABLE and now - checked_at < self._settings.stable_check_seconds:
                continue
            outcomes.append(self.reconcile(state.endpoint, state.group, scheduled=True))
        self._metrics.emit("ReconcileRuns")
        self._metrics.emit("RolloutOverdueSeconds", max(0.0, overdue), SECONDS)
        return outcomes

    def _bake_seconds(self, group: str) -> int:
        try:
            return self.deployment(group).rollout.bake_seconds
        except (InvalidGroupSettings, GroupNotFound):
            return self._settings.defaults.rollout.bake_seconds

    # The loop ---------------------------------------------------------------------------------------
    def reconcile(
        self, endpoint: str, group: str | None, *, alarm: str | None = None, scheduled: bool = False
    ) -> Outcome:
        owner = f"reconcile-{uuid.uuid4()}"
        try:
            lease = self._store.acquire(endpoint, owner, self._clock())
        except LeaseBusy:
            return Outcome(endpoint, "deferred", note="another handler is acting on this endpoint; it will rerun")
        outcome = Outcome(endpoint, "waiting")
        try:
            for _ in range(_MAX_RERUNS):
                outcome = self._step(lease, group, alarm, scheduled)
                if outcome.again:
                    lease = Lease(endpoint, owner, self._store.read(endpoint))
                    continue
                if self._store.release(lease, self._clock()):
                    return outcome
                lease = Lease(endpoint, owner, self._store.read(endpoint))
        except BaseException:
            # Hand the lease back (the error is re-raised); a rerun asked for meanwhile stays flagged.
            self._store.release(lease, self._clock(), force=True)
            raise
        # Still more to do after the reruns: let go; the flag (if any) brings the next holder back to it.
        self._store.release(lease, self._clock(), force=True)
        return outcome

    def _step(self, lease: Lease, group_hint: str | None, alarm: str | None, scheduled: bool) -> Outcome:
        state, endpoint = lease.state, lease.endpoint
        group = state.group if state else group_hint
        if group is None:
            return Outcome(endpoint, "ignored", note="no rollout record for this endpoint: not managed by this stack")
        try:
            deployment = self.deployment(group)
        except InvalidGroupSettings as exc:
            return Outcome(endpoint, "invalid", note=str(exc))
        except GroupNotFound:
            deployment = self._settings.defaults
        now = self._clock()
        view = self._endpoints.describe(endpoint)
        target = self._registry.newest_approved(group)
        firing: tuple[str, ...] = ()
        if state and state.candidate and state.phase is Phase.CANARY:
            firing = self._alarms.firing(endpoint, state.candidate.variant)
        decision = plan.decide(state, view, target, firing, deployment.rollout, now, endpoint=endpoint, group=group)
        outcome = Outcome(
            endpoint,
            "acted" if decision.actions else "waiting",
            phase=(decision.state.phase.value if decision.state else ""),
            actions=[type(a).__name__ for a in decision.actions],
            note=decision.note,
        )
        new_state = decision.state
        if new_state is not None and decision.commit_first and new_state != state:
            lease = self._store.save(lease, new_state, now)
        try:
            applied = self._apply(decision.actions, new_state, view, deployment, endpoint)
        except EndpointBusy as exc:
            outcome.result, outcome.note = "waiting", str(exc)
            applied = new_state
        except CapacityError as exc:
            outcome.result, outcome.note = "waiting", str(exc)
            applied = self._quota_reported(new_state, exc, deployment, now)
        if applied is not None and (alarm is not None or scheduled):
            # The endpoint as read for the move, unless the move changed it (then read it again).
            current = view if not decision.actions else None
            health_move = self._health(applied, alarm, deployment, now, current, scheduled=scheduled)
            if health_move is not None:
                applied, note = health_move
                outcome.note = "; ".join(n for n in (outcome.note, note) if n)
        if applied is not None and applied != lease.state:
            lease = self._store.save(lease, applied, now)
        self._record(state, applied, view, now)
        if (
            not decision.commit_first
            and decision.actions
            and applied is not None
            and applied.phase is Phase.STABLE
            and target is not None
            and applied.stable is not None
            and target != applied.stable
        ):
            # A rollback finished while a newer version waits (it superseded the canary): start it now.
            outcome.again = True
        logger.info("reconciled", extra=outcome.as_dict())
        return outcome

    def _record(
        self, before: RolloutState | None, after: RolloutState | None, view: plan.EndpointView | None, now: float
    ) -> None:
        """The metrics of what this move decided (phase changes), and the live weights."""
        if after is None:
            return
        old, new = (before.phase if before else None), after.phase
        emit = self._metrics.emit
        if old is Phase.CREATING and new is Phase.STABLE:
            emit("EndpointsDeployed")
        elif old is Phase.STABLE and new in (Phase.CANARY, Phase.NATIVE):
            emit("RolloutsStarted")
        elif old is Phase.CANARY and new is Phase.CANARY and before is not None and after.step > before.step:
            emit("RolloutSteps")
        elif old is Phase.CANARY and new is Phase.PROMOTING:
            emit("Promotions")
        elif new is Phase.ROLLING_BACK and old is not Phase.ROLLING_BACK:
            emit("Rollbacks", Cause=after.cause or "unknown")
        elif old is Phase.NATIVE and new is Phase.STABLE and before is not None:
            if after.stable == before.stable:
                emit("Rollbacks", Cause="guardrails")
            else:
                emit("Promotions")
        finished = old in (Phase.PROMOTING, Phase.NATIVE) and new is Phase.STABLE
        if finished and before is not None and after.stable != before.stable and before.started_at:
            emit("ApprovalToFullTrafficSeconds", max(0.0, now - before.started_at), SECONDS)
        if view is not None:
            for variant, share in view.shares().items():
                emit("VariantWeight", share, NONE, Endpoint=after.endpoint, Variant=variant)

    # Health and scale-in ----------------------------------------------------------------------------
    def _health(
        self,
        state: RolloutState,
        alarm: str | None,
        deployment: Deployment,
        now: float,
        view: plan.EndpointView | None,
        *,
        scheduled: bool,
    ) -> tuple[RolloutState, str] | None:
        """Judge `alarm` (or, on a scheduled pass, the live variant's low-traffic alarm) and act on it."""
        ref: AlarmRef | None
        if alarm is not None:
            ref = parse_alarm_name(state.endpoint, alarm)
            if ref is None:
                return state, f"{alarm} is not one of this endpoint's alarms"
        elif scheduled and state.phase is Phase.STABLE and state.stable is not None:
            name = alarm_name(state.endpoint, state.stable.variant, AlarmKind.LOW_TRAFFIC.value)
            ref = AlarmRef(name, state.stable.variant, AlarmKind.LOW_TRAFFIC)
        else:
            return None
        alarm_state = self._alarms.states((ref.name,)).get(ref.name)
        if alarm_state is None:
            return state, f"{ref.name} does not exist (any more)"
        if view is None:
            view = self._endpoints.describe(state.endpoint)
        on_endpoint = view is not None and ref.variant in view.names
        minimum = self._autoscaling.minimum(state.endpoint, ref.variant) if on_endpoint else None
        judgement = health.judge(
            ref, alarm_state, state, view, minimum, deployment.autoscaling.min_capacity, ref.name in state.incidents
        )
        detail: dict[str, object] = {
            "endpoint": state.endpoint,
            "group": state.group,
            "variant": ref.variant,
            "alarm": ref.name,
            "alarmState": alarm_state,
            "what": judgement.summary,
            "findings": list(judgement.findings),
            "whatToDo": judgement.what_to_do,
        }
        if judgement.verdict is health.Verdict.INCIDENT:
            self._metrics.emit("Incidents")
            self._notifier.publish(f"UNHEALTHY: {state.endpoint} {ref.variant}", detail)
            what = f"incident: {judgement.summary} ({'; '.join(judgement.findings)})"
            return state.evolve(now, what, incidents=(*state.incidents, ref.name)), judgement.summary
        if judgement.verdict is health.Verdict.RECOVERED:
            self._metrics.emit("Recoveries")
            self._notifier.publish(f"RECOVERED: {state.endpoint} {ref.variant}", detail)
            still_open = tuple(i for i in state.incidents if i != ref.name)
            return state.evolve(now, judgement.summary, incidents=still_open), judgement.summary
        if judgement.verdict is health.Verdict.SCALE_IN and judgement.scale_to is not None:
            try:
                self._endpoints.set_capacity(state.endpoint, ref.variant, judgement.scale_to)
            except EndpointBusy:
                return state, "endpoint busy; the scale-in waits for the next reconcile"
            detail["savedInstances"] = judgement.saved_instances
            self._metrics.emit("ScaleIns")
            self._metrics.emit("InstancesSaved", judgement.saved_instances)
            self._notifier.publish(f"SCALED IN: {state.endpoint} {ref.variant}", detail)
            what = f"scaled in: {judgement.summary} (saves {judgement.saved_instances} instance(s))"
            return state.evolve(now, what), judgement.summary
        return state, judgement.summary

    def _quota_reported(
        self, state: RolloutState | None, exc: CapacityError, deployment: Deployment, now: float
    ) -> RolloutState | None:
        """ResourceLimitExceeded with no fallback left: say which quota to raise, once per message."""
        what = (
            f"SageMaker refused for lack of quota: {exc}. Raise the Service Quotas limit "
            f"'{exc.instance_type or deployment.instance_type} for endpoint usage', or set a fallback instance type "
            "(tag sagepilot:fallback-instance-type or parameter EndpointFallbackInstanceType); the next reconcile "
            "retries."
        )
        if state is None or (state.history and state.history[-1].what == what):
            return state
        detail = {"endpoint": state.endpoint, "group": state.group, "what": what}
        self._notifier.publish(f"QUOTA: {state.endpoint}", detail)
        return state.evolve(now, what)

    # Settings ---------------------------------------------------------------------------------------
    def deployment(self, group: str) -> Deployment:
        """The group's deployment settings: stack defaults plus the group's tags (cached briefly)."""
        now = self._clock()
        cached = self._tags.get(group)
        if cached is None or now - cached[0] > _TAGS_CACHE_SECONDS:
            cached = (now, self._registry.group_tags(group))
            self._tags[group] = cached
        return resolve(self._settings.defaults, self._settings.name_prefix, group, cached[1])

    # Applying a decision ----------------------------------------------------------------------------
    def _apply(
        self,
        actions: tuple[plan.Action, ...],
        state: RolloutState | None,
        view: plan.EndpointView | None,
        deployment: Deployment,
        endpoint: str,
    ) -> RolloutState | None:
        """Carry out the actions in order; return the state with the resources it created recorded."""
        for action in actions:
            match action:
                case plan.CreateEndpoint() | plan.ApplyVariants() | plan.NativeUpdate():
                    assert state
                    state = self._with_fallback(action, state, view, deployment, endpoint)
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
                case plan.DeleteEndpoint():
                    self._endpoints.delete(endpoint)
                case plan.CleanUp():
                    assert state and view
                    state = self._clean_up(state, view.config_name)
                case plan.Notify(subject=subject, detail=detail):
                    self._notifier.publish(subject, dict(detail))
        return state

    def _with_fallback(
        self,
        action: plan.CreateEndpoint | plan.ApplyVariants | plan.NativeUpdate,
        state: RolloutState,
        view: plan.EndpointView | None,
        deployment: Deployment,
        endpoint: str,
    ) -> RolloutState:
        """Send an endpoint change; on ResourceLimitExceeded, once more on the fallback instance type."""
        try:
            return self._change_endpoint(action, state, view, deployment, endpoint)
        except CapacityError as exc:
            fallback = deployment.fallback_instance_type
            if not fallback or fallback == deployment.instance_type:
                raise
            what = (
                f"no capacity for {deployment.instance_type} ({exc}); trying the fallback {fallback}. Raise the quota "
                f"'{deployment.instance_type} for endpoint usage' to use the preferred type again."
            )
            self._notifier.publish(f"QUOTA: {endpoint}", {"endpoint": endpoint, "group": state.group, "what": what})
            state = state.evolve(self._clock(), what)
            fallback_deployment = dataclasses.replace(deployment, instance_type=fallback)
            return self._change_endpoint(action, state, view, fallback_deployment, endpoint)

    def _change_endpoint(
        self,
        action: plan.CreateEndpoint | plan.ApplyVariants | plan.NativeUpdate,
        state: RolloutState,
        view: plan.EndpointView | None,
        deployment: Deployment,
        endpoint: str,
    ) -> RolloutState:
        match action:
            case plan.CreateEndpoint(release=release):
                config, state = self._config(state, deployment, endpoint, ((release, 1.0),), view)
                self._endpoints.create(endpoint, config, self._tags_for(state))
            case plan.ApplyVariants(variants=variants, deregister=deregister):
                for variant in deregister:
                    self._autoscaling.deregister(endpoint, variant)
                config, state = self._config(state, deployment, endpoint, variants, view)
                self._endpoints.update(endpoint, config)
            case plan.NativeUpdate(release=release, deregister=deregister, strategy=strategy):
                for variant in deregister:
                    self._autoscaling.deregister(endpoint, variant)
                config, state = self._config(state, deployment, endpoint, ((release, 1.0),), view)
                alarms = rollout_alarm_names(endpoint, release.variant)
                self._endpoints.update(endpoint, config, _guardrails(strategy, deployment, alarms))
        return state

    def _config(
        self,
        state: RolloutState,
        deployment: Deployment,
        endpoint: str,
        variants: tuple[tuple[Release, float], ...],
        view: plan.EndpointView | None,
    ) -> tuple[str, RolloutState]:
        """Models and an endpoint config holding exactly `variants`; a live variant keeps its
        current instance count (autoscaling may have moved it)."""
        specs = []
        for release, share in variants:
            model = endpoint_model_name(endpoint, release.version, release.package_arn)
            self._endpoints.ensure_model(model, release.package_arn)
            if model not in state.models:
                state = state.evolve(0, models=(*state.models, model))
            live = view.instances(release.variant) if view else None
            specs.append(
                {
                    "VariantName": release.variant,
                    "ModelName": model,
                    "InstanceType": deployment.instance_type,
                    "InitialInstanceCount": live or deployment.instance_count,
                    "InitialVariantWeight": share,
                }
            )
        name = endpoint_config_name(endpoint, [_spec_key(s) for s in specs])
        self._endpoints.ensure_config(name, specs, self._tags_for(state))
        if name not in state.configs:
            state = state.evolve(0, configs=(*state.configs, name))
        return name, state

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
