"""API shapes and refusals as AWS has them, where moto is kinder or answers differently (installed by
faithful.install()).

SageMaker
- DescribeEndpointConfig, DescribeEndpoint and DescribeModel leave out what was not configured: moto
  answers `DataCaptureConfig: {}` (the SDK's `Predictor.update_endpoint` then fails on the missing
  `EnableCapture`), `VpcConfig: {}` and `Containers: []` beside a PrimaryContainer.
- DeleteModelPackage deletes (moto: HTTP 500); a group's later versions are never renumbered into a
  deleted one. DeleteModelPackageGroup deletes an empty group, by name or ARN (moto: HTTP 500); SageMaker
  deletes only empty groups ("You can only delete an empty model group": the Developer Guide's "Delete
  a Model Group"), so a group that still holds a model package is refused with the API's documented error,
  ConflictException (the message is the sandbox's), and a missing group with ValidationException
  "ModelPackageGroup <ARN> does not exist." (DescribeModelPackageGroup's). A group created again under
  the name numbers its versions from 1 (an assumption: a new group). ListContexts and
  ListMonitoringSchedules answer (the sandbox creates neither, so their lists are empty; moto: HTTP 500).
- Names, role ARNs, S3 URIs and a training job's hyperparameters are checked as SageMaker's API does
  (`1 validation error detected: Value '...' at '...' failed to satisfy constraint: ...`): names
  `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`, role ARNs `arn:aws:iam::<12 digits>:role/...`, model data and
  job URIs `s3://bucket/...` or `https://...`, at most 100 hyperparameters, keys up to 256 and values
  up to 2,500 characters. botocore checks lengths and minimums client-side; patterns and map sizes are
  the service's.
- moto's own messages that embed a whole client error ("An error ocurred (ValidationException) when
  calling the CreateModelPackage operation: Model Package Group does not exist.") read as AWS's do
  ("Model Package Group does not exist.").

EventBridge
- PutEvents refuses entries whose Source starts with `aws.` (`NotAuthorizedForSourceException`, "Not
  authorized for the source."), and a request whose entries total over 256 KB (ValidationException
  "Total size of the entries in the request is over the limit.", sized as EventBridge documents: Time
  14 bytes, Source, DetailType, Detail and each resource in UTF-8).

S3
- Keys over 1,024 bytes (UTF-8) are refused (`KeyTooLongError`, "Your key is too long"), for
  PutObject, CopyObject and multipart uploads, the sandbox's own writes included.
- ListObjectVersions honours `EncodingType=url`: keys, prefixes and markers come URL-encoded, as
  botocore expects when it asks for them (it always does, and decodes `+` as a space: moto's raw keys
  came back altered).
"""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

MAX_EVENT_BYTES = 256 * 1024
MAX_KEY_BYTES = 1024
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_KEY = 256
MAX_HYPERPARAMETER_VALUE = 2500
NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
ROLE_PATTERN = r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$"
S3_URI_PATTERN = r"^(https|s3)://([^/]+)/?(.*)$"
_MOTO_PREFIX = re.compile(r"^An error oc+urred \([A-Za-z]+\) when calling the [A-Za-z]+ operation: ")
_EMPTY_WHEN_UNSET = ("DataCaptureConfig", "VpcConfig", "AsyncInferenceConfig", "ExplainerConfig")

_installed = False


# Validation -----------------------------------------------------------------------------------------
def _constraint(value: Any, where: str, constraint: str) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return f"Value '{shown}' at '{where}' failed to satisfy constraint: {constraint}"


def _pattern(value: Any, where: str, pattern: str) -> str | None:
    if value is None or re.fullmatch(pattern.lstrip("^").rstrip("$"), str(value)):
        return None
    return _constraint(value, where, f"Member must satisfy regular expression pattern: {pattern}")


def validation_message(problems: list[str]) -> str:
    count = len(problems)
    return f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems)


def training_job_problems(params: dict[str, Any]) -> list[str]:
    """What SageMaker's CreateTrainingJob refuses that botocore lets through."""
    problems = [
        _pattern(params.get("TrainingJobName"), "trainingJobName", NAME_PATTERN),
        _pattern(params.get("RoleArn"), "roleArn", ROLE_PATTERN),
        _pattern(
            (params.get("OutputDataConfig") or {}).get("S3OutputPath"), "outputDataConfig.s3OutputPath", S3_URI_PATTERN
        ),
    ]
    for index, channel in enumerate(params.get("InputDataConfig") or [], start=1):
        uri = ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
        problems.append(_pattern(uri, f"inputDataConfig.{index}.member.dataSource.s3DataSource.s3Uri", S3_URI_PATTERN))
    hyperparameters = params.get("HyperParameters") or {}
    if len(hyperparameters) > MAX_HYPERPARAMETERS:
        problems.append(
            _constraint(
                hyperparameters,
                "hyperParameters",
                f"Member must have length less than or equal to {MAX_HYPERPARAMETERS}",
            )
        )
    for key, value in hyperparameters.items():
        if len(key) > MAX_HYPERPARAMETER_KEY:
            problems.append(
                _constraint(
                    hyperparameters,
                    "hyperParameters",
                    "Map keys must satisfy constraint: "
                    f"[Member must have length less than or equal to {MAX_HYPERPARAMETER_KEY}]",
                )
            )
        if len(str(value)) > MAX_HYPERPARAMETER_VALUE:
            problems.append(
                _constraint(
                    hyperparameters,
                    "hyperParameters",
                    "Map value must satisfy constraint: "
                    f"[Member must have length less than or equal to {MAX_HYPERPARAMETER_VALUE}]",
                )
            )
    return [p for p in problems if p]


def model_problems(params: dict[str, Any]) -> list[str]:
    """What SageMaker's CreateModel refuses that botocore lets through."""
    problems = [
        _pattern(params.get("ModelName"), "modelName", NAME_PATTERN),
        _pattern(params.get("ExecutionRoleArn"), "executionRoleArn", ROLE_PATTERN),
    ]
    containers = [("primaryContainer", params.get("PrimaryContainer"))]
    containers += [(f"containers.{i}.member", c) for i, c in enumerate(params.get("Containers") or [], start=1)]
    for where, container in containers:
        if container:
            problems.append(_pattern(container.get("ModelDataUrl"), f"{where}.modelDataUrl", S3_URI_PATTERN))
    return [p for p in problems if p]


def model_package_problems(params: dict[str, Any]) -> list[str]:
    """What SageMaker's CreateModelPackage refuses that botocore lets through: its containers' artifacts."""
    containers = ((params.get("InferenceSpecification") or {}).get("Containers")) or []
    problems = [
        _pattern(c.get("ModelDataUrl"), f"inferenceSpecification.containers.{i}.member.modelDataUrl", S3_URI_PATTERN)
        for i, c in enumerate(containers, start=1)
    ]
    return [p for p in problems if p]


def transform_job_problems(params: dict[str, Any]) -> list[str]:
    """What SageMaker's CreateTransformJob refuses that botocore lets through."""
    source = ((params.get("TransformInput") or {}).get("DataSource") or {}).get("S3DataSource") or {}
    return [
        p
        for p in (
            _pattern(params.get("TransformJobName"), "transformJobName", NAME_PATTERN),
            _pattern(source.get("S3Uri"), "transformInput.dataSource.s3DataSource.s3Uri", S3_URI_PATTERN),
            _pattern(
                (params.get("TransformOutput") or {}).get("S3OutputPath"),
                "transformOutput.s3OutputPath",
                S3_URI_PATTERN,
            ),
        )
        if p
    ]


def event_entry_size(entry: dict[str, Any]) -> int:
    """A PutEvents entry's size as EventBridge counts it."""
    size = 14 if entry.get("Time") is not None else 0
    for field in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(field) or "").encode("utf-8"))
    size += sum(len(str(r).encode("utf-8")) for r in entry.get("Resources") or [])
    return size


def event_size(event: dict[str, Any]) -> int:
    """An event's size (as a service sends it to the bus), counted as PutEvents counts an entry."""
    return event_entry_size(
        {
            "Time": event.get("time"),
            "Source": event.get("source"),
            "DetailType": event.get("detail-type"),
            "Detail": json.dumps(event.get("detail", {})),
            "Resources": event.get("resources") or [],
        }
    )


# SageMaker ------------------------------------------------------------------------------------------
def _without_unset(response: dict[str, Any]) -> dict[str, Any]:
    shaped = {k: v for k, v in response.items() if not (k in _EMPTY_WHEN_UNSET and not v)}
    if shaped.get("PrimaryContainer") and not shaped.get("Containers"):
        shaped.pop("Containers", None)
    return shaped


def _refusing(check: Callable[[dict[str, Any]], list[str]], original: Callable[..., Any]) -> Callable[..., Any]:
    from moto.sagemaker.exceptions import ValidationError

    def action(self: Any) -> Any:
        problems = check(self._get_params())
        if problems:
            raise ValidationError(message=validation_message(problems))
        return original(self)

    return action


def _patch_sagemaker() -> None:
    from moto.core.responses import ActionResult, EmptyResult
    from moto.sagemaker import models, responses
    from moto.sagemaker.exceptions import ConflictException, SagemakerClientError, ValidationError

    response_cls: Any = responses.SageMakerResponse
    backend_cls: Any = models.SageMakerModelBackend

    def leaving_out_unset(original: Callable[..., Any]) -> Callable[..., Any]:
        def action(self: Any) -> Any:
            answer = original(self)
            result: Any = answer.result if isinstance(answer, ActionResult) else None
            return ActionResult(_without_unset(dict(result))) if isinstance(result, dict) else answer

        return action

    def delete_model_package(self: Any) -> Any:
        self.sagemaker_backend.delete_model_package(self._get_param("ModelPackageName"))
        return EmptyResult()

    def delete_model_package_group(self: Any) -> Any:
        self.sagemaker_backend.delete_model_package_group(self._get_param("ModelPackageGroupName"))
        return EmptyResult()

    def list_contexts(self: Any) -> Any:
        return ActionResult({"ContextSummaries": []})

    def list_monitoring_schedules(self: Any) -> Any:
        return ActionResult({"MonitoringScheduleSummaries": []})

    def backend_delete_model_package(self: Any, name: str) -> None:
        arn = self.model_package_name_mapping.get(name, name)
        package = self.model_packages.get(arn)
        if package is None:
            raise ValidationError(message=f"Model package {name} not found")
        del self.model_packages[arn]
        for alias in [k for k, v in self.model_package_name_mapping.items() if v == arn]:
            del self.model_package_name_mapping[alias]
        _deleted_packages(self)[arn] = package

    def backend_delete_model_package_group(self: Any, name_or_arn: str) -> None:
        name = name_or_arn.split(":model-package-group/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn
        group = self.model_package_groups.get(name)
        if group is None:
            arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:model-package-group/{name.lower()}"
            raise ValidationError(message=f"ModelPackageGroup {arn} does not exist.")
        held = [p for p in self.model_packages.values() if p.model_package_group_name == name]
        if held:
            raise ConflictException(
                f"Model Package Group {group.arn} cannot be deleted: it still contains {len(held)} model "
                "package(s). Delete its model packages first (DeleteModelPackage), then the group."
            )
        del self.model_package_groups[name]
        deleted = _deleted_packages(self)
        for arn in [a for a, p in deleted.items() if p.model_package_group_name == name]:
            del deleted[arn]

    original_create_package = backend_cls.create_model_package

    def create_model_package(self: Any, *args: Any, **kwargs: Any) -> Any:
        # moto numbers a version by counting the group's packages: deleted ones still count in SageMaker.
        deleted = _deleted_packages(self)
        placeholders = {f"{arn}#deleted": package for arn, package in deleted.items()}
        self.model_packages.update(placeholders)
        try:
            return original_create_package(self, *args, **kwargs)
        finally:
            for key in placeholders:
                self.model_packages.pop(key, None)

    for name in ("describe_endpoint_config", "describe_endpoint", "describe_model"):
        setattr(response_cls, name, leaving_out_unset(getattr(response_cls, name)))
    response_cls.delete_model_package = delete_model_package
    response_cls.delete_model_package_group = delete_model_package_group
    response_cls.list_contexts = list_contexts
    response_cls.list_monitoring_schedules = list_monitoring_schedules
    response_cls.create_training_job = _refusing(training_job_problems, response_cls.create_training_job)
    response_cls.create_model = _refusing(model_problems, response_cls.create_model)
    response_cls.create_transform_job = _refusing(transform_job_problems, response_cls.create_transform_job)
    response_cls.create_model_package = _refusing(model_package_problems, response_cls.create_model_package)
    backend_cls.delete_model_package = backend_delete_model_package
    backend_cls.delete_model_package_group = backend_delete_model_package_group
    backend_cls.create_model_package = create_model_package

    error_cls: Any = SagemakerClientError
    original_init = error_cls.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.message = _MOTO_PREFIX.sub("", str(self.message))

    error_cls.__init__ = init


def _deleted_packages(backend: Any) -> dict[str, Any]:
    deleted: dict[str, Any] | None = getattr(backend, "_sandbox_deleted_packages", None)
    if deleted is None:
        deleted = {}
        backend._sandbox_deleted_packages = deleted
    return deleted


# EventBridge ----------------------------------------------------------------------------------------
def _patch_events() -> None:
    from moto.events import responses
    from moto.events.exceptions import ValidationException

    handler_cls: Any = responses.EventsHandler

    def put_events(self: Any) -> str:
        entries = list(self._get_param("Entries") or [])
        if sum(event_entry_size(e) for e in entries) > MAX_EVENT_BYTES:
            raise ValidationException("Total size of the entries in the request is over the limit.")
        allowed = [e for e in entries if not str(e.get("Source") or "").startswith("aws.")]
        results = iter(self.events_backend.put_events(allowed) if allowed else [])
        answered = [
            {"ErrorCode": "NotAuthorizedForSourceException", "ErrorMessage": "Not authorized for the source."}
            if str(e.get("Source") or "").startswith("aws.")
            else next(results)
            for e in entries
        ]
        failed = len([e for e in answered if "ErrorCode" in e])
        return json.dumps({"FailedEntryCount": failed, "Entries": answered})

    handler_cls.put_events = put_events


# S3 -------------------------------------------------------------------------------------------------
def _patch_s3() -> None:
    from moto.s3 import models, responses
    from moto.s3.exceptions import S3ClientError

    class KeyTooLong(S3ClientError):
        def __init__(self) -> None:
            super().__init__("KeyTooLongError", "Your key is too long")

    def refusing_long_keys(original: Callable[..., Any], position: int, name: str) -> Callable[..., Any]:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            key = kwargs[name] if name in kwargs else args[position] if len(args) > position else None
            if isinstance(key, str) and len(key.encode("utf-8")) > MAX_KEY_BYTES:
                raise KeyTooLong()
            return original(self, *args, **kwargs)

        return method

    backend_cls: Any = models.S3Backend
    backend_cls.put_object = refusing_long_keys(backend_cls.put_object, 1, "key_name")
    backend_cls.copy_object = refusing_long_keys(backend_cls.copy_object, 2, "dest_key_name")
    backend_cls.create_multipart_upload = refusing_long_keys(backend_cls.create_multipart_upload, 1, "key_name")

    response_cls: Any = responses.S3Response
    original_listing = response_cls.list_object_versions
    original_backend_listing = backend_cls.list_object_versions

    def list_object_versions(self: Any) -> Any:
        if self.querystring.get("encoding-type", [None])[0] != "url":
            return original_listing(self)
        original_serialized = self.serialized

        def serialized(result: Any) -> Any:
            body = result.result
            for field in ("Prefix", "KeyMarker", "Delimiter"):
                if body.get(field):
                    body[field] = quote(body[field], safe="/")
            body["EncodingType"] = "url"
            return original_serialized(result)

        self.serialized = serialized
        token = _url_encoded.set(True)
        try:
            return original_listing(self)
        finally:
            _url_encoded.reset(token)

    def backend_list_object_versions(self: Any, *args: Any, **kwargs: Any) -> Any:
        versions, prefixes, markers, next_key, next_version = original_backend_listing(self, *args, **kwargs)
        if not _url_encoded.get():
            return versions, prefixes, markers, next_key, next_version
        return (
            [_Encoded(v) for v in versions],
            [quote(p, safe="/") for p in prefixes],
            [_Encoded(m) for m in markers],
            quote(next_key, safe="/") if next_key is not None else None,
            next_version,
        )

    response_cls.list_object_versions = list_object_versions
    backend_cls.list_object_versions = backend_list_object_versions


_url_encoded: contextvars.ContextVar[bool] = contextvars.ContextVar("sandbox_url_encoded_listing", default=False)


class _Encoded:
    """A listed version or delete marker whose name reads URL-encoded."""

    def __init__(self, entry: Any) -> None:
        self._entry = entry
        self.name = quote(entry.name, safe="/")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entry, name)


def install() -> None:
    global _installed
    if _installed:
        return
    _patch_sagemaker()
    _patch_events()
    _patch_s3()
    _installed = True
