"""Versions of one key that end up in different jobs: how they are ordered, which job reads which, what is
recorded for the ones not read; and which SageMaker errors are worth another delivery."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from sagepilot.adapters.s3 import DataBucket
from sagepilot.adapters.sagemaker import translate
from sagepilot.domain.layout import DroppedKey, parse_dropped_key
from sagepilot.domain.reports import job_summary, superseded_only_summary
from sagepilot.domain.transform_plan import (
    InputFile,
    ModelVersion,
    Newer,
    TransformSettings,
    plan_from_record,
    plan_jobs,
    recency,
    sequencer_order,
    settle,
)
from sagepilot.errors import CapacityError, PermanentError, TransientError

BUCKET = "b"
MODEL = ModelVersion("churn", "arn:aws:sagemaker:us-east-1:1:model-package/churn/3", 3)
SETTINGS = TransformSettings("sagepilot", "ml.m5.xlarge", 4, 100, 6, 1, 1000)


def make_file(rel: str, version: str | None, sequencer: str = "0A", etag: str = "e") -> InputFile:
    dropped = parse_dropped_key(f"incoming/churn/{rel}")
    assert isinstance(dropped, DroppedKey)
    return InputFile(BUCKET, dropped, version, 10, etag, sequencer)


# ---------------------------------------------------------------------------------------- recency
@given(a=st.integers(0, 16**24), b=st.integers(0, 16**24), width_a=st.integers(0, 30), width_b=st.integers(0, 30))
def test_recency_strings_sort_like_the_sequencers_they_hold(a, b, width_a, width_b):
    """The state table compares `recency` strings in a condition: they must order versions as the numbers."""
    first = make_file("t.csv", "v1", format(a, f"0{width_a}X"))
    second = make_file("t.csv", "v2", format(b, f"0{width_b}X"))
    if a != b:
        assert (recency(first) < recency(second)) == (a < b)
    else:
        assert recency(first) < recency(second)  # equal sequencers: the version id decides, the same way always


@pytest.mark.parametrize("sequencer", ["", "not-hex", "-1"])
def test_a_missing_or_unreadable_sequencer_is_older_than_any_real_one(sequencer):
    assert sequencer_order(sequencer) == -1
    assert recency(make_file("t.csv", "zzz", sequencer)) < recency(make_file("t.csv", "aaa", "0"))
    # ...within a batch; across jobs such a version is never skipped nor compared (see JobLauncher._finalise)
    assert not make_file("t.csv", "zzz", sequencer).ordered and make_file("t.csv", "aaa", "0").ordered


# ---------------------------------------------------------------------------------------- settling a plan
def test_an_input_a_newer_version_already_holds_is_superseded_and_not_read():
    old = make_file("t.csv", "old", "01")
    other = make_file("u.csv", "u1", "05")
    (plan,) = plan_jobs([old, other], MODEL, SETTINGS)
    mine = {f.file_id: plan.job_name for f in plan.all_files}
    settled = settle(plan, mine, {old.file_id: Newer("new", "job-1")})
    assert settled.inputs == (other,)
    assert [(f.version_id, f.superseded_by) for f in settled.superseded] == [("old", Newer("new", "job-1"))]
    assert settled.manifest()[1:] == ["u.csv"]


def test_an_older_version_planned_beside_a_newer_one_that_another_job_owns_names_that_job():
    old, new = make_file("t.csv", "old", "01"), make_file("t.csv", "new", "02")
    (plan,) = plan_jobs([old, new], MODEL, SETTINGS)
    assert plan.inputs == (new,) and plan.superseded == (old,)
    settled = settle(plan, {new.file_id: "job-1", old.file_id: plan.job_name}, {})
    assert settled.inputs == ()
    assert [(f.version_id, f.superseded_by) for f in settled.superseded] == [("old", Newer("new", "job-1"))]


def test_an_older_version_planned_beside_the_newer_one_it_reads_is_superseded_within_the_job():
    old, new = make_file("t.csv", "old", "01"), make_file("t.csv", "new", "02")
    (plan,) = plan_jobs([old, new], MODEL, SETTINGS)
    settled = settle(plan, dict.fromkeys([old.file_id, new.file_id], plan.job_name), {})
    assert settled.inputs == (new,)
    assert [(f.version_id, f.superseded_by) for f in settled.superseded] == [("old", None)]


def test_when_the_read_version_is_itself_superseded_its_older_sibling_names_the_newest():
    old, mid = make_file("t.csv", "old", "01"), make_file("t.csv", "mid", "02")
    (plan,) = plan_jobs([old, mid], MODEL, SETTINGS)
    mine = dict.fromkeys([old.file_id, mid.file_id], plan.job_name)
    settled = settle(plan, mine, {mid.file_id: Newer("new", "job-9")})
    assert settled.inputs == ()
    assert {f.version_id: f.superseded_by for f in settled.superseded} == {
        "old": Newer("new", "job-9"),
        "mid": Newer("new", "job-9"),
    }


def test_versions_another_job_claimed_are_left_out_entirely():
    a, b = make_file("a.csv", "1"), make_file("b.csv", "1")
    (plan,) = plan_jobs([a, b], MODEL, SETTINGS)
    settled = settle(plan, {a.file_id: plan.job_name, b.file_id: "job-1"}, {})
    assert settled.inputs == (a,) and settled.superseded == ()


def test_the_superseding_version_survives_the_stored_plan():
    old = make_file("t.csv", "old", "01")
    (plan,) = plan_jobs([old], MODEL, SETTINGS)
    settled = settle(plan, {old.file_id: plan.job_name}, {old.file_id: Newer(None, "job-1")})
    assert plan_from_record(settled.to_record()) == settled


# ---------------------------------------------------------------------------------------- the records
def test_a_plan_with_only_superseded_versions_is_recorded_as_such():
    old = make_file("t.csv", "old", "01")
    (plan,) = plan_jobs([old], MODEL, SETTINGS)
    settled = settle(plan, {old.file_id: plan.job_name}, {old.file_id: Newer("new", "job-1")})
    report = superseded_only_summary(settled, at="2026-11-25T08:00:00+00:00")
    assert report["status"] == "Superseded" and report["transformJobName"] is None and report["attempts"] == 0
    assert report["inputs"] == []
    assert report["superseded"] == [
        {**old.describe(), "supersededBy": {"versionId": "new", "transformJobName": "job-1"}}
    ]


def test_an_input_outdated_while_its_job_ran_points_at_the_jobs_own_output():
    a, t = make_file("a.csv", "1"), make_file("t.csv", "old")
    (plan,) = plan_jobs([a, t], MODEL, SETTINGS)
    report = job_summary(
        plan, job_name=plan.job_name, status="Completed", attempts=1, timings={},
        outdated={t.file_id: Newer("new", "job-2")},
    )  # fmt: skip
    entries = {i["key"]: i for i in report["inputs"]}
    assert entries["incoming/churn/a.csv"]["predictions"] == "s3://b/predictions/churn/a.csv.out"
    assert "supersededBy" not in entries["incoming/churn/a.csv"]
    assert entries["incoming/churn/t.csv"]["predictions"] == f"s3://b/jobs/churn/{plan.job_name}/output/t.csv.out"
    assert entries["incoming/churn/t.csv"]["supersededBy"] == {"versionId": "new", "transformJobName": "job-2"}


# ---------------------------------------------------------------------------------------- SageMaker errors
def client_error(code: str, status: int, message: str = "m") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InternalFailure", 500),
        ("ServiceUnavailable", 503),
        ("InternalServerError", 500),
        ("ThrottlingException", 400),
        ("SomethingNew", 502),
    ],
)
def test_throttling_and_server_errors_are_transient(code, status):
    error = translate(client_error(code, status), "CreateTransformJob j")
    assert type(error) is TransientError and code in str(error)


@pytest.mark.parametrize(("code", "status"), [("ValidationException", 400), ("AccessDeniedException", 400)])
def test_the_requests_own_faults_are_permanent(code, status):
    assert type(translate(client_error(code, status), "CreateTransformJob j")) is PermanentError


def test_resource_limit_exceeded_is_a_capacity_error():
    error = translate(client_error("ResourceLimitExceeded", 400), "CreateTransformJob j", "ml.m5.xlarge")
    assert isinstance(error, CapacityError) and error.instance_type == "ml.m5.xlarge"


# ---------------------------------------------------------------------------------------- publishing a copy
class StubS3:
    def __init__(self, error: ClientError | None) -> None:
        self.error = error
        self.calls: list[tuple[str, Any]] = []

    def copy_object(self, **params: Any) -> None:
        self.calls.append(("copy_object", params))
        if self.error:
            raise self.error

    def copy(self, source: dict[str, str], bucket: str, key: str) -> None:
        self.calls.append(("copy", (source, bucket, key)))


def test_a_copy_of_a_missing_output_says_so():
    s3 = StubS3(client_error("NoSuchKey", 404))
    assert DataBucket(s3, "b").copy("jobs/x/output/a.csv.out", "predictions/a.csv.out") is False


def test_an_output_over_five_gigabytes_is_copied_in_parts():
    s3 = StubS3(
        client_error(
            "InvalidRequest",
            400,
            "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120",
        )
    )
    assert DataBucket(s3, "b").copy("jobs/x/output/a.csv.out", "predictions/a.csv.out") is True
    assert s3.calls[-1] == ("copy", ({"Bucket": "b", "Key": "jobs/x/output/a.csv.out"}, "b", "predictions/a.csv.out"))


def test_a_failing_copy_is_transient():
    with pytest.raises(TransientError, match="CopyObject"):
        DataBucket(StubS3(client_error("SlowDown", 503)), "b").copy("s", "d")
