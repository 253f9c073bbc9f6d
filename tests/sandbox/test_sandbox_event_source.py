"""The sandbox's SQS event source mapping gathers a batch with several receives in flight, as Lambda's pollers
do, and settles it as Lambda does: successes deleted with DeleteMessageBatch (10 per request), failures (per
ReportBatchItemFailures) made visible again, and an answer naming a message that is not in the batch failing the
whole batch."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sagepilot_sandbox.lambda_runtime.runtime import RECEIVES_IN_FLIGHT, SqsEventSource, failed_messages
from sagepilot_sandbox.stack.provision import SqsSource


@dataclass
class FakeSpec:
    logical_id: str = "BatchIntakeFunction"
    timeout: int = 120


@dataclass
class ScriptedFunction:
    """Answers each invocation with `answer(event)`; remembers the events."""

    answer: Callable[[dict[str, Any]], dict[str, Any]]
    spec: FakeSpec = field(default_factory=FakeSpec)
    events: list[dict[str, Any]] = field(default_factory=list)
    lambda_calls: list[str] = field(default_factory=list)  # calls the mapping made with the function's role

    def invoke(self, event: dict[str, Any], **concurrency: Any) -> dict[str, Any]:
        self.events.append(event)
        return self.answer(event)

    def record_lambda_call(self, service: str, operation: str, params: dict[str, Any]) -> None:
        self.lambda_calls.append(f"{service}.{operation}")


@pytest.fixture
def queue(clients: Callable[[str], Any]) -> tuple[Any, str, str]:
    sqs = clients("sqs")
    url = sqs.create_queue(QueueName="esm-test")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn


def fill(sqs: Any, url: str, n: int) -> None:
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(start, min(n, start + 10))]
        )


def run_once(queue: tuple[Any, str, str], n: int, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    sqs, url, arn = queue
    function = ScriptedFunction(answer)
    source = SqsSource(url, arn, batch_size=n, batching_window_seconds=5, report_batch_item_failures=True)
    calls: Counter[str] = Counter()
    sqs.meta.events.register("before-call.sqs.*", lambda model, **_: calls.update([model.name]))
    poller = SqsEventSource(sqs, source, function, threading.Event(), 0, lambda *_: None)  # type: ignore[arg-type]
    try:
        poller.poll_once()
    finally:
        poller.close()
    return function, calls, poller


def visible(sqs: Any, url: str) -> list[str]:
    bodies: list[str] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [m["Body"] for m in messages]
    return sorted(bodies)


def test_a_successful_batch_is_deleted_ten_messages_per_request(queue):
    fill(queue[0], queue[1], 25)
    function, calls, poller = run_once(queue, 25, lambda event: {"ok": True, "result": {"batchItemFailures": []}})
    assert len(function.events[0]["Records"]) == 25
    assert (calls["DeleteMessageBatch"], calls["DeleteMessage"], calls["ChangeMessageVisibility"]) == (3, 0, 0)
    assert function.lambda_calls.count("sqs.DeleteMessageBatch") == 3  # attributed to the role (IAM check)
    assert "sqs.ReceiveMessage" in function.lambda_calls
    assert poller.errors == []
    assert visible(queue[0], queue[1]) == []


def test_only_the_reported_failures_come_back(queue):
    fill(queue[0], queue[1], 12)

    def answer(event: dict[str, Any]) -> dict[str, Any]:
        failed = [r["messageId"] for r in event["Records"] if r["body"] in ("m3", "m11")]
        return {"ok": True, "result": {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}}

    _, calls, _ = run_once(queue, 12, answer)
    assert calls["DeleteMessageBatch"] == 1 and calls["ChangeMessageVisibilityBatch"] == 1
    assert visible(queue[0], queue[1]) == ["m11", "m3"]


@pytest.mark.parametrize(
    "answer",
    [
        {"ok": False, "errorType": "Runtime.ExitError", "errorMessage": "died"},
        {"ok": True, "result": {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}},
        {"ok": True, "result": {"batchItemFailures": [{"itemIdentifier": ""}]}},
        {"ok": True, "result": {"batchItemFailures": [{"id": "wrong key"}]}},
    ],
    ids=["function error", "unknown id", "empty id", "wrong key"],
)
def test_a_failed_invocation_or_an_invalid_answer_brings_the_whole_batch_back(queue, answer):
    fill(queue[0], queue[1], 3)
    _, calls, _ = run_once(queue, 3, lambda event: answer)
    assert calls["DeleteMessageBatch"] == 0
    assert visible(queue[0], queue[1]) == ["m0", "m1", "m2"]


def test_what_lambda_reads_in_a_partial_batch_response():
    batch = [{"MessageId": "a"}, {"MessageId": "b"}]
    ok = {"ok": True}
    assert failed_messages(batch, {**ok, "result": None}, True) == set()
    assert failed_messages(batch, {**ok, "result": {}}, True) == set()
    assert failed_messages(batch, {**ok, "result": {"batchItemFailures": None}}, True) == set()
    assert failed_messages(batch, {**ok, "result": {"batchItemFailures": [{"itemIdentifier": "b"}]}}, True) == {"b"}
    assert failed_messages(batch, {**ok, "result": {"batchItemFailures": [{"itemIdentifier": None}]}}, True) == {
        "a", "b"}  # fmt: skip
    assert failed_messages(batch, {**ok, "result": "done"}, True) == {"a", "b"}
    # Without ReportBatchItemFailures, an answer is not read: a successful invocation deletes everything.
    assert failed_messages(batch, {**ok, "result": {"batchItemFailures": [{"itemIdentifier": "b"}]}}, False) == set()
    assert failed_messages(batch, {"ok": False}, False) == {"a", "b"}


def test_queue_attributes_read_one_by_one_are_motos(queue):
    """The sandbox computes a queue's attributes when each is read (sqs_speed: SendMessage reads one, and the counts
    scan the queue): the same keys, order and values as moto's own, for a queue with a redrive policy, messages
    visible, in flight and delayed."""
    from moto.sqs.models import sqs_backends

    sqs, url, _ = queue
    dlq = sqs.create_queue(QueueName="esm-test-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": redrive})
    fill(sqs, url, 5)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    name = url.rsplit("/", 1)[1]
    moto_queue = next(q for backend in sqs_backends.values() for b in backend.values() for n, q in b.queues.items()
                      if n == name)  # fmt: skip
    mine = dict(moto_queue.attributes)
    assert list(mine.items()) == list(moto_queue.moto_attributes.items())
    assert (mine["ApproximateNumberOfMessages"], mine["ApproximateNumberOfMessagesNotVisible"],
            mine["ApproximateNumberOfMessagesDelayed"]) == (3, 2, 1)  # fmt: skip
    answered = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert answered == {k: str(v) for k, v in mine.items() if v is not None}


def test_delete_message_batch_answers_per_entry(queue):
    """The sandbox's one-pass DeleteMessageBatch (sqs_speed) answers as SQS does: a deleted message, one
    deleted before (deleting twice is fine) and an unknown receipt handle (refused, the rest still done)."""
    sqs, url, _ = queue
    fill(sqs, url, 3)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    handles = {m["Body"]: m["ReceiptHandle"] for m in received}
    sqs.delete_message(QueueUrl=url, ReceiptHandle=handles["m1"])
    answer = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "ReceiptHandle": handles["m0"]},
            {"Id": "b", "ReceiptHandle": handles["m1"]},
            {"Id": "c", "ReceiptHandle": "not-a-handle"},
        ],
    )
    assert sorted(e["Id"] for e in answer["Successful"]) == ["a", "b"]
    assert [(e["Id"], e["Code"], e["SenderFault"]) for e in answer["Failed"]] == [("c", "ReceiptHandleIsInvalid", True)]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handles["m2"], VisibilityTimeout=0)
    assert visible(sqs, url) == ["m2"]


def test_receives_never_fail_beside_other_receives_and_deletes(queue):
    """SQS answers every ReceiveMessage, whatever other callers receive and delete meanwhile (the intake's three
    pollers do): moto read the queue's set of in-flight messages while other threads changed it and answered 500
    ("Set changed size during iteration", seen in the groups bench)."""
    sqs, url, _ = queue
    fill(sqs, url, 6000)
    failures: list[BaseException] = []
    received: set[str] = set()

    def consume() -> None:
        try:
            while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                received.update(m["Body"] for m in messages)
                # Half stay in flight (the set grows), half are deleted (it shrinks).
                done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages[::2])]
                sqs.delete_message_batch(QueueUrl=url, Entries=done)
        except BaseException as exc:  # collected, asserted on below
            failures.append(exc)

    consumers = [threading.Thread(target=consume) for _ in range(8)]
    for t in consumers:
        t.start()
    for t in consumers:
        t.join()
    assert failures == []
    assert len(received) == 6000  # each at least once (a standard queue may hand one out twice)


class SlowReceives:
    """The queue's SQS client, each ReceiveMessage taking `delay` seconds more (as under a drop's load, when the
    embedded AWS's one process answers slowly); remembers how many receives were in flight at most and what each
    asked for."""

    def __init__(self, sqs: Any, delay: float) -> None:
        self._sqs, self._delay = sqs, delay
        self._lock = threading.Lock()
        self.in_flight = self.peak = 0
        self.asked: list[int] = []

    def receive_message(self, **request: Any) -> dict[str, Any]:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.asked.append(request["MaxNumberOfMessages"])
        try:
            time.sleep(self._delay)
            return dict(self._sqs.receive_message(**request))
        finally:
            with self._lock:
                self.in_flight -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


def gatherer(
    sqs: Any, queue: tuple[Any, str, str], batch_size: int, window: float, stop: threading.Event | None = None
) -> SqsEventSource:
    _, url, arn = queue
    source = SqsSource(url, arn, batch_size=batch_size, batching_window_seconds=window, report_batch_item_failures=True)
    function = ScriptedFunction(lambda event: {"ok": True})
    return SqsEventSource(sqs, source, function, stop or threading.Event(), 0, lambda *_: None)  # type: ignore[arg-type]


def bodies(batch: list[dict[str, Any]]) -> list[str]:
    return sorted(m["Body"] for m in batch)


def test_a_batch_is_gathered_with_several_receives_in_flight_and_never_exceeds_batch_size(queue):
    """95 of 120 queued messages: receives run at once (at most RECEIVES_IN_FLIGHT), each asking only what is left
    of BatchSize after what the others asked, so the batch is exactly BatchSize and the other 25 were never
    received (nothing received is left in flight outside the batch)."""
    sqs, url, _ = queue
    fill(sqs, url, 120)
    slow = SlowReceives(sqs, delay=0.2)
    poller = gatherer(slow, queue, batch_size=95, window=30)
    try:
        batch = poller.gather()
    finally:
        poller.close()
    assert 1 < slow.peak <= RECEIVES_IN_FLIGHT
    assert len(batch) == 95 == len({m["MessageId"] for m in batch})
    assert sum(slow.asked) == 95 and max(slow.asked) == 10  # the last receives asked for the rest only
    assert sorted(bodies(batch) + visible(sqs, url)) == sorted(f"m{i}" for i in range(120))
    assert poller._function.lambda_calls.count("sqs.ReceiveMessage") == len(slow.asked)  # type: ignore[attr-defined]
    assert poller.errors == []


def test_the_window_still_closes_a_small_batch(queue):
    """Three messages and a BatchSize of 1,000: the batch is returned once its window (1 s) has passed, with every
    message the receives still in flight came back with."""
    sqs, url, _ = queue
    fill(sqs, url, 3)
    slow = SlowReceives(sqs, delay=0.1)
    poller = gatherer(slow, queue, batch_size=1000, window=1)
    started = time.monotonic()
    try:
        batch = poller.gather()
    finally:
        poller.close()
    took = time.monotonic() - started
    assert bodies(batch) == ["m0", "m1", "m2"]
    assert 1 <= took < 4  # the window, then the receives in flight (a long poll of 1 s each) come back
    assert visible(sqs, url) == []


def test_an_empty_queue_gives_an_empty_batch_without_spinning(queue):
    sqs, _, _ = queue
    slow = SlowReceives(sqs, delay=0.0)
    poller = gatherer(slow, queue, batch_size=1000, window=1)
    started = time.monotonic()
    try:
        assert poller.gather() == []
    finally:
        poller.close()
    assert time.monotonic() - started < 3
    assert len(slow.asked) <= RECEIVES_IN_FLIGHT  # one long poll each, none started once one came back empty


def test_a_stopping_mapping_keeps_what_its_receives_in_flight_got(queue):
    """Stopped while it gathers (BatchSize 1,000, a long window), the mapping starts no more receives and returns
    what those in flight received: every message is either in the batch or still visible, none hidden in flight."""
    sqs, url, _ = queue
    fill(sqs, url, 300)
    slow = SlowReceives(sqs, delay=0.2)
    stop = threading.Event()
    poller = gatherer(slow, queue, batch_size=1000, window=30, stop=stop)
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    try:
        batch = poller.gather()
    finally:
        poller.close()
    assert time.monotonic() - started < 3
    assert 0 < len(batch) < 300
    assert sorted(bodies(batch) + visible(sqs, url)) == sorted(f"m{i}" for i in range(300))


class ScriptedReceives:
    """An SQS client whose ReceiveMessage answers are scripted (then empty), for what moto seldom does."""

    def __init__(self, answers: list[list[dict[str, Any]] | Exception]) -> None:
        self._answers, self._lock = answers, threading.Lock()

    def receive_message(self, **request: Any) -> dict[str, Any]:
        with self._lock:
            answer = self._answers.pop(0) if self._answers else []
        if isinstance(answer, Exception):
            raise answer
        time.sleep(0.05)  # the receives overlap
        return {"Messages": answer}


def message(n: int) -> dict[str, Any]:
    return {"MessageId": f"id-{n}", "ReceiptHandle": f"handle-{n}-{time.monotonic()}", "Body": f"m{n}"}


def test_a_message_two_receives_both_got_is_in_the_batch_once(queue):
    """A standard queue may hand a message out twice, here to two receives of one batch: Lambda's pollers each fill
    their own batch, so a batch never holds one message twice."""
    sqs = ScriptedReceives([[message(1), message(2)], [message(2), message(3)]])
    poller = gatherer(sqs, queue, batch_size=1000, window=0)
    try:
        batch = poller.gather()
    finally:
        poller.close()
    assert sorted(m["MessageId"] for m in batch) == ["id-1", "id-2", "id-3"]


def test_a_failed_receive_keeps_what_the_others_received(queue):
    """One receive fails: the batch is what the others got (their messages are in flight: dropping them would hide
    them until their visibility timeout), and the failure is recorded; with nothing received, it is raised."""
    sqs = ScriptedReceives([RuntimeError("connection reset"), [message(1)], [message(2)]])
    poller = gatherer(sqs, queue, batch_size=1000, window=30)
    try:
        batch = poller.gather()
        assert sorted(m["MessageId"] for m in batch) == ["id-1", "id-2"]
        assert poller.errors == ["RuntimeError: connection reset"]
        poller._sqs = ScriptedReceives([RuntimeError("connection reset")])
        with pytest.raises(RuntimeError, match="connection reset"):
            poller.gather()
    finally:
        poller.close()


def test_deletes_beside_sends_and_other_deletes_lose_nothing_and_bring_nothing_back(queue):
    """SQS never loses a message sent while others are deleted, nor brings back a message deleted beside another
    deletion. The sandbox's deletes (sqs_speed, as moto's own) rebuilt the queue's list of messages without moto's
    lock: a send (which appends under it) or another delete between that read and the write was undone. Seen in the
    drop bench: a DeleteMessageBatch's 10 messages back in flight until the visibility timeout, where the hold took
    them for files still being planned and released nothing. Threads switch as often as the interpreter allows."""
    sqs, url, _ = queue
    sent = [f"m{i}" for i in range(3000)]
    received: list[str] = []
    refused: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    sending = threading.Event()
    sending.set()

    def send(bodies: list[str]) -> None:
        try:
            for start in range(0, len(bodies), 10):
                chunk = bodies[start : start + 10]
                sqs.send_message_batch(
                    QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
                )
        except BaseException as exc:  # collected, asserted on below
            failures.append(exc)

    def consume() -> None:
        try:
            while True:
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get(
                    "Messages", []
                )
                if not messages and not sending.is_set():
                    return
                received.extend(m["Body"] for m in messages)
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
                if entries:
                    refused.extend(sqs.delete_message_batch(QueueUrl=url, Entries=entries).get("Failed", []))
        except BaseException as exc:  # collected, asserted on below
            failures.append(exc)

    fill(sqs, url, 0)
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        senders = [threading.Thread(target=send, args=(sent[i::4],)) for i in range(4)]
        consumers = [threading.Thread(target=consume) for _ in range(4)]
        for t in senders + consumers:
            t.start()
        for t in senders:
            t.join()
        sending.clear()
        for t in consumers:
            t.join()
    finally:
        sys.setswitchinterval(before)
    assert failures == []
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    left = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
    assert (sorted(set(received)), left) == (sorted(sent), 0)  # none lost, none back in flight
    # (A message handed out again after its deletion may be refused on its second delete once moto has dropped it:
    # not asserted here; what matters is that nothing is lost or comes back.)
    assert all(r["Code"] == "ReceiptHandleIsInvalid" for r in refused)
