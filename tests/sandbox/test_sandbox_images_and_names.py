"""What SageMaker refuses at an endpoint's start and at create time, and the sandbox used to accept:

- an artifact that is not there (NoSuchKey, not a denial) fails a new endpoint with SageMaker's download
  failure, and leaves an updated one InService on its previous config with it;
- an image the model's execution role may not pull from ECR (`ecr:GetAuthorizationToken`,
  `ecr:BatchGetImage`, `ecr:GetDownloadUrlForLayer` on the repository) fails the endpoint with SageMaker's
  "Please make sure all images ... exist" reason;
- endpoint and model package group names are unique without regard to case."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepilot_sandbox.sagemaker.modelservers import download_failure

from . import test_sandbox_health_check as health
from .test_sandbox_health_check import Models, config, settled, statuses
from .test_sandbox_transform import ACCOUNT, BUCKET, ROLE, client

models, sm, tap = health.models, health.sm, health.tap  # the same fixtures

REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"


def image_reason(variant: str) -> str:
    return (
        f"Please make sure all images included in the model for the production variant {variant} exist, and that "
        "the execution role used to create the model has permissions to access them."
    )


def puller_role(name: str, repositories: list[str], *, login: bool = True) -> str:
    """A SageMaker role that reads models/ and may pull from `repositories` (and log in to ECR if `login`)."""
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/models/*"},
        {
            "Effect": "Allow",
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": [f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{r}" for r in repositories],
        },
    ]
    if login:
        statements.append({"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"})
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam = client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name, PolicyName="run", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements})
    )
    return str(arn)


def model_with(sm: Any, name: str, archive: bytes | None, *, image: str = "img", role: str = ROLE) -> str:
    """A model whose artifact is `archive` (None: nothing uploaded at its URL)."""
    key = f"models/{name}/model.tar.gz"
    if archive is not None:
        client("s3").put_object(Bucket=BUCKET, Key=key, Body=archive)
    sm.create_model(
        ModelName=name, ExecutionRoleArn=role, PrimaryContainer={"Image": image, "ModelDataUrl": f"s3://{BUCKET}/{key}"}
    )
    return name


# ------------------------------------------------------------------------------------ a missing artifact
def test_a_missing_artifact_fails_the_new_endpoint_with_sagemakers_download_failure(
    sm: Any, tap: Any, models: Models
) -> None:
    config(sm, "c-missing", ("AllTraffic", model_with(sm, "m-missing", None)))
    sm.create_endpoint(EndpointName="ep-missing", EndpointConfigName="c-missing")

    found = settled(sm, "ep-missing")

    reason = download_failure(f"s3://{BUCKET}/models/m-missing/model.tar.gz")
    assert reason.startswith('Failed to download model data for container "container_1" from URL: "s3://')
    assert (found["EndpointStatus"], found["FailureReason"]) == ("Failed", reason)
    assert statuses(tap) == [("Creating", ""), ("Failed", reason)]


def test_an_update_to_a_missing_artifact_leaves_the_old_config_in_service(sm: Any, models: Models) -> None:
    good = model_with(sm, "m-good", models.good.read_bytes())
    config(sm, "c-1", ("v1", good))
    config(sm, "c-2", ("v1", good), ("v2", model_with(sm, "m-gone", None)))
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c-1")
    assert settled(sm, "ep")["EndpointStatus"] == "InService"

    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c-2")
    found = settled(sm, "ep")

    assert (found["EndpointStatus"], found["EndpointConfigName"]) == ("InService", "c-1")
    assert found["FailureReason"] == download_failure(f"s3://{BUCKET}/models/m-gone/model.tar.gz")


# ---------------------------------------------------------------------------------------- image pulls
def test_an_image_the_role_may_not_pull_fails_the_endpoint_and_one_it_may_serves(sm: Any, models: Models) -> None:
    role = puller_role("pulls-churn", ["churn"])
    archive = models.good.read_bytes()
    config(sm, "c-other", ("v1", model_with(sm, "m-other", archive, image=f"{REGISTRY}/other:1", role=role)))
    config(sm, "c-churn", ("v1", model_with(sm, "m-churn", archive, image=f"{REGISTRY}/churn:1", role=role)))
    sm.create_endpoint(EndpointName="ep-other", EndpointConfigName="c-other")
    sm.create_endpoint(EndpointName="ep-churn", EndpointConfigName="c-churn")

    refused, served = settled(sm, "ep-other"), settled(sm, "ep-churn")

    assert refused["EndpointStatus"] == "Failed"
    assert refused["FailureReason"].startswith(image_reason("v1"))
    assert f"{role} is not authorized to perform: ecr:BatchGetImage" in refused["FailureReason"]
    assert f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/other" in refused["FailureReason"]
    assert served["EndpointStatus"] == "InService"


def test_a_role_that_may_not_log_in_to_ecr_pulls_nothing(sm: Any, models: Models) -> None:
    role = puller_role("no-login", ["churn"], login=False)
    archive = models.good.read_bytes()
    config(sm, "c-1", ("AllTraffic", model_with(sm, "m-1", archive, image=f"{REGISTRY}/churn:1", role=role)))
    sm.create_endpoint(EndpointName="ep-no-login", EndpointConfigName="c-1")

    found = settled(sm, "ep-no-login")

    assert found["EndpointStatus"] == "Failed"
    assert found["FailureReason"].startswith(image_reason("AllTraffic"))
    assert "ecr:GetAuthorizationToken" in found["FailureReason"]


# ---------------------------------------------------------------------------------- names without case
def test_a_model_package_group_name_is_unique_whatever_its_case(sm: Any) -> None:
    arn = sm.create_model_package_group(ModelPackageGroupName="churn")["ModelPackageGroupArn"]
    for name in ("Churn", "churn"):
        with pytest.raises(ClientError) as refused:
            sm.create_model_package_group(ModelPackageGroupName=name)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert refused.value.response["Error"]["Message"] == f"Model Package Group already exists: {arn}"
    groups = sm.list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert [g["ModelPackageGroupName"] for g in groups] == ["churn"]


def test_an_endpoint_name_is_unique_whatever_its_case(sm: Any, models: Models) -> None:
    config(sm, "c-1", ("v1", model_with(sm, "m-1", models.good.read_bytes())))
    sm.create_endpoint(EndpointName="churn-ep", EndpointConfigName="c-1")

    with pytest.raises(ClientError, match=r'Cannot create already existing endpoint ".*endpoint/churn-ep"'):
        sm.create_endpoint(EndpointName="Churn-EP", EndpointConfigName="c-1")
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["churn-ep"]
