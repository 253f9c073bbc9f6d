"""The SageMaker model registry as SageMaker runs it: its events, UpdateModelPackage's semantics, tags.

- CreateModelPackage and every UpdateModelPackage emit `SageMaker Model Package State Change`
  (source aws.sagemaker, resources [package ARN]; detail as SageMaker's documented sample:
  ModelPackageGroupName, ModelPackageVersion, ModelPackageArn, ModelPackageName, ModelPackageStatus,
  ModelPackageStatusDetails, ModelApprovalStatus, ApprovalDescription when set,
  InferenceSpecification, CertifyForMarketplace, CustomerMetadataProperties / MetadataProperties /
  ModelMetrics / ModelPackageDescription when set, CreationTime and LastModifiedTime as ISO 8601 to
  the second). There is no previous status in it. It is delivered at once through
  `bus.deliver_event`, `event_copies` times (SageMaker may send more than one event per change).
- UpdateModelPackage changes only what the call gives (moto wipes ModelApprovalStatus and
  ApprovalDescription when they are left out); CustomerMetadataProperties are merged into the
  package's (moto replaces them) and CustomerMetadataPropertiesToRemove removes keys (moto crashes
  when the package had none).
- DescribeModelPackage of a versioned package shows ModelPackageName (the group's name), as SageMaker
  does (moto leaves it out).
- CreateModelPackageGroup refuses a name that exists, in any case (SageMaker's names are unique without
  regard to case, its ARNs are lowercase; moto silently replaced an existing group and accepted `Churn`
  beside `churn`): ValidationException "Model Package Group already exists: <ARN>".
- ListTags / AddTags / DeleteTags work on model package ARNs (`model-package/<group>/<version>`),
  which moto answers with an internal error; model package groups' tags worked already.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.sagemaker import models as sm_models
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import sagemaker_backends

from sagepilot_sandbox import bus

# How many times each model package event is delivered: >1 shows SageMaker's duplicates on purpose.
event_copies = 1


def model_package_event(
    arn: str, *, account: str = bus.DEFAULT_ACCOUNT, region: str = bus.DEFAULT_REGION
) -> dict[str, Any]:
    """`SageMaker Model Package State Change` for the package's current state."""
    package = sagemaker_backends[account][region].model_packages[arn]
    detail: dict[str, Any] = {
        "ModelPackageGroupName": package.model_package_group_name,
        "ModelPackageVersion": package.model_package_version,
        "ModelPackageArn": package.arn,
        "ModelPackageName": package.model_package_name,
        "ModelPackageDescription": package.model_package_description,
        "CreationTime": bus.iso_seconds(package.creation_time),
        "InferenceSpecification": package.inference_specification,
        "ModelPackageStatus": package.model_package_status,
        "ModelPackageStatusDetails": package.model_package_status_details,
        "CertifyForMarketplace": bool(package.certify_for_marketplace),
        "ModelApprovalStatus": package.model_approval_status,
        "ApprovalDescription": package.approval_description,
        "MetadataProperties": package.metadata_properties,
        "ModelMetrics": package.model_metrics,
        "CustomerMetadataProperties": package.customer_metadata_properties or None,
        "LastModifiedTime": bus.iso_seconds(package.last_modified_time or package.creation_time),
    }
    return bus.make_event(
        "SageMaker Model Package State Change",
        "aws.sagemaker",
        account,
        region,
        [package.arn],
        {k: v for k, v in detail.items() if v is not None},
    )


def _emit(backend: Any, arn: str) -> None:
    account, region = backend.account_id, backend.region_name
    event = model_package_event(arn, account=account, region=region)
    for _ in range(max(1, event_copies)):
        bus.deliver_event(event, account=account, region=region)


def _create_model_package(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_model_package(self: Any, *args: Any, **kwargs: Any) -> str:
        arn = str(original(self, *args, **kwargs))
        package = self.model_packages[arn]
        if package.tags is None:
            package.tags = []
        _emit(self, arn)
        return arn

    return create_model_package


def _update_model_package(
    self: Any,
    model_package_arn: str,
    model_approval_status: str | None,
    approval_description: str | None,
    customer_metadata_properties: dict[str, str] | None,
    customer_metadata_properties_to_remove: list[str] | None,
    additional_inference_specifications_to_add: list[Any] | None,
) -> str:
    arn = self.model_package_name_mapping.get(model_package_arn, model_package_arn)
    package = self.model_packages.get(arn)
    if package is None:
        raise ValidationError(message=f"Model package {model_package_arn} not found")
    if model_approval_status is not None:
        package.set_model_approval_status(model_approval_status)
    if approval_description is not None:
        package.approval_description = approval_description
    properties = dict(package.customer_metadata_properties or {})
    properties.update(customer_metadata_properties or {})
    for key in customer_metadata_properties_to_remove or []:
        properties.pop(key, None)
    package.customer_metadata_properties = properties or None
    if additional_inference_specifications_to_add:
        package.add_additional_inference_specifications(additional_inference_specifications_to_add)
    package.modifications_done()
    _emit(self, package.arn)
    return str(package.arn)


def _gen_response_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def gen_response_object(self: Any) -> dict[str, Any]:
        response = dict(original(self))
        response.setdefault("ModelPackageName", self.model_package_name)
        return response

    return gen_response_object


def _get_resource_from_arn(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_resource_from_arn(self: Any, arn: str) -> Any:
        resource = arn.split(":")[-1]
        if resource.startswith("model-package/"):
            package = self.model_packages.get(self.model_package_name_mapping.get(arn, arn))
            if package is None:
                raise ValidationError(message=f"Could not find model-package with name {resource.split('/', 1)[1]}")
            if package.tags is None:
                package.tags = []
            return package
        return original(self, arn)

    return get_resource_from_arn


def same_name(names: Any, name: str) -> str | None:
    """The name among `names` that is `name` in SageMaker's eyes (case does not count), if any."""
    return next((n for n in names if str(n).lower() == name.lower()), None)


def _create_model_package_group(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_model_package_group(self: Any, model_package_group_name: str, *args: Any, **kwargs: Any) -> Any:
        existing = same_name(self.model_package_groups, model_package_group_name)
        if existing is not None:
            arn = self.model_package_groups[existing].arn
            raise ValidationError(message=f"Model Package Group already exists: {arn}")
        return original(self, model_package_group_name, *args, **kwargs)

    return create_model_package_group


def install() -> None:
    backend_cls: Any = sm_models.SageMakerModelBackend
    backend_cls.create_model_package_group = _create_model_package_group(backend_cls.create_model_package_group)
    backend_cls.create_model_package = _create_model_package(backend_cls.create_model_package)
    backend_cls.update_model_package = _update_model_package
    backend_cls._get_resource_from_arn = _get_resource_from_arn(backend_cls._get_resource_from_arn)
    package_cls: Any = sm_models.ModelPackage
    package_cls.gen_response_object = _gen_response_object(package_cls.gen_response_object)
