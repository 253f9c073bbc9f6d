"""API shapes and refusals as AWS has them (`api_rules`): what moto answered more kindly, or differently,
than SageMaker, EventBridge and S3 do. Each test fails on moto alone."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sagepilot_sandbox import bus, faithful

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/churn:1"
SESSION = boto3.session.Session()
SPEC = {
    "Containers": [{"Image": IMAGE}],
    "SupportedContentTypes": ["text/csv"],
    "SupportedResponseMIMETypes": ["text/csv"],
}
VARIANTS = [{"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]


def client(service: str) -> Any:
    return SESSION.client(service, region_name=REGION)


@pytest.fixture
def sm(aws: None) -> Any:
    yield client("sagemaker")
    faithful.clear_listeners()


def refusal(call: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]


# ------------------------------------------------------------------------------------- SageMaker shapes
def test_describe_endpoint_config_and_model_leave_out_what_was_not_configured(sm: Any) -> None:
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://b/m"})
    sm.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=VARIANTS,
    )
    config = sm.describe_endpoint_config(EndpointConfigName="c")
    model = sm.describe_model(ModelName="m")
    assert "DataCaptureConfig" not in config  # the SDK's update_endpoint reads ["EnableCapture"] when present
    assert "VpcConfig" not in model
    assert "Containers" not in model and model["PrimaryContainer"]["ModelDataUrl"] == "s3://b/m"


def test_configured_data_capture_is_still_described(sm: Any) -> None:
    sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 10,
        "DestinationS3Uri": "s3://b/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
    sm.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=VARIANTS,
        DataCaptureConfig=capture,
    )
    assert sm.describe_endpoint_config(EndpointConfigName="c")["DataCaptureConfig"]["EnableCapture"] is True


def test_delete_model_package_deletes_and_never_reuses_its_version(sm: Any) -> None:
    sm.create_model_package_group(ModelPackageGroupName="g")
    first = sm.create_model_package(ModelPackageGroupName="g", InferenceSpecification=SPEC)["ModelPackageArn"]
    second = sm.create_model_package(ModelPackageGroupName="g", InferenceSpecification=SPEC)["ModelPackageArn"]
    sm.delete_model_package(ModelPackageName=first)
    error = refusal(sm.describe_model_package, ModelPackageName=first)
    assert error["Code"] == "ValidationException"
    summaries = sm.list_model_packages(ModelPackageGroupName="g")["ModelPackageSummaryList"]
    listed = [p["ModelPackageArn"] for p in summaries]
    assert listed == [second]
    third = sm.create_model_package(ModelPackageGroupName="g", InferenceSpecification=SPEC)["ModelPackageArn"]
    assert third.endswith("/g/3")
    assert sm.describe_model_package(ModelPackageName=second)["ModelPackageVersion"] == 2


def test_delete_model_package_group_refuses_a_group_that_holds_packages_then_deletes_it_empty(sm: Any) -> None:
    arn = sm.create_model_package_group(ModelPackageGroupName="g")["ModelPackageGroupArn"]
    package = sm.create_model_package(ModelPackageGroupName="g", InferenceSpecification=SPEC)["ModelPackageArn"]
    error = refusal(sm.delete_model_package_group, ModelPackageGroupName="g")
    assert error["Code"] == "ConflictException"
    assert arn in error["Message"] and "Delete its model packages first" in error["Message"]
    assert sm.describe_model_package_group(ModelPackageGroupName="g")["ModelPackageGroupArn"] == arn  # kept
    assert sm.describe_model_package(ModelPackageName=package)["ModelPackageVersion"] == 1

    sm.delete_model_package(ModelPackageName=package)
    sm.delete_model_package_group(ModelPackageGroupName=arn)  # by ARN, as the API's pattern allows
    gone = refusal(sm.describe_model_package_group, ModelPackageGroupName="g")
    assert gone["Code"] == "ValidationException"
    assert sm.list_model_package_groups()["ModelPackageGroupSummaryList"] == []


def test_deleting_a_missing_group_is_a_validation_error_and_a_recreated_group_starts_at_version_one(sm: Any) -> None:
    error = refusal(sm.delete_model_package_group, ModelPackageGroupName="nope")
    assert error["Code"] == "ValidationException"
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/nope"
    assert error["Message"] == f"ModelPackageGroup {arn} does not exist."
    sm.create_model_package_group(ModelPackageGroupName="g")
    first = sm.create_model_package(ModelPackageGroupName="g", InferenceSpecification=SPEC)["ModelPackageArn"]
    sm.delete_model_package(ModelPackageName=first)
    sm.delete_model_package_group(ModelPackageGroupName="g")
    sm.create_model_package_group(ModelPackageGroupName="g")
    again = sm.create_model_package(ModelPackageGroupName="g", InferenceSpecification=SPEC)["ModelPackageArn"]
    assert again.endswith("/g/1")


def test_list_contexts_and_monitoring_schedules_answer(sm: Any) -> None:
    assert sm.list_contexts()["ContextSummaries"] == []
    assert sm.list_monitoring_schedules(EndpointName="e")["MonitoringScheduleSummaries"] == []


def test_a_missing_group_reads_as_sagemakers_message(sm: Any) -> None:
    error = refusal(sm.create_model_package, ModelPackageGroupName="nope", InferenceSpecification=SPEC)
    assert error == {"Code": "ValidationException", "Message": "Model Package Group does not exist."} | {
        k: v for k, v in error.items() if k not in ("Code", "Message")
    }


# ---------------------------------------------------------------------------------- SageMaker refusals
def training_job(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TrainingJobName": "churn-train-1",
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/t/"}}}
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "HyperParameters": {"max_depth": "3"},
    }
    request.update(overrides)
    return request


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"TrainingJobName": "churn_train"}, "trainingJobName"),
        ({"RoleArn": "arn:aws:iam::1:role/r"}, "roleArn"),
        ({"OutputDataConfig": {"S3OutputPath": "b/out"}}, "outputDataConfig.s3OutputPath"),
        ({"HyperParameters": {f"p{i}": "1" for i in range(101)}}, "Member must have length less than or equal to 100"),
        ({"HyperParameters": {"k" * 257: "1"}}, "Map keys must satisfy constraint"),
        ({"HyperParameters": {"k": "v" * 2501}}, "Map value must satisfy constraint"),
        (
            {
                "InputDataConfig": [
                    {
                        "ChannelName": "train",
                        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "/local/t"}},
                    }
                ]
            },
            "inputDataConfig.1.member.dataSource.s3DataSource.s3Uri",
        ),
    ],
)
def test_create_training_job_validates_what_sagemaker_validates(sm: Any, overrides: dict[str, Any], where: str) -> None:
    error = refusal(sm.create_training_job, **training_job(**overrides))
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith("1 validation error detected: ")
    assert where in error["Message"]
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []  # nothing was created


def test_a_valid_training_job_at_the_limits_is_accepted(sm: Any) -> None:
    hyperparameters = {f"{i:03d}" + "k" * 253: "v" * 2500 for i in range(100)}
    sm.create_training_job(**training_job(HyperParameters=hyperparameters))
    assert sm.describe_training_job(TrainingJobName="churn-train-1")["TrainingJobName"] == "churn-train-1"


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"ExecutionRoleArn": "arn:aws:iam::123456789012:user/someone"}, "executionRoleArn"),
        ({"PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": "churn.tar.gz"}}, "primaryContainer.modelDataUrl"),
        ({"ModelName": "churn model"}, "modelName"),
    ],
)
def test_create_model_refuses_invalid_urls_roles_and_names(sm: Any, overrides: dict[str, Any], where: str) -> None:
    request = {"ModelName": "m", "ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": IMAGE}} | overrides
    error = refusal(sm.create_model, **request)
    assert error["Code"] == "ValidationException" and where in error["Message"]
    assert sm.list_models()["Models"] == []


# ---------------------------------------------------------------------------------------- EventBridge
def test_put_events_refuses_aws_sources_entry_by_entry(aws: None) -> None:
    events = client("events")
    answer = events.put_events(
        Entries=[
            {"Source": "aws.sagemaker", "DetailType": "SageMaker Transform Job State Change", "Detail": "{}"},
            {"Source": "sagepilot.operator", "DetailType": "x", "Detail": "{}"},
        ]
    )
    assert answer["FailedEntryCount"] == 1
    assert answer["Entries"][0] == {
        "ErrorCode": "NotAuthorizedForSourceException",
        "ErrorMessage": "Not authorized for the source.",
    }
    assert "EventId" in answer["Entries"][1]


def test_put_events_refuses_requests_over_256_kb(aws: None) -> None:
    events = client("events")
    padding = 256 * 1024 - len("my.app") - len("x") - len('{"a":""}')
    fits = {"Source": "my.app", "DetailType": "x", "Detail": json.dumps({"a": "p" * padding}, separators=(",", ":"))}
    assert events.put_events(Entries=[fits])["FailedEntryCount"] == 0
    too_big = dict(fits, Detail=json.dumps({"a": "p" * (padding + 1)}, separators=(",", ":")))
    error = refusal(events.put_events, Entries=[too_big])
    assert error["Code"] == "ValidationException"
    assert error["Message"] == "Total size of the entries in the request is over the limit."


def test_a_service_event_over_256_kb_is_not_delivered(aws: None) -> None:
    sqs, events = client("sqs"), client("events")
    url = sqs.create_queue(QueueName="tap")["QueueUrl"]
    events.put_rule(Name="tap", EventPattern=json.dumps({"source": ["aws.sagemaker"]}))
    events.put_targets(Rule="tap", Targets=[{"Id": "tap", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:tap"}])
    small = bus.make_event("X", "aws.sagemaker", ACCOUNT, REGION, [], {"a": "small"})
    large = bus.make_event("X", "aws.sagemaker", ACCOUNT, REGION, [], {"a": "p" * (256 * 1024)})
    bus.undelivered.clear()
    bus.deliver_event(large)
    bus.deliver_event(small)
    bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    assert [b["detail"] for b in bodies] == [{"a": "small"}]
    assert bus.undelivered == [large]
    bus.undelivered.clear()


# ------------------------------------------------------------------------------------------------- S3
def test_keys_over_1024_bytes_are_refused(aws: None) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="é" * 512, Body=b"x")  # 1,024 bytes: the limit itself
    for call, kwargs in [
        (s3.put_object, {"Key": "é" * 512 + "x", "Body": b"x"}),
        (s3.copy_object, {"Key": "k" * 1025, "CopySource": {"Bucket": "data", "Key": "é" * 512}}),
        (s3.create_multipart_upload, {"Key": "k" * 1025}),
    ]:
        error = refusal(call, Bucket="data", **kwargs)
        assert (error["Code"], error["Message"]) == ("KeyTooLongError", "Your key is too long")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="data")["Contents"]] == ["é" * 512]


def test_list_object_versions_honours_encoding_type_url(aws: None) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="data")
    s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
    for key in ("in/a b+c%.csv", "in/z.csv"):
        s3.put_object(Bucket="data", Key=key, Body=b"x")
    raw = s3.list_object_versions(Bucket="data", Prefix="in/", EncodingType="url", MaxKeys=1)
    assert raw["EncodingType"] == "url"
    assert [v["Key"] for v in raw["Versions"]] == ["in/a%20b%2Bc%25.csv"]
    assert raw["NextKeyMarker"] == "in/a%20b%2Bc%25.csv"
    # botocore asks for url encoding itself when the caller does not, and decodes `+` as a space.
    page = s3.list_object_versions(Bucket="data", Prefix="in/", MaxKeys=1)
    assert [v["Key"] for v in page["Versions"]] == ["in/a b+c%.csv"]
    rest = s3.list_object_versions(
        Bucket="data", Prefix="in/", KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"]
    )
    assert [v["Key"] for v in rest["Versions"]] == ["in/z.csv"]


def test_a_transform_output_key_over_1024_bytes_fails_the_job(aws: None, tmp_path: Any) -> None:
    """SageMaker's own writes meet the same limit: `<input>.out` one byte too long fails the job."""
    from sagepilot_model_server.examples import build_example_model, feature_rows, to_csv
    from sagepilot_sandbox.sagemaker import transform
    from sagepilot_sandbox.sagemaker.modelservers import ModelServers

    s3, sm = client("s3"), client("sagemaker")
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="m/model.tar.gz", Body=build_example_model(tmp_path, seed=1).read_bytes())
    key = "in/" + "k" * (1024 - len("in/") - len(".csv")) + ".csv"  # 1,024 bytes: its output needs 4 more
    s3.put_object(Bucket="data", Key=key, Body=to_csv(feature_rows(2, seed=1)).encode())
    sm.create_model(
        ModelName="m",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://data/m/model.tar.gz"},
    )
    sm.create_transform_job(
        TransformJobName="j",
        ModelName="m",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://data/{key}"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": "s3://data/in/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    servers = ModelServers(isolation="thread")
    try:
        result = transform.run_transform_job("j", servers)
    finally:
        servers.stop()
    assert result.status == "Failed"
    assert result.failure_reason.endswith(": KeyTooLongError: Your key is too long")


def test_create_model_package_refuses_a_model_data_url_that_is_not_a_url(sm: Any) -> None:
    sm.create_model_package_group(ModelPackageGroupName="g")
    spec = dict(SPEC, Containers=[{"Image": IMAGE, "ModelDataUrl": "models/churn/model.tar.gz"}])
    error = refusal(sm.create_model_package, ModelPackageGroupName="g", InferenceSpecification=spec)
    assert error["Code"] == "ValidationException"
    assert "inferenceSpecification.containers.1.member.modelDataUrl" in error["Message"]
    assert sm.list_model_packages(ModelPackageGroupName="g")["ModelPackageSummaryList"] == []
