"""SageMaker training jobs as SageMaker runs them (moto completes them at once and accepts duplicates).

- CreateTrainingJob refuses a name that exists (ResourceInUse, as AWS does) and starts the job
  InProgress; listeners (the sandbox's trainer) are told, and `finish_training_job` moves it on with the
  final metrics, artifact and FailureReason it was given, returning SageMaker's
  `SageMaker Training Job State Change` event.
- CreateTrainingJob refuses what SageMaker's API refuses (moto accepts anything) with its
  ValidationException: more than 100 HyperParameters, a key over 256 or a value over 2,500 characters,
  more than 40 MetricDefinitions; and, when a quota is set in `training_quotas` (instance type -> most
  instances of that type in running training jobs, the account's "<type> for training job usage"),
  a job that would exceed it with ResourceLimitExceeded, worded as SageMaker words it.
- CreateModel keeps `EnableNetworkIsolation` (moto drops it and describes every model as not isolated).
- CreateModelPackage honours ClientToken: a repeat with the same token returns the version the first
  call created (moto registers a new version every time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.sagemaker import models as sm_models
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ResourceInUseException, SagemakerClientError, ValidationError
from moto.sagemaker.models import sagemaker_backends

from sagepilot_sandbox import bus
from sagepilot_sandbox.sagemaker import roles

TrainingListener = Callable[[str, str, str], None]  # (account, region, job name)
_listeners: list[TrainingListener] = []
_tokens: dict[tuple[int, str], str] = {}  # (backend, client token) -> package ARN; a reset backend starts afresh
_lock = threading.Lock()
training_quotas: dict[str, int] = {}  # instance type -> the account's quota "<type> for training job usage"


class ResourceLimitExceeded(SagemakerClientError):
    code = "ResourceLimitExceeded"


def _refusal(kwargs: dict[str, Any]) -> str | None:
    """CreateTrainingJob's constraints (API reference), in SageMaker's words; None if it accepts the request."""
    hyper = kwargs.get("hyper_parameters") or {}
    if len(hyper) > 100:
        return (
            f"1 validation error detected: Value '{hyper}' at 'hyperParameters' failed to satisfy constraint: "
            "Member must have length less than or equal to 100"
        )[:2000]
    for key, value in hyper.items():
        if len(key) > 256 or len(str(value)) > 2500:
            which, limit = ("key", 256) if len(key) > 256 else ("value", 2500)
            return (
                f"1 validation error detected: Value '{hyper}' at 'hyperParameters' failed to satisfy constraint: "
                f"Map {which} must satisfy constraint: [Member must have length less than or equal to {limit}]"
            )[:2000]
    definitions = (kwargs.get("algorithm_specification") or {}).get("MetricDefinitions") or []
    if len(definitions) > 40:
        return (
            "1 validation error detected: Value at 'algorithmSpecification.metricDefinitions' failed to satisfy "
            "constraint: Member must have length less than or equal to 40"
        )
    return None


def _over_quota(backend: Any, kwargs: dict[str, Any]) -> str | None:
    resources = kwargs.get("resource_config") or {}
    instance_type = str(resources.get("InstanceType", ""))
    if instance_type not in training_quotas:
        return None
    quota = training_quotas[instance_type]
    used = sum(
        int((job.resource_config or {}).get("InstanceCount", 1))
        for job in backend.training_jobs.values()
        if job.training_job_status == "InProgress" and (job.resource_config or {}).get("InstanceType") == instance_type
    )
    delta = int(resources.get("InstanceCount", 1))
    if used + delta <= quota:
        return None
    return (
        f"The account-level service limit '{instance_type} for training job usage' is {quota} Instances, with "
        f"current utilization of {used} Instances and a request delta of {delta} Instances. Please use AWS Service "
        "Quotas to request an increase for this quota. If AWS Service Quotas is not available, contact AWS support "
        "to request an increase for this quota."
    )


def on_training_job_created(listener: TrainingListener) -> None:
    _listeners.append(listener)


def clear() -> None:
    _listeners.clear()
    training_quotas.clear()


def _backend(account: str, region: str) -> Any:
    return sagemaker_backends[account][region]


def install() -> None:
    backend_cls: Any = sm_models.SageMakerModelBackend
    original_create = backend_cls.create_training_job
    original_register = backend_cls.create_model_package

    def create_training_job(self: Any, training_job_name: str, *args: Any, **kwargs: Any) -> Any:
        if training_job_name in self.training_jobs:
            arn = self.training_jobs[training_job_name].arn
            raise ResourceInUseException(
                message=f"Training job names must be unique within an AWS account and region, and a training job "
                f"with this name already exists ({arn})"
            )
        refusal = _refusal(kwargs)
        if refusal:
            raise ValidationError(message=refusal)
        over = _over_quota(self, kwargs)
        if over:
            raise ResourceLimitExceeded(over)
        job = original_create(self, training_job_name, *args, **kwargs)
        record = self.training_jobs[training_job_name]
        record.training_job_status = "InProgress"
        record.secondary_status = "Starting"
        record.final_metric_data_list = []
        for listener in list(_listeners):
            listener(self.account_id, self.region_name, training_job_name)
        return job

    def create_model_package(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = kwargs.get("client_token")
        if not token:
            return original_register(self, *args, **kwargs)
        key = (id(self), str(token))
        with _lock:
            if key in _tokens:
                return _tokens[key]
            arn = original_register(self, *args, **kwargs)
            _tokens[key] = arn
            return arn

    backend_cls.create_training_job = create_training_job
    backend_cls.create_model_package = create_model_package

    response_cls: Any = sm_responses.SageMakerResponse
    if getattr(response_cls.create_model, "_keeps_isolation", False):
        return
    original_model = response_cls.create_model

    def create_model(self: Any) -> Any:
        result = original_model(self)
        if self._get_param("EnableNetworkIsolation"):
            self.sagemaker_backend._models[self._get_param("ModelName")].enable_network_isolation = True
        return result

    create_model._keeps_isolation = True  # type: ignore[attr-defined]
    response_cls.create_model = create_model


def finish_training_job(
    name: str,
    status: str,
    *,
    metrics: dict[str, float] | None = None,
    failure_reason: str = "",
    account: str = bus.DEFAULT_ACCOUNT,
    region: str = bus.DEFAULT_REGION,
) -> dict[str, Any]:
    """Move a training job to `status` with its final metrics; the state-change event SageMaker emits."""
    job = _backend(account, region).training_jobs[name]
    now = datetime.now(UTC)
    job.training_job_status = status
    job.secondary_status = status
    job.final_metric_data_list = [
        {"MetricName": k, "Value": float(v), "Timestamp": now} for k, v in sorted((metrics or {}).items())
    ]
    if status == "Failed":
        job.failure_reason = failure_reason or "InternalServerError: We encountered an internal error."
    return training_job_event(name, account=account, region=region)


def training_job_event(
    name: str, *, account: str = bus.DEFAULT_ACCOUNT, region: str = bus.DEFAULT_REGION
) -> dict[str, Any]:
    """`SageMaker Training Job State Change` for the job's current state."""
    job = _backend(account, region).training_jobs[name]
    detail: dict[str, Any] = {
        "TrainingJobName": job.training_job_name,
        "TrainingJobArn": job.arn,
        "TrainingJobStatus": job.training_job_status,
        "SecondaryStatus": job.secondary_status,
        "HyperParameters": job.hyper_parameters or {},
        "AlgorithmSpecification": job.algorithm_specification,
        "InputDataConfig": job.input_data_config,
        "OutputDataConfig": job.output_data_config,
        "ResourceConfig": job.resource_config,
        "StoppingCondition": job.stopping_condition,
        "ModelArtifacts": job.model_artifacts,
        "FinalMetricDataList": [
            {"MetricName": m["MetricName"], "Value": m["Value"], "Timestamp": bus.epoch_millis(m["Timestamp"])}
            for m in job.final_metric_data_list or []
        ],
        "CreationTime": bus.epoch_millis(job.creation_time),
        "Tags": {t["Key"]: t["Value"] for t in (job.tags or [])},
    }
    if job.training_job_status == "Failed":
        detail["FailureReason"] = job.failure_reason
    return bus.make_event(
        "SageMaker Training Job State Change",
        "aws.sagemaker",
        account,
        region,
        [job.arn],
        {k: v for k, v in detail.items() if v is not None},
    )


def training_image_refusal(params: dict[str, Any], account: str) -> str | None:
    """CreateTrainingJob's refusal of a TrainingImage its RoleArn may not pull from ECR (`roles.check_image_pull`),
    in SageMaker's words (observed) with the role's denial; None when the role may pull it or is not checked."""
    image = str((params.get("AlgorithmSpecification") or {}).get("TrainingImage") or "")
    role = str(params.get("RoleArn") or "")
    found = roles.ecr_repository(image)
    if found is None or not role:
        return None
    try:
        roles.check_image_pull(role, image, account=account)
    except roles.AccessDenied as denied:
        registry, repository_arn = found
        repository = repository_arn.split(":repository/", 1)[1]
        return f"Access denied for repository: {repository} in registry ID: {registry}. ({denied.reason})"
    return None


def _refusing_unpullable_image(original: Callable[..., Any]) -> Callable[..., Any]:
    def action(self: Any) -> Any:
        refusal = training_image_refusal(self._get_params(), str(self.current_account))
        if refusal:
            raise ValidationError(message=refusal)
        return original(self)

    return action


def refuse_unpullable_images() -> None:
    """CreateTrainingJob refuses a TrainingImage in ECR that its RoleArn may not pull (`ecr:GetAuthorizationToken`,
    `ecr:BatchGetImage`, `ecr:GetDownloadUrlForLayer` on the repository, decided by `roles`): "Access denied
    for repository: <repository> in registry ID: <registry>." (SageMaker's words, observed), with the denial.
    Installed by faithful.install() after the API rules, so this check still comes before theirs."""
    response_cls: Any = sm_responses.SageMakerResponse
    response_cls.create_training_job = _refusing_unpullable_image(response_cls.create_training_job)
