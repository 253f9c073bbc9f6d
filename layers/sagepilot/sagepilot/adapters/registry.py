"""The SageMaker Model Registry: which model package version a group serves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import error_code, translates_unreachable
from sagepilot.domain.model_versions import ModelVersion, Release
from sagepilot.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker.type_defs import DescribeModelPackageOutputTypeDef

_GROUP_MISSING = {"ValidationException", "ResourceNotFound"}


class GroupNotFound(Exception):
    """The model package group does not exist."""


@translates_unreachable
class ModelRegistry:
    def __init__(self, sagemaker_client: SageMakerClient) -> None:
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
            images=_images(package),
        )

    def approval_status(self, package_arn: str) -> str | None:
        """The version's ModelApprovalStatus now (None if it no longer exists)."""
        return self.status_and_images(package_arn)[0]

    def inference_images(self, package_arn: str) -> tuple[str, ...]:
        """The version's inference images (InferenceSpecification.Containers[].Image; none if it is gone)."""
        return self.status_and_images(package_arn)[1]

    def status_and_images(self, package_arn: str) -> tuple[str | None, tuple[str, ...]]:
        """The version's ModelApprovalStatus now (None if it no longer exists) and its inference images, from
        one DescribeModelPackage."""
        try:
            package = self._sm.describe_model_package(ModelPackageName=package_arn)
        except ClientError as exc:
            if error_code(exc) in _GROUP_MISSING:
                return None, ()
            raise TransientError(f"reading model package {package_arn} failed: {exc}") from exc
        return (str(package.get("ModelApprovalStatus") or "") or None), _images(package)

    def group_exists(self, group: str) -> bool:
        """Whether the model package group exists now (DescribeModelPackageGroup)."""
        try:
            self._sm.describe_model_package_group(ModelPackageGroupName=group)
        except ClientError as exc:
            if error_code(exc) in _GROUP_MISSING:
                return False
            raise TransientError(f"reading model package group {group!r} failed: {exc}") from exc
        return True

    def _require_group(self, group: str) -> None:
        self._sm.describe_model_package_group(ModelPackageGroupName=group)

    def newest_approved(self, group: str, *, below: int | None = None) -> Release | None:
        """The newest Approved version of `group` as a deployable release (one call); None if there is
        none or the group does not exist (an endpoint then has nothing it should serve). With `below`: the
        newest Approved version older than that version, read among the two newest (None if there is none, or
        if a newer one was approved meanwhile)."""
        releases = self._approved(group, 1 if below is None else 2)
        return next((r for r in releases if below is None or r.version < below), None)

    def two_newest_approved(self, group: str) -> tuple[Release | None, Release | None]:
        """The newest Approved version of `group` and the one below it (one call); None where there is none
        (or no group)."""
        releases = self._approved(group, 2)
        return (releases[0] if releases else None), (releases[1] if len(releases) > 1 else None)

    def _approved(self, group: str, count: int) -> list[Release]:
        """The `count` newest Approved versions of `group`, newest first (one ListModelPackages); none if the
        group does not exist."""
        try:
            listed = self._sm.list_model_packages(
                ModelPackageGroupName=group,
                ModelApprovalStatus="Approved",
                SortBy="CreationTime",
                SortOrder="Descending",
                MaxResults=count,
            )["ModelPackageSummaryList"]
        except ClientError as exc:
            if error_code(exc) in _GROUP_MISSING:
                return []
            raise TransientError(f"reading model package group {group!r} failed: {exc}") from exc
        return [Release(version=int(s["ModelPackageVersion"]), package_arn=str(s["ModelPackageArn"])) for s in listed]

    def group_names(self) -> list[str]:
        """Every model package group of the account's region (ListModelPackageGroups, all pages)."""
        names: list[str] = []
        try:
            for page in self._sm.get_paginator("list_model_package_groups").paginate():
                names += [g["ModelPackageGroupName"] for g in page.get("ModelPackageGroupSummaryList", [])]
        except ClientError as exc:
            raise TransientError(f"listing the model package groups failed: {exc}") from exc
        return names

    def group_tags(self, group: str) -> dict[str, str]:
        """The group's tags (its per-group settings); GroupNotFound if there is no such group."""
        try:
            arn = self._sm.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
            tags: dict[str, str] = {}
            for page in self._sm.get_paginator("list_tags").paginate(ResourceArn=arn):
                tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        except ClientError as exc:
            if error_code(exc) in _GROUP_MISSING:
                raise GroupNotFound(group) from exc
            raise TransientError(f"reading the tags of model package group {group!r} failed: {exc}") from exc
        return tags

    def reject(self, package_arn: str, description: str) -> None:
        """Mark a version Rejected with the reason, so the registry shows what happened to it."""
        try:
            self._sm.update_model_package(
                ModelPackageArn=package_arn, ModelApprovalStatus="Rejected", ApprovalDescription=description[:1024]
            )
        except ClientError as exc:
            if error_code(exc) in ("ThrottlingException", "InternalFailure"):
                raise TransientError(f"rejecting {package_arn} failed: {exc}") from exc
            raise PermanentError(f"rejecting {package_arn} failed: {exc}") from exc

    def withdraw_approvals(self, group: str, newer_than: int, older_than: int, description: str) -> list[int]:
        """Set the group's Approved versions strictly between the two back to PendingManualApproval with
        `description`; the versions changed (none when it runs again)."""
        withdrawn: list[int] = []
        try:
            pages = self._sm.get_paginator("list_model_packages").paginate(
                ModelPackageGroupName=group,
                ModelApprovalStatus="Approved",
                SortBy="CreationTime",
                SortOrder="Descending",
            )
            for page in pages:
                for summary in page.get("ModelPackageSummaryList", []):
                    version = int(summary.get("ModelPackageVersion") or 0)
                    if newer_than < version < older_than:
                        self._sm.update_model_package(
                            ModelPackageArn=summary["ModelPackageArn"],
                            ModelApprovalStatus="PendingManualApproval",
                            ApprovalDescription=description[:1024],
                        )
                        withdrawn.append(version)
        except ClientError as exc:
            if error_code(exc) in _GROUP_MISSING:
                return withdrawn
            raise TransientError(f"withdrawing approvals in {group!r} failed: {exc}") from exc
        return sorted(withdrawn)

    def register(self, request: dict[str, Any]) -> str:
        """CreateModelPackage (its ClientToken makes a repeat return the same version); the new ARN."""
        try:
            return str(self._sm.create_model_package(**request)["ModelPackageArn"])
        except ClientError as exc:
            if error_code(exc) in ("ThrottlingException", "InternalFailure", "ServiceUnavailable"):
                raise TransientError(f"registering in {request['ModelPackageGroupName']} failed: {exc}") from exc
            raise PermanentError(f"registering in {request['ModelPackageGroupName']} failed: {exc}") from exc

    def find_registered(self, group: str, property_name: str, value: str, newest: int = 20) -> str | None:
        """The ARN of a recent version whose CustomerMetadataProperties[property_name] is `value`."""
        try:
            listed = self._sm.list_model_packages(
                ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending", MaxResults=newest
            )["ModelPackageSummaryList"]
            for summary in listed:
                found = self._sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
                if (found.get("CustomerMetadataProperties") or {}).get(property_name) == value:
                    return str(summary["ModelPackageArn"])
        except ClientError as exc:
            raise TransientError(f"searching {group} for {property_name}={value}: {exc}") from exc
        return None


def _images(package: DescribeModelPackageOutputTypeDef) -> tuple[str, ...]:
    """The inference images a DescribeModelPackage answer names (in container order)."""
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or ()
    return tuple(str(c["Image"]) for c in containers if c.get("Image"))
