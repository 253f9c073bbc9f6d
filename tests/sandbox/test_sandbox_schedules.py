"""Provisioning SAM Schedule and ScheduleV2 events (and CloudWatch alarms) from a small template in a
temporary directory, under moto.mock_aws: the rules and schedules SAM would create, their states, and
scheduled rules that match no event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from sagepilot_sandbox import faithful
from sagepilot_sandbox.stack.provision import provision
from sagepilot_sandbox.stack.template import TemplateError

from .test_sandbox_running import TEMPLATE, write_stack

REGION = "us-east-1"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:sagepilot-sandbox-TickFunction"
SESSION = boto3.session.Session()  # parses the service models once (mock_aws resets the default session)


def client(service: str) -> Any:
    return SESSION.client(service, region_name=REGION)


def with_events(events: str) -> str:
    """A one-function template whose function has `events` (YAML, indented for Events:)."""
    return f"""\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.13
      Events:
{events}"""


def test_schedule_events_create_the_rules_and_schedules_sam_would(aws: None, tmp_path: Path) -> None:
    stack = provision(write_stack(tmp_path), client, overrides={})

    events = client("events")
    sweep = events.describe_rule(Name="sagepilot-sandbox-TickFunctionSweep")
    assert (sweep["ScheduleExpression"], sweep["State"], sweep["Description"]) == (
        "rate(5 minutes)",
        "ENABLED",
        "sweep stuck rollouts",
    )
    assert "EventPattern" not in sweep
    (target,) = events.list_targets_by_rule(Rule="sagepilot-sandbox-TickFunctionSweep")["Targets"]
    assert target["Arn"] == FUNCTION_ARN
    nightly = events.describe_rule(Name="nightly-report")
    assert (nightly["ScheduleExpression"], nightly["State"]) == ("cron(0 3 * * ? *)", "DISABLED")
    hourly = client("scheduler").get_schedule(Name="sagepilot-sandbox-TickFunctionHourly")
    assert (hourly["ScheduleExpression"], hourly["State"]) == ("rate(1 hour)", "ENABLED")
    assert (hourly["Target"]["Arn"], hourly["Target"]["Input"]) == (FUNCTION_ARN, '{"fail": true}')

    deliveries = {d.rule_name: d for d in stack.functions["TickFunction"].rule_deliveries}
    assert deliveries["sagepilot-sandbox-TickFunctionSweep"].rule_arn == sweep["Arn"]
    assert deliveries["sagepilot-sandbox-TickFunctionSweep"].input is None
    assert deliveries["nightly-report"].schedule_expression == "cron(0 3 * * ? *)"
    assert deliveries["sagepilot-sandbox-TickFunctionHourly"].scheduler_group == "default"
    assert stack.physical["TickFunctionSweep"] == "sagepilot-sandbox-TickFunctionSweep"


def test_scheduled_rules_match_no_events(aws: None, tmp_path: Path) -> None:
    provision(write_stack(tmp_path), client, overrides={})
    sqs, events = client("sqs"), client("events")
    url = sqs.create_queue(QueueName="sink")["QueueUrl"]
    # A scheduled rule with a queue target: in EventBridge only its schedule sends to it.
    events.put_targets(
        Rule="sagepilot-sandbox-TickFunctionSweep",
        Targets=[{"Id": "sink", "Arn": "arn:aws:sqs:us-east-1:123456789012:sink"}],
    )

    events.put_events(Entries=[{"Source": "custom", "DetailType": "x", "Detail": "{}"}])
    faithful.deliver_event(
        {"version": "0", "id": "1", "detail-type": "x", "source": "custom", "account": "123456789012",
         "time": "2026-01-01T00:00:00Z", "region": REGION, "resources": [], "detail": {}}
    )  # fmt: skip

    assert sqs.receive_message(QueueUrl=url).get("Messages") is None


@pytest.mark.parametrize(
    ("events", "complaint"),
    [
        (
            "        Both:\n          Type: Schedule\n          Properties:\n            Schedule: rate(1 hour)\n"
            "            Enabled: true\n            State: ENABLED\n",
            "Enabled or State, not both",
        ),
        (
            "        NoInput:\n          Type: ScheduleV2\n          Properties:\n"
            "            ScheduleExpression: rate(1 hour)\n",
            "needs Input",
        ),
        (
            "        Odd:\n          Type: Schedule\n          Properties:\n            Schedule: rate(1 hour)\n"
            "            State: PAUSED\n",
            "ENABLED or DISABLED",
        ),
    ],
)
def test_schedules_the_sandbox_cannot_honour_are_refused(
    aws: None, tmp_path: Path, events: str, complaint: str
) -> None:
    with pytest.raises(TemplateError, match=complaint):
        provision(write_stack(tmp_path, with_events(events)), client, overrides={})


def test_alarms_and_scheduled_rules_of_the_template_itself_are_created(aws: None, tmp_path: Path) -> None:
    template = (
        TEMPLATE
        + """\
  QueueDepthAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: failures pile up
      Namespace: AWS/SQS
      MetricName: ApproximateNumberOfMessagesVisible
      Dimensions:
        - Name: QueueName
          Value: !GetAtt FailuresQueue.QueueName
      Statistic: Maximum
      Period: 60
      EvaluationPeriods: 1
      Threshold: 1
      ComparisonOperator: GreaterThanOrEqualToThreshold
      TreatMissingData: notBreaching
  Heartbeat:
    Type: AWS::Events::Rule
    Properties:
      ScheduleExpression: rate(1 day)
"""
    )
    stack = provision(write_stack(tmp_path, template), client, overrides={})

    (alarm,) = client("cloudwatch").describe_alarms(AlarmNames=["sagepilot-sandbox-QueueDepthAlarm"])["MetricAlarms"]
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": "sagepilot-sandbox-FailuresQueue"}]
    assert (alarm["Threshold"], alarm["TreatMissingData"]) == (1.0, "notBreaching")
    assert stack.physical["QueueDepthAlarm"] == "sagepilot-sandbox-QueueDepthAlarm"
    heartbeat = client("events").describe_rule(Name="sagepilot-sandbox-Heartbeat")
    assert (
        heartbeat["ScheduleExpression"] == "rate(1 day)" and json.loads(heartbeat.get("EventPattern", "null")) is None
    )
