"""The JSON documents the control plane leaves next to the data. Pure builders, no I/O."""

from __future__ import annotations

from typing import Any

from sagepilot.domain.layout import Rejection
from sagepilot.domain.transform_plan import InputFile, JobPlan

REPORT_VERSION = 1


def rejection_report(
    *,
    bucket: str,
    key: str,
    version_id: str | None,
    rejection: Rejection,
    at: str,
    job_name: str | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "reportVersion": REPORT_VERSION,
        "status": "Rejected",
        "input": {"bucket": bucket, "key": key, "versionId": version_id},
        "code": rejection.code,
        "reason": rejection.reason,
        "whatToDo": rejection.action,
        "rejectedAt": at,
    }
    if job_name:
        report["transformJobName"] = job_name
    return report


def job_summary(
    plan: JobPlan,
    *,
    job_name: str,
    status: str,
    attempts: int,
    timings: dict[str, str | None],
    failure_reason: str | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "reportVersion": REPORT_VERSION,
        "transformJobName": job_name,
        "status": status,
        "attempts": attempts,
        "modelPackageGroup": plan.group,
        "modelPackageVersion": plan.model.version,
        "modelPackageArn": plan.model.package_arn,
        "modelName": plan.model_name,
        "contentType": plan.content_type,
        "compression": plan.compression,
        "instanceType": plan.instance_type,
        "instanceCount": plan.instance_count,
        "manifest": f"s3://{plan.bucket}/{plan.manifest_key}",
        "timings": timings,
        "inputs": [
            {**f.describe(), "predictions": f"s3://{plan.bucket}/{f.dropped.prediction_key}"} for f in plan.inputs
        ],
        "superseded": [f.describe() for f in plan.superseded],
    }
    if failure_reason:
        report["failureReason"] = failure_reason
    return report


def input_report(
    summary: dict[str, Any], plan: JobPlan, item: InputFile, *, superseded_by: str | None = None
) -> dict[str, Any]:
    """The small per-input report written beside `<file>.out`: found from the input's key alone."""
    report = {k: v for k, v in summary.items() if k not in ("inputs", "superseded")}
    report["input"] = item.describe()
    report["jobReport"] = f"s3://{plan.bucket}/{plan.report_key}"
    if superseded_by:
        report["supersededByVersionId"] = superseded_by
    else:
        report["predictions"] = f"s3://{item.bucket}/{item.dropped.prediction_key}"
    return report
