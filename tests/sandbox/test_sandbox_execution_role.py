"""SageMaker reads and writes as the execution role (sandbox/roles.py, containers.py): a model artifact,
a job's inputs and a training job's channels the role may not read, and outputs it may not write, fail
the job as SageMaker does, decided by the role's own policies in the sandbox's IAM."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepilot_model_server.examples import feature_rows, labeled_rows, to_csv
from sagepilot_sandbox.sagemaker import roles, trainer, transform
from sagepilot_sandbox.sagemaker.modelservers import ModelServers

from . import test_sandbox_transform as base
from .test_sandbox_transform import ACCOUNT, BUCKET, World, client

IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/churn:1"

archives, servers, world = base.archives, base.servers, base.world  # the same fixtures

# As the stack's role allows (template.yaml's SageMakerExecutionRole): models/ and incoming/ readable,
# predictions/ and models/ writable, the bucket listable.
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [
                f"arn:aws:s3:::{BUCKET}/models/*",
                f"arn:aws:s3:::{BUCKET}/incoming/*",
                f"arn:aws:s3:::{BUCKET}/training/*",
                f"arn:aws:s3:::{BUCKET}/jobs/*",
            ],
        },
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"},
        {
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": [f"arn:aws:s3:::{BUCKET}/out/*", f"arn:aws:s3:::{BUCKET}/models/*"],
        },
        # As the stack's role: the account's own repositories (IMAGE is one), and the ECR login.
        {
            "Effect": "Allow",
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            "Resource": f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/churn",
        },
        {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
    ],
}
UNPULLABLE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/elsewhere:1"  # a repository the role may not pull from


@pytest.fixture
def role(aws: None) -> str:
    iam = client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    arn = iam.create_role(RoleName="sagemaker-run", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="sagemaker-run", PolicyName="s3", PolicyDocument=json.dumps(POLICY))
    return str(arn)


def model(world: World, name: str, key: str, role: str, image: str = IMAGE) -> str:
    url = world.put(key, world.archives.v1.read_bytes())
    world.sm.create_model(ModelName=name, ExecutionRoleArn=role, PrimaryContainer={"Image": image, "ModelDataUrl": url})
    return name


def job(world: World, name: str, model_name: str, input_key: str, output: str = "out/") -> str:
    world.sm.create_transform_job(
        TransformJobName=name,
        ModelName=model_name,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{input_key}"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/{output}", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    return name


def test_a_job_as_the_role_reads_and_writes_where_it_may(world: World, servers: ModelServers, role: str) -> None:
    world.put("incoming/a.csv", to_csv(feature_rows(3, seed=1)).encode())
    result = transform.run_transform_job(
        job(world, "j1", model(world, "m1", "models/v1/model.tar.gz", role), "incoming/a.csv"), servers
    )
    assert (result.status, result.failure_reason) == ("Completed", "")
    assert world.keys("out/") == ["out/a.csv.out"]


def test_an_artifact_the_role_may_not_read_fails_the_job_with_sagemakers_download_failure(
    world: World, servers: ModelServers, role: str
) -> None:
    world.put("incoming/a.csv", to_csv(feature_rows(3, seed=1)).encode())
    # where the SDK's Session.upload_data puts it by default: data/
    result = transform.run_transform_job(
        job(world, "j1", model(world, "m1", "data/model.tar.gz", role), "incoming/a.csv"), servers
    )
    assert result.status == "Failed"
    assert result.failure_reason.startswith(
        f'ClientError: Failed to download model data for container "container_1" from URL: "s3://{BUCKET}/data/model.tar.gz".'
    )
    assert (
        f"{role} is not authorized to perform: s3:GetObject on resource: arn:aws:s3:::{BUCKET}/data/model.tar.gz"
        in result.failure_reason
    )
    assert world.keys("out/") == []


def test_inputs_the_role_may_not_read_and_outputs_it_may_not_write_fail_the_job(
    world: World, servers: ModelServers, role: str
) -> None:
    world.put("elsewhere/a.csv", to_csv(feature_rows(3, seed=1)).encode())
    world.put("incoming/b.csv", to_csv(feature_rows(3, seed=2)).encode())
    model_name = model(world, "m1", "models/v1/model.tar.gz", role)
    manifest = world.manifest("jobs/m.json", "elsewhere/", ["a.csv"])
    world.sm.create_transform_job(
        TransformJobName="j1",
        ModelName=model_name,
        TransformInput={"DataSource": {"S3DataSource": manifest}, "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/out/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    read = transform.run_transform_job("j1", servers)
    written = transform.run_transform_job(
        job(world, "j2", model_name, "incoming/b.csv", output="predictions/"), servers
    )

    assert read.status == written.status == "Failed"
    assert read.failure_reason.startswith(
        f"ClientError: Failed to download data. s3://{BUCKET}/elsewhere/a.csv: Access Denied."
    )
    assert written.failure_reason.startswith(
        f"ClientError: Failed to upload s3://{BUCKET}/predictions/b.csv.out: Access Denied."
    )
    assert "s3:PutObject" in written.failure_reason
    assert world.keys("predictions/") == []


def test_an_https_model_data_url_is_not_downloaded(world: World, servers: ModelServers, role: str) -> None:
    world.put("incoming/a.csv", to_csv(feature_rows(3, seed=1)).encode())
    world.sm.create_model(
        ModelName="m1",
        ExecutionRoleArn=role,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "https://example.com/model.tar.gz"},
    )
    result = transform.run_transform_job(job(world, "j1", "m1", "incoming/a.csv"), servers)
    assert result.status == "Failed" and "Failed to download model data" in result.failure_reason


def training_job(world: World, name: str, role: str, train_key: str, output: str, image: str = IMAGE) -> str:
    world.sm.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        RoleArn=role,
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{train_key}"}},
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/{output}"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    return name


def test_training_reads_its_channels_and_writes_its_model_as_the_role(world: World, role: str) -> None:
    rows, labels = labeled_rows(200, seed=3)
    for prefix in ("training/a/", "data/a/"):
        world.put(prefix + "train.csv", to_csv(rows, labels).encode())
    allowed = trainer.run_training_job(training_job(world, "t1", role, "training/a/train.csv", "models/churn/"))
    unreadable = trainer.run_training_job(training_job(world, "t2", role, "data/a/train.csv", "models/churn/"))
    unwritable = trainer.run_training_job(training_job(world, "t3", role, "training/a/train.csv", "output/"))

    assert (allowed.status, allowed.failure_reason) == ("Completed", "")
    assert unreadable.status == unwritable.status == "Failed"
    assert unreadable.failure_reason.startswith(
        f"ClientError: Data download failed:Unable to download object s3://{BUCKET}/data/a/train.csv "
        "(AccessDenied: Access Denied)"
    )
    assert unwritable.failure_reason.startswith(
        f"ClientError: Failed to upload the model artifact to s3://{BUCKET}/output/t3/output/model.tar.gz: "
        "Access Denied."
    )


def test_an_image_the_role_may_not_pull_fails_the_transform_job(world: World, servers: ModelServers, role: str) -> None:
    world.put("incoming/a.csv", to_csv(feature_rows(3, seed=1)).encode())
    unpullable = model(world, "m1", "models/v1/model.tar.gz", role, image=UNPULLABLE)

    result = transform.run_transform_job(job(world, "j1", unpullable, "incoming/a.csv"), servers)

    assert result.status == "Failed"
    assert result.failure_reason.startswith(
        "ClientError: Please make sure all images included in the model exist, and that the execution role used "
        "to create the model has permissions to access them."
    )
    assert f"ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:{ACCOUNT}:repository/elsewhere" in (
        result.failure_reason
    )
    assert world.keys("out/") == []


def test_create_training_job_refuses_an_image_the_role_may_not_pull(world: World, role: str) -> None:
    with pytest.raises(ClientError) as refused:
        training_job(world, "t1", role, "training/a/train.csv", "models/churn/", image=UNPULLABLE)

    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith(f"Access denied for repository: elsewhere in registry ID: {ACCOUNT}.")
    assert "ecr:BatchGetImage" in error["Message"]
    assert world.sm.list_training_jobs()["TrainingJobSummaries"] == []


def test_a_role_unknown_to_the_sandbox_is_not_checked(world: World, servers: ModelServers) -> None:
    world.put("incoming/a.csv", to_csv(feature_rows(3, seed=1)).encode())
    unknown = f"arn:aws:iam::{ACCOUNT}:role/never-created"
    result = transform.run_transform_job(
        job(world, "j1", model(world, "m1", "data/model.tar.gz", unknown), "incoming/a.csv"), servers
    )
    assert result.status == "Completed"


# ------------------------------------------------------------------------------------ the stack's own role
def stack_role(stack: Any) -> tuple[str, str]:
    settings = stack.functions["BatchIntakeFunction"].environment
    return settings["SAGEMAKER_ROLE_ARN"], stack.outputs["DataBucketName"]


def test_the_stacks_role_reads_artifacts_under_models_only(stack: Any) -> None:
    role_arn, bucket = stack_role(stack)
    roles.check_read(role_arn, bucket, "models/churn/v1/model.tar.gz")
    for bucket_name, key in ((bucket, "data/model.tar.gz"), ("sagemaker-us-east-1-123456789012", "m/model.tar.gz")):
        with pytest.raises(roles.AccessDenied, match="s3:GetObject"):
            roles.check_read(role_arn, bucket_name, key)


def test_the_stacks_role_pulls_the_accounts_images_and_sagemakers_xgboost_only(stack: Any) -> None:
    role_arn, _ = stack_role(stack)
    roles.check_image_pull(role_arn, f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/churn:1")
    roles.check_image_pull(role_arn, "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1")
    with pytest.raises(roles.AccessDenied, match="ecr:BatchGetImage"):
        roles.check_image_pull(role_arn, "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1")
    roles.check_image_pull(role_arn, "docker.io/library/python:3")  # not ECR: not SageMaker's to pull as the role


@pytest.mark.parametrize(
    "stack_overrides",
    [{"ModelArtifactLocations": "arn:aws:s3:::sagemaker-us-east-1-123456789012/*,arn:aws:s3:::other/sdk/*"}],
)
def test_model_artifact_locations_let_the_stacks_role_read_more(stack: Any) -> None:
    role_arn, _ = stack_role(stack)
    roles.check_read(role_arn, "sagemaker-us-east-1-123456789012", "m/model.tar.gz")
    roles.check_read(role_arn, "other", "sdk/model.tar.gz")
    with pytest.raises(roles.AccessDenied):
        roles.check_read(role_arn, "other", "elsewhere/model.tar.gz")
    with pytest.raises(roles.AccessDenied, match="s3:PutObject"):
        roles.check_write(role_arn, "other", "sdk/model.tar.gz")  # read-only


def test_whatever_serves_a_model_resolves_its_artifact_as_the_role(world: World, role: str) -> None:
    """Endpoints too: the sandbox's model resolution (used by transform jobs, invocations and endpoint
    start-up alike) refuses an artifact the role may not read, with SageMaker's download failure."""
    from sagepilot_sandbox.sagemaker.modelservers import ModelUnavailable, resolve_model_data_url

    assert (
        resolve_model_data_url(model(world, "ok", "models/ok/model.tar.gz", role))
        == f"s3://{BUCKET}/models/ok/model.tar.gz"
    )
    with pytest.raises(ModelUnavailable, match="Failed to download model data") as refused:
        resolve_model_data_url(model(world, "denied", "data/denied/model.tar.gz", role))
    assert "is not authorized to perform: s3:GetObject" in refused.value.reason
