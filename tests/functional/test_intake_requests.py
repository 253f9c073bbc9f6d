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
from sagepilot.domain.object_versions import FIRST_PAGE_FLOOR, PAGE_SIZE
from sagepilot.events import queued_messages

from .conftest import Data, Jobs, event_key, sqs_event


def handle(intake: Any, event: dict[str, Any]) -> Any:
    return intake.handle(queued_messages(event))


def s3_calls(clients: Callable[[str], Any]) -> Counter[str]:
    """Calls of the S3 client the intake shares with the test, by operation (from now on)."""
    calls: Counter[str] = Counter()
    clients("s3").meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
    return calls


def listing_requests(clients: Callable[[str], Any]) -> list[dict[str, Any]]:
    """The parameters of each ListObjectVersions request the intake makes (from now on)."""
    asked: list[dict[str, Any]] = []
    clients("s3").meta.events.register(
        "before-parameter-build.s3.ListObjectVersions", lambda params, **_: asked.append(dict(params))
    )
    return asked


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
    monkeypatch.setattr(object_versions, "PAGE_SIZE", 4)
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


def test_a_batch_ahead_of_its_burst_asks_a_small_first_page_not_a_thousand_keys_after_the_wanted_ones(
    clients, data, registry, intake_queue, intake, jobs
):
    """The intake reads the first files of a burst while the rest keep arriving: the one page it asks is
    sized to the few keys it wants, and proves them all (no HEAD), however many keys follow."""
    registry.register("churn")
    dropped = {f"incoming/churn/part-{i:05}.csv": data.drop(f"incoming/churn/part-{i:05}.csv") for i in range(5)}
    event = intake_queue.receive()
    for i in range(5, 5 + 2 * FIRST_PAGE_FLOOR):  # the burst goes on
        data.drop(f"incoming/churn/part-{i:05}.csv")
    calls, asked = s3_calls(clients), listing_requests(clients)
    outcome = handle(intake, event)
    assert outcome.failed_message_ids == [] and outcome.ignored == 0 and outcome.rejected == []
    assert (calls["ListObjectVersions"], calls["HeadObject"]) == (1, 0)
    assert [a["MaxKeys"] for a in asked] == [FIRST_PAGE_FLOOR] and FIRST_PAGE_FLOOR < PAGE_SIZE
    jobs.assert_each_version_in_exactly_one_job(set(dropped.items()))


def test_keys_crowding_between_the_wanted_ones_are_covered_by_full_pages_continuing_inside_a_key(
    s3, clients, data, registry, intake_queue, intake, jobs
):
    """Thirty other keys between each two wanted ones, each wanted key written three times: the first page
    (sized to the 30 wanted versions) stops inside 03.csv's versions, and the next one, continued from that
    version's marker, lists its older versions and the rest of the range. Every version is confirmed by
    the listing within the budget one full page had (no HEAD), none is missed: a version the listing
    skipped would be taken for deleted and ignored."""
    registry.register("churn")
    for i in range(10):
        for j in range(30):
            data.drop(f"incoming/churn/{i:02}-{j:02}.csv")  # before {i:02}.csv: '-' sorts before '.'
    wanted = {f"incoming/churn/{i:02}.csv" for i in range(10)}
    dropped = {(key, data.drop(key, f"{n}\n".encode())) for key in sorted(wanted) for n in range(3)}
    event = sqs_event([r for r in intake_queue.receive()["Records"] if event_key(r) in wanted])
    assert len(event["Records"]) == 30
    newest = s3.list_object_versions(Bucket=data.name, Prefix="incoming/churn/03.csv")["Versions"][0]["VersionId"]
    calls, asked = s3_calls(clients), listing_requests(clients)
    outcome = handle(intake, event)
    assert outcome.failed_message_ids == [] and outcome.ignored == 0 and outcome.rejected == []
    assert (calls["ListObjectVersions"], calls["HeadObject"]) == (2, 0)
    # 00.csv's 3 versions, 30 keys and 01.csv's 3, 30 and 02.csv's 3, 30: the 100th entry is 03.csv's newest.
    assert [a["MaxKeys"] for a in asked] == [FIRST_PAGE_FLOOR, PAGE_SIZE - FIRST_PAGE_FLOOR]
    assert (asked[1]["KeyMarker"], asked[1]["VersionIdMarker"]) == ("incoming/churn/03.csv", newest)
    jobs.assert_each_version_in_exactly_one_job(dropped)  # the older two of each key: superseded in the job


@pytest.mark.parametrize("first_page", ["small", "full"])
def test_a_small_first_page_settles_exactly_the_keys_full_pages_settled(
    first_page, monkeypatch, clients, data, registry, intake_queue, intake, jobs
):
    """Pages of 10 versions, a budget of one page: a first page of 4 then one of 6 reach as far as one of
    10 did, so the same wanted keys fall back to HeadObject (the 6 past the budget), at one request more."""
    monkeypatch.setattr(object_versions, "PAGE_SIZE", 10)
    monkeypatch.setattr(object_versions, "FIRST_PAGE_FLOOR", 4 if first_page == "small" else 10)
    monkeypatch.setattr(object_versions, "FIRST_PAGE_PER_WANTED", 0)  # the floor alone sizes the first page
    registry.register("churn")
    dropped = {f"incoming/churn/{i:02}.csv": data.drop(f"incoming/churn/{i:02}.csv") for i in range(0, 30, 2)}
    for i in range(1, 30, 2):
        data.drop(f"incoming/churn/{i:02}.csv")  # another key between each two wanted ones
    event = sqs_event([r for r in intake_queue.receive()["Records"] if event_key(r) in dropped])
    calls, asked = s3_calls(clients), listing_requests(clients)
    outcome = handle(intake, event)
    assert outcome.failed_message_ids == [] and outcome.ignored == 0
    # 10 entries from 00.csv: 00..09, the page stopping in 09.csv (its other versions may follow): 00..08
    # proved, 5 wanted keys; the other 10 wanted keys are HEADed.
    assert calls["HeadObject"] == 10
    assert [a["MaxKeys"] for a in asked] == ([4, 6] if first_page == "small" else [10])
    jobs.assert_each_version_in_exactly_one_job(set(dropped.items()))
