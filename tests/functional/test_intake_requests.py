"""What the intake asks S3 to confirm the dropped versions: a ListObjectVersions page for a folder with
several of them, a HeadObject for the others; even when the event carries version, size and ETag.

Confirming is what proves the version still exists (an event can be stale: the version deleted for good
since; or forged into the queue) and which form of a `+`/`%xx` key names it. Skipping it would save the
requests but let one missing version fail the whole transform job it joined. A page of up to 1,000
versions proves as much as a HEAD for every key of the range it covers (S3 lists are strongly
consistent), so a burst costs a request per thousand files, not one per file
(domain/object_versions.py). Events stay exactly as S3 sends them: the sandbox's faithful S3 ->
EventBridge events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from sagepilot.domain import object_versions
from sagepilot.events import queued_messages

from .conftest import Data, Jobs


def handle(intake: Any, event: dict[str, Any]) -> Any:
    return intake.handle(queued_messages(event))


def s3_calls(clients: Callable[[str], Any]) -> Counter[str]:
    """Calls of the S3 client the intake shares with the test, by operation (from now on)."""
    calls: Counter[str] = Counter()
    clients("s3").meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
    return calls


def assert_plan_matches_s3(clients: Callable[[str], Any], data: Data, job: Any) -> None:
    """Each input's size and ETag in the job's plan are what a HEAD of its version says."""
    s3 = clients("s3")
    for item in job.plan["inputs"]:
        head = s3.head_object(Bucket=data.name, Key=item["key"], VersionId=item["versionId"])
        assert (item["size"], item["etag"]) == (head["ContentLength"], head["ETag"].strip('"'))


ODD = ["incoming/churn/a.csv", "incoming/churn/with space.csv", "incoming/churn/año/señal.csv",
       "incoming/churn/plus+sign.csv", "incoming/churn/100%25.csv"]  # fmt: skip


def test_a_burst_in_one_folder_is_confirmed_by_one_listing_not_a_head_per_file(
    clients, data, registry, intake_queue, intake, jobs: Jobs
):
    registry.register("churn")
    dropped = {key: data.drop(key, b"1,2\n" * (i + 1)) for i, key in enumerate(ODD)}
    calls = s3_calls(clients)
    outcome = handle(intake, intake_queue.receive())
    assert len(outcome.jobs_started) == 1 and outcome.failed_message_ids == []
    assert (calls["ListObjectVersions"], calls["HeadObject"]) == (1, 0)
    (job,) = jobs.assert_each_version_in_exactly_one_job(set(dropped.items()))
    assert_plan_matches_s3(clients, data, job)


def test_a_lone_file_in_its_folder_is_confirmed_with_head_object(clients, data, registry, intake_queue, intake, jobs):
    registry.register("churn")
    registry.register("fraud")
    dropped = {key: data.drop(key) for key in ["incoming/churn/a.csv", "incoming/fraud/plus+sign.csv"]}
    calls = s3_calls(clients)
    outcome = handle(intake, intake_queue.receive())
    assert len(outcome.jobs_started) == 2
    assert (calls["ListObjectVersions"], calls["HeadObject"]) == (0, 2)
    for job in jobs.assert_each_version_in_exactly_one_job(set(dropped.items())):
        assert_plan_matches_s3(clients, data, job)


def test_a_folder_crowded_past_the_page_budget_is_confirmed_by_head_beyond_what_was_listed(
    monkeypatch, clients, data, registry, intake_queue, intake, jobs
):
    """Pages of 4 versions and a budget of 1 page: the page proves its first 3 keys (the 4th may have more
    versions on the next page); the other files get a HeadObject each. Nothing is lost or taken twice."""
    monkeypatch.setattr("sagepilot.adapters.s3.PAGE_SIZE", 4)
    registry.register("churn")
    dropped = {f"incoming/churn/{i:02}.csv": data.drop(f"incoming/churn/{i:02}.csv") for i in range(12)}
    calls = s3_calls(clients)
    outcome = handle(intake, intake_queue.receive())
    assert outcome.failed_message_ids == [] and outcome.ignored == 0
    assert (calls["ListObjectVersions"], calls["HeadObject"]) == (1, 12 - 3)
    jobs.assert_each_version_in_exactly_one_job(set(dropped.items()))


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "headed"])
def test_listing_and_head_agree_on_deleted_overwritten_and_hidden_versions(
    listed, monkeypatch, s3, clients, data, registry, intake_queue, intake, jobs
):
    """The same drops confirmed by a listing, and by a HEAD each (listing switched off), end the same: a
    version deleted for good is skipped, an overwritten one and one hidden by a delete marker still exist."""
    if not listed:
        monkeypatch.setattr(object_versions, "MIN_KEYS_TO_LIST", 10**6)
    registry.register("churn")
    good = data.drop("incoming/churn/good.csv")
    gone = data.drop("incoming/churn/gone.csv")
    s3.delete_object(Bucket=data.name, Key="incoming/churn/gone.csv", VersionId=gone)
    old = data.drop("incoming/churn/twice.csv", b"1\n")
    hidden = data.drop("incoming/churn/hidden.csv")
    s3.delete_object(Bucket=data.name, Key="incoming/churn/hidden.csv")  # a delete marker on top
    event = intake_queue.receive()
    new = data.drop("incoming/churn/twice.csv", b"2\n")
    calls = s3_calls(clients)
    outcome = handle(intake, event)
    assert (calls["ListObjectVersions"], calls["HeadObject"]) == ((1, 0) if listed else (0, 4))
    assert (outcome.ignored, outcome.rejected, outcome.failed_message_ids) == (1, [], [])
    (job,) = jobs.assert_each_version_in_exactly_one_job(
        {("incoming/churn/good.csv", good), ("incoming/churn/twice.csv", old), ("incoming/churn/hidden.csv", hidden)}
    )
    assert_plan_matches_s3(clients, data, job)
    handle(intake, intake_queue.receive())  # the newer version of twice.csv: a job of its own
    jobs.assert_each_version_in_exactly_one_job(
        {("incoming/churn/good.csv", good), ("incoming/churn/twice.csv", old), ("incoming/churn/hidden.csv", hidden),
         ("incoming/churn/twice.csv", new)}
    )  # fmt: skip
