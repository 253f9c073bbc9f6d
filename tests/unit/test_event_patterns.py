"""The routing in template.yaml, checked against the sample events with EventBridge's own matching.

The patterns are read from template.yaml (never copied here): `!Ref DataBucket` is resolved to the sample
bucket and `!Sub "${NamePrefix}-"` to the default prefix. moto 5.2's TestEventPattern answers 200 with no
`Result` at all (it is a stub), so each check routes the event for real instead: a rule with the pattern,
an SQS queue as its target, PutEvents, and the queue says whether the event was delivered.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import moto
import pytest
from moto.events.models import events_backends

from .conftest import CfnTag, read_event, resolve

BUCKET = "sagepilot-sandbox-databucket"
REFS = {"DataBucket": BUCKET, "NamePrefix": "sagepilot"}
REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def intake_pattern(template) -> dict[str, Any]:
    rule = template["Resources"]["IncomingObjectRule"]
    assert rule["Type"] == "AWS::Events::Rule"
    return resolve(rule["Properties"]["EventPattern"], REFS)


@pytest.fixture(scope="module")
def completion_pattern(template) -> dict[str, Any]:
    function = template["Resources"]["BatchCompletionFunction"]
    [rule] = [e for e in function["Properties"]["Events"].values() if e["Type"] == "EventBridgeRule"]
    return resolve(rule["Properties"]["Pattern"], REFS)


class Router:
    """EventBridge in moto: does a rule with this pattern deliver this event to its target?"""

    def __init__(self) -> None:
        self.events = boto3.client("events", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.queue_url = self.sqs.create_queue(QueueName="pattern-check")["QueueUrl"]
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def matches(self, pattern: dict[str, Any], event: dict[str, Any]) -> bool:
        self.events.put_rule(Name="under-test", EventPattern=json.dumps(pattern), State="ENABLED")
        self.events.put_targets(Rule="under-test", Targets=[{"Id": "queue", "Arn": self.queue_arn}])
        try:
            # As the service itself sends it: PutEvents refuses `aws.*` sources to callers (the sandbox too).
            entries = events_backends[ACCOUNT][REGION].put_events(
                [
                    {
                        "Source": event["source"],
                        "DetailType": event["detail-type"],
                        "Detail": json.dumps(event["detail"]),
                        "Resources": event["resources"],
                    }
                ]
            )
            assert all("ErrorCode" not in e for e in entries), entries
            received = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        finally:
            self.events.remove_targets(Rule="under-test", Ids=["queue"])
            self.events.delete_rule(Name="under-test")
        for message in received:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        assert len(received) <= 1
        if received:  # what was delivered is the event itself
            assert json.loads(received[0]["Body"])["detail"] == event["detail"]
        return bool(received)


@pytest.fixture(scope="module")
def router():
    with moto.mock_aws():
        yield Router()


def test_the_router_is_not_vacuous(router):
    event = read_event("s3-object-created.json")
    assert router.matches({"source": ["aws.s3"]}, event) is True
    assert router.matches({"source": ["aws.sagemaker"]}, event) is False


def test_patterns_are_resolved_from_the_template(intake_pattern, completion_pattern):
    assert intake_pattern["detail"]["bucket"]["name"] == [BUCKET]
    assert completion_pattern["detail"]["TransformJobName"] == [{"prefix": "sagepilot-"}]


# ---------------------------------------------------------------- intake: IncomingObjectRule


@pytest.mark.parametrize(
    "sample",
    ["s3-object-created.json", "s3-object-created-odd-key.json", "s3-object-created-encoded-key.json"],
)
def test_intake_rule_matches_dropped_files(router, intake_pattern, sample):
    assert router.matches(intake_pattern, read_event(sample)) is True


def test_intake_rule_matches_every_message_of_the_sqs_sample(router, intake_pattern):
    for record in read_event("sqs-intake-batch.json")["Records"]:
        assert router.matches(intake_pattern, json.loads(record["body"])) is True


def test_intake_rule_ignores_other_prefixes(router, intake_pattern):
    assert router.matches(intake_pattern, read_event("s3-object-created-other-prefix.json")) is False


def test_intake_rule_ignores_other_buckets(router, intake_pattern):
    event = read_event("s3-object-created.json")
    event["detail"]["bucket"]["name"] = "someone-elses-bucket"
    event["resources"] = ["arn:aws:s3:::someone-elses-bucket"]
    assert router.matches(intake_pattern, event) is False


@pytest.mark.parametrize("key", ["Incoming/churn/a.csv", "jobs/churn/x/manifest.json", "rejected/churn/a.csv.json"])
def test_intake_rule_ignores_lookalike_keys(router, intake_pattern, key):
    event = read_event("s3-object-created.json")
    event["detail"]["object"]["key"] = key
    assert router.matches(intake_pattern, event) is False


def test_intake_rule_ignores_deletions(router, intake_pattern):
    event = read_event("s3-object-created.json")
    event["detail-type"] = "Object Deleted"
    assert router.matches(intake_pattern, event) is False


# ---------------------------------------------------------------- completion: BatchCompletionFunction's rule


@pytest.mark.parametrize("status", ["Completed", "Failed", "Stopped"])
def test_completion_rule_matches_our_jobs_in_terminal_states(router, completion_pattern, status):
    event = read_event("sagemaker-transform-job-completed.json")
    event["detail"]["TransformJobStatus"] = status
    assert router.matches(completion_pattern, event) is True


@pytest.mark.parametrize("sample", ["sagemaker-transform-job-completed.json", "sagemaker-transform-job-failed.json"])
def test_completion_rule_matches_the_samples(router, completion_pattern, sample):
    assert router.matches(completion_pattern, read_event(sample)) is True


def test_completion_rule_matches_retries_of_our_jobs(router, completion_pattern):
    event = read_event("sagemaker-transform-job-failed.json")
    event["detail"]["TransformJobName"] += "-r1"
    assert router.matches(completion_pattern, event) is True


def test_completion_rule_ignores_jobs_in_progress(router, completion_pattern):
    assert router.matches(completion_pattern, read_event("sagemaker-transform-job-inprogress.json")) is False


@pytest.mark.parametrize("status", ["Stopping", "InProgress"])
def test_completion_rule_ignores_non_terminal_states(router, completion_pattern, status):
    event = read_event("sagemaker-transform-job-completed.json")
    event["detail"]["TransformJobStatus"] = status
    assert router.matches(completion_pattern, event) is False


def test_completion_rule_ignores_foreign_jobs(router, completion_pattern):
    assert router.matches(completion_pattern, read_event("sagemaker-transform-job-foreign.json")) is False


@pytest.mark.parametrize("name", ["sagepilotx-churn-0123456789abcdef", "Sagepilot-churn-0123456789abcdef", "sagepilot"])
def test_completion_rule_needs_the_prefix_and_its_hyphen(router, completion_pattern, name):
    event = read_event("sagemaker-transform-job-completed.json")
    event["detail"]["TransformJobName"] = name
    assert router.matches(completion_pattern, event) is False


def test_completion_rule_ignores_other_sagemaker_events(router, completion_pattern):
    event = read_event("sagemaker-transform-job-completed.json")
    event["detail-type"] = "SageMaker Training Job State Change"
    assert router.matches(completion_pattern, event) is False


# ---------------------------------------------------------------- rollout: RolloutFunction's rules


def rollout_pattern(template, event_name: str, group_prefix: str = "") -> dict[str, Any]:
    event = template["Resources"]["RolloutFunction"]["Properties"]["Events"][event_name]
    assert event["Type"] == "EventBridgeRule"
    refs = {**REFS, "DeployableGroupPrefix": group_prefix}
    return resolve(event["Properties"]["Pattern"], refs, {"EveryGroupDeploys": group_prefix == ""})


@pytest.mark.parametrize(
    ("rule", "sample", "expected"),
    [
        ("ModelPackageStateChange", "sagemaker-model-package-approved.json", True),
        ("ModelPackageStateChange", "sagemaker-model-package-rejected.json", True),
        ("ModelPackageStateChange", "sagemaker-model-package-pending.json", False),
        ("ModelPackageStateChange", "sagemaker-transform-job-completed.json", False),
        ("EndpointStateChange", "sagemaker-endpoint-in-service.json", True),
        ("EndpointStateChange", "sagemaker-endpoint-updating.json", False),
        ("EndpointStateChange", "sagemaker-endpoint-foreign.json", False),
        ("EndpointStateChange", "sagemaker-endpoint-update-failed.json", True),
        ("EndpointStateChange", "sagemaker-endpoint-failed.json", True),
        ("EndpointStateChange", "sagemaker-endpoint-deleting.json", False),
        ("RolloutAlarm", "cloudwatch-alarm-rollout.json", True),
        ("RolloutAlarm", "cloudwatch-alarm-rollout-ok.json", True),
        ("RolloutAlarm", "cloudwatch-alarm-foreign.json", False),
        ("OperatorCommand", "operator-rollout-command.json", True),
        ("OperatorCommand", "sagemaker-endpoint-in-service.json", False),
    ],
)
def test_rollout_rules_route_the_samples(router, template, rule, sample, expected):
    assert router.matches(rollout_pattern(template, rule), read_event(sample)) is expected


@pytest.mark.parametrize("status", ["InService", "IN_SERVICE", "Failed", "FAILED"])
def test_endpoint_rule_accepts_both_spellings_of_the_statuses_it_acts_on(router, template, status):
    event = read_event("sagemaker-endpoint-in-service.json")
    event["detail"]["EndpointStatus"] = status
    assert router.matches(rollout_pattern(template, "EndpointStateChange"), event) is True


def test_approval_rule_can_be_limited_to_a_group_prefix(router, template):
    pattern = rollout_pattern(template, "ModelPackageStateChange", group_prefix="team-a-")
    event = read_event("sagemaker-model-package-approved.json")
    assert router.matches(pattern, event) is False
    event["detail"]["ModelPackageGroupName"] = "team-a-churn"
    assert router.matches(pattern, event) is True


def test_alarm_rule_needs_the_stack_prefix(router, template):
    event = read_event("cloudwatch-alarm-rollout.json")
    event["detail"]["alarmName"] = "sagepilotx-churn-v2-5xx"
    assert router.matches(rollout_pattern(template, "RolloutAlarm"), event) is False


def test_the_reconcile_schedule_is_a_schedule_with_a_dead_letter_queue(template):
    reconcile = template["Resources"]["RolloutFunction"]["Properties"]["Events"]["Reconcile"]
    assert reconcile["Type"] == "Schedule"
    assert "DeadLetterConfig" in reconcile["Properties"] and "RetryPolicy" in reconcile["Properties"]


def test_the_capacity_sweep_is_a_schedule_of_the_completion_function_with_a_dead_letter_queue(template):
    sweep = template["Resources"]["BatchCompletionFunction"]["Properties"]["Events"]["CapacitySweep"]
    assert sweep["Type"] == "Schedule"
    assert sweep["Properties"]["Schedule"] == CfnTag("Ref", "CapacitySweepSchedule")
    assert template["Parameters"]["CapacitySweepSchedule"]["Default"] == "rate(5 minutes)"
    assert "DeadLetterConfig" in sweep["Properties"] and "RetryPolicy" in sweep["Properties"]
    # EventBridge may put what it cannot deliver in the events DLQ: the queue's policy names the rule.
    policy = template["Resources"]["EventBridgeToQueuesPolicy"]["Properties"]["PolicyDocument"]
    (statement,) = [s for s in policy["Statement"] if s["Sid"] == "UndeliverableEvents"]
    sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert CfnTag("Fn::GetAtt", ["BatchCompletionFunctionCapacitySweep", "Arn"]) in sources


# ---------------------------------------------------------------- training: TrainingFunction's rules


def training_pattern(template, event_name: str) -> dict[str, Any]:
    event = template["Resources"]["TrainingFunction"]["Properties"]["Events"][event_name]
    return resolve(event["Properties"]["Pattern"], REFS)


@pytest.mark.parametrize(
    ("rule", "sample", "expected"),
    [
        ("TrainingDataUploaded", "s3-object-created-training.json", True),
        ("TrainingDataUploaded", "s3-object-created-training-part.json", True),
        ("TrainingDataUploaded", "s3-object-created-training-marker.json", True),
        ("TrainingDataUploaded", "s3-object-created.json", False),
        ("TrainingJobStateChange", "sagemaker-training-job-completed.json", True),
        ("TrainingJobStateChange", "sagemaker-training-job-failed.json", True),
        ("TrainingJobStateChange", "sagemaker-training-job-foreign.json", False),
        ("TrainingJobStateChange", "sagemaker-transform-job-completed.json", False),
    ],
)
def test_training_rules_route_the_samples(router, template, rule, sample, expected):
    assert router.matches(training_pattern(template, rule), read_event(sample)) is expected


@pytest.mark.parametrize(
    "sample",
    [
        "s3-object-created-training.json",
        "s3-object-created-training-part.json",
        "s3-object-created-training-marker.json",
    ],
)
def test_training_uploads_are_not_batch_inputs(router, intake_pattern, sample):
    assert router.matches(intake_pattern, read_event(sample)) is False


@pytest.mark.parametrize("status", ["InProgress", "Stopping"])
def test_training_rule_ignores_running_jobs(router, template, status):
    event = read_event("sagemaker-training-job-completed.json")
    event["detail"]["TrainingJobStatus"] = status
    assert router.matches(training_pattern(template, "TrainingJobStateChange"), event) is False
