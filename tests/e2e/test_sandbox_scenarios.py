"""Whole scenarios through the running sandbox, driven as a user would: the aws CLI and boto3."""

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

pytestmark = pytest.mark.e2e
AWS_CLI = str(Path(sys.executable).with_name("aws"))
# The demo recorded 59 distinct (function, operation) pairs; a few depend on timing (e.g. which reads a
# rollout needs), so the floor leaves room, and the paths that matter most are named.
DEMO_MIN_PAIRS = 50
DEMO_EXPECTED = [
    ("BatchIntakeFunction", "sqs.ReceiveMessage"),  # by Lambda's event source mapping, with the function's role
    ("BatchIntakeFunction", "sqs.DeleteMessageBatch"),
    ("BatchIntakeFunction", "s3.ListObjectVersions"),
    ("BatchIntakeFunction", "s3.HeadObject"),
    ("BatchIntakeFunction", "dynamodb.TransactWriteItems"),
    ("BatchIntakeFunction", "sagemaker.CreateModel"),
    ("BatchIntakeFunction", "sagemaker.CreateTransformJob"),
    ("BatchIntakeFunction", "sns.Publish"),
    ("BatchCompletionFunction", "s3.CopyObject"),
    ("BatchCompletionFunction", "sagemaker.DescribeTransformJob"),
    ("BatchCompletionFunction", "dynamodb.Query"),
    ("RolloutFunction", "sagemaker.CreateEndpoint"),
    ("RolloutFunction", "sagemaker.UpdateEndpoint"),
    ("RolloutFunction", "sagemaker.UpdateEndpointWeightsAndCapacities"),
    ("RolloutFunction", "sagemaker.UpdateModelPackage"),
    ("RolloutFunction", "sagemaker.DeleteModel"),
    ("RolloutFunction", "cloudwatch.PutMetricAlarm"),
    ("RolloutFunction", "cloudwatch.DeleteAlarms"),
    ("RolloutFunction", "application-autoscaling.RegisterScalableTarget"),
    ("RolloutFunction", "application-autoscaling.DeregisterScalableTarget"),
    ("TrainingFunction", "sagemaker.CreateTrainingJob"),
    ("TrainingFunction", "sagemaker.DescribeTrainingJob"),
    ("TrainingFunction", "sagemaker.CreateModelPackage"),
    ("TrainingFunction", "s3.PutObject"),
]


def aws(sandbox: Sandbox, *args: str) -> Any:
    """Run the real aws CLI against the sandbox; JSON answers are parsed, others returned as text."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    done = subprocess.run(
        [AWS_CLI, "--endpoint-url", sandbox.endpoint_url, "--output", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    if args[0] == "s3":
        return done.stdout
    return json.loads(done.stdout) if done.stdout.strip() else None


def upload_example_model(sandbox: Sandbox, key: str, **options: Any) -> str:
    """An example model archive (sagepilot_model_server.examples) in the data bucket; its s3:// URI."""
    import tempfile

    from sagepilot_model_server.examples import build_example_model

    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as folder:
        archive = build_example_model(folder, **options)
        sandbox.client("s3").put_object(Bucket=bucket, Key=key, Body=archive.read_bytes())
    return f"s3://{bucket}/{key}"


def approve_model(sandbox: Sandbox, group: str) -> None:
    """A group with an Approved version whose model really runs (the transform jobs predict with it)."""
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    upload_example_model(sandbox, f"models/{group}/model.tar.gz", seed=1)
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", group)
    spec = {
        "Containers": [
            {
                "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1",
                "ModelDataUrl": f"s3://{bucket}/models/{group}/model.tar.gz",
            }
        ],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    aws(
        sandbox,
        "sagemaker",
        "create-model-package",
        "--model-package-group-name",
        group,
        "--model-approval-status",
        "Approved",
        "--inference-specification",
        json.dumps(spec),
    )


def read_json(sandbox: Sandbox, key: str) -> Any:
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    return json.loads(sandbox.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def jobs_of(sandbox: Sandbox, group: str) -> list[dict[str, Any]]:
    listed = aws(sandbox, "sagemaker", "list-transform-jobs", "--max-results", "100")["TransformJobSummaries"]
    return [j for j in listed if j["TransformJobName"].startswith(f"sagepilot-{group}-")]


def test_aws_cli_upload_starts_a_transform_job_and_leaves_a_report(sandbox: Sandbox, tmp_path: Path) -> None:
    approve_model(sandbox, "cli")
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    data = tmp_path / "customers.csv"
    data.write_text("34,80.5,2,10\n3,120,7,2\n")  # four features per customer, no header
    uploaded = aws(sandbox, "s3", "cp", str(data), f"s3://{bucket}/incoming/cli/2026-11/customers.csv")
    assert "upload:" in uploaded

    jobs = sandbox.wait_for(lambda: jobs_of(sandbox, "cli"), timeout=30)
    assert len(jobs) == 1
    job = aws(sandbox, "sagemaker", "describe-transform-job", "--transform-job-name", jobs[0]["TransformJobName"])
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3DataType"] == "ManifestFile"
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://{bucket}/jobs/cli/{jobs[0]['TransformJobName']}/output/"

    report_key = "predictions/cli/2026-11/customers.csv.report.json"
    sandbox.wait_for(lambda: report_key in _keys(sandbox, "predictions/cli/"), timeout=30)
    report = read_json(sandbox, report_key)
    assert report["status"] == "Completed"
    assert report["transformJobName"] == jobs[0]["TransformJobName"]
    assert report["input"]["key"] == "incoming/cli/2026-11/customers.csv"
    assert report["modelPackageVersion"] == 1
    predictions = sandbox.client("s3").get_object(Bucket=bucket, Key="predictions/cli/2026-11/customers.csv.out")
    assert len(predictions["Body"].read().decode().splitlines()) == 2  # one prediction per customer


def test_a_transient_sagemaker_failure_is_retried_once_and_then_completes(sandbox: Sandbox) -> None:
    approve_model(sandbox, "flaky")
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    sandbox.simulator.fail_next(
        "InternalServerError: We encountered an internal error. Please try again.", name_contains="sagepilot-flaky-"
    )
    sandbox.client("s3").put_object(Bucket=bucket, Key="incoming/flaky/x.csv", Body=b"1,2,3,4\n")

    report_key = "predictions/flaky/x.csv.report.json"
    sandbox.wait_for(lambda: report_key in _keys(sandbox, "predictions/flaky/"), timeout=40)
    report = read_json(sandbox, report_key)
    assert report["status"] == "Completed"
    assert report["attempts"] == 2
    assert report["transformJobName"].endswith("-r1")
    names = sorted(j["TransformJobName"] for j in jobs_of(sandbox, "flaky"))
    assert len(names) == 2 and names[1] == names[0] + "-r1"


def test_a_file_for_a_group_without_an_approved_model_is_rejected_in_place(sandbox: Sandbox) -> None:
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "pending")
    key = "incoming/pending/2026-11/a b+c.csv"
    sandbox.client("s3").put_object(Bucket=bucket, Key=key, Body=b"1\n")

    rejected = "rejected/pending/2026-11/a b+c.csv.json"
    sandbox.wait_for(lambda: rejected in _keys(sandbox, "rejected/pending/"), timeout=30)
    report = read_json(sandbox, rejected)
    assert report["code"] == "NO_APPROVED_MODEL"
    assert report["input"]["key"] == key
    assert key in _keys(sandbox, "incoming/pending/")
    assert jobs_of(sandbox, "pending") == []


def test_bad_files_are_isolated_and_their_batch_mates_are_predicted(sandbox: Sandbox, tmp_path: Path) -> None:
    """Issue 16, points 1 and 2, as a user sees them: CSV files dropped together with a CSV holding a header
    row and one holding a line over MaxPayloadInMB, gzip files with one that is not gzip, and a file deleted
    right after its upload. The sandbox's SageMaker fails a job for each bad file as SageMaker does; the
    control plane splits the failed jobs until each bad file is alone: every good file is predicted, each bad
    one rejected with its own reason, and the deleted file's claimed version is scored all the same."""
    import gzip

    approve_model(sandbox, "mixed")
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    files = {
        "a.csv": b"34,80.5,2,10\n3,120,7,2\n",
        "b.csv": b"1,2,3,4\n",
        "c.csv": b"5,6,7,8\n9,1,2,3\n",
        "header.csv": b"age,income,visits,tenure\n34,80.5,2,10\n",
        "long.csv": b"1," * (7 * 1024 * 1024 // 2) + b"1\n",  # one 7 MB record: over MaxPayloadInMB (6)
        "gone.csv": b"4,3,2,1\n",
        "good.csv.gz": gzip.compress(b"1,2,3,4\n"),
        "corrupt.csv.gz": b"this is not gzip\n",
    }
    for name, body in files.items():
        path = tmp_path / name
        path.write_bytes(body)
        aws(sandbox, "s3", "cp", str(path), f"s3://{bucket}/incoming/mixed/day/{name}")
    aws(sandbox, "s3", "rm", f"s3://{bucket}/incoming/mixed/day/gone.csv")  # right after its upload

    good = ["a.csv", "b.csv", "c.csv", "gone.csv", "good.csv.gz"]
    bad = {"header.csv": "the model returned 400", "long.csv": "larger than MaxPayloadInMB",
           "corrupt.csv.gz": "Failed to decompress"}
    wanted = [f"predictions/mixed/day/{n}.report.json" for n in good] + [f"rejected/mixed/day/{n}.json" for n in bad]
    sandbox.wait_for(lambda: all(k in _keys(sandbox, "") for k in wanted), timeout=90)
    for name in good:
        report = read_json(sandbox, f"predictions/mixed/day/{name}.report.json")
        assert report["status"] == "Completed", name
        out = sandbox.client("s3").get_object(Bucket=bucket, Key=f"predictions/mixed/day/{name}.out")["Body"].read()
        assert len(out.decode().splitlines()) == len(gzip.decompress(files[name]).splitlines()
                                                     if name.endswith(".gz") else files[name].splitlines())
    for name, fragment in bad.items():
        report = read_json(sandbox, f"rejected/mixed/day/{name}.json")
        assert report["code"] == "JOB_FAILED" and fragment in report["reason"], report
        assert report["input"]["key"] == f"incoming/mixed/day/{name}"
        assert not any(n in report["reason"] for n in files if n != name)  # no other file is blamed
    assert sorted(_keys(sandbox, "rejected/mixed/")) == sorted(f"rejected/mixed/day/{n}.json" for n in bad)
    # Bounded: 6 CSV files (2 bad) and 2 gzip (1 bad) need at most 2*2*3 + 2*1*1 extra jobs.
    assert len(jobs_of(sandbox, "mixed")) <= 2 + 12 + 2


def test_the_demo_scenario_passes_its_own_checks_and_its_aws_calls_are_allowed() -> None:
    """The demo is the richest scenario (training, rollouts, rollbacks, alarms, autoscaling, intake bursts):
    every call its functions made is also checked against their IAM policies."""
    from sagepilot_sandbox.demo.scenario import run_demo

    used: list[Sandbox] = []
    assert run_demo(record_calls=True, used=used) == 0
    assert_calls_allowed(used[0], min_pairs=DEMO_MIN_PAIRS, expected=DEMO_EXPECTED)


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    """After the scenarios above (the demo stops this module's sandbox; its recorded calls remain)."""
    assert_calls_allowed(sandbox, min_pairs=25, expected=[("BatchCompletionFunction", "s3.CopyObject")])


def _keys(sandbox: Sandbox, prefix: str) -> list[str]:
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    listed = sandbox.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]
