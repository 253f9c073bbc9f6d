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


# DescribeAlarmHistory ------------------------------------------------------------------------------------
def history(cw: Any, **kwargs: Any) -> list[dict[str, Any]]:
    return list(cw.describe_alarm_history(**kwargs)["AlarmHistoryItems"])


def test_alarm_history_records_each_state_change_of_an_evaluated_alarm_newest_first(cw: Any) -> None:
    put_alarm(cw)
    put_alarm(cw, "other")
    now = datetime.now(UTC)
    assert faithful.evaluate_alarm("ep-canary-5xx", now=now) == "OK"  # no data, treated as not breaching
    cw.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {
                "MetricName": "Invocation5XXErrors",
                "Dimensions": [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "canary"}],
                "Timestamp": now - timedelta(seconds=10),
                "Value": 6.0,
            }
        ],
    )
    assert faithful.evaluate_alarm("ep-canary-5xx", now=now) == "ALARM"
    cw.set_alarm_state(AlarmName="other", StateValue="ALARM", StateReason="by hand")

    items = history(cw, AlarmName="ep-canary-5xx", HistoryItemType="StateUpdate")
    assert [i["HistorySummary"] for i in items] == [
        "Alarm updated from OK to ALARM",
        "Alarm updated from INSUFFICIENT_DATA to OK",
    ]
    newest = items[0]
    assert (newest["AlarmName"], newest["AlarmType"], newest["HistoryItemType"]) == (
        "ep-canary-5xx",
        "MetricAlarm",
        "StateUpdate",
    )
    assert newest["Timestamp"] >= items[1]["Timestamp"]
    data = json.loads(newest["HistoryData"])
    assert data["version"] == "1.0"
    assert (data["oldState"]["stateValue"], data["newState"]["stateValue"]) == ("OK", "ALARM")
    assert data["newState"]["stateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [6.0")
    described = cw.describe_alarms(AlarmNames=["ep-canary-5xx"])["MetricAlarms"][0]
    assert data["newState"]["stateReasonData"] == json.loads(described["StateReasonData"])  # a JSON object
    first = json.loads(items[1]["HistoryData"])
    assert first["oldState"] == {"stateValue": "INSUFFICIENT_DATA", "stateReason": "Unchecked: Initial alarm creation"}

    # Oldest first when asked, every alarm when none is named, and configuration changes beside state changes.
    everything = history(cw, ScanBy="TimestampAscending")
    assert [(i["AlarmName"], i["HistorySummary"]) for i in everything] == [
        ("ep-canary-5xx", 'Alarm "ep-canary-5xx" created'),
        ("other", 'Alarm "other" created'),
        ("ep-canary-5xx", "Alarm updated from INSUFFICIENT_DATA to OK"),
        ("ep-canary-5xx", "Alarm updated from OK to ALARM"),
        ("other", "Alarm updated from INSUFFICIENT_DATA to ALARM"),
    ]
    created = json.loads(everything[0]["HistoryData"])
    assert (created["type"], created["createdAlarm"]["metricName"], created["createdAlarm"]["threshold"]) == (
        "Create",
        "Invocation5XXErrors",
        5.0,
    )


def test_alarm_history_pages_filters_by_date_and_outlives_the_alarm(cw: Any) -> None:
    put_alarm(cw)
    for n in range(5):
        cw.set_alarm_state(AlarmName="ep-canary-5xx", StateValue="ALARM" if n % 2 == 0 else "OK", StateReason=f"#{n}")
    pages = list(
        cw.get_paginator("describe_alarm_history").paginate(
            AlarmName="ep-canary-5xx", HistoryItemType="StateUpdate", PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(p["AlarmHistoryItems"]) for p in pages] == [2, 2, 1]
    assert "NextToken" not in pages[-1]
    reasons = [json.loads(i["HistoryData"])["newState"]["stateReason"] for p in pages for i in p["AlarmHistoryItems"]]
    assert reasons == ["#4", "#3", "#2", "#1", "#0"]

    # A page continues after the last item it gave, even when newer items arrive in between.
    page = cw.describe_alarm_history(AlarmName="ep-canary-5xx", HistoryItemType="StateUpdate", MaxRecords=2)
    cw.set_alarm_state(AlarmName="ep-canary-5xx", StateValue="OK", StateReason="#5")
    rest = cw.describe_alarm_history(
        AlarmName="ep-canary-5xx", HistoryItemType="StateUpdate", MaxRecords=2, NextToken=page["NextToken"]
    )
    assert [json.loads(i["HistoryData"])["newState"]["stateReason"] for i in rest["AlarmHistoryItems"]] == ["#2", "#1"]

    later = datetime.now(UTC) + timedelta(hours=1)
    assert history(cw, StartDate=later) == []
    assert len(history(cw, EndDate=later, HistoryItemType="StateUpdate")) == 6
    assert history(cw, EndDate=datetime.now(UTC) - timedelta(hours=1)) == []

    cw.delete_alarms(AlarmNames=["ep-canary-5xx"])
    kept = history(cw, AlarmName="ep-canary-5xx")
    assert kept[0]["HistorySummary"] == 'Alarm "ep-canary-5xx" deleted'  # CloudWatch keeps a deleted alarm's history
    assert len([i for i in kept if i["HistoryItemType"] == "StateUpdate"]) == 6
    assert history(cw, AlarmTypes=["CompositeAlarm"]) == []

    with pytest.raises(ClientError) as too_many:
        cw.describe_alarm_history(MaxRecords=101)
    assert too_many.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as bad_token:
        cw.describe_alarm_history(NextToken="not-a-token")
    assert bad_token.value.response["Error"]["Code"] == "InvalidNextToken"


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
