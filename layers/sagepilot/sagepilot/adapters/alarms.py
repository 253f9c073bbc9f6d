"""Each live variant's CloudWatch alarms: server errors, p99 latency, and (serving alone) low traffic.

Their names start with the endpoint's name (and so with the stack's prefix), which is what the
template's alarm rule filters on; `domain.health` says what each kind means. State changes reach the
control plane as EventBridge events; decisions re-read the states here, so that a late or duplicated
event cannot mislead them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import translates_unreachable
from sagepilot.domain.canary_gate import CustomMetric, StepEvidence, VariantCounts
from sagepilot.domain.deployment import AlarmThresholds
from sagepilot.domain.names import AlarmKind, alarm_name, rollout_alarm_names, variant_alarm_names
from sagepilot.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

NAMESPACE = "AWS/SageMaker"
_LOW_TRAFFIC_PERIOD = 300
_INVOCATIONS_PERIOD = 60  # SageMaker's endpoint metrics are per minute
_MAX_EVALUATION_SECONDS = 86_400  # CloudWatch: EvaluationPeriods x Period at most one day


@translates_unreachable
class VariantAlarms:
    def __init__(self, cloudwatch_client: CloudWatchClient) -> None:
        self._cw = cloudwatch_client

    def create(self, endpoint: str, variant: str, thresholds: AlarmThresholds, *, low_traffic: bool = False) -> None:
        """PutMetricAlarm (an upsert: repeating it is harmless) for the variant's alarms."""
        errors, latency = rollout_alarm_names(endpoint, variant)
        dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        common: dict[str, Any] = {
            "Namespace": NAMESPACE,
            "Dimensions": dimensions,
            "Tags": [{"Key": "sagepilot:endpoint", "Value": endpoint}, {"Key": "sagepilot:variant", "Value": variant}],
        }
        requests: list[dict[str, Any]] = [
            {
                "AlarmName": errors,
                "AlarmDescription": f"{endpoint} {variant}: server errors. In a canary it rolls back; otherwise a "
                "health check is run and notified.",
                "MetricName": "Invocation5XXErrors",
                "Statistic": "Sum",
                "Period": 60,
                "EvaluationPeriods": 1,
                "Threshold": float(thresholds.errors_5xx_per_minute),
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "TreatMissingData": "notBreaching",
            },
            {
                "AlarmName": latency,
                "AlarmDescription": f"{endpoint} {variant}: p99 model latency. In a canary it rolls back; otherwise a "
                "health check is run and notified.",
                "MetricName": "ModelLatency",  # microseconds
                "ExtendedStatistic": "p99",
                "Period": 60,
                "EvaluationPeriods": 2,
                "DatapointsToAlarm": 2,
                "Threshold": float(thresholds.latency_p99_ms * 1000),
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
            },
        ]
        if low_traffic:
            periods = max(1, min(thresholds.idle_minutes * 60, _MAX_EVALUATION_SECONDS) // _LOW_TRAFFIC_PERIOD)
            requests.append(
                {
                    "AlarmName": alarm_name(endpoint, variant, AlarmKind.LOW_TRAFFIC.value),
                    "AlarmDescription": f"{endpoint} {variant}: fewer than {thresholds.low_traffic_invocations} "
                    f"invocations per 5 minutes for {periods * 5} minutes; the variant is scaled in to its minimum.",
                    "MetricName": "Invocations",
                    "Statistic": "Sum",
                    "Period": _LOW_TRAFFIC_PERIOD,
                    "EvaluationPeriods": periods,
                    "Threshold": float(thresholds.low_traffic_invocations),
                    "ComparisonOperator": "LessThanThreshold",
                    # No datapoint means no invocation at all: that is the idle case.
                    "TreatMissingData": "breaching",
                }
            )
        try:
            for request in requests:
                self._cw.put_metric_alarm(**request, **common)
        except ClientError as exc:
            raise TransientError(f"creating the alarms of {endpoint}/{variant}: {exc}") from exc

    def firing(self, endpoint: str, variant: str) -> tuple[str, ...]:
        """Names of the variant's 5xx / latency alarms that are in ALARM now."""
        return tuple(sorted(n for n, v in self.states(rollout_alarm_names(endpoint, variant)).items() if v == "ALARM"))

    def invocations(self, endpoint: str, variant: str, start: float, end: float) -> int:
        """The variant's `Invocations` (Sum) from `start` to `end` (epoch seconds), as SageMaker publishes
        them: per minute, so the count is of the minutes CloudWatch has for the window, the one `end` falls in
        included (the query ends a period later: nothing is timestamped in the future)."""
        if end - start < 1:
            return 0
        try:
            found = self._cw.get_metric_statistics(
                Namespace=NAMESPACE,
                MetricName="Invocations",
                Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}],
                StartTime=datetime.fromtimestamp(start, UTC),
                EndTime=datetime.fromtimestamp(end + _INVOCATIONS_PERIOD, UTC),
                Period=_INVOCATIONS_PERIOD,
                Statistics=["Sum"],
            )
        except ClientError as exc:
            raise TransientError(f"reading the invocations of {endpoint}/{variant}: {exc}") from exc
        return int(sum(float(point.get("Sum", 0.0)) for point in found.get("Datapoints", [])))

    def step_counts(
        self,
        endpoint: str,
        stable: str,
        candidate: str,
        start: float,
        end: float,
        objective_ms: int,
        custom: tuple[CustomMetric, ...] = (),
    ) -> StepEvidence:
        """Both variants' counts from `start` to `end` (epoch seconds) for the canary gate, in one GetMetricData
        call (paged only past CloudWatch's 100,800 values): per minute, `Invocations`, `Invocation5XXErrors` and
        `Invocation4XXErrors` (Sum; both are errors: a model that answers 4xx to what the live one serves, e.g. a
        feature count it does not expect, fails every caller as surely as one that crashes), and `ModelLatency`'s
        SampleCount and percentile rank `PR(:objective)`
        (the percentage of requests at or under the objective), from which the requests over it are counted;
        and each of the user's `custom` metrics' Sum and SampleCount with the same dimensions.
        Like `invocations`, the query ends a period after `end`."""
        objective_us = objective_ms * 1000
        queries: list[dict[str, Any]] = []
        for tag, variant in (("s", stable), ("c", candidate)):
            wanted = [
                ("n", NAMESPACE, "Invocations", "Sum"),
                ("e", NAMESPACE, "Invocation5XXErrors", "Sum"),
                ("f", NAMESPACE, "Invocation4XXErrors", "Sum"),
                ("l", NAMESPACE, "ModelLatency", "SampleCount"),
                ("r", NAMESPACE, "ModelLatency", f"PR(:{objective_us})"),
            ]
            for index, metric in enumerate(custom):
                wanted += [
                    (f"u{index}s", metric.namespace, metric.name, "Sum"),
                    (f"u{index}n", metric.namespace, metric.name, "SampleCount"),
                ]
            for key, namespace, name, stat in wanted:
                dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
                queries.append(
                    {
                        "Id": f"{tag}{key}",
                        "MetricStat": {
                            "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions},
                            "Period": _INVOCATIONS_PERIOD,
                            "Stat": stat,
                        },
                    }
                )
        series: dict[str, dict[datetime, float]] = {q["Id"]: {} for q in queries}
        request: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": datetime.fromtimestamp(start, UTC),
            "EndTime": datetime.fromtimestamp(max(end, start + 1) + _INVOCATIONS_PERIOD, UTC),
        }
        try:
            while True:
                page = self._cw.get_metric_data(**request)
                for result in page.get("MetricDataResults", []):
                    values = series[result["Id"]]
                    values.update(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
                token = page.get("NextToken")
                if not token:
                    break
                request["NextToken"] = token
        except ClientError as exc:
            raise TransientError(f"reading the canary metrics of {endpoint}: {exc}") from exc

        def counts(tag: str) -> VariantCounts:
            latency, ranks = series[f"{tag}l"], series[f"{tag}r"]
            over = sum(n * (100.0 - ranks[at]) / 100.0 for at, n in latency.items() if at in ranks)
            return VariantCounts(
                invocations=round(sum(series[f"{tag}n"].values())),
                errors=round(sum(series[f"{tag}e"].values()) + sum(series[f"{tag}f"].values())),
                over_objective=max(round(over), 0),
                latency_samples=round(sum(latency.values())),
                custom=tuple(
                    (round(sum(series[f"{tag}u{i}s"].values())), round(sum(series[f"{tag}u{i}n"].values())))
                    for i in range(len(custom))
                ),
            )

        return StepEvidence(counts("s"), counts("c"), start, end)

    def states(self, names: tuple[str, ...]) -> dict[str, str]:
        """The current state value of each named alarm that exists."""
        try:
            found = self._cw.describe_alarms(AlarmNames=list(names))
        except ClientError as exc:
            raise TransientError(f"reading alarms {names}: {exc}") from exc
        return {a["AlarmName"]: a["StateValue"] for a in found.get("MetricAlarms", [])}

    def evaluated_from(self, name: str) -> float | None:
        """Where the range of the alarm's last evaluation started (epoch seconds), from the `startDate` CloudWatch
        records in its StateReasonData; None when it records none (a state set by hand, an initial state)."""
        try:
            found = self._cw.describe_alarms(AlarmNames=[name]).get("MetricAlarms", [])
        except ClientError as exc:
            raise TransientError(f"reading alarm {name}: {exc}") from exc
        if not found:
            return None
        try:
            start = json.loads(found[0].get("StateReasonData") or "{}").get("startDate")
            return datetime.strptime(start, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() if start else None
        except (ValueError, TypeError, AttributeError):
            return None  # not CloudWatch's evaluation record: nothing to learn from it

    def reset(self, name: str, reason: str) -> None:
        """SetAlarmState to INSUFFICIENT_DATA: CloudWatch evaluates the alarm again at its next period and, if
        it still breaches, sends a fresh ALARM (with its new evaluated range)."""
        try:
            self._cw.set_alarm_state(AlarmName=name, StateValue="INSUFFICIENT_DATA", StateReason=reason[:1023])
        except ClientError as exc:
            raise TransientError(f"resetting alarm {name}: {exc}") from exc

    def delete(self, endpoint: str, variant: str) -> None:
        try:
            self._cw.delete_alarms(AlarmNames=list(variant_alarm_names(endpoint, variant)))
        except ClientError as exc:
            raise TransientError(f"deleting the alarms of {endpoint}/{variant}: {exc}") from exc
