"""Which transform job failures are retried, and what the user is told when one is not."""

from __future__ import annotations

import pytest

from sagepilot.domain.failures import is_retryable_failure, job_failure_rejection, quota_rejection

JOB = "sagepilot-churn-0123456789abcdef"


@pytest.mark.parametrize(
    "reason",
    [
        "InternalServerError: We encountered an internal error. Please try again.",
        "CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML "
        "instance type.",
        "ThrottlingException: Rate exceeded",
        "ServiceUnavailable",
        "ResourceLimitExceeded: The account-level service limit 'ml.m5.xlarge for transform job usage' is 0",
        "  InternalServerError: leading whitespace is ignored",
    ],
)
def test_transient_failures_are_retryable(reason):
    assert is_retryable_failure(reason) is True


@pytest.mark.parametrize(
    "reason",
    [
        "ClientError: See job logs for more information",
        "AlgorithmError: See job logs for more information",
        "ClientError: Failed to download data. Access Denied",
        "",
        "SYSTEM FAILURE",
        "The job failed with InternalServerError",  # only a prefix counts
        "internalservererror: lower case is not SageMaker's spelling",
    ],
)
def test_client_and_algorithm_failures_are_not_retryable(reason):
    assert is_retryable_failure(reason) is False


def test_a_failed_job_names_the_job_the_reason_and_the_logs():
    rejection = job_failure_rejection(JOB, "Failed", "ClientError: See job logs for more information", 1)
    assert rejection.code == "JOB_FAILED"
    assert rejection.reason == f"Transform job {JOB} failed: ClientError: See job logs for more information"
    assert "/aws/sagemaker/TransformJobs" in rejection.action


def test_a_failed_job_after_retries_says_how_many_attempts():
    rejection = job_failure_rejection(JOB, "Failed", "InternalServerError", 3)
    assert rejection.reason == f"Transform job {JOB} failed after 3 attempts: InternalServerError"


def test_a_failed_job_without_reason_says_so():
    assert job_failure_rejection(JOB, "Failed", "", 1).reason.endswith("no reason given")


def test_a_stopped_job_is_not_a_failure():
    rejection = job_failure_rejection(JOB, "Stopped", "", 1)
    assert rejection.code == "JOB_STOPPED"
    assert JOB in rejection.reason
    assert "upload it again" in rejection.action


def test_quota_rejection_names_the_instance_type_and_the_quota():
    rejection = quota_rejection("ml.m5.xlarge", "The account-level service limit is 0 Instances")
    assert rejection.code == "QUOTA_EXCEEDED"
    assert "ml.m5.xlarge" in rejection.reason
    assert "The account-level service limit is 0 Instances" in rejection.reason
    assert "'ml.m5.xlarge for transform job usage'" in rejection.action
    assert "FallbackInstanceType" in rejection.action



@pytest.mark.parametrize(("status", "reason", "split"), [
    ("Failed", "ClientError: See job logs. s3://b/incoming/g/a.csv (records 1-2): the model returned 400: bad", True),
    ("Failed", "AlgorithmError: See job logs for more information.", True),
    ("Failed", "ClientError: Failed to decompress s3://b/x.csv.gz with Gzip: Not a gzipped file", True),
    ("Failed", "ClientError: Record 3 is 7,340,033 bytes, larger than MaxPayloadInMB (6 MB).", True),
    ("Failed", "ClientError: Failed to download data. s3://b/incoming/g/a.csv does not exist.", True),
    ("Failed", "ClientError: Failed to download model data for container 1 from URL s3://m/model.tar.gz.", False),
    ("Failed", "ClientError: The manifest file s3://b/m.json is not valid", False),
    ("Failed", "ClientError: Access Denied (Service: Amazon S3; Status Code: 403)", False),
    ("Failed", "InternalServerError: We encountered an internal error.", False),
    ("Stopped", "", False),
])
def test_which_failures_one_input_can_cause(status, reason, split):
    from sagepilot.domain.failures import input_may_cause

    assert input_may_cause(status, reason) is split
