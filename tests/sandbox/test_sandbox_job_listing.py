"""The sandbox's ListTransformJobs filters, sorts and then pages, as SageMaker does
(sagepilot_sandbox/moto_patches/job_listing.py).

moto 5 alone cuts a page of MaxResults jobs first and filters it after (a NameContains page could come back
empty while matching jobs exist) and ignores SortBy/SortOrder. The scheduler asks for the stack's latest job
(NameContains, CreationTime, Descending, MaxResults 1): under moto it was given the first job ever created.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from moto.sagemaker.exceptions import AWSValidationException

from sagepilot_sandbox.moto_patches import job_listing

T0 = datetime(2026, 12, 5, tzinfo=UTC)


def backend(*jobs: tuple[str, int, str]) -> Any:
    made = {
        name: SimpleNamespace(
            transform_job_name=name,
            arn=f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/{name}",
            creation_time=T0 + timedelta(seconds=at),
            last_modified_time=T0 + timedelta(seconds=at),
            transform_end_time=None,
            transform_job_status=status,
        )
        for name, at, status in jobs
    }
    return SimpleNamespace(transform_jobs=made)


def names(page: dict[str, Any]) -> list[str]:
    return [j["TransformJobName"] for j in page["TransformJobSummaries"]]


def listing(b: Any, sort: tuple[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "next_token": None,
        "max_results": None,
        "creation_time_after": None,
        "creation_time_before": None,
        "last_modified_time_after": None,
        "last_modified_time_before": None,
        "name_contains": None,
        "status_equals": None,
    }
    args.update(kwargs)
    token = job_listing._SORT.set(sort) if sort else None
    try:
        return job_listing.list_transform_jobs(b, **args)
    finally:
        if token is not None:
            job_listing._SORT.reset(token)


JOBS = (
    ("other-a-1", 0, "Completed"),
    ("sp-a-1", 1, "Completed"),
    ("sp-b-1", 2, "InProgress"),
    ("other-b-2", 3, "Failed"),
)


def test_the_latest_job_of_a_prefix_is_the_first_of_a_one_job_page():
    page = listing(backend(*JOBS), name_contains="sp-", max_results=1)
    assert names(page) == ["sp-b-1"]  # moto alone: [] (it cut ["other-a-1"] first, then filtered)
    assert page["NextToken"] == "1"
    assert names(listing(backend(*JOBS), name_contains="sp-", max_results=1, next_token="1")) == ["sp-a-1"]


def test_sort_by_and_sort_order_are_honoured_and_ties_keep_the_creation_order():
    b = backend(*JOBS, ("sp-c-1", 2, "Completed"))
    assert names(listing(b)) == ["other-b-2", "sp-c-1", "sp-b-1", "sp-a-1", "other-a-1"]
    assert names(listing(b, ("CreationTime", "Ascending"))) == ["other-a-1", "sp-a-1", "sp-b-1", "sp-c-1", "other-b-2"]
    assert names(listing(b, ("Name", "Ascending"), status_equals="Completed")) == ["other-a-1", "sp-a-1", "sp-c-1"]


def test_a_token_beyond_the_list_is_refused():
    with pytest.raises(AWSValidationException):
        listing(backend(*JOBS), next_token="9")


def test_through_the_api_the_sort_parameters_reach_the_listing(sagemaker: Any) -> None:
    from moto.sagemaker.models import sagemaker_backends

    jobs = sagemaker_backends["123456789012"]["us-east-1"].transform_jobs
    jobs.update(backend(*JOBS).transform_jobs)  # as CreateTransformJob would have recorded them, in this order
    assert names(sagemaker.list_transform_jobs(NameContains="sp-", MaxResults=1)) == ["sp-b-1"]
    by_name = sagemaker.list_transform_jobs(SortBy="Name", SortOrder="Ascending")
    assert names(by_name) == ["other-a-1", "other-b-2", "sp-a-1", "sp-b-1"]
    with pytest.raises(sagemaker.exceptions.ClientError):
        sagemaker.list_transform_jobs(SortOrder="Sideways")  # moto's own checks of the parameters still apply


def test_a_page_is_ten_jobs_when_max_results_is_not_given_and_at_most_a_hundred():
    b = backend(*((f"sp-{i:03}", i, "Completed") for i in range(120)))
    first = listing(b)
    assert names(first) == [f"sp-{i:03}" for i in range(119, 109, -1)]  # moto alone: all 120
    assert first["NextToken"] == "10"
    assert len(names(listing(b, max_results=100))) == 100
    with pytest.raises(AWSValidationException, match="less than or equal to 100"):
        listing(b, max_results=101)
