"""Issue 16, point 3, on the paths test_capacity_wait.py does not take: a job that starts late uses a model
that is still approved. The runbook tells people to reject a broken model to stop its use; a transform
job's retry, and a job that waited for its group's slot (MaxConcurrentJobsPerGroup), check their version
before they start: planned again on the group's newest Approved version, or, with none left, their files
are rejected NO_APPROVED_MODEL."""

from __future__ import annotations

from typing import Any

import pytest

from sagepilot.events import parse_transform_job_change, queued_messages

from .conftest import transform_jobs

INTERNAL = "InternalServerError: We encountered an internal error. Please try again."
KEYS = ["incoming/churn/a.csv", "incoming/churn/b.csv"]


def in_progress(sagemaker: Any, group: str = "churn") -> list[str]:
    listed = transform_jobs(sagemaker, StatusEquals="InProgress")
    return sorted(j["TransformJobName"] for j in listed if j["TransformJobName"].startswith(f"sagepilot-{group}-"))


def finish(completion: Any, completions: Any, name: str, status: str, reason: str = "") -> list[Any]:
    return [completion.handle(parse_transform_job_change(e)) for e in completions.finish(name, status, reason)]


def predicted_version(data: Any, key: str) -> int:
    return int(data.json(f"predictions/{key.removeprefix('incoming/')}.report.json")["modelPackageVersion"])


@pytest.mark.parametrize("newer_approved", [True, False], ids=["replanned-on-the-newest", "no-approved-model-left"])
def test_a_retry_never_runs_on_a_model_rejected_since_its_first_attempt(
    newer_approved, data, registry, intake_queue, intake, completion, completions, jobs, sagemaker
) -> None:
    v1 = registry.register("churn")
    dropped = {key: data.drop(key) for key in KEYS}
    (name,) = intake.handle(queued_messages(intake_queue.receive())).jobs_started
    sagemaker.update_model_package(ModelPackageArn=v1, ModelApprovalStatus="Rejected")
    v2 = registry.register("churn") if newer_approved else None
    finish(completion, completions, name, "Failed", INTERNAL)  # a failure a retry can fix
    running = in_progress(sagemaker)
    if newer_approved:
        (again,) = running
        assert jobs.get(again).plan["modelPackageArn"] == v2
        for outcome in finish(completion, completions, again, "Completed"):
            assert outcome.action in ("reported", "duplicate")
        assert {predicted_version(data, key) for key in KEYS} == {2}
        assert data.keys("rejected/") == []
        jobs.assert_each_version_in_exactly_one_job(set(dropped.items()))
    else:
        assert running == []  # no retry on v1
        for key, version in dropped.items():
            report = data.json(f"rejected/{key.removeprefix('incoming/')}.json")
            assert (report["code"], report["input"]["versionId"]) == ("NO_APPROVED_MODEL", version)


@pytest.mark.parametrize("stack_overrides", [{"MaxConcurrentJobsPerGroup": "1", "MaxFilesPerJob": "1"}])
def test_a_job_waiting_for_its_groups_slot_starts_on_the_newest_approved_version(
    data, registry, intake_queue, intake, completion, completions, jobs, sagemaker
) -> None:
    v1 = registry.register("churn")
    dropped = {key: data.drop(key) for key in KEYS}
    intake.handle(queued_messages(intake_queue.receive()))
    (first,) = in_progress(sagemaker)  # the other waits for the group's slot
    assert jobs.get(first).plan["modelPackageArn"] == v1
    sagemaker.update_model_package(ModelPackageArn=v1, ModelApprovalStatus="Rejected")
    v2 = registry.register("churn")
    finish(completion, completions, first, "Completed")  # the slot frees
    (second,) = in_progress(sagemaker)
    assert jobs.get(second).plan["modelPackageArn"] == v2
    finish(completion, completions, second, "Completed")
    versions = sorted(predicted_version(data, key) for key in KEYS)
    assert versions == [1, 2]  # the first ran before the rejection; the waiting one did not start on v1
    jobs.assert_each_version_in_exactly_one_job(set(dropped.items()))
