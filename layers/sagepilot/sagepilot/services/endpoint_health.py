"""What an alarm of a managed endpoint means, and what is done about it: an incident, its recovery, a scale-in.

The alarm trigger (`Rollouts.on_alarm`) first reconciles the endpoint under its lease (a canary's alarm rolls
the canary back: `domain.rollout.decide`); then, still under the lease, each alarm handed to the move is judged
here: this trigger's, and those of triggers that found the lease taken and left theirs in the record
(`pendingAlarms`, see `RolloutStore.acquire`). A scheduled pass judges the live variant's low-traffic alarm.
The judgement itself is `domain.health.judge`; this service reads what it needs (the alarm's state, the
endpoint, the variant's autoscaling minimum) and carries the verdict out (a notice, a metric, a line in the
endpoint's history, a scale-in, an alarm reset). So does it for SageMaker's refusals for lack of quota.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagepilot.adapters.alarms import VariantAlarms
from sagepilot.adapters.autoscaling import VariantAutoscaling
from sagepilot.adapters.endpoints import EndpointBusy, Endpoints
from sagepilot.adapters.notify import Notifier
from sagepilot.domain import health
from sagepilot.domain.deployment import Deployment
from sagepilot.domain.health import AlarmKind, AlarmRef, parse_alarm_name
from sagepilot.domain.names import alarm_name
from sagepilot.domain.rollout import EndpointView, Phase, RolloutState
from sagepilot.errors import CapacityError
from sagepilot.metrics import Recorder


@dataclass(frozen=True)
class EndpointHealth:
    """Built by wiring.rollouts from the rollout's own adapters and metrics."""

    endpoints: Endpoints
    autoscaling: VariantAutoscaling
    alarms: VariantAlarms
    notifier: Notifier
    metrics: Recorder

    def judge_all(
        self,
        state: RolloutState,
        alarms: tuple[str, ...],
        deployment: Deployment,
        now: float,
        view: EndpointView | None,
        *,
        scheduled: bool,
    ) -> tuple[RolloutState, list[str]]:
        """Judge each of `alarms` in turn (and, on a scheduled pass, the live variant's low-traffic alarm),
        on the state the move left; `view` is the endpoint as read for the move (None: read it again). The
        state with what was done, and what each judgement said."""
        notes: list[str] = []
        for judged in (*alarms, *((None,) if scheduled else ())):
            judgement = self.judge(state, judged, deployment, now, view, scheduled=scheduled)
            if judgement is not None:
                state, note = judgement
                notes.append(note)
        return state, notes

    def judge(
        self,
        state: RolloutState,
        alarm: str | None,
        deployment: Deployment,
        now: float,
        view: EndpointView | None,
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
        alarm_state = self.alarms.states((ref.name,)).get(ref.name)
        if alarm_state is None:
            return state, f"{ref.name} does not exist (any more)"
        if view is None:
            view = self.endpoints.describe(state.endpoint)
        on_endpoint = view is not None and ref.variant in view.names
        minimum = self.autoscaling.minimum(state.endpoint, ref.variant) if on_endpoint else None
        idle = ref.kind is AlarmKind.LOW_TRAFFIC and alarm_state == "ALARM"
        judgement = health.judge(
            ref,
            alarm_state,
            state,
            view,
            minimum,
            deployment.autoscaling.min_capacity,
            ref.name in state.incidents,
            evaluated_from=self.alarms.evaluated_from(ref.name) if idle else None,
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
            self.metrics.emit("Incidents")
            self.notifier.publish(f"UNHEALTHY: {state.endpoint} {ref.variant}", detail)
            what = f"incident: {judgement.summary} ({'; '.join(judgement.findings)})"
            return state.evolve(now, what, incidents=(*state.incidents, ref.name)), judgement.summary
        if judgement.verdict is health.Verdict.RECOVERED:
            self.metrics.emit("Recoveries")
            self.notifier.publish(f"RECOVERED: {state.endpoint} {ref.variant}", detail)
            still_open = tuple(i for i in state.incidents if i != ref.name)
            return state.evolve(now, judgement.summary, incidents=still_open), judgement.summary
        if judgement.verdict is health.Verdict.NOT_YET:
            # Judged again by CloudWatch at its next period, on a range within the variant's service.
            self.alarms.reset(ref.name, f"sagepilot: {judgement.summary}")
            return state, judgement.summary
        if judgement.verdict is health.Verdict.SCALE_IN and judgement.scale_to is not None:
            try:
                self.endpoints.set_capacity(state.endpoint, ref.variant, judgement.scale_to)
            except EndpointBusy:
                return state, "endpoint busy; the scale-in waits for the next reconcile"
            detail["savedInstances"] = judgement.saved_instances
            self.metrics.emit("ScaleIns")
            self.metrics.emit("InstancesSaved", judgement.saved_instances)
            self.notifier.publish(f"SCALED IN: {state.endpoint} {ref.variant}", detail)
            what = f"scaled in: {judgement.summary} (saves {judgement.saved_instances} instance(s))"
            return state.evolve(now, what), judgement.summary
        return state, judgement.summary

    def quota_reported(
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
        self.notifier.publish(f"QUOTA: {state.endpoint}", detail)
        return state.evolve(now, what)
