"""The in-process SageMaker fake: a transform job moved to Completed has written one output per input
(`<S3OutputPath><relative path>.out`), as SageMaker's would, so that what the completion copies exists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sagepilot_sandbox import faithful


def _job(clients: Callable[[str], Any], bucket: str, name: str) -> None:
    s3, sm = clients("s3"), clients("sagemaker")
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=b"1\n2\n3\n")
    s3.put_object(Bucket=bucket, Key="in/sub/b.csv", Body=b"4\n")
    manifest = [{"prefix": f"s3://{bucket}/in/"}, "a.csv", "sub/b.csv"]
    s3.put_object(Bucket=bucket, Key="jobs/manifest.json", Body=repr(manifest).replace("'", '"').encode())
    sm.create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                    PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"})  # fmt: skip
    sm.create_transform_job(
        TransformJobName=name,
        ModelName=name,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": f"s3://{bucket}/jobs/manifest.json"}
            },
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://{bucket}/jobs/out/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )


def test_a_completed_job_has_one_output_per_input_and_keeps_what_was_written(clients, data) -> None:
    s3 = clients("s3")
    _job(clients, data.name, "sagepilot-t1")
    s3.put_object(Bucket=data.name, Key="jobs/out/sub/b.csv.out", Body=b"written by the test\n")
    faithful.finish_transform_job("sagepilot-t1", "Completed")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=data.name, Prefix="jobs/out/")["Contents"])
    assert keys == ["jobs/out/a.csv.out", "jobs/out/sub/b.csv.out"]
    assert s3.get_object(Bucket=data.name, Key="jobs/out/a.csv.out")["Body"].read() == b"stand-in\n" * 3
    assert s3.get_object(Bucket=data.name, Key="jobs/out/sub/b.csv.out")["Body"].read() == b"written by the test\n"


def test_a_failed_job_writes_no_output(clients, data) -> None:
    _job(clients, data.name, "sagepilot-t2")
    faithful.finish_transform_job("sagepilot-t2", "Failed", "ClientError: bad input")
    assert clients("s3").list_objects_v2(Bucket=data.name, Prefix="jobs/out/").get("KeyCount") == 0
