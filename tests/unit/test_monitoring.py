"""The template's self-monitoring: alarms and dashboard render and reference real metrics and resources;
the metrics they read are ones the code emits; EMF lines are what CloudWatch expects."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sagepilot.metrics import (
    _COMPLETION_METRIC,
    NAMESPACE,
    EmfRecorder,
    MemoryRecorder,
    completion_metrics,
    intake_metrics,
    sweep_metrics,
)

from .conftest import CfnTag

ROOT = Path(__file__).resolve().parents[2]
AWS_METRICS = {
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
    "AWS/Lambda": {"Errors", "Throttles"},
    "AWS/SageMaker": {"Invocations", "Invocation5XXErrors", "ModelLatency"},
}


def emitted_names() -> set[str]:
    """Every metric name the product's code emits: `emit("Name", ...)` calls, and the completion table."""
    names: set[str] = set()
    for path in (ROOT / "layers/sagepilot/sagepilot").rglob("*.py"):
        names |= set(re.findall(r'emit\(\s*"([A-Za-z]+)"', path.read_text()))
    return names | set(_COMPLETION_METRIC.values())


def alarms(template):
    return {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def metric_refs(alarm) -> list[tuple[str, str]]:
    props = alarm["Properties"]
    if "MetricName" in props:
        return [(props["Namespace"], props["MetricName"])]
    return [
        (m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"])
        for m in props["Metrics"]
        if "MetricStat" in m
    ]


def test_every_self_monitoring_alarm_notifies_and_says_what_to_do(template):
    found = alarms(template)
    assert len(found) >= 8
    for name, alarm in found.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [CfnTag("Ref", "NotificationTopic")], name
        assert "First:" in props["AlarmDescription"], f"{name} does not say the first thing to do"


def test_the_alarms_cover_what_would_fail_silently(template):
    covered = {m for a in alarms(template).values() for m in metric_refs(a)}
    for needed in [
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        (NAMESPACE, "RolloutOverdueSeconds"),
        (NAMESPACE, "JobsFailed"),
        (NAMESPACE, "ReconcileRuns"),
        (NAMESPACE, "OldestJobWaitingForCapacitySeconds"),
    ]:
        assert needed in covered


def test_every_dead_letter_and_failure_queue_is_watched(template):
    queues = {k for k, r in template["Resources"].items() if r["Type"] == "AWS::SQS::Queue" and k != "IntakeQueue"}
    watched = set()
    for alarm in alarms(template).values():
        text = repr(alarm["Properties"])
        watched |= {q for q in queues if f"CfnTag('Fn::GetAtt', ['{q}', 'QueueName'])" in text}
    assert watched == queues


def test_alarms_read_only_metrics_that_exist(template):
    emitted = emitted_names()
    for name, alarm in alarms(template).items():
        for namespace, metric in metric_refs(alarm):
            if namespace == NAMESPACE:
                assert metric in emitted, f"{name} reads {metric}, which the code never emits"
            else:
                assert metric in AWS_METRICS[namespace], f"{name} reads {namespace} {metric}"


def test_the_dashboard_renders_and_references_real_metrics_and_alarms(template):
    body = template["Resources"]["ControlPlaneDashboard"]["Properties"]["DashboardBody"]
    assert isinstance(body, CfnTag) and body.tag == "Fn::Sub"
    text = body.value
    referenced_alarms = set(re.findall(r"\$\{(\w+)\.Arn\}", text))
    assert referenced_alarms == set(alarms(template))
    rendered = re.sub(r"\$\{[\w:.]+\}", "x", text)
    dashboard = json.loads(rendered)
    assert len(dashboard["widgets"]) >= 7
    used = set(re.findall(r'MetricName=\\"(\w+)\\"', text)) | set(re.findall(r'"Sagepilot", "(\w+)"', text))
    used |= set(re.findall(r'\[\s*"\.",\s*"(\w+)"', text))
    emitted = emitted_names() | AWS_METRICS["AWS/SageMaker"]
    assert used and used <= emitted, used - emitted


def test_emf_lines_are_cloudwatch_embedded_metric_format(capsys):
    EmfRecorder("sagepilot").emit("FilesRejected", 3, Reason="EMPTY_FILE")
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert set(directive["Dimensions"][0]) == {"Stack", "Reason"}
    assert line["FilesRejected"] == [3.0] or line["FilesRejected"] == 3.0
    assert line["Stack"] == "sagepilot" and line["Reason"] == "EMPTY_FILE"


def test_intake_and_completion_metrics():
    recorder = MemoryRecorder()
    intake_metrics(recorder, 5, 2, {"EMPTY_FILE": 1, "UNSUPPORTED_FILE_TYPE": 2})
    for action in ["reported", "rejected", "retried", "duplicate", "ignored"]:
        completion_metrics(recorder, action)
    assert recorder.total("FilesAccepted") == 5 and recorder.total("JobsStarted") == 2
    assert recorder.total("FilesRejected", Reason="UNSUPPORTED_FILE_TYPE") == 2
    assert [n for n, _, _ in recorder.emitted][-3:] == ["JobsCompleted", "JobsFailed", "JobsRetried"]


def test_capacity_metrics_of_the_intake_the_completion_and_the_sweep():
    recorder = MemoryRecorder()
    intake_metrics(recorder, 7, 1, {}, jobs_waiting=2)
    completion_metrics(recorder, "waiting")
    completion_metrics(recorder, "reported", jobs_started=3)
    assert recorder.total("JobsWaitingForCapacity") == 3 and recorder.total("JobsStarted") == 4
    assert recorder.total("JobsCompleted") == 1
    sweeps = MemoryRecorder()
    sweep_metrics(sweeps, 0, 0, 0)  # an empty backlog is a 0, not missing data: the alarm sees it drain
    sweep_metrics(sweeps, 2, 5, 4000)
    assert [(n, v) for n, v, _ in sweeps.emitted] == [
        ("CapacityBacklogJobs", 0), ("OldestJobWaitingForCapacitySeconds", 0),
        ("JobsStarted", 2), ("CapacityBacklogJobs", 5), ("OldestJobWaitingForCapacitySeconds", 4000),
    ]  # fmt: skip


def test_dimensions_stay_low_cardinality():
    """Only the fixed dimension names; values come from closed sets (codes, causes) or live variants."""
    source = "\n".join(p.read_text() for p in (ROOT / "layers/sagepilot/sagepilot").rglob("*.py"))
    calls = re.findall(r"emit\(((?:[^()]|\([^()]*\))*)\)", source)
    used = {name for call in calls for name in re.findall(r"\b([A-Z][A-Za-z]*)=", call)}
    assert used == {"Reason", "Cause", "Endpoint", "Variant"}
