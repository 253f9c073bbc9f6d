"""Failures through the running sandbox, driven by the real aws CLI: a model whose container never passes
SageMaker's health check is uploaded, registered and approved; the update SageMaker cannot apply is reported
FAILED once while the stable variant keeps serving; a first deployment that fails is reported the same way; an
endpoint deleted out of band is reported ENDPOINT MISSING and created again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from sagepilot_model_server.examples import build_example_model, feature_rows, to_csv
from sagepilot_sandbox.server import Sandbox

from .iam_calls import assert_calls_allowed
from .test_sandbox_scenarios import aws

pytestmark = pytest.mark.e2e
HEALTH = "did not pass the ping health check"


class Inbox:
    """An SQS queue subscribed to the stack's notification topic, read with the aws CLI."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.url = aws(sandbox, "sqs", "create-queue", "--queue-name", "failures-inbox")["QueueUrl"]
        arn = aws(sandbox, "sqs", "get-queue-attributes", "--queue-url", self.url, "--attribute-names", "QueueArn")
        topic = sandbox.stack.outputs["NotificationTopicArn"]  # type: ignore[union-attr]
        aws(sandbox, "sns", "subscribe", "--topic-arn", topic, "--protocol", "sqs",
            "--notification-endpoint", arn["Attributes"]["QueueArn"])  # fmt: skip
        self.seen: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        while True:
            got = aws(self.sandbox, "sqs", "receive-message", "--queue-url", self.url, "--max-number-of-messages", "10")
            messages = (got or {}).get("Messages", [])
            if not messages:
                return self.seen
            for message in messages:
                envelope = json.loads(message["Body"])
                self.seen.append({"subject": envelope.get("Subject"), "message": json.loads(envelope["Message"])})
                aws(self.sandbox, "sqs", "delete-message", "--queue-url", self.url,
                    "--receipt-handle", message["ReceiptHandle"])  # fmt: skip

    def subjects(self) -> list[str]:
        return [str(n["subject"]) for n in self.read()]


@pytest.fixture(scope="module")
def inbox(sandbox: Sandbox) -> Inbox:
    return Inbox(sandbox)


def upload(sandbox: Sandbox, tmp_path: Path, key: str, **options: Any) -> str:
    """An example model built locally and uploaded with `aws s3 cp`, as a user would."""
    archive = build_example_model(tmp_path / key.replace("/", "-"), **options)
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    assert "upload:" in aws(sandbox, "s3", "cp", str(archive), f"s3://{bucket}/{key}")
    return f"s3://{bucket}/{key}"


def approve(sandbox: Sandbox, group: str, model_url: str) -> str:
    groups = aws(sandbox, "sagemaker", "list-model-package-groups")["ModelPackageGroupSummaryList"]
    if group not in [g["ModelPackageGroupName"] for g in groups]:
        aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", group)
    spec = {
        "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1", "ModelDataUrl": model_url}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    arn = aws(
        sandbox,
        "sagemaker",
        "create-model-package",
        "--model-package-group-name",
        group,
        "--inference-specification",
        json.dumps(spec),
        "--model-approval-status",
        "PendingManualApproval",
    )
    aws(sandbox, "sagemaker", "update-model-package", "--model-package-arn", arn["ModelPackageArn"],
        "--model-approval-status", "Approved")  # fmt: skip
    return str(arn["ModelPackageArn"])


def endpoint(sandbox: Sandbox, name: str) -> dict[str, Any] | None:
    listed = aws(sandbox, "sagemaker", "list-endpoints")["Endpoints"]
    if name not in [e["EndpointName"] for e in listed]:
        return None
    return dict(aws(sandbox, "sagemaker", "describe-endpoint", "--endpoint-name", name))


def serving(sandbox: Sandbox, name: str) -> list[str] | None:
    found = endpoint(sandbox, name)
    if found is None or found["EndpointStatus"] != "InService":
        return None
    return sorted(v["VariantName"] for v in found["ProductionVariants"])


def rejected(sandbox: Sandbox, arn: str) -> dict[str, Any] | None:
    found = aws(sandbox, "sagemaker", "describe-model-package", "--model-package-name", arn)
    return dict(found) if found["ModelApprovalStatus"] == "Rejected" else None


def invoke(sandbox: Sandbox, name: str, tmp_path: Path) -> str:
    body, out = tmp_path / "request.csv", tmp_path / "answer.csv"
    body.write_text(to_csv(feature_rows(3, seed=2)))
    answer = aws(sandbox, "sagemaker-runtime", "invoke-endpoint", "--endpoint-name", name, "--content-type",
                 "text/csv", "--body", f"fileb://{body}", str(out))  # fmt: skip
    assert len(out.read_text().splitlines()) == 3
    return str(answer["InvokedProductionVariant"])


def test_a_candidate_that_fails_its_health_check_is_failed_once_and_live_traffic_is_untouched(
    sandbox: Sandbox, inbox: Inbox, tmp_path: Path
) -> None:
    name = "sagepilot-risk"
    approve(sandbox, "risk", upload(sandbox, tmp_path, "models/risk/v1/model.tar.gz", seed=1))
    sandbox.wait_for(lambda: serving(sandbox, name) == ["v1"], timeout=90)
    sandbox.wait_for(lambda: f"DEPLOYED: {name} v1" in inbox.subjects(), timeout=30)

    v2 = approve(sandbox, "risk", upload(sandbox, tmp_path, "models/risk/v2/model.tar.gz", seed=2, fail_on_load=True))
    sandbox.wait_for(lambda: rejected(sandbox, v2) is not None, timeout=90)

    package = rejected(sandbox, v2)
    assert package is not None and HEALTH in package["ApprovalDescription"]
    found = endpoint(sandbox, name)
    assert found is not None and found["EndpointStatus"] == "InService"
    assert [v["VariantName"] for v in found["ProductionVariants"]] == ["v1"]
    assert "production variant v2 " + HEALTH in found["FailureReason"]
    assert invoke(sandbox, name, tmp_path) == "v1"
    sandbox.wait_for(lambda: f"FAILED: {name} v2" in inbox.subjects(), timeout=30)
    failed = [n for n in inbox.read() if n["subject"] == f"FAILED: {name} v2"]
    assert HEALTH in failed[0]["message"]["what"]

    # Several reconcile periods later: no second update for this attempt, no second notice.
    modified = found["LastModifiedTime"]
    time.sleep(3 * sandbox.schedule_seconds + 1)
    again = endpoint(sandbox, name)
    assert again is not None and again["LastModifiedTime"] == modified
    assert inbox.subjects().count(f"FAILED: {name} v2") == 1


def test_a_first_deployment_that_fails_its_health_check_is_reported_failed(
    sandbox: Sandbox, inbox: Inbox, tmp_path: Path
) -> None:
    name = "sagepilot-credit"
    v1 = approve(sandbox, "credit", upload(sandbox, tmp_path, "models/credit/v1/model.tar.gz", fail_on_load=True))
    sandbox.wait_for(lambda: (endpoint(sandbox, name) or {}).get("EndpointStatus") == "Failed", timeout=90)
    found = endpoint(sandbox, name)
    assert found is not None and HEALTH in found["FailureReason"]
    sandbox.wait_for(lambda: rejected(sandbox, v1) is not None, timeout=30)
    sandbox.wait_for(lambda: f"FAILED: {name} v1" in inbox.subjects(), timeout=30)


def test_an_endpoint_deleted_out_of_band_is_reported_missing_then_recreated(
    sandbox: Sandbox, inbox: Inbox, tmp_path: Path
) -> None:
    name = "sagepilot-risk"
    assert serving(sandbox, name) == ["v1"]
    aws(sandbox, "sagemaker", "delete-endpoint", "--endpoint-name", name)
    sandbox.wait_for(lambda: f"ENDPOINT MISSING: {name}" in inbox.subjects(), timeout=60)
    sandbox.wait_for(lambda: serving(sandbox, name) == ["v1"], timeout=90)
    missing = [n for n in inbox.read() if n["subject"] == f"ENDPOINT MISSING: {name}"]
    assert missing[0]["message"]["recreating"] == 1
    assert invoke(sandbox, name, tmp_path) == "v1"
    targets = aws(sandbox, "application-autoscaling", "describe-scalable-targets", "--service-namespace", "sagemaker")
    assert f"endpoint/{name}/variant/v1" in [t["ResourceId"] for t in targets["ScalableTargets"]]


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    """After the scenarios above: every call the functions made is allowed by their IAM policy."""
    assert_calls_allowed(
        sandbox,
        min_pairs=10,
        expected=[
            ("RolloutFunction", "sagemaker.ListEndpoints"),
            ("RolloutFunction", "sagemaker.UpdateModelPackage"),
            ("RolloutFunction", "sagemaker.CreateEndpoint"),
        ],
    )
