"""What `sagepilot status | alarms | metrics` decide to show, and how: plain functions, no AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sagepilot_cli.metrics import (
    Figures,
    Series,
    fold,
    is_stack_series,
    metric_queries,
    parse_since,
    show_metrics,
    statistics_for,
)
from sagepilot_cli.output import ago
from sagepilot_cli.status import (
    AlarmView,
    QueueDepth,
    alarm_views,
    alarms_of,
    control_alarms,
    show_alarms,
    show_status,
    watched_queues,
)

NOW = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)


def alarm(name: str, state: str, minutes_ago: float, reason: str = "why") -> dict[str, object]:
    return {
        "AlarmName": name,
        "StateValue": state,
        "StateReason": reason,
        "StateUpdatedTimestamp": NOW - timedelta(minutes=minutes_ago),
    }


def sp(name: str, **dims: str) -> Series:
    return Series("Sagepilot", name, tuple(sorted({"Stack": "sp", **dims}.items())))


def sm(name: str, endpoint: str, variant: str) -> Series:
    return Series("AWS/SageMaker", name, (("EndpointName", endpoint), ("VariantName", variant)))


def test_alarms_are_listed_worst_first_with_since_and_reason() -> None:
    views = alarm_views(
        [
            alarm("sp-b-ok", "OK", 3),
            alarm("sp-a-alarm", "ALARM", 125, "Threshold Crossed: 1 datapoint [7.0] was >= 5"),
            alarm("sp-c-new", "INSUFFICIENT_DATA", 0.5),
        ]
    )

    lines = show_alarms(views, NOW)

    assert [v.name for v in views] == ["sp-a-alarm", "sp-c-new", "sp-b-ok"]
    assert lines[0].split() == ["ALARM", "STATE", "SINCE", "REASON"]
    assert lines[1].split()[:2] == ["sp-a-alarm", "ALARM"]
    assert "2026-11-25 06:55:00 (2h05m ago)" in lines[1]
    assert lines[1].endswith("Threshold Crossed: 1 datapoint [7.0] was >= 5")
    assert "(30s ago)" in lines[2] and "(3m ago)" in lines[3]
    assert show_alarms([], NOW) == ["(no alarms)"]


def test_a_naive_timestamp_means_utc() -> None:
    [view] = alarm_views([{**alarm("a", "OK", 0), "StateUpdatedTimestamp": datetime(2026, 11, 25, 8, 0)}])
    assert view.since == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3660, "1h01m"), (90000, "1d01h")]
)
def test_ago(seconds: float, shown: str) -> None:
    assert ago(seconds) == shown


def endpoint_alarm(name: str, endpoint: str) -> dict[str, object]:
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "v1"}]
    return {**alarm(name, "OK", 1), "Namespace": "AWS/SageMaker", "Dimensions": dimensions}


def test_an_endpoint_gets_only_its_own_alarms() -> None:
    views = alarm_views(
        [
            endpoint_alarm("sp-churn-v1-5xx", "sp-churn"),
            endpoint_alarm("sp-churn-v2-latency", "sp-churn"),
            endpoint_alarm("sp-churner-v1-5xx", "sp-churner"),
            # Endpoint "sp-churn-v1" (a group named churn-v1): its alarms' names start with "sp-churn-".
            endpoint_alarm("sp-churn-v1-v1-5xx", "sp-churn-v1"),
            alarm("sp-control-intake-dlq", "OK", 1),
            alarm("x-a", "OK", 1),
        ]
    )

    assert [a.name for a in alarms_of(views, "sp", "sp-churn")] == ["sp-churn-v1-5xx", "sp-churn-v2-latency"]
    assert [a.name for a in alarms_of(views, "sp", "sp-churn-v1")] == ["sp-churn-v1-v1-5xx"]
    assert len(alarms_of(views, "sp", None)) == 5  # every alarm of the stack, none of another


def test_the_control_planes_alarms_are_those_watching_no_endpoint() -> None:
    # A group named "control" gets the endpoint "sp-control": its alarms look like the control plane's.
    described = [
        alarm("sp-control-intake-dlq", "OK", 1),
        {**alarm("sp-control-handler-errors", "OK", 1), "Metrics": [{"Id": "e", "Expression": "a + b"}]},
        endpoint_alarm("sp-control-v1-5xx", "sp-control"),
    ]

    assert [a["AlarmName"] for a in control_alarms(described)] == ["sp-control-intake-dlq", "sp-control-handler-errors"]
    assert [a.name for a in alarm_views(control_alarms(described))] == [
        "sp-control-handler-errors",
        "sp-control-intake-dlq",
    ]


def test_the_watched_queues_come_from_the_alarms_dimensions() -> None:
    described = [
        {"AlarmName": "sp-control-intake-dlq", "Dimensions": [{"Name": "QueueName", "Value": "dlq"}]},
        {"AlarmName": "sp-control-intake-backlog", "Dimensions": [{"Name": "QueueName", "Value": "intake"}]},
        {
            "AlarmName": "sp-control-failed-invocations",
            "Metrics": [
                {"Id": "a", "MetricStat": {"Metric": {"Dimensions": [{"Name": "QueueName", "Value": "fail-a"}]}}},
                {"Id": "b", "MetricStat": {"Metric": {"Dimensions": [{"Name": "QueueName", "Value": "dlq"}]}}},
                {"Id": "sum", "Expression": "a + b"},
            ],
        },
        {"AlarmName": "sp-control-handler-errors", "Dimensions": [{"Name": "FunctionName", "Value": "f"}]},
    ]

    assert watched_queues(described) == {
        "dlq": ("sp-control-intake-dlq", "sp-control-failed-invocations"),
        "fail-a": ("sp-control-failed-invocations",),
        "intake": ("sp-control-intake-backlog",),
    }


def test_status_says_healthy_or_names_what_is_in_alarm() -> None:
    ok = [AlarmView("sp-control-intake-dlq", "OK", NOW, ""), AlarmView("sp-control-x", "INSUFFICIENT_DATA", NOW, "")]
    queues = [QueueDepth("sp-IntakeDeadLetterQueue", 3, 1, 0, ("sp-control-intake-dlq",))]

    healthy = show_status("sp", ok, queues, NOW)
    broken = show_status("sp", [AlarmView("sp-control-intake-dlq", "ALARM", NOW, "3 messages")], queues, NOW)

    assert healthy[0] == "control plane sp: healthy, no alarm in ALARM (1 INSUFFICIENT_DATA, 1 OK)"
    assert broken[0] == "control plane sp: NOT HEALTHY, in ALARM: sp-control-intake-dlq (1 ALARM)"
    assert healthy[-1].split() == ["sp-IntakeDeadLetterQueue", "3", "1", "0", "intake-dlq"]
    assert "no sp-control-* alarms found" in show_status("sp", [], [], NOW)[0]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("15", 900), ("1.5h", 5400)]
)
def test_parse_since(text: str, seconds: float) -> None:
    assert parse_since(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "h", "-1h", "0m", "1w", "1 hour"])
def test_parse_since_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_since(text)


def test_which_series_belong_to_the_stack() -> None:
    assert is_stack_series(sp("FilesAccepted"), "sp")
    assert not is_stack_series(Series("Sagepilot", "FilesAccepted", (("Stack", "other"),)), "sp")
    assert is_stack_series(sm("Invocations", "sp-churn", "v1"), "sp")
    assert not is_stack_series(sm("Invocations", "someone-elses", "v1"), "sp")
    assert not is_stack_series(sm("OverheadLatency", "sp-churn", "v1"), "sp")
    assert not is_stack_series(Series("AWS/SageMaker", "Invocations", (("EndpointName", "sp-churn"),)), "sp")


def test_each_metric_is_read_with_the_statistics_its_kind_needs() -> None:
    assert statistics_for(sp("FilesRejected", Reason="EMPTY_FILE")) == ("Sum",)
    assert statistics_for(sp("ApprovalToFullTrafficSeconds")) == ("Sum", "SampleCount", "Maximum")
    assert statistics_for(sm("ModelLatency", "sp-a", "v1")) == ("Sum", "SampleCount", "Maximum")
    assert statistics_for(sp("VariantWeight", Endpoint="sp-a", Variant="v1")) == ("Latest",)


def test_queries_cover_the_window_in_one_period_and_newest_values_per_minute() -> None:
    series = [sp("FilesAccepted"), sp("ApprovalToFullTrafficSeconds"), sp("VariantWeight", Endpoint="e", Variant="v")]

    queries = metric_queries(series, timedelta(minutes=90, seconds=1))

    assert [q[0] for q in queries] == [f"q{i}" for i in range(5)]
    assert [(q[1].name, q[2]) for q in queries][-1] == ("VariantWeight", "Latest")
    assert [q[3]["MetricStat"]["Period"] for q in queries] == [5460, 5460, 5460, 5460, 60]
    assert queries[-1][3]["MetricStat"]["Stat"] == "Maximum"
    assert queries[0][3]["MetricStat"]["Metric"] == {
        "Namespace": "Sagepilot",
        "MetricName": "FilesAccepted",
        "Dimensions": [{"Name": "Stack", "Value": "sp"}],
    }
    assert metric_queries([sp("A")], timedelta(seconds=5))[0][3]["MetricStat"]["Period"] == 60


def test_fold_adds_sums_and_counts_keeps_the_maximum_and_the_newest_value() -> None:
    figures = Figures()
    latency, weight = sp("ApprovalToFullTrafficSeconds"), sp("VariantWeight", Endpoint="e", Variant="v")
    fold(figures, latency, "Sum", [30.0, 10.0])
    fold(figures, latency, "Sum", [20.0])
    fold(figures, latency, "SampleCount", [2.0, 1.0])
    fold(figures, latency, "Maximum", [25.0, 10.0])
    fold(figures, weight, "Latest", [0.5, 0.1])
    fold(figures, weight, "Sum", [])

    assert (figures.sums[latency], figures.counts[latency], figures.maxima[latency]) == (60.0, 3.0, 25.0)
    assert figures.latest == {weight: 0.5} and weight not in figures.sums


def figures_after_a_demo() -> Figures:
    figures = Figures()
    for series, value in [
        (sm("Invocations", "sp-churn", "v1"), 120.0),
        (sm("Invocation5XXErrors", "sp-churn", "v1"), 0.0),
        (sm("Invocations", "sp-churn", "v3"), 40.0),
        (sm("Invocation5XXErrors", "sp-churn", "v3"), 19.0),
        (sm("Invocation4XXErrors", "sp-churn", "v3"), 1.0),
        (sm("ModelLatency", "sp-churn", "v1"), 240_000.0),
        (sp("FilesAccepted"), 4.0),
        (sp("FilesRejected", Reason="EMPTY_FILE"), 1.0),
        (sp("FilesRejected", Reason="JOB_FAILED"), 2.0),
        (sp("FilesRejected", Reason="UNSUPPORTED_FILE_TYPE"), 1.0),
        (sp("Rollbacks", Cause="alarm"), 1.0),
        (sp("Rollbacks", Cause="rejected"), 1.0),
        (sp("ApprovalToFullTrafficSeconds"), 50.0),
        (sp("BrandNewMetric"), 7.0),
    ]:
        figures.sums[series] = value
    figures.counts[sm("ModelLatency", "sp-churn", "v1")] = 120.0
    figures.maxima[sm("ModelLatency", "sp-churn", "v1")] = 9_500.0
    figures.counts[sp("ApprovalToFullTrafficSeconds")] = 2.0
    figures.maxima[sp("ApprovalToFullTrafficSeconds")] = 30.0
    figures.latest[sp("VariantWeight", Endpoint="sp-churn", Variant="v1")] = 1.0
    figures.latest[sp("VariantWeight", Endpoint="sp-churn", Variant="v3")] = 0.0
    return figures


def row(lines: list[str], label: str) -> str:
    return next(line for line in lines if line.strip().startswith(label))


def test_the_metrics_table_shows_each_variant_and_each_decision_with_its_breakdown() -> None:
    lines = show_metrics(figures_after_a_demo(), "sp", "1h")

    assert lines[0].startswith("endpoints sp-*, last 1h")
    assert row(lines, "sp-churn  v1").split() == ["sp-churn", "v1", "120", "0", "0", "2.0", "/", "9.5", "100%"]
    assert row(lines, "sp-churn  v3").split() == ["sp-churn", "v3", "40", "19", "1", "-", "0%"]
    assert row(lines, "files accepted").split()[-1] == "4"
    assert row(lines, "files rejected").split("   ")[-1] == "(JOB_FAILED 2, EMPTY_FILE 1, UNSUPPORTED_FILE_TYPE 1)"
    assert "2   (alarm 1, rejected 1)" in row(lines, "rollbacks")
    assert row(lines, "approval to full traffic").endswith("avg 25.0 s, max 30.0 s (2 datapoints)")
    assert row(lines, "transform jobs failed").split()[-1] == "0"
    assert row(lines, "rollout overdue").split()[-1] == "-"
    assert row(lines, "BrandNewMetric").split()[-1] == "7"  # an emitted metric the table does not know yet
    groups = [line.strip() for line in lines if line.startswith("  ") and not line.startswith("    ")]
    assert groups[-6:] == ["batch", "rollouts", "endpoint health", "training", "control plane", "other"]


def test_the_capacity_backlog_shows_its_highest_level_not_a_sum_of_levels() -> None:
    figures = figures_after_a_demo()
    figures.sums[sp("CapacityBacklogJobs")] = 12.0  # 5, then 4, then 3 jobs at three sweeps
    figures.maxima[sp("CapacityBacklogJobs")] = 5.0
    figures.sums[sp("JobsWaitingForCapacity")] = 6.0
    lines = show_metrics(figures, "sp", "1h")
    assert row(lines, "jobs waiting for capacity").split()[-2:] == ["max", "5"]
    assert row(lines, "jobs refused, waiting for capacity").split()[-1] == "6"
    assert row(lines, "oldest wait for capacity").split()[-1] == "-"
    assert "other" not in [line.strip() for line in show_metrics(Figures(), "sp", "1h")]


def test_no_metrics_says_so() -> None:
    lines = show_metrics(Figures(), "sp", "30m")
    assert lines[1] == "  (no endpoint metrics in this window)"
    assert row(lines, "files accepted").split()[-1] == "0"
