"""The start-up hold's path (services/holding.py) under at-least-once delivery and under kills.

A group that started a transform job less than HoldSeconds ago gathers its next batches in one held job (its
files claimed for it), released by a delayed message the intake sends itself on the hold release queue (or by the
periodic sweep). Here the stack runs as wiring builds it, the hold on, on one fake clock: the state table reads it,
and the queues' delayed messages (moto delays them in real time) become visible when it has passed their
DelaySeconds (`FakeDelays`). The release messages really go through SQS; the delivery test hands them to the
intake mixed with S3 events in its batches (more than Lambda does: each queue's batches are its own), duplicated,
late, and a kill can fall on their SendMessage.

- Delivery: S3 events of three groups 1-3 times, shuffled, in batches of any size; releases delivered 1-2 times;
  the clock moves on by 0-500 s; sweeps; jobs end and their events arrive 1-3 times, out of order; with room in
  the held jobs, and with MaxFilesPerJob 3 (held jobs fill up and go at once). In the end
  every version is in exactly one job that ran (an older version seen after a newer one was taken recorded as
  superseded), each key's newest version predicted, nothing left held, claiming, ready or running, and no held
  job started twice.
- Kills: an invocation (the intake holding a batch in a new, the open or a full held job, a release early or due,
  the sweep) dies at each of its writes in turn, and another file of the group arrives meanwhile; the stack
  carries on as Lambda would (the batch back after the queue's visibility timeout, the sweep retried and run again
  after the claim timeout): every file in exactly one job that ran.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from functional.conftest import ACCOUNT, REGION, transform_jobs
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sagepilot import wiring
from sagepilot.adapters.state import CLAIMING, HELD, READY, STARTED, StateTable
from sagepilot.events import parse_transform_job_change, queued_messages
from sagepilot.settings import load_settings

from .conftest import (
    COMPLETION,
    INTAKE,
    SERVICES,
    WITHOUT_SHRINKING,
    FakeClock,
    HandlerCrashed,
    Kill,
    World,
    _hook,
    _queue,
    record_calls,
    redelivered,
    response_of,
    sqs_event,
    with_body,
)

HOLD = {"HoldSeconds": "420", "HoldQuietSeconds": "30"}
HOLD_SECONDS = 420
SETTINGS = settings(
    deadline=None,
    phases=WITHOUT_SHRINKING,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
_FAR = 2.0**62  # a delayed message's `delayed_until` (ms) while the test clock has not passed its delay


# ---------------------------------------------------------------------------------------- the driver
@dataclass
class FakeDelays:
    """SQS on the test clock: each delayed message of the queue is due `DelaySeconds` after the test clock's time
    when it was sent (the clock stands still during an invocation); until then moto keeps it delayed, however long
    the test takes in real time. And every message's SentTimestamp (whence the hold's quiet counts) is the test
    clock's time when it was first seen here, not moto's real time."""

    queue_names: list[str]
    clock: FakeClock
    due: dict[str, float] = field(default_factory=dict)  # message id -> when (test clock)
    seen: set[str] = field(default_factory=set)

    def sync(self) -> None:
        from moto.sqs.models import sqs_backends

        queues = sqs_backends[ACCOUNT][REGION].queues
        for message in [m for name in self.queue_names for m in list(queues[name]._messages)]:
            if message.id not in self.seen:
                self.seen.add(message.id)
                if message.delayed_until:
                    delay = round((message.delayed_until - int(message.sent_timestamp)) / 1000)
                    self.due[message.id] = self.clock.now + delay
                message.sent_timestamp = int(self.clock.now * 1000)
            if message.id in self.due:
                message.delayed_until = 0.0 if self.due[message.id] <= self.clock.now else _FAR

    def pending(self) -> int:
        """Messages in the queues, delayed ones included."""
        from moto.sqs.models import sqs_backends

        return sum(len(sqs_backends[ACCOUNT][REGION].queues[name]._messages) for name in self.queue_names)


@dataclass
class HoldStack:
    """The batch path with the hold on, driven as Lambda drives it, on the test clock."""

    world: World
    clock: FakeClock = field(default_factory=FakeClock)
    kill: Kill | None = None  # the function being killed at some call; a new invocation revives it
    handler_errors: list[str] = field(default_factory=list)
    on_failure: list[dict[str, Any]] = field(default_factory=list)  # completion events given up by Lambda
    held: set[str] = field(default_factory=set)  # the held jobs the intake reported
    # What happens (once) while a batch a function error handed back waits for its visibility timeout.
    meanwhile: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        w = self.world
        self.settings = load_settings(w.stack.functions[INTAKE].environment)
        assert self.settings.hold.hold_seconds == HOLD_SECONDS, "the stack holds nothing"
        self.intake = wiring.batch_intake(self.settings, w.clients)
        self.completion = wiring.batch_completion(load_settings(w.stack.functions[COMPLETION].environment), w.clients)
        tables = [
            getattr(part, "_state", None)
            for service in (self.intake, self.completion)
            for part in (service, getattr(service, "_launcher", None), getattr(service, "_hold", None))
        ]
        clocked = [t for t in tables if isinstance(t, StateTable)]
        assert len(clocked) == 5, "every state table of the intake and the completion reads the test clock"
        for table in clocked:
            table._clock = self.clock
        self.state = StateTable(w.clients("dynamodb"), w.stack.outputs["StateTableName"], clock=self.clock)
        self.releases = _queue(w.stack, w.clients("sqs"), w.stack.outputs["HoldReleaseQueueUrl"])
        self.delays = FakeDelays([q.url.rsplit("/", 1)[1] for q in (w.intake_queue, self.releases)], self.clock)
        self.max_retries = w.stack.functions[COMPLETION].max_async_retries
        attributes = w.clients("sqs").get_queue_attributes(
            QueueUrl=w.intake_queue.url, AttributeNames=["VisibilityTimeout"]
        )["Attributes"]
        self.visibility_timeout = int(attributes["VisibilityTimeout"])

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.delays.sync()

    # The intake -----------------------------------------------------------------------------------
    def handle(self, records: list[dict[str, Any]]) -> Any:
        """One intake invocation on `records` (the test plays the event source mapping)."""
        outcome = self.intake.handle(queued_messages(sqs_event(records)))
        self.delays.sync()
        self.held.update(outcome.jobs_held)
        return outcome

    def visible(self) -> list[dict[str, Any]]:
        """The messages visible in the intake queue and the hold release queue now (taken out of them: the test
        delivers them)."""
        self.delays.sync()
        records: list[dict[str, Any]] = []
        for queue in (self.world.intake_queue, self.releases):
            received = queue.receive()["Records"]
            queue.delete(received)
            records += received
        return records

    def intake_round(self) -> bool:
        """One poll of the event source mappings (the intake queue's, else the hold release queue's); False when
        neither queue had anything visible. A function error hands the whole batch back, and it comes again once
        the visibility timeout has passed (the test makes it visible at once and moves the clock on by as much)."""
        self.delays.sync()
        for queue in (self.world.intake_queue, self.releases):
            received = queue.receive()
            if received["Records"]:
                break
        else:
            return False
        try:
            response = response_of(self.handle(received["Records"]))
        except Exception as exc:  # the function died or failed: the whole batch comes back
            self.handler_errors.append(f"{type(exc).__name__}: {exc}")
            if self.kill:
                self.kill.revive()
            response = {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in received["Records"]]}
            if self.meanwhile is not None:
                meanwhile, self.meanwhile = self.meanwhile, None
                meanwhile()  # (the batch is still invisible: moto keeps it so for the visibility timeout)
        queue.settle(received, response)
        if response["batchItemFailures"]:
            self.advance(self.visibility_timeout)
        return True

    def intake_until_drained(self) -> None:
        for _ in range(12):
            if not self.intake_round():
                return
        raise AssertionError("the intake queue never drained")

    # The completion ---------------------------------------------------------------------------------
    def complete(self, event: dict[str, Any]) -> None:
        """An asynchronous invocation: the first attempt and Lambda's retries, then the destination."""
        for _ in range(1 + self.max_retries):
            try:
                self.completion.handle(parse_transform_job_change(event))
                return
            except Exception as exc:
                self.handler_errors.append(f"{type(exc).__name__}: {exc}")
                if self.kill:
                    self.kill.revive()
        self.on_failure.append(event)

    def sweep(self) -> None:
        """The sweep's schedule fires (an asynchronous invocation too: retried, then given up)."""
        for _ in range(1 + self.max_retries):
            try:
                self.completion.sweep()
                self.delays.sync()
                return
            except Exception as exc:
                self.handler_errors.append(f"{type(exc).__name__}: {exc}")
                if self.kill:
                    self.kill.revive()

    def running(self) -> list[str]:
        return sorted(
            j["TransformJobName"] for j in transform_jobs(self.world.clients("sagemaker"), StatusEquals="InProgress")
        )

    def finish(self, name: str) -> list[dict[str, Any]]:
        """SageMaker ends the job (it fails one whose input is gone); the events its rule lets through."""
        from sagepilot_sandbox import faithful

        missing = faithful.check_transform_inputs(name)
        return self.world.completions.finish(name, "Failed" if missing else "Completed", missing or "")

    def unsettled(self) -> bool:
        """Anything still to happen: a job running, a held job listed, a message in a queue."""
        return bool(self.running() or self.state.held_jobs() or self.delays.pending())


def job_statuses(world: World) -> Counter[str]:
    items = world.clients("dynamodb").scan(TableName=world.stack.outputs["StateTableName"])["Items"]
    return Counter(i["status"]["S"] for i in items if i["pk"]["S"].startswith("job#"))


def open_held_jobs(world: World) -> list[str]:
    items = world.clients("dynamodb").scan(TableName=world.stack.outputs["StateTableName"])["Items"]
    return [i["openJob"]["S"] for i in items if i["pk"]["S"].startswith("group#") and "openJob" in i]


# ---------------------------------------------------------------------------------------- delivery
UPLOADS = [
    # (key, body): three groups; two keys uploaded twice (their versions may land in a held job and another)
    ("incoming/churn/a.csv", b"1\n"), ("incoming/fraud/x.csv", b"2\n"), ("incoming/churn/b.csv", b"3\n"),
    ("incoming/risk/r.csv", b"4\n"), ("incoming/churn/a.csv", b"5\n"), ("incoming/fraud/y.csv", b"6\n"),
    ("incoming/churn/sub/c.csv", b"7\n"), ("incoming/risk/s.csv", b"8\n"), ("incoming/fraud/x.csv", b"9\n"),
    ("incoming/churn/d.csv", b"10\n"),
]  # fmt: skip


@dataclass
class Pending:
    """A message still to be delivered `copies` more times."""

    what: str
    record: dict[str, Any]
    copies: int
    delivered: int = 0

    def __repr__(self) -> str:
        return f"<{self.what}, {self.copies} more>"


@pytest.mark.parametrize("max_files", ["1000", "3"], ids=["room", "held jobs fill up"])
@settings(SETTINGS, max_examples=10)
@given(data=st.data())
def test_the_hold_under_any_delivery_each_file_in_exactly_one_job(
    fresh_world: Any, max_files: str, data: st.DataObject
) -> None:
    """The hold on (420 s, quiet 30 s): S3 events of three groups arrive 1 to 3 times, shuffled, in batches of any
    size, with the hold's release messages (1 or 2 times each, as the queue hands them over once due) among them;
    the clock moves on by up to 500 s at a time, sweeps fire, jobs end and their events arrive 1 to 3 times, out
    of order. With MaxFilesPerJob 3, held jobs fill up (released at once, a new one holds what follows) and batches
    that fill a job start. In the end every version is in exactly one job that ran, each key's newest version
    predicted, nothing held, claiming, ready or running, and each held job started at most once."""
    with fresh_world({**HOLD, "MaxFilesPerJob": max_files}) as w:
        stack = HoldStack(w)
        creates = record_calls(w.clients, ("sagemaker",))
        for group in ("churn", "fraud", "risk"):
            w.registry.register(group)
        versions: list[tuple[str, str]] = [(key, w.data.drop(key, body)) for key, body in UPLOADS]
        s3_events = stack.visible()
        assert len(s3_events) == len(UPLOADS)
        pool = [Pending(f"S3 {json_key(r)}", r, data.draw(st.integers(1, 3), label="copies")) for r in s3_events]
        events: list[Pending] = []
        for _ in range(200):
            for record in stack.visible():  # a release message due: the queue hands it over (and again, maybe)
                pool.append(Pending("release", record, data.draw(st.integers(1, 2), label="copies of a release")))
            if not pool and not events and not stack.running():
                break
            actions = ["intake batch"] if pool else []  # (those that move on first: the all-zero example ends)
            actions += [f"deliver {i}" for i in range(len(events))]
            actions += [f"end {name}" for name in stack.running()]
            actions += ["clock", "sweep"]
            what = actions[data.draw(st.integers(0, len(actions) - 1), label=" | ".join(actions))]
            if what == "intake batch":
                order = data.draw(st.permutations(range(len(pool))), label=f"batch order of {pool}")
                batch = []
                for pending in [pool[i] for i in order[: data.draw(st.integers(1, min(6, len(pool))), label="size")]]:
                    pending.delivered += 1
                    pending.copies -= 1
                    # A redelivery of the same SQS message (its receive count up) or a duplicate message.
                    if data.draw(st.booleans(), label="the same SQS message again"):
                        batch.append(redelivered(pending.record, min(pending.delivered, 4)))
                    else:
                        batch.append(with_body(pending.record, pending.record["body"]))
                pool = [p for p in pool if p.copies > 0]
                outcome = stack.handle(batch)
                assert outcome.failed_message_ids == [] and outcome.rejected == [], outcome
            elif what == "clock":
                stack.advance(data.draw(st.integers(0, 500), label="seconds pass"))
            elif what == "sweep":
                stack.completion.sweep()
                stack.delays.sync()
            elif what.startswith("end "):
                for e in stack.finish(what[len("end ") :]):
                    events.append(Pending("job event", e, data.draw(st.integers(1, 3), label="copies of the event")))
            else:
                pending = events[int(what.split()[1])]
                stack.completion.handle(parse_transform_job_change(pending.record))
                pending.copies -= 1
                events = [e for e in events if e.copies > 0]
        else:
            raise AssertionError("the run did not settle")

        # In the end: past any hold, the releases delivered, sweeps, every job ended, until nothing is left.
        for _ in range(10):
            if not stack.unsettled():
                break
            stack.advance(HOLD_SECONDS + 1)
            if records := stack.visible():
                outcome = stack.handle(records)
                assert outcome.failed_message_ids == [], outcome
            stack.completion.sweep()
            for name in stack.running():
                for e in stack.finish(name):
                    stack.completion.handle(parse_transform_job_change(e))
        else:
            raise AssertionError("held work never settled")

        statuses = job_statuses(w)
        assert not {HELD, CLAIMING, READY, STARTED} & set(statuses), statuses
        assert open_held_jobs(w) == []
        assert w.data.keys("rejected/") == [] and w.intake_dlq.depth() == 0
        # Each version in exactly one job's records: a job that ran, or (an older version seen after a newer one
        # was taken) a job that ran nothing, whose report says which version superseded it.
        assert every_version_once(w) == dict.fromkeys(versions, 1)
        for key, version in newest(versions).items():
            report = w.data.json(key.replace("incoming/", "predictions/", 1) + ".report.json")
            assert (report["status"], report["input"]["versionId"]) == ("Completed", version), report
        # No held job started twice (asked of SageMaker once: no two releasers both went ahead).
        created = Counter(json.loads(p["body"])["TransformJobName"] for p in creates.operations("CreateTransformJob"))
        assert all(created[name] <= 1 for name in stack.held), created
        event(f"held jobs started: {min(3, sum(1 for name in stack.held if created[name]))}")


def every_version_once(w: World) -> dict[tuple[str, str], int]:
    """How many job records hold each input version: the jobs that ran (an attempt's retries not counted again;
    a split or re-planned job's inputs counted in its pieces), and the jobs that ran nothing but versions a newer
    one superseded."""
    jobs = [j for j in w.jobs.all() if not j.name.endswith(tuple(f"-r{i}" for i in range(1, 10)))]
    held: Counter[tuple[str, str]] = Counter()
    for job in jobs:
        assert job.plan["final"] is True and sorted(job.keys) == sorted(i["key"] for i in job.plan["inputs"])
        if w.jobs.handed_on(job):
            held.update((i["key"], i["versionId"]) for i in job.plan["superseded"] + job.plan.get("deleted", []))
        else:
            held.update(v for v in job.versions if v not in w.jobs.read_again(job))
    for key in w.data.keys("jobs/"):
        if key.endswith("/report.json") and w.data.json(key)["status"] == "Superseded":
            held.update((i["key"], i["versionId"]) for i in w.data.json(key)["superseded"])
    return dict(held)


def json_key(record: dict[str, Any]) -> str:
    return str(json.loads(record["body"])["detail"]["object"]["key"])


def newest(versions: list[tuple[str, str]]) -> dict[str, str]:
    """Each key's newest version (`versions` in upload order)."""
    return dict(versions)


# ---------------------------------------------------------------------------------------- kills
# The calls that write on the hold's path (holding a batch: the group's start, the held job's record, the open job,
# its release message, the batch's plan, the part added, the claims, the newest versions; releasing it: the seal,
# the open job closed, the group's start, the plan, the manifest, READY, the start lease, the job, STARTED; the
# newest versions only read, as nothing changed since they were marked).
HOLD_CALLS = [
    ("dynamodb", "UpdateItem"), ("dynamodb", "TransactWriteItems"), ("dynamodb", "PutItem"), ("s3", "PutObject"),
    ("sqs", "SendMessage"), ("sagemaker", "CreateTransformJob"),
]  # fmt: skip
# The writes (HOLD_CALLS) each invocation makes, in order (measured; a kill falls at each in turn).
WRITES = {
    # (the group's recent start read with the batch: no write for it) the held job's record, made the open one,
    # its release message sent, the batch's plan kept, added to the held job, its files claimed, their newest
    # versions marked, what the claims and marks found kept with the plan
    "intake holding a batch in a new held job": 8,
    # the batch's plan kept, added to the held job, its files claimed, their newest versions marked, what the
    # claims and marks found kept with the plan
    "intake holding a batch in the open held job": 5,
    # sealed, closed as the open one, the group's start, the manifest, the final plan, READY, the start lease, the
    # job, STARTED (the claims and the newest versions, recorded as the batches were held, not even read)
    "release": 9,
    "sweep": 9,  # (once the hold is over: the sweep does not see the intake queue's backlog)
    "release before it is due": 1,
    # (MaxFilesPerJob 3, two files held, two more) the batch's plan kept, refused by the full held job, which is
    # released (as "release") and closed, then a new held job holds the batch (as "intake holding a batch in a
    # new held job")
    "intake filling the open held job": 20,
}
FILLS = "intake filling the open held job"
INVOCATIONS = tuple(WRITES)


def kill_at_write(clients: Any, nth: int) -> Kill:
    """Kill the function at its `nth` write of HOLD_CALLS (any of them, counted together, from now on): that call
    and every later one, on any client, raise HandlerCrashed before reaching AWS, until `kill.revive()` (as
    conftest.kill_on, for one operation)."""
    kill = Kill(f"write #{nth}")

    def on_send(request: Any, event_name: str = "", **_: Any) -> None:
        if kill.dead:
            kill.blocked.append(event_name)
            raise HandlerCrashed(f"the function was killed at {kill.trigger}; {event_name} never sent")
        _, service, operation = event_name.split(".")
        if kill.armed and (service, operation) in HOLD_CALLS:
            kill.calls += 1
            if kill.calls == nth:
                kill.armed, kill.dead, kill.trigger = False, True, f"{service}.{operation} (write #{nth})"
                raise HandlerCrashed(f"killed at {kill.trigger}")

    for service in SERVICES:
        _hook(clients(service), "before-send", on_send)
    return kill


def carry_on(stack: HoldStack, data: st.DataObject) -> None:
    """The stack goes on as Lambda runs it: the intake drains its queue (what a dead invocation handed back comes
    again after the visibility timeout; release messages once due), SageMaker ends every running job, each event
    delivered 1 to 3 times in an order hypothesis picks with sweeps between them, and the schedule's sweep after
    the claim timeout (which finishes a release whose handler died), until nothing runs, waits or is held."""
    for _ in range(12):
        stack.intake_until_drained()
        names = stack.running()
        if not names and not stack.unsettled():
            return
        pending = [e for name in names for e in stack.finish(name)]
        pending = [e for e in pending for _ in range(data.draw(st.integers(1, 3), label="copies of the event"))]
        for i in data.draw(st.permutations(range(len(pending))), label="delivery order"):
            stack.complete(pending[i])
            for _ in range(data.draw(st.integers(0, 2), label="sweeps after it")):
                stack.sweep()
        stack.advance(stack.settings.claim_timeout_seconds + 1)
        stack.sweep()
    raise AssertionError("the stack never settled")


@pytest.mark.usefixtures("no_retry_delay")
@pytest.mark.parametrize(
    ("invocation", "nth"), [(invocation, nth) for invocation, writes in WRITES.items() for nth in range(1, writes + 1)]
)
@settings(SETTINGS, max_examples=2)
@given(files=st.integers(1, 3), data=st.data())
def test_an_invocation_killed_at_any_step_of_the_hold_leaves_every_file_in_exactly_one_job(
    fresh_world: Any, invocation: str, nth: int, files: int, data: st.DataObject
) -> None:
    """A group started a job; its next batches are held. An invocation of the hold's path (the intake holding a
    batch in a new or in the open held job, the release message's, early or due, or the sweep releasing the held
    job when that message was lost) dies at each of its writes in turn (nothing it would still send reaches AWS).
    Another file of the group arrives meanwhile; Lambda hands the batch back after the visibility timeout, retries
    the sweep, the schedule fires again, completions arrive duplicated and reordered: every file version ends in
    exactly one job that ran, its prediction reported, none lost, none doubled."""
    with fresh_world({**HOLD, "MaxFilesPerJob": "3"} if invocation == FILLS else HOLD) as w:
        w.registry.register("churn")
        stack = HoldStack(w)
        dropped: dict[str, str] = {}

        def drop(*names: str) -> None:
            for name in names:
                key = f"incoming/churn/{name}.csv"
                dropped[key] = w.data.drop(key)

        drop("first")
        stack.intake_until_drained()
        assert len(stack.running()) == 1  # the group started a job: what comes next is held
        stack.advance(10)
        if invocation == FILLS:
            files = 2
            drop("opens-0", "opens-1")
            stack.intake_until_drained()
            assert len(stack.held) == 1 and len(stack.running()) == 1
            stack.advance(10)
        elif invocation != INVOCATIONS[0]:
            drop("opens")
            stack.intake_until_drained()
            assert len(stack.held) == 1 and len(stack.running()) == 1
            stack.advance(10)
        parts = [f"part-{i}" for i in range(files)]

        def meanwhile() -> None:  # another file of the group, while the killed invocation's batch waits
            drop("meanwhile")
            stack.intake_until_drained()

        if invocation.startswith("intake"):
            drop(*parts)
            stack.kill = kill_at_write(w.clients, nth)
            stack.meanwhile = meanwhile
            stack.intake_until_drained()
        else:
            drop(*parts)
            stack.intake_until_drained()
            assert len(stack.held) == 1 and len(stack.running()) == 1
            if invocation == "release before it is due":
                stack.advance(21)  # its message comes 30 s after it opened; the group is quiet 30 s later only
            elif invocation == "sweep":
                stack.advance(HOLD_SECONDS)  # the hold over (the sweep waits for it: it cannot see a backlog)
            else:
                stack.advance(stack.settings.hold.quiet_seconds + 1)  # the group quiet: its held job is due
            if invocation == "sweep":
                assert len(stack.visible()) == 1  # its release message, lost
            stack.kill = kill_at_write(w.clients, nth)
            stack.meanwhile = meanwhile
            if invocation.startswith("release"):
                stack.intake_until_drained()
            else:
                stack.sweep()
                meanwhile()  # (before Lambda's retry of the sweep, or after it)
        assert not stack.kill.armed, (
            f"{invocation} made {stack.kill.calls} writes, not {WRITES[invocation]} (update WRITES)"
        )
        carry_on(stack, data)

        w.jobs.assert_each_version_in_exactly_one_job(set(dropped.items()))
        for key, version in dropped.items():
            report = w.data.json(key.replace("incoming/", "predictions/", 1) + ".report.json")
            assert (report["status"], report["input"]["versionId"]) == ("Completed", version), report
        statuses = job_statuses(w)
        assert set(statuses) <= {"COMPLETED", "EMPTY"}, statuses
        assert open_held_jobs(w) == [] and stack.on_failure == []
        assert w.data.keys("rejected/") == [] and w.intake_dlq.depth() == 0
        if not invocation.startswith("intake"):  # the hold's path ran: a held job read batches' plans
            assert any("/held/" in key for key in w.data.keys("jobs/churn/"))
