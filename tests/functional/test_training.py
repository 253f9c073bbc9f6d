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
from sagepilot.errors import TransientError
from sagepilot.events import (
    QueuedMessage,
    TrainingSettled,
    parse_object_created,
    parse_settled,
    parse_training_trigger,
)
from sagepilot.metrics import MemoryRecorder
from sagepilot.services.training import Training
from sagepilot.settings import load_training_settings
from sagepilot_sandbox.sagemaker import training as sandbox_training
from sagepilot_sandbox.stack.provision import Stack

from .conftest import ACCOUNT, REGION, Data, Notifications, inject_error

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
        """Every upload event delivered, then every settle delay passed: a file that settled shows its settle's
        outcome in place of `settling`."""
        outcomes = [self.service.on_upload(parse_object_created(e)) for e in self.uploaded_events()]
        settled = self.settle()
        mine = [settled.pop(0) if o.action == "settling" else o for o in outcomes]
        return mine + settled  # the settles of earlier uploads last

    def settled(self, event: dict[str, Any]) -> Any:
        """The upload's settle delay has passed: its delayed message is handled (again, each time it is called)."""
        created = parse_object_created(event)
        return self.service.on_settled(TrainingSettled(created.bucket, created.key, created.version_id))

    @property
    def settle_queue_url(self) -> str:
        return str(self.stack.functions[TRAINING].environment["TRAINING_SETTLE_QUEUE_URL"])

    def settle_messages(self) -> list[dict[str, Any]]:
        """The settle queue's messages visible now, received and deleted (as the event source mapping does)."""
        sqs = self.clients("sqs")
        received = []
        while messages := sqs.receive_message(
            QueueUrl=self.settle_queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", []):
            for message in messages:
                received.append(message)
                sqs.delete_message(QueueUrl=self.settle_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return received

    def settle(self, *, delay_passes: bool = True) -> list[Any]:
        """The settle delay passes (moto's delayed messages become visible) and each message is handled."""
        if delay_passes:
            pass_settle_delay(self.settle_queue_url)
        return [
            self.service.on_settled(parse_settled(QueuedMessage(m["MessageId"], 1, json.loads(m["Body"]))))
            for m in self.settle_messages()
        ]

    def jobs(self) -> list[str]:
        return sorted(j["TrainingJobName"] for j in self.sm.list_training_jobs()["TrainingJobSummaries"])

    def finish(
        self, name: str, status: str = "Completed", metrics: dict[str, float] | None = None, reason: str = ""
    ) -> Any:
        """SageMaker finishes the job (the sandbox's faithful training jobs) and the event is handled."""
        event = sandbox_training.finish_training_job(name, status, metrics=metrics, failure_reason=reason)
        return self.service.on_job_change(parse_training_trigger(event))  # type: ignore[arg-type]


def pass_settle_delay(queue_url: str) -> None:
    """The time of every delayed message's DelaySeconds passes (moto keeps the delay in each message)."""
    from moto.sqs.models import sqs_backends

    queue = sqs_backends[ACCOUNT][REGION].queues[queue_url.rsplit("/", 1)[1]]
    for message in queue._messages:
        message.delayed_until = 0.0


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
    assert [o.action for o in outcomes] == ["settling"] * 3
    assert sorted(o.action for o in trainer.settle()) == ["exists", "exists", "started"]
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


def test_a_group_deleted_while_its_job_trains_gets_a_report_naming_the_kept_model_not_an_endless_retry(
    trainer: Trainer, data: Data, group: str, notifications: Notifications
) -> None:
    """SageMaker deletes only an empty group: a new group's versions, if any, go first, then the group. The job that
    was training for it completes with nowhere to register: the training set gets a report (MODEL_GROUP_NOT_FOUND)
    naming where the trained model is kept, and a notice, once; the event's redelivery changes nothing."""
    version = data.drop("training/churn/a.csv", CSV)
    trainer.upload_all()
    [name] = trainer.jobs()
    trainer.sm.delete_model_package_group(ModelPackageGroupName=group)
    outcome = trainer.finish(name, metrics={"validation:accuracy": 0.91})
    assert outcome.action == "rejected" and "MODEL_GROUP_NOT_FOUND" in outcome.detail
    report = data.json("rejected/training/churn/a.csv.json")
    assert (report["code"], report["input"]["versionId"]) == ("MODEL_GROUP_NOT_FOUND", version)
    artifact = trainer.sm.describe_training_job(TrainingJobName=name)["ModelArtifacts"]["S3ModelArtifacts"]
    assert f"was deleted while training job {name} ran" in report["reason"] and artifact in report["reason"]
    assert "create-model-package-group --model-package-group-name churn" in report["whatToDo"]
    assert [n["subject"] for n in notifications.drain()] == ["TRAINING REJECTED: MODEL_GROUP_NOT_FOUND"]
    assert trainer.finish(name, metrics={"validation:accuracy": 0.91}).action == "ignored"  # redelivered
    assert notifications.drain() == []


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


def test_a_training_set_for_a_group_with_an_unknown_sagepilot_tag_is_rejected_naming_it(
    trainer: Trainer, data: Data, group: str
) -> None:
    arn = trainer.sm.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
    trainer.sm.add_tags(ResourceArn=arn, Tags=[{"Key": "sagepilot:instance-typ", "Value": "ml.m5.xlarge"}])
    version = data.drop("training/churn/a.csv", CSV)
    [outcome] = trainer.upload_all()
    assert outcome.action == "rejected" and "INVALID_GROUP_SETTINGS" in outcome.detail
    assert trainer.jobs() == []
    report = data.json("rejected/training/churn/a.csv.json")
    assert (report["code"], report["input"]["versionId"]) == ("INVALID_GROUP_SETTINGS", version)
    assert "sagepilot:instance-typ (did you mean sagepilot:instance-type?)" in report["reason"]
    assert data.exists("training/churn/a.csv")  # the data stays: fix the tag and upload it again

    trainer.sm.delete_tags(ResourceArn=arn, TagKeys=["sagepilot:instance-typ"])
    data.drop("training/churn/a.csv", CSV)
    assert [o.action for o in trainer.upload_all()] == ["started"]


@pytest.mark.parametrize("stack_overrides", [{"TrainingSpot": "true"}])
def test_spot_training_is_a_stack_option(trainer: Trainer, data: Data, group: str) -> None:
    data.drop("training/churn/a.csv", CSV)
    trainer.upload_all()
    [name] = trainer.jobs()
    job = trainer.sm.describe_training_job(TrainingJobName=name)
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"]["S3Uri"].startswith(f"s3://{data.name}/checkpoints/churn/")


# ---------------------------------------------------------------------------------------- the recipe is frozen
OWN_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-serving:2"
DEFAULT_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


def package_of(trainer: Trainer) -> dict[str, Any]:
    [summary] = trainer.sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    return dict(trainer.sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"]))


def test_a_recipe_edited_during_a_job_changes_neither_its_image_nor_its_verdict(
    trainer: Trainer, data: Data, group: str
) -> None:
    data.drop("training/churn/a.csv", CSV)
    [event] = trainer.uploaded_events()
    assert trainer.settled(event).action == "started"
    [name] = trainer.jobs()
    # While it trains, the group's recipe changes: a new serving image and a threshold it would pass.
    edited = {"inferenceImage": OWN_IMAGE, "autoApprove": [{"metric": "validation:accuracy", "min": 0.5}]}
    data.drop("config/churn/training.json", json.dumps(edited).encode())
    assert trainer.settled(event).action == "exists"  # a late duplicate
    assert trainer.finish(name, metrics={"validation:accuracy": 0.9}).action == "registered"
    package = package_of(trainer)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"  # no threshold when it started
    assert package["InferenceSpecification"]["Containers"][0]["Image"] == DEFAULT_IMAGE


def test_a_recipe_broken_during_a_job_does_not_strand_it(
    trainer: Trainer, data: Data, group: str, notifications: Notifications
) -> None:
    data.drop(
        "config/churn/training.json",
        json.dumps({"autoApprove": [{"metric": "validation:accuracy", "min": 0.8}]}).encode(),
    )
    data.drop("training/churn/a.csv", CSV)
    trainer.upload_all()
    [name] = trainer.jobs()
    data.drop("config/churn/training.json", b'{"autoApprove": [')  # someone saves half a file
    assert trainer.finish(name, metrics={"validation:accuracy": 0.9}).action == "registered"
    assert package_of(trainer)["ModelApprovalStatus"] == "Approved"  # by the thresholds it was started with
    assert [n["subject"] for n in notifications.drain()] == ["MODEL REGISTERED: churn (Approved)"]


# ---------------------------------------------------------------------------------------- refusals are reported
def _many(n: int) -> dict[str, str]:
    return {f"p{i}": "1" for i in range(n)}


@pytest.mark.parametrize(
    ("recipe", "says"),
    [
        ({"hyperparameters": _many(101)}, "at most 100 hyperparameters"),
        ({"hyperparameters": _many(100), "entryPoint": "train.py"}, "entryPoint counts as one"),
        ({"hyperparameters": {"note": "x" * 2501}}, "at most 2500"),
        ({"hyperparameters": {"k" * 257: "1"}}, "1-256 characters"),
        ({"metricDefinitions": [{"Name": f"m{i}", "Regex": "m=(.*)"} for i in range(41)]}, "at most 40"),
        ({"image": "my-image:latest"}, "ECR image URI"),
    ],
)
def test_what_sagemaker_would_refuse_is_a_rejection_not_an_error(
    trainer: Trainer, data: Data, group: str, notifications: Notifications, recipe: dict[str, Any], says: str
) -> None:
    data.drop("config/churn/training.json", json.dumps(recipe).encode())
    data.drop("training/churn/a.csv", CSV)
    [outcome] = trainer.upload_all()
    assert outcome.action == "rejected" and "INVALID_TRAINING_RECIPE" in outcome.detail
    report = data.json("rejected/training/churn/a.csv.json")
    assert report["code"] == "INVALID_TRAINING_RECIPE" and says in report["reason"]
    assert trainer.jobs() == []
    assert [n["subject"] for n in notifications.drain()] == ["TRAINING REJECTED: INVALID_TRAINING_RECIPE"]


def test_a_training_quota_refusal_is_reported_once(
    trainer: Trainer, data: Data, group: str, notifications: Notifications, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sandbox_training.training_quotas, "ml.m5.xlarge", 0)
    data.drop("training/churn/a.csv", CSV)
    [event] = trainer.uploaded_events()
    outcome = trainer.settled(event)
    assert outcome.action == "rejected" and "TRAINING_REFUSED" in outcome.detail
    report = data.json("rejected/training/churn/a.csv.json")
    assert report["code"] == "TRAINING_REFUSED"
    assert "ml.m5.xlarge for training job usage" in report["reason"] and "Service Quotas" in report["whatToDo"]
    assert [n["subject"] for n in notifications.drain()] == ["TRAINING REJECTED: TRAINING_REFUSED"]
    assert trainer.settled(event).action == "ignored"  # redelivered: said once
    assert notifications.drain() == []
    assert trainer.jobs() == []


def test_a_validation_error_only_sagemaker_knows_is_reported(
    trainer: Trainer, data: Data, group: str, notifications: Notifications
) -> None:
    message = "1 validation error detected: Value 'ml.m5.huge' at 'resourceConfig.instanceType' failed to satisfy"
    inject_error(trainer.sm, "CreateTrainingJob", "ValidationException", message)
    data.drop("training/churn/a.csv", CSV)
    [outcome] = trainer.upload_all()
    assert outcome.action == "rejected"
    report = data.json("rejected/training/churn/a.csv.json")
    assert report["code"] == "TRAINING_REFUSED" and "ml.m5.huge" in report["reason"]
    assert [n["subject"] for n in notifications.drain()] == ["TRAINING REJECTED: TRAINING_REFUSED"]


def test_throttling_is_still_retried_by_the_next_delivery(
    trainer: Trainer, data: Data, group: str, no_retry_delay: None
) -> None:
    fault = inject_error(trainer.sm, "CreateTrainingJob", "ThrottlingException", "Rate exceeded", times=None)
    data.drop("training/churn/a.csv", CSV)
    [event] = trainer.uploaded_events()
    with pytest.raises(TransientError):  # the settle queue delivers it again
        trainer.settled(event)
    fault.stop()
    assert not data.keys("rejected/")
    assert trainer.settled(event).action == "started"


def test_a_retry_that_sagemaker_refuses_is_reported(
    trainer: Trainer, data: Data, group: str, notifications: Notifications, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.drop("training/churn/a.csv", CSV)
    trainer.upload_all()
    [name] = trainer.jobs()
    monkeypatch.setitem(sandbox_training.training_quotas, "ml.m5.xlarge", 0)
    outcome = trainer.finish(name, "Failed", reason="CapacityError: no ml.m5.xlarge capacity")
    assert outcome.action == "rejected"
    assert data.json("rejected/training/churn/a.csv.json")["code"] == "TRAINING_REFUSED"
    assert [n["subject"] for n in notifications.drain()] == ["TRAINING REJECTED: TRAINING_REFUSED"]


# ---------------------------------------------------------------------------------------- the operator's ceilings
@pytest.mark.parametrize(
    ("recipe", "ceiling"),
    [
        ({"instanceType": "ml.p5.48xlarge"}, "TrainingInstanceTypesAllowed"),
        ({"instanceCount": 100}, "TrainingInstanceCountCeiling"),
        ({"maxRuntimeSeconds": 28 * 86_400, "spot": False}, "TrainingRuntimeCeilingSeconds"),
        ({"spot": True, "maxWaitSeconds": 28 * 86_400}, "TrainingRuntimeCeilingSeconds"),
        ({"volumeSizeGB": 16_384}, "TrainingVolumeCeilingGB"),
        ({"image": "999999999999.dkr.ecr.us-east-1.amazonaws.com/miner:1"}, "ImageRepositoriesAllowed"),
        ({"inferenceImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/serve:1"}, "ImageRepositoriesAllowed"),
        ({"networkIsolation": False}, "TrainingNetworkAccessAllowed"),
    ],
)
def test_a_recipe_beyond_the_operators_ceilings_is_refused_naming_the_ceiling(
    trainer: Trainer, data: Data, group: str, recipe: dict[str, Any], ceiling: str
) -> None:
    data.drop("config/churn/training.json", json.dumps(recipe).encode())
    data.drop("training/churn/a.csv", CSV)
    [outcome] = trainer.upload_all()
    assert outcome.action == "rejected"
    report = data.json("rejected/training/churn/a.csv.json")
    assert report["code"] == "INVALID_TRAINING_RECIPE" and ceiling in report["reason"]
    assert trainer.jobs() == []


@pytest.mark.parametrize(
    "stack_overrides",
    [
        {
            "TrainingInstanceTypesAllowed": "ml.m5.*,ml.g5.2xlarge",
            "TrainingInstanceCountCeiling": "8",
            "ImageRepositoriesAllowed": "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-*",
            "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-xgb:1",
            "TrainingInferenceImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-xgb:1",
            "TrainingNetworkAccessAllowed": "true",
        }
    ],
)
def test_the_operator_sets_the_ceilings(trainer: Trainer, data: Data, group: str) -> None:
    recipe = {
        "instanceType": "ml.g5.2xlarge",
        "instanceCount": 8,
        "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/team-torch:3",
        "networkIsolation": False,
    }
    data.drop("config/churn/training.json", json.dumps(recipe).encode())
    data.drop("training/churn/a.csv", CSV)
    assert [o.action for o in trainer.upload_all()] == ["started"]
    [name] = trainer.jobs()
    job = trainer.sm.describe_training_job(TrainingJobName=name)
    assert (job["ResourceConfig"]["InstanceType"], job["ResourceConfig"]["InstanceCount"]) == ("ml.g5.2xlarge", 8)
    assert not job.get("EnableNetworkIsolation")
    data.drop("config/churn/training.json", json.dumps({**recipe, "image": DEFAULT_IMAGE}).encode())
    data.drop("training/churn/a.csv", CSV + CSV)
    [outcome] = trainer.upload_all()
    assert outcome.action == "rejected" and "ImageRepositoriesAllowed" in outcome.detail  # not in their list


def test_training_runs_network_isolated_by_default(trainer: Trainer, data: Data, group: str) -> None:
    data.drop("training/churn/a.csv", CSV)
    trainer.upload_all()
    [name] = trainer.jobs()
    assert trainer.sm.describe_training_job(TrainingJobName=name)["EnableNetworkIsolation"] is True
    own = {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-train:1", "inferenceImage": OWN_IMAGE}
    data.drop("config/churn/training.json", json.dumps(own).encode())
    data.drop("training/churn/b/a.csv", CSV)
    assert [o.action for o in trainer.upload_all()] == ["started"]  # this account's registry is allowed


# ---------------------------------------------------------------------------------------- multi-file training sets
def test_a_multi_part_set_trains_once_when_its_marker_arrives(trainer: Trainer, data: Data, group: str) -> None:
    parts = [f"training/churn/2026-12/part-000{i}.csv" for i in range(5)]
    for key in parts:
        data.drop(key, CSV if key != parts[3] else b"")  # Spark writes empty parts for empty partitions
    outcomes = trainer.upload_all()
    assert [o.action for o in outcomes] == ["waiting"] * 5  # the empty part too: it is not a set of its own
    assert "_SUCCESS" in outcomes[0].detail
    assert trainer.jobs() == [] and not data.keys("rejected/")
    data.drop("training/churn/2026-12/_SUCCESS", b"")
    assert [o.action for o in trainer.upload_all()] == ["started"]
    [name] = trainer.jobs()
    job = trainer.sm.describe_training_job(TrainingJobName=name)
    manifest_key = job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].split("/", 3)[3]
    assert data.json(manifest_key)[1:] == parts
    assert trainer.finish(name, metrics={"validation:accuracy": 0.9}).action == "registered"
    lineage = package_of(trainer)["CustomerMetadataProperties"]
    assert lineage["sagepilot:training-data"] == f"s3://{data.name}/training/churn/2026-12/"
    assert lineage["sagepilot:training-files"] == "5"


def test_files_of_a_folder_with_several_wait_for_the_marker(trainer: Trainer, data: Data, group: str) -> None:
    data.drop("training/churn/2026-12/validation.csv", CSV)
    data.drop("training/churn/2026-12/east.csv", CSV)
    data.drop("training/churn/2026-12/west.csv", CSV)
    uploads = [trainer.service.on_upload(parse_object_created(e)) for e in trainer.uploaded_events()]
    assert [o.action for o in uploads] == ["ignored", "settling", "settling"]
    data.drop("training/churn/2026-12/_COMPLETE", b"")  # before their settle delay ends
    assert [o.action for o in trainer.upload_all()] == ["started", "waiting", "waiting"]
    [name] = trainer.jobs()
    job = trainer.sm.describe_training_job(TrainingJobName=name)
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"].split("/", 3)[3] for c in job["InputDataConfig"]
    }
    assert data.json(channels["train"])[1:] == ["training/churn/2026-12/east.csv", "training/churn/2026-12/west.csv"]
    assert data.json(channels["validation"])[1:] == ["training/churn/2026-12/validation.csv"]


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ([], "EMPTY_DATASET"),
        (["part-0.csv", "part-1.jsonl"], "MIXED_DATASET_FORMATS"),
    ],
)
def test_a_marker_without_a_usable_set_is_rejected(
    trainer: Trainer, data: Data, group: str, files: list[str], code: str
) -> None:
    for name in files:
        data.drop(f"training/churn/s/{name}", CSV)
    data.drop("training/churn/s/_SUCCESS", b"")
    outcomes = trainer.upload_all()
    assert outcomes[-1].action == "rejected" and code in outcomes[-1].detail
    assert data.json("rejected/training/churn/s/_SUCCESS.json")["code"] == code
    assert trainer.jobs() == []


# ---------------------------------------------------------------------------------------- a set without its marker
def upload_one_by_one(trainer: Trainer, data: Data, keys: list[str]) -> list[Any]:
    """Each file uploaded and its event handled before the next one lands (the first is alone then)."""
    outcomes = []
    for key in keys:
        data.drop(key, CSV)
        outcomes += [trainer.service.on_upload(parse_object_created(e)) for e in trainer.uploaded_events()]
    return outcomes


@pytest.mark.parametrize("folder", ["training/churn/2026-12/", "training/churn/"])
def test_a_set_uploaded_without_its_marker_never_trains_on_a_fragment(
    trainer: Trainer, data: Data, group: str, notifications: Notifications, folder: str
) -> None:
    keys = [f"{folder}{name}" for name in ("a.csv", "b.csv", "c.csv")]
    assert [o.action for o in upload_one_by_one(trainer, data, keys)] == ["settling"] * 3
    assert trainer.settle(delay_passes=False) == [] and trainer.jobs() == []  # the delay holds every message
    outcomes = trainer.settle()
    assert [o.action for o in outcomes] == ["rejected"] * 3
    assert trainer.jobs() == []  # not a.csv alone, nor any other fragment
    for key in keys:  # each file says why it did not train, and that nothing is lost
        report = data.json(f"rejected/{key}.json")
        assert report["code"] == "DATASET_NEEDS_MARKER" and report["input"]["key"] == key
        assert f"Upload {folder}_SUCCESS" in report["whatToDo"] and "Nothing was deleted" in report["whatToDo"]
        assert data.exists(key)
    [notice] = notifications.drain()  # one notice for the folder, not one per file
    assert (
        notice["subject"]
        == f"TRAINING WAITING: 3 files in {folder}: upload {folder}_SUCCESS to train on all of them"[:100]
    )
    assert notice["message"]["files"] == keys
    # The user does what it says: one job on all three files.
    data.drop(f"{folder}_SUCCESS", b"")
    assert [o.action for o in trainer.upload_all()] == ["started"]
    [name] = trainer.jobs()
    job = trainer.sm.describe_training_job(TrainingJobName=name)
    manifest_key = job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].split("/", 3)[3]
    assert data.json(manifest_key)[1:] == keys


def test_a_lone_file_trains_once_its_settle_delay_has_passed(
    trainer: Trainer, data: Data, group: str, notifications: Notifications
) -> None:
    version = data.drop("training/churn/2026-11/train.csv", CSV)
    [event] = trainer.uploaded_events()
    assert trainer.service.on_upload(parse_object_created(event)).action == "settling"
    assert trainer.jobs() == [] and trainer.settle(delay_passes=False) == []
    sqs = trainer.clients("sqs")
    delayed = sqs.get_queue_attributes(QueueUrl=trainer.settle_queue_url, AttributeNames=["All"])["Attributes"]
    assert delayed["ApproximateNumberOfMessagesDelayed"] == "1"
    [outcome] = trainer.settle()
    assert outcome.action == "started"
    [name] = trainer.jobs()
    tags = {
        t["Key"]: t["Value"]
        for t in trainer.sm.list_tags(
            ResourceArn=trainer.sm.describe_training_job(TrainingJobName=name)["TrainingJobArn"]
        )["Tags"]
    }
    assert tags["sagepilot:training-data-version"] == version
    assert notifications.drain() == []


@pytest.mark.parametrize("stack_overrides", [{"TrainingSettleSeconds": "45"}])
def test_the_operator_sets_the_settle_delay(trainer: Trainer, data: Data, group: str) -> None:
    from moto.sqs.models import sqs_backends

    data.drop("training/churn/a.csv", CSV)
    [event] = trainer.uploaded_events()
    trainer.service.on_upload(parse_object_created(event))
    queue = sqs_backends[ACCOUNT][REGION].queues[trainer.settle_queue_url.rsplit("/", 1)[1]]
    [message] = queue._messages
    assert round((message.delayed_until - message.sent_timestamp) / 1000) == 45


def test_duplicated_and_late_settles_keep_the_first_decision(
    trainer: Trainer, data: Data, group: str, notifications: Notifications
) -> None:
    # a.csv settled alone: its job started; a duplicate settle after b.csv arrived does not change that.
    data.drop("training/churn/x/a.csv", CSV)
    [a_event] = trainer.uploaded_events()
    assert trainer.settled(a_event).action == "started"
    data.drop("training/churn/x/b.csv", CSV)
    assert trainer.settled(a_event).action == "ignored"
    assert not data.exists("rejected/training/churn/x/a.csv.json") and notifications.drain() == []
    # c.csv settled beside others: no job; a duplicate after the others were deleted does not train it either.
    data.drop("training/churn/y/c.csv", CSV)
    data.drop("training/churn/y/d.csv", CSV)
    c_event, _ = trainer.uploaded_events()[-2:]
    assert trainer.settled(c_event).action == "rejected"
    data.s3.delete_object(Bucket=data.name, Key="training/churn/y/d.csv")
    assert trainer.settled(c_event).action == "ignored"
    assert len(trainer.jobs()) == 1
    assert [n["subject"].split(":")[0] for n in notifications.drain()] == ["TRAINING WAITING"]
    assert trainer.settled(c_event).action == "ignored" and notifications.drain() == []  # said once


def test_a_file_replaced_or_deleted_while_it_settles(trainer: Trainer, data: Data, group: str) -> None:
    data.drop("training/churn/a.csv", CSV)
    newer = data.drop("training/churn/a.csv", CSV + b"0,1,2,3\n")  # replaced before its delay ended
    data.drop("training/churn/gone.csv", CSV)
    data.s3.delete_object(Bucket=data.name, Key="training/churn/gone.csv")
    outcomes = trainer.upload_all()
    assert sorted(o.action for o in outcomes) == ["ignored", "ignored", "started"]
    assert any("replaced by version" in o.detail for o in outcomes)
    assert any("deleted while it settled" in o.detail for o in outcomes)
    [name] = trainer.jobs()
    record = trainer.clients("dynamodb").get_item(
        TableName=trainer.stack.outputs["StateTableName"], Key={"pk": {"S": f"job#{name}"}}
    )["Item"]
    assert record["dataVersion"]["S"] == newer


def test_a_settle_message_that_fails_goes_back_to_its_queue(
    trainer: Trainer, data: Data, group: str, no_retry_delay: None
) -> None:
    """What the handler returns to the SQS event source: only the failed message is delivered again; a
    malformed one is dropped."""
    from sagepilot.events import queued_messages

    from .conftest import sqs_record

    data.drop("training/churn/a.csv", CSV)
    [event] = trainer.uploaded_events()
    trainer.service.on_upload(parse_object_created(event))
    pass_settle_delay(trainer.settle_queue_url)
    [message] = trainer.settle_messages()
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{trainer.settle_queue_url.rsplit('/', 1)[1]}"
    good = sqs_record({**message, "Attributes": {**message["Attributes"]}}, arn)
    bad = {**good, "messageId": "not-json", "body": "{"}
    fault = inject_error(
        trainer.clients("dynamodb"), "PutItem", "ProvisionedThroughputExceededException", "Slow down", times=None
    )
    assert trainer.service.on_settle_batch(queued_messages({"Records": [good, bad]})) == [good["messageId"]]
    fault.stop()
    assert trainer.service.on_settle_batch(queued_messages({"Records": [good]})) == []
    assert len(trainer.jobs()) == 1
