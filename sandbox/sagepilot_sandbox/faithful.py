"""Fill in, faithfully, the AWS behaviour moto lacks and the control plane depends on.

- SageMaker refuses duplicate names (CreateModel: ValidationException "Cannot create already existing
  model"; CreateTransformJob: ResourceInUse) and checks that a transform job's model exists.
- Transform jobs start InProgress (moto completes them at once); the sandbox's SageMaker simulator, or
  a test, moves them on with `finish_transform_job`, which also builds SageMaker's state-change event.
- S3's EventBridge events have AWS's shape: ISO time, `etag`, a per-object increasing `sequencer`,
  `reason` such as `PutObject`, a unique id.
- `deliver_event` routes an event through the default bus's rules, with their patterns, as
  EventBridge does (moto's put_events refuses rules with Lambda targets).
- DynamoDB's TransactWriteItems is isolated and all-or-nothing without copying whole tables
  (`transactions`), and a Query reads only its partition, not the whole table (`dynamodb_query`);
  SQS answers without scanning the queue per message (`sqs_speed`); S3's
  ListObjectVersions takes its markers as S3 does, without copying the whole bucket (`s3_listing`).
- API shapes and refusals as AWS has them where moto is kinder (`api_rules`): no empty DataCaptureConfig
  or VpcConfig, DeleteModelPackage / DeleteModelPackageGroup / ListContexts / ListMonitoringSchedules
  answer, PutEvents refuses `aws.*` sources and requests over 256 KB, S3 refuses keys over 1,024 bytes and
  URL-encodes listed versions when asked, SageMaker's name / ARN / URI / hyperparameter rules.

- Real-time endpoints take time and emit events (`endpoints`), the model registry emits its events and
  updates packages as SageMaker does (`registry`), CloudWatch alarms emit state-change events, start
  INSUFFICIENT_DATA and keep their history for DescribeAlarmHistory (`alarms`), Application Auto Scaling
  refuses and cleans up as AWS does (`autoscaling`), scheduled rules match no events (`bus`), training
  jobs refuse duplicates and wait for their trainer (`training`), InvokeEndpoint reaches the variants'
  real models (`invocations`): see each module's docstring. What runs models (transform jobs, training,
  endpoints) is the simulator's (`simulator`, `transform`, `trainer`, `modelservers`, `metrics`).

Time in the sandbox is compressed: what takes SageMaker minutes (a job running, an endpoint being
created or updated, a deployment baking) takes the simulator about a second (`SageMakerSimulator`'s
`run_seconds`, `endpoint_seconds`, and `time_scale` for the AWS seconds of a DeploymentConfig), and a
schedule fires every `Sandbox.schedule_seconds` whatever its expression says. Under the in-process
`moto.mock_aws`, nothing moves by itself: tests move jobs and endpoints on with
`finish_transform_job` and `complete_endpoint_transition`, deterministically.

`install()` is idempotent and patches moto's classes, so it applies to the in-process mock and to
the threaded server alike.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.s3 import notifications as s3_notifications
from moto.sagemaker import models as sm_models
from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
from moto.sagemaker.models import sagemaker_backends

from sagepilot_sandbox import bus, storage
from sagepilot_sandbox.bus import DEFAULT_ACCOUNT, deliver_event
from sagepilot_sandbox.cloudwatch import alarms
from sagepilot_sandbox.cloudwatch.alarms import alarm_event, evaluate_alarm, evaluate_alarms
from sagepilot_sandbox.moto_patches import (
    api_rules,
    autoscaling,
    dynamodb_json,
    dynamodb_query,
    job_listing,
    s3_listing,
    sqs_speed,
    transactions,
)
from sagepilot_sandbox.sagemaker import endpoints, invocations, metrics, registry, training
from sagepilot_sandbox.sagemaker.endpoints import (
    Transition,
    complete_endpoint_transition,
    endpoint_alarms_tripped,
    endpoint_event,
    fail_next_endpoint,
    on_endpoint_transition,
    pending_endpoint_transition,
    settle_endpoint,
)
from sagepilot_sandbox.sagemaker.registry import model_package_event

__all__ = [
    "DEFAULT_ACCOUNT",
    "Transition",
    "alarm_event",
    "check_transform_inputs",
    "clear_listeners",
    "complete_endpoint_transition",
    "deliver_event",
    "endpoint_alarms_tripped",
    "endpoint_event",
    "evaluate_alarm",
    "evaluate_alarms",
    "fail_next_endpoint",
    "finish_transform_job",
    "install",
    "iso_now",
    "model_package_event",
    "on_endpoint_transition",
    "on_transform_job_created",
    "pending_endpoint_transition",
    "sagemaker_backend",
    "settle_endpoint",
    "transform_job_event",
]

_lock = threading.Lock()
_installed = False
_sequencer = itertools.count(0x10000000000000)
TransformJobListener = Callable[[str, str, str], None]  # (account, region, job name)
_job_listeners: list[TransformJobListener] = []

_S3_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}


iso_now = bus.iso_now
_epoch_millis = bus.epoch_millis


def on_transform_job_created(listener: TransformJobListener) -> None:
    """Call `listener(account, region, name)` after each accepted CreateTransformJob."""
    _job_listeners.append(listener)


def clear_listeners() -> None:
    """Forget every listener (transform and training jobs, endpoints) and injected endpoint failure, and
    the model servers invocations go to; event settings back to their defaults."""
    _job_listeners.clear()
    endpoints.clear()
    training.clear()
    invocations.clear()
    registry.event_copies = 1


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _patch_sagemaker()
        s3_notifications._send_event_bridge_message = _send_s3_event_to_eventbridge
        bus.install()
        endpoints.install()
        registry.install()
        alarms.install()
        autoscaling.install()
        training.install()
        invocations.install()
        sqs_speed.install()
        s3_listing.install()
        job_listing.install()
        transactions.install()
        dynamodb_query.install()
        dynamodb_json.install()
        api_rules.install()
        training.refuse_unpullable_images()
        _order_metric_dimensions()
        metrics.install()
        _installed = True


def _order_metric_dimensions() -> None:
    """CloudWatch identifies a metric by its set of dimensions, whatever order a request lists them in.
    moto sorts dimensions to compare them, with a `Dimension.__lt__` that compares a value with a name,
    so GetMetricData finds a metric only when asked with its dimensions in a lucky order."""
    from moto.cloudwatch.models import Dimension

    def less_than(self: Any, other: Any) -> bool:
        return (self.name or "", self.value or "") < (other.name or "", other.value or "")

    dimension: Any = Dimension
    dimension.__lt__ = less_than


# SageMaker ------------------------------------------------------------------------------------------
def _patch_sagemaker() -> None:
    backend_cls: Any = sm_models.SageMakerModelBackend
    original_create_model = backend_cls.create_model
    original_create_job = backend_cls.create_transform_job

    def create_model(self: Any, model_name: str, *args: Any, **kwargs: Any) -> Any:
        if model_name in self._models:
            arn = self._models[model_name].arn
            raise ValidationError(message=f'Cannot create already existing model "{arn}".')
        return original_create_model(self, model_name, *args, **kwargs)

    def create_transform_job(self: Any, transform_job_name: str, model_name: str, *args: Any, **kwargs: Any) -> Any:
        if transform_job_name in self.transform_jobs:
            arn = self.transform_jobs[transform_job_name].arn
            raise ResourceInUseException(
                message=f"Job name must be unique within an AWS account and region, and a job with this "
                f"name already exists ({arn})"
            )
        if model_name not in self._models:
            raise ValidationError(message=f'Could not find model "{model_name}".')
        job: Any = original_create_job(self, transform_job_name, model_name, *args, **kwargs)
        job.transform_job_status = "InProgress"
        job.transform_start_time = None
        job.transform_end_time = None
        for listener in list(_job_listeners):
            listener(self.account_id, self.region_name, transform_job_name)
        return job

    backend_cls.create_model = create_model
    backend_cls.create_transform_job = create_transform_job


def sagemaker_backend(account: str = DEFAULT_ACCOUNT, region: str = "us-east-1") -> Any:
    return sagemaker_backends[account][region]


def finish_transform_job(
    name: str,
    status: str,
    failure_reason: str = "",
    *,
    account: str = DEFAULT_ACCOUNT,
    region: str = "us-east-1",
    stand_in_outputs: bool = True,
) -> dict[str, Any]:
    """Move a transform job to `status` as SageMaker would; return the state-change event it emits.

    A Completed job has written one output per input. Nothing ran a model under the in-process mock, so
    unless the simulator already ran the job (`stand_in_outputs=False`), stand-in outputs are written."""
    job = sagemaker_backend(account, region).transform_jobs[name]
    now = datetime.now(UTC)
    if job.transform_start_time is None:
        job.transform_start_time = now
    job.transform_job_status = status
    job.last_modified_time = now
    if status in ("Completed", "Failed", "Stopped"):
        job.transform_end_time = now
    if status == "Completed" and stand_in_outputs:
        _write_stand_in_outputs(job, account)
    if status == "Failed":
        job.failure_reason = failure_reason or "InternalServerError: We encountered an internal error."
    return transform_job_event(name, account=account, region=region)


def _write_stand_in_outputs(job: Any, account: str) -> None:
    """`<S3OutputPath>/<relative path>.out` for each input the job reads and has no output yet, one
    `stand-in` line per input line, as a Line-split job writes one prediction per record (the
    simulator's `transform` runs real models instead)."""
    from sagepilot_sandbox import storage
    from sagepilot_sandbox.sagemaker import transform

    try:
        inputs = transform.list_inputs(job, account=account)
    except transform.JobFailed:
        return  # SageMaker could not have read them; the caller chose Completed anyway
    for item in inputs:
        try:
            lines = storage.read(item.bucket, item.key, account=account).count(b"\n")
        except storage.NotFound:
            continue  # SageMaker would have failed the job; the caller chose Completed anyway
        out_bucket, out_key = transform.output_key(job.transform_output["S3OutputPath"], item.relative)
        if storage.exists(out_bucket, out_key, account=account):
            continue  # written by whoever stood in for the model (a test's own predictions)
        storage.write(out_bucket, out_key, b"stand-in\n" * max(lines, 1), account=account)


def transform_job_event(name: str, *, account: str = DEFAULT_ACCOUNT, region: str = "us-east-1") -> dict[str, Any]:
    """`SageMaker Transform Job State Change` for the job's current state (times in epoch millis)."""
    job = sagemaker_backend(account, region).transform_jobs[name]
    detail: dict[str, Any] = {
        "TransformJobName": job.transform_job_name,
        "TransformJobArn": job.arn,
        "TransformJobStatus": job.transform_job_status,
        "ModelName": job.model_name,
        "MaxConcurrentTransforms": job.max_concurrent_transforms,
        "MaxPayloadInMB": job.max_payload_in_mb,
        "BatchStrategy": job.batch_strategy,
        "Environment": job.environment or {},
        "TransformInput": job.transform_input,
        "TransformOutput": job.transform_output,
        "TransformResources": job.transform_resources,
        "CreationTime": _epoch_millis(job.creation_time),
        "TransformStartTime": _epoch_millis(job.transform_start_time),
        "TransformEndTime": _epoch_millis(job.transform_end_time),
        "Tags": {t["Key"]: t["Value"] for t in (job.tags or [])},
    }
    if job.transform_job_status == "Failed":
        detail["FailureReason"] = job.failure_reason
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "SageMaker Transform Job State Change",
        "source": "aws.sagemaker",
        "account": account,
        "time": iso_now(),
        "region": region,
        "resources": [job.arn],
        "detail": {k: v for k, v in detail.items() if v is not None},
    }


def check_transform_inputs(name: str, *, account: str = DEFAULT_ACCOUNT, region: str = "us-east-1") -> str | None:
    """What real SageMaker would fail a job for before reading any record: a missing manifest or input
    (ManifestFile), or no object under the prefix (S3Prefix)."""
    from sagepilot_sandbox.sagemaker.transform import JobFailed, list_inputs

    job = sagemaker_backend(account, region).transform_jobs[name]
    try:
        inputs = list_inputs(job, account=account)
    except JobFailed as failure:
        return failure.reason
    for item in inputs:
        try:
            storage.head(item.bucket, item.key, account=account)
        except storage.NotFound:
            return f"ClientError: Failed to download data. {item.uri} does not exist."
    return None


# S3 -> EventBridge ----------------------------------------------------------------------------------
def _send_s3_event_to_eventbridge(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
    detail_type = s3_notifications._detail_type(event_name)
    if detail_type != "Object Created":
        return
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": account_id,
        "time": iso_now(),
        "region": bucket.region_name,
        "resources": [bucket.arn],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket.name},
            "object": {
                "key": key.name,
                "size": key.size,
                "etag": key.etag.replace('"', ""),
                **({"version-id": key.version_id} if bucket.is_versioned else {}),
                "sequencer": format(next(_sequencer), "018X"),
            },
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account_id,
            "source-ip-address": "127.0.0.1",
            "reason": _S3_REASONS.get(event_name, "PutObject"),
        },
    }
    for _ in range(max(1, s3_event_copies)):
        deliver_event(event, account=account_id, region=bucket.region_name)


# How many times each S3 event is delivered: >1 shows at-least-once delivery on purpose.
s3_event_copies = 1
