"""The evidence of a running `ab` canary step (or shadow test) for its statistical gate (see domain.canary_gate).

Read for every reconcile of a step where the stable variant still serves (the candidate below 100%), and of a
shadow test (the candidate a shadow variant: its metrics, published under its own variant name, are those of
the copies of live requests it answered), unless the group's `sagepilot:analysis` is `off`: both variants'
counts since the step began, in one CloudWatch
GetMetricData call, judged by `canary_gate.assess`. At 100% there is nothing to compare against: the last
step is judged by the alarms and the minimum of invocations, as without the gate. With the gate off, the same
call is made once a step below 100% (or a shadow test) has baked, for a plain comparison of the two variants'
error rates (`compare_step`). Every look is added to
the rollout's report in the data bucket (`record_look`; see domain.canary_report).
"""

from __future__ import annotations

from sagepilot.adapters.alarms import VariantAlarms
from sagepilot.adapters.rollout_reports import RolloutReports
from sagepilot.domain.canary_gate import Assessment, ErrorComparison, StepEvidence, assess, compare_errors
from sagepilot.domain.canary_report import entry, rollout_id
from sagepilot.domain.deployment import Deployment
from sagepilot.domain.rollout import Decision, Phase, RolloutState, Strategy


def _compared(state: RolloutState, deployment: Deployment) -> bool:
    """Whether the running step has two variants to compare: an `ab` canary step where stable still serves (the
    candidate below 100%), or a shadow test."""
    policy = deployment.rollout
    return (
        policy.strategy in (Strategy.AB, Strategy.SHADOW)
        and state.phase in (Phase.CANARY, Phase.SHADOW)
        and state.stable is not None
        and state.candidate is not None
        and (state.phase is Phase.SHADOW or policy.steps[min(state.step, len(policy.steps) - 1)] < 100)
    )


def _step_counts(
    alarms: VariantAlarms, state: RolloutState, deployment: Deployment, now: float, *, custom: bool = True
) -> StepEvidence:
    """Both variants' counts since the step began (one GetMetricData call); `custom`: with the user's metrics."""
    policy = deployment.rollout
    stable, candidate = state.stable, state.candidate
    assert stable and candidate
    objective = policy.gate.latency_objective_ms or deployment.alarms.latency_p99_ms
    return alarms.step_counts(
        state.endpoint,
        stable.variant,
        candidate.variant,
        state.step_started_at,
        now,
        objective,
        policy.gate.custom if custom else (),
    )


def judge_step(alarms: VariantAlarms, state: RolloutState, deployment: Deployment, now: float) -> Assessment | None:
    """The gate's assessment of the running canary step, or None where the gate does not judge it."""
    policy = deployment.rollout
    if not policy.gate.enabled or not _compared(state, deployment):
        return None
    evidence = _step_counts(alarms, state, deployment, now)
    return assess(evidence, policy.gate, policy.steps, stages=policy.judged_stages)


def compare_step(
    alarms: VariantAlarms, state: RolloutState, deployment: Deployment, now: float
) -> ErrorComparison | None:
    """With the gate off (`sagepilot:analysis` `off`, alarm-only), the plain comparison of the step's error rates
    (`canary_gate.compare_errors`, the group's error margin) once the step has baked: the gate's one GetMetricData
    call, read only then (before, it decides nothing) and only where stable still serves. None where it is not
    read (the gate on, not baked, at 100%)."""
    policy = deployment.rollout
    if policy.gate.enabled or not _compared(state, deployment) or now < state.step_started_at + policy.bake_seconds:
        return None
    evidence = _step_counts(alarms, state, deployment, now, custom=False)  # errors only are compared
    return compare_errors(evidence, policy.gate.error_margin)


def record_look(
    reports: RolloutReports, before: RolloutState, decision: Decision, assessment: Assessment, steps: tuple[int, ...]
) -> None:
    """Add the gate's look at the step to the rollout's report, with what the rollout did on it (nothing
    while it keeps collecting)."""
    stable, candidate = before.stable, before.candidate
    assert stable and candidate
    after = decision.state
    acted = bool(decision.actions) and after is not None and len(after.history) and after.history != before.history
    what = after.history[-1].what if acted and after is not None else ""
    reports.append(
        before.endpoint,
        rollout_id(candidate.version, before.started_at),
        entry(
            assessment.evidence.end,
            before.step,
            0 if before.phase is Phase.SHADOW else steps[min(before.step, len(steps) - 1)],  # users' share
            assessment,
            what,
            stable=stable.version,
            candidate=candidate.version,
            shadow=before.phase is Phase.SHADOW,
        ),
    )
