"""The evidence of a running `ab` canary step for its statistical gate (see domain.canary_gate).

Read for every reconcile of a step where the stable variant still serves (the candidate below 100%) and the
group's `sagepilot:analysis` is `sequential`: both variants' counts since the step began, in one CloudWatch
GetMetricData call, judged by `canary_gate.assess`. At 100% there is nothing to compare against: the last
step is judged by the alarms and the minimum of invocations, as without the gate.
"""

from __future__ import annotations

from sagepilot.adapters.alarms import VariantAlarms
from sagepilot.domain.canary_gate import Assessment, assess
from sagepilot.domain.deployment import Deployment
from sagepilot.domain.rollout import Phase, RolloutState, Strategy


def judge_step(alarms: VariantAlarms, state: RolloutState, deployment: Deployment, now: float) -> Assessment | None:
    """The gate's assessment of the running canary step, or None where the gate does not judge it."""
    policy = deployment.rollout
    stable, candidate = state.stable, state.candidate
    if (
        not policy.gate.enabled
        or policy.strategy is not Strategy.AB
        or state.phase is not Phase.CANARY
        or stable is None
        or candidate is None
        or policy.steps[min(state.step, len(policy.steps) - 1)] >= 100
    ):
        return None
    objective = policy.gate.latency_objective_ms or deployment.alarms.latency_p99_ms
    evidence = alarms.step_counts(
        state.endpoint, stable.variant, candidate.variant, state.step_started_at, now, objective
    )
    return assess(evidence, policy.gate, policy.steps)
