"""What the intake asks S3: one HeadObject per file, even when the event carries version, size and ETag.

The HEAD is what proves the version still exists (an event can be stale: the version deleted for good
since; or forged into the queue) and which form of a `+`/`%xx` key names it. Skipping it would save a
request per file but let one missing version fail the whole transform job it joined, so the intake pays
it (services/batch_intake.BatchIntake._inspect). Events stay exactly as S3 sends them: the sandbox's
faithful S3 -> EventBridge events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from sagepilot.events import queued_messages


def handle(intake: Any, event: dict[str, Any]) -> Any:
    return intake.handle(queued_messages(event))


def s3_calls(clients: Callable[[str], Any]) -> Counter[str]:
    """Calls of the S3 client the intake shares with the test, by operation (from now on)."""
    calls: Counter[str] = Counter()
    clients("s3").meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
    return calls


def test_each_file_is_confirmed_with_one_head_object(clients, data, registry, intake_queue, intake, jobs):
    registry.register("churn")
    keys = ["incoming/churn/a.csv", "incoming/churn/with space.csv", "incoming/churn/año/señal.csv",
            "incoming/churn/plus+sign.csv", "incoming/churn/100%25.csv"]  # fmt: skip
    dropped = {key: data.drop(key, b"1,2\n" * (i + 1)) for i, key in enumerate(keys)}
    calls = s3_calls(clients)
    outcome = handle(intake, intake_queue.receive())
    assert len(outcome.jobs_started) == 1 and outcome.failed_message_ids == []
    assert calls["HeadObject"] == len(keys)
    (job,) = jobs.assert_each_version_in_exactly_one_job(set(dropped.items()))
    s3 = clients("s3")
    for item in job.plan["inputs"]:
        head = s3.head_object(Bucket=data.name, Key=item["key"], VersionId=item["versionId"])
        assert (item["size"], item["etag"]) == (head["ContentLength"], head["ETag"].strip('"'))


def test_a_version_deleted_for_good_before_intake_is_skipped_and_does_not_sink_the_job(
    s3, data, registry, intake_queue, intake, jobs
):
    """The HEAD's reason to be: without it, the job would name the deleted version and SageMaker's download
    of it would fail the job, and with it the good file beside it."""
    registry.register("churn")
    good = data.drop("incoming/churn/good.csv")
    gone = data.drop("incoming/churn/gone.csv")
    s3.delete_object(Bucket=data.name, Key="incoming/churn/gone.csv", VersionId=gone)
    outcome = handle(intake, intake_queue.receive())
    assert len(outcome.jobs_started) == 1 and outcome.rejected == [] and outcome.failed_message_ids == []
    jobs.assert_each_version_in_exactly_one_job({("incoming/churn/good.csv", good)})
