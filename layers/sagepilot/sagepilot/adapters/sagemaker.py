"""SageMaker models and transform jobs, made idempotent by deterministic names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import error_code, error_message, http_status, translates_unreachable
from sagepilot.errors import CapacityError, PermanentError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

_THROTTLED = {"ThrottlingException", "Throttling", "TooManyRequestsException"}
# SageMaker's server-side errors (its API reference lists InternalFailure, HTTP 500, and ServiceUnavailable,
# HTTP 503, among the common errors): AWS's fault, not the request's, so worth another delivery.
_SERVER_SIDE = {"InternalFailure", "ServiceUnavailable", "InternalServerError", "InternalServerException"}


def translate(exc: ClientError, what: str, instance_type: str = "") -> Exception:
    """ResourceLimitExceeded -> CapacityError; throttling and any 5xx -> TransientError (botocore's retries
    are spent, the next delivery may succeed); anything else is the request's fault -> PermanentError."""
    code = error_code(exc)
    if code == "ResourceLimitExceeded":
        return CapacityError(f"{what}: {error_message(exc)}", instance_type=instance_type)
    if code in _THROTTLED or code in _SERVER_SIDE or code.startswith("InternalServer") or http_status(exc) >= 500:
        return TransientError(f"{what}: {code}: {error_message(exc)}")
    return PermanentError(f"{what}: {code}: {error_message(exc)}")


@translates_unreachable
class SageMaker:
    def __init__(self, sagemaker_client: SageMakerClient) -> None:
        self._sm = sagemaker_client

    def ensure_model(self, name: str, package_arn: str, role_arn: str) -> bool:
        """Create the Model for a package version; True if created, False if it existed."""
        try:
            self._sm.create_model(
                ModelName=name,
                PrimaryContainer={"ModelPackageName": package_arn},
                ExecutionRoleArn=role_arn,
                # The model's container gets no network: whatever image a version names, it cannot send data
                # out or fetch code at run time (SageMaker still loads its artifact).
                EnableNetworkIsolation=True,
                Tags=[{"Key": "sagepilot:model-package-arn", "Value": package_arn[-256:]}],
            )
        except ClientError as exc:
            if error_code(exc) == "ValidationException" and "already exist" in error_message(exc):
                return False
            raise translate(exc, f"CreateModel {name}") from exc
        return True

    def start_transform_job(self, request: dict[str, Any]) -> bool:
        """CreateTransformJob; True if created, False if a job of that name already existed."""
        return self._create_job(
            self._sm.create_transform_job,
            "CreateTransformJob",
            request["TransformJobName"],
            request,
            request["TransformResources"]["InstanceType"],
        )

    def _create_job(self, call: Any, operation: str, name: str, request: dict[str, Any], instance_type: str) -> bool:
        """A Create*Job call made idempotent by its name: ResourceInUse means the job exists already."""
        try:
            call(**request)
        except ClientError as exc:
            if error_code(exc) == "ResourceInUse":
                return False
            raise translate(exc, f"{operation} {name}", instance_type) from exc
        return True

    def describe_transform_job(self, name: str) -> dict[str, Any]:
        try:
            return dict(self._sm.describe_transform_job(TransformJobName=name))
        except ClientError as exc:
            raise translate(exc, f"DescribeTransformJob {name}") from exc

    def start_training_job(self, request: dict[str, Any]) -> bool:
        """CreateTrainingJob; True if created, False if a job of that name already existed."""
        return self._create_job(
            self._sm.create_training_job,
            "CreateTrainingJob",
            request["TrainingJobName"],
            request,
            request["ResourceConfig"]["InstanceType"],
        )

    def describe_training_job(self, name: str) -> dict[str, Any]:
        try:
            return dict(self._sm.describe_training_job(TrainingJobName=name))
        except ClientError as exc:
            raise translate(exc, f"DescribeTrainingJob {name}") from exc

    def recent_transform_jobs(self, name_prefix: str, count: int = 100) -> list[str]:
        """The `count` transform jobs created last whose names start with `name_prefix`, any status, newest
        first (one ListTransformJobs page)."""
        try:
            page = self._sm.list_transform_jobs(
                NameContains=name_prefix, SortBy="CreationTime", SortOrder="Descending", MaxResults=count
            )
        except ClientError as exc:
            raise translate(exc, "ListTransformJobs") from exc
        summaries = sorted(page["TransformJobSummaries"], key=lambda j: j["CreationTime"], reverse=True)
        return [j["TransformJobName"] for j in summaries if j["TransformJobName"].startswith(name_prefix)][:count]

    def running_transform_jobs(self, name_prefix: str) -> list[str]:
        """InProgress transform jobs whose names start with `name_prefix` (retries included)."""
        names: list[str] = []
        try:
            pages = self._sm.get_paginator("list_transform_jobs").paginate(
                StatusEquals="InProgress", NameContains=name_prefix
            )
            for page in pages:
                names += [j["TransformJobName"] for j in page["TransformJobSummaries"]]
        except ClientError as exc:
            raise translate(exc, "ListTransformJobs") from exc
        return [n for n in names if n.startswith(name_prefix)]
