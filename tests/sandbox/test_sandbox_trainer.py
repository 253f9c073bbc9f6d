"""Training jobs that really train (sandbox/trainer.py and the simulator's training side), against
moto.mock_aws with the faithful patches: the train and validation channels read through their manifests
(CSV or JSON Lines, gzip too), real accuracy metrics, a model.tar.gz at the job's ModelArtifacts that a
model server loads and serves, and AlgorithmError / ClientError reasons for data a job cannot use."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sagepilot_model_server import load_model
from sagepilot_model_server.examples import labeled_rows, to_csv, to_jsonl
from sagepilot_sandbox import faithful
from sagepilot_sandbox.sagemaker import trainer
from sagepilot_sandbox.sagemaker.simulator import SageMakerSimulator

from .test_sandbox_transform import BUCKET, ROLE, client

CSV, JSONL = "text/csv", "application/jsonlines"


@pytest.fixture
def s3(aws: None) -> Any:
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return s3


def put(s3: Any, key: str, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def create_job(s3: Any, name: str, channels: dict[str, tuple[str, str, str]]) -> None:
    """A training job as the product creates it: one manifest per channel, (key, content type, compression)."""
    config = []
    for channel, (key, content_type, compression) in channels.items():
        manifest = f"jobs/training/{name}/{channel}.manifest"
        put(s3, manifest, json.dumps([{"prefix": f"s3://{BUCKET}/"}, key]).encode())
        config.append(
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "ManifestFile",
                        "S3Uri": f"s3://{BUCKET}/{manifest}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": content_type,
                "CompressionType": compression,
            }
        )
    client("sagemaker").create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn=ROLE,
        InputDataConfig=config,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/models/churn/"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )


def test_a_job_trains_on_its_channels_and_writes_a_model_the_server_serves(s3: Any, tmp_path: Any) -> None:
    rows, labels = labeled_rows(500, seed=3)
    put(s3, "training/churn/a/train.csv", to_csv(rows[:400], labels[:400]).encode())
    put(s3, "training/churn/a/validation.csv", to_csv(rows[400:], labels[400:]).encode())
    create_job(
        s3,
        "job-1",
        {
            "train": ("training/churn/a/train.csv", CSV, "None"),
            "validation": ("training/churn/a/validation.csv", CSV, "None"),
        },
    )

    result = trainer.run_training_job("job-1")

    assert (result.status, result.failure_reason) == ("Completed", "")
    assert result.rows == {"train": 400, "validation": 100}
    assert set(result.metrics) == {"train:accuracy", "validation:accuracy"}
    assert 0.65 < result.metrics["validation:accuracy"] <= 1.0 and 0.65 < result.metrics["train:accuracy"] <= 1.0
    artifact = client("sagemaker").describe_training_job(TrainingJobName="job-1")["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == result.artifact == f"s3://{BUCKET}/models/churn/job-1/output/model.tar.gz"
    data = s3.get_object(Bucket=BUCKET, Key="models/churn/job-1/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert {"code/inference.py", "config.json", "model.joblib"} <= set(tar.getnames())
    (tmp_path / "model.tar.gz").write_bytes(data)
    handler = load_model(tmp_path / "model.tar.gz")
    try:
        body, _ = handler.invoke(to_csv(rows[400:]).encode(), CSV, CSV)
    finally:
        handler.close()
    predictions = [int(p) for p in body.decode().split()]
    accuracy = sum(p == y for p, y in zip(predictions, labels[400:], strict=True)) / 100
    assert accuracy == pytest.approx(result.metrics["validation:accuracy"])  # the metric is the served model's


def test_gzipped_json_lines_and_a_holdout_without_validation(s3: Any) -> None:
    rows, labels = labeled_rows(300, seed=4)
    put(s3, "training/churn/b/train.jsonl.gz", gzip.compress(to_jsonl(rows, labels).encode()))
    create_job(s3, "job-2", {"train": ("training/churn/b/train.jsonl.gz", JSONL, "Gzip")})

    result = trainer.run_training_job("job-2")

    assert result.status == "Completed", result.failure_reason
    assert result.rows == {"train": 300}
    assert 0.6 < result.metrics["validation:accuracy"] <= 1.0  # measured on every 5th row, held out


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"1,34,12,56.1,3\n0,51,three,12.0,40\n", "line 2 column 3: 'three' is not a number"),
        (b"1,34,12,56.1,3\n1,51,3,12.0,40\n1,7,1,1,1\n", "a single class (1)"),
        (b"\n\n", "the train channel has no rows"),
        (b"1,34,12,56.1,3\n0,51,3,12.0\n", "row 2 has 3"),
        (b"0.5,34,12,56.1,3\n1,51,3,12.0,40\n", "the label 0.5 is not a class number"),
    ],
)
def test_bad_data_fails_the_job_with_an_algorithm_error(s3: Any, body: bytes, reason: str) -> None:
    put(s3, "training/churn/c/train.csv", body)
    create_job(s3, "job-bad", {"train": ("training/churn/c/train.csv", CSV, "None")})

    result = trainer.run_training_job("job-bad")

    assert result.status == "Failed"
    assert result.failure_reason.startswith("AlgorithmError: ")
    assert reason in result.failure_reason
    assert not result.artifact


def test_missing_data_fails_as_sagemakers_download_does(s3: Any) -> None:
    create_job(s3, "job-gone", {"train": ("training/churn/d/train.csv", CSV, "None")})
    result = trainer.run_training_job("job-gone")
    assert (result.status, result.failure_reason) == (
        "Failed",
        f"ClientError: Data download failed: s3://{BUCKET}/training/churn/d/train.csv does not exist.",
    )


@pytest.fixture
def simulator(s3: Any) -> Iterator[SageMakerSimulator]:
    simulator = SageMakerSimulator(run_seconds=0.1, model_isolation="thread")
    simulator.attach()
    yield simulator
    simulator.detach()
    faithful.clear_listeners()


def test_the_simulator_trains_created_jobs_and_honours_injected_failures(
    s3: Any, simulator: SageMakerSimulator
) -> None:
    rows, labels = labeled_rows(200, seed=5)
    put(s3, "training/churn/e/train.csv", to_csv(rows, labels).encode())
    simulator.fail_next_training("CapacityError: Unable to provision requested ML compute capacity.", "job-b")
    create_job(s3, "job-a", {"train": ("training/churn/e/train.csv", CSV, "None")})
    create_job(s3, "job-b", {"train": ("training/churn/e/train.csv", CSV, "None")})
    sm = client("sagemaker")
    deadline = time.monotonic() + 30
    while len(simulator.training_results) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)

    done = sm.describe_training_job(TrainingJobName="job-a")
    assert done["TrainingJobStatus"] == "Completed"
    assert {m["MetricName"] for m in done["FinalMetricDataList"]} == {"train:accuracy", "validation:accuracy"}
    failed = sm.describe_training_job(TrainingJobName="job-b")
    assert failed["TrainingJobStatus"] == "Failed"
    assert failed["FailureReason"] == "CapacityError: Unable to provision requested ML compute capacity."
