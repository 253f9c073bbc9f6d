"""The rollout's own CloudWatch alarms on the candidate variant: server errors and p99 latency.

Their names start with the endpoint's name (and so with the stack's prefix), which is what the
template's alarm rule filters on. State changes reach the control plane as EventBridge events; the
rollout re-reads the states here so that a late or duplicated event cannot mislead it.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from sagepilot.domain.deployment import AlarmThresholds
from sagepilot.domain.names import alarm_name
from sagepilot.errors import TransientError

NAMESPACE = "AWS/SageMaker"


def rollout_alarm_names(endpoint: str, variant: str) -> tuple[str, str]:
    return alarm_name(endpoint, variant, "5xx"), alarm_name(endpoint, variant, "latency")


class RolloutAlarms:
    def __init__(self, cloudwatch_client: Any) -> None:
        self._cw = cloudwatch_client

    def create(self, endpoint: str, variant: str, thresholds: AlarmThresholds) -> tuple[str, str]:
        errors, latency = rollout_alarm_names(endpoint, variant)
        dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        common: dict[str, Any] = {
            "Namespace": NAMESPACE,
            "Dimensions": dimensions,
            "Period": 60,
            "TreatMissingData": "notBreaching",
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "Tags": [{"Key": "sagepilot:endpoint", "Value": endpoint}, {"Key": "sagepilot:variant", "Value": variant}],
        }
        try:
            self._cw.put_metric_alarm(
                AlarmName=errors,
                AlarmDescription=f"Canary of {variant} on {endpoint}: server errors; in ALARM the rollout rolls back.",
                MetricName="Invocation5XXErrors",
                Statistic="Sum",
                EvaluationPeriods=1,
                Threshold=float(thresholds.errors_5xx_per_minute),
                **common,
            )
            self._cw.put_metric_alarm(
                AlarmName=latency,
                AlarmDescription=f"Canary of {variant} on {endpoint}: p99 model latency; in ALARM it rolls back.",
                MetricName="ModelLatency",  # microseconds
                ExtendedStatistic="p99",
                EvaluationPeriods=2,
                DatapointsToAlarm=2,
                Threshold=float(thresholds.latency_p99_ms * 1000),
                **common,
            )
        except ClientError as exc:
            raise TransientError(f"creating the rollout alarms of {endpoint}/{variant}: {exc}") from exc
        return errors, latency

    def firing(self, endpoint: str, variant: str) -> tuple[str, ...]:
        """Names of the variant's rollout alarms that are in ALARM now."""
        try:
            found = self._cw.describe_alarms(AlarmNames=list(rollout_alarm_names(endpoint, variant)))
        except ClientError as exc:
            raise TransientError(f"reading the rollout alarms of {endpoint}/{variant}: {exc}") from exc
        return tuple(sorted(a["AlarmName"] for a in found.get("MetricAlarms", []) if a["StateValue"] == "ALARM"))

    def delete(self, endpoint: str, variant: str) -> None:
        try:
            self._cw.delete_alarms(AlarmNames=list(rollout_alarm_names(endpoint, variant)))
        except ClientError as exc:
            raise TransientError(f"deleting the rollout alarms of {endpoint}/{variant}: {exc}") from exc
