"""The JSON documents the control plane leaves next to the data. Pure builders, no I/O."""

from __future__ import annotations

from typing import Any

from sagepilot.domain.layout import Rejection, job_folder
from sagepilot.domain.transform_plan import InputFile, JobPlan, Newer

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
    outdated: dict[str, Newer] | None = None,
) -> dict[str, Any]:
    """The job's report. `outdated`: inputs whose key got a newer version in another job while this one
    ran; their predictions stay in the job's folder and the key's report is the newer version's."""
    outdated = outdated or {}

    def read(f: InputFile) -> dict[str, Any]:
        newer = outdated.get(f.file_id)
        if newer is None:
            return {**f.describe(), "predictions": f"s3://{plan.bucket}/{f.dropped.prediction_key}"}
        return {
            **f.describe(),
            "predictions": f"s3://{plan.bucket}/{plan.output_key(f)}",
            "supersededBy": newer.describe(),
        }

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
        "inputs": [read(f) for f in plan.inputs],
        "superseded": [superseded_entry(f) for f in plan.superseded],
        "deleted": [f.describe() for f in plan.deleted],
    }
    if plan.merged_from:
        # A merged job: the waiting jobs whose inputs it took over (each one's report lists its files).
        report["mergedFrom"] = [
            {"transformJobName": name, "report": f"s3://{plan.bucket}/{job_folder(plan.group, name)}report.json"}
            for name in plan.merged_from
        ]
    if failure_reason:
        report["failureReason"] = failure_reason
    return report


def superseded_entry(f: InputFile) -> dict[str, Any]:
    """An older version the job did not read: the newer version of its key is read instead (by this job
    unless `supersededBy` names another)."""
    entry = f.describe()
    if f.superseded_by is not None:
        entry["supersededBy"] = f.superseded_by.describe()
    return entry


def superseded_only_summary(plan: JobPlan, *, at: str) -> dict[str, Any]:
    """The record of a planned job that runs nothing: every version it won is older than a version of its
    key that another job reads (seen late, or redelivered beside the newer one). Each version is still
    accounted for here, with the version and job that superseded it."""
    return {
        "reportVersion": REPORT_VERSION,
        "transformJobName": None,
        "plannedJobName": plan.job_name,
        "status": "Superseded",
        "attempts": 0,
        "modelPackageGroup": plan.group,
        "recordedAt": at,
        "inputs": [],
        "superseded": [superseded_entry(f) for f in plan.superseded],
        "deleted": [f.describe() for f in plan.deleted],
        "note": "No transform job was run: a newer version of each of these keys is read by the job named "
        "beside it, whose predictions and report are the key's (a version listed as deleted no longer existed "
        "when the job was planned).",
    }


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
