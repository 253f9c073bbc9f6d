"""The rollout through the running sandbox, driven by the real aws CLI as a user would drive AWS:
approve in the registry, watch the endpoint follow, roll back with an alarm or a rejection, operate
with the `sagepilot` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sagepilot_sandbox.server import Sandbox

from .iam_calls import assert_calls_allowed
from .test_sandbox_scenarios import aws, upload_example_model

pytestmark = pytest.mark.e2e
GROUP = "fraud"
ENDPOINT = "sagepilot-fraud"
SAGEPILOT_CLI = str(Path(sys.executable).with_name("sagepilot"))


def register(sandbox: Sandbox, version_note: str, group: str = GROUP) -> str:
    # Under models/ of the data bucket, where the stack's SageMaker role may read (an artifact elsewhere fails
    # the endpoint, as in AWS); and there (a missing artifact fails the endpoint too, as in AWS).
    url = upload_example_model(sandbox, f"models/{group}/{version_note}/model.tar.gz")
    spec = {
        "Containers": [
            {
                "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud:1",
                "ModelDataUrl": url,
            }
        ],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    answer = aws(
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
    return str(answer["ModelPackageArn"])


def set_status(sandbox: Sandbox, arn: str, status: str) -> None:
    aws(sandbox, "sagemaker", "update-model-package", "--model-package-arn", arn, "--model-approval-status", status)


def shares(sandbox: Sandbox) -> dict[str, float] | None:
    found = aws(sandbox, "sagemaker", "describe-endpoint", "--endpoint-name", ENDPOINT)
    if found["EndpointStatus"] != "InService":
        return None
    total = sum(v["CurrentWeight"] for v in found["ProductionVariants"])
    return {v["VariantName"]: round(v["CurrentWeight"] / total, 2) for v in found["ProductionVariants"]}


def sagepilot(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "SAGEPILOT_STATE_TABLE": sandbox.stack.outputs["StateTableName"],
    }  # type: ignore[union-attr]
    return subprocess.run([SAGEPILOT_CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def wait_shares(sandbox: Sandbox, expected: dict[str, float], timeout: float = 60) -> None:
    sandbox.wait_for(lambda: shares(sandbox) == expected, timeout=timeout)


def test_approve_roll_out_pause_promote_and_roll_back_with_an_alarm(sandbox: Sandbox) -> None:
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", GROUP)
    v1 = register(sandbox, "v1")
    set_status(sandbox, v1, "Approved")
    sandbox.wait_for(
        lambda: ENDPOINT in [e["EndpointName"] for e in aws(sandbox, "sagemaker", "list-endpoints")["Endpoints"]]
    )
    wait_shares(sandbox, {"v1": 1.0})
    targets = aws(sandbox, "application-autoscaling", "describe-scalable-targets", "--service-namespace", "sagemaker")
    assert f"endpoint/{ENDPOINT}/variant/v1" in [t["ResourceId"] for t in targets["ScalableTargets"]]

    # v2: canary at 10 %, paused by an operator, then promoted at once.
    v2 = register(sandbox, "v2")
    set_status(sandbox, v2, "Approved")
    wait_shares(sandbox, {"v1": 0.9, "v2": 0.1})
    paused = sagepilot(sandbox, "pause", ENDPOINT)
    assert paused.returncode == 0, paused.stderr
    listing = sagepilot(sandbox, "rollouts")
    assert "CANARY (paused)" in listing.stdout, listing
    promoted = sagepilot(sandbox, "promote", ENDPOINT)
    assert promoted.returncode == 0, promoted.stderr
    wait_shares(sandbox, {"v2": 1.0})

    # v3: canary, then its rollout alarm fires -> all traffic back to v2, v3 Rejected with the reason.
    v3 = register(sandbox, "v3")
    set_status(sandbox, v3, "Approved")
    wait_shares(sandbox, {"v2": 0.9, "v3": 0.1})
    aws(
        sandbox,
        "cloudwatch",
        "set-alarm-state",
        "--alarm-name",
        f"{ENDPOINT}-v3-5xx",
        "--state-value",
        "ALARM",
        "--state-reason",
        "Threshold Crossed: 40 server errors in 1 minute",
    )
    wait_shares(sandbox, {"v2": 1.0})
    package = aws(sandbox, "sagemaker", "describe-model-package", "--model-package-name", v3)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert f"{ENDPOINT}-v3-5xx" in package["ApprovalDescription"]
    history = sagepilot(sandbox, "history", ENDPOINT)
    assert "rolled back to v2" in history.stdout, history
    alarms = [a["AlarmName"] for a in aws(sandbox, "cloudwatch", "describe-alarms")["MetricAlarms"]]
    assert not [a for a in alarms if a.startswith(f"{ENDPOINT}-v3-")]


def endpoints(sandbox: Sandbox) -> set[str]:
    return {e["EndpointName"] for e in aws(sandbox, "sagemaker", "list-endpoints")["Endpoints"]}


def test_a_second_group_naming_the_endpoint_is_refused_until_a_rename_releases_it(sandbox: Sandbox) -> None:
    """After the scenario above (fraud's endpoint serves v2): one endpoint, one owner."""
    other, renamed = "fraud-copy", f"{ENDPOINT}-b"
    config = aws(sandbox, "sagemaker", "describe-endpoint", "--endpoint-name", ENDPOINT)["EndpointConfigName"]
    aws(
        sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", other,
        "--tags", f"Key=sagepilot:endpoint-name,Value={ENDPOINT}",
    )  # fmt: skip
    copy = register(sandbox, "copy-v1", group=other)
    set_status(sandbox, copy, "Approved")
    refusal = f"refused group {other} (v1 approved): it names {ENDPOINT}, which belongs to group {GROUP}"
    sandbox.wait_for(lambda: refusal in sagepilot(sandbox, "history", ENDPOINT).stdout, timeout=60)
    assert aws(sandbox, "sagemaker", "describe-endpoint", "--endpoint-name", ENDPOINT)["EndpointConfigName"] == config
    assert shares(sandbox) == {"v2": 1.0}

    # The owner renames its endpoint; its next approval goes to the new name, then the old one is retired. A first
    # deployment there: created with v2 (the newest Approved version below v4, the baseline), then v4's canary.
    group_arn = aws(sandbox, "sagemaker", "describe-model-package-group", "--model-package-group-name", GROUP)[
        "ModelPackageGroupArn"
    ]
    aws(sandbox, "sagemaker", "add-tags", "--resource-arn", group_arn, "--tags",
        f"Key=sagepilot:endpoint-name,Value={renamed}")  # fmt: skip
    v4 = register(sandbox, "v4")
    set_status(sandbox, v4, "Approved")
    sandbox.wait_for(lambda: endpoints(sandbox) == {renamed}, timeout=120)

    def renamed_variants() -> list[str]:
        described = aws(sandbox, "sagemaker", "describe-endpoint", "--endpoint-name", renamed)
        return sorted(v["VariantName"] for v in described["ProductionVariants"])

    sandbox.wait_for(lambda: renamed_variants() == ["v2", "v4"], timeout=60)
    assert "v2 deployed first as the baseline" in sagepilot(sandbox, "history", renamed).stdout
    alarms = [a["AlarmName"] for a in aws(sandbox, "cloudwatch", "describe-alarms")["MetricAlarms"]]
    assert not [a for a in alarms if a.startswith(f"{ENDPOINT}-v")]

    # Released: the other group's next approval deploys to the old name.
    set_status(sandbox, register(sandbox, "copy-v2", group=other), "Approved")
    sandbox.wait_for(lambda: endpoints(sandbox) == {ENDPOINT, renamed}, timeout=120)


def test_a_tag_value_out_of_range_is_refused_and_a_group_named_control_is_not_the_control_plane(
    sandbox: Sandbox,
) -> None:
    assert sandbox.stack is not None
    queue = aws(sandbox, "sqs", "create-queue", "--queue-name", "e2e-inbox")["QueueUrl"]
    queue_arn = aws(sandbox, "sqs", "get-queue-attributes", "--queue-url", queue, "--attribute-names", "QueueArn")[
        "Attributes"
    ]["QueueArn"]
    topic = sandbox.stack.outputs["NotificationTopicArn"]
    aws(sandbox, "sns", "subscribe", "--topic-arn", topic, "--protocol", "sqs", "--notification-endpoint", queue_arn)

    def notices() -> list[dict[str, Any]]:
        got = aws(sandbox, "sqs", "receive-message", "--queue-url", queue, "--max-number-of-messages", "10") or {}
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]

    # sagepilot:instance-count=1000 with an autoscaling maximum of 10: refused, not turned into 10.
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "big",
        "--tags", "Key=sagepilot:instance-count,Value=1000")  # fmt: skip
    set_status(sandbox, register(sandbox, "big-v1", group="big"), "Approved")
    seen: list[dict[str, Any]] = []
    subject = "INVALID SETTINGS: model package group big"
    sandbox.wait_for(lambda: seen.extend(notices()) or any(n["Subject"] == subject for n in seen), timeout=60)
    [notice] = [n for n in seen if n["Subject"] == subject]
    assert "sagepilot:instance-count must be between 1 and 10" in json.loads(notice["Message"])["what"]
    assert "sagepilot-big" not in endpoints(sandbox)

    # A group named control: its endpoint's alarms are not the control plane's.
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "control")
    set_status(sandbox, register(sandbox, "control-v1", group="control"), "Approved")
    sandbox.wait_for(lambda: "sagepilot-control" in endpoints(sandbox), timeout=60)
    alarm = "sagepilot-control-v1-5xx"
    sandbox.wait_for(lambda: aws(sandbox, "cloudwatch", "describe-alarms", "--alarm-names", alarm)["MetricAlarms"])
    aws(sandbox, "cloudwatch", "set-alarm-state", "--alarm-name", "sagepilot-control-v1-5xx",
        "--state-value", "ALARM", "--state-reason", "test")  # fmt: skip
    status = sagepilot(sandbox, "status")
    assert status.returncode == 0, status.stderr
    assert "NOT HEALTHY" not in status.stdout and "sagepilot-control-v1-5xx" not in status.stdout, status.stdout
    listing = sagepilot(sandbox, "alarms", "sagepilot-control")
    assert "sagepilot-control-v1-5xx" in listing.stdout, listing


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    """After the scenario above: every call its functions made is allowed by their IAM policy."""
    assert_calls_allowed(
        sandbox,
        min_pairs=20,  # 26 recorded
        expected=[
            ("RolloutFunction", "sagemaker.UpdateModelPackage"),
            ("RolloutFunction", "sagemaker.UpdateEndpointWeightsAndCapacities"),
            ("RolloutFunction", "application-autoscaling.RegisterScalableTarget"),
            ("RolloutFunction", "cloudwatch.PutMetricAlarm"),
            ("RolloutFunction", "sagemaker.DeleteEndpoint"),
        ],
    )
