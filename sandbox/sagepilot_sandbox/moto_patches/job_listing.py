"""ListTransformJobs as SageMaker answers it (installed by faithful.install()).

moto pages first and filters after (a page of MaxResults jobs is cut from all of them, then NameContains and
StatusEquals drop from it, so a page may come back short or empty while matching jobs exist), and it ignores
SortBy and SortOrder (its jobs come in creation order). SageMaker filters, sorts (SortBy `CreationTime` by
default, SortOrder `Descending` by default), then pages. Ties keep the creation order (the later first when
descending). A page holds MaxResults jobs, 10 when it is not given, at most 100 (moto: every job when not
given, any number asked for).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

DEFAULT_MAX_RESULTS = 10  # SageMaker's page when MaxResults is not given
MAX_RESULTS = 100  # the most SageMaker accepts
_SORT: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("transform_job_sort")
_KEYS: dict[str, Callable[[Any], Any]] = {
    "CreationTime": lambda job: job.creation_time,
    "Name": lambda job: job.transform_job_name,
    "Status": lambda job: job.transform_job_status,
}


def list_transform_jobs(
    self: Any,
    next_token: str | None,
    max_results: int | None,
    creation_time_after: Any,
    creation_time_before: Any,
    last_modified_time_after: Any,
    last_modified_time_before: Any,
    name_contains: str | None,
    status_equals: str | None,
) -> dict[str, Any]:
    from moto.sagemaker.exceptions import AWSValidationException

    if max_results is not None and max_results > MAX_RESULTS:
        raise AWSValidationException(
            f"1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy constraint: "
            f"Member must have value less than or equal to {MAX_RESULTS}"
        )
    page_size = DEFAULT_MAX_RESULTS if max_results is None else max_results

    def kept(job: Any) -> bool:
        return (
            (name_contains is None or name_contains in job.transform_job_name)
            and (creation_time_after is None or job.creation_time > creation_time_after)
            and (creation_time_before is None or job.creation_time < creation_time_before)
            and (last_modified_time_after is None or job.last_modified_time > last_modified_time_after)
            and (last_modified_time_before is None or job.last_modified_time < last_modified_time_before)
            and (status_equals is None or job.transform_job_status == status_equals)
        )

    sort_by, sort_order = _SORT.get(("CreationTime", "Descending"))
    key = _KEYS[sort_by]
    ordered = [job for _, job in sorted(
        ((index, job) for index, job in enumerate(self.transform_jobs.values()) if kept(job)),
        key=lambda pair: (key(pair[1]), pair[0]),
        reverse=sort_order == "Descending",
    )]  # fmt: skip
    try:
        start = int(next_token) if next_token else 0
        if start < 0 or start > len(ordered):
            raise ValueError(next_token)
    except ValueError:
        raise AWSValidationException('Invalid pagination token because "{0}".') from None
    end = min(start + page_size, len(ordered))
    return {
        "TransformJobSummaries": [
            {
                "TransformJobName": job.transform_job_name,
                "TransformJobArn": job.arn,
                "CreationTime": job.creation_time,
                "TransformEndTime": job.transform_end_time,
                "LastModifiedTime": job.last_modified_time,
                "TransformJobStatus": job.transform_job_status,
            }
            for job in ordered[start:end]
        ],
        "NextToken": str(end) if end < len(ordered) else None,
    }


def install() -> None:
    from moto.sagemaker import models, responses

    backend_cls: Any = models.SageMakerModelBackend
    response_cls: Any = responses.SageMakerResponse
    if getattr(backend_cls, "_faithful_transform_listing", False):
        return
    original = response_cls.list_transform_jobs

    def listing(self: Any) -> Any:
        token = _SORT.set((self._get_param("SortBy", "CreationTime"), self._get_param("SortOrder", "Descending")))
        try:
            return original(self)  # moto's own checks of the parameters, then the backend below
        finally:
            _SORT.reset(token)

    backend_cls.list_transform_jobs = list_transform_jobs
    response_cls.list_transform_jobs = listing
    backend_cls._faithful_transform_listing = True
