"""The sandbox's CloudWatch alarms (state-change events, initial state, evaluation of metric data) and
Application Auto Scaling's refusals, through boto3 against moto.mock_aws with the faithful patches."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sagepilot_sandbox import bus, faithful

REGION = "us-east-1"
ACCOUNT = "123456789012"
SESSION = boto3.session.Session()  # parses the service models once (mock_aws resets the default session)
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def client(service: str) -> Any:
    return SESSION.client(service, region_name=REGION)


class EventTap:
    def __init__(self, pattern: dict[str, Any]) -> None:
        self.sqs = client("sqs")
        events = client("events")
        self.url = self.sqs.create_queue(QueueName="tap")["QueueUrl"]
        events.put_rule(Name="tap", EventPattern=json.dumps(pattern))
        events.put_targets(Rule="tap", Targets=[{"Id": "tap", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:tap"}])

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while got := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", []):
            for message in got:
                out.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return out


@pytest.fixture
def cw(aws: None) -> Any:
    return client("cloudwatch")


@pytest.fixture
def tap(cw: Any) -> EventTap:
    return EventTap({"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"]})


def put_alarm(cw: Any, name: str = "ep-canary-5xx", **overrides: Any) -> None:
    request: dict[str, Any] = {
        "AlarmName": name,
        "AlarmDescription": "Canary server errors",
        "Namespace": "AWS/SageMaker",
        "MetricName": "Invocation5XXErrors",
        "Dimensions": [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "canary"}],
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 5.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
    }
    request.update(overrides)
    cw.put_metric_alarm(**{k: v for k, v in request.items() if v is not None})


def state(cw: Any, name: str = "ep-canary-5xx") -> str:
    return str(cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"])


def test_a_state_change_emits_the_documented_event(cw: Any, tap: EventTap) -> None:
    put_alarm(cw)
    assert state(cw) == "INSUFFICIENT_DATA"
    assert tap.events() == []  # creating an alarm is not a state change

    cw.set_alarm_state(AlarmName="ep-canary-5xx", StateValue="ALARM", StateReason="errors on the canary")

    (event,) = tap.events()
    arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:ep-canary-5xx"
    assert (event["source"], event["detail-type"], event["resources"]) == (
        "aws.cloudwatch",
        "CloudWatch Alarm State Change",
        [arn],
    )
    detail = event["detail"]
    assert detail["alarmName"] == "ep-canary-5xx"
    assert detail["state"]["value"] == "ALARM" and detail["state"]["reason"] == "errors on the canary"
    assert detail["state"]["timestamp"].endswith("+0000")
    assert detail["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert detail["previousState"]["reason"] == "Unchecked: Initial alarm creation"
    assert detail["configuration"]["description"] == "Canary server errors"
    (metric,) = detail["configuration"]["metrics"]
    assert metric["returnData"] is True and metric["id"]
    assert metric["metricStat"] == {
        "metric": {
            "namespace": "AWS/SageMaker",
            "name": "Invocation5XXErrors",
            "dimensions": {"EndpointName": "ep", "VariantName": "canary"},
        },
        "period": 60,
        "stat": "Sum",
    }


def test_no_event_when_the_state_does_not_change_and_updates_keep_the_state(cw: Any, tap: EventTap) -> None:
    put_alarm(cw)
    cw.set_alarm_state(AlarmName="ep-canary-5xx", StateValue="ALARM", StateReason="first")
    tap.events()

    cw.set_alarm_state(AlarmName="ep-canary-5xx", StateValue="ALARM", StateReason="again")
    put_alarm(cw, Threshold=10.0)  # an update replaces the configuration, not the state

    assert tap.events() == []
    assert state(cw) == "ALARM"
    cw.set_alarm_state(AlarmName="ep-canary-5xx", StateValue="OK", StateReason="quiet")
    (event,) = tap.events()
    assert (event["detail"]["previousState"]["value"], event["detail"]["state"]["value"]) == ("ALARM", "OK")
    assert event["detail"]["previousState"]["reason"] == "again"


def test_a_percentile_alarm_shows_its_extended_statistic(cw: Any, tap: EventTap) -> None:
    put_alarm(cw, "ep-latency", MetricName="ModelLatency", Statistic=None, ExtendedStatistic="p99")
    cw.set_alarm_state(AlarmName="ep-latency", StateValue="OK", StateReason="fine")
    (event,) = tap.events()
    assert event["detail"]["configuration"]["metrics"][0]["metricStat"]["stat"] == "p99"


def test_evaluating_an_alarm_reads_the_metric_and_treats_missing_data(cw: Any, tap: EventTap) -> None:
    put_alarm(cw)
    put_alarm(cw, "quiet-default")
    cw.put_metric_alarm(
        AlarmName="quiet-missing", Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": "other"}], Statistic="Sum", Period=60, EvaluationPeriods=1,
        Threshold=5.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
    )  # fmt: skip
    assert faithful.evaluate_alarm("ep-canary-5xx") == "OK"  # no data, treated as not breaching
    assert faithful.evaluate_alarm("quiet-missing") == "INSUFFICIENT_DATA"  # no data, missing
    now = datetime.now(UTC)
    cw.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": "Invocation5XXErrors",
                "Dimensions": [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "canary"}],
                "Timestamp": now - timedelta(seconds=10),
                "Value": value,
            }
            for value in (2.0, 4.0)
        ],
    )

    assert faithful.evaluate_alarm("ep-canary-5xx", now=now) == "ALARM"  # 2 + 4 >= 5

    ok, alarmed = tap.events()
    assert (ok["detail"]["previousState"]["value"], ok["detail"]["state"]["value"]) == ("INSUFFICIENT_DATA", "OK")
    assert alarmed["detail"]["state"]["value"] == "ALARM"
    assert alarmed["detail"]["state"]["reason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [6.0")
    # CloudWatch's StateReasonData: where the evaluated range began (one 60-s period before `now`), the data.
    data = json.loads(alarmed["detail"]["state"]["reasonData"])
    assert data["startDate"] == bus.iso_millis(now - timedelta(seconds=60)) and data["recentDatapoints"] == [6.0]
    assert (data["statistic"], data["period"], data["threshold"]) == ("Sum", 60, 5.0)
    described = cw.describe_alarms(AlarmNames=["ep-canary-5xx"])["MetricAlarms"][0]
    assert json.loads(described["StateReasonData"]) == data
    assert faithful.evaluate_alarm("ep-canary-5xx", now=now + timedelta(minutes=5)) == "OK"  # the errors are old


def test_autoscaling_refuses_missing_targets_and_deregistering_drops_policies(aws: None) -> None:
    aas = client("application-autoscaling")
    rid = "endpoint/ep/variant/canary"
    with pytest.raises(ClientError) as missing:
        aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION)
    assert missing.value.response["Error"]["Code"] == "ObjectNotFoundException"
    policy = {
        "PolicyName": "p",
        "ServiceNamespace": "sagemaker",
        "ResourceId": rid,
        "ScalableDimension": DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        },
    }
    with pytest.raises(ClientError) as unregistered:
        aas.put_scaling_policy(**policy)
    assert unregistered.value.response["Error"]["Code"] == "ObjectNotFoundException"
    assert "No scalable target registered for service namespace: sagemaker" in str(unregistered.value)

    aas.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION, MinCapacity=1, MaxCapacity=3
    )
    aas.put_scaling_policy(**policy)
    aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION)

    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    with pytest.raises(ClientError) as gone:
        aas.delete_scaling_policy(
            PolicyName="p", ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION
        )
    assert gone.value.response["Error"]["Code"] == "ObjectNotFoundException"
