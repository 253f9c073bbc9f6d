"""Reconcile an endpoint toward what the registry wants, one safe move per trigger.

Every trigger (a registry approval or rejection, an endpoint state change, a rollout alarm, an
operator command, the periodic schedule) comes down to `reconcile(endpoint)`: take the endpoint's
lease, read the recorded state, the endpoint, the newest Approved version and the rollout's alarms,
ask `domain.rollout.decide` for the next move, apply it, record it, let go. No waiting happens here:
bake times elapse between triggers, and an endpoint that is Updating is left alone until its next
state-change event (or the next scheduled reconcile).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagepilot.adapters.alarms import RolloutAlarms, rollout_alarm_names
from sagepilot.adapters.autoscaling import VariantAutoscaling
from sagepilot.adapters.endpoints import EndpointBusy, Endpoints
from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import GroupNotFound, ModelRegistry
from sagepilot.adapters.rollout_state import Lease, LeaseBusy, RolloutStore
from sagepilot.domain import rollout as plan
from sagepilot.domain.deployment import Deployment, InvalidGroupSettings, resolve
from sagepilot.domain.names import endpoint_config_name, endpoint_model_name
from sagepilot.domain.rollout import Phase, Release, RolloutState, Strategy
from sagepilot.events import EndpointSignal, PackageChanged, RolloutTrigger
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

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", [])}


class Rollouts:
    def __init__(
        self,
        settings: RolloutSettings,
        store: RolloutStore,
        registry: ModelRegistry,
        endpoints: Endpoints,
        autoscaling: VariantAutoscaling,
        alarms: RolloutAlarms,
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._store = store
        self._registry = registry
        self._endpoints = endpoints
        self._autoscaling = autoscaling
        self._alarms = alarms
        self._notifier = notifier
        self._clock = clock
        self._tags: dict[str, tuple[float, dict[str, str]]] = {}

    # Triggers ---------------------------------------------------------------------------------------
    def handle(self, trigger: RolloutTrigger) -> list[Outcome]:
        """The one entry point of the handler: what each kind of trigger reconciles."""
        if isinstance(trigger, PackageChanged):
            return [self.on_package_change(trigger.group)]
        if isinstance(trigger, EndpointSignal):
            return [self.on_endpoint_signal(trigger.endpoint)]
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

    def on_schedule(self) -> list[Outcome]:
        """Periodic repair: every endpoint in a rollout, and each stable one now and then (a lost event
        must not leave an approval undeployed for long)."""
        now = self._clock()
        outcomes = []
        for state, checked_at in self._store.all():
            if state.phase is Phase.STABLE and now - checked_at < self._settings.stable_check_seconds:
                continue
            outcomes.append(self.reconcile(state.endpoint, state.group))
        return outcomes

    # The loop ---------------------------------------------------------------------------------------
    def reconcile(self, endpoint: str, group: str | None) -> Outcome:
        owner = f"reconcile-{uuid.uuid4()}"
        try:
            lease = self._store.acquire(endpoint, owner, self._clock())
        except LeaseBusy:
            return Outcome(endpoint, "deferred", note="another handler is acting on this endpoint; it will rerun")
        outcome = Outcome(endpoint, "waiting")
        try:
            for _ in range(_MAX_RERUNS):
                outcome = self._step(lease, group)
                if self._store.release(lease, self._clock()):
                    return outcome
                lease = Lease(endpoint, owner, self._store.read(endpoint))
        except BaseException:
            # Hand the lease back (the error is re-raised); a rerun asked for meanwhile stays flagged.
            self._store.release(lease, self._clock(), force=True)
            raise
        return outcome

    def _step(self, lease: Lease, group_hint: str | None) -> Outcome:
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
        if applied is not None and applied != lease.state:
            self._store.save(lease, applied, now)
        logger.info("reconciled", extra=outcome.as_dict())
        return outcome

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
                case plan.CreateEndpoint(release=release):
                    assert state
                    config, state = self._config(state, deployment, endpoint, ((release, 1.0),), view)
                    self._endpoints.create(endpoint, config, self._tags_for(state))
                case plan.ApplyVariants(variants=variants, deregister=deregister):
                    assert state
                    for variant in deregister:
                        self._autoscaling.deregister(endpoint, variant)
                    config, state = self._config(state, deployment, endpoint, variants, view)
                    self._endpoints.update(endpoint, config)
                case plan.NativeUpdate(release=release, deregister=deregister, strategy=strategy):
                    assert state
                    for variant in deregister:
                        self._autoscaling.deregister(endpoint, variant)
                    config, state = self._config(state, deployment, endpoint, ((release, 1.0),), view)
                    self._endpoints.update(
                        endpoint,
                        config,
                        _guardrails(strategy, deployment, rollout_alarm_names(endpoint, release.variant)),
                    )
                case plan.SetWeights(weights=weights):
                    self._endpoints.set_weights(endpoint, weights)
                case plan.RegisterAutoscaling(variant=variant):
                    self._autoscaling.register(endpoint, variant, deployment.autoscaling)
                case plan.CreateRolloutAlarms(variant=variant):
                    self._alarms.create(endpoint, variant, deployment.alarms)
                case plan.DeleteRolloutAlarms(variant=variant):
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
