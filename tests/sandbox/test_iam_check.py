"""The IAM sufficiency check's pure parts: call recording's summary, operation -> IAM requests, and the
policy evaluator (sagepilot_sandbox.lambda_runtime.call_recording, sagepilot_sandbox.stack.iam_check)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from sagepilot_sandbox.lambda_runtime import call_recording
from sagepilot_sandbox.stack.iam_check import (
    Env,
    Request,
    Statement,
    UnmappedCall,
    UnsupportedPolicy,
    check_calls,
    evaluate,
    function_policies,
    parse_statements,
    requests_for,
    wildcard_match,
)
from sagepilot_sandbox.stack.template import Resolver, TemplateError, load_template

ROOT = Path(__file__).resolve().parents[2]
ENV = Env("us-east-1", "123456789012", {"arn:aws:sns:us-east-1:123456789012:topic": "arn:aws:kms:us-east-1:1:key/k"})
BUCKET = "arn:aws:s3:::b"


def call(service: str, operation: str, **params: Any) -> dict[str, Any]:
    return {"service": service, "operation": operation, "params": call_recording.summarize(operation, params)}


def one(service: str, operation: str, **params: Any) -> list[tuple[str, str, dict[str, str | None]]]:
    return [(r.action, r.resource, dict(r.context)) for r in requests_for(call(service, operation, **params), ENV)]


# ---------------------------------------------------------------------------------------------- recording


def test_the_summary_keeps_what_names_resources_and_drops_payloads_and_free_text() -> None:
    summary = call_recording.summarize(
        "Publish", {"TopicArn": "arn:t", "Message": "secret", "Subject": "s", "MessageAttributes": {"a": {}}}
    )
    assert summary == {"TopicArn": "arn:t"}
    put = call_recording.summarize("PutObject", {"Bucket": "b", "Key": "k", "Body": b"data", "Tags": "x"})
    assert put == {"Bucket": "b", "Key": "k", "Tags": "x"}
    copy = call_recording.summarize(
        "CopyObject", {"Bucket": "b", "Key": "k", "CopySource": {"Bucket": "s", "Key": "o"}}
    )
    assert copy["CopySource"] == {"Bucket": "s", "Key": "o"}
    tagged = call_recording.summarize("CreateModel", {"ModelName": "m", "Tags": [{"Key": "a", "Value": "b"}]})
    assert tagged == {"ModelName": "m", "Tags": 1}


def test_the_summary_lists_the_kind_and_table_of_each_transaction_and_batch_item() -> None:
    transact = call_recording.summarize(
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "t", "Item": {}}},
                {"ConditionCheck": {"TableName": "u", "Key": {}, "ConditionExpression": "x"}},
            ]
        },
    )
    assert transact["Items"] == [{"kind": "Put", "TableName": "t"}, {"kind": "ConditionCheck", "TableName": "u"}]
    batch = call_recording.summarize("BatchGetItem", {"RequestItems": {"t": {"Keys": []}, "u": {"Keys": []}}})
    assert batch["Items"] == [{"kind": "Get", "TableName": "t"}, {"kind": "Get", "TableName": "u"}]


def test_the_recorder_counts_identical_calls_once_and_merge_sums_them() -> None:
    recorder = call_recording.Recorder()
    for _ in range(3):
        recorder.add("s3", "GetObject", {"Bucket": "b", "Key": "k", "ContinuationToken": "changes"})
    recorder.add("s3", "GetObject", {"Bucket": "b", "Key": "other"})
    taken = recorder.take()
    assert sorted(r["count"] for r in taken) == [1, 3]
    assert recorder.take() == []
    merged: dict[str, call_recording.CallRecord] = {}
    call_recording.merge(merged, taken)
    call_recording.merge(merged, taken)
    assert sorted(r["count"] for r in merged.values()) == [2, 6]


# ---------------------------------------------------------------------------------------------- mapping


def test_s3_reads_head_and_versions() -> None:
    assert one("s3", "HeadObject", Bucket="b", Key="k") == [("s3:GetObject", f"{BUCKET}/k", {})]
    assert one("s3", "HeadObject", Bucket="b", Key="k", VersionId="v") == [("s3:GetObjectVersion", f"{BUCKET}/k", {})]
    assert one("s3", "GetObject", Bucket="b", Key="k", VersionId="v") == [("s3:GetObjectVersion", f"{BUCKET}/k", {})]
    assert one("s3", "PutObject", Bucket="b", Key="a/b c") == [("s3:PutObject", f"{BUCKET}/a/b c", {})]


def test_s3_listings_are_bucket_actions_with_the_prefix_condition_key() -> None:
    assert one("s3", "ListObjectsV2", Bucket="b", Prefix="incoming/") == [
        ("s3:ListBucket", BUCKET, {"s3:prefix": "incoming/"})
    ]
    assert one("s3", "ListObjectVersions", Bucket="b", Prefix="incoming/x/") == [
        ("s3:ListBucketVersions", BUCKET, {"s3:prefix": "incoming/x/"})
    ]
    assert one("s3", "ListObjects", Bucket="b") == [("s3:ListBucket", BUCKET, {"s3:prefix": None})]


def test_s3_copies_read_the_source_and_write_the_destination() -> None:
    assert one("s3", "CopyObject", Bucket="b", Key="dst", CopySource="b/jobs/a%20b.out") == [
        ("s3:GetObject", f"{BUCKET}/jobs/a b.out", {}),
        ("s3:PutObject", f"{BUCKET}/dst", {}),
    ]
    versioned = one("s3", "CopyObject", Bucket="b", Key="dst", CopySource="b/src?versionId=v1")
    assert versioned[0] == ("s3:GetObjectVersion", f"{BUCKET}/src", {})
    parts = one("s3", "UploadPartCopy", Bucket="b", Key="dst", CopySource={"Bucket": "o", "Key": "s", "VersionId": "v"})
    assert parts == [("s3:GetObjectVersion", "arn:aws:s3:::o/s", {}), ("s3:PutObject", f"{BUCKET}/dst", {})]
    assert one("s3", "CreateMultipartUpload", Bucket="b", Key="k")[0][0] == "s3:PutObject"
    assert one("s3", "AbortMultipartUpload", Bucket="b", Key="k", UploadId="u")[0][0] == "s3:AbortMultipartUpload"


def test_dynamodb_transactions_are_authorized_per_item_and_queries_on_their_index() -> None:
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/t"
    items = [{"Put": {"TableName": "t"}}, {"Update": {"TableName": "t"}}, {"ConditionCheck": {"TableName": "u"}}]
    assert [r[:2] for r in one("dynamodb", "TransactWriteItems", TransactItems=items)] == [
        ("dynamodb:PutItem", table),
        ("dynamodb:UpdateItem", table),
        ("dynamodb:ConditionCheckItem", table[:-1] + "u"),
    ]
    assert one("dynamodb", "BatchGetItem", RequestItems={"t": {"Keys": []}}) == [("dynamodb:BatchGetItem", table, {})]
    assert one("dynamodb", "Query", TableName="t", IndexName="ByKind") == [
        ("dynamodb:Query", f"{table}/index/ByKind", {})
    ]
    assert one("dynamodb", "Query", TableName="t") == [("dynamodb:Query", table, {})]


def test_sagemaker_arns_are_lower_case_and_creating_with_tags_or_a_role_needs_more() -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012"
    assert one("sagemaker", "DescribeEndpoint", EndpointName="Sagepilot-Fraud") == [
        ("sagemaker:DescribeEndpoint", f"{arn}:endpoint/sagepilot-fraud", {})
    ]
    created = one(
        "sagemaker", "CreateModel", ModelName="M", ExecutionRoleArn="arn:aws:iam::1:role/r", Tags=[{"Key": "k"}]
    )
    assert created == [
        ("sagemaker:CreateModel", f"{arn}:model/m", {}),
        ("sagemaker:AddTags", f"{arn}:model/m", {}),
        ("iam:PassRole", "arn:aws:iam::1:role/r", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
    ]
    assert one("sagemaker", "ListTags", ResourceArn=f"{arn}:model-package-group/g") == [
        ("sagemaker:ListTags", f"{arn}:model-package-group/g", {})
    ]
    rejected = one(
        "sagemaker", "UpdateModelPackage", ModelPackageArn=f"{arn}:model-package/g/3", ModelApprovalStatus="Rejected"
    )
    assert rejected == [
        ("sagemaker:UpdateModelPackage", f"{arn}:model-package/g/3", {"sagemaker:ModelApprovalStatus": "Rejected"})
    ]
    assert one("sagemaker", "UpdateModelPackage", ModelPackageArn=f"{arn}:model-package/g/3")[0][2] == {
        "sagemaker:ModelApprovalStatus": None
    }
    assert one("sagemaker", "ListModelPackages", ModelPackageGroupName="g") == [
        ("sagemaker:ListModelPackages", "*", {})
    ]
    assert one("sagemaker", "CreateTrainingJob", TrainingJobName="J", RoleArn="arn:r")[-1][0] == "iam:PassRole"


def test_publishing_to_a_topic_with_a_customer_managed_key_uses_the_key() -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:topic"
    assert [r[:2] for r in one("sns", "Publish", TopicArn=topic, Message="m")] == [
        ("sns:Publish", topic),
        ("kms:GenerateDataKey", "arn:aws:kms:us-east-1:1:key/k"),
        ("kms:Decrypt", "arn:aws:kms:us-east-1:1:key/k"),
    ]
    assert len(one("sns", "Publish", TopicArn="arn:aws:sns:us-east-1:123456789012:plain")) == 1


def test_sqs_cloudwatch_and_application_autoscaling() -> None:
    url = "http://127.0.0.1:4566/123456789012/q"
    assert one("sqs", "DeleteMessageBatch", QueueUrl=url) == [
        ("sqs:DeleteMessage", "arn:aws:sqs:us-east-1:123456789012:q", {})
    ]
    alarm = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:a"
    assert [r[:2] for r in one("cloudwatch", "PutMetricAlarm", AlarmName="a", Tags=[{"Key": "k"}])] == [
        ("cloudwatch:PutMetricAlarm", alarm),
        ("cloudwatch:TagResource", alarm),
    ]
    assert [r[1] for r in one("cloudwatch", "DeleteAlarms", AlarmNames=["a", "b"])] == [alarm, alarm[:-1] + "b"]
    assert [r[:2] for r in one("cloudwatch", "SetAlarmState", AlarmName="a", StateValue="OK")] == [
        ("cloudwatch:SetAlarmState", alarm)
    ]
    registered = one(
        "application-autoscaling",
        "RegisterScalableTarget",
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/e/variant/v",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
    )
    assert registered[0][0] == "application-autoscaling:RegisterScalableTarget"
    assert registered[0][1].startswith("arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/")
    assert registered[0][2]["application-autoscaling:service-namespace"] == "sagemaker"
    assert registered[1][0] == "iam:CreateServiceLinkedRole"
    assert registered[1][2] == {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}


@pytest.mark.parametrize(
    "recorded",
    [
        call("s3", "DeleteBucket", Bucket="b"),
        call("lambda", "Invoke", FunctionName="f"),
        call("cloudwatch", "DescribeAlarms", AlarmNamePrefix="a"),
        call("s3", "GetObject", Bucket="b"),  # no Key recorded
        call("application-autoscaling", "RegisterScalableTarget", ServiceNamespace="ecs", ResourceId="service/c/s"),
    ],
    ids=["unknown operation", "unknown service", "unnamed alarms", "missing parameter", "unmapped linked role"],
)
def test_what_the_mapping_does_not_understand_is_refused_loudly(recorded: dict[str, Any]) -> None:
    with pytest.raises(UnmappedCall):
        requests_for(recorded, ENV)


# ---------------------------------------------------------------------------------------------- evaluation


def allow(**statement: Any) -> Statement:
    return parse_statements({"Statement": [{"Effect": "Allow", **statement}]}, "test")[0]


def deny(**statement: Any) -> Statement:
    return parse_statements({"Statement": [{"Effect": "Deny", **statement}]}, "test")[0]


def test_wildcards() -> None:
    assert wildcard_match("arn:aws:s3:::b/jobs/*", "arn:aws:s3:::b/jobs/a/b.json")
    assert wildcard_match("arn:aws:s3:::b/jobs/*", "arn:aws:s3:::b/jobs/")
    assert not wildcard_match("arn:aws:s3:::b/jobs/*", "arn:aws:s3:::b/job")
    assert wildcard_match("arn:aws:s3:::b/?.csv", "arn:aws:s3:::b/x.csv")
    assert not wildcard_match("arn:aws:s3:::b/?.csv", "arn:aws:s3:::b/xy.csv")
    assert not wildcard_match("arn:aws:s3:::B/*", "arn:aws:s3:::b/x")  # resources are case sensitive
    assert wildcard_match("a.b", "a.b") and not wildcard_match("a.b", "axb")  # no regex leaks


def test_allow_needs_action_and_resource_and_actions_ignore_case() -> None:
    statements = [allow(Action=["S3:getobject"], Resource="arn:aws:s3:::b/jobs/*")]
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::b/jobs/x"), statements).allowed
    refused = evaluate(Request("s3:GetObject", "arn:aws:s3:::b/incoming/x"), statements)
    assert not refused.allowed and refused.decided_by == "implicit deny"
    assert "resource does not match" in refused.considered[0]
    assert not evaluate(Request("s3:PutObject", "arn:aws:s3:::b/jobs/x"), statements).allowed
    assert evaluate(Request("s3:PutObject", "x"), [allow(Action="s3:*", Resource="*")]).allowed


def test_an_explicit_deny_wins() -> None:
    statements = [
        allow(Action="s3:*", Resource="*"),
        deny(Action="s3:PutObject", Resource="arn:aws:s3:::b/predictions/*"),
    ]
    decision = evaluate(Request("s3:PutObject", "arn:aws:s3:::b/predictions/x"), statements)
    assert not decision.allowed and decision.decided_by.startswith("explicit deny")
    assert evaluate(Request("s3:PutObject", "arn:aws:s3:::b/jobs/x"), statements).allowed


def test_not_action_and_not_resource() -> None:
    statements = [allow(NotAction="iam:*", NotResource="arn:aws:s3:::secret/*")]
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::b/x"), statements).allowed
    assert not evaluate(Request("iam:PassRole", "arn:aws:iam::1:role/r"), statements).allowed
    assert not evaluate(Request("s3:GetObject", "arn:aws:s3:::secret/x"), statements).allowed


def test_string_like_on_the_prefix_and_a_missing_key() -> None:
    statements = [
        allow(Action="s3:ListBucketVersions", Resource=BUCKET, Condition={"StringLike": {"s3:prefix": ["incoming/*"]}})
    ]
    assert evaluate(Request("s3:ListBucketVersions", BUCKET, {"s3:prefix": "incoming/g/"}), statements).allowed
    assert not evaluate(Request("s3:ListBucketVersions", BUCKET, {"s3:prefix": "jobs/"}), statements).allowed
    assert not evaluate(Request("s3:ListBucketVersions", BUCKET, {"s3:prefix": None}), statements).allowed


def test_string_equals_negation_and_if_exists() -> None:
    key = "sagemaker:ModelApprovalStatus"
    equals = [allow(Action="sagemaker:UpdateModelPackage", Resource="*", Condition={"StringEquals": {key: "Rejected"}})]
    assert evaluate(Request("sagemaker:UpdateModelPackage", "p", {key: "Rejected"}), equals).allowed
    assert not evaluate(Request("sagemaker:UpdateModelPackage", "p", {key: "Approved"}), equals).allowed
    assert not evaluate(Request("sagemaker:UpdateModelPackage", "p", {key: None}), equals).allowed
    negated = [allow(Action="*", Resource="*", Condition={"StringNotEquals": {key: "Approved"}})]
    assert evaluate(Request("a:b", "p", {key: None}), negated).allowed  # a missing key matches a negated operator
    assert not evaluate(Request("a:b", "p", {key: "Approved"}), negated).allowed
    if_exists = [allow(Action="*", Resource="*", Condition={"StringEqualsIfExists": {key: "Rejected"}})]
    assert evaluate(Request("a:b", "p", {key: None}), if_exists).allowed
    assert not evaluate(Request("a:b", "p", {key: "Approved"}), if_exists).allowed


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEquals": {"aws:ResourceTag/team": "ml"}},  # a key the mapping does not provide
        {"NumericLessThan": {"s3:max-keys": "10"}},  # an operator the evaluator does not implement
        {"ForAnyValue:StringLike": {"s3:prefix": ["a*"]}},  # set operators
    ],
    ids=["unknown key", "unknown operator", "set operator"],
)
def test_a_condition_the_evaluator_cannot_decide_fails_loudly(condition: dict[str, Any]) -> None:
    statements = [allow(Action="s3:ListBucket", Resource=BUCKET, Condition=condition)]
    with pytest.raises(UnsupportedPolicy):
        evaluate(Request("s3:ListBucket", BUCKET, {"s3:prefix": "a"}), statements)


def test_a_policy_variable_fails_loudly() -> None:
    with pytest.raises(UnsupportedPolicy):
        evaluate(Request("s3:GetObject", f"{BUCKET}/x"), [allow(Action="s3:GetObject", Resource="${aws:username}/*")])


def test_check_calls_reports_function_operation_action_resource_and_statements() -> None:
    policies = {"Fn": [allow(Sid="ReadJobs", Action="s3:GetObject", Resource=f"{BUCKET}/jobs/*")]}
    recorded = {
        "Fn": [
            call("s3", "GetObject", Bucket="b", Key="jobs/x"),
            call("s3", "CopyObject", Bucket="b", Key="predictions/x", CopySource="b/jobs/x"),
            call("s3", "GetObject", Bucket="b", Key="incoming/x"),
            call("s3", "DeleteBucket", Bucket="b"),
        ]
    }
    findings = check_calls(recorded, policies, ENV)
    described = [f.describe() for f in findings]
    assert len(findings) == 3
    assert "Fn: s3.CopyObject" in described[0] and "IMPLICIT DENY" in described[0]
    assert "action   s3:PutObject" in described[0] and f"resource {BUCKET}/predictions/x" in described[0]
    assert "statements considered (action matched): none" in described[0]
    assert f"resource {BUCKET}/incoming/x" in described[1]
    assert "test#ReadJobs (Allow): resource does not match" in described[1]
    assert "UnmappedCall" in described[2]


# ---------------------------------------------------------------------------------------------- the template


class _NamingResolver(Resolver):
    """Resolves every resource to a predictable physical name, without provisioning anything."""

    def ref(self, name: str) -> Any:
        try:
            return super().ref(name)
        except TemplateError:  # an unprovisioned resource: name it after its logical id
            return f"sagepilot-{name}".lower() if name == "DataBucket" else f"arn:ref:{name}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id == "DataBucket":
            return "arn:aws:s3:::sagepilot-databucket"
        return f"arn:aws:test:{logical_id}.{attribute}"


@pytest.fixture(scope="module")
def policies() -> dict[str, list[Statement]]:
    spec = importlib.util.spec_from_file_location("render_template", ROOT / "scripts" / "render_template.py")
    assert spec is not None and spec.loader is not None
    renderer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(renderer)
    rendered = renderer.render(renderer.load_sam_template(ROOT / "template.yaml"))
    template = load_template(ROOT / "template.yaml")
    params = {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}
    resolver = _NamingResolver(template, "sagepilot-sandbox", params)
    basic = {"Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]}
    managed = {"AWSLambdaBasicExecutionRole": basic, "AWSXrayWriteOnlyAccess": basic}
    managed["AWSLambdaSQSQueueExecutionRole"] = basic
    return function_policies(rendered, resolver.resolve, managed)


def test_every_function_of_the_template_gets_its_roles_statements(policies: dict[str, list[Statement]]) -> None:
    assert set(policies) == {"BatchIntakeFunction", "BatchCompletionFunction", "RolloutFunction", "TrainingFunction"}
    assert all(any(s.sid == "Notify" for s in statements) for statements in policies.values())
    destination = [s for s in policies["RolloutFunction"] if "sqs:SendMessage" in s.actions]
    assert destination, "SAM's on-failure destination policy is part of the role"


def test_the_templates_intake_may_list_versions_of_incoming_files_only(policies: dict[str, list[Statement]]) -> None:
    bucket = "arn:aws:s3:::sagepilot-databucket"
    intake, completion = policies["BatchIntakeFunction"], policies["BatchCompletionFunction"]
    listing = Request("s3:ListBucketVersions", bucket, {"s3:prefix": "incoming/churn/"})
    assert evaluate(listing, intake).allowed
    assert not evaluate(Request("s3:ListBucketVersions", bucket, {"s3:prefix": "jobs/"}), intake).allowed
    # The completion checks the versions a job read (incoming/ only) and copies the changed ones by version.
    assert evaluate(listing, completion).allowed
    assert not evaluate(Request("s3:ListBucketVersions", bucket, {"s3:prefix": "jobs/"}), completion).allowed
    assert evaluate(Request("s3:GetObjectVersion", f"{bucket}/incoming/churn/a.csv"), completion).allowed
    copy_read = Request("s3:GetObject", f"{bucket}/jobs/churn/j/output/x.out")
    assert evaluate(copy_read, completion).allowed
    assert not evaluate(Request("s3:GetObjectVersion", f"{bucket}/jobs/churn/j/output/x.out"), completion).allowed
