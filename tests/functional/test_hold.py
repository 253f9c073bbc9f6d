"""The start-up hold (services/holding.py, domain/hold.py) in the product: a group that started a job recently
gathers its next batches in one held job, released when the group has been quiet (or the hold ends).

The intake and the completion run as wiring builds them, on one clock the tests move; the intake's delayed
release messages are recorded (SQS would deliver them after their delay in real time) and delivered by the test
when the clock has passed their delay. Handlers are killed at the steps of a release; every file version still
ends in exactly one job that runs.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import ModelRegistry
from sagepilot.adapters.s3 import DataBucket
from sagepilot.adapters.sagemaker import SageMaker
from sagepilot.adapters.state import StateTable
from sagepilot.events import QueuedMessage, queued_messages
from sagepilot.services.batch_completion import BatchCompletion
from sagepilot.services.batch_intake import BatchIntake
from sagepilot.services.holding import GroupHold
from sagepilot.services.jobs import JobLauncher
from sagepilot.settings import Settings

from .conftest import FakeClock, sqs_event
from .test_capacity_wait import finish, record, running
from .test_versions_across_jobs import latest_writes

HOLD = {"HoldSeconds": "420", "HoldQuietSeconds": "30"}
CLAIM_TIMEOUT = 181


class Killed(BaseException):
    """The handler died here: nothing after it runs."""


@dataclass
class Releases:
    """The hold release queue's delayed messages, delivered when the test clock has passed their delay; and the
    intake queue's depth as the hold sees it (its files: `backlog`, and the batch being handled, `own`)."""

    clock: FakeClock
    sent: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    ids: Any = field(default_factory=itertools.count)

    def send_later(self, body: dict[str, Any], delay_seconds: int) -> None:
        assert 0 <= delay_seconds <= 900
        self.sent.append((self.clock.now + delay_seconds, body))

    backlog: int = 0  # messages in other invocations' batches (in flight), or waiting with `waiting`
    own: int = 0  # the batch being handled, in flight too
    waiting: bool = False  # the backlog waits in the queue (not received yet)
    deleted: list[str] = field(default_factory=list)  # receipt handles the intake deleted itself

    def messages(self) -> int:
        return sum(self.depth())

    def depth(self) -> tuple[int, int]:
        return (self.backlog, self.own) if self.waiting else (0, self.backlog + self.own)

    def delete(self, receipt_handles: list[str]) -> None:
        self.deleted += receipt_handles
        self.own = max(0, self.own - len(receipt_handles))

    def due(self) -> list[QueuedMessage]:
        ready = [(at, body) for at, body in self.sent if at <= self.clock.now]
        self.sent = [(at, body) for at, body in self.sent if at > self.clock.now]
        return [QueuedMessage(f"release-{next(self.ids)}", 1, body) for _, body in ready]


@dataclass
class World:
    clock: FakeClock
    releases: Releases
    intake: BatchIntake
    completion: BatchCompletion
    hold: GroupHold
    state: StateTable

    def deliver_releases(self) -> list[Any]:
        outcomes = []
        while messages := self.releases.due():
            self.releases.own = 0  # (release messages are not in the intake queue)
            outcomes.append(self.intake.handle(list(messages)))
        return outcomes


def build_world(
    clock: FakeClock, intake_settings: Settings, completion_settings: Settings, clients: Callable[[str], Any]
) -> World:
    releases = Releases(clock)

    def parts(settings: Settings, queue: Any) -> tuple[JobLauncher, StateTable, DataBucket, Notifier, GroupHold]:
        state = StateTable(clients("dynamodb"), settings.state_table, clock=clock)
        bucket = DataBucket(clients("s3"), settings.data_bucket)
        notifier = Notifier(clients("sns"), settings.notification_topic_arn)
        launcher = JobLauncher(
            settings, bucket, SageMaker(clients("sagemaker")), state,
            registry=ModelRegistry(clients("sagemaker")), notifier=notifier,
        )  # fmt: skip
        return launcher, state, bucket, notifier, GroupHold(settings, state, bucket, launcher, queue, queue)

    launcher, state, bucket, notifier, hold = parts(intake_settings, releases)
    intake = BatchIntake(intake_settings, bucket, ModelRegistry(clients("sagemaker")), launcher, notifier, hold=hold)
    c_launcher, c_state, c_bucket, c_notifier, c_hold = parts(completion_settings, None)
    completion = BatchCompletion(
        completion_settings, c_bucket, SageMaker(clients("sagemaker")), c_state, c_launcher, c_notifier, hold=c_hold
    )
    return World(clock, releases, intake, completion, hold, state)


@pytest.fixture
def world(stack, clients, intake_settings, completion_settings, registry, intake_queue) -> World:
    registry.register("churn")
    world = build_world(FakeClock(), intake_settings, completion_settings, clients)
    intake_queue.clock = world.clock  # the quiet counts from SQS's SentTimestamp: on the test clock
    return world


def batch(world: World, intake_queue: Any, data: Any, keys: list[str]) -> Any:
    for key in keys:
        data.drop(key)
    event = intake_queue.receive()
    messages = queued_messages(event)
    world.releases.own = len(messages)  # in flight while it is handled
    outcome = world.intake.handle(messages)
    intake_queue.settle(event, {"batchItemFailures": [{"itemIdentifier": m} for m in outcome.failed_message_ids]})
    return outcome


def finish_everything(world: World, completions: Any, sagemaker: Any) -> None:
    for _ in range(10):
        for job in running(sagemaker):
            finish(world.completion, completions, job)
        world.clock.advance(CLAIM_TIMEOUT)
        world.completion.sweep()
        if not running(sagemaker):
            return
    raise AssertionError("jobs keep running")


def assert_every_file_in_exactly_one_job(data: Any, jobs: Any) -> None:
    dropped = {(k, v) for k, v in data.versions() if k.startswith("incoming/")}
    jobs.assert_each_version_in_exactly_one_job(dropped)
    assert data.keys("rejected/") == []
    for key, _ in dropped:
        assert data.json(key.replace("incoming/", "predictions/", 1) + ".report.json")["status"] == "Completed"


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_a_busy_groups_next_batches_gather_in_one_held_job_released_when_the_group_is_quiet(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    first = batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    assert len(first.jobs_started) == 1 and first.jobs_held == []  # a quiet group starts at once
    world.clock.advance(10)
    second = batch(world, intake_queue, data, ["incoming/churn/b.csv", "incoming/churn/c.csv"])
    assert second.jobs_started == [] and len(second.jobs_held) == 1 and second.files_accepted == 2
    (held,) = second.jobs_held
    assert record(stack, clients, held)["status"] == "HELD" and record(stack, clients, held)["kind"] == "held"
    world.clock.advance(20)
    third = batch(world, intake_queue, data, ["incoming/churn/d.csv"])
    assert third.jobs_held == [held] and third.jobs_started == []
    assert running(sagemaker) == first.jobs_started

    # The release message comes 30 s after the held job opened; the group sent a file 10 s ago: not yet.
    world.clock.advance(10)
    (early,) = world.deliver_releases()
    assert early.releases == {held: "not due"} and record(stack, clients, held)["status"] == "HELD"
    assert [at - world.clock.now for at, _ in world.releases.sent] == [20]  # sent again for the rest
    world.clock.advance(20)
    (released,) = world.deliver_releases()
    assert released.releases == {held: "released"} and released.jobs_started == [held]  # counted as started
    assert sorted(running(sagemaker)) == sorted([*first.jobs_started, held])
    plan = data.json(f"jobs/churn/{held}/plan.json")
    assert sorted(i["key"] for i in plan["inputs"]) == [f"incoming/churn/{f}.csv" for f in "bcd"]
    state = record(stack, clients, held)
    assert state["status"] == "STARTED" and "kind" not in state

    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)
    assert len(jobs.all()) == 2
    report = data.json(f"jobs/churn/{held}/report.json")
    assert report["status"] == "Completed" and "mergedFrom" not in report  # the batches were never jobs


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_a_group_quiet_for_the_hold_starts_its_next_batch_at_once(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    world.clock.advance(421)
    later = batch(world, intake_queue, data, ["incoming/churn/b.csv"])
    assert len(later.jobs_started) == 1 and later.jobs_held == [] and world.releases.sent == []
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_a_held_job_is_released_when_the_hold_ends_even_if_files_keep_coming(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    held = None
    for i in range(30):  # a file every 20 s: the group is never quiet for 30 s
        world.clock.advance(20)
        outcome = batch(world, intake_queue, data, [f"incoming/churn/t{i}.csv"])
        for result in world.deliver_releases():
            if result.releases.get(held) == "released":
                break
        held = held or outcome.jobs_held[0]
        if record(stack, clients, held)["status"] != "HELD":
            break
    # Released 420 s after the group's first start, not later, with the batch that came then: still two jobs.
    assert record(stack, clients, held)["status"] == "STARTED"
    assert world.clock.now - 1_900_000_000 <= 440
    assert len(running(sagemaker)) == 2
    assert len(data.json(f"jobs/churn/{held}/plan.json")["inputs"]) == int(world.clock.now - 1_900_000_000) // 20
    finish_everything(world, completions, sagemaker)
    world.clock.advance(60)
    for result in world.deliver_releases():
        assert set(result.releases.values()) <= {"released", "done"}
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [{**HOLD, "MaxFilesPerJob": "3"}])
def test_a_held_job_that_is_full_starts_at_once_and_a_new_one_holds_what_follows(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/b.csv", "incoming/churn/c.csv"]).jobs_held
    nxt = batch(world, intake_queue, data, ["incoming/churn/d.csv", "incoming/churn/e.csv"])
    assert record(stack, clients, held)["status"] == "STARTED"  # 2 + 2 > 3: the full one went
    (second,) = nxt.jobs_held
    assert second != held and record(stack, clients, second)["status"] == "HELD"
    full = batch(world, intake_queue, data, [f"incoming/churn/f{i}.csv" for i in range(3)])
    assert len(full.jobs_started) == 1 and full.jobs_held == []  # work that fills a job is never held
    world.clock.advance(60)
    world.deliver_releases()
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)
    assert len(jobs.all()) == 4


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_the_sweep_releases_a_held_job_whose_release_message_was_lost(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/b.csv"]).jobs_held
    world.releases.sent.clear()  # lost
    world.clock.advance(60)
    world.completion.sweep()
    # Quiet, but the sweep cannot see the intake queue's backlog: it waits for the hold to be over.
    assert record(stack, clients, held)["status"] == "HELD"
    world.clock.advance(360)
    world.completion.sweep()
    assert record(stack, clients, held)["status"] == "STARTED"
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_the_sweep_reads_every_held_job_together_and_releases_only_those_whose_hold_is_over(
    stack, clients, data, intake_queue, world, registry, completions, sagemaker, jobs
):
    """One held job per busy group, and the sweep runs every few minutes: it reads them all in one go (not two
    reads per held job), and leaves those whose hold is not over to their messages."""
    groups = [f"g{i}" for i in range(12)]
    for group in groups:
        registry.register(group)
    batch(world, intake_queue, data, [f"incoming/{g}/a.csv" for g in groups])
    held = batch(world, intake_queue, data, [f"incoming/{g}/b.csv" for g in groups]).jobs_held
    assert len(held) == len(groups)
    world.releases.sent.clear()  # lost
    calls: Counter[str] = Counter()
    clients("dynamodb").meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.update([model.name]))
    world.clock.advance(60)
    assert world.completion.sweep().started == []
    assert calls["GetItem"] == 0 and calls["BatchGetItem"] <= 3, calls  # held jobs, their groups (and claims)
    assert {record(stack, clients, j)["status"] for j in held} == {"HELD"}
    world.clock.advance(360)
    assert sorted(world.completion.sweep().started) == sorted(held)
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [HOLD])
@pytest.mark.parametrize("dies_at", ["close_held", "started_now", "start_held"])
def test_a_releaser_that_dies_after_sealing_leaves_the_job_to_the_sweep(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs, monkeypatch, dies_at
):
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/b.csv", "incoming/churn/c.csv"]).jobs_held
    target = world.hold._launcher if dies_at == "start_held" else world.state

    def die(*args: Any, **kwargs: Any) -> None:
        raise Killed(dies_at)

    with monkeypatch.context() as patch:
        patch.setattr(target, dies_at, die)
        world.clock.advance(31)
        with pytest.raises(Killed):
            world.deliver_releases()
    assert record(stack, clients, held)["status"] == "CLAIMING"
    # A new batch meanwhile: the sealed job takes nothing more; the batch is held in a new job or starts.
    after = batch(world, intake_queue, data, ["incoming/churn/d.csv"])
    assert held not in after.jobs_held
    world.clock.advance(CLAIM_TIMEOUT)
    world.completion.sweep()
    assert record(stack, clients, held)["status"] == "STARTED"
    world.clock.advance(60)
    world.deliver_releases()
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_a_held_job_finished_for_a_releaser_that_died_before_closing_it_is_no_longer_its_groups_open_job(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs, monkeypatch
):
    """Found by the reliability suite (test_an_invocation_killed_at_any_step_of_the_hold...): the releaser dies
    between the seal and closing the group's open job, and the sweep finishes the release; the group's record
    must not keep naming the sealed job as its open one."""
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/b.csv"]).jobs_held

    def die(*args: Any, **kwargs: Any) -> None:
        raise Killed("close_held")

    with monkeypatch.context() as patch:
        patch.setattr(world.state, "close_held", die)
        world.clock.advance(31)
        with pytest.raises(Killed):
            world.deliver_releases()
    assert world.state.group_record("churn")["openJob"] == held
    world.clock.advance(CLAIM_TIMEOUT)
    world.completion.sweep()
    assert record(stack, clients, held)["status"] == "STARTED"
    assert "openJob" not in world.state.group_record("churn")
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_a_batch_redelivered_after_its_held_job_was_released_is_neither_lost_nor_doubled(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    data.drop("incoming/churn/b.csv")
    data.drop("incoming/churn/c.csv")
    event = intake_queue.receive()
    (held,) = world.intake.handle(queued_messages(event)).jobs_held
    intake_queue.release(event["Records"])  # the handler died before answering: the batch comes again
    world.clock.advance(31)
    world.deliver_releases()
    assert record(stack, clients, held)["status"] == "STARTED"
    again = world.intake.handle(queued_messages(intake_queue.receive()))
    assert again.jobs_started == [] and again.rejected == []
    world.clock.advance(60)
    world.deliver_releases()
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)
    assert len(jobs.all()) == 2


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_a_held_batch_on_its_last_delivery_starts_as_it_is(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs, intake_settings
):
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    data.drop("incoming/churn/b.csv")
    event = intake_queue.receive()
    for r in event["Records"]:
        r["attributes"]["ApproximateReceiveCount"] = str(intake_settings.intake_max_receive_count)
    outcome = world.intake.handle(queued_messages(event))
    assert len(outcome.jobs_started) == 1 and outcome.jobs_held == []
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_the_intake_needs_its_queue_to_hold(stack, clients, intake_settings):
    from sagepilot import wiring
    from sagepilot.errors import ConfigurationError

    assert intake_settings.hold.hold_seconds == 420 and intake_settings.intake_queue_url
    assert intake_settings.hold_release_queue_url
    for name in ("INTAKE_QUEUE_URL", "HOLD_RELEASE_QUEUE_URL"):
        settings = Settings(**{**intake_settings.__dict__, name.lower(): ""})
        with pytest.raises(ConfigurationError, match=name):
            wiring.batch_intake(settings, clients)


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_a_held_job_released_between_taking_a_batch_and_claiming_its_files_leaves_them_to_a_job_of_their_own(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs, monkeypatch
):
    """The release (another invocation) seals the held job after this batch was added to it and before its
    files were claimed: the sealed job never reads a claim made after it was planned, so the claims are refused
    and the batch starts alone."""
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/b.csv"]).jobs_held
    claim_held = world.state.claim_held
    raced = []

    def release_first(job: str, group: str, file_ids: list[str]) -> Any:
        if not raced:
            raced.append(world.hold.release(job, force=True))
        return claim_held(job, group, file_ids)

    monkeypatch.setattr(world.state, "claim_held", release_first)
    late = batch(world, intake_queue, data, ["incoming/churn/c.csv"])
    assert raced == ["released"] and late.jobs_held == [] and len(late.jobs_started) == 1
    assert sorted(i["key"] for i in data.json(f"jobs/churn/{held}/plan.json")["inputs"]) == ["incoming/churn/b.csv"]
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)
    assert len(jobs.all()) == 3


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_a_held_job_waits_while_the_intake_queue_has_a_backlog_until_the_hold_ends(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    """Quiet as far as the intake has read is not quiet while files wait in the queue (they may be the
    group's): the release waits, and the hold's end releases it whatever the backlog."""
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/b.csv"]).jobs_held
    world.releases.backlog = 5000
    world.clock.advance(30)
    (first,) = world.deliver_releases()
    assert first.releases == {held: "backlog"} and record(stack, clients, held)["status"] == "HELD"
    world.releases.backlog = 0
    world.clock.advance(30)
    (second,) = world.deliver_releases()
    assert second.releases == {held: "released"}

    (again,) = batch(world, intake_queue, data, ["incoming/churn/c.csv"]).jobs_held
    world.releases.backlog = 5000
    for _ in range(20):
        world.clock.advance(30)
        outcomes = world.deliver_releases()
        if any(o.releases.get(again) == "released" for o in outcomes):
            break
        assert all(o.releases.get(again) == "backlog" for o in outcomes)
    # Released when the hold ended: 420 s after the group's last start (the release of the first held job).
    assert record(stack, clients, again)["status"] == "STARTED"
    assert int(record(stack, clients, again)["updatedAt"]) - int(record(stack, clients, held)["updatedAt"]) <= 450
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_the_quiet_counts_from_when_the_groups_newest_file_reached_the_queue_not_from_when_it_was_read(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    """After a burst the intake reads its backlog late: a group whose last file reached the queue 20 s before
    the intake read it has been quiet for those 20 s already, and is released 30 s after that file arrived (as
    soon as the backlog is read), not 30 s after it was read."""
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/b.csv"]).jobs_held  # opened now: T
    world.clock.advance(5)
    data.drop("incoming/churn/c.csv")
    event = intake_queue.receive()  # SQS has it at T + 5 ...
    world.clock.advance(20)
    outcome = world.intake.handle(queued_messages(event))  # ... and the busy intake reads it at T + 25
    intake_queue.settle(event, {"batchItemFailures": []})
    assert outcome.jobs_held == [held]
    world.clock.advance(5)
    (early,) = world.deliver_releases()  # T + 30: the group has been quiet 25 s
    assert early.releases == {held: "not due"}
    assert [at - world.clock.now for at, _ in world.releases.sent] == [5]
    world.clock.advance(5)
    (released,) = world.deliver_releases()  # T + 35: quiet for 30 s since c reached the queue
    assert released.releases == {held: "released"}
    plan = data.json(f"jobs/churn/{held}/plan.json")
    assert sorted(i["key"] for i in plan["inputs"]) == ["incoming/churn/b.csv", "incoming/churn/c.csv"]
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_the_batch_that_reads_a_quiet_groups_last_files_releases_its_held_job_when_nothing_else_is_queued(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    """After a burst the intake reads its backlog late. The batch that reads it last, finding nothing else in the
    intake queue, releases the held jobs of groups quiet for the quiet time since their newest file reached the
    queue: at once, not at its release message's next look. Not while other messages wait (they may be the group's),
    and not before the group is quiet."""
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/b.csv"]).jobs_held  # opened now: T

    def read_late(key: str, *, after: int, backlog: int) -> Any:
        data.drop(key)
        event = intake_queue.receive()  # SQS has it now ...
        world.clock.advance(after)  # ... and the busy intake reads it this much later
        world.releases.backlog, world.releases.own = backlog, 1
        outcome = world.intake.handle(queued_messages(event))
        intake_queue.settle(event, {"batchItemFailures": []})
        return outcome

    busy = read_late("incoming/churn/c.csv", after=35, backlog=3)  # quiet 35 s, but three messages wait
    assert busy.jobs_held == [held] and busy.releases == {} and record(stack, clients, held)["status"] == "HELD"
    early = read_late("incoming/churn/d.csv", after=10, backlog=0)  # the queue's last, quiet only 10 s
    assert early.jobs_held == [held] and early.releases == {} and record(stack, clients, held)["status"] == "HELD"
    sent = len(world.releases.sent)
    last = read_late("incoming/churn/e.csv", after=31, backlog=0)  # the queue's last, quiet 31 s
    assert last.jobs_held == [held] and last.releases == {held: "released"} and last.jobs_started == [held]
    assert len(world.releases.sent) == sent  # no release message sent for it
    plan = data.json(f"jobs/churn/{held}/plan.json")
    assert sorted(i["key"] for i in plan["inputs"]) == [f"incoming/churn/{f}.csv" for f in "bcde"]

    world.clock.advance(900)  # its release messages still come: they find it released
    world.releases.backlog = 0
    assert {how for o in world.deliver_releases() for how in o.releases.values()} <= {"done"}
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)
    assert len(jobs.all()) == 2


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_the_last_batch_releases_every_quiet_group_it_held_work_of_at_once(
    stack, clients, data, intake_queue, world, registry, completions, sagemaker, jobs, monkeypatch
):
    """A burst of two groups: the batch that reads the queue's last messages releases both groups' held jobs (side
    by side, each its own group's), and a group that is not quiet yet is left to its release message."""
    from sagepilot.services import batch_intake

    registry.register("fraud")
    registry.register("churn2")
    batch(world, intake_queue, data, ["incoming/churn/a.csv", "incoming/fraud/a.csv", "incoming/churn2/a.csv"])
    held = batch(world, intake_queue, data, ["incoming/churn/b.csv", "incoming/fraud/b.csv", "incoming/churn2/b.csv"])
    assert len(held.jobs_held) == 3
    for key in ("incoming/churn/c.csv", "incoming/fraud/c.csv"):
        data.drop(key)
    early = intake_queue.receive()  # SQS has them now ...
    world.clock.advance(20)
    data.drop("incoming/churn2/c.csv")  # ... churn2's 20 s later: not quiet with them
    late = intake_queue.receive()
    world.clock.advance(15)  # all read in one batch 35 s after the first two, 15 s after churn2's
    world.releases.backlog, world.releases.own = 0, 3
    used: list[int] = []
    each = batch_intake._each

    def counting(fn, items):
        used.append(len(items))
        return each(fn, items)

    monkeypatch.setattr(batch_intake, "_each", counting)
    outcome = world.intake.handle(queued_messages(early) + queued_messages(late))
    for event in (early, late):
        intake_queue.settle(event, {"batchItemFailures": []})
    released = {job for job, how in outcome.releases.items() if how == "released"}
    churn2 = next(j for j in held.jobs_held if "churn2" in j)
    assert released == set(held.jobs_held) - {churn2} and sorted(outcome.jobs_started) == sorted(released)
    assert 2 in used  # the two quiet groups' releases went out together
    assert record(stack, clients, churn2)["status"] == "HELD"  # left to its release message
    world.clock.advance(900)
    world.deliver_releases()
    assert record(stack, clients, churn2)["status"] == "STARTED"
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


# ---------------------------------------------------------------------------------------- the release queue
QUICK_QUIET = {"HoldSeconds": "420", "HoldQuietSeconds": "2"}  # (the state table counts whole seconds)


def take(intake: BatchIntake, intake_queue: Any, data: Any, keys: list[str]) -> Any:
    """Drop `keys`, then hand the intake queue's visible messages to the wired intake as one batch, and settle it
    as Lambda does."""
    from .conftest import response_of

    for key in keys:
        data.drop(key)
    event = intake_queue.receive()
    outcome = intake.handle(queued_messages(event))
    intake_queue.settle(event, response_of(outcome))
    return outcome


def depth(queue: Any) -> int:
    """Every message of the queue: waiting, in flight or still delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = queue.sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[n]) for n in names)


@pytest.mark.parametrize("stack_overrides", [QUICK_QUIET])
def test_release_messages_have_a_queue_of_their_own_and_many_groups_release_side_by_side(
    stack, clients, data, registry, intake_queue, intake, jobs
):
    """As wiring builds the intake, on the template's queues and in real time (a quiet of 2 s): held jobs' release
    messages go to the hold release queue, never the intake queue. A release waits while files wait in the intake
    queue (they may be its group's), sending itself again to the release queue; once the intake queue is empty,
    three groups' release messages handled in three concurrent batches (each in flight while the others are
    handled, as Lambda's pollers do) are all released: none sees the others as a backlog."""
    from .conftest import _queue, response_of, sqs_event, sqs_record

    groups = ["churn", "fraud", "risk"]
    for group in groups:
        registry.register(group)
    releases = _queue(stack, clients("sqs"), stack.outputs["HoldReleaseQueueUrl"])

    assert (
        len(take(intake, intake_queue, data, [f"incoming/{g}/a.csv" for g in groups]).jobs_started) == 3
    )  # quiet groups: at once
    held = take(intake, intake_queue, data, [f"incoming/{g}/b.csv" for g in groups]).jobs_held
    assert len(held) == 3 and depth(intake_queue) == 0 and depth(releases) == 3

    def release_round() -> dict[str, str]:
        """The release queue's visible messages, one batch each, all received before any is handled."""
        events = []
        while messages := releases.sqs.receive_message(
            QueueUrl=releases.url, MaxNumberOfMessages=1, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", []):
            events.append(sqs_event([sqs_record(m, releases.arn) for m in messages]))
        how: dict[str, str] = {}
        for event in events:
            outcome = intake.handle(queued_messages(event))
            releases.settle(event, response_of(outcome))
            how.update(outcome.releases)
        return how

    data.drop("incoming/churn/c.csv")  # a file waits in the intake queue: the releases wait for it
    seen: dict[str, str] = {}
    for _ in range(50):
        seen = release_round()
        if seen:
            break
        time.sleep(0.2)
    assert seen == dict.fromkeys(held, "backlog")
    assert depth(intake_queue) == 1 and depth(releases) == 3  # each sent itself again, to the release queue

    planned = take(intake, intake_queue, data, [])  # the intake reads the file (churn's held job takes it)
    assert planned.jobs_held + planned.jobs_started and depth(intake_queue) == 0
    released = {job: how for job, how in planned.releases.items() if how == "released"}
    for _ in range(60):
        if len(released) == 3:
            break
        time.sleep(0.2)
        round_ = release_round()
        assert "backlog" not in round_.values(), round_  # the intake queue is empty: no release waits
        released.update({job: how for job, how in round_.items() if how == "released"})
    assert released == dict.fromkeys(held, "released")
    for _ in range(60):  # (the batch that read the file, the queue's last, released all three quiet groups at once:
        if not depth(releases):  # their release messages, sent again while it waited, find them released)
            break
        time.sleep(0.2)
        assert set(release_round().values()) <= {"done"}
    assert depth(releases) == 0
    dropped = {(k, v) for k, v in data.versions() if k.startswith("incoming/")}
    jobs.assert_each_version_in_exactly_one_job(dropped)
    assert len(jobs.all()) == 6


@pytest.mark.parametrize("stack_overrides", [QUICK_QUIET])
def test_of_two_batches_finishing_side_by_side_the_last_to_look_releases_every_quiet_group(
    stack, clients, data, registry, intake_queue, intake, jobs
):
    """As wiring builds the intake, on the template's queues and in real time (a quiet of 2 s): a burst's last two
    batches, each of one group, are received together and handled one after the other while both are in flight
    (as two concurrent invocations finishing side by side). The first to finish sees the other's messages in
    flight and releases nothing; it deletes its own messages first (its work is done), so the second, finding the
    intake queue empty, releases both groups' held jobs at once, the first's too, instead of their release
    messages' next look."""
    from .conftest import _queue, response_of

    groups = ["churn", "fraud"]
    for group in groups:
        registry.register(group)
    releases = _queue(stack, clients("sqs"), stack.outputs["HoldReleaseQueueUrl"])

    assert (
        len(take(intake, intake_queue, data, [f"incoming/{g}/a.csv" for g in groups]).jobs_started) == 2
    )  # quiet groups: at once
    data.drop("incoming/churn/b.csv")
    first = intake_queue.receive()
    data.drop("incoming/fraud/b.csv")
    second = intake_queue.receive()
    assert len(first["Records"]) == len(second["Records"]) == 1
    time.sleep(2.2)  # both groups quiet for the quiet time since their files reached the queue

    one = intake.handle(queued_messages(first))
    (churn,) = one.jobs_held
    assert one.releases == {} and depth(intake_queue) == 1  # its own message deleted; the other's in flight
    two = intake.handle(queued_messages(second))
    (fraud,) = two.jobs_held
    assert two.releases == {churn: "released", fraud: "released"} and sorted(two.jobs_started) == sorted([churn, fraud])
    for event, outcome in ((first, one), (second, two)):
        intake_queue.settle(event, response_of(outcome))  # (Lambda deletes them again: SQS answers success)
    assert depth(intake_queue) == 0
    dropped = {(k, v) for k, v in data.versions() if k.startswith("incoming/")}
    jobs.assert_each_version_in_exactly_one_job(dropped)
    assert len(jobs.all()) == 4
    assert depth(releases) == 2  # their release messages still come, and find them released


@pytest.mark.usefixtures("no_retry_delay")
@pytest.mark.parametrize("stack_overrides", [QUICK_QUIET])
def test_a_batch_whose_message_failed_deletes_only_its_handled_ones_and_releases_nothing(
    stack, clients, data, registry, intake_queue, intake, jobs
):
    """A batch ending with a message handed back (its group's model could not be read) and others in flight: it
    deletes its handled messages, not the failed one, which is still in flight and may be a quiet group's file,
    so nothing is released. The failed message, handled again as the queue's last, releases the quiet group."""
    from .conftest import event_key, inject_error, response_of

    for group in ("churn", "fraud"):
        registry.register(group)
    take(intake, intake_queue, data, ["incoming/churn/a.csv"])  # churn started: it holds now
    data.drop("incoming/churn/b.csv")
    data.drop("incoming/fraud/a.csv")
    event = intake_queue.receive()
    time.sleep(2.2)  # churn quiet for the quiet time
    fault = inject_error(
        clients("sagemaker"), "ListModelPackages", "ServiceUnavailable", "down", status=503, times=None,
        when=lambda body: body.get("ModelPackageGroupName") == "fraud",
    )  # fmt: skip
    outcome = intake.handle(queued_messages(event))
    (held,) = outcome.jobs_held
    (failed,) = outcome.failed_message_ids
    assert "fraud" in event_key(next(r for r in event["Records"] if r["messageId"] == failed))
    assert outcome.releases == {} and record(stack, clients, held)["status"] == "HELD"
    assert depth(intake_queue) == 1  # churn's message deleted by the batch; fraud's in flight, handed back
    intake_queue.settle(event, response_of(outcome))

    fault.stop()
    again = intake_queue.receive()
    retried = intake.handle(queued_messages(again))
    intake_queue.settle(again, response_of(retried))
    assert retried.releases == {held: "released"} and held in retried.jobs_started and len(retried.jobs_started) == 2
    dropped = {(k, v) for k, v in data.versions() if k.startswith("incoming/")}
    jobs.assert_each_version_in_exactly_one_job(dropped)


@pytest.mark.parametrize("stack_overrides", [QUICK_QUIET])
def test_a_last_batch_with_a_message_it_cannot_delete_still_releases_the_quiet_group(
    stack, clients, data, registry, intake_queue, intake, jobs
):
    """A message that is not JSON beside a quiet group's held file, in the intake queue's last batch: the batch
    counts it as its own (Lambda deletes it), so it still finds the queue holding nothing else and releases."""
    from .conftest import response_of

    registry.register("churn")
    take(intake, intake_queue, data, ["incoming/churn/a.csv"])  # churn started: it holds now
    data.drop("incoming/churn/b.csv")
    intake_queue.sqs.send_message(QueueUrl=intake_queue.url, MessageBody="not json")
    event = intake_queue.receive()
    assert len(event["Records"]) == 2
    time.sleep(2.2)  # churn quiet for the quiet time
    outcome = intake.handle(queued_messages(event))
    (held,) = outcome.jobs_held
    assert outcome.releases == {held: "released"} and outcome.jobs_started == [held]
    intake_queue.settle(event, response_of(outcome))
    dropped = {(k, v) for k, v in data.versions() if k.startswith("incoming/")}
    jobs.assert_each_version_in_exactly_one_job(dropped)


def marks(world: World, data: Any, keys: list[str]) -> dict[str, tuple[str, str]]:
    """Each key's newest version taken by a job, as (version id, job)."""
    found = world.state.latest([f"{data.name}/{k}" for k in keys])
    return {k.removeprefix(f"{data.name}/"): (str(m["versionId"]), str(m["job"])) for k, m in found.items()}


def state_reads(clients: Any) -> list[str]:
    """The claims (`input#`) and marks (`latest#`) read from now on by BatchGetItem, on the shared client."""
    read: list[str] = []

    def batch_get(params: dict[str, Any], **_: Any) -> None:
        read.extend(k["pk"]["S"] for table in params["RequestItems"].values() for k in table["Keys"])

    clients("dynamodb").meta.events.register("before-parameter-build.dynamodb.BatchGetItem", batch_get)
    return read


@pytest.mark.parametrize("stack_overrides", [HOLD])
def test_a_held_batchs_claims_and_newest_versions_are_recorded_as_it_is_held_and_the_release_reads_neither(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    """The marks (`latest#<bucket>/<key>`) a released held job needs are made as its batches are held, spread over
    the upload, and what the claims and marks found is kept with each batch's plan: the release reads neither the
    claims nor the marks back, and writes no mark."""
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/b.csv", "incoming/churn/c.csv"]).jobs_held
    world.clock.advance(10)
    assert batch(world, intake_queue, data, ["incoming/churn/d.csv"]).jobs_held == [held]
    keys = [f"incoming/churn/{f}.csv" for f in "bcd"]
    dropped = dict(data.versions())
    assert marks(world, data, keys) == {k: (dropped[k], held) for k in keys}

    written, read = latest_writes(clients), state_reads(clients)
    world.clock.advance(30)
    (released,) = world.deliver_releases()
    assert released.releases == {held: "released"} and released.jobs_started == [held]
    assert written == []
    assert [pk for pk in read if pk.startswith(("input#", "latest#"))] == []
    assert sorted(i["key"] for i in data.json(f"jobs/churn/{held}/plan.json")["inputs"]) == keys
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [HOLD])
@pytest.mark.parametrize("dies_before", ["mark_newest", "put_json"])
def test_a_batch_whose_holder_died_before_recording_its_claims_has_them_read_at_the_release(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs, monkeypatch, dies_before
):
    """The holder of a batch dies after claiming its files for the held job, before marking them
    (`mark_newest`) or before keeping what it found with the batch's plan (the second `put_json`), and the batch
    is not delivered again (its files' owner is the held job). The release reads that batch's claims and marks,
    writes the marks missing, and the job reads its files; the other batch's record is taken as kept."""
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/b.csv"]).jobs_held
    world.clock.advance(10)
    target = world.hold._launcher if dies_before == "mark_newest" else world.hold._bucket
    real = getattr(target, dies_before)
    calls = []

    def dies(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if dies_before == "put_json" and len(calls) == 1:
            return real(*args, **kwargs)  # (the batch's plan, kept before it is added to the held job)
        raise Killed(dies_before)

    with monkeypatch.context() as patch:
        patch.setattr(target, dies_before, dies)
        for key in ("incoming/churn/c.csv", "incoming/churn/d.csv"):
            data.drop(key)
        event = intake_queue.receive()
        world.releases.own = 2
        with pytest.raises(Killed):
            world.intake.handle(queued_messages(event))
    keys = [f"incoming/churn/{f}.csv" for f in "bcd"]
    dropped = dict(data.versions())
    expected = {k: (dropped[k], held) for k in keys}
    if dies_before == "mark_newest":
        assert marks(world, data, keys) == {k: v for k, v in expected.items() if k.endswith("b.csv")}
    intake_queue.settle(event, {"batchItemFailures": []})  # (as if the batch were not handed back)

    read = state_reads(clients)
    world.clock.advance(30)
    (released,) = world.deliver_releases()
    assert released.releases == {held: "released"}
    unrecorded = keys[1:]  # (the batch of c and d; b's batch kept its record)
    assert sorted(pk for pk in read if pk.startswith("input#")) == [
        f"input#{data.name}/{k}#{dropped[k]}" for k in unrecorded
    ]
    assert sorted(pk for pk in read if pk.startswith("latest#")) == [f"latest#{data.name}/{k}" for k in unrecorded]
    assert marks(world, data, keys) == expected
    assert sorted(i["key"] for i in data.json(f"jobs/churn/{held}/plan.json")["inputs"]) == keys
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)


@pytest.mark.parametrize("stack_overrides", [{**HOLD, "MaxFilesPerJob": "3"}])
def test_a_newer_version_started_alone_after_the_hold_supersedes_the_held_one(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    """A held version's mark does not stop a newer version in a job of its own (a full batch, never held) from
    marking it. The held job's release takes its batches' claims and marks as they were recorded when held
    (reading none back), so it reads the older version; its completion finds it outdated: the key's predictions
    and report are the newer version's, and the held job's report says which version and job superseded it."""
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    (held,) = batch(world, intake_queue, data, ["incoming/churn/w.csv", "incoming/churn/x.csv"]).jobs_held
    old = dict(data.versions())["incoming/churn/x.csv"]
    world.clock.advance(10)
    full = batch(world, intake_queue, data, ["incoming/churn/x.csv", "incoming/churn/y.csv", "incoming/churn/z.csv"])
    (alone,) = full.jobs_started
    new = next(v for k, v in data.versions() if k == "incoming/churn/x.csv" and v != old)
    assert marks(world, data, ["incoming/churn/x.csv"]) == {"incoming/churn/x.csv": (new, alone)}

    written = latest_writes(clients)
    world.clock.advance(31)
    (released,) = world.deliver_releases()
    assert released.releases == {held: "released"} and written == []
    plan = data.json(f"jobs/churn/{held}/plan.json")
    assert [i["key"] for i in plan["inputs"]] == ["incoming/churn/w.csv", "incoming/churn/x.csv"]
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)
    assert data.json("predictions/churn/x.csv.report.json")["input"]["versionId"] == new
    (outdated,) = [i for i in data.json(f"jobs/churn/{held}/report.json")["inputs"] if i["key"].endswith("x.csv")]
    assert outdated["versionId"] == old
    assert outdated["supersededBy"] == {"versionId": new, "transformJobName": alone}
    assert outdated["predictions"].startswith(f"s3://{data.name}/jobs/churn/{held}/")  # kept, not published


@pytest.mark.parametrize("stack_overrides", [{**HOLD, "MaxFilesPerJob": "3"}])
def test_an_older_version_started_alone_after_the_hold_is_superseded_by_the_held_one(
    stack, clients, data, intake_queue, world, completions, sagemaker, jobs
):
    """The newer version is held; the older one's event comes late, in a full batch that starts alone: the held
    version's mark, made as it was held, makes the older one superseded at once (it is not read), and its job's
    report names the held job, not started yet."""
    batch(world, intake_queue, data, ["incoming/churn/a.csv"])
    old = data.drop("incoming/churn/x.csv", b"old\n")
    new = data.drop("incoming/churn/x.csv", b"new\n")
    versions = intake_queue.receive()
    first, second = versions["Records"]
    world.releases.own = 1
    (held,) = world.intake.handle(queued_messages(sqs_event([second]))).jobs_held
    assert marks(world, data, ["incoming/churn/x.csv"]) == {"incoming/churn/x.csv": (new, held)}
    world.clock.advance(10)
    for key in ("incoming/churn/y.csv", "incoming/churn/z.csv"):
        data.drop(key)
    others = intake_queue.receive()
    world.releases.own = 3
    (alone,) = world.intake.handle(queued_messages(sqs_event([first, *others["Records"]]))).jobs_started
    for event in (versions, others):
        intake_queue.settle(event, {"batchItemFailures": []})
    plan = data.json(f"jobs/churn/{alone}/plan.json")
    assert sorted(i["key"] for i in plan["inputs"]) == ["incoming/churn/y.csv", "incoming/churn/z.csv"]
    (superseded,) = plan["superseded"]
    assert (superseded["versionId"], superseded["supersededBy"]) == (old, {"versionId": new, "transformJobName": held})

    world.clock.advance(31)
    (released,) = world.deliver_releases()
    assert released.releases == {held: "released"}
    finish_everything(world, completions, sagemaker)
    assert_every_file_in_exactly_one_job(data, jobs)
    assert data.json("predictions/churn/x.csv.report.json")["input"]["versionId"] == new
    (entry,) = data.json(f"jobs/churn/{alone}/report.json")["superseded"]
    assert entry["supersededBy"] == {"versionId": new, "transformJobName": held}
