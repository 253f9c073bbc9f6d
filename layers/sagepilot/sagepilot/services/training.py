"""Training on upload: a training set in, a registered model package version (with metrics) out.

Upload `training/<group>/.../<file>` -> one training job for that data version (its name is a digest
of the group, key and version, so duplicated or late events find it already exists); a file named like
a part (`part-*`) or in a folder with a marker waits for the folder's marker (`_SUCCESS`/`_COMPLETE`),
whose upload starts one job on every training file of the folder. Any other file first settles: a
delayed message (TrainingSettleSeconds) brings it back, and only if it is then still the newest version
and alone in its folder is it trained on; beside other training files and no marker, no job starts on
it: a DATASET_NEEDS_MARKER report beside it and one notice per folder ("N files in <folder>: upload
<folder>_SUCCESS to train on all of them"); its record keeps that decision, so a redelivery cannot turn
it into a job on a fragment. Its record
in the state table (created before the job) carries the attempt count and the digest of the recipe it
was started with, frozen in S3 beside the job (the first delivery's recipe wins; registration uses it,
whatever `config/<group>/training.json` says by then); the job's request is kept in S3 so that a retry
(`<name>-rN`, only for failures a retry can fix) is the same job again. A request SageMaker refuses
(ValidationException, ResourceLimitExceeded) is a `TRAINING_REFUSED` report, not an error.
`SageMaker Training Job State Change` Completed -> the artifact is registered as a new version of
the group with its final metrics (model quality statistics in S3, values in CustomerMetadataProperties)
and the data's location and version as lineage; Approved when the group's recipe thresholds pass,
PendingManualApproval otherwise. Failed / Stopped -> a rejection report beside the data and a
notification, after the bounded retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sagepilot.adapters.delayed import DelayedQueue
from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import GroupNotFound, ModelRegistry
from sagepilot.adapters.s3 import DataBucket, HeadResult
from sagepilot.adapters.sagemaker import SageMaker
from sagepilot.adapters.state import StateTable
from sagepilot.clock import utc_now
from sagepilot.domain import training as plan
from sagepilot.domain.failures import is_retryable_failure
from sagepilot.domain.layout import Rejection, input_format_of
from sagepilot.domain.names import attempt_name, split_attempt
from sagepilot.domain.reports import rejection_report
from sagepilot.domain.statuses import TrainingAction, TrainingStatus
from sagepilot.errors import CapacityError, MalformedEvent, ObjectGone, PermanentError, TransientError
from sagepilot.events import (
    ObjectCreated,
    QueuedMessage,
    TrainingJobChange,
    TrainingSettled,
    parse_settled,
    settled_request,
)
from sagepilot.metrics import Recorder
from sagepilot.observability import logger
from sagepilot.settings import TrainingSettings

# The training records' statuses (domain.statuses.TrainingStatus), by the names this service knows them by.
STARTED, REGISTERING, REGISTERED, FAILED = (
    TrainingStatus.STARTED,
    TrainingStatus.REGISTERING,
    TrainingStatus.REGISTERED,
    TrainingStatus.FAILED,
)
# A data version that settled beside other training files and no marker: no job trains on it alone (final).
NEEDS_MARKER = TrainingStatus.NEEDS_MARKER
# A folder's "N files ...: upload the marker" notice: about to go out, then sent.
NOTICE_PENDING, NOTICE_SENT = TrainingStatus.NOTICE_PENDING, TrainingStatus.NOTICE_SENT
LISTING_LIMIT = 1000
KIND = "training"
LINEAGE_JOB = "sagepilot:training-job"


@dataclass
class TrainingOutcome:
    action: TrainingAction
    detail: str = ""
    job_name: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


class Training:
    def __init__(
        self,
        settings: TrainingSettings,
        bucket: DataBucket,
        sagemaker: SageMaker,
        registry: ModelRegistry,
        state: StateTable,
        notifier: Notifier,
        metrics: Recorder,
        settle_queue: DelayedQueue,
    ) -> None:
        self._settings = settings
        self._settle_queue = settle_queue
        self._bucket = bucket
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
        try:
            tags = self._registry.group_tags(parsed.group)
        except GroupNotFound:
            missing = Rejection(
                "MODEL_GROUP_NOT_FOUND",
                f"There is no model package group named {parsed.group!r} to register the trained model in.",
                f"Create it (aws sagemaker create-model-package-group --model-package-group-name {parsed.group}) "
                "and upload the training set again.",
            )
            return self._reject(head.key, head.version_id, missing, parsed.rejected_key)
        invalid = plan.group_tags_rejection(parsed.group, tags)
        if invalid is not None:
            return self._reject(head.key, head.version_id, invalid, parsed.rejected_key)
        if isinstance(parsed, plan.DatasetMarker):
            return self._on_marker(head, parsed)
        waiting = plan.waiting_for_marker(head.key, self._bucket.list_children(parsed.folder, LISTING_LIMIT))
        if waiting is not None:
            logger.info("training file waits for its folder's marker", extra={"key": head.key, "why": waiting})
            return TrainingOutcome(
                "waiting",
                f"{waiting}: no job trains on it alone; upload {parsed.folder}_SUCCESS when every file is there",
            )
        # An ordinary name: the rest of a set may still be on its way. Look again once it has settled.
        delay = self._settings.settle_seconds
        self._settle_queue.send_later(settled_request(self._bucket.name, head.key, head.version_id), delay)
        return TrainingOutcome(
            "settling",
            f"trained on in {delay} s if it is still alone in {parsed.folder} then "
            f"(a set of several files: upload {parsed.folder}_SUCCESS)",
        )

    def on_settle_batch(self, messages: list[QueuedMessage | tuple[str, MalformedEvent]]) -> list[str]:
        """The settle queue's batch, each message on its own; returns the ids of those to deliver again."""
        failed: list[str] = []
        for message in messages:
            if isinstance(message, tuple):
                logger.error("dropping a malformed settle message", extra={"id": message[0], "error": str(message[1])})
                continue
            try:
                outcome = self.on_settled(parse_settled(message))
            except MalformedEvent as exc:
                logger.error("dropping a malformed settle message", extra={"id": message.message_id, "error": str(exc)})
                continue
            except (TransientError, PermanentError) as exc:  # again later; the queue's redrive ends the retries
                logger.warning("settle message failed", extra={"id": message.message_id, "error": str(exc)})
                failed.append(message.message_id)
                continue
            logger.info("training file settled", extra=outcome.as_dict())
        return failed

    def on_settled(self, settled: TrainingSettled) -> TrainingOutcome:
        """A training file's settle delay has passed: train on it if it is alone in its folder, else say so."""
        if settled.bucket != self._bucket.name:
            return TrainingOutcome("ignored", f"bucket {settled.bucket} is not the data bucket")
        parsed = plan.parse_training_key(settled.key)  # the key as its upload resolved it (never URL-encoded)
        if not isinstance(parsed, plan.TrainingKey):
            return TrainingOutcome("ignored", f"{settled.key} is not a training file")
        try:
            current = self._bucket.head_dropped(settled.key, None)
        except ObjectGone:
            return TrainingOutcome("ignored", f"{settled.key} was deleted while it settled")
        if settled.version_id is not None and current.version_id != settled.version_id:
            # Its newer version settles on its own message: that one decides.
            return TrainingOutcome("ignored", f"{settled.key} was replaced by version {current.version_id}")
        listing = self._bucket.list_children(parsed.folder, LISTING_LIMIT)
        decision = plan.after_settling(current.key, listing, LISTING_LIMIT)
        if isinstance(decision, str):
            logger.info("training file waits for its folder's marker", extra={"key": current.key, "why": decision})
            return TrainingOutcome("waiting", f"{decision}: the marker's job trains on it with the rest")
        if isinstance(decision, plan.NeedsMarker):
            return self._needs_marker(parsed, current, decision)
        if current.size == 0:
            empty = Rejection("EMPTY_FILE", "The training set is empty (0 bytes).", "Upload the data again.")
            return self._reject(current.key, current.version_id, empty, parsed.rejected_key)
        recipe = self._recipe(parsed.group, current.key, current.version_id, parsed.rejected_key)
        if isinstance(recipe, TrainingOutcome):
            return recipe
        return self._start(parsed, current.key, current.version_id, (current.key,), self._validation(parsed), recipe)

    def _needs_marker(
        self, training: plan.TrainingKey, head: HeadResult, decision: plan.NeedsMarker
    ) -> TrainingOutcome:
        """Other training files beside it and no marker: no job on this fragment; a report, one notice per folder."""
        name = plan.training_job_name(self._settings.name_prefix, training.group, head.key, head.version_id)
        record = self._state.create_job(
            name,
            {
                "kind": KIND,
                "status": NEEDS_MARKER,
                "group": training.group,
                "dataKey": head.key,
                "dataVersion": head.version_id or "null",
            },
        )
        if record.get("status") != NEEDS_MARKER:  # an earlier delivery found it alone and started its job
            return TrainingOutcome("ignored", f"the job's record is {record.get('status')}: already handled", name)
        rejection = decision.rejection()
        report = rejection_report(
            bucket=self._bucket.name, key=head.key, version_id=head.version_id, rejection=rejection, at=utc_now()
        )
        self._bucket.put_json(training.rejected_key, report)
        notice = plan.marker_notice_name(self._settings.name_prefix, training.group, decision.folder)
        told = self._state.create_job(notice, {"status": NOTICE_PENDING, "group": training.group})
        if told.get("status") != NOTICE_SENT:  # at least once: a crash before the mark below sends it again
            self._notifier.publish(
                f"TRAINING WAITING: {decision.notice()}",
                {**report, "folder": decision.folder, "files": list(decision.files), "notice": decision.notice()},
            )
            self._state.transition(notice, expected=[NOTICE_PENDING], to=NOTICE_SENT)
        logger.info("training set needs its marker", extra={"key": head.key, "folder": decision.folder})
        return TrainingOutcome("rejected", f"{rejection.code}: {decision.notice()}", name)

    def _on_marker(self, head: HeadResult, marker: plan.DatasetMarker) -> TrainingOutcome:
        """`<folder>/_SUCCESS`: one job on every training file directly in the folder."""
        recipe = self._recipe(marker.group, head.key, head.version_id, marker.rejected_key)
        if isinstance(recipe, TrainingOutcome):
            return recipe
        files = plan.dataset_files(marker.folder, self._bucket.list_children(marker.folder, plan.MAX_DATASET_FILES))
        fmt = plan.dataset_format(marker, files)
        if isinstance(fmt, Rejection):
            return self._reject(head.key, head.version_id, fmt, marker.rejected_key)
        return self._start(marker.training_key(fmt), head.key, head.version_id, files, self._validation(marker), recipe)

    def _recipe(self, group: str, key: str, version_id: str | None, report_key: str) -> plan.Recipe | TrainingOutcome:
        try:
            return plan.parse_recipe(self._config(group), self._settings.defaults, self._settings.ceilings)
        except plan.InvalidRecipe as exc:
            bad = Rejection(
                "INVALID_TRAINING_RECIPE",
                f"config/{group}/training.json cannot be used: {exc}",
                "Fix the recipe (see the README's training section) and upload the training set again.",
            )
            return self._reject(key, version_id, bad, report_key)

    def _start(
        self,
        training: plan.TrainingKey,
        key: str,
        version_id: str | None,
        files: tuple[str, ...],
        validation: str | None,
        recipe: plan.Recipe,
    ) -> TrainingOutcome:
        name = plan.training_job_name(self._settings.name_prefix, training.group, key, version_id)
        folder = f"jobs/training/{name}/"
        # Frozen before the job exists: registration reads this, never the group's config again. Its key is
        # its content's digest, so a redelivery with an edited recipe cannot overwrite the first one.
        frozen = plan.recipe_digest(recipe)
        self._bucket.put_json(f"{folder}recipe-{frozen}.json", plan.recipe_document(recipe))
        record = self._state.create_job(
            name,
            {
                "kind": KIND,
                "status": STARTED,
                "group": training.group,
                "dataKey": key,
                "dataVersion": version_id or "null",
                "dataFiles": len(files),
                "validationKey": validation or "",
                "recipeDigest": frozen,
            },
        )
        if record.get("status") != STARTED:
            return TrainingOutcome("ignored", f"the job's record is {record.get('status')}: already handled", name)
        if record.get("recipeDigest", frozen) != frozen:  # an earlier delivery started it with another recipe
            recipe = self._frozen_recipe(name, record)
        request = plan.training_job_request(
            name=name,
            recipe=recipe,
            role_arn=self._settings.sagemaker_role_arn,
            bucket=self._bucket.name,
            training=training,
            train_manifest_key=folder + "train.manifest",
            validation_manifest_key=folder + "validation.manifest" if validation else None,
            version_id=version_id,
            prefix=self._settings.name_prefix,
            validation_format=input_format_of(validation) if validation else None,
        )
        self._bucket.put_json(folder + "train.manifest", plan.manifest(self._bucket.name, files))
        if validation:
            self._bucket.put_json(folder + "validation.manifest", plan.manifest(self._bucket.name, (validation,)))
        self._bucket.put_json(folder + "request.json", request)
        try:
            created = self._sm.start_training_job(request)
        except (PermanentError, CapacityError) as exc:
            return self._refused(name, 0, record, exc)
        if created:
            self._metrics.emit("TrainingJobsStarted")
        logger.info("training job", extra={"job": name, "newJob": created, "files": len(files)})
        return TrainingOutcome("started" if created else "exists", f"data s3://{self._bucket.name}/{key}", name)

    def _group_deleted(self, base: str, job_name: str, record: dict[str, Any], job: Any) -> TrainingOutcome:
        """The group was deleted while its job trained (SageMaker deletes only an empty group): nowhere to register
        the model. A report and a notice, once, naming where the trained model is kept."""
        group = str(record["group"])
        artifact = str((job.get("ModelArtifacts") or {}).get("S3ModelArtifacts") or "(no artifact)")
        rejection = Rejection(
            "MODEL_GROUP_NOT_FOUND",
            f"Model package group {group!r} was deleted while training job {job_name} ran: its model was not "
            f"registered. The trained model is kept at {artifact}.",
            f"Create the group (aws sagemaker create-model-package-group --model-package-group-name {group}) and "
            "upload the training set again (or copy it onto itself).",
        )
        if not self._state.transition(base, expected=[REGISTERING], to=FAILED, failureReason=rejection.reason[:1000]):
            return TrainingOutcome("ignored", "this job's deleted group was already reported", job_name)
        self._report_for(base, record, rejection)
        self._metrics.emit("TrainingJobsFailed")
        return TrainingOutcome("rejected", f"{rejection.code}: {rejection.reason}", job_name)

    def _refused(
        self, base: str, attempt: int, record: dict[str, Any], exc: PermanentError | CapacityError
    ) -> TrainingOutcome:
        """SageMaker refused CreateTrainingJob: a report and a notice, once (a retry cannot fix the request)."""
        reason = str(exc)
        if not self._state.transition(base, expected=[STARTED], to=FAILED, when_attempt=attempt, failureReason=reason):
            return TrainingOutcome("ignored", "this refusal was already reported", base)
        group = str(record["group"])
        if isinstance(exc, CapacityError):
            action = (
                f"The account's SageMaker quota for training on {exc.instance_type} is exhausted: ask the operator "
                "to raise it (Service Quotas, Amazon SageMaker) or choose another instanceType in "
                f"config/{group}/training.json, then upload the training set again."
            )
        else:
            action = (
                f"Fix what SageMaker names in config/{group}/training.json (or ask the operator, if it is the stack's "
                "own setting), then upload the training set again."
            )
        rejection = Rejection("TRAINING_REFUSED", f"SageMaker refused the training job: {reason}", action)
        self._report_for(base, record, rejection)
        self._metrics.emit("TrainingJobsFailed")
        return TrainingOutcome("rejected", f"TRAINING_REFUSED: {reason}", base)

    def _report_for(self, base: str, record: dict[str, Any], rejection: Rejection) -> None:
        training = plan.parse_training_key(str(record["dataKey"]))
        report_key = (
            training.rejected_key
            if isinstance(training, plan.TrainingKey | plan.DatasetMarker)
            else f"rejected/training/_jobs/{base}.json"
        )
        version = str(record.get("dataVersion")) if record.get("dataVersion") not in (None, "null") else None
        self._reject(str(record["dataKey"]), version, rejection, report_key)

    def _frozen_recipe(self, base: str, record: dict[str, Any]) -> plan.Recipe:
        """The recipe the job was started with; a job started before recipes were frozen re-reads the config."""
        frozen = record.get("recipeDigest")
        if not frozen:
            return plan.parse_recipe(self._config(str(record["group"])), self._settings.defaults)
        return plan.recipe_from_document(self._bucket.get_json(f"jobs/training/{base}/recipe-{frozen}.json"))

    def _config(self, group: str) -> bytes | None:
        return self._bucket.get_bytes_if_present(f"config/{group}/training.json")

    def _validation(self, training: plan.TrainingKey | plan.DatasetMarker) -> str | None:
        for key in training.validation_keys():
            try:
                self._bucket.head_dropped(key, None)
            except ObjectGone:
                continue
            return key
        return None

    def _reject(self, key: str, version_id: str | None, rejection: Rejection, report_key: str) -> TrainingOutcome:
        report = rejection_report(
            bucket=self._bucket.name, key=key, version_id=version_id, rejection=rejection, at=utc_now()
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
                try:
                    self._sm.start_training_job(request)
                except (PermanentError, CapacityError) as exc:
                    return self._refused(base, attempt + 1, record, exc)
                return TrainingOutcome("retried", f"{reason}: attempt {attempt + 2}", request["TrainingJobName"])
            return TrainingOutcome("ignored", "this failure was already handled", change.job_name)
        if not self._state.transition(base, expected=[STARTED], to=FAILED, when_attempt=attempt, failureReason=reason):
            return TrainingOutcome("ignored", "this failure was already handled", change.job_name)
        rejection = plan.training_failure(change.job_name, change.status, reason, attempt + 1)
        self._report_for(base, record, rejection)
        self._metrics.emit("TrainingJobsFailed")
        return TrainingOutcome("failed", rejection.reason, change.job_name)

    def _register(self, base: str, job_name: str, attempt: int, record: dict[str, Any]) -> TrainingOutcome:
        if record.get("status") == REGISTERED:
            return TrainingOutcome("ignored", f"already registered as {record.get('packageArn')}", job_name)
        moved = self._state.transition(base, expected=[STARTED], to=REGISTERING, when_attempt=attempt)
        if not moved and record.get("status") != REGISTERING:
            return TrainingOutcome("ignored", f"record is {record.get('status')}", job_name)
        group = str(record["group"])
        job = self._sm.describe_training_job(job_name)
        if not self._registry.group_exists(group):
            return self._group_deleted(base, job_name, record, job)
        existing = None if moved else self._registry.find_registered(group, LINEAGE_JOB, job_name)
        metrics = {str(m["MetricName"]): float(m["Value"]) for m in job.get("FinalMetricDataList") or []}
        recipe = self._frozen_recipe(base, record)
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
        data_key = str(record["dataKey"])
        # A multi-file set is its folder (closed by the marker whose version is the data version).
        data = (
            f"s3://{bucket}/{data_key.rsplit('/', 1)[0]}/"
            if plan.is_dataset_marker(data_key)
            else f"s3://{bucket}/{data_key}"
        )
        metrics_key = f"{plan.MODELS_PREFIX}{group}/{job_name}/metrics.json"
        self._bucket.put_json(metrics_key, {"trainingJob": job_name, "metrics": metrics, "data": data})
        data_types = ["text/csv", "application/jsonlines"]
        lineage = {
            LINEAGE_JOB: job_name,
            "sagepilot:training-data": data,
            **({"sagepilot:training-files": str(record["dataFiles"])} if "dataFiles" in record else {}),
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
            "ModelPackageDescription": f"Trained by {job_name} on {data}"[:1024],
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
