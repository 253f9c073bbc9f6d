"""`sagepilot`: the operator's command for rollouts, and what the stack's dashboard and alarms show.

    sagepilot rollouts                       every managed endpoint: phase, versions, live weights
    sagepilot history ENDPOINT               what happened to it, oldest first
    sagepilot pause|resume ENDPOINT          hold a canary at its step / let it go on
    sagepilot promote ENDPOINT               finish a canary now (the old variant is removed)
    sagepilot rollback ENDPOINT              all traffic back to the stable version now
    sagepilot status                         the control plane's own alarms, and its queues' depths
    sagepilot alarms [ENDPOINT]              every alarm of the stack (or of one endpoint): state, since, why
    sagepilot metrics [--since 1h]           the dashboard's figures as tables: endpoints per variant, and
                                             the control plane's decisions (files, jobs, rollouts, ...)
    sagepilot report ENDPOINT [--html PATH]  the canary analysis of its newest judged rollout: the table, and
                                             a self-contained HTML page with its chart (data bucket from
                                             --bucket or SAGEPILOT_DATA_BUCKET)

The last three only read CloudWatch (DescribeAlarms, ListMetrics, GetMetricData) and SQS
(GetQueueAttributes), with the stack's name prefix from --prefix or SAGEPILOT_PREFIX (the template's
NamePrefix, `sagepilot` by default); what to show and how is decided by the plain functions
`show_alarms`, `show_status` and `show_metrics`. The rollout commands need the state table.

A command is recorded in the endpoint's state under its lease (the same conditional write the control
plane uses, so it never races a rollout move), then a `Rollout Command` event is put on the default bus
so the rollout function acts on it at once. The state table comes from --table or SAGEPILOT_STATE_TABLE;
AWS_ENDPOINT_URL points everything at the sandbox.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from sagepilot.adapters.endpoints import Endpoints
from sagepilot.adapters.rollout_reports import RolloutReports
from sagepilot.adapters.rollout_state import LeaseBusy, NotManaged, RolloutStore
from sagepilot.domain import canary_report
from sagepilot.domain.rollout import Command, Phase, RolloutState
from sagepilot.events import OPERATOR_SOURCE, ROLLOUT_COMMAND
from sagepilot.metrics import NAMESPACE

_LEASE_WAIT_SECONDS = 15.0


class CommandRefused(Exception):
    """The command does not apply to the endpoint's current state."""


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _weights(endpoints: Endpoints, name: str) -> str:
    view = endpoints.describe(name)
    if view is None:
        return "(no endpoint)"
    shares = ", ".join(f"{v}={s:.0%}" for v, s in sorted(view.shares().items()))
    return f"{view.status}: {shares}"


def show_rollouts(store: RolloutStore, endpoints: Endpoints) -> list[str]:
    lines = [f"{'ENDPOINT':<32} {'GROUP':<20} {'PHASE':<13} {'STABLE':<7} {'CANDIDATE':<10} LIVE"]
    for state, _checked in sorted(store.all(), key=lambda pair: pair[0].endpoint):
        stable = f"v{state.stable.version}" if state.stable else "-"
        candidate = f"v{state.candidate.version}" if state.candidate else "-"
        phase = state.phase.value + (" (paused)" if state.paused else "")
        lines.append(
            f"{state.endpoint:<32} {state.group:<20} {phase:<13} {stable:<7} {candidate:<10} "
            f"{_weights(endpoints, state.endpoint)}"
        )
    return lines


def show_history(state: RolloutState) -> list[str]:
    return [f"{_when(entry.at)}  {entry.what}" for entry in state.history]


def apply_command(state: RolloutState, command: str, who: str, now: float) -> RolloutState:
    """The state with the operator's command recorded; CommandRefused if it does not apply now."""
    if state.phase is not Phase.CANARY:
        raise CommandRefused(
            f"{state.endpoint} is {state.phase.value}, not in a canary: {command} applies to a running A/B rollout"
        )
    if command == "pause":
        return state.evolve(now, f"paused by {who}", paused=True)
    if command == "resume":
        return state.evolve(now, f"resumed by {who}", paused=False)
    return state.evolve(now, f"{command} requested by {who}", command=Command(command))


def _record(store: RolloutStore, endpoint: str, command: str, who: str) -> RolloutState:
    # Unique per command: a lost response to the lease write is recognised as our own lease by its owner.
    owner = f"operator-{who}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + _LEASE_WAIT_SECONDS
    while True:
        try:
            lease = store.acquire(endpoint, owner, time.time(), existing=True)
            break
        except NotManaged:
            raise CommandRefused(f"{endpoint} is not an endpoint this stack manages") from None
        except LeaseBusy:
            if time.monotonic() > deadline:
                raise CommandRefused(f"{endpoint} is busy (a rollout move holds it); try again") from None
            time.sleep(0.5)
    try:
        if lease.state is None:
            raise CommandRefused(
                f"{endpoint} has no rollout recorded yet (its first deployment is still due): nothing to {command}"
            )
        state = apply_command(lease.state, command, who, time.time())
        store.save(lease, state, time.time())
        return state
    finally:
        store.release(lease, time.time(), force=True)


# ------------------------------------------------------------------------------ alarms, status, metrics
_SEVERITY = {"ALARM": 0, "INSUFFICIENT_DATA": 1, "OK": 2}


@dataclass(frozen=True)
class AlarmView:
    name: str
    state: str
    since: datetime
    reason: str
    endpoint: str | None = None  # the endpoint whose metric the alarm watches (its EndpointName dimension)


@dataclass(frozen=True)
class QueueDepth:
    name: str
    waiting: int
    in_flight: int
    delayed: int
    watched_by: tuple[str, ...] = ()


def _dimensions(alarm: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The dimensions of every metric an alarm watches (its own, and its metric math's)."""
    found = list(alarm.get("Dimensions", []))
    for metric in alarm.get("Metrics", []):
        if "MetricStat" in metric:
            found += metric["MetricStat"]["Metric"].get("Dimensions", [])
    return found


def endpoint_of(alarm: Mapping[str, Any]) -> str | None:
    """The endpoint an alarm belongs to: the EndpointName its metric is measured for (not its name, which a
    group named like `control` can make look like anything)."""
    return next((str(d["Value"]) for d in _dimensions(alarm) if d.get("Name") == "EndpointName"), None)


def control_alarms(described: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The control plane's own alarms among `<prefix>-control-*`: those that watch no endpoint (an endpoint
    `<prefix>-control`, the default name of a group `control`, has alarms named `<prefix>-control-v1-...`)."""
    return [a for a in described if endpoint_of(a) is None]


def alarm_views(described: Iterable[Mapping[str, Any]]) -> list[AlarmView]:
    """DescribeAlarms' metric and composite alarms, worst state first, then by name."""
    views = [
        AlarmView(
            str(a["AlarmName"]),
            str(a.get("StateValue", "INSUFFICIENT_DATA")),
            _aware(a.get("StateUpdatedTimestamp")),
            str(a.get("StateReason", "")),
            endpoint_of(a),
        )
        for a in described
    ]
    return sorted(views, key=lambda v: (_SEVERITY.get(v.state, 1), v.name))


def _aware(value: Any) -> datetime:
    if not isinstance(value, datetime):
        return datetime.fromtimestamp(0, UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ago(seconds: float) -> str:
    """`35s`, `4m`, `2h05m`, `3d04h`: how long a state has held, at a glance."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def show_alarms(alarms: Sequence[AlarmView], now: datetime) -> list[str]:
    if not alarms:
        return ["(no alarms)"]
    width = max(len(a.name) for a in alarms)
    lines = [f"{'ALARM':<{width}}  {'STATE':<17}  {'SINCE':<29}  REASON"]
    for a in alarms:
        since = f"{a.since.strftime('%Y-%m-%d %H:%M:%S')} ({ago((now - a.since).total_seconds())} ago)"
        lines.append(f"{a.name:<{width}}  {a.state:<17}  {since:<29}  {a.reason}")
    return lines


def alarms_of(alarms: Sequence[AlarmView], prefix: str, endpoint: str | None) -> list[AlarmView]:
    """The stack's alarms (`<prefix>-...`: no other stack's prefix starts so), or only one endpoint's: those
    measuring its metrics (not every name starting `<endpoint>-`: endpoint `x-v1`'s alarms are `x-v1-v1-...`)."""
    if endpoint:
        return [a for a in alarms if a.endpoint == endpoint]
    return [a for a in alarms if a.name.startswith(f"{prefix}-")]


def watched_queues(described: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Queue name -> the alarms that watch it, from the alarms' own QueueName dimensions (no other input
    needed: the stack's alarms name every queue that matters)."""
    found: dict[str, list[str]] = {}
    for alarm in described:
        dimension_lists = [alarm.get("Dimensions", [])]
        dimension_lists += [
            m["MetricStat"]["Metric"].get("Dimensions", []) for m in alarm.get("Metrics", []) if "MetricStat" in m
        ]
        for dimensions in dimension_lists:
            for d in dimensions:
                if d.get("Name") == "QueueName":
                    watchers = found.setdefault(str(d["Value"]), [])
                    if alarm["AlarmName"] not in watchers:
                        watchers.append(str(alarm["AlarmName"]))
    return {name: tuple(watchers) for name, watchers in sorted(found.items())}


def show_status(prefix: str, control: Sequence[AlarmView], queues: Sequence[QueueDepth], now: datetime) -> list[str]:
    """The control plane's own health: one verdict line, its alarms, its queues."""
    counts: dict[str, int] = {}
    for a in control:
        counts[a.state] = counts.get(a.state, 0) + 1
    tally = ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: _SEVERITY.get(s, 1)))
    firing = [a.name for a in control if a.state == "ALARM"]
    if not control:
        verdict = f"control plane {prefix}: no {prefix}-control-* alarms found (is the prefix right?)"
    elif firing:
        verdict = f"control plane {prefix}: NOT HEALTHY, in ALARM: {', '.join(firing)} ({tally})"
    else:
        verdict = f"control plane {prefix}: healthy, no alarm in ALARM ({tally})"
    lines = [verdict, "", *show_alarms(control, now)]
    if queues:
        width = max(len(q.name) for q in queues)
        lines += ["", f"{'QUEUE':<{width}}  {'WAITING':>7}  {'IN FLIGHT':>9}  {'DELAYED':>7}  WATCHED BY"]
        for q in queues:
            watchers = ", ".join(w.removeprefix(f"{prefix}-control-") for w in q.watched_by)
            lines.append(f"{q.name:<{width}}  {q.waiting:>7}  {q.in_flight:>9}  {q.delayed:>7}  {watchers}")
    return lines


def parse_since(text: str) -> timedelta:
    """`90s`, `30m`, `1h`, `2d` (or a bare number of minutes)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 1h, 2d)")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 60}[found.group(2)]
    return timedelta(seconds=float(found.group(1)) * unit)


Dimensions = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Series:
    namespace: str
    name: str
    dimensions: Dimensions  # in ListMetrics' order, which GetMetricData is given back

    @classmethod
    def of(cls, listed: Mapping[str, Any]) -> Series:
        dims = tuple((str(d["Name"]), str(d["Value"])) for d in listed.get("Dimensions", []))
        return cls(str(listed["Namespace"]), str(listed["MetricName"]), dims)

    def dimension(self, name: str) -> str | None:
        return dict(self.dimensions).get(name)


@dataclass
class Figures:
    """GetMetricData's answers over the window, per series: Sum, SampleCount, Maximum, and the newest value."""

    sums: dict[Series, float] = field(default_factory=dict)
    counts: dict[Series, float] = field(default_factory=dict)
    maxima: dict[Series, float] = field(default_factory=dict)
    latest: dict[Series, float] = field(default_factory=dict)

    def total(self, name: str, namespace: str = NAMESPACE, **dimensions: str) -> float:
        return sum(
            v for s, v in self.sums.items() if s.namespace == namespace and s.name == name and _has(s, dimensions)
        )


SAGEMAKER = "AWS/SageMaker"
_ENDPOINT_METRICS = ("Invocations", "Invocation5XXErrors", "Invocation4XXErrors", "ModelLatency")
# What each metric is read as: counts are summed; times keep their sum, count and maximum (average = sum /
# count, right across periods); VariantWeight is a level: its newest value.
_SUM, _SPREAD, _LATEST = ("Sum",), ("Sum", "SampleCount", "Maximum"), ("Latest",)


def statistics_for(series: Series) -> tuple[str, ...]:
    if series.name == "VariantWeight":
        return _LATEST
    if series.name == "ModelLatency" or series.name.endswith("Seconds"):
        return _SPREAD
    return _SUM


def is_stack_series(series: Series, prefix: str) -> bool:
    """The stack's own metrics (dimension Stack = prefix) and its endpoints' (`<prefix>-*`, per variant)."""
    if series.namespace == NAMESPACE:
        return series.dimension("Stack") == prefix
    endpoint = series.dimension("EndpointName") or ""
    return (
        series.namespace == SAGEMAKER
        and series.name in _ENDPOINT_METRICS
        and endpoint.startswith(f"{prefix}-")
        and series.dimension("VariantName") is not None
    )


def metric_queries(series: Sequence[Series], window: timedelta) -> list[tuple[str, Series, str, dict[str, Any]]]:
    """One GetMetricData query per series and statistic: (id, series, statistic, query). The window is one
    period (a multiple of 60 s, as CloudWatch requires), except for newest values: one-minute periods."""
    period = max(60, -(-int(window.total_seconds()) // 60) * 60)
    out: list[tuple[str, Series, str, dict[str, Any]]] = []
    for s in series:
        metric = {
            "Namespace": s.namespace,
            "MetricName": s.name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in s.dimensions],
        }
        for stat in statistics_for(s):
            query_id = f"q{len(out)}"
            stat_spec = {"Metric": metric, "Period": 60 if stat == "Latest" else period}
            stat_spec["Stat"] = "Maximum" if stat == "Latest" else stat
            out.append((query_id, s, stat, {"Id": query_id, "MetricStat": stat_spec, "ReturnData": True}))
    return out


def fold(figures: Figures, series: Series, stat: str, values: Sequence[float]) -> None:
    """Add one query's datapoints (newest first) to the figures."""
    if not values:
        return
    if stat == "Sum":
        figures.sums[series] = figures.sums.get(series, 0.0) + sum(values)
    elif stat == "SampleCount":
        figures.counts[series] = figures.counts.get(series, 0.0) + sum(values)
    elif stat == "Maximum":
        figures.maxima[series] = max(figures.maxima.get(series, float("-inf")), *values)
    elif stat == "Latest":
        figures.latest[series] = values[0]


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _has(series: Series, dimensions: Mapping[str, str]) -> bool:
    return all(series.dimension(k) == v for k, v in dimensions.items())


def _endpoint_rows(figures: Figures) -> list[str]:
    variants: set[tuple[str, str]] = set()
    for s in [*figures.sums, *figures.latest]:
        if s.namespace == SAGEMAKER:
            variants.add((s.dimension("EndpointName") or "", s.dimension("VariantName") or ""))
        elif s.name == "VariantWeight":
            variants.add((s.dimension("Endpoint") or "", s.dimension("Variant") or ""))
    if not variants:
        return ["  (no endpoint metrics in this window)"]
    width = max(8, *(len(e) for e, _ in variants))
    header = f"{'ENDPOINT':<{width}}  {'VARIANT':<8}  {'INVOCATIONS':>11}  {'5XX':>5}  {'4XX':>5}"
    lines = [f"  {header}  {'LATENCY avg / max (ms)':>22}  {'WEIGHT':>6}"]
    for endpoint, variant in sorted(variants):
        dims = {"EndpointName": endpoint, "VariantName": variant}
        latency = next((s for s in figures.counts if s.name == "ModelLatency" and _has(s, dims)), None)
        count = figures.counts.get(latency, 0.0) if latency else 0.0
        shown = "-"
        if latency and count:
            average, maximum = figures.sums.get(latency, 0.0) / count / 1000, figures.maxima.get(latency, 0.0) / 1000
            shown = f"{average:.1f} / {maximum:.1f}"
        weight = next(
            (
                v
                for s, v in figures.latest.items()
                if s.name == "VariantWeight"
                and (s.dimension("Endpoint"), s.dimension("Variant")) == (endpoint, variant)
            ),
            None,
        )
        lines.append(
            f"  {endpoint:<{width}}  {variant:<8}  {_num(figures.total('Invocations', SAGEMAKER, **dims)):>11}  "
            f"{_num(figures.total('Invocation5XXErrors', SAGEMAKER, **dims)):>5}  "
            f"{_num(figures.total('Invocation4XXErrors', SAGEMAKER, **dims)):>5}  {shown:>22}  "
            f"{'-' if weight is None else f'{weight:.0%}':>6}"
        )
    return lines


# The dashboard's control-plane figures, grouped as a person reads them: (group, ((metric, label), ...)).
DECISIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "batch",
        (
            ("FilesAccepted", "files accepted"),
            ("FilesRejected", "files rejected"),
            ("JobsStarted", "transform jobs started"),
            ("JobsCompleted", "transform jobs completed"),
            ("JobsFailed", "transform jobs failed"),
            ("JobsRetried", "transform jobs retried"),
            ("JobsWaitingForCapacity", "jobs refused, waiting for capacity"),
            ("CapacityBacklogJobs", "jobs waiting for capacity"),
        ),
    ),
    (
        "rollouts",
        (
            ("EndpointsDeployed", "endpoints deployed"),
            ("RolloutsStarted", "rollouts started"),
            ("RolloutSteps", "rollout steps"),
            ("Promotions", "promotions"),
            ("Rollbacks", "rollbacks"),
            ("ApprovalToFullTrafficSeconds", "approval to full traffic"),
        ),
    ),
    (
        "endpoint health",
        (
            ("Incidents", "incidents opened"),
            ("Recoveries", "recoveries"),
            ("ScaleIns", "scale-ins"),
            ("InstancesSaved", "instances saved by scale-ins"),
        ),
    ),
    (
        "training",
        (
            ("TrainingJobsStarted", "training jobs started"),
            ("TrainingJobsFailed", "training jobs failed"),
            ("ModelsRegistered", "models registered"),
            ("ModelsAutoApproved", "models auto-approved"),
        ),
    ),
    (
        "control plane",
        (
            ("ReconcileRuns", "reconcile runs"),
            ("RolloutOverdueSeconds", "rollout overdue"),
            ("OldestJobWaitingForCapacitySeconds", "oldest wait for capacity"),
        ),
    ),
)
_BREAKDOWN = ("Reason", "Cause")
_GAUGES = frozenset({"CapacityBacklogJobs"})  # a level at each sweep, not a count of decisions: its maximum


def _decision_value(figures: Figures, name: str) -> str:
    mine = [s for s in figures.sums if s.namespace == NAMESPACE and s.name == name]
    if name in _GAUGES:
        return f"max {_num(max(figures.maxima.get(s, 0.0) for s in mine))}" if mine else "-"
    if name.endswith("Seconds"):
        count = sum(figures.counts.get(s, 0.0) for s in mine)
        if not count:
            return "-"
        average = sum(figures.sums[s] for s in mine) / count
        maximum = max(figures.maxima.get(s, 0.0) for s in mine)
        return f"avg {average:,.1f} s, max {maximum:,.1f} s ({_num(count)} datapoints)"
    total = sum(figures.sums[s] for s in mine)
    parts: dict[str, float] = {}
    for s in mine:
        key = next((s.dimension(d) for d in _BREAKDOWN if s.dimension(d)), None)
        if key:
            parts[key] = parts.get(key, 0.0) + figures.sums[s]
    detail = ", ".join(f"{k} {_num(v)}" for k, v in sorted(parts.items(), key=lambda kv: (-kv[1], kv[0])))
    return _num(total) + (f"   ({detail})" if detail else "")


def show_metrics(figures: Figures, prefix: str, since: str) -> list[str]:
    """The dashboard's figures over the window: endpoints per variant, then the control plane's decisions."""
    lines = [f"endpoints {prefix}-*, last {since} (AWS/SageMaker per variant; weight: the newest VariantWeight)"]
    lines += _endpoint_rows(figures)
    lines += ["", f"control plane decisions, last {since} ({NAMESPACE}, Stack={prefix})"]
    known = {name for _, metrics in DECISIONS for name, _ in metrics} | {"VariantWeight"}
    width = max(len(label) for _, metrics in DECISIONS for _, label in metrics)
    for group, metrics in DECISIONS:
        lines.append(f"  {group}")
        lines += [f"    {label:<{width}}  {_decision_value(figures, name)}" for name, label in metrics]
    others = sorted({s.name for s in figures.sums if s.namespace == NAMESPACE and s.name not in known})
    if others:
        lines.append("  other")
        lines += [f"    {name:<{width}}  {_decision_value(figures, name)}" for name in others]
    return lines


def _list_metrics(cloudwatch: Any, **kwargs: Any) -> list[Series]:
    found: dict[Series, None] = {}
    for page in cloudwatch.get_paginator("list_metrics").paginate(**kwargs):
        for listed in page.get("Metrics", []):
            found.setdefault(Series.of(listed))
    return list(found)


def fetch_figures(cloudwatch: Any, prefix: str, window: timedelta, now: datetime) -> Figures:
    """ListMetrics for the stack's series, then GetMetricData (at most 500 queries a call, as CloudWatch allows)."""
    series = _list_metrics(cloudwatch, Namespace=NAMESPACE, Dimensions=[{"Name": "Stack", "Value": prefix}])
    for name in _ENDPOINT_METRICS:
        series += _list_metrics(cloudwatch, Namespace=SAGEMAKER, MetricName=name)
    series = [s for s in series if is_stack_series(s, prefix)]
    queries = metric_queries(series, window)
    figures = Figures()
    by_id = {query_id: (s, stat) for query_id, s, stat, _ in queries}
    for start in range(0, len(queries), 500):
        chunk = [q for _, _, _, q in queries[start : start + 500]]
        pages = cloudwatch.get_paginator("get_metric_data").paginate(
            MetricDataQueries=chunk,
            StartTime=now - window,
            EndTime=now + timedelta(minutes=1),  # CloudWatch rounds the end down: keep this minute's data
            ScanBy="TimestampDescending",
        )
        for page in pages:
            for result in page.get("MetricDataResults", []):
                s, stat = by_id[result["Id"]]
                fold(figures, s, stat, [float(v) for v in result.get("Values", [])])
    return figures


def _describe_alarms(cloudwatch: Any, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix):
        found += page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
    return found


def _queue_depths(sqs: Any, watched: Mapping[str, tuple[str, ...]]) -> list[QueueDepth]:
    depths: list[QueueDepth] = []
    for name, watchers in watched.items():
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        depths.append(
            QueueDepth(
                name,
                int(attributes.get("ApproximateNumberOfMessages", 0)),
                int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
                watchers,
            )
        )
    return depths


def monitor(verb: str, prefix: str, endpoint: str | None, since: str) -> list[str]:
    """`status`, `alarms` and `metrics`: read CloudWatch (and SQS for status), then the plain functions decide."""
    cloudwatch = boto3.client("cloudwatch")
    now = datetime.now(UTC)
    if verb == "metrics":
        try:
            window = parse_since(since)
        except ValueError as exc:
            raise CommandRefused(str(exc)) from None
        return show_metrics(fetch_figures(cloudwatch, prefix, window, now), prefix, since)
    if verb == "alarms":
        found = alarm_views(_describe_alarms(cloudwatch, f"{endpoint or prefix}-"))
        return show_alarms(alarms_of(found, prefix, endpoint), now)
    control = control_alarms(_describe_alarms(cloudwatch, f"{prefix}-control-"))
    queues = _queue_depths(boto3.client("sqs"), watched_queues(control))
    return show_status(prefix, alarm_views(control), queues, now)


def show_report(reports: RolloutReports, endpoint: str, html_path: str | None) -> list[str]:
    """The table of the endpoint's newest judged rollout; its page written to `html_path`."""
    found = reports.newest(endpoint)
    if found is None:
        raise CommandRefused(f"no canary analysis report for {endpoint} (its canaries ran without the gate?)")
    path = html_path or f"{endpoint}-report.html"
    with open(path, "w", encoding="utf-8") as page:
        page.write(canary_report.html_page(found))
    return [*canary_report.table(found), f"page written to {path}"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sagepilot", description="Operate sagepilot's rollouts; see its health.")
    parser.add_argument("--table", default=os.environ.get("SAGEPILOT_STATE_TABLE"), help="the stack's state table")
    parser.add_argument(
        "--prefix", default=os.environ.get("SAGEPILOT_PREFIX") or "sagepilot", help="the stack's NamePrefix"
    )
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("rollouts", help="every managed endpoint and its rollout")
    for verb in ("history", "pause", "resume", "promote", "rollback"):
        sub.add_parser(verb).add_argument("endpoint")
    sub.add_parser("status", help="the control plane's own alarms and queues")
    sub.add_parser("alarms", help="every alarm of the stack, or of one endpoint").add_argument("endpoint", nargs="?")
    sub.add_parser("metrics", help="the dashboard's figures as tables").add_argument(
        "--since", default="1h", help="the window: 30m, 1h, 2d (default 1h)"
    )
    report = sub.add_parser("report", help="the canary analysis of the endpoint's newest judged rollout")
    report.add_argument("endpoint")
    report.add_argument(
        "--bucket", default=os.environ.get("SAGEPILOT_DATA_BUCKET"), help="the stack's data bucket (DataBucketName)"
    )
    report.add_argument("--html", help="where to write the page (default: <endpoint>-report.html)")
    args = parser.parse_args(argv)
    if args.verb == "report":
        if not args.bucket:
            parser.error("the data bucket is needed: --bucket NAME or SAGEPILOT_DATA_BUCKET (stack output)")
        try:
            lines = show_report(RolloutReports(boto3.client("s3"), args.bucket), args.endpoint, args.html)
        except CommandRefused as exc:
            print(f"sagepilot: {exc}", file=sys.stderr)
            return 2
        print("\n".join(lines))
        return 0
    if args.verb in ("status", "alarms", "metrics"):
        try:
            lines = monitor(args.verb, args.prefix, getattr(args, "endpoint", None), getattr(args, "since", "1h"))
        except CommandRefused as exc:
            print(f"sagepilot: {exc}", file=sys.stderr)
            return 2
        print("\n".join(lines))
        return 0
    if not args.table:
        parser.error("the state table is needed: --table NAME or SAGEPILOT_STATE_TABLE (stack output StateTableName)")
    store = RolloutStore(boto3.client("dynamodb"), args.table, lease_seconds=60)
    endpoints = Endpoints(boto3.client("sagemaker"), role_arn="")
    try:
        if args.verb == "rollouts":
            lines = show_rollouts(store, endpoints)
        elif args.verb == "history":
            state = store.read(args.endpoint)
            if state is None:
                raise CommandRefused(f"{args.endpoint} is not an endpoint this stack manages")
            lines = [*show_history(state), _weights(endpoints, args.endpoint)]
        else:
            who = os.environ.get("SAGEPILOT_OPERATOR") or getpass.getuser()
            _record(store, args.endpoint, args.verb, who)
            boto3.client("events").put_events(
                Entries=[
                    {
                        "Source": OPERATOR_SOURCE,
                        "DetailType": ROLLOUT_COMMAND,
                        "Detail": json.dumps({"endpoint": args.endpoint, "command": args.verb, "requestedBy": who}),
                    }
                ]
            )
            lines = [f"{args.verb} recorded for {args.endpoint}; the rollout function acts on it now"]
    except CommandRefused as exc:
        print(f"sagepilot: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def run() -> Any:  # console-script entry point
    sys.exit(main())


if __name__ == "__main__":
    run()
