"""Dropped files -> transform jobs, through the stack of template.yaml in the embedded AWS.

Files are uploaded with real PutObject calls; S3's EventBridge events go through the template's
IncomingObjectRule into the IntakeQueue; the queue is read as Lambda's event source mapping reads it
and the batch is handed to the intake service wired as the handler wires it.
"""

from __future__ import annotations

import gzip
import json
import random
import threading
from typing import Any

import pytest

from sagepilot.events import queued_messages

from .conftest import (
    HandlerCrashed,
    aws_snapshot,
    chunks,
    crash_on,
    encoded_key_copy,
    event_key,
    inject_error,
    redelivered,
    response_of,
    sqs_event,
    with_body,
)

BUCKET_PREFIX = "s3://sagepilot-sandbox-databucket"

ODD_KEYS = [
    "incoming/churn/2026-11/with space.csv",
    "incoming/churn/2026-11/plus+sign.csv",
    "incoming/churn/100% sure.csv",
    "incoming/churn/clientes/año señal ü.csv",
    "incoming/churn/at 12:30/time:stamp.csv",
]


def handle(intake: Any, event: dict[str, Any]) -> Any:
    return intake.handle(queued_messages(event))


def versions_of(dropped: dict[str, str]) -> set[tuple[str, str]]:
    return set(dropped.items())


# ------------------------------------------------------------------------------------------ job set-up
def test_one_job_per_group_and_format_with_the_right_configuration(
    stack,
    data,
    registry,
    intake_queue,
    intake,
    jobs,
    sagemaker,
    notifications,
):
    registry.register("churn")
    registry.register("fraud")
    dropped = {key: data.drop(key) for key in ODD_KEYS}
    dropped["incoming/churn/events/day 1.jsonl"] = data.drop("incoming/churn/events/day 1.jsonl", b'{"a": 1}\n')
    dropped["incoming/churn/archive/old+1.csv.gz"] = data.drop(
        "incoming/churn/archive/old+1.csv.gz", gzip.compress(b"1,2\n")
    )
    dropped["incoming/fraud/tx.csv"] = data.drop("incoming/fraud/tx.csv")

    event = intake_queue.receive()
    assert sorted(event_key(r) for r in event["Records"]) == sorted(dropped)
    outcome = handle(intake, event)

    assert outcome.failed_message_ids == []
    assert outcome.rejected == []
    assert len(outcome.jobs_started) == 4
    assert sorted(outcome.jobs_started) == jobs.names()
    found = jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    by_shape = {
        (
            j.plan["group"],
            j.description["TransformInput"]["ContentType"],
            j.description["TransformInput"]["CompressionType"],
        ): j
        for j in found
    }
    assert set(by_shape) == {
        ("churn", "text/csv", "None"),
        ("churn", "application/jsonlines", "None"),
        ("churn", "text/csv", "Gzip"),
        ("fraud", "text/csv", "None"),
    }
    csv_job = by_shape[("churn", "text/csv", "None")]
    assert sorted(csv_job.manifest[1:]) == sorted(k.removeprefix("incoming/churn/") for k in ODD_KEYS)
    # The job reads the dropped keys (nothing is copied on the intake's path; its completion checks the versions).
    assert csv_job.manifest[0] == {"prefix": f"{BUCKET_PREFIX}/incoming/churn/"}
    assert by_shape[("churn", "application/jsonlines", "None")].manifest[1:] == ["events/day 1.jsonl"]
    assert by_shape[("churn", "text/csv", "Gzip")].manifest[1:] == ["archive/old+1.csv.gz"]
    fraud = by_shape[("fraud", "text/csv", "None")]
    assert fraud.manifest == [{"prefix": f"{BUCKET_PREFIX}/incoming/fraud/"}, "tx.csv"]

    for (group, _, _), job in by_shape.items():
        d = job.description
        assert d["TransformJobName"].startswith(f"sagepilot-{group}-")
        assert d["TransformJobStatus"] == "InProgress"
        source = d["TransformInput"]["DataSource"]["S3DataSource"]
        assert source == {
            "S3DataType": "ManifestFile",
            "S3Uri": f"{BUCKET_PREFIX}/jobs/{group}/{job.name}/manifest.json",
        }
        assert d["TransformInput"]["SplitType"] == "Line"
        assert d["BatchStrategy"] == "MultiRecord"
        assert d["MaxPayloadInMB"] == 6
        assert d["MaxConcurrentTransforms"] == 1
        assert d["TransformOutput"]["S3OutputPath"] == f"{BUCKET_PREFIX}/jobs/{group}/{job.name}/output/"
        assert d["TransformResources"] == {
            "InstanceType": stack.parameters["TransformInstanceType"],
            "InstanceCount": 1,
        }
        assert stack.parameters["TransformInstanceType"] == "ml.m5.xlarge"
        assert job.tags["sagepilot:model-package-group"] == group
        assert job.tags["sagepilot:model-package-version"] == "1"
        assert job.tags["sagepilot:input-count"] == str(len(job.manifest) - 1)
        model = sagemaker.describe_model(ModelName=d["ModelName"])
        assert model["PrimaryContainer"]["ModelPackageName"].endswith(f"model-package/{group}/1")
        assert model["ExecutionRoleArn"] == stack.outputs["SageMakerExecutionRoleArn"]
    # Nothing was rejected, so nobody was bothered.
    assert notifications.drain() == []
    assert data.keys("rejected/") == []


def test_url_encoded_keys_name_the_same_files(data, registry, intake_queue, intake, jobs):
    """The same events with keys URL-encoded (quote_plus, as classic S3 notifications do) find the
    same objects: alone they make the same job, mixed with the plain ones they add nothing."""
    registry.register("churn")
    dropped = {key: data.drop(key) for key in ODD_KEYS}
    event = intake_queue.receive()
    encoded = [encoded_key_copy(r) for r in event["Records"]]
    assert {event_key(r) for r in encoded} != set(dropped)  # really encoded

    only_encoded = handle(intake, sqs_event(encoded))
    assert only_encoded.failed_message_ids == [] and only_encoded.rejected == []
    (job,) = jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    assert sorted(job.keys) == sorted(ODD_KEYS)

    mixed = handle(intake, sqs_event(event["Records"] + encoded))
    assert mixed.jobs_started == [] and mixed.jobs_existing == [job.name]
    assert jobs.names() == [job.name]


def test_the_newest_approved_package_is_used(data, registry, intake_queue, intake, jobs, sagemaker):
    registry.register("churn")  # v1, approved
    v2 = registry.register("churn", status="PendingManualApproval")
    registry.approve(v2)
    v3 = registry.register("churn", status="PendingManualApproval")

    data.drop("incoming/churn/a.csv")
    (first,) = handle(intake, intake_queue.receive()).jobs_started
    job = jobs.get(first)
    assert job.tags["sagepilot:model-package-version"] == "2"
    assert job.plan["modelPackageArn"] == v2
    assert sagemaker.describe_model(ModelName=job.description["ModelName"])["PrimaryContainer"] == {
        "ModelPackageName": v2
    }

    # Approving v3 switches later files to it, with a model of its own.
    registry.approve(v3)
    data.drop("incoming/churn/b.csv")
    (second,) = handle(intake, intake_queue.receive()).jobs_started
    later = jobs.get(second)
    assert later.tags["sagepilot:model-package-version"] == "3"
    assert later.description["ModelName"] != job.description["ModelName"]
    assert sagemaker.describe_model(ModelName=later.description["ModelName"])["PrimaryContainer"] == {
        "ModelPackageName": v3
    }


def test_a_new_version_of_a_key_is_a_new_input(data, registry, intake_queue, intake, jobs):
    registry.register("churn")
    first = data.drop("incoming/churn/a.csv", b"1\n")
    handle(intake, intake_queue.receive())
    second = data.drop("incoming/churn/a.csv", b"2\n")
    handle(intake, intake_queue.receive())
    found = jobs.assert_each_version_in_exactly_one_job(
        {("incoming/churn/a.csv", first), ("incoming/churn/a.csv", second)}
    )
    assert len(found) == 2


def test_an_object_deleted_before_intake_is_skipped(s3, data, registry, intake_queue, intake, jobs):
    """A lone file in its folder is confirmed with HeadObject (test_intake_requests.py), which finds no
    object: the event is dropped, nothing is rejected or run."""
    registry.register("churn")
    version = data.drop("incoming/churn/gone+1.csv")
    s3.delete_object(Bucket=data.name, Key="incoming/churn/gone+1.csv", VersionId=version)
    outcome = handle(intake, intake_queue.receive())
    assert (outcome.ignored, outcome.failed_message_ids, outcome.rejected) == (1, [], [])
    assert jobs.names() == []
    assert data.keys("rejected/") == []


# ------------------------------------------------------------------------------------------ idempotency
def test_the_same_batch_five_times_makes_one_job(data, registry, intake_queue, intake, jobs):
    registry.register("churn")
    dropped = {key: data.drop(key) for key in ODD_KEYS}
    event = intake_queue.receive()
    outcomes = [handle(intake, sqs_event([redelivered(r, n) for r in event["Records"]])) for n in range(1, 6)]
    (name,) = outcomes[0].jobs_started
    for later in outcomes[1:]:
        assert (later.jobs_started, later.jobs_existing, later.failed_message_ids) == ([], [name], [])
    jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    assert jobs.names() == [name]


def test_duplicated_s3_events_in_one_batch(monkeypatch, data, registry, intake_queue, intake, jobs):
    from sagepilot_sandbox import faithful

    monkeypatch.setattr(faithful, "s3_event_copies", 3)
    registry.register("churn")
    dropped = {key: data.drop(key) for key in ODD_KEYS[:3]}
    event = intake_queue.receive()
    assert len(event["Records"]) == 9
    outcome = handle(intake, event)
    assert len(outcome.jobs_started) == 1 and outcome.failed_message_ids == []
    jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_same_events_split_across_batches_in_any_order(seed, data, registry, intake_queue, intake, jobs):
    """Every file version lands in exactly one job however its (duplicated) events are batched."""
    registry.register("churn")
    keys = [f"incoming/churn/part {i:02d}.csv" for i in range(10)] + ["incoming/churn/events.jsonl"]
    dropped = {key: data.drop(key) for key in keys}
    records = intake_queue.receive()["Records"]
    rng = random.Random(seed)
    # Five batches: every event at least once, some events twice (S3 and SQS deliver at least once).
    pool = records + rng.sample(records, 6)
    rng.shuffle(pool)
    cut = sorted(rng.sample(range(1, len(pool)), 4))
    batches = chunks(pool, [b - a for a, b in zip([0, *cut], [*cut, len(pool)], strict=True)])

    claimed: set[tuple[str, str]] = set()
    expected_jobs = set()
    for batch in batches:
        outcome = handle(intake, sqs_event(batch))
        assert outcome.failed_message_ids == [] and outcome.rejected == []
        # A batch starts jobs only for the (format of the) files no earlier batch took.
        fresh = {(event_key(r), dropped[event_key(r)]) for r in batch} - claimed
        fresh_formats = {k.rsplit(".", 1)[1] for k, _ in fresh}
        assert len(outcome.jobs_started) == len(fresh_formats)
        expected_jobs |= set(outcome.jobs_started)
        claimed |= fresh
    assert claimed == versions_of(dropped)
    found = jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    assert {j.name for j in found} == expected_jobs


def test_crash_after_one_job_then_redelivery(clients, data, registry, intake_queue, intake, jobs):
    """The function dies creating its second job; the redelivered batch finishes the work."""
    registry.register("churn")
    registry.register("fraud")
    dropped = {
        key: data.drop(key)
        for key in ["incoming/churn/a.csv", "incoming/churn/b c.csv", "incoming/fraud/x.csv", "incoming/fraud/y+z.csv"]
    }
    crash = crash_on(clients("sagemaker"), "CreateTransformJob", nth=2)
    event = intake_queue.receive()
    with pytest.raises(HandlerCrashed):
        handle(intake, event)
    assert crash.injected == 1
    (survivor,) = jobs.names()

    # Lambda failed the whole batch: every message comes back after the visibility timeout.
    intake_queue.release(event["Records"])
    again = intake_queue.receive()
    assert {r["attributes"]["ApproximateReceiveCount"] for r in again["Records"]} == {"2"}
    outcome = handle(intake, again)
    assert outcome.jobs_existing == [survivor]
    assert len(outcome.jobs_started) == 1 and outcome.failed_message_ids == []
    found = jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    assert {j.plan["group"] for j in found} == {"churn", "fraud"}


@pytest.mark.parametrize(
    ("operation", "service", "predicate"),
    [
        ("PutObject", "s3", lambda request: request.url.endswith("/manifest.json")),  # still CLAIMING
        ("CreateModel", "sagemaker", None),  # READY
        ("UpdateItem", "dynamodb", lambda request: b"STARTED" in request.body),  # job created, not recorded
    ],
)
def test_crash_half_way_through_a_job_then_redelivery(
    operation,
    service,
    predicate,
    clients,
    data,
    registry,
    intake_queue,
    intake,
    jobs,
):
    registry.register("churn")
    dropped = {key: data.drop(key) for key in ODD_KEYS}
    crash = crash_on(clients(service), operation, when=predicate)
    event = intake_queue.receive()
    with pytest.raises(HandlerCrashed):
        handle(intake, event)
    assert crash.injected == 1

    intake_queue.release(event["Records"])
    outcome = handle(intake, intake_queue.receive())
    assert outcome.failed_message_ids == []
    assert len(outcome.jobs_started + outcome.jobs_existing) == 1
    jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    # And once more, for good measure: nothing new.
    assert handle(intake, event).jobs_started == []
    assert len(jobs.names()) == 1


def test_an_abandoned_claiming_job_is_taken_over_after_the_claim_timeout(
    clients,
    clock,
    intake_with_clock,
    intake_settings,
    data,
    registry,
    intake_queue,
    jobs,
):
    """A job whose handler died while claiming keeps its inputs; duplicates arriving while it may
    still be alive do not steal them; once its claim is older than CLAIM_TIMEOUT the next event that
    meets one of its inputs finishes it."""
    registry.register("churn")
    intake = intake_with_clock(clock)
    keys = ["incoming/churn/a.csv", "incoming/churn/b.csv", "incoming/churn/c.csv"]
    dropped = {key: data.drop(key) for key in keys}
    event = intake_queue.receive()
    crash_on(clients("s3"), "PutObject", when=lambda request: request.url.endswith("/manifest.json"))
    with pytest.raises(HandlerCrashed):
        handle(intake, event)
    assert jobs.names() == []
    by_key = {event_key(r): r for r in event["Records"]}

    # Duplicates of two of its events, alone in batches of their own, before the timeout.
    clock.advance(intake_settings.claim_timeout_seconds - 1)
    for key in keys[:2]:
        early = handle(intake, sqs_event([encoded_key_copy(by_key[key])]))
        assert (early.jobs_started, early.failed_message_ids) == ([], [])
    assert jobs.names() == []

    # After the timeout: one more event for one of its inputs finishes the abandoned job.
    clock.advance(2)
    late = handle(intake, sqs_event([redelivered(by_key[keys[2]], 2)]))
    assert late.failed_message_ids == []
    (job,) = jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    assert sorted(job.keys) == keys
    # Its own redelivery later changes nothing.
    assert handle(intake, sqs_event([redelivered(r, 2) for r in event["Records"]])).jobs_started == []
    assert jobs.names() == [job.name]


# ------------------------------------------------------------------------------------------ capacity
RLE = ("ResourceLimitExceeded", "The account-level service limit 'ml.m5.xlarge for transform job usage' is 0 Instances")


def test_resource_limit_exceeded_parks_the_job_and_acknowledges_its_messages(
    stack,
    clients,
    data,
    registry,
    intake_queue,
    intake_dlq,
    intake,
    jobs,
    notifications,
):
    """No capacity is not a failure: the job waits READY in the state table, listed under
    `waiting-capacity`; the messages are done with (no redelivery, no QUOTA_EXCEEDED rejection)."""
    registry.register("churn")
    dropped = {key: data.drop(key) for key in ["incoming/churn/a.csv", "incoming/churn/b b.csv"]}
    fault = inject_error(clients("sagemaker"), "CreateTransformJob", *RLE, times=None)

    event = intake_queue.receive()
    assert {r["attributes"]["ApproximateReceiveCount"] for r in event["Records"]} == {"1"}
    outcome = handle(intake, event)
    assert response_of(outcome) == {"batchItemFailures": []}
    intake_queue.settle(event, response_of(outcome))
    assert intake_queue.depth() == 0 and intake_dlq.depth() == 0
    assert fault.injected == 1  # never retried by botocore
    (name,) = outcome.jobs_waiting_for_capacity
    assert outcome.jobs_started == [] and outcome.rejected == [] and outcome.files_accepted == 2

    assert jobs.names() == [] and data.keys("rejected/") == []
    for key, version in dropped.items():
        assert data.exists(key, version)
    record = clients("dynamodb").get_item(TableName=stack.outputs["StateTableName"], Key={"pk": {"S": f"job#{name}"}})[
        "Item"
    ]
    assert (record["status"]["S"], record["kind"]["S"]) == ("READY", "waiting-capacity")
    assert "is 0 Instances" in record["capacityRefusal"]["S"] and "waitingSince" in record
    plan = data.json(record["planKey"]["S"])
    assert plan["final"] is True and sorted(i["key"] for i in plan["inputs"]) == sorted(dropped)

    (note,) = notifications.drain()
    assert note["subject"] == "sagepilot: 1 transform job(s) waiting for capacity"
    message = note["message"]
    assert message["waitingForCapacity"] == [{"job": name, "group": "churn", "inputs": 2}]
    assert message["quota"] == "ml.m5.xlarge for transform job usage"
    assert "Service Quotas" in message["whatToDo"] and "FallbackInstanceType" in message["whatToDo"]
    assert "Nothing is lost" in message["whatHappens"]

    # A duplicate delivery of the same events (at least once) finds the job waiting and leaves it so.
    again = handle(intake, sqs_event([redelivered(r, 2) for r in event["Records"]]))
    assert (again.failed_message_ids, again.rejected, again.jobs_started) == ([], [], [])
    assert jobs.names() == [] and data.keys("rejected/") == []


@pytest.mark.parametrize("stack_overrides", [{"FallbackInstanceType": "ml.c5.xlarge"}])
def test_resource_limit_exceeded_falls_back_to_the_fallback_instance_type(
    clients,
    data,
    registry,
    intake_queue,
    intake,
    jobs,
):
    registry.register("churn")
    dropped = {"incoming/churn/a.csv": data.drop("incoming/churn/a.csv")}
    fault = inject_error(
        clients("sagemaker"),
        "CreateTransformJob",
        *RLE,
        times=None,
        when=lambda body: body["TransformResources"]["InstanceType"] == "ml.m5.xlarge",
    )
    outcome = handle(intake, intake_queue.receive())
    assert outcome.failed_message_ids == [] and len(outcome.jobs_started) == 1
    assert fault.injected == 1 and fault.calls == 2
    (job,) = jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    assert job.description["TransformResources"]["InstanceType"] == "ml.c5.xlarge"
    assert job.name == outcome.jobs_started[0]


@pytest.mark.parametrize("stack_overrides", [{"FallbackInstanceType": "ml.c5.xlarge"}])
def test_no_capacity_on_the_fallback_either_parks_the_job(clients, data, registry, intake_queue, intake, jobs):
    registry.register("churn")
    data.drop("incoming/churn/a.csv")
    fault = inject_error(clients("sagemaker"), "CreateTransformJob", *RLE, times=None)
    event = intake_queue.receive()
    outcome = handle(intake, event)
    assert outcome.failed_message_ids == [] and len(outcome.jobs_waiting_for_capacity) == 1
    assert [r["TransformResources"]["InstanceType"] for r in fault.requests] == ["ml.m5.xlarge", "ml.c5.xlarge"]
    assert jobs.names() == []


@pytest.mark.usefixtures("no_retry_delay")
@pytest.mark.parametrize("operation", ["CreateTransformJob", "CreateModel", "ListModelPackages"])
def test_throttling_is_retried_by_botocore(operation, clients, data, registry, intake_queue, intake, jobs):
    registry.register("churn")
    dropped = {"incoming/churn/a.csv": data.drop("incoming/churn/a.csv")}
    fault = inject_error(clients("sagemaker"), operation, "ThrottlingException", "Rate exceeded", times=2)
    outcome = handle(intake, intake_queue.receive())
    assert outcome.failed_message_ids == [] and len(outcome.jobs_started) == 1
    assert (fault.injected, fault.calls) == (2, 3)
    jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))


@pytest.mark.usefixtures("no_retry_delay")
def test_throttling_beyond_the_retries_returns_the_messages(clients, data, registry, intake_queue, intake, jobs):
    registry.register("churn")
    data.drop("incoming/churn/a.csv")
    fault = inject_error(clients("sagemaker"), "CreateTransformJob", "ThrottlingException", "Rate exceeded", times=None)
    event = intake_queue.receive()
    outcome = handle(intake, event)
    # CLIENT_CONFIG (conftest): standard mode with 5 retries after the first call: 6 HTTP attempts.
    assert fault.calls == 6
    assert outcome.failed_message_ids == [r["messageId"] for r in event["Records"]]
    assert outcome.rejected == [] and data.keys("rejected/") == []
    assert jobs.names() == []
    # The throttling is over by the next delivery.
    fault.stop()
    again = handle(intake, sqs_event([redelivered(r, 2) for r in event["Records"]]))
    assert again.failed_message_ids == [] and len(again.jobs_started) == 1
    assert jobs.names() == again.jobs_started


@pytest.mark.usefixtures("no_retry_delay")
def test_a_batchs_groups_are_prepared_at_once_and_one_groups_failure_stays_its_own(
    clients, data, registry, intake_queue, intake, jobs
):
    """A batch may hold a hundred groups: each group's model is read, its files planned (and held) beside the
    others'. The registry failing for one group hands back that group's messages only."""
    groups = [f"g{i}" for i in range(10)]
    for group in groups:
        registry.register(group)
    dropped = {f"incoming/{g}/a.csv": data.drop(f"incoming/{g}/a.csv") for g in groups}
    threads: set[int] = set()
    clients("sagemaker").meta.events.register(
        "before-call.sagemaker.ListModelPackages", lambda **_: threads.add(threading.get_ident())
    )
    inject_error(
        clients("sagemaker"), "ListModelPackages", "ServiceUnavailable", "down", status=503, times=None,
        when=lambda body: body.get("ModelPackageGroupName") == "g3",
    )  # fmt: skip
    event = intake_queue.receive()
    outcome = handle(intake, event)
    assert outcome.failed_message_ids == [r["messageId"] for r in event["Records"] if "/g3/" in event_key(r)]
    assert len(outcome.jobs_started) == 9 and outcome.files_accepted == 9 and outcome.rejected == []
    assert len(threads) > 1
    jobs.assert_each_version_in_exactly_one_job(versions_of({k: v for k, v in dropped.items() if "/g3/" not in k}))


# ------------------------------------------------------------------------------------------ rejections
LONG_NAME = "x" * (1010 - len("incoming/churn/") - len(".csv")) + ".csv"

REJECTIONS = [
    # (id, key, body, code, reason fragments, what-to-do fragment)
    ("unsupported-type", "incoming/churn/notes é+1.txt", b"hello\n", "UNSUPPORTED_FILE_TYPE",
     ["'notes é+1.txt' is not a supported file type", ".csv, .jsonl, .csv.gz, .jsonl.gz"],
     "Convert the file to CSV or JSON Lines"),
    ("empty-file", "incoming/churn/2026/empty 100%.csv", b"", "EMPTY_FILE",
     ["The file is empty."], "Upload the file again with its data."),
    ("no-approved-model", "incoming/pending/a.csv", b"1\n", "NO_APPROVED_MODEL",
     ["Model package group 'pending' has no Approved model package."], "Approve a model package version"),
    ("group-not-found", "incoming/ghost/a.csv", b"1\n", "MODEL_GROUP_NOT_FOUND",
     ["There is no model package group named 'ghost'."], "Create the group and approve a model in it"),
    ("outside-layout", "incoming/file.csv", b"1\n", "KEY_OUTSIDE_LAYOUT",
     ["'incoming/file.csv' does not name a model package group and a file"],
     "Upload files as incoming/<model-package-group>/<sub-path>/<file>"),
    ("invalid-group-name", "incoming/my_group/a.csv", b"1\n", "INVALID_GROUP_NAME",
     ["'my_group' cannot be a SageMaker model package group name"],
     "Move the file under a folder named exactly like the model package group."),
    ("content-type-not-accepted", "incoming/csvonly/events.jsonl", b'{"a": 1}\n', "CONTENT_TYPE_NOT_SUPPORTED",
     ["Model package version 1 of 'csvonly' accepts text/csv, not application/jsonlines."],
     "Convert the file to a content type the model accepts"),
    ("key-too-long", f"incoming/churn/{LONG_NAME}", b"1\n", "KEY_TOO_LONG",
     ["The key is too long: its ", "would exceed S3's 1024-byte limit"],
     "Upload the file under a path at least"),
    # 1,000 bytes: its reports fit S3's limit, but not its transform job's output key (nor its claim in the
    # state table, whose ByKind index limits `pk` to 1,024 bytes).
    ("key-too-long-for-the-job", "incoming/churn/" + "k" * (1000 - len("incoming/churn/.csv")) + ".csv", b"1\n",
     "KEY_TOO_LONG", ["The key is too long: its transform job's output", "would exceed S3's 1024-byte limit"],
     "Upload the file under a path at least"),
    # The training side's layout is rejected/training/ and jobs/training/: a batch group may not take it.
    ("reserved-group-name", "incoming/training/churn/a.csv", b"1\n", "RESERVED_GROUP_NAME",
     ["'training' is reserved", "rejected/training/"], "Use a model package group with another name"),
]


def rejected_key(key: str) -> str:
    relative = key.removeprefix("incoming/")
    return f"rejected/_reserved/{relative}.json" if relative.startswith("training/") else f"rejected/{relative}.json"


@pytest.mark.parametrize(
    ("key", "body", "code", "reasons", "what_to_do"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_a_bad_input_stays_in_place_with_a_report_and_a_notification(
    key,
    body,
    code,
    reasons,
    what_to_do,
    data,
    registry,
    intake_queue,
    intake,
    jobs,
    notifications,
    sagemaker,
):
    registry.register("churn")
    registry.register("training")
    registry.register("pending", status="PendingManualApproval")
    registry.register("csvonly", content_types=("text/csv",))
    version = data.drop(key, body)
    event = intake_queue.receive()
    assert [event_key(r) for r in event["Records"]] == [key]

    outcome = handle(intake, event)
    assert outcome.rejected == [key]
    assert (outcome.jobs_started, outcome.failed_message_ids) == ([], [])

    assert data.exists(key, version)  # the input is left where it was
    report = data.json(rejected_key(key))
    assert {k: report[k] for k in ("reportVersion", "status", "input", "code")} == {
        "reportVersion": 1,
        "status": "Rejected",
        "code": code,
        "input": {"bucket": data.name, "key": key, "versionId": version},
    }
    for fragment in reasons:
        assert fragment in report["reason"]
    assert what_to_do in report["whatToDo"]
    assert report["rejectedAt"]
    assert jobs.names() == [] and sagemaker.list_models()["Models"] == []

    (note,) = notifications.drain()
    assert note["subject"] == "sagepilot: 1 file(s) rejected"
    assert note["message"] == {
        "countsByCode": {code: 1},
        "rejected": [
            {
                "key": key,
                "versionId": version,
                "code": code,
                "reason": report["reason"],
                "report": f"s3://{data.name}/{rejected_key(key)}",
            }
        ],
    }

    # The same event again (at-least-once delivery) says the same thing again, and still starts nothing.
    again = handle(intake, sqs_event([redelivered(r, 2) for r in event["Records"]]))
    assert again.rejected == [key] and jobs.names() == []
    assert data.json(rejected_key(key))["code"] == code


def test_a_mixed_batch_runs_the_good_files_and_reports_the_bad_ones_once(
    data,
    registry,
    intake_queue,
    intake,
    jobs,
    notifications,
):
    registry.register("churn")
    good = {key: data.drop(key) for key in ["incoming/churn/a.csv", "incoming/churn/b.jsonl"]}
    bad = {
        key: data.drop(key, body)
        for key, body in [
            ("incoming/churn/c.txt", b"1\n"),
            ("incoming/churn/d.csv", b""),
            ("incoming/ghost/e.csv", b"1\n"),
            ("incoming/ghost/f.csv", b"1\n"),
        ]
    }
    outcome = handle(intake, intake_queue.receive())
    assert sorted(outcome.rejected) == sorted(bad)
    assert len(outcome.jobs_started) == 2
    jobs.assert_each_version_in_exactly_one_job(versions_of(good))
    assert data.keys("rejected/") == sorted(rejected_key(k) for k in bad)
    (note,) = notifications.drain()
    assert note["subject"] == "sagepilot: 4 file(s) rejected"
    assert note["message"]["countsByCode"] == {"UNSUPPORTED_FILE_TYPE": 1, "EMPTY_FILE": 1, "MODEL_GROUP_NOT_FOUND": 2}


def test_a_group_named_training_never_writes_into_the_training_layout(
    data, registry, intake_queue, intake, jobs, notifications,
):
    """A batch group named `training` would write its rejections over rejected/training/<group>/... (the
    training side's reports) and its jobs under jobs/training/: the name is refused for batch, and the
    refusal itself is written outside both layouts."""
    registry.register("training")
    registry.register("churn")
    training_report = "rejected/training/churn/2026/train.csv.json"
    data.drop(training_report, b"{\"code\": \"TRAINING_FAILED\"}")
    key = "incoming/training/churn/2026/train.csv"
    data.drop(key, b"1\n")
    outcome = handle(intake, intake_queue.receive())
    assert outcome.rejected == [key] and jobs.names() == []
    assert data.json(training_report) == {"code": "TRAINING_FAILED"}  # the training report is untouched
    assert data.json("rejected/_reserved/training/churn/2026/train.csv.json")["code"] == "RESERVED_GROUP_NAME"
    assert data.keys("jobs/") == []


def test_a_key_too_long_for_the_state_table_never_sinks_its_batch_mates(
    intake_settings, data, registry, intake_queue, intake, jobs, notifications,
):
    """A 1,000-byte key passed KEY_TOO_LONG, then failed every claim of its job (DynamoDB's ValidationException,
    wrapped as transient): after 5 deliveries it and its three batch-mates ended TRANSIENT_EXHAUSTED. Now it is
    refused at intake, on the first delivery, and the others run."""
    registry.register("churn")
    long_key = "incoming/churn/" + "k" * (1000 - len("incoming/churn/.csv")) + ".csv"
    good = {key: data.drop(key) for key in ["incoming/churn/a.csv", "incoming/churn/b.csv", "incoming/churn/c.csv"]}
    data.drop(long_key, b"1\n")
    outcome = handle(intake, intake_queue.receive())
    assert outcome.failed_message_ids == []
    assert outcome.rejected == [long_key]
    assert data.json(rejected_key(long_key))["code"] == "KEY_TOO_LONG"
    jobs.assert_each_version_in_exactly_one_job(versions_of(good))


def test_a_claim_dynamodb_refuses_as_invalid_concerns_only_its_file(
    monkeypatch, data, registry, intake_queue, intake, jobs, notifications,
):
    """Should a key get past the intake's checks and DynamoDB refuse its claim (ValidationException), that is
    permanent and that file's alone: it is rejected on the first delivery, its batch-mates are claimed and run."""
    from sagepilot.domain import layout
    from sagepilot.services import batch_intake

    monkeypatch.setattr(layout, "MAX_S3_KEY_LENGTH", 4096)  # the S3 checks let it through
    monkeypatch.setattr(batch_intake, "table_key_problem", lambda *_: None)  # and so does the table's
    registry.register("churn")
    long_key = "incoming/churn/" + "k" * (1000 - len("incoming/churn/.csv")) + ".csv"
    good = {key: data.drop(key) for key in ["incoming/churn/a.csv", "incoming/churn/b.csv", "incoming/churn/c.csv"]}
    data.drop(long_key, b"1\n")
    outcome = handle(intake, intake_queue.receive())
    assert outcome.failed_message_ids == []
    assert outcome.rejected == [long_key] and len(outcome.jobs_started) == 1
    report = data.json(rejected_key(long_key))
    assert report["code"] == "JOB_NOT_STARTED" and "could not record this file version" in report["reason"]
    assert "ValidationException" in report["reason"]
    (job,) = jobs.all()
    assert sorted(i["key"] for i in job.plan["inputs"]) == sorted(good)


def test_other_buckets_and_malformed_messages_change_nothing(
    stack,
    clients,
    s3,
    data,
    registry,
    intake_queue,
    intake,
    notifications,
):
    registry.register("churn")
    # Another bucket that sends its events to EventBridge: the template's rule does not route them.
    s3.create_bucket(Bucket="someone-elses-bucket")
    s3.put_bucket_notification_configuration(
        Bucket="someone-elses-bucket", NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    s3.put_object(Bucket="someone-elses-bucket", Key="incoming/churn/a.csv", Body=b"1\n")
    # A folder made in the console: routed, but not an input.
    s3.put_object(Bucket=data.name, Key="incoming/churn/new folder/", Body=b"")
    (folder,) = intake_queue.receive()["Records"]
    intake_queue.delete([folder])
    # A real file of ours, whose event is replayed below as if it came from the other bucket.
    data.drop("incoming/churn/a.csv")
    (ours,) = intake_queue.receive()["Records"]
    intake_queue.delete([ours])
    assert intake_queue.depth() == 0

    real = json.loads(folder["body"])
    other_bucket = json.loads(ours["body"])
    other_bucket["detail"]["bucket"]["name"] = "someone-elses-bucket"
    other_unversioned = json.loads(json.dumps(other_bucket))
    del other_unversioned["detail"]["object"]["version-id"]
    no_object = {**real, "detail": {"bucket": {"name": data.name}}}
    key_not_text = json.loads(folder["body"])
    key_not_text["detail"]["object"]["key"] = 42
    deleted = {**real, "detail-type": "Object Deleted"}
    sagemaker_event = {**real, "source": "aws.sagemaker", "detail-type": "SageMaker Transform Job State Change"}
    bodies = [
        "not json at all",
        "[1, 2, 3]",
        "{}",
        "null",
        json.dumps(other_bucket),
        json.dumps(other_unversioned),
        json.dumps(no_object),
        json.dumps(key_not_text),
        json.dumps(deleted),
        json.dumps(sagemaker_event),
    ]
    event = sqs_event([folder] + [with_body(folder, b) for b in bodies])

    before = aws_snapshot(stack, clients, data)
    outcome = handle(intake, event)
    assert outcome.ignored == len(event["Records"])
    assert response_of(outcome) == {"batchItemFailures": []}
    assert (outcome.jobs_started, outcome.jobs_existing, outcome.rejected) == ([], [], [])
    assert aws_snapshot(stack, clients, data) == before
    assert notifications.drain() == []


def test_plain_and_encoded_keys_are_told_apart_by_their_version(data, registry, intake_queue, intake, jobs):
    """`a+b.csv` and `a b.csv` both exist; the encoded form of `a b.csv` is the plain form of `a+b.csv`.
    The version each event names decides which object it means."""
    registry.register("churn")
    keys = ["incoming/churn/a+b.csv", "incoming/churn/a b.csv"]
    dropped = {key: data.drop(key, key.encode() + b"\n") for key in keys}
    event = intake_queue.receive()
    encoded = [encoded_key_copy(r) for r in event["Records"]]
    assert sorted(event_key(r) for r in encoded) == ["incoming/churn/a%2Bb.csv", "incoming/churn/a+b.csv"]
    outcome = handle(intake, sqs_event(encoded))
    assert outcome.failed_message_ids == [] and outcome.rejected == [] and outcome.ignored == 0
    (job,) = jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    assert sorted(job.manifest[1:]) == ["a b.csv", "a+b.csv"]


# ------------------------------------------------------------------------------------------ parameters
@pytest.mark.parametrize("stack_overrides", [{"MaxFilesPerJob": "2"}])
def test_max_files_per_job_splits_a_batch_into_several_jobs(data, registry, intake_queue, intake, jobs):
    registry.register("churn")
    dropped = {key: data.drop(key) for key in [f"incoming/churn/f{i}.csv" for i in range(5)]}
    event = intake_queue.receive()
    outcome = handle(intake, event)
    assert len(outcome.jobs_started) == 3
    found = jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    assert sorted(len(j.manifest) - 1 for j in found) == [1, 2, 2]
    assert handle(intake, sqs_event(list(reversed(event["Records"])))).jobs_existing == outcome.jobs_started


@pytest.mark.parametrize("stack_overrides", [{"TargetMegabytesPerInstance": "1", "MaxInstanceCount": "3"}])
def test_instance_count_follows_the_data_size(data, registry, intake_queue, intake, jobs):
    registry.register("churn")
    megabyte = b"1,2,3\n" * (1024 * 1024 // 6 + 1)
    for i in range(5):
        data.drop(f"incoming/churn/big{i}.csv", megabyte)  # ~5 MB: five instances wanted, three allowed
    data.drop("incoming/churn/small/a.jsonl", b'{"a": 1}\n')
    data.drop("incoming/churn/small/b.jsonl", b'{"a": 2}\n')
    handle(intake, intake_queue.receive())
    counts = {
        j.description["TransformInput"]["ContentType"]: j.description["TransformResources"]["InstanceCount"]
        for j in jobs.all()
    }
    assert counts == {"text/csv": 3, "application/jsonlines": 1}


@pytest.mark.parametrize("stack_overrides", [{
    "NamePrefix": "acmeml", "TransformInstanceType": "ml.c5.2xlarge", "MaxPayloadMB": "20",
    "MaxConcurrentTransforms": "5",
}])
def test_the_stack_parameters_reach_the_jobs(stack, data, registry, intake_queue, intake, jobs, sagemaker):
    registry.register("churn")
    data.drop("incoming/churn/a.csv")
    (name,) = handle(intake, intake_queue.receive()).jobs_started
    assert name.startswith("acmeml-churn-")
    d = jobs.get(name).description
    assert d["ModelName"].startswith("acmeml-churn-v1-")
    assert d["TransformResources"]["InstanceType"] == "ml.c5.2xlarge"
    assert (d["MaxPayloadInMB"], d["MaxConcurrentTransforms"]) == (20, 5)


EXISTING_ROLE = "arn:aws:iam::123456789012:role/platform/sagemaker-batch"


@pytest.mark.parametrize("stack_overrides", [{"SageMakerExecutionRoleArn": EXISTING_ROLE}])
def test_an_existing_execution_role_is_passed_to_the_models(
    stack,
    data,
    registry,
    intake_queue,
    intake,
    jobs,
    sagemaker,
):
    assert stack.outputs["SageMakerExecutionRoleArn"] == EXISTING_ROLE
    registry.register("churn")
    data.drop("incoming/churn/a.csv")
    (name,) = handle(intake, intake_queue.receive()).jobs_started
    model = sagemaker.describe_model(ModelName=jobs.get(name).description["ModelName"])
    assert model["ExecutionRoleArn"] == EXISTING_ROLE


# ------------------------------------------------ the bytes scored are the version claimed (issue 16, point 2)
def test_the_intake_copies_nothing_and_its_job_reads_the_dropped_keys(clients, data, registry, intake_queue, intake,
                                                                      jobs):
    """No CopyObject on the intake's path (it was its longest step): the job reads the dropped keys, and its
    completion checks the versions (tests/functional/test_batch_completion.py)."""
    copies: list[dict] = []
    clients("s3").meta.events.register(
        "before-parameter-build.s3.CopyObject", lambda params, **_: copies.append(params)
    )
    registry.register("churn")
    a = data.drop("incoming/churn/a.csv")
    b = data.drop("incoming/churn/sub/b.csv")
    (name,) = handle(intake, intake_queue.receive()).jobs_started
    job = jobs.get(name)
    assert copies == []
    assert job.manifest == [{"prefix": f"{BUCKET_PREFIX}/incoming/churn/"}, "a.csv", "sub/b.csv"]
    jobs.assert_each_version_in_exactly_one_job({("incoming/churn/a.csv", a), ("incoming/churn/sub/b.csv", b)})
