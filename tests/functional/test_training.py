"""Training on upload under the embedded AWS: uploads routed by the template's rule to the training
service (wired as its handler wires it), training jobs, registration with metrics and lineage.

The sandbox's faithful training jobs (moto would complete them at once and accept duplicate names) stay
InProgress until the test finishes them with the metrics it chooses, and emit SageMaker's event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from sagepilot import wiring
from sagepilot.events import parse_object_created, parse_training_trigger
from sagepilot.metrics import MemoryRecorder
from sagepilot.services.training import Training
from sagepilot.settings import load_training_settings
from sagepilot_sandbox import training as sandbox_training
from sagepilot_sandbox.provision import Stack

from .conftest import Data, Notifications

TRAINING = "TrainingFunction"
GROUP = "churn"
CSV = b"1,34,12,56.1\n0,51,3,12.0\n1,27,40,88.5\n"


@dataclass
class Trainer:
    service: Training
    stack: Stack
    clients: Callable[[str], Any]

    @property
    def sm(self) -> Any:
        return self.clients("sagemaker")

    def uploaded_events(self) -> list[dict[str, Any]]:
        """What the TrainingFunction's upload rule delivered (its delivery queue)."""
        sqs = self.clients("sqs")
        [delivery] = [d for d in self.stack.functions[TRAINING].rule_deliveries if d.rule_name.endswith("Uploaded")]
        events = []
        while messages := sqs.receive_message(QueueUrl=delivery.delivery_queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                events.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=delivery.delivery_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return events

    def upload_all(self) -> list[Any]:
        return [self.service.on_upload(parse_object_created(e)) for e in self.uploaded_events()]

    def jobs(self) -> list[str]:
        return sorted(j["TrainingJobName"] for j in self.sm.list_training_jobs()["TrainingJobSummaries"])

    def finish(
        self, name: str, status: str = "Completed", metrics: dict[str, float] | None = None, reason: str = ""
    ) -> Any:
        """SageMaker finishes the job (the sandbox's faithful training jobs) and the event is handled."""
        event = sandbox_training.finish_training_job(name, status, metrics=metrics, failure_reason=reason)
        return self.service.on_job_change(parse_training_trigger(event))  # type: ignore[arg-type]


@pytest.fixture
def trainer(stack: Stack, clients: Callable[[str], Any]) -> Trainer:
    settings = load_training_settings(stack.functions[TRAINING].environment)
    return Trainer(wiring.training(settings, clients, MemoryRecorder()), stack, clients)


@pytest.fixture
def group(trainer: Trainer) -> str:
    trainer.sm.create_model_package_group(ModelPackageGroupName=GROUP)
    return GROUP


def test_an_upload_starts_one_training_job_reading_exactly_that_file(trainer: Trainer, data: Data, group: str) -> None:
    data.drop("training/churn/2026-11/validation.csv", CSV)
    data.drop("training/churn/2026-11/train.csv", CSV)
    outcomes = trainer.upload_all()
    assert [o.action for o in outcomes] == ["ignored", "started"]
    [name] = trainer.jobs()
    job = trainer.sm.describe_training_job(TrainingJobName=name)
    channels = {c["ChannelName"]: c for c in job["InputDataConfig"]}
    assert set(channels) == {"train", "validation"}
    manifest = data.json(channels["train"]["DataSource"]["S3DataSource"]["S3Uri"].split("/", 3)[3])
    assert manifest[1:] == ["training/churn/2026-11/train.csv"]
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{data.name}/models/churn/"
    assert job["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"


def test_duplicate_upload_events_start_one_job_per_data_version(trainer: Trainer, data: Data, group: str) -> None:
    data.drop("training/churn/a.csv", CSV)
    events = trainer.uploaded_events()
    outcomes = [trainer.service.on_upload(parse_object_created(e)) for e in events * 3]
    assert [o.action for o in outcomes].count("started") == 1
    data.drop("training/churn/a.csv", CSV + b"0,1,2,3\n")  # a new version is new data
    trainer.upload_all()
    assert len(trainer.jobs()) == 2


def test_a_completed_job_is_registered_with_its_metrics_and_lineage(
    trainer: Trainer, data: Data, group: str, notifications: Notifications
) -> None:
    version = data.drop("training/churn/a.csv", CSV)
    trainer.upload_all()
    [name] = trainer.jobs()
    outcome = trainer.finish(name, metrics={"validation:accuracy": 0.91})
    assert outcome.action == "registered"
    [summary] = trainer.sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    package = trainer.sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    lineage = package["CustomerMetadataProperties"]
    assert lineage["sagepilot:training-data"] == f"s3://{data.name}/training/churn/a.csv"
    assert lineage["sagepilot:training-data-version"] == version
    assert lineage["metric:validation:accuracy"] == "0.91"
    metrics_uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    assert data.json(metrics_uri.split("/", 3)[3])["metrics"] == {"validation:accuracy": 0.91}
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"].endswith("/model.tar.gz")
    assert [n["subject"] for n in notifications.drain()] == ["MODEL REGISTERED: churn (PendingManualApproval)"]
    assert trainer.finish(name, metrics={"validation:accuracy": 0.91}).action == "ignored"  # a duplicate event
    recorded = trainer.service._metrics  # type: ignore[attr-defined]
    assert recorded.total("TrainingJobsStarted") == 1 and recorded.total("ModelsRegistered") == 1
    assert len(trainer.sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]) == 1


@pytest.mark.parametrize(("accuracy", "status"), [(0.93, "Approved"), (0.71, "PendingManualApproval")])
def test_the_recipe_approves_automatically_only_when_its_thresholds_pass(
    trainer: Trainer, data: Data, group: str, accuracy: float, status: str
) -> None:
    data.drop(
        "config/churn/training.json",
        json.dumps({"autoApprove": [{"metric": "validation:accuracy", "min": 0.9}]}).encode(),
    )
    data.drop("training/churn/a.csv", CSV)
    trainer.upload_all()
    [name] = trainer.jobs()
    trainer.finish(name, metrics={"validation:accuracy": accuracy})
    [summary] = trainer.sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    package = trainer.sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    assert package["ModelApprovalStatus"] == status
    assert ("below 0.9" in package["CustomerMetadataProperties"]["sagepilot:approval"]) is (status != "Approved")


def test_a_retryable_failure_is_retried_then_reported(
    trainer: Trainer, data: Data, group: str, notifications: Notifications
) -> None:
    data.drop("training/churn/2026-11/a.csv", CSV)
    trainer.upload_all()
    [name] = trainer.jobs()
    assert trainer.finish(name, "Failed", reason="CapacityError: no ml.m5.xlarge capacity").action == "retried"
    assert trainer.finish(f"{name}-r1", "Failed", reason="CapacityError: still none").action == "retried"
    assert trainer.finish(f"{name}-r2", "Failed", reason="CapacityError: none").action == "failed"
    report = data.json("rejected/training/churn/2026-11/a.csv.json")
    assert report["code"] == "TRAINING_FAILED" and "after 3 attempts" in report["reason"]
    assert trainer.service._metrics.total("TrainingJobsFailed") == 1  # type: ignore[attr-defined]
    assert data.exists("training/churn/2026-11/a.csv")  # the data stays where it was


def test_an_algorithm_error_is_reported_at_once(trainer: Trainer, data: Data, group: str) -> None:
    data.drop("training/churn/a.csv", CSV)
    trainer.upload_all()
    [name] = trainer.jobs()
    assert trainer.finish(name, "Failed", reason="AlgorithmError: label column has 3 classes").action == "failed"
    assert "AlgorithmError" in data.json("rejected/training/churn/a.csv.json")["reason"]
    assert trainer.finish(name, "Failed", reason="AlgorithmError: again").action == "ignored"


@pytest.mark.parametrize(
    ("setup", "key", "code"),
    [
        (None, "training/nosuchgroup/a.csv", "MODEL_GROUP_NOT_FOUND"),
        ({"instanceType": "huge"}, "training/churn/a.csv", "INVALID_TRAINING_RECIPE"),
        (None, "training/churn/a.parquet", "UNSUPPORTED_FILE_TYPE"),
    ],
)
def test_bad_training_input_is_rejected_with_a_report_and_no_job(
    trainer: Trainer, data: Data, group: str, setup: Any, key: str, code: str
) -> None:
    if setup is not None:
        data.drop("config/churn/training.json", json.dumps(setup).encode())
    data.drop(key, CSV)
    [outcome] = trainer.upload_all()
    assert outcome.action == "rejected" and code in outcome.detail
    assert trainer.jobs() == []
    reports = data.keys("rejected/training/")
    assert len(reports) == 1 and data.json(reports[0])["code"] == code


@pytest.mark.parametrize("stack_overrides", [{"TrainingSpot": "true"}])
def test_spot_training_is_a_stack_option(trainer: Trainer, data: Data, group: str) -> None:
    data.drop("training/churn/a.csv", CSV)
    trainer.upload_all()
    [name] = trainer.jobs()
    job = trainer.sm.describe_training_job(TrainingJobName=name)
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"]["S3Uri"].startswith(f"s3://{data.name}/checkpoints/churn/")
