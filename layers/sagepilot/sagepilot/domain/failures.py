"""Which SageMaker failures are worth another attempt."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagepilot.domain.images import PARAMETER, not_allowed_reason
from sagepilot.domain.layout import Rejection

if TYPE_CHECKING:
    from sagepilot.domain.transform_plan import JobPlan, ModelVersion

# FailureReason prefixes SageMaker uses for failures that are not the input's or the model's fault.
RETRYABLE_REASON_PREFIXES = (
    "InternalServerError",
    "CapacityError",
    "ThrottlingException",
    "ServiceUnavailable",
    "ResourceLimitExceeded",
)


# Failures no single input can cause: the model cannot be fetched or run, the manifest or the role is wrong.
# A job failing so is not split (every piece would fail the same way).
JOB_WIDE_REASON_MARKERS = (
    "failed to download model",
    "could not find model",
    "model package",
    "modeldataurl",
    "model container",
    "manifest file",
    "accessdenied",
    "access denied",
    "not authorized",
    "no s3 objects found",
)


def is_retryable_failure(failure_reason: str) -> bool:
    return failure_reason.strip().startswith(RETRYABLE_REASON_PREFIXES)


def input_may_cause(status: str, failure_reason: str) -> bool:
    """Whether one bad input could have failed the job (a record the model refuses or that breaks it, a file
    that is not gzip, a line over MaxPayloadInMB, an object that is gone): then the job's inputs are worth
    splitting to find the bad ones. Not a stopped job, a transient failure (retried instead) or a
    job-wide one (the model, the manifest, permissions)."""
    if status != "Failed" or is_retryable_failure(failure_reason):
        return False
    lowered = failure_reason.lower()
    return not any(marker in lowered for marker in JOB_WIDE_REASON_MARKERS)


def job_failure_rejection(
    job_name: str, status: str, failure_reason: str, attempts: int, *, isolated: bool = False
) -> Rejection:
    if status == "Stopped":
        return Rejection(
            "JOB_STOPPED",
            f"Transform job {job_name} was stopped before it finished.",
            "Copy the file onto itself (or upload it again) to run it in a new job.",
        )
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if isolated:
        return Rejection(
            "JOB_FAILED",
            f"This file fails on its own: transform job {job_name}, which read this file alone, failed{tried}: "
            f"{failure_reason or 'no reason given'}",
            "Fix the file (its format, a header row, a record over MaxPayloadInMB, its compression) or the model, "
            "then upload the file again. The files it was dropped with were scored without it.",
        )
    return Rejection(
        "JOB_FAILED",
        f"Transform job {job_name} failed{tried}: {failure_reason or 'no reason given'}",
        "Read the job's CloudWatch logs (/aws/sagemaker/TransformJobs), fix the data or the "
        "model, then upload the file again.",
    )


def quota_rejection(instance_type: str, message: str) -> Rejection:
    return Rejection(
        "QUOTA_EXCEEDED",
        f"SageMaker refused the job for lack of quota on {instance_type}: {message}",
        f"Ask Service Quotas for more '{instance_type} for transform job usage', or set a "
        "FallbackInstanceType; then upload the file again.",
    )


def transient_exhausted_rejection(what: str, error: str, deliveries: int, note: str = "") -> Rejection:
    """AWS kept failing transiently (throttling, 5xx, timeouts) through botocore's retries and every
    delivery of the file's event: the file is not processed, but it is intact and can simply be retried."""
    return Rejection(
        "TRANSIENT_EXHAUSTED",
        f"{what} kept failing with a transient AWS error through every retry and all {deliveries} deliveries "
        f"of the file's event: {error}",
        "Nothing is wrong with the file, which is left untouched where it is. Once the AWS errors have "
        "stopped (see the stack's logs and alarms), copy the file onto itself or upload it again to have it "
        "processed." + (f" {note}" if note else ""),
    )


def unrecordable_rejection(why: str) -> Rejection:
    """The state table refused this file version's record as invalid (a permanent ValidationException): it
    cannot be claimed, so it is not run; the other files of its batch and job are not affected."""
    return Rejection(
        "JOB_NOT_STARTED",
        f"The control plane could not record this file version, so it was not put in a transform job: {why}",
        "Upload the file under a shorter path (the usual cause is a key near S3's 1,024-byte limit), then "
        "upload it again.",
    )


def withdrawn_model_rejection(plan: JobPlan, newest: ModelVersion | None) -> Rejection:
    """The job's model package version was rejected before the job started, and no Approved version can take
    its place: none is left (NO_APPROVED_MODEL), or the newest does not accept the files' content type."""
    was = f"Model package version {plan.model.version} of {plan.group!r}, planned for transform job {plan.job_name}"
    if newest is None:
        return Rejection(
            "NO_APPROVED_MODEL",
            f"{was}, is no longer Approved, and the group has no other Approved model package.",
            "Approve a model package version in the SageMaker Model Registry, then upload the file again "
            "(or copy it onto itself).",
        )
    return Rejection(
        "CONTENT_TYPE_NOT_SUPPORTED",
        f"{was}, is no longer Approved, and the newest Approved one, version {newest.version}, accepts "
        f"{', '.join(newest.supported_content_types)}, not {plan.content_type}.",
        "Convert the file to a content type the model accepts and upload it again.",
    )


GROUP_NOT_FOUND_ACTION = (
    "Create the group and approve a model in it, or move the file under the folder of an existing group; then "
    "upload it again."
)


def group_deleted_rejection(plan: JobPlan) -> Rejection:
    """The job's model package group was deleted before the job started (SageMaker deletes only an empty group,
    so its versions went first): no version of it can run the files."""
    return Rejection(
        "MODEL_GROUP_NOT_FOUND",
        f"Model package version {plan.model.version} of {plan.group!r}, planned for transform job {plan.job_name}, "
        f"is gone: model package group {plan.group!r} no longer exists (it was deleted).",
        GROUP_NOT_FOUND_ACTION,
    )


def image_not_allowed_rejection(model: ModelVersion, images: tuple[str, ...], allowed: tuple[str, ...]) -> Rejection:
    """The group's newest Approved version runs an inference image from a repository the operator does not
    allow (`images`: those not allowed): no job runs it, and the file stays where it is."""
    return Rejection(
        "MODEL_IMAGE_NOT_ALLOWED",
        f"Model package version {model.version} of {model.group!r}, the newest Approved one, was not used: its "
        f"{not_allowed_reason(images, allowed)}.",
        "Register and approve a version whose inference image is in an allowed repository (or have the "
        f"operator add its repository to the stack parameter {PARAMETER}), then upload the file again (or "
        "copy it onto itself).",
    )
