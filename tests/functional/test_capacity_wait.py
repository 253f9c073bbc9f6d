"""Jobs SageMaker refuses for lack of transform instances wait in the state table and start when capacity frees.

SageMaker's account quota is modelled faithfully at the HTTP layer: CreateTransformJob answers
ResourceLimitExceeded when the instances of the transform jobs InProgress plus the request's would exceed
`Quota.instances`. Jobs are started by the intake from real uploads, finished by the sandbox's SageMaker,
and the completion function's services (its rule's events, its capacity sweep) start the waiting ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import ModelRegistry
from sagepilot.adapters.s3 import DataBucket
from sagepilot.adapters.sagemaker import SageMaker
from sagepilot.adapters.state import StateTable
from sagepilot.events import parse_transform_job_change, queued_messages
from sagepilot.services.batch_completion import BatchCompletion
from sagepilot.services.batch_intake import BatchIntake
from sagepilot.services.jobs import JobLauncher
from sagepilot.settings import Settings

from .conftest import CLIENT_CONFIG, REGION, FakeClock, inject_error, redelivered, sqs_event, transform_jobs

ONE_FILE_PER_JOB = [{"MaxFilesPerJob": "1"}]
RLE_MESSAGE = "The account-level service limit 'ml.m5.xlarge for transform job usage' is {} Instances"


class Quota:
    """The account's transform instances: in use (jobs InProgress) plus asked for must fit."""

    def __init__(self, instances: int) -> None:
        self.instances = instances
        self._sm = boto3.client("sagemaker", region_name=REGION)  # its own client: no injected errors

    def in_use(self) -> int:
        running = transform_jobs(self._sm, StatusEquals="InProgress")
        return sum(
            self._sm.describe_transform_job(TransformJobName=j["TransformJobName"])["TransformResources"][
                "InstanceCount"
            ]
            for j in running
        )

    def refuses(self, request: dict[str, Any]) -> bool:
        return self.in_use() + int(request["TransformResources"]["InstanceCount"]) > self.instances


def enforce(client: Any, quota: Quota) -> Any:
    return inject_error(
        client,
        "CreateTransformJob",
        "ResourceLimitExceeded",
        RLE_MESSAGE.format(quota.instances),
        times=None,
        when=quota.refuses,
    )


@pytest.fixture
def world(stack, clients, intake_settings, completion_settings):
    """The intake and the completion as wiring builds them, on one clock the test moves."""
    clock = FakeClock()

    def build(settings: Settings, client: Callable[[str], Any]) -> tuple[BatchIntake, BatchCompletion]:
        state = StateTable(client("dynamodb"), settings.state_table, clock=clock)
        bucket = DataBucket(client("s3"), settings.data_bucket)
        notifier = Notifier(client("sns"), settings.notification_topic_arn)
        launcher = JobLauncher(
            settings, bucket, SageMaker(client("sagemaker")), state,
            registry=ModelRegistry(client("sagemaker")), notifier=notifier,
        )
        intake = BatchIntake(settings, bucket, ModelRegistry(client("sagemaker")), launcher, notifier)
        completion = BatchCompletion(settings, bucket, SageMaker(client("sagemaker")), state, launcher, notifier)
        return intake, completion

    intake, _ = build(intake_settings, clients)
    _, completion = build(completion_settings, clients)
    return clock, intake, completion, build


def record(stack: Any, clients: Any, job: str) -> dict[str, Any]:
    item = clients("dynamodb").get_item(TableName=stack.outputs["StateTableName"], Key={"pk": {"S": f"job#{job}"}})
    return {k: next(iter(v.values())) for k, v in item["Item"].items()}


def running(sagemaker: Any) -> list[str]:
    summaries = transform_jobs(sagemaker, StatusEquals="InProgress")
    return sorted(j["TransformJobName"] for j in summaries)


def intake_batch(intake: BatchIntake, intake_queue: Any) -> Any:
    event = intake_queue.receive()
    outcome = intake.handle(queued_messages(event))
    intake_queue.settle(event, {"batchItemFailures": [{"itemIdentifier": m} for m in outcome.failed_message_ids]})
    return outcome


def finish(completion: BatchCompletion, completions: Any, job: str) -> Any:
    (event,) = completions.finish(job, "Completed")
    return completion.handle(parse_transform_job_change(event))


def test_a_completion_of_another_groups_job_starts_a_parked_job(
    stack,
    clients,
    data,
    registry,
    intake_queue,
    world,
    completions,
    sagemaker,
    jobs,
    notifications,
):
    _, intake, completion, _ = world
    registry.register("churn")
    registry.register("fraud")
    quota = Quota(instances=1)
    enforce(clients("sagemaker"), quota)
    data.drop("incoming/churn/a.csv")
    (churn,) = intake_batch(intake, intake_queue).jobs_started
    data.drop("incoming/fraud/x.csv")
    outcome = intake_batch(intake, intake_queue)
    (fraud,) = outcome.jobs_waiting_for_capacity
    assert intake_queue.depth() == 0 and running(sagemaker) == [churn]
    assert record(stack, clients, fraud)["kind"] == "waiting-capacity"
    assert [n["subject"] for n in notifications.drain()] == ["sagepilot: 1 transform job(s) waiting for capacity"]

    done = finish(completion, completions, churn)
    assert (done.action, done.started) == ("reported", [fraud])
    assert running(sagemaker) == [fraud]
    started = record(stack, clients, fraud)
    assert started["status"] == "STARTED" and "kind" not in started and "waitingSince" not in started
    jobs.assert_each_version_in_exactly_one_job({(k, v) for k, v in data.versions() if k.startswith("incoming/")})
    assert data.keys("rejected/") == []


def test_a_redelivered_batch_whose_job_still_waits_is_neither_announced_nor_counted_again(
    stack, clients, data, registry, intake_queue, world, completions, sagemaker, notifications
):
    """At-least-once delivery: the same batch again, SageMaker still refusing, finds its job waiting. It tries
    SageMaker again (capacity may be back), but the operators were told once and the files counted once."""
    _, intake, completion, _ = world
    registry.register("churn")
    registry.register("fraud")
    enforce(clients("sagemaker"), Quota(instances=1))
    data.drop("incoming/churn/a.csv")
    (churn,) = intake_batch(intake, intake_queue).jobs_started
    data.drop("incoming/fraud/x.csv")
    event = intake_queue.receive()
    first = intake.handle(queued_messages(event))
    (fraud,) = first.jobs_waiting_for_capacity
    assert first.files_accepted == 1
    again = intake.handle(queued_messages(sqs_event([redelivered(r, 2) for r in event["Records"]])))
    assert (again.jobs_waiting_for_capacity, again.jobs_existing, again.files_accepted) == ([], [fraud], 0)
    assert again.failed_message_ids == [] and again.rejected == []
    assert [n["subject"] for n in notifications.drain()] == ["sagepilot: 1 transform job(s) waiting for capacity"]
    assert record(stack, clients, fraud)["kind"] == "waiting-capacity"
    done = finish(completion, completions, churn)
    assert done.started == [fraud] and running(sagemaker) == [fraud]


@pytest.mark.parametrize("stack_overrides", ONE_FILE_PER_JOB)
def test_the_sweep_starts_the_oldest_first_and_stops_at_the_first_refusal(
    stack,
    clients,
    data,
    registry,
    intake_queue,
    world,
    completions,
    sagemaker,
    jobs,
):
    """Six one-file jobs of three groups, refused in turn while the quota is 0; the quota becomes 2: each
    sweep or completion starts waiting jobs in the scheduler's order (each group's oldest first; the oldest
    waiting head of a group other than the one served last) until SageMaker refuses one, never more than the
    quota runs at once, and every file ends in exactly one job (none lost, none twice, none rejected)."""
    clock, intake, completion, _ = world
    quota = Quota(instances=0)
    fault = enforce(clients("sagemaker"), quota)
    by_group: list[list[str]] = []
    for group in ["fraud", "churn", "leads"]:  # not in name order: the age decides
        registry.register(group)
        for n in range(2):
            data.drop(f"incoming/{group}/{n}.csv")
        outcome = intake_batch(intake, intake_queue)
        by_group.append(sorted(outcome.jobs_waiting_for_capacity))  # same age: by name
        assert len(outcome.jobs_waiting_for_capacity) == 2 and outcome.jobs_started == []
        clock.advance(60)
    assert jobs.names() == [] and intake_queue.depth() == 0
    order = [group_jobs[turn] for turn in range(2) for group_jobs in by_group]  # the groups take turns

    assert completion.sweep().started == []  # still no capacity
    quota.instances = 2
    fault.requests.clear()
    clock.advance(600)
    swept = completion.sweep()
    assert len(swept.started) == 2 and swept.waiting == 4 and swept.refused
    assert swept.started == order[:2]  # fraud's oldest, then churn's: not both of fraud's first
    tried = [r["TransformJobName"] for r in fault.requests]
    assert tried == order[:3]  # the third was refused; nothing after it was tried
    assert swept.oldest_wait_seconds == 780  # fraud's second job waits since 0 s in; it is 780 s in now
    assert completion.sweep().started == []  # the quota is in use: all wait on

    # After the first sweep each completion gives the turn to the oldest waiting head of a group other than the one
    # served last (the stack's latest job, SERVED_WINDOW): fraud's second (waiting since 0 s) before leads' first
    # (120 s), then churn's second (60 s), then leads'.
    turns = [by_group[0][0], by_group[1][0], by_group[0][1], by_group[1][1], *by_group[2]]
    finished: list[str] = []
    while len(finished) < 6:
        assert len(running(sagemaker)) <= 2
        first_started = min(running(sagemaker), key=turns.index)
        finish(completion, completions, first_started)
        finished.append(first_started)
    assert finished == turns  # started, and so finished, in the scheduler's order
    assert completion.sweep().waiting == 0
    jobs.assert_each_version_in_exactly_one_job({(k, v) for k, v in data.versions() if k.startswith("incoming/")})
    assert data.keys("rejected/") == []
    assert {record(stack, clients, j)["status"] for j in order} == {"COMPLETED"}


def test_two_sweepers_create_one_job_and_a_late_refusal_does_not_park_a_started_job(
    stack,
    clients,
    data,
    registry,
    intake_queue,
    intake_settings,
    completion_settings,
    world,
    sagemaker,
    jobs,
):
    """Sweeper A creates the job and, before it records the start, sweeper B tries the same job and an
    intake redelivery is refused for capacity: one SageMaker job, and the record ends STARTED, unlisted."""
    _, intake, sweeper_a, build = world
    registry.register("churn")
    data.drop("incoming/churn/a.csv")
    quota = Quota(instances=0)
    fault = enforce(clients("sagemaker"), quota)
    event = intake_queue.receive()
    (name,) = intake.handle(queued_messages(event)).jobs_waiting_for_capacity
    fault.stop()

    others: dict[str, Any] = {}

    def other_client(service: str) -> Any:  # other invocations: their own clients
        if service not in others:
            others[service] = boto3.client(service, region_name=REGION, config=CLIENT_CONFIG)
        return others[service]

    late_intake, _ = build(intake_settings, other_client)
    _, sweeper_b = build(completion_settings, other_client)
    inject_error(
        other_client("sagemaker"), "CreateTransformJob", "ResourceLimitExceeded", RLE_MESSAGE.format(0), times=1
    )  # the intake redelivery is refused, then B is not
    seen: dict[str, Any] = {}

    def meanwhile(request: Any, **_: Any) -> None:
        if b"STARTED" in (request.body or b"") and not seen:
            seen["intake"] = late_intake.handle(queued_messages(event))
            seen["b"] = sweeper_b.sweep()

    clients("dynamodb").meta.events.register_first("before-send.dynamodb.UpdateItem", meanwhile)
    swept_a = sweeper_a.sweep()

    # Refused, and parked again for a moment; it was waiting already, so not announced or counted again.
    assert (seen["intake"].jobs_waiting_for_capacity, seen["intake"].jobs_existing) == ([], [name])
    assert seen["b"].started == []  # B found the job created: ResourceInUse, not a second job
    assert swept_a.started == [name]
    assert jobs.names() == [name] and running(sagemaker) == [name]
    final = record(stack, clients, name)
    assert final["status"] == "STARTED" and "kind" not in final
    assert sweeper_a.sweep().waiting == 0


@pytest.mark.parametrize("stack_overrides", ONE_FILE_PER_JOB)
def test_a_pass_limited_to_two_starts_the_two_oldest_of_a_group(stack, clients, data, registry, intake_queue, world,
                                                                   jobs):
    """ByKindAge hands the oldest first: a pass limited to 2 starts its group's 2 oldest, never a newer one."""
    clock, intake, completion, _ = world
    registry.register("churn")
    quota = Quota(instances=0)
    enforce(clients("sagemaker"), quota)
    order: list[str] = []
    for n in range(3):
        data.drop(f"incoming/churn/{n}.csv")
        order += intake_batch(intake, intake_queue).jobs_waiting_for_capacity
        clock.advance(60)
    quota.instances = 10
    launcher = JobLauncher(
        completion._settings,  # the completion's own settings and clients
        DataBucket(clients("s3"), completion._settings.data_bucket),
        SageMaker(clients("sagemaker")),
        StateTable(clients("dynamodb"), completion._settings.state_table, clock=clock),
        registry=ModelRegistry(clients("sagemaker")),
        notifier=Notifier(clients("sns"), completion._settings.notification_topic_arn),
    )
    assert launcher.start_parked(limit=2).started == order[:2]
    assert jobs.names() == sorted(order[:2])
    swept = completion.sweep()
    assert (swept.started, swept.waiting, swept.oldest_wait_seconds) == ([order[2]], 0, 0)


# ----------------------------------------------- the scheduler: oldest first within a group, fair across groups
@pytest.mark.parametrize("stack_overrides", ONE_FILE_PER_JOB)
def test_a_new_job_waits_behind_the_older_jobs_of_its_group_without_asking_sagemaker(
    stack, clients, data, registry, intake_queue, world, completions, sagemaker, jobs
):
    """Today's design let a new job try SageMaker while older ones of its group waited, and take the instance
    freed for them. Now it waits behind them (READY, listed for capacity) without a CreateTransformJob; another
    group's new job still tries at once; the older job starts first when capacity frees."""
    clock, intake, completion, _ = world
    registry.register("churn")
    registry.register("fraud")
    quota = Quota(instances=0)
    fault = enforce(clients("sagemaker"), quota)
    data.drop("incoming/churn/old.csv")
    (older,) = intake_batch(intake, intake_queue).jobs_waiting_for_capacity
    clock.advance(60)
    quota.instances = 1  # an instance frees, and before any sweep a new file of the same group arrives
    fault.requests.clear()
    data.drop("incoming/churn/new.csv")
    (newer,) = intake_batch(intake, intake_queue).jobs_waiting_for_capacity
    assert [r["TransformJobName"] for r in fault.requests] == []  # it did not ask SageMaker
    assert jobs.names() == [] and record(stack, clients, newer)["kind"] == "waiting-capacity"
    data.drop("incoming/fraud/x.csv")  # another group's job is not behind churn's
    (fraud,) = intake_batch(intake, intake_queue).jobs_started
    finish(completion, completions, fraud)  # frees the instance: churn's older job first
    assert running(sagemaker) == [older]
    finish(completion, completions, older)
    assert running(sagemaker) == [newer]
    jobs.assert_each_version_in_exactly_one_job({(k, v) for k, v in data.versions() if k.startswith("incoming/")})


@pytest.mark.parametrize("stack_overrides", ONE_FILE_PER_JOB)
def test_a_small_group_is_not_starved_behind_a_big_groups_older_backlog(
    stack, clients, data, registry, intake_queue, world, completions, sagemaker, jobs
):
    """A big group's five older jobs and a small group's newer one wait for the single instance: the small
    group's job starts second, not sixth (today's order was oldest first across all groups)."""
    clock, intake, completion, _ = world
    registry.register("big")
    registry.register("small")
    quota = Quota(instances=0)
    enforce(clients("sagemaker"), quota)
    for n in range(5):
        data.drop(f"incoming/big/{n}.csv")
    big = intake_batch(intake, intake_queue).jobs_waiting_for_capacity
    assert len(big) == 5
    clock.advance(600)
    data.drop("incoming/small/x.csv")
    (small,) = intake_batch(intake, intake_queue).jobs_waiting_for_capacity
    quota.instances = 1
    started = completion.sweep().started
    assert len(started) == 1 and started[0] in big  # the oldest head goes first
    finish(completion, completions, started[0])
    assert running(sagemaker) == [small]  # the small group's turn, ahead of big's four older jobs
    while running(sagemaker):
        finish(completion, completions, running(sagemaker)[0])
    assert completion.sweep().waiting == 0
    jobs.assert_each_version_in_exactly_one_job({(k, v) for k, v in data.versions() if k.startswith("incoming/")})


# ----------------------------------------------- a job that starts late uses a model still approved (issue 16, 3)
@pytest.mark.parametrize("newer_approved", [True, False], ids=["replanned-on-the-newest", "no-approved-model-left"])
def test_a_job_waiting_for_capacity_never_starts_on_a_model_rejected_meanwhile(
    newer_approved, stack, clients, data, registry, intake_queue, world, completions, sagemaker, jobs, notifications,
):
    """The runbook says to reject a broken model to stop its use. A job that waited (for capacity here; a slot,
    a retry and a split piece take the same path) checks its version before it starts: rejected, the job is
    planned again on the group's newest Approved version, or, with none left, its files are rejected."""
    _, intake, completion, _ = world
    v1 = registry.register("churn")
    registry.register("fraud")
    enforce(clients("sagemaker"), Quota(instances=1))
    fraud_version = data.drop("incoming/fraud/x.csv")
    (fraud,) = intake_batch(intake, intake_queue).jobs_started
    dropped = {k: data.drop(k) for k in ["incoming/churn/a.csv", "incoming/churn/b.csv"]}
    (waiting,) = intake_batch(intake, intake_queue).jobs_waiting_for_capacity
    notifications.drain()

    sagemaker.update_model_package(ModelPackageArn=v1, ModelApprovalStatus="Rejected")
    if newer_approved:
        v2 = registry.register("churn")
    done = finish(completion, completions, fraud)  # its instance is free: the waiting job's turn
    moved = record(stack, clients, waiting)
    assert "kind" not in moved and "waitingSince" not in moved  # off the waiting list either way
    if newer_approved:
        assert moved["status"] == "REPLANNED"
        (again,) = running(sagemaker)
        assert again == moved["replannedAs"] != waiting and done.started == [waiting]
        job = jobs.get(again)
        assert (job.plan["modelPackageArn"], job.tags["sagepilot:model-package-version"]) == (v2, "2")
        model = sagemaker.describe_model(ModelName=job.description["ModelName"])
        assert model["PrimaryContainer"]["ModelPackageName"] == v2
        assert data.json(f"jobs/churn/{waiting}/report.json")["replannedAs"]["transformJobName"] == again
        jobs.assert_each_version_in_exactly_one_job(
            set(dropped.items()) | {("incoming/fraud/x.csv", fraud_version)}
        )
        assert finish(completion, completions, again).action == "reported"
        for key in dropped:
            assert data.json(f"predictions/churn/{key.removeprefix('incoming/churn/')}.report.json")[
                "modelPackageVersion"] == 2
        assert data.keys("rejected/") == []
    else:
        assert moved["status"] == "FAILED" and running(sagemaker) == []
        for key, version in dropped.items():
            report = data.json(f"rejected/churn/{key.removeprefix('incoming/churn/')}.json")
            assert (report["code"], report["input"]["versionId"]) == ("NO_APPROVED_MODEL", version)
            assert "no longer Approved" in report["reason"]
        (note,) = notifications.drain()
        assert note["subject"] == "sagepilot: 2 file(s) rejected"
        assert note["message"]["countsByCode"] == {"NO_APPROVED_MODEL": 2}
        # A later pass finds nothing waiting and changes nothing.
        assert completion.sweep().waiting == 0 and notifications.drain() == []


def test_a_job_waiting_for_capacity_whose_model_group_is_deleted_rejects_its_files_naming_the_deleted_group(
    stack, clients, data, registry, intake_queue, world, completions, sagemaker, notifications,
):
    """SageMaker deletes only an empty group: its versions are deleted first, then the group. A job waiting for
    capacity then has no model: its files are rejected (kept where they are, with a report) saying the group was
    deleted and what to do, not that a version was merely no longer Approved."""
    _, intake, completion, _ = world
    v1 = registry.register("churn")
    registry.register("fraud")
    enforce(clients("sagemaker"), Quota(instances=1))
    data.drop("incoming/fraud/x.csv")
    (fraud,) = intake_batch(intake, intake_queue).jobs_started
    dropped = {k: data.drop(k) for k in ["incoming/churn/a.csv", "incoming/churn/b.csv"]}
    (waiting,) = intake_batch(intake, intake_queue).jobs_waiting_for_capacity
    notifications.drain()

    sagemaker.delete_model_package(ModelPackageName=v1)
    sagemaker.delete_model_package_group(ModelPackageGroupName="churn")
    finish(completion, completions, fraud)  # its instance is free: the waiting job's turn

    moved = record(stack, clients, waiting)
    assert moved["status"] == "FAILED" and running(sagemaker) == []
    for key, version in dropped.items():
        assert data.exists(key)  # nothing lost: the file stays where it was uploaded
        report = data.json(f"rejected/churn/{key.removeprefix('incoming/churn/')}.json")
        assert (report["code"], report["input"]["versionId"]) == ("MODEL_GROUP_NOT_FOUND", version)
        assert "model package group 'churn' no longer exists" in report["reason"]
        assert "Create the group" in report["whatToDo"]
    (note,) = notifications.drain()
    assert note["message"]["countsByCode"] == {"MODEL_GROUP_NOT_FOUND": 2}
    assert completion.sweep().waiting == 0 and notifications.drain() == []
