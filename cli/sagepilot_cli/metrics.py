"""`metrics`: the dashboard's figures as tables, over a window: the stack's endpoints per variant
(AWS/SageMaker), then the control plane's decisions (the `Sagepilot` metrics of the stack).

It only reads CloudWatch (ListMetrics, GetMetricData); which series and statistics to read, and how to show
them, is decided by the plain functions `is_stack_series`, `statistics_for`, `metric_queries`, `fold` and
`show_metrics`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sagepilot.metrics import NAMESPACE
from sagepilot_cli.output import Column, number, table


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
    columns = (
        Column("ENDPOINT", max(8, *(len(e) for e, _ in variants))),
        Column("VARIANT", 8),
        Column("INVOCATIONS", 11, ">"),
        Column("5XX", 5, ">"),
        Column("4XX", 5, ">"),
        Column("LATENCY avg / max (ms)", 22, ">"),
        Column("WEIGHT", 6, ">"),
    )
    rows = []
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
        rows.append(
            (
                endpoint,
                variant,
                number(figures.total("Invocations", SAGEMAKER, **dims)),
                number(figures.total("Invocation5XXErrors", SAGEMAKER, **dims)),
                number(figures.total("Invocation4XXErrors", SAGEMAKER, **dims)),
                shown,
                "-" if weight is None else f"{weight:.0%}",
            )
        )
    return table(columns, rows, indent="  ")


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
        return f"max {number(max(figures.maxima.get(s, 0.0) for s in mine))}" if mine else "-"
    if name.endswith("Seconds"):
        count = sum(figures.counts.get(s, 0.0) for s in mine)
        if not count:
            return "-"
        average = sum(figures.sums[s] for s in mine) / count
        maximum = max(figures.maxima.get(s, 0.0) for s in mine)
        return f"avg {average:,.1f} s, max {maximum:,.1f} s ({number(count)} datapoints)"
    total = sum(figures.sums[s] for s in mine)
    parts: dict[str, float] = {}
    for s in mine:
        key = next((s.dimension(d) for d in _BREAKDOWN if s.dimension(d)), None)
        if key:
            parts[key] = parts.get(key, 0.0) + figures.sums[s]
    detail = ", ".join(f"{k} {number(v)}" for k, v in sorted(parts.items(), key=lambda kv: (-kv[1], kv[0])))
    return number(total) + (f"   ({detail})" if detail else "")


def show_metrics(figures: Figures, prefix: str, since: str) -> list[str]:
    """The dashboard's figures over the window: endpoints per variant, then the control plane's decisions."""
    lines = [f"endpoints {prefix}-*, last {since} (AWS/SageMaker per variant; weight: the newest VariantWeight)"]
    lines += _endpoint_rows(figures)
    lines += ["", f"control plane decisions, last {since} ({NAMESPACE}, Stack={prefix})"]
    known = {name for _, metrics in DECISIONS for name, _ in metrics} | {"VariantWeight"}
    columns = (Column("", max(len(label) for _, metrics in DECISIONS for _, label in metrics)), Column(""))
    for group, metrics in DECISIONS:
        lines.append(f"  {group}")
        rows = [(label, _decision_value(figures, name)) for name, label in metrics]
        lines += table(columns, rows, indent="    ", header=False)
    others = sorted({s.name for s in figures.sums if s.namespace == NAMESPACE and s.name not in known})
    if others:
        lines.append("  other")
        rows = [(name, _decision_value(figures, name)) for name in others]
        lines += table(columns, rows, indent="    ", header=False)
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
