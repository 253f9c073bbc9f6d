"""Training on upload: a training set in, a registered model package version (with metrics) out.

Upload `training/<group>/.../<file>` -> one training job for that data version (its name is a digest
of the group, key and version, so duplicated or late events find it already exists). Its record in
the state table (created before the job) carries the attempt count; the job's request is kept in S3
so that a retry (`<name>-rN`, only for failures a retry can fix) is the same job again.
`SageMaker Training Job State Change` Completed -> the artifact is registered as a new version of
the group with its final metrics (model quality statistics in S3, values in CustomerMetadataProperties)
and the data's location and version as lineage; Approved when the group's recipe thresholds pass,
PendingManualApproval otherwise. Failed / Stopped -> a rejection report beside the data and a
notification, after the bounded retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import GroupNotFound, ModelRegistry
from sagepilot.adapters.s3 import DataBucket
from sagepilot.adapters.sagemaker import SageMaker
from sagepilot.adapters.state import StateTable
from sagepilot.domain import training as plan
from sagepilot.domain.failures import is_retryable_failure
from sagepilot.domain.layout import Rejection, input_format_of
from sagepilot.domain.names import attempt_name, split_attempt
from sagepilot.domain.reports import rejection_report
from sagepilot.errors import ObjectGone
from sagepilot.events import ObjectCreated, TrainingJobChange
from sagepilot.metrics import Recorder
from sagepilot.observability import logger
from sagepilot.settings import TrainingSettings

STARTED, REGISTERING, REGISTERED, FAILED = "STARTED", "REGISTERING", "REGISTERED", "FAILED"
KIND = "training"
LINEAGE_JOB = "sagepilot:training-job"


@dataclass
class TrainingOutcome:
    action: str  # started | exists | ignored | rejected | registered | retried | failed
    detail: str = ""
    job_name: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Training:
    def __init__(
        self,
        settings: TrainingSettings,
        bucket: DataBucket,
        s3_client: Any,
        sagemaker: SageMaker,
        registry: ModelRegistry,
        state: StateTable,
        notifier: Notifier,
        metrics: Recorder,
    ) -> None:
        self._settings = settings
        self._bucket = bucket
        self._s3 = s3_client
        self._sm = sagemaker
        self._registry = registry
        self._state = state
        self._notifier = notifier
        self._metrics = metrics

    # Upload -> job ----------------------------------------------------------------------------------
    def on_upload(self, event: ObjectCreated) -> TrainingOutcome:
        if event.bucket != self._bucket.name:
            return TrainingOutcome("ignored", f"bucket {event.bucket} is not the data bucket")
        try:
            head = self._bucket.head_dropped(event.key, event.version_id)
        except ObjectGone as exc:
            return TrainingOutcome("ignored", str(exc))
        parsed = plan.parse_training_key(head.key)
        if parsed is None:
            return TrainingOutcome("ignored", f"{head.key} is a validation set: it is used by its training set's job")
        if isinstance(parsed, Rejection):
            return self._reject(head.key, head.version_id, parsed, f"rejected/training/_outside/{head.key}.json")
        if head.size == 0:
            empty = Rejection("EMPTY_FILE", "The training set is empty (0 bytes).", "Upload the data again.")
            return self._reject(head.key, head.version_id, empty, parsed.rejected_key)
        try:
            self._registry.group_tags(parsed.group)
        except GroupNotFound:
            missing = Rejection(
                "MODEL_GROUP_NOT_FOUND",
                f"There is no model package group named {parsed.group!r} to register the trained model in.",
                f"Create it (aws sagemaker create-model-package-group --model-package-group-name {parsed.group}) "
                "and upload the training set again.",
            )
            return self._reject(head.key, head.version_id, missing, parsed.rejected_key)
        try:
            recipe = plan.parse_recipe(self._config(parsed.group), self._settings.defaults)
        except plan.InvalidRecipe as exc:
            bad = Rejection(
                "INVALID_TRAINING_RECIPE",
                f"config/{parsed.group}/training.json cannot be used: {exc}",
                "Fix the recipe (see the README's training section) and upload the training set again.",
            )
            return self._reject(head.key, head.version_id, bad, parsed.rejected_key)
        name = plan.training_job_name(self._settings.name_prefix, parsed.group, head.key, head.version_id)
        folder = f"jobs/training/{name}/"
        validation = self._validation(parsed)
        request = plan.training_job_request(
            name=name,
            recipe=recipe,
            role_arn=self._settings.sagemaker_role_arn,
            bucket=self._bucket.name,
            training=parsed,
            train_manifest_key=folder + "train.manifest",
            validation_manifest_key=folder + "validation.manifest" if validation else None,
            version_id=head.version_id,
            prefix=self._settings.name_prefix,
            validation_format=input_format_of(validation) if validation else None,
        )
        self._bucket.put_json(folder + "train.manifest", plan.manifest(self._bucket.name, (head.key,)))
        if validation:
            self._bucket.put_json(folder + "validation.manifest", plan.manifest(self._bucket.name, (validation,)))
        self._bucket.put_json(folder + "request.json", request)
        record = self._state.create_job(
            name,
            {
                "kind": KIND,
                "status": STARTED,
                "group": parsed.group,
                "dataKey": head.key,
                "dataVersion": head.version_id or "null",
                "validationKey": validation or "",
            },
        )
        created = self._sm.start_training_job(request)
        if created:
            self._metrics.emit("TrainingJobsStarted")
        logger.info("training job", extra={"job": name, "newJob": created, "record": record.get("status")})
        return TrainingOutcome("started" if created else "exists", f"data s3://{self._bucket.name}/{head.key}", name)

    def _config(self, group: str) -> bytes | None:
        try:
            return bytes(
                self._s3.get_object(Bucket=self._bucket.name, Key=f"config/{group}/training.json")["Body"].read()
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def _validation(self, training: plan.TrainingKey) -> str | None:
        for key in training.validation_keys():
            try:
                self._bucket.head_dropped(key, None)
            except ObjectGone:
                continue
            return key
        return None

    def _reject(self, key: str, version_id: str | None, rejection: Rejection, report_key: str) -> TrainingOutcome:
        report = rejection_report(
            bucket=self._bucket.name, key=key, version_id=version_id, rejection=rejection, at=_now()
        )
        self._bucket.put_json(report_key, report)
        self._notifier.publish(f"TRAINING REJECTED: {rejection.code}", report)
        return TrainingOutcome("rejected", f"{rejection.code}: {rejection.reason}")

    # Job finished -> registered version, retry or report --------------------------------------------
    def on_job_change(self, change: TrainingJobChange) -> TrainingOutcome:
        base, attempt = split_attempt(change.job_name)
        record = self._state.get_job(base)
        if record is None or record.get("kind") != KIND:
            return TrainingOutcome("ignored", "no record of this training job: not started by this stack", base)
        if change.status == "Completed":
            return self._register(base, change.job_name, attempt, record)
        if change.status not in ("Failed", "Stopped"):
            return TrainingOutcome("ignored", f"status {change.status} is not final", change.job_name)
        job = self._sm.describe_training_job(change.job_name)
        reason = str(job.get("FailureReason") or change.failure_reason)
        if change.status == "Failed" and is_retryable_failure(reason) and attempt < self._settings.max_retries:
            if self._state.transition(base, expected=[STARTED], to=STARTED, when_attempt=attempt, attempt=attempt + 1):
                request = self._bucket.get_json(f"jobs/training/{base}/request.json")
                request["TrainingJobName"] = attempt_name(base, attempt + 1)
                self._sm.start_training_job(request)
                return TrainingOutcome("retried", f"{reason}: attempt {attempt + 2}", request["TrainingJobName"])
            return TrainingOutcome("ignored", "this failure was already handled", change.job_name)
        if not self._state.transition(base, expected=[STARTED], to=FAILED, when_attempt=attempt, failureReason=reason):
            return TrainingOutcome("ignored", "this failure was already handled", change.job_name)
        rejection = plan.training_failure(change.job_name, change.status, reason, attempt + 1)
        training = plan.parse_training_key(str(record["dataKey"]))
        report_key = training.rejected_key if isinstance(training, plan.TrainingKey) else f"rejected/{base}.json"
        version = str(record.get("dataVersion")) if record.get("dataVersion") not in (None, "null") else None
        self._reject(str(record["dataKey"]), version, rejection, report_key)
        self._metrics.emit("TrainingJobsFailed")
        return TrainingOutcome("failed", rejection.reason, change.job_name)

    def _register(self, base: str, job_name: str, attempt: int, record: dict[str, Any]) -> TrainingOutcome:
        if record.get("status") == REGISTERED:
            return TrainingOutcome("ignored", f"already registered as {record.get('packageArn')}", job_name)
        moved = self._state.transition(base, expected=[STARTED], to=REGISTERING, when_attempt=attempt)
        if not moved and record.get("status") != REGISTERING:
            return TrainingOutcome("ignored", f"record is {record.get('status')}", job_name)
        group = str(record["group"])
        existing = None if moved else self._registry.find_registered(group, LINEAGE_JOB, job_name)
        job = self._sm.describe_training_job(job_name)
        metrics = {str(m["MetricName"]): float(m["Value"]) for m in job.get("FinalMetricDataList") or []}
        recipe = plan.parse_recipe(self._config(group), self._settings.defaults)
        status, description = plan.approval(recipe, metrics)
        arn = existing or self._registry.register(
            self._package_request(group, job_name, job, record, recipe, metrics, status, description)
        )
        self._state.transition(base, expected=[REGISTERING], to=REGISTERED, packageArn=arn, approval=status)
        self._metrics.emit("ModelsRegistered")
        if status == "Approved":
            self._metrics.emit("ModelsAutoApproved")
        self._notifier.publish(
            f"MODEL REGISTERED: {group} ({status})",
            {"group": group, "packageArn": arn, "trainingJob": job_name, "metrics": metrics, "approval": description},
        )
        return TrainingOutcome("registered", f"{arn}: {status}", job_name)

    def _package_request(
        self,
        group: str,
        job_name: str,
        job: dict[str, Any],
        record: dict[str, Any],
        recipe: plan.Recipe,
        metrics: dict[str, float],
        status: str,
        description: str,
    ) -> dict[str, Any]:
        bucket = self._bucket.name
        metrics_key = f"{plan.MODELS_PREFIX}{group}/{job_name}/metrics.json"
        self._bucket.put_json(
            metrics_key,
            {"trainingJob": job_name, "metrics": metrics, "data": f"s3://{bucket}/{record['dataKey']}"},
        )
        data_types = ["text/csv", "application/jsonlines"]
        lineage = {
            LINEAGE_JOB: job_name,
            "sagepilot:training-data": f"s3://{bucket}/{record['dataKey']}",
            "sagepilot:training-data-version": str(record.get("dataVersion", "null")),
            **(
                {"sagepilot:validation-data": f"s3://{bucket}/{record['validationKey']}"}
                if record.get("validationKey")
                else {}
            ),
            **{f"metric:{name}"[:128]: f"{value:g}" for name, value in sorted(metrics.items())},
        }
        return {
            "ModelPackageGroupName": group,
            "ModelPackageDescription": f"Trained by {job_name} on s3://{bucket}/{record['dataKey']}"[:1024],
            "ClientToken": job_name,
            "InferenceSpecification": {
                "Containers": [
                    {"Image": recipe.inference_image, "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"]}
                ],
                "SupportedContentTypes": data_types,
                "SupportedResponseMIMETypes": ["text/csv", "application/json", "application/jsonlines"],
                "SupportedTransformInstanceTypes": [recipe.instance_type],
                "SupportedRealtimeInferenceInstanceTypes": [recipe.instance_type],
            },
            "ModelApprovalStatus": status,
            "ModelMetrics": {
                "ModelQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{bucket}/{metrics_key}"}
                }
            },
            "MetadataProperties": {"GeneratedBy": str(job.get("TrainingJobArn", job_name))},
            # CreateModelPackage takes no ApprovalDescription: the verdict is kept beside the lineage.
            "CustomerMetadataProperties": {
                k: v[:256] for k, v in {**lineage, "sagepilot:approval": description}.items()
            },
        }
