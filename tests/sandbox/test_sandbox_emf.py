"""The sandbox turns the functions' EMF log lines into CloudWatch metrics, as CloudWatch Logs does in AWS
(sandbox/emf.py): the specification's rules, what lands in the embedded CloudWatch, and a running sandbox
whose function's `EmfRecorder` metrics are readable with GetMetricData and judged by an alarm."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sagepilot.metrics import SECONDS, EmfRecorder
from sagepilot_sandbox.cloudwatch import alarms, emf
from sagepilot_sandbox.server import Sandbox, free_port

STAMP = 1_764_000_000_000  # 2025-11-24T16:00:00Z in epoch milliseconds


def document(**root: Any) -> str:
    metrics = root.pop("metrics", [{"Name": "Files", "Unit": "Count"}])
    dimensions = root.pop("dimensions", [["Stack"]])
    meta = {"Timestamp": root.pop("timestamp", STAMP), "CloudWatchMetrics": []}
    meta["CloudWatchMetrics"].append({"Namespace": root.pop("namespace", "Sagepilot"), "Dimensions": dimensions,
                                      "Metrics": metrics})  # fmt: skip
    return json.dumps({"_aws": meta, **root})


def test_the_product_emf_line_becomes_its_metric(capsys: pytest.CaptureFixture[str]) -> None:
    EmfRecorder("sagepilot").emit("FilesRejected", 3, Reason="EMPTY_FILE")
    EmfRecorder("sagepilot").emit("ApprovalToFullTrafficSeconds", 42.5, SECONDS)
    lines = emf.candidate_lines("START RequestId: x\n" + capsys.readouterr().out + "END RequestId: x\n")

    found = emf.extract(lines)

    assert found.problems == []
    rejected, latency = found.points
    assert (rejected.namespace, rejected.name, rejected.values) == ("Sagepilot", "FilesRejected", (3.0,))
    assert rejected.unit == "Count"
    assert dict(rejected.dimensions) == {"Stack": "sagepilot", "Reason": "EMPTY_FILE"}
    assert abs((rejected.timestamp - datetime.now(UTC)).total_seconds()) < 60
    assert (latency.name, latency.values, latency.unit) == ("ApprovalToFullTrafficSeconds", (42.5,), "Seconds")


def test_every_dimension_set_gives_a_metric_and_arrays_keep_every_value() -> None:
    line = document(
        Stack="s", Endpoint="e", Files=[1, 2, 3], Lat=7,
        dimensions=[["Stack"], ["Stack", "Endpoint"], []],
        metrics=[{"Name": "Files", "Unit": "Count"}, {"Name": "Lat", "Unit": "Milliseconds", "StorageResolution": 1}],
    )  # fmt: skip

    points = emf.extract([line]).points

    assert [(p.name, p.dimensions, p.values) for p in points] == [
        ("Files", (("Stack", "s"),), (1.0, 2.0, 3.0)),
        ("Files", (("Stack", "s"), ("Endpoint", "e")), (1.0, 2.0, 3.0)),
        ("Files", (), (1.0, 2.0, 3.0)),
        ("Lat", (("Stack", "s"),), (7.0,)),
        ("Lat", (("Stack", "s"), ("Endpoint", "e")), (7.0,)),
        ("Lat", (), (7.0,)),
    ]
    assert points[0].timestamp == datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
    assert points[-1].storage_resolution == 1


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{not json", "Expecting"),
        (json.dumps({"_aws": {"CloudWatchMetrics": []}, "Files": 1}), "Timestamp"),
        (document(Stack="s"), "'Files' has no member"),
        (document(Files=1), "dimension 'Stack'"),
        (document(Stack=5, Files=1), "dimension 'Stack'"),
        (document(Stack="s", Files="1"), "not a number"),
        (document(Stack="s", Files=[1] * 101), "not a number"),
        (document(Stack="s", Files=1, namespace="AWS/Lambda"), "namespace"),
        (document(Stack="s", Files=1, metrics=[{"Name": "Files", "Unit": "Parsecs"}]), "unit"),
        (document(Stack="s", Files=1, metrics=[{"Name": "Files", "StorageResolution": 5}]), "StorageResolution"),
        (document(Files=1, dimensions=[[f"D{i}" for i in range(31)]]), "at most 30"),
    ],
)
def test_a_document_that_breaks_the_specification_yields_no_metric(line: str, why: str) -> None:
    found = emf.extract([line])

    assert found.points == []
    assert len(found.problems) == 1 and why in found.problems[0]


def test_published_metrics_are_readable_as_cloudwatch_metrics() -> None:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    with mock_aws():
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        publisher = emf.EmfPublisher("123456789012", "us-east-1")
        lines = [
            document(Stack="s", Reason="EMPTY_FILE", Files=2, timestamp=now_ms, dimensions=[["Stack", "Reason"]]),
            document(Stack="s", Reason="EMPTY_FILE", Files=[1, 4], timestamp=now_ms, dimensions=[["Stack", "Reason"]]),
            document(Files=1, timestamp=now_ms),  # dropped: no Stack member
        ]

        publisher.publish(lines)

        listed = cw.list_metrics(Namespace="Sagepilot")["Metrics"]
        assert {(m["MetricName"], json.dumps(m["Dimensions"])) for m in listed} == {
            ("Files", json.dumps([{"Name": "Stack", "Value": "s"}, {"Name": "Reason", "Value": "EMPTY_FILE"}]))
        }
        stat = {
            "Metric": {"Namespace": "Sagepilot", "MetricName": "Files", "Dimensions": listed[0]["Dimensions"]},
            "Period": 3600,
        }
        got = cw.get_metric_data(
            MetricDataQueries=[
                {"Id": "total", "MetricStat": {**stat, "Stat": "Sum"}},
                {"Id": "samples", "MetricStat": {**stat, "Stat": "SampleCount"}},
            ],
            StartTime=datetime.now(UTC) - timedelta(hours=1),
            EndTime=datetime.now(UTC) + timedelta(minutes=1),
        )["MetricDataResults"]
        assert {r["Id"]: r["Values"] for r in got} == {"total": [7.0], "samples": [3.0]}
        assert publisher.published == 2 and len(publisher.rejected) == 1


HANDLER = """\
from sagepilot.metrics import EmfRecorder


def handler(event, context):
    print("an ordinary log line")
    EmfRecorder("tiny").emit("Ticks")
    EmfRecorder("tiny").emit("FilesRejected", 2, Reason="EMPTY_FILE")
    return "ticked"
"""
TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.13
      Timeout: 5
      Events:
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(1 minute)
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root: Path = tmp_path_factory.mktemp("emf-stack")
    (root / "fn").mkdir()
    (root / "fn" / "app.py").write_text(HANDLER)
    (root / "template.yaml").write_text(textwrap.dedent(TEMPLATE))
    running = Sandbox(port=free_port(), root=root, log_dir=root / "logs", schedule_seconds=0.3)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_a_running_function_metrics_reach_cloudwatch_and_its_alarms(sandbox: Sandbox) -> None:
    cw = sandbox.client("cloudwatch")
    stack = [{"Name": "Stack", "Value": "tiny"}]
    cw.put_metric_alarm(
        AlarmName="tiny-ticking", Namespace="Sagepilot", MetricName="Ticks", Dimensions=stack, Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
    )  # fmt: skip

    def ticks() -> float:
        got = cw.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "t",
                    "MetricStat": {
                        "Metric": {"Namespace": "Sagepilot", "MetricName": "Ticks", "Dimensions": stack},
                        "Period": 3600,
                        "Stat": "Sum",
                    },
                }
            ],
            StartTime=datetime.now(UTC) - timedelta(hours=1),
            EndTime=datetime.now(UTC) + timedelta(minutes=1),
        )["MetricDataResults"][0]["Values"]
        return float(sum(got))

    assert sandbox.wait_for(lambda: ticks() >= 2, timeout=15)
    rejected = cw.list_metrics(Namespace="Sagepilot", MetricName="FilesRejected")["Metrics"]
    assert {d["Name"]: d["Value"] for d in rejected[0]["Dimensions"]} == {"Stack": "tiny", "Reason": "EMPTY_FILE"}
    assert alarms.evaluate_alarm("tiny-ticking", time_scale=0.05) == "ALARM"
    assert sandbox.lambdas is not None
    function = sandbox.lambdas.functions["TickFunction"]
    assert all("emf" not in i for i in function.invocations)  # consumed, not left in the invocation record
    log = function.log_path.read_text()
    assert "an ordinary log line" in log and '"_aws"' in log  # the lines stay in the function's log too
    assert function.metrics.rejected == []


def test_metric_data_is_found_whatever_the_order_of_its_dimensions(clients) -> None:
    """CloudWatch matches a metric by its set of dimensions; moto's sorting compared values with names."""
    cw = clients("cloudwatch")
    dims = [{"Name": "Stack", "Value": "zz-stack"}, {"Name": "Reason", "Value": "aa-reason"}]
    cw.put_metric_data(
        Namespace="Sagepilot", MetricData=[{"MetricName": "FilesRejected", "Dimensions": dims, "Value": 3}]
    )
    now = datetime.now(UTC)
    for order in (dims, list(reversed(dims))):
        answer = cw.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "q",
                    "MetricStat": {
                        "Metric": {"Namespace": "Sagepilot", "MetricName": "FilesRejected", "Dimensions": order},
                        "Period": 60,
                        "Stat": "Sum",
                    },
                }
            ],
            StartTime=now - timedelta(minutes=5),
            EndTime=now + timedelta(minutes=1),
        )
        assert answer["MetricDataResults"][0]["Values"] == [3.0], order
