"""A metric for every decision, as CloudWatch embedded metric format (EMF) lines in the function's log.

One namespace, `Sagepilot`; every metric has the dimension `Stack` (the name prefix), and at most one
more, always from a small fixed set, so that the number of series stays low: `Reason` (a rejection code),
`Cause` (why a rollout was rolled back), or `Endpoint` + `Variant` (only for `VariantWeight`, one series
per live variant). Services take a `Recorder`; the handlers pass an `EmfRecorder` (powertools'
`single_metric`), the tests a `MemoryRecorder`.

    batch      FilesAccepted, FilesRejected{Reason}, JobsStarted, JobsCompleted, JobsFailed, JobsRetried,
               JobsWaitingForCapacity, CapacityBacklogJobs, OldestJobWaitingForCapacitySeconds
    rollout    EndpointsDeployed, RolloutsStarted, RolloutSteps, Promotions, Rollbacks{Cause},
               ApprovalToFullTrafficSeconds, VariantWeight{Endpoint,Variant}, Incidents, Recoveries,
               ScaleIns, InstancesSaved, ReconcileRuns, RolloutOverdueSeconds
    training   TrainingJobsStarted, ModelsRegistered, ModelsAutoApproved, TrainingJobsFailed
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

NAMESPACE = "Sagepilot"
COUNT, SECONDS, NONE = "Count", "Seconds", "None"


class Recorder(Protocol):
    def emit(self, name: str, value: float = 1, unit: str = COUNT, **dimensions: str) -> None: ...


class EmfRecorder:
    """Writes each metric as one EMF log line (CloudWatch turns it into a metric; no API call).

    The functions do not set POWERTOOLS_SERVICE_NAME: powertools would add it to every metric as a `service`
    dimension, and the alarms and the dashboard read exactly the dimensions above (CloudWatch matches a metric
    only when its dimension set is exactly the one asked for). The logger names its service itself.
    """

    def __init__(self, stack: str) -> None:
        self._stack = stack

    def emit(self, name: str, value: float = 1, unit: str = COUNT, **dimensions: str) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        metric_unit = {COUNT: MetricUnit.Count, SECONDS: MetricUnit.Seconds}.get(unit, MetricUnit.NoUnit)
        with single_metric(
            name=name, unit=metric_unit, value=value, namespace=NAMESPACE, default_dimensions={"Stack": self._stack}
        ) as metric:
            for key, item in dimensions.items():
                metric.add_dimension(name=key, value=item)


@dataclass
class MemoryRecorder:
    """Keeps what was emitted (for tests)."""

    emitted: list[tuple[str, float, dict[str, str]]] = field(default_factory=list)

    def emit(self, name: str, value: float = 1, unit: str = COUNT, **dimensions: str) -> None:
        self.emitted.append((name, value, dimensions))

    def total(self, name: str, **dimensions: str) -> float:
        return sum(v for n, v, d in self.emitted if n == name and all(d.get(k) == x for k, x in dimensions.items()))

    def names(self) -> set[str]:
        return {n for n, _, _ in self.emitted}


class NoRecorder:
    def emit(self, name: str, value: float = 1, unit: str = COUNT, **dimensions: str) -> None:
        return None


def intake_metrics(
    recorder: Recorder, files_accepted: int, jobs_started: int, rejected: dict[str, int], jobs_waiting: int = 0
) -> None:
    """What one intake batch decided (`jobs_waiting`: jobs SageMaker refused for capacity, now parked)."""
    if files_accepted:
        recorder.emit("FilesAccepted", files_accepted)
    if jobs_started:
        recorder.emit("JobsStarted", jobs_started)
    if jobs_waiting:
        recorder.emit("JobsWaitingForCapacity", jobs_waiting)
    for reason, count in sorted(rejected.items()):
        recorder.emit("FilesRejected", count, Reason=reason)


_COMPLETION_METRIC = {
    "reported": "JobsCompleted",
    "rejected": "JobsFailed",
    "retried": "JobsRetried",
    "waiting": "JobsWaitingForCapacity",
}


def completion_metrics(recorder: Recorder, action: str, jobs_started: int = 0) -> None:
    """What one transform-job completion decided (duplicates and foreign jobs count nothing), and the
    waiting jobs it started with the instances the job freed."""
    name = _COMPLETION_METRIC.get(action)
    if name:
        recorder.emit(name)
    if jobs_started:
        recorder.emit("JobsStarted", jobs_started)


def sweep_metrics(recorder: Recorder, jobs_started: int, waiting: int, oldest_wait_seconds: int) -> None:
    """What one capacity sweep saw: every sweep emits the backlog and its age (0 when empty), so the alarm
    reads a value every period and a drained backlog shows as 0, not as missing data."""
    if jobs_started:
        recorder.emit("JobsStarted", jobs_started)
    recorder.emit("CapacityBacklogJobs", waiting)
    recorder.emit("OldestJobWaitingForCapacitySeconds", oldest_wait_seconds, SECONDS)
