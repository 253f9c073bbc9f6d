"""A running Sandbox (threaded moto server, function processes, SageMaker simulator) on a small stack
of its own, written to a temporary directory: schedules fire on the compressed clock and reach their
function with EventBridge's `Scheduled Event`, endpoints move through their states by themselves, an
alarm rolls back a guarded update, and every change reaches the stack's rule as an event."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagepilot_sandbox.server import Sandbox, free_port

ROLE = "arn:aws:iam::123456789012:role/sagemaker"
TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  BatchingWindowSeconds:
    Type: Number
    Default: 60
Resources:
  FailuresQueue:
    Type: AWS::SQS::Queue
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.13
      Timeout: 5
      EventInvokeConfig:
        MaximumRetryAttempts: 0
        DestinationConfig:
          OnFailure:
            Type: SQS
            Destination: !GetAtt FailuresQueue.Arn
      Events:
        Sweep:
          Type: Schedule
          Properties:
            Schedule: rate(5 minutes)
            Description: sweep stuck rollouts
        Nightly:
          Type: Schedule
          Properties:
            Name: nightly-report
            Schedule: cron(0 3 * * ? *)
            Enabled: false
        Hourly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 hour)
            Input: '{"fail": true}'
            State: ENABLED
  WatchFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.13
      Timeout: 5
      Events:
        Changes:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [aws.sagemaker, aws.cloudwatch]
              detail-type: [SageMaker Endpoint State Change, CloudWatch Alarm State Change]
"""
HANDLER = """\
def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("asked to fail")
    return event
"""


def write_stack(root: Path, template: str = TEMPLATE) -> Path:
    (root / "fn").mkdir(parents=True, exist_ok=True)
    (root / "fn" / "app.py").write_text(HANDLER)
    (root / "template.yaml").write_text(textwrap.dedent(template))
    return root


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = write_stack(tmp_path_factory.mktemp("stack"))
    running = Sandbox(
        port=free_port(),
        root=root,
        retry_delay=1,
        log_dir=root / "logs",
        endpoint_seconds=0.3,
        schedule_seconds=0.3,
        time_scale=0.0002,
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def results(sandbox: Sandbox, function: str) -> list[Any]:
    assert sandbox.lambdas is not None
    return [i.get("result") for i in sandbox.lambdas.functions[function].invocations if i.get("ok")]


def test_schedules_fire_scheduled_events_and_inputs_on_the_compressed_clock(sandbox: Sandbox) -> None:
    assert sandbox.stack is not None
    events = sandbox.client("events")
    sweep = events.describe_rule(Name="sagepilot-sandbox-TickFunctionSweep")
    assert (sweep["ScheduleExpression"], sweep["State"]) == ("rate(5 minutes)", "ENABLED")

    scheduled = sandbox.wait_for(lambda: [r for r in results(sandbox, "TickFunction") if r], timeout=10)

    event = scheduled[0]
    assert (event["detail-type"], event["source"], event["detail"]) == ("Scheduled Event", "aws.events", {})
    assert event["resources"] == [sweep["Arn"]]
    assert (event["account"], event["region"]) == ("123456789012", "us-east-1")
    assert all(e["resources"] == [sweep["Arn"]] for e in scheduled)  # the disabled nightly rule is silent

    # The ScheduleV2's Input is what the function gets; it fails, and with no retries goes to OnFailure.
    failures = sandbox.client("sqs")
    url = failures.get_queue_url(QueueName="sagepilot-sandbox-FailuresQueue")["QueueUrl"]
    got = sandbox.wait_for(lambda: failures.receive_message(QueueUrl=url).get("Messages"), timeout=10)
    record = json.loads(got[0]["Body"])
    assert record["requestPayload"] == {"fail": True}
    assert record["requestContext"]["condition"] == "RetriesExhausted"

    events.enable_rule(Name="nightly-report")
    nightly = events.describe_rule(Name="nightly-report")["Arn"]
    sandbox.wait_for(
        lambda: [r for r in results(sandbox, "TickFunction") if r and r.get("resources") == [nightly]], timeout=10
    )


def test_an_endpoint_moves_by_itself_and_an_alarm_rolls_back_its_guarded_update(sandbox: Sandbox) -> None:
    sm, cw = sandbox.client("sagemaker"), sandbox.client("cloudwatch")
    for model in ("m1", "m2"):
        sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": f"img:{model}"})
    for cfg, model in (("c1", "m1"), ("c2", "m2")):
        sm.create_endpoint_config(
            EndpointConfigName=cfg,
            ProductionVariants=[
                {"VariantName": "a", "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 2}
            ],
        )
    cw.put_metric_alarm(
        AlarmName="ep-5xx", Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors", Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
        Dimensions=[{"Name": "EndpointName", "Value": "ep"}],
    )  # fmt: skip

    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Creating"
    sandbox.wait_for(lambda: sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService", timeout=10)

    sm.update_endpoint(
        EndpointName="ep",
        EndpointConfigName="c2",
        DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 3600,  # 0.72 s at this sandbox's time scale
                    "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                },
                "TerminationWaitInSeconds": 3600,  # so the update bakes 2.16 s: time to set the alarm
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "ep-5xx"}]},
        },
    )
    cw.set_alarm_state(AlarmName="ep-5xx", StateValue="ALARM", StateReason="canary errors")

    rolled_back = sandbox.wait_for(
        lambda: (d := sm.describe_endpoint(EndpointName="ep"))["EndpointStatus"] == "InService" and d, timeout=10
    )
    assert rolled_back["EndpointConfigName"] == "c1"
    assert "ep-5xx" in rolled_back["FailureReason"]

    def seen() -> list[str]:
        return [
            e["detail"].get("EndpointStatus") or f"alarm:{e['detail']['state']['value']}"
            for e in results(sandbox, "WatchFunction")
        ]

    sandbox.wait_for(lambda: seen().count("InService") == 2, timeout=10)
    assert seen() == ["Creating", "InService", "Updating", "alarm:ALARM", "RollingBack", "InService"]

    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")  # no guardrails this time
    done = sandbox.wait_for(
        lambda: (d := sm.describe_endpoint(EndpointName="ep"))["EndpointConfigName"] == "c2" and d, timeout=10
    )
    assert done["EndpointStatus"] == "InService" and "FailureReason" not in done
