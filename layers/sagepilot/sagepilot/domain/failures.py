"""Which SageMaker failures are worth another attempt."""

from __future__ import annotations

from sagepilot.domain.layout import Rejection

# FailureReason prefixes SageMaker uses for failures that are not the input's or the model's fault.
RETRYABLE_REASON_PREFIXES = (
    "InternalServerError",
    "CapacityError",
    "ThrottlingException",
    "ServiceUnavailable",
    "ResourceLimitExceeded",
)


def is_retryable_failure(failure_reason: str) -> bool:
    return failure_reason.strip().startswith(RETRYABLE_REASON_PREFIXES)


def job_failure_rejection(job_name: str, status: str, failure_reason: str, attempts: int) -> Rejection:
    if status == "Stopped":
        return Rejection(
            "JOB_STOPPED",
            f"Transform job {job_name} was stopped before it finished.",
            "Copy the file onto itself (or upload it again) to run it in a new job.",
        )
    tried = f" after {attempts} attempts" if attempts > 1 else ""
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
