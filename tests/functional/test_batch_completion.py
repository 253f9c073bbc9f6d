"""Transform job finished -> reports, bounded retries, rejections, through the stack of template.yaml.

Jobs are started by the intake service from real uploads; SageMaker's state change is produced by the
sandbox's faithful SageMaker and routed through the completion function's EventBridge rule, whose
pattern decides what reaches the completion service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from sagepilot.events import parse_transform_job_change, queued_messages
from sagepilot_sandbox import faithful

from .conftest import aws_snapshot

KEYS = ["incoming/churn/2026-11/with space.csv", "incoming/churn/año+1 100%.csv"]
CLIENT_ERROR = (
    "ClientError: Failed to download data. s3://sagepilot-sandbox-databucket/incoming/churn/a.csv does not exist."
)
INTERNAL = "InternalServerError: We encountered an internal error. Please try again."
# A failure no single input can cause: the job is not split, every input is rejected with it.
MODEL_MISSING = ("ClientError: Failed to download model data for container 1 from URL s3://models/churn/v1.tar.gz. "
                 "Please ensure that there is an object located at the URL.")


def start_job(
    data: Any,
    registry: Any,
    intake_queue: Any,
    intake: Any,
    keys: list[str] = KEYS,
) -> tuple[str, dict[str, str]]:
    registry.register("churn")
    dropped = {key: data.drop(key) for key in keys}
    (name,) = intake.handle(queued_messages(intake_queue.receive())).jobs_started
    return name, dropped


def handle_all(completion: Any, events: list[dict[str, Any]]) -> list[Any]:
    return [completion.handle(parse_transform_job_change(e)) for e in events]


def rel(key: str) -> str:
    return key.removeprefix("incoming/churn/")


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_completed_job_writes_a_report_per_input_and_one_for_the_job(
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    jobs,
    notifications,
):
    name, dropped = start_job(data, registry, intake_queue, intake)
    (event,) = completions.finish(name, "Completed")
    assert event["detail"]["TransformJobName"] == name

    (outcome,) = handle_all(completion, [event])
    assert (outcome.job_name, outcome.action) == (name, "reported")

    summary = data.json(f"jobs/churn/{name}/report.json")
    assert {
        k: summary[k]
        for k in (
            "transformJobName",
            "status",
            "attempts",
            "modelPackageGroup",
            "modelPackageVersion",
            "contentType",
            "instanceType",
        )
    } == {
        "transformJobName": name,
        "status": "Completed",
        "attempts": 1,
        "modelPackageGroup": "churn",
        "modelPackageVersion": 1,
        "contentType": "text/csv",
        "instanceType": "ml.m5.xlarge",
    }
    assert summary["manifest"] == f"s3://{data.name}/jobs/churn/{name}/manifest.json"
    assert sorted((i["key"], i["versionId"]) for i in summary["inputs"]) == sorted(dropped.items())

    for key, version in dropped.items():
        report = data.json(f"predictions/churn/{rel(key)}.report.json")
        assert report["transformJobName"] == name
        assert report["status"] == "Completed"
        assert report["modelPackageVersion"] == 1
        assert report["modelPackageArn"].endswith("model-package/churn/1")
        assert report["input"]["key"] == key and report["input"]["versionId"] == version
        assert report["input"]["bucket"] == data.name
        assert report["predictions"] == f"s3://{data.name}/predictions/churn/{rel(key)}.out"
        assert report["jobReport"] == f"s3://{data.name}/jobs/churn/{name}/report.json"
        timings = report["timings"]
        assert iso(timings["created"]) <= iso(timings["started"]) <= iso(timings["ended"])
    assert data.keys("rejected/") == []
    assert notifications.drain() == []


def test_a_completed_event_delivered_five_times_changes_nothing_more(
    stack,
    clients,
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    notifications,
):
    name, dropped = start_job(data, registry, intake_queue, intake)
    (event,) = completions.finish(name, "Completed")
    assert handle_all(completion, [event])[0].action == "reported"
    reports = {key: data.json(f"predictions/churn/{rel(key)}.report.json") for key in dropped}
    before = aws_snapshot(stack, clients, data)

    again = handle_all(completion, [event] * 4 + completions.route(event))
    assert [o.action for o in again] == ["duplicate"] * 5
    assert aws_snapshot(stack, clients, data) == before
    assert {key: data.json(f"predictions/churn/{rel(key)}.report.json") for key in dropped} == reports
    assert notifications.drain() == []


def test_a_failed_job_rejects_its_inputs_with_sagemakers_reason_and_notifies_once(
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    jobs,
    notifications,
):
    # One input: nothing to split (a job of several is split first, see test_bad_inputs_are_isolated...).
    name, dropped = start_job(data, registry, intake_queue, intake, keys=KEYS[:1])
    (event,) = completions.finish(name, "Failed", CLIENT_ERROR)
    (outcome,) = handle_all(completion, [event])
    assert outcome.action == "rejected"
    assert jobs.names() == [name]  # a ClientError is not retried

    for key, version in dropped.items():
        assert data.exists(key, version)
        report = data.json(f"rejected/churn/{rel(key)}.json")
        assert report["code"] == "JOB_FAILED"
        assert report["status"] == "Rejected"
        assert report["input"] == {"bucket": data.name, "key": key, "versionId": version}
        assert report["transformJobName"] == name
        assert CLIENT_ERROR in report["reason"] and name in report["reason"]
        assert "CloudWatch logs" in report["whatToDo"]
    summary = data.json(f"jobs/churn/{name}/report.json")
    assert (summary["status"], summary["failureReason"]) == ("Failed", CLIENT_ERROR)
    assert data.keys("predictions/") == []

    (note,) = notifications.drain()
    assert note["subject"] == f"sagepilot: transform job {name} failed"
    assert note["message"]["failureReason"] == CLIENT_ERROR
    assert note["message"]["transformJobName"] == name
    assert note["message"]["inputs"] == len(dropped)
    assert note["message"]["jobReport"] == f"s3://{data.name}/jobs/churn/{name}/report.json"

    # Delivered again: nothing new, and in particular no second notification.
    assert [o.action for o in handle_all(completion, [event, event])] == ["duplicate", "duplicate"]
    assert notifications.drain() == []


def test_a_stopped_job_rejects_its_inputs(data, registry, intake_queue, intake, completion, completions, notifications):
    name, dropped = start_job(data, registry, intake_queue, intake)
    (outcome,) = handle_all(completion, completions.finish(name, "Stopped"))
    assert outcome.action == "rejected"
    for key in dropped:
        report = data.json(f"rejected/churn/{rel(key)}.json")
        assert report["code"] == "JOB_STOPPED"
        assert f"Transform job {name} was stopped" in report["reason"]
    assert len(notifications.drain()) == 1


def test_transient_failures_are_retried_with_the_same_configuration_then_rejected(
    completion_settings,
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    jobs,
    notifications,
):
    name, dropped = start_job(data, registry, intake_queue, intake)
    assert completion_settings.max_job_retries == 2
    first_event = completions.finish(name, "Failed", INTERNAL)
    (outcome,) = handle_all(completion, first_event)
    assert (outcome.action, outcome.job_name) == ("retried", f"{name}-r1")
    assert jobs.names() == [name, f"{name}-r1"]

    original, retry = jobs.get(name), jobs.get(f"{name}-r1")
    same = (
        "ModelName",
        "TransformInput",
        "TransformOutput",
        "TransformResources",
        "BatchStrategy",
        "MaxPayloadInMB",
        "MaxConcurrentTransforms",
    )
    assert {k: retry.description[k] for k in same} == {k: original.description[k] for k in same}
    assert retry.tags == original.tags
    assert retry.description["TransformJobStatus"] == "InProgress"
    assert data.keys("rejected/") == [] and notifications.drain() == []

    # The first attempt's failure, delivered again late: the retry it asked for exists, no second one.
    (stale,) = handle_all(completion, first_event)
    assert stale.action == "duplicate" and "retry already under way" in stale.detail
    assert jobs.names() == [name, f"{name}-r1"]

    (second,) = handle_all(completion, completions.finish(f"{name}-r1", "Failed", INTERNAL))
    assert (second.action, second.job_name) == ("retried", f"{name}-r2")
    (last,) = handle_all(completion, completions.finish(f"{name}-r2", "Failed", INTERNAL))
    assert last.action == "rejected"
    assert jobs.names() == [name, f"{name}-r1", f"{name}-r2"]  # MaxJobRetries: 2

    for key, version in dropped.items():
        report = data.json(f"rejected/churn/{rel(key)}.json")
        assert report["code"] == "JOB_FAILED"
        assert report["transformJobName"] == f"{name}-r2"
        assert report["input"]["versionId"] == version
        assert f"failed after 3 attempts: {INTERNAL}" in report["reason"]
    summary = data.json(f"jobs/churn/{name}/report.json")
    assert (summary["attempts"], summary["transformJobName"]) == (3, f"{name}-r2")
    (note,) = notifications.drain()
    assert note["message"]["transformJobName"] == f"{name}-r2"


def test_a_retry_that_completes_reports_under_the_retry_name(
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    jobs,
):
    name, dropped = start_job(data, registry, intake_queue, intake)
    capacity = "CapacityError: Unable to provision requested ML compute capacity."
    (retried,) = handle_all(completion, completions.finish(name, "Failed", capacity))
    assert retried.action == "retried"
    (done,) = handle_all(completion, completions.finish(f"{name}-r1", "Completed"))
    assert done.action == "reported"
    for key in dropped:
        report = data.json(f"predictions/churn/{rel(key)}.report.json")
        assert (report["transformJobName"], report["attempts"], report["status"]) == (f"{name}-r1", 2, "Completed")
    assert data.keys("rejected/") == []


def test_jobs_the_stack_did_not_create_are_ignored(
    stack,
    clients,
    sagemaker,
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    notifications,
):
    name, _ = start_job(data, registry, intake_queue, intake)
    model = sagemaker.describe_transform_job(TransformJobName=name)["ModelName"]
    request = {
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://elsewhere/in/"}},
            "ContentType": "text/csv",
        },
        "TransformOutput": {"S3OutputPath": "s3://elsewhere/out/"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    # Someone else's job with the stack's prefix (and a name shaped like the stack's), and one without.
    lookalike = "sagepilot-churn-0123456789abcdef"
    sagemaker.create_transform_job(TransformJobName=lookalike, **request)
    sagemaker.create_transform_job(TransformJobName="team-b-nightly", **request)
    before = aws_snapshot(stack, clients, data)

    (routed,) = completions.finish(lookalike, "Completed")
    (outcome,) = handle_all(completion, [routed])
    assert (outcome.action, outcome.detail) == ("ignored", "not a job of this stack")
    assert completions.finish("team-b-nightly", "Failed", CLIENT_ERROR) == []  # the rule filters it out
    assert aws_snapshot(stack, clients, data) == before
    assert notifications.drain() == []


def test_in_progress_changes_are_not_routed_and_are_ignored(
    stack,
    clients,
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    notifications,
):
    name, _ = start_job(data, registry, intake_queue, intake)
    before = aws_snapshot(stack, clients, data)
    in_progress = faithful.transform_job_event(name)
    assert in_progress["detail"]["TransformJobStatus"] == "InProgress"
    assert completions.route(in_progress) == []
    (outcome,) = handle_all(completion, [in_progress])
    assert outcome.action == "ignored"
    # A terminal event that arrives before SageMaker's own view has moved on is not acted upon either.
    early = {**in_progress, "detail": {**in_progress["detail"], "TransformJobStatus": "Completed"}}
    (early_outcome,) = handle_all(completion, completions.route(early))
    assert early_outcome.action == "ignored" and "InProgress" in early_outcome.detail
    assert aws_snapshot(stack, clients, data) == before
    assert notifications.drain() == []


@pytest.mark.parametrize("stack_overrides", [{"MaxJobRetries": "0"}])
def test_with_no_retries_a_transient_failure_is_final(
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    jobs,
):
    name, dropped = start_job(data, registry, intake_queue, intake)
    (outcome,) = handle_all(completion, completions.finish(name, "Failed", INTERNAL))
    assert outcome.action == "rejected"
    assert jobs.names() == [name]
    for key in dropped:
        assert data.json(f"rejected/churn/{rel(key)}.json")["code"] == "JOB_FAILED"


def test_a_retry_refused_for_capacity_waits_and_the_sweep_starts_it(
    stack,
    clients,
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    jobs,
    notifications,
):
    """No capacity for the retry: not a failure either. The job waits READY at its next attempt, listed
    under `waiting-capacity`; the sweep starts that attempt once SageMaker has room, and it reports."""
    from .conftest import inject_error

    name, dropped = start_job(data, registry, intake_queue, intake)
    fault = inject_error(
        clients("sagemaker"),
        "CreateTransformJob",
        "ResourceLimitExceeded",
        "The account-level service limit is 0 Instances",
        times=None,
    )
    (outcome,) = handle_all(completion, completions.finish(name, "Failed", INTERNAL))
    assert (outcome.job_name, outcome.action) == (f"{name}-r1", "waiting")
    assert jobs.names() == [name] and data.keys("rejected/") == []
    record = clients("dynamodb").get_item(TableName=stack.outputs["StateTableName"], Key={"pk": {"S": f"job#{name}"}})[
        "Item"
    ]
    assert (record["status"]["S"], record["attempt"]["N"], record["kind"]["S"]) == ("READY", "1", "waiting-capacity")
    (note,) = notifications.drain()
    assert note["subject"] == f"sagepilot: transform job {name}-r1 waiting for capacity"
    # The failed attempt's event again (at least once): superseded, nothing moves.
    (duplicate,) = handle_all(completion, completions.finish(name, "Failed", INTERNAL))
    assert duplicate.action == "ignored"

    assert completion.sweep().started == []  # still no capacity: it keeps waiting
    fault.stop()
    swept = completion.sweep()
    assert (swept.started, swept.waiting) == ([name], 0)
    assert jobs.names() == [name, f"{name}-r1"]
    (done,) = handle_all(completion, completions.finish(f"{name}-r1", "Completed"))
    assert done.action == "reported"
    for key in dropped:
        report = data.json(f"predictions/churn/{rel(key)}.report.json")
        assert (report["transformJobName"], report["attempts"]) == (f"{name}-r1", 2)


@pytest.mark.parametrize(("status", "reason", "action"), [
    ("Failed", INTERNAL, "retried"),
    ("Failed", MODEL_MISSING, "rejected"),
    ("Completed", "", "reported"),
])
def test_a_job_that_ends_before_the_intake_recorded_its_start(
    status,
    reason,
    action,
    clients,
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    jobs,
    notifications,
):
    """The intake died between CreateTransformJob and recording it (the job record still says READY),
    and the job ended before the batch came back: the completion still acts on it, and the redelivered
    batch afterwards changes nothing."""
    from .conftest import HandlerCrashed, crash_on, redelivered, sqs_event

    registry.register("churn")
    dropped = {key: data.drop(key) for key in KEYS}
    crash_on(clients("dynamodb"), "UpdateItem", when=lambda request: b"STARTED" in request.body)
    event = intake_queue.receive()
    with pytest.raises(HandlerCrashed):
        intake.handle(queued_messages(event))
    (name,) = jobs.names()

    (outcome,) = handle_all(completion, completions.finish(name, status, reason))
    assert outcome.action == action
    later = intake.handle(queued_messages(sqs_event([redelivered(r, 2) for r in event["Records"]])))
    assert (later.jobs_started, later.jobs_existing, later.failed_message_ids) == ([], [name], [])

    if action == "retried":
        assert jobs.names() == [name, f"{name}-r1"]
        (done,) = handle_all(completion, completions.finish(f"{name}-r1", "Completed"))
        assert done.action == "reported"
    if action in ("retried", "reported"):
        for key in dropped:
            assert data.json(f"predictions/churn/{rel(key)}.report.json")["status"] == "Completed"
        assert data.keys("rejected/") == []
    else:
        assert sorted(data.keys("rejected/")) == sorted(f"rejected/churn/{rel(k)}.json" for k in dropped)
        assert len(notifications.drain()) == 1


def test_older_versions_in_the_same_job_are_reported_as_superseded(
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    jobs,
):
    registry.register("churn")
    old = data.drop("incoming/churn/a.csv", b"old\n")
    new = data.drop("incoming/churn/a.csv", b"new\n")
    other = data.drop("incoming/churn/b.csv")
    event = intake_queue.receive()
    (name,) = intake.handle(queued_messages(event)).jobs_started
    (job,) = jobs.assert_each_version_in_exactly_one_job(
        {("incoming/churn/a.csv", old), ("incoming/churn/a.csv", new), ("incoming/churn/b.csv", other)}
    )
    assert job.manifest[1:] == ["a.csv", "b.csv"]  # the key is read once: its newest version
    assert [i["versionId"] for i in job.plan["inputs"]] == [new, other]
    assert [i["versionId"] for i in job.plan["superseded"]] == [old]

    handle_all(completion, completions.finish(name, "Completed"))
    report = data.json("predictions/churn/a.csv.report.json")
    assert report["input"]["versionId"] == new
    assert report["supersededVersionIds"] == [old]
    assert "supersededVersionIds" not in data.json("predictions/churn/b.csv.report.json")


def test_a_retry_recorded_by_a_handler_that_died_before_creating_it_is_created_by_the_redelivery(
    data,
    registry,
    intake_queue,
    intake,
    completion,
    completions,
    sagemaker,
    monkeypatch,
):
    """The record moves to the next attempt before the retry is created; a handler killed in between
    must not leave the files in a job that will never run: Lambda's retry of the same event creates it."""
    name, _ = start_job(data, registry, intake_queue, intake)
    (event,) = completions.finish(name, "Failed", INTERNAL)

    class Killed(Exception):
        pass

    def killed(*_: Any, **__: Any) -> bool:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(completion._launcher, "start_attempt", killed)
        with pytest.raises(Killed):
            completion.handle(parse_transform_job_change(event))
    assert sagemaker.list_transform_jobs(NameContains=f"{name}-r1")["TransformJobSummaries"] == []

    (again,) = handle_all(completion, [event])
    assert (again.action, again.job_name) == ("retried", f"{name}-r1")
    assert sagemaker.describe_transform_job(TransformJobName=f"{name}-r1")["TransformJobStatus"] == "InProgress"
    (once_more,) = handle_all(completion, [event])  # a later duplicate changes nothing
    assert once_more.action == "duplicate"


# ------------------------------------------------------------------ one bad file, isolated (issue 16, point 1)
def bad_record(data: Any, key: str) -> str:
    """The sandbox's (and SageMaker's) kind of reason for a record the model refuses: a header row, say."""
    return (f"ClientError: See job logs for more information. s3://{data.name}/{key} (records 1-2): the model "
            "returned 400: could not convert string to float: 'age'")


def run_until_settled(data: Any, jobs: Any, completion: Any, completions: Any, first: str, bad: set[str]) -> list[Any]:
    """Finish every job as SageMaker would (Failed when it reads a bad file, else Completed), following the
    pieces a split creates; the outcomes in order."""
    pending, seen, outcomes = [first], {first}, []
    while pending:
        name = pending.pop(0)
        plan = jobs.get(name).plan
        inputs = [i["key"] for i in plan["inputs"]]
        failing = sorted(set(inputs) & bad)
        # SageMaker names what it read: the job's private copy of the file (the rejection must name the key).
        read = plan["inputPrefix"] + failing[0].removeprefix("incoming/churn/") if failing else ""
        events = completions.finish(name, "Failed", bad_record(data, read)) if failing else \
            completions.finish(name, "Completed")
        (outcome,) = handle_all(completion, events)
        outcomes.append(outcome)
        new = [n for n in jobs.names() if n not in seen]
        seen.update(new)
        pending += new
    return outcomes


@pytest.mark.parametrize("bad_keys", [["incoming/churn/c.csv"], ["incoming/churn/a.csv", "incoming/churn/f.csv"]])
def test_bad_inputs_are_isolated_and_the_good_ones_are_scored(
    bad_keys, data, registry, intake_queue, intake, completion, completions, jobs, notifications,
):
    """A job of several files failing for a reason one file can cause (the model refused a record) is split in
    halves until each bad file is alone: the others get their predictions, only the bad ones are rejected, each
    with the reason of the job that read it alone; the extra jobs stay within 2 * bad * ceil(log2 n)."""
    from sagepilot.domain.transform_plan import split_bound

    keys = [f"incoming/churn/{c}.csv" for c in "abcdef"]
    name, dropped = start_job(data, registry, intake_queue, intake, keys=keys)
    outcomes = run_until_settled(data, jobs, completion, completions, name, set(bad_keys))

    assert outcomes[0].action == "split"
    extra = len(jobs.names()) - 1
    assert 0 < extra <= split_bound(len(keys), len(bad_keys))
    parent = data.json(f"jobs/churn/{name}/report.json")
    assert parent["status"] == "Split" and len(parent["splitInto"]) == 2
    assert sorted(k for p in parent["splitInto"] for k in p["inputs"]) == sorted(keys)

    good = [k for k in keys if k not in bad_keys]
    for key in good:
        report = data.json(f"predictions/churn/{rel(key)}.report.json")
        assert (report["status"], report["input"]["versionId"]) == ("Completed", dropped[key])
        assert data.keys(f"predictions/churn/{rel(key)}.out") == [f"predictions/churn/{rel(key)}.out"]
    assert data.keys("rejected/") == sorted(f"rejected/churn/{rel(k)}.json" for k in bad_keys)
    for key in bad_keys:
        report = data.json(f"rejected/churn/{rel(key)}.json")
        assert report["code"] == "JOB_FAILED" and "fails on its own" in report["reason"]
        assert key in report["reason"]  # its own reason, naming itself ...
        assert not any(k in report["reason"] for k in keys if k != key)  # ... and no other file
        (job,) = [j for j in jobs.all() if [i["key"] for i in j.plan["inputs"]] == [key]]
        assert report["transformJobName"] == job.name
    # Every version in exactly one job that read it (a split job hands its inputs on).
    jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))
    # One failure notice per bad file, none for the splits.
    notes = notifications.drain()
    assert sorted(n["message"]["inputs"] for n in notes) == [1] * len(bad_keys)


def versions_of(dropped: dict[str, str]) -> set[tuple[str, str]]:
    return set(dropped.items())


def test_a_split_is_finished_by_the_redelivery_when_its_handler_dies_half_way(
    clients, data, registry, intake_queue, intake, completion, completions, jobs,
):
    """The split is recorded (SPLIT) before its pieces are created; a handler killed while creating them is
    finished by Lambda's retry of the same event, and a later duplicate creates nothing more."""
    from .conftest import HandlerCrashed, crash_on

    keys = [f"incoming/churn/{c}.csv" for c in "abcd"]
    name, dropped = start_job(data, registry, intake_queue, intake, keys=keys)
    (event,) = completions.finish(name, "Failed", bad_record(data, keys[0]))
    crash_on(clients("sagemaker"), "CreateTransformJob", nth=2)  # the second piece is never created
    with pytest.raises(HandlerCrashed):
        completion.handle(parse_transform_job_change(event))
    assert len(jobs.names()) == 2

    (again,) = handle_all(completion, [event])
    assert again.action == "duplicate"
    pieces = [n for n in jobs.names() if n != name]
    assert len(pieces) == 2
    assert sorted(k for p in pieces for k in jobs.get(p).keys) == sorted(keys)
    (later,) = handle_all(completion, [event])
    assert later.action == "duplicate" and len(jobs.names()) == 3
    jobs.assert_each_version_in_exactly_one_job(versions_of(dropped))


def test_a_job_wide_failure_is_not_split(data, registry, intake_queue, intake, completion, completions, jobs):
    name, dropped = start_job(data, registry, intake_queue, intake)
    (outcome,) = handle_all(completion, completions.finish(name, "Failed", MODEL_MISSING))
    assert outcome.action == "rejected" and jobs.names() == [name]
    assert len(data.keys("rejected/")) == len(dropped)


# ------------------------------------------------ the bytes scored are the version claimed (issue 16, point 2)
def test_keys_changed_while_their_job_read_them_run_again_from_copies_of_the_claimed_versions(
    s3, data, registry, intake_queue, intake, completion, completions, jobs
):
    """The intake copies nothing: its job reads the dropped keys. A key overwritten, or deleted (a delete
    marker), after the claim and before the job ended may have been read as other bytes: at completion those
    versions are not published from the job but run again, in one job of their own that reads copies of exactly
    the versions claimed; the untouched key's predictions are published at once."""
    registry.register("churn")
    a = data.drop("incoming/churn/a.csv", b"1,2\n")
    b = data.drop("incoming/churn/sub/b.csv", b"3,4\n")
    c = data.drop("incoming/churn/c.csv", b"5,6\n")
    (name,) = intake.handle(queued_messages(intake_queue.receive())).jobs_started
    newer = data.drop("incoming/churn/a.csv", b"9,9\n")  # overwritten while the job runs
    s3.delete_object(Bucket=data.name, Key="incoming/churn/sub/b.csv")  # a delete marker on top

    (outcome,) = handle_all(completion, completions.finish(name, "Completed"))
    assert outcome.action == "reported"
    assert data.exists("predictions/churn/c.csv.out") and data.json("predictions/churn/c.csv.report.json")
    assert not data.exists("predictions/churn/a.csv.out") and not data.exists("predictions/churn/sub/b.csv.out")
    again = data.json(f"jobs/churn/{name}/report.json")["readAgain"]
    exact = jobs.get(again["transformJobName"])
    assert sorted(exact.versions) == sorted([("incoming/churn/a.csv", a), ("incoming/churn/sub/b.csv", b)])
    read = {copy: s3.get_object(Bucket=data.name, Key=copy)["Body"].read() for copy in exact.copies}
    folder = f"jobs/churn/{exact.name}/input/"
    assert read == {f"{folder}a.csv": b"1,2\n", f"{folder}sub/b.csv": b"3,4\n"}
    assert faithful.check_transform_inputs(exact.name) is None  # the copies exist whatever the keys hold
    # The newer version of `a` is a new input of its own; each version is in exactly one job's records.
    assert len(intake.handle(queued_messages(intake_queue.receive())).jobs_started) == 1
    jobs.assert_each_version_in_exactly_one_job(
        {("incoming/churn/a.csv", a), ("incoming/churn/sub/b.csv", b), ("incoming/churn/c.csv", c),
         ("incoming/churn/a.csv", newer)}
    )
    # The claimed version of `b` is scored from its copy and published.
    (done,) = handle_all(completion, completions.finish(exact.name, "Completed"))
    assert done.action == "reported"
    assert data.json("predictions/churn/sub/b.csv.report.json")["input"]["versionId"] == b
    # The event again changes nothing.
    assert [o.action for o in handle_all(completion, completions.route(faithful.transform_job_event(name)))] == [
        "duplicate"
    ]


def test_a_job_failed_by_a_changed_key_runs_again_whole_from_copies_not_failed_or_split(
    s3, data, registry, intake_queue, intake, completion, completions, jobs, notifications
):
    """A delete marker, or the version deleted for good, before SageMaker read the key fails the whole job
    that reads the dropped keys: instead of rejecting or splitting, the job runs again whole from copies of the
    claimed versions; the version deleted for good is listed as deleted there; nobody is rejected."""
    registry.register("churn")
    a = data.drop("incoming/churn/a.csv")
    b = data.drop("incoming/churn/b.csv")
    c = data.drop("incoming/churn/c.csv")
    (name,) = intake.handle(queued_messages(intake_queue.receive())).jobs_started
    s3.delete_object(Bucket=data.name, Key="incoming/churn/b.csv", VersionId=b)  # deleted for good
    s3.delete_object(Bucket=data.name, Key="incoming/churn/c.csv")  # a delete marker
    reason = faithful.check_transform_inputs(name)
    assert reason is not None  # SageMaker fails such a job
    (outcome,) = handle_all(completion, completions.finish(name, "Failed", reason))
    assert outcome.action == "read again"
    report = data.json(f"jobs/churn/{name}/report.json")
    assert report["status"] == "ReadAgain"
    exact = jobs.get(report["readAgain"]["transformJobName"])
    assert exact.keys == ["incoming/churn/a.csv", "incoming/churn/c.csv"]
    assert [(d["key"], d["versionId"]) for d in exact.plan["deleted"]] == [("incoming/churn/b.csv", b)]
    assert faithful.check_transform_inputs(exact.name) is None
    assert data.keys("rejected/") == [] and notifications.drain() == []
    jobs.assert_each_version_in_exactly_one_job(
        {("incoming/churn/a.csv", a), ("incoming/churn/b.csv", b), ("incoming/churn/c.csv", c)}
    )
    # The event again (a handler that died after the new job was launched) changes nothing more.
    again = handle_all(completion, completions.route(faithful.transform_job_event(name)))
    assert [o.action for o in again] == ["duplicate"]
