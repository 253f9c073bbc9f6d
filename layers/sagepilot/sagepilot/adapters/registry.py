"""The SageMaker Model Registry: which model package version a group serves."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import error_code
from sagepilot.domain.transform_plan import ModelVersion
from sagepilot.errors import TransientError

_GROUP_MISSING = {"ValidationException", "ResourceNotFound"}


class GroupNotFound(Exception):
    """The model package group does not exist."""


class ModelRegistry:
    def __init__(self, sagemaker_client: Any) -> None:
        self._sm = sagemaker_client

    def latest_approved(self, group: str) -> ModelVersion | None:
        """The newest Approved package of `group`, or None; GroupNotFound if there is no such group."""
        try:
            listed = self._sm.list_model_packages(
                ModelPackageGroupName=group,
                ModelApprovalStatus="Approved",
                SortBy="CreationTime",
                SortOrder="Descending",
                MaxResults=1,
            )["ModelPackageSummaryList"]
            if not listed:
                self._require_group(group)
                return None
            arn = listed[0]["ModelPackageArn"]
            package = self._sm.describe_model_package(ModelPackageName=arn)
        except ClientError as exc:
            if error_code(exc) in _GROUP_MISSING:
                raise GroupNotFound(group) from exc
            raise TransientError(f"reading model package group {group!r} failed: {exc}") from exc
        spec = package.get("InferenceSpecification") or {}
        return ModelVersion(
            group=group,
            package_arn=arn,
            version=int(package.get("ModelPackageVersion") or listed[0].get("ModelPackageVersion") or 0),
            supported_content_types=tuple(spec.get("SupportedContentTypes") or ()),
        )

    def _require_group(self, group: str) -> None:
        self._sm.describe_model_package_group(ModelPackageGroupName=group)
