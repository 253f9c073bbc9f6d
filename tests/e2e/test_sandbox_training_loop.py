"""The whole loop through the running sandbox with the real aws CLI: a training set uploaded -> a training
job that really trains -> a registered version with its metrics -> approved by hand -> deployed by the
rollout -> `aws sagemaker-runtime invoke-endpoint` answers with the trained model's own predictions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sagepilot_model_server.examples import feature_rows, labeled_rows, load_estimator, to_csv
from sagepilot_sandbox.server import Sandbox

from .iam_calls import assert_calls_allowed
from .test_sandbox_scenarios import AWS_CLI, aws

pytestmark = pytest.mark.e2e
GROUP = "loop"
ENDPOINT = f"sagepilot-{GROUP}"


def aws_raw(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    return subprocess.run(
        [AWS_CLI, "--endpoint-url", sandbox.endpoint_url, "--output", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def packages(sandbox: Sandbox) -> list[dict[str, Any]]:
    listed = aws(sandbox, "sagemaker", "list-model-packages", "--model-package-group-name", GROUP)
    return list(listed["ModelPackageSummaryList"])


def test_upload_train_register_approve_deploy_and_invoke_with_the_aws_cli(sandbox: Sandbox, tmp_path: Path) -> None:
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", GROUP)
    rows, labels = labeled_rows(300, seed=21)
    train = tmp_path / "train.csv"
    train.write_text(to_csv(rows, labels))
    assert "upload:" in aws(sandbox, "s3", "cp", str(train), f"s3://{bucket}/training/{GROUP}/2026-11/train.csv")

    [summary] = sandbox.wait_for(lambda: packages(sandbox), timeout=60)
    package = aws(sandbox, "sagemaker", "describe-model-package", "--model-package-name", summary["ModelPackageArn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"  # no recipe: a person approves
    properties = package["CustomerMetadataProperties"]
    job_name = properties["sagepilot:training-job"]
    job = aws(sandbox, "sagemaker", "describe-training-job", "--training-job-name", job_name)
    assert job["TrainingJobStatus"] == "Completed"
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert set(metrics) == {"train:accuracy", "validation:accuracy"} and metrics["validation:accuracy"] > 0.6
    assert properties["metric:validation:accuracy"] == f"{metrics['validation:accuracy']:g}"
    artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == artifact

    aws(
        sandbox,
        "sagemaker",
        "update-model-package",
        "--model-package-arn",
        summary["ModelPackageArn"],
        "--model-approval-status",
        "Approved",
    )
    sandbox.wait_for(
        lambda: (
            (e := aws_raw(sandbox, "sagemaker", "describe-endpoint", "--endpoint-name", ENDPOINT)).returncode == 0
            and json.loads(e.stdout)["EndpointStatus"] == "InService"
        ),
        timeout=60,
    )

    customers = feature_rows(5, seed=22)
    body = tmp_path / "customers.csv"
    body.write_text(to_csv(customers))
    out = tmp_path / "out.csv"
    answer = aws(
        sandbox,
        "sagemaker-runtime",
        "invoke-endpoint",
        "--endpoint-name",
        ENDPOINT,
        "--content-type",
        "text/csv",
        "--accept",
        "text/csv",
        "--body",
        f"fileb://{body}",
        str(out),
    )
    assert answer["ContentType"] == "text/csv"
    assert answer["InvokedProductionVariant"] == "v1"
    model = tmp_path / "model.tar.gz"
    aws(sandbox, "s3", "cp", artifact, str(model))
    assert out.read_text().split() == [str(int(p)) for p in load_estimator(model).predict(customers)]

    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n")
    refused = aws_raw(
        sandbox,
        "sagemaker-runtime",
        "invoke-endpoint",
        "--endpoint-name",
        ENDPOINT,
        "--content-type",
        "text/csv",
        "--body",
        f"fileb://{bad}",
        str(tmp_path / "none.csv"),
    )
    assert refused.returncode != 0
    assert "An error occurred (ModelError) when calling the InvokeEndpoint operation: Received client error (400)" in (
        refused.stderr
    )


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    """After the scenario above: every call its functions made is allowed by their IAM policy."""
    assert_calls_allowed(
        sandbox,
        min_pairs=20,  # 28 recorded
        expected=[
            ("TrainingFunction", "sagemaker.CreateTrainingJob"),
            ("TrainingFunction", "sagemaker.CreateModelPackage"),
            ("RolloutFunction", "sagemaker.CreateEndpoint"),
        ],
    )
