"""The sandbox's model registry: SageMaker Model Package State Change events on create and update,
UpdateModelPackage changing only what it is given, and tags on groups and packages (moto.mock_aws with
the faithful patches)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from sagepilot_sandbox import faithful
from sagepilot_sandbox.sagemaker import registry

REGION = "us-east-1"
ACCOUNT = "123456789012"
SESSION = boto3.session.Session()  # parses the service models once (mock_aws resets the default session)
SPEC = {
    "Containers": [{"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/churn:1", "ModelDataUrl": "s3://m/churn.tgz"}],
    "SupportedContentTypes": ["text/csv"],
    "SupportedResponseMIMETypes": ["text/csv"],
}


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
def sm(aws: None) -> Any:
    yield client("sagemaker")
    faithful.clear_listeners()


@pytest.fixture
def tap(sm: Any) -> EventTap:
    return EventTap({"source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"]})


def package(sm: Any, status: str = "PendingManualApproval", group: str = "churn") -> str:
    return str(
        sm.create_model_package(
            ModelPackageGroupName=group,
            ModelApprovalStatus=status,
            InferenceSpecification=SPEC,
            CustomerMetadataProperties={"owner": "ml"},
        )["ModelPackageArn"]
    )


def test_creating_a_package_emits_its_state_change(sm: Any, tap: EventTap) -> None:
    sm.create_model_package_group(ModelPackageGroupName="churn")

    arn = package(sm)

    (event,) = tap.events()
    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/churn/1"
    assert (event["source"], event["detail-type"], event["resources"]) == (
        "aws.sagemaker",
        "SageMaker Model Package State Change",
        [arn],
    )
    assert (event["account"], event["region"]) == (ACCOUNT, REGION)
    detail = event["detail"]
    assert detail["ModelPackageGroupName"] == "churn"
    assert detail["ModelPackageName"] == "churn"
    assert detail["ModelPackageVersion"] == 1
    assert detail["ModelPackageArn"] == arn
    assert detail["ModelPackageStatus"] == "Completed"
    assert detail["ModelApprovalStatus"] == "PendingManualApproval"
    assert detail["InferenceSpecification"] == SPEC
    assert detail["CustomerMetadataProperties"] == {"owner": "ml"}
    assert "ApprovalDescription" not in detail
    assert detail["CreationTime"].endswith("Z") and detail["LastModifiedTime"] == detail["CreationTime"]


def test_approving_emits_again_and_an_update_changes_only_what_it_is_given(sm: Any, tap: EventTap) -> None:
    sm.create_model_package_group(ModelPackageGroupName="churn")
    arn = package(sm)
    tap.events()

    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="QA passed")
    sm.update_model_package(
        ModelPackageArn=arn, CustomerMetadataProperties={"ticket": "T-1"}, CustomerMetadataPropertiesToRemove=["owner"]
    )

    approved, relabelled = tap.events()
    assert approved["detail"]["ModelApprovalStatus"] == "Approved"
    assert approved["detail"]["ApprovalDescription"] == "QA passed"
    assert relabelled["detail"]["ModelApprovalStatus"] == "Approved"  # moto would have wiped it
    assert relabelled["detail"]["CustomerMetadataProperties"] == {"ticket": "T-1"}
    described = sm.describe_model_package(ModelPackageName=arn)
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == "QA passed"
    assert described["CustomerMetadataProperties"] == {"ticket": "T-1"}
    assert described["ModelPackageName"] == "churn"
    sm.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"more": "x"})
    assert sm.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"] == {
        "ticket": "T-1",
        "more": "x",
    }


def test_events_can_be_delivered_more_than_once_on_purpose(sm: Any, tap: EventTap) -> None:
    registry.event_copies = 2
    sm.create_model_package_group(ModelPackageGroupName="churn")
    package(sm, "Approved")
    first, second = tap.events()
    assert first == second


def test_group_tags_are_listed_and_packages_can_be_tagged(sm: Any) -> None:
    group = sm.create_model_package_group(
        ModelPackageGroupName="churn", Tags=[{"Key": "sagepilot:canary-percent", "Value": "10"}]
    )["ModelPackageGroupArn"]
    sm.add_tags(ResourceArn=group, Tags=[{"Key": "sagepilot:bake-minutes", "Value": "15"}])
    assert {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=group)["Tags"]} == {
        "sagepilot:canary-percent": "10",
        "sagepilot:bake-minutes": "15",
    }
    arn = package(sm)
    assert sm.list_tags(ResourceArn=arn)["Tags"] == []
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "stage", "Value": "canary"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "stage", "Value": "canary"}]
