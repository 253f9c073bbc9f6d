"""`sagepilot status | alarms | metrics` against the stack provisioned from template.yaml in moto: the
control plane's own alarms and queues, an endpoint's alarms through ALARM and back, and the figures the
functions' EMF lines and SageMaker's invocation metrics put into CloudWatch, read back as the dashboard's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import sagepilot_cli as cli
from sagepilot.metrics import SECONDS, EmfRecorder, completion_metrics, intake_metrics
from sagepilot_sandbox.cloudwatch.emf import EmfPublisher, candidate_lines
from sagepilot_sandbox.sagemaker.metrics import InvocationMetrics
from sagepilot_sandbox.stack.provision import Stack

from .conftest import ACCOUNT, REGION

PREFIX = "sagepilot"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert cli.main(list(args)) == 0
    return capsys.readouterr().out.splitlines()


def line_of(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.strip().startswith(start))


def test_status_shows_every_control_alarm_and_the_queues_they_watch(
    stack: Stack, clients: Callable[[str], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    sqs, cw = clients("sqs"), clients("cloudwatch")
    dlq = stack.outputs["IntakeDeadLetterQueueUrl"]
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=dlq, MessageBody=body)

    lines = run(capsys, "status")

    controls = [a["AlarmName"] for a in cw.describe_alarms(AlarmNamePrefix=f"{PREFIX}-control-")["MetricAlarms"]]
    assert len(controls) == 11
    assert lines[0].startswith(f"control plane {PREFIX}: healthy, no alarm in ALARM (11 ")
    for name in controls:
        assert line_of(lines, name).split()[1] == "INSUFFICIENT_DATA"
    dlq_name = dlq.rsplit("/", 1)[1]
    assert line_of(lines, dlq_name).split() == [dlq_name, "2", "0", "0", "intake-dlq"]
    intake = stack.outputs["IntakeQueueUrl"].rsplit("/", 1)[1]
    assert line_of(lines, intake).split()[-1] == "intake-backlog"
    releases = stack.outputs["HoldReleaseQueueUrl"].rsplit("/", 1)[1]
    assert line_of(lines, releases).split()[-1] == "hold-release-backlog"
    settle = stack.functions["TrainingFunction"].environment["TRAINING_SETTLE_QUEUE_URL"].rsplit("/", 1)[1]
    assert line_of(lines, settle).split()[-1] == "training-backlog"
    for output in ("CompletionFailureQueueUrl", "RolloutFailureQueueUrl", "TrainingFailureQueueUrl"):
        assert line_of(lines, stack.outputs[output].rsplit("/", 1)[1]).split()[-1] == "failed-invocations"

    cw.set_alarm_state(AlarmName=f"{PREFIX}-control-intake-dlq", StateValue="ALARM", StateReason="2 messages")
    lines = run(capsys, "--prefix", PREFIX, "status")

    assert lines[0].startswith(f"control plane {PREFIX}: NOT HEALTHY, in ALARM: {PREFIX}-control-intake-dlq")
    assert lines[3].split()[:2] == [f"{PREFIX}-control-intake-dlq", "ALARM"] and lines[3].endswith("2 messages")


def test_alarms_of_one_endpoint_through_alarm_and_back(
    stack: Stack, clients: Callable[[str], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    cw = clients("cloudwatch")
    for name in (f"{PREFIX}-churn-v2-5xx", f"{PREFIX}-churn-v2-low-traffic", f"{PREFIX}-fraud-v1-5xx"):
        endpoint = name.rsplit("-v", 1)[0]
        cw.put_metric_alarm(
            AlarmName=name, Namespace="AWS/SageMaker", MetricName="Invocations", Statistic="Sum", Period=60,
            EvaluationPeriods=1, Threshold=1, ComparisonOperator="LessThanThreshold",
            Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "v2"}],
        )  # fmt: skip
    idle = f"{PREFIX}-churn-v2-low-traffic"
    cw.set_alarm_state(AlarmName=idle, StateValue="ALARM", StateReason="no invocations for 1 period")

    firing = run(capsys, "alarms", f"{PREFIX}-churn")

    assert [line.split()[0] for line in firing[1:]] == [idle, f"{PREFIX}-churn-v2-5xx"]
    assert firing[1].split()[1] == "ALARM" and firing[1].endswith("no invocations for 1 period")

    cw.set_alarm_state(AlarmName=idle, StateValue="OK", StateReason="invocations are back")
    recovered = run(capsys, "alarms", f"{PREFIX}-churn")
    everything = run(capsys, "alarms")

    assert line_of(recovered, idle).split()[1] == "OK" and line_of(recovered, idle).endswith("invocations are back")
    assert len(everything) == 1 + 11 + 3  # the header, the control plane's 11 and the 3 endpoint alarms


def test_metrics_show_the_functions_emf_figures_and_the_endpoints_per_variant(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the functions print (the product's own recorder), extracted as the sandbox's Lambda does.
    recorder = EmfRecorder(PREFIX)
    intake_metrics(recorder, 3, 2, {"EMPTY_FILE": 1, "UNSUPPORTED_FILE_TYPE": 2})
    for action in ("reported", "rejected", "duplicate"):
        completion_metrics(recorder, action)
    recorder.emit("Rollbacks", Cause="alarm")
    recorder.emit("ApprovalToFullTrafficSeconds", 42.0, SECONDS)
    recorder.emit("VariantWeight", 1.0, "None", Endpoint=f"{PREFIX}-churn", Variant="v2")
    EmfRecorder("another-stack").emit("FilesAccepted", 100)
    published = EmfPublisher(ACCOUNT, REGION).publish(candidate_lines(capsys.readouterr().out))
    assert published.problems == []
    # SageMaker's invocation metrics, as the sandbox publishes them.
    invocations = InvocationMetrics(flush_seconds=0)
    for status, latency in ((200, 0.004), (200, 0.010), (500, 0.002)):
        invocations.record(
            f"{PREFIX}-churn", "v2", status=status, model_seconds=latency, overhead_seconds=0.001,
            account=ACCOUNT, region=REGION,
        )  # fmt: skip
    invocations.record("elsewhere", "v1", status=200, model_seconds=0.1, overhead_seconds=0, account=ACCOUNT,
                       region=REGION)  # fmt: skip

    lines = run(capsys, "metrics", "--since", "30m")

    assert lines[0].startswith(f"endpoints {PREFIX}-*, last 30m")
    row = line_of(lines, f"{PREFIX}-churn").split()
    assert row == [f"{PREFIX}-churn", "v2", "3", "1", "0", "5.3", "/", "10.0", "100%"]
    assert not any("elsewhere" in line for line in lines)
    assert line_of(lines, "files accepted").split()[-1] == "3"
    assert line_of(lines, "files rejected").endswith("3   (UNSUPPORTED_FILE_TYPE 2, EMPTY_FILE 1)")
    assert line_of(lines, "transform jobs started").split()[-1] == "2"
    assert line_of(lines, "transform jobs completed").split()[-1] == "1"
    assert line_of(lines, "transform jobs failed").split()[-1] == "1"
    assert line_of(lines, "rollbacks").endswith("1   (alarm 1)")
    assert line_of(lines, "approval to full traffic").endswith("avg 42.0 s, max 42.0 s (1 datapoints)")


def test_a_bad_window_is_refused(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["metrics", "--since", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err
