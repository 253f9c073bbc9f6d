"""Training within limits, through the running sandbox with the real aws CLI (issue 16, points 6-10): a
multi-part set trains once when its marker arrives; a set of ordinary names uploaded without it is said,
not trained on in fragments; a recipe edited while its job trains changes nothing
of what the job registers; a recipe beyond the operator's ceilings and a job SageMaker refuses (quota)
both become reports under rejected/training/, never errors; and every call the functions made is allowed
by their IAM policy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagepilot_model_server.examples import labeled_rows, to_csv
from sagepilot_sandbox.sagemaker import training as sandbox_training
from sagepilot_sandbox.server import Sandbox

from .conftest import started_sandbox
from .iam_calls import assert_calls_allowed
from .test_rollout_failures import Inbox
from .test_sandbox_scenarios import aws
from .test_sandbox_training_loop import aws_raw

pytestmark = pytest.mark.e2e
DEFAULT_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Training jobs take 3 s here: long enough to edit a recipe while one runs; a lone training file settles
    for 5 s: long enough for `aws s3 cp --recursive` to upload a whole set."""
    with started_sandbox(tmp_path_factory, overrides={"TrainingSettleSeconds": "5"}, training_seconds=3.0) as running:
        yield running


def bucket_of(sandbox: Sandbox) -> str:
    return str(sandbox.stack.outputs["DataBucketName"])  # type: ignore[union-attr]


def put(sandbox: Sandbox, tmp_path: Path, key: str, body: str) -> None:
    local = tmp_path / key.replace("/", "_")
    local.write_text(body)
    assert "upload:" in aws(sandbox, "s3", "cp", str(local), f"s3://{bucket_of(sandbox)}/{key}")


def read(sandbox: Sandbox, key: str) -> dict[str, Any] | None:
    done = aws_raw(sandbox, "s3", "cp", f"s3://{bucket_of(sandbox)}/{key}", "-")
    return json.loads(done.stdout) if done.returncode == 0 else None


def packages(sandbox: Sandbox, group: str) -> list[dict[str, Any]]:
    listed = aws(sandbox, "sagemaker", "list-model-packages", "--model-package-group-name", group)
    return list(listed["ModelPackageSummaryList"])


def jobs_of(sandbox: Sandbox, group: str) -> list[dict[str, Any]]:
    listed = aws(sandbox, "sagemaker", "list-training-jobs", "--name-contains", f"sagepilot-{group}-")
    return list(listed["TrainingJobSummaries"])


def data(seed: int) -> str:
    rows, labels = labeled_rows(120, seed=seed)
    return to_csv(rows, labels)


def test_a_multi_part_set_trains_once_when_its_marker_arrives(sandbox: Sandbox, tmp_path: Path) -> None:
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "parts")
    for i in range(5):
        put(sandbox, tmp_path, f"training/parts/2026-12/part-0000{i}.csv", data(30 + i))
    put(sandbox, tmp_path, "training/parts/2026-12/_SUCCESS", "")
    [summary] = sandbox.wait_for(lambda: packages(sandbox, "parts"), timeout=60)
    assert len(jobs_of(sandbox, "parts")) == 1  # not one per part
    package = aws(sandbox, "sagemaker", "describe-model-package", "--model-package-name", summary["ModelPackageArn"])
    lineage = package["CustomerMetadataProperties"]
    assert lineage["sagepilot:training-data"] == f"s3://{bucket_of(sandbox)}/training/parts/2026-12/"
    assert lineage["sagepilot:training-files"] == "5"
    job = aws(sandbox, "sagemaker", "describe-training-job", "--training-job-name", lineage["sagepilot:training-job"])
    assert job["EnableNetworkIsolation"] is True
    assert sandbox.simulator.training_results[job["TrainingJobName"]].rows["train"] == 5 * 120
    assert read(sandbox, "rejected/training/parts/2026-12/part-00000.csv.json") is None


def test_a_set_uploaded_without_its_marker_is_said_then_trained_whole_on_its_marker(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """`aws s3 cp --recursive` of a.csv, b.csv, c.csv and no marker: no job on a.csv alone (it used to train on
    the first file by itself, silently); a report beside each file and one notice for the folder; the marker
    uploaded as the notice says trains one job on all three."""
    inbox = Inbox(sandbox)
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "loose")
    local = tmp_path / "loose"
    local.mkdir()
    for i, name in enumerate(("a.csv", "b.csv", "c.csv")):
        (local / name).write_text(data(70 + i))
    folder = "training/loose/2026-12/"
    assert "upload:" in aws(sandbox, "s3", "cp", "--recursive", str(local), f"s3://{bucket_of(sandbox)}/{folder}")
    reports = sandbox.wait_for(
        lambda: all(r := [read(sandbox, f"rejected/{folder}{n}.json") for n in ("a.csv", "b.csv", "c.csv")]) and r,
        timeout=60,
    )
    for report in reports:
        assert report["code"] == "DATASET_NEEDS_MARKER" and f"Upload {folder}_SUCCESS" in report["whatToDo"]
    assert jobs_of(sandbox, "loose") == []
    notice = f"TRAINING WAITING: 3 files in {folder}: upload {folder}_SUCCESS to train on all of them"[:100]
    assert sandbox.wait_for(lambda: inbox.subjects().count(notice) == 1, timeout=30)
    put(sandbox, tmp_path, f"{folder}_SUCCESS", "")
    [summary] = sandbox.wait_for(lambda: packages(sandbox, "loose"), timeout=60)
    package = aws(sandbox, "sagemaker", "describe-model-package", "--model-package-name", summary["ModelPackageArn"])
    assert package["CustomerMetadataProperties"]["sagepilot:training-files"] == "3"
    assert len(jobs_of(sandbox, "loose")) == 1
    assert inbox.subjects().count(notice) == 1  # said once, not once per file


def test_a_recipe_edited_while_its_job_trains_changes_nothing_it_registers(sandbox: Sandbox, tmp_path: Path) -> None:
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "frozen")
    put(sandbox, tmp_path, "training/frozen/2026-12/train.csv", data(41))
    sandbox.wait_for(lambda: [j for j in jobs_of(sandbox, "frozen") if j["TrainingJobStatus"] == "InProgress"])
    edited = {
        "inferenceImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/other-serving:9",
        "autoApprove": [{"metric": "validation:accuracy", "min": 0.0}],
    }
    put(sandbox, tmp_path, "config/frozen/training.json", json.dumps(edited))
    [summary] = sandbox.wait_for(lambda: packages(sandbox, "frozen"), timeout=60)
    package = aws(sandbox, "sagemaker", "describe-model-package", "--model-package-name", summary["ModelPackageArn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["InferenceSpecification"]["Containers"][0]["Image"] == DEFAULT_IMAGE


def test_a_recipe_broken_while_its_job_trains_does_not_strand_it(sandbox: Sandbox, tmp_path: Path) -> None:
    """Issue 16 point 6: registration used to re-read the recipe, so a recipe broken during the job left the
    record REGISTERING, the event in the failure queue, no report and no notice."""
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "broken")
    put(sandbox, tmp_path, "training/broken/2026-12/train.csv", data(45))
    sandbox.wait_for(lambda: [j for j in jobs_of(sandbox, "broken") if j["TrainingJobStatus"] == "InProgress"])
    put(sandbox, tmp_path, "config/broken/training.json", "{not json")
    [summary] = sandbox.wait_for(lambda: packages(sandbox, "broken"), timeout=60)
    assert summary["ModelApprovalStatus"] == "PendingManualApproval"
    assert read(sandbox, "rejected/training/broken/2026-12/train.csv.json") is None


def test_what_sagemaker_would_refuse_is_a_report_before_any_call(sandbox: Sandbox, tmp_path: Path) -> None:
    """Issue 16 point 7: a recipe CreateTrainingJob would refuse (101 hyperparameters) is a report, not an
    error raised out of the upload handler."""
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "wordy")
    recipe = {"hyperparameters": {f"h{i}": "1" for i in range(101)}}
    put(sandbox, tmp_path, "config/wordy/training.json", json.dumps(recipe))
    put(sandbox, tmp_path, "training/wordy/a.csv", data(55))
    report = sandbox.wait_for(lambda: read(sandbox, "rejected/training/wordy/a.csv.json"), timeout=30)
    assert report["code"] == "INVALID_TRAINING_RECIPE" and "at most 100 hyperparameters" in report["reason"]
    assert jobs_of(sandbox, "wordy") == []


def test_a_recipe_beyond_the_ceilings_is_a_report(sandbox: Sandbox, tmp_path: Path) -> None:
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "greedy")
    recipe = {"instanceType": "ml.p5.48xlarge", "instanceCount": 100, "maxRuntimeSeconds": 2419200}
    put(sandbox, tmp_path, "config/greedy/training.json", json.dumps(recipe))
    put(sandbox, tmp_path, "training/greedy/a.csv", data(51))
    report = sandbox.wait_for(lambda: read(sandbox, "rejected/training/greedy/a.csv.json"), timeout=30)
    assert report["code"] == "INVALID_TRAINING_RECIPE" and "TrainingInstanceTypesAllowed" in report["reason"]
    assert jobs_of(sandbox, "greedy") == []


def test_an_image_from_outside_the_allowed_repositories_is_a_report(sandbox: Sandbox, tmp_path: Path) -> None:
    """Issue 16 point 9: images only from where the operator allows (default: this account's registry in the
    stack's region, and the region's SageMaker XGBoost repository)."""
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "foreign")
    recipe = {"image": "999999999999.dkr.ecr.eu-west-1.amazonaws.com/miner:latest"}
    put(sandbox, tmp_path, "config/foreign/training.json", json.dumps(recipe))
    put(sandbox, tmp_path, "training/foreign/a.csv", data(57))
    report = sandbox.wait_for(lambda: read(sandbox, "rejected/training/foreign/a.csv.json"), timeout=30)
    assert report["code"] == "INVALID_TRAINING_RECIPE" and "ImageRepositoriesAllowed" in report["reason"]
    assert jobs_of(sandbox, "foreign") == []


def test_a_job_sagemaker_refuses_is_a_report(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sandbox_training.training_quotas, "ml.m5.xlarge", 0)
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", "quota")
    put(sandbox, tmp_path, "training/quota/a.csv", data(61))
    report = sandbox.wait_for(lambda: read(sandbox, "rejected/training/quota/a.csv.json"), timeout=30)
    assert report["code"] == "TRAINING_REFUSED" and "for training job usage" in report["reason"]
    assert jobs_of(sandbox, "quota") == []


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    assert_calls_allowed(
        sandbox,
        min_pairs=10,
        expected=[
            ("TrainingFunction", "s3.ListObjectsV2"),
            ("TrainingFunction", "sagemaker.CreateTrainingJob"),
            ("TrainingFunction", "sagemaker.CreateModelPackage"),
            ("TrainingFunction", "sqs.SendMessage"),
        ],
    )
