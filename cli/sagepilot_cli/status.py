"""`status` and `alarms`: the stack's alarms and the queues they watch.

They only read CloudWatch (DescribeAlarms) and SQS (GetQueueUrl, GetQueueAttributes); what to show and how
is decided by the plain functions `alarm_views`, `alarms_of`, `control_alarms`, `watched_queues`,
`show_alarms` and `show_status`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sagepilot_cli.output import Column, ago, table

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


def show_alarms(alarms: Sequence[AlarmView], now: datetime) -> list[str]:
    if not alarms:
        return ["(no alarms)"]
    columns = (
        Column("ALARM", max(len(a.name) for a in alarms)),
        Column("STATE", 17),
        Column("SINCE", 29),
        Column("REASON"),
    )
    rows = [
        (a.name, a.state, f"{a.since:%Y-%m-%d %H:%M:%S} ({ago((now - a.since).total_seconds())} ago)", a.reason)
        for a in alarms
    ]
    return table(columns, rows)


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
        columns = (
            Column("QUEUE", max(len(q.name) for q in queues)),
            Column("WAITING", 7, ">"),
            Column("IN FLIGHT", 9, ">"),
            Column("DELAYED", 7, ">"),
            Column("WATCHED BY"),
        )
        rows = [
            (
                q.name,
                str(q.waiting),
                str(q.in_flight),
                str(q.delayed),
                ", ".join(w.removeprefix(f"{prefix}-control-") for w in q.watched_by),
            )
            for q in queues
        ]
        lines += ["", *table(columns, rows)]
    return lines


def describe_alarms(cloudwatch: Any, prefix: str) -> list[dict[str, Any]]:
    """Every metric and composite alarm whose name starts with `prefix`."""
    found: list[dict[str, Any]] = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix):
        found += page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
    return found


def queue_depths(sqs: Any, watched: Mapping[str, tuple[str, ...]]) -> list[QueueDepth]:
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
