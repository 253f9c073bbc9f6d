"""The Lambda service of the sandbox: function processes, event source mappings and async invokes.

- SQS event source mapping: polls the queue, gathers a batch until BatchSize or the batching window,
  invokes the function with Lambda's SQS event shape, deletes what succeeded (DeleteMessageBatch, 10 per
  request, as Lambda does) and, with ReportBatchItemFailures, makes only the failed messages visible
  again (an answer naming a message that is not in the batch fails the whole batch, as in Lambda). The
  queue's own redrive policy moves a message to its dead-letter queue after maxReceiveCount deliveries.
- EventBridge rule -> function: the rule's target is a delivery queue (see provision.py); each event
  is invoked asynchronously with the function's MaximumRetryAttempts and, when they are exhausted,
  sent to its OnFailure destination in Lambda's destination record shape.
- Schedules (SAM `Schedule` and `ScheduleV2` events): every `schedule_seconds`, whatever the
  expression says (time is compressed), a schedule that is ENABLED at that moment (the rule's or
  schedule's state is read each time, so DisableRule / UpdateSchedule take effect) puts what
  EventBridge would send into the function's delivery queue: a `Scheduled Event`
  (`source: aws.events`, `resources: [rule ARN]`, `detail: {}`), or the target's `Input` when one is
  set; from there it takes the same asynchronous path (retries, OnFailure) as rule events.

Concurrency as Lambda has it: each function runs its invocations concurrently, one per execution
environment (a process; a new one is a cold start), bounded by its ReservedConcurrentExecutions or else
by the account's unreserved concurrency, which every function without a reservation shares:
`concurrency` (`Sandbox(lambda_concurrency=...)`, else SAGEPILOT_SANDBOX_LAMBDA_CONCURRENCY, else 10, a
new AWS account's quota; real accounts mostly have 1,000, which a laptop cannot run). An SQS event source
invokes up to its ScalingConfig.MaximumConcurrency batches at once (else five); a rule target or schedule
runs its events as they come. What the concurrency refuses is throttled as in Lambda: an asynchronous
event waits for it, an SQS batch waits until its visibility timeout is about to run out, then returns to
the queue (a receive that counts towards its maxReceiveCount).

With `record_calls`, each function process records the AWS calls the function makes (call_recording.py)
and `FunctionProcess.recorded_calls()` returns them; the calls Lambda itself makes with the function's
role are recorded beside them (`source: "lambda"`): the SQS event source mapping's ReceiveMessage and
DeleteMessageBatch, and the SendMessage of an on-failure destination. The sandbox's own shortcuts
(ChangeMessageVisibilityBatch for a failed batch, the delivery queues of rule targets) are not Lambda's
calls in AWS and are not recorded.

Shortcut, said plainly: a failed message becomes visible again after `retry_delay` seconds instead of
the queue's visibility timeout, and async retries wait `retry_delay` instead of 1 and 2 minutes, so
that a scenario does not take half an hour.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

from sagepilot_sandbox.cloudwatch.emf import EmfPublisher
from sagepilot_sandbox.lambda_runtime import call_recording
from sagepilot_sandbox.stack.provision import FunctionSpec, RuleDelivery, SqsSource, Stack
from sagepilot_sandbox.stack.template import ACCOUNT_ID, REGION

Invocation = dict[str, Any]
_SQS_BATCH_LIMIT = 10  # entries per DeleteMessageBatch / ChangeMessageVisibilityBatch
# Batches an SQS event source mapping without ScalingConfig.MaximumConcurrency invokes at once: the five
# Lambda starts with (it then adds up to 300 a minute, to 1,000; the sandbox does not scale further).
DEFAULT_SQS_CONCURRENCY = 5
# ReceiveMessage calls an SQS event source keeps in flight while it gathers a batch: Lambda polls a standard
# queue with five pollers at first ("Lambda starts processing five batches at a time with five concurrent
# invocations", services-sqs-scaling), each long-polling for up to 10 messages. One receive at a time filled
# the intake's 1,000-message batches with 40-100 while thousands waited (each receive takes ~1 s of wall time
# while clients upload into the same embedded AWS process).
RECEIVES_IN_FLIGHT = 5
# The account's concurrency in the sandbox unless SAGEPILOT_SANDBOX_LAMBDA_CONCURRENCY says otherwise:
# the quota of a new AWS account (10; most accounts get 1,000), which a laptop can run.
DEFAULT_ACCOUNT_CONCURRENCY = 10
MAX_ASYNC_WORKERS = 50  # threads invoking one function's asynchronous events, at most
CONCURRENCY_ENV = "SAGEPILOT_SANDBOX_LAMBDA_CONCURRENCY"


class ConcurrencyPool:
    """Concurrent executions: the account's unreserved concurrency (shared by every function without a
    reservation) or one function's ReservedConcurrentExecutions (its own, and its ceiling; 0 throttles
    every invocation, as in Lambda)."""

    def __init__(self, name: str, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"{name}: a concurrency limit is 0 or more, not {limit}")
        self.name, self.limit = name, limit
        self._free = threading.Semaphore(limit)

    def acquire(self, wait: float | None, stop: threading.Event | None = None) -> bool:
        """A free execution, waiting `wait` seconds at most (None: until one is free or `stop` is set)."""
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            remaining = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if remaining < 0:
                return False
            if self._free.acquire(timeout=remaining):
                return True
            if stop is not None and stop.is_set():
                return False

    def release(self) -> None:
        self._free.release()


def throttled(function_name: str) -> Invocation:
    """Lambda's answer when the function's concurrency is used up (HTTP 429)."""
    return {
        "ok": False,
        "throttled": True,
        "errorType": "TooManyRequestsException",
        "errorMessage": f"Rate Exceeded. ({function_name}: no concurrency available)",
    }


class _Environment:
    """One execution environment: a process that imports the handler once (its cold start) and runs one
    invocation at a time."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], log: Any) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "sagepilot_sandbox.lambda_runtime.lambda_worker",
                spec.name,
                str(spec.timeout),
                str(spec.code_dir.resolve()),
                spec.handler,
                *[str(d.resolve()) for d in spec.layer_dirs],
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
        )

    def invoke(self, event: dict[str, Any]) -> str:
        """The worker's answer line; "" if the process has exited."""
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(event) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return ""
        return self.proc.stdout.readline()

    def stop(self) -> None:
        if self.proc.stdin:
            with contextlib.suppress(BrokenPipeError):  # the process has already exited: nothing to tell it
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class FunctionProcess:
    """A Lambda function: its execution environments, each one process running one invocation at a time.
    Invocations run concurrently, each in an idle environment (a new one, i.e. a cold start, when all are
    busy), as far as the function's concurrency pool allows: its reserved concurrency, or the account's
    unreserved concurrency shared with the other functions. An environment whose process died is replaced
    by the next invocation's cold start."""

    def __init__(
        self,
        spec: FunctionSpec,
        endpoint_url: str,
        log_dir: Path,
        *,
        record_calls: bool = False,
        pool: ConcurrencyPool | None = None,
    ) -> None:
        self.spec = spec
        self.pool = pool if pool is not None else ConcurrencyPool(f"{spec.logical_id} (one at a time)", 1)
        self.record_calls = record_calls
        self._calls: dict[str, call_recording.CallRecord] = {}  # distinct calls, by content
        self._calls_lock = threading.Lock()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(spec.environment)
        env.update(
            AWS_ENDPOINT_URL=endpoint_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - the sandbox accepts any key
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            AWS_LAMBDA_FUNCTION_NAME=spec.name,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
            PYTHONUNBUFFERED="1",
        )
        if record_calls:
            env[call_recording.ENVIRONMENT_VARIABLE] = "1"
        self._env = env
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{spec.logical_id}.log"
        self._log = self.log_path.open("a", encoding="utf-8")
        self._state = threading.Lock()
        self._idle: list[_Environment] = []
        self._environments: list[_Environment] = []
        self._stopped = False
        self.running = 0  # invocations in progress
        self.peak_concurrency = 0  # the most invocations seen in progress at once
        self.throttles = 0  # invocations that found no free concurrency (whether they ran later or not)
        self.invocations: list[Invocation] = []
        self.metrics = EmfPublisher(ACCOUNT_ID, REGION)  # its EMF log lines become CloudWatch metrics
        self._environments.append(self._start_environment())  # started with the sandbox, as before

    @property
    def _proc(self) -> subprocess.Popen[str] | None:
        """The first execution environment's process (`pids()` gives every one)."""
        with self._state:
            return self._environments[0].proc if self._environments else None

    def pids(self) -> list[int]:
        with self._state:
            return [e.proc.pid for e in self._environments]

    def _start_environment(self) -> _Environment:
        return _Environment(self.spec, self._env, self._log)

    def _take_environment(self) -> _Environment:
        with self._state:
            if self._idle:
                return self._idle.pop()
        environment = self._start_environment()
        with self._state:
            self._environments.append(environment)
        return environment

    def _give_back(self, environment: _Environment, alive: bool) -> None:
        with self._state:
            if alive and not self._stopped:
                self._idle.append(environment)
                return
            if environment in self._environments:
                self._environments.remove(environment)
        environment.stop()

    def invoke(
        self, event: dict[str, Any], *, wait: float | None = None, stop: threading.Event | None = None
    ) -> Invocation:
        """Run one invocation once the function's concurrency allows, waiting `wait` seconds at most for
        that (None: until it does, or `stop` is set); otherwise Lambda's throttling answer (`throttled`)."""
        free = self.pool.acquire(0)
        if not free:
            with self._state:
                self.throttles += 1
            free = self.pool.acquire(wait, stop)
        if not free:
            return throttled(self.spec.name)
        try:
            return self._run(event)
        finally:
            self.pool.release()

    def _run(self, event: dict[str, Any]) -> Invocation:
        with self._state:
            if self._stopped:
                raise RuntimeError(f"{self.spec.name} is stopped")
            self.running += 1
            self.peak_concurrency = max(self.peak_concurrency, self.running)
        started_at, started = time.time(), time.monotonic()
        environment: _Environment | None = None
        line = ""
        try:
            environment = self._take_environment()
            line = environment.invoke(event)
        finally:
            if environment is not None:
                self._give_back(environment, alive=bool(line))
            with self._state:
                self.running -= 1
        if not line:
            response: Invocation = {
                "ok": False,
                "errorType": "Runtime.ExitError",
                "errorMessage": f"{self.spec.name} exited; see {self.log_path}",
            }
        else:
            response = json.loads(line)
            self.metrics.publish(response.pop("emf", []))
            calls = response.pop("calls", [])
            if calls:
                with self._calls_lock:
                    call_recording.merge(self._calls, [{**c, "source": "function"} for c in calls])
        response["durationMs"] = round((time.monotonic() - started) * 1000, 1)
        response["startedAt"], response["endedAt"] = started_at, time.time()
        with self._state:
            self.invocations.append(response)
        return response

    def record_lambda_call(self, service: str, operation: str, params: dict[str, Any]) -> None:
        """A call Lambda makes with the function's role (its event source mapping, its destinations)."""
        if not self.record_calls:
            return
        record = {"service": service, "operation": operation, "params": call_recording.summarize(operation, params)}
        with self._calls_lock:
            call_recording.merge(self._calls, [{**record, "source": "lambda", "count": 1}])

    def recorded_calls(self) -> list[call_recording.CallRecord]:
        """The distinct calls recorded so far (empty unless `record_calls`), each with its count and source:
        "function" (made inside the function's process) or "lambda" (made by Lambda with its role)."""
        with self._calls_lock:
            return [dict(record) for record in self._calls.values()]

    def stop(self) -> None:
        with self._state:
            self._stopped = True
            environments, self._environments, self._idle = list(self._environments), [], []
        for environment in environments:
            environment.stop()
        self._log.close()


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of Lambda's SQS event, built from ReceiveMessage's answer."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            k: v
            for k, v in message.get("Attributes", {}).items()
            if k in ("ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp")
        },
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def failed_messages(batch: list[dict[str, Any]], response: Invocation, report_batch_item_failures: bool) -> set[str]:
    """The message ids of a batch that go back to the queue, as Lambda reads the function's answer: all of
    them if the invocation failed; with ReportBatchItemFailures, those the answer lists (none for an empty
    or null list or answer), or all of them if an entry is not a message id of the batch (an empty, null
    or unknown itemIdentifier, a wrong key, an answer that is not a partial-batch response); without it,
    none."""
    every = {m["MessageId"] for m in batch}
    if not response.get("ok"):
        return every
    if not report_batch_item_failures:
        return set()
    result = response.get("result")
    if result is None:
        return set()
    if not isinstance(result, dict):
        return every
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return every
    failed: set[str] = set()
    for entry in failures:
        identifier = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not isinstance(identifier, str) or identifier not in every:
            return every
        failed.add(identifier)
    return failed


class _Poller(threading.Thread):
    def __init__(self, name: str, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._stop_event = stop
        self.errors: list[str] = []

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - keep the sandbox alive, remember what went wrong
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def poll_once(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the poller holds besides its thread (called once it has stopped)."""


class SqsEventSource(_Poller):
    """An SQS event source mapping. Up to its ScalingConfig.MaximumConcurrency batches (without one, the
    five Lambda starts with: the sandbox does not scale further) are invoked at once, each as soon as the
    function's concurrency allows. Like Lambda's pollers, it receives the next batch while those are
    invoked (its messages wait in flight, as they do in AWS). A batch whose window has passed while every
    one of those invocations is busy keeps filling up to BatchSize until one can take it, instead of
    waiting half-empty (the same work in fewer, larger invocations). A batch the function's concurrency
    throttles waits for it (Lambda retries a throttled batch) until its messages' visibility timeout is
    about to run out (the queue's VisibilityTimeout less the function's timeout); then it goes back to
    the queue, which counts a receive towards the queue's maxReceiveCount, as in AWS. A batch is gathered
    with RECEIVES_IN_FLIGHT receives at once, on a thread pool the mapping owns (`close` shuts it down)."""

    def __init__(
        self,
        sqs: Any,
        source: SqsSource,
        function: FunctionProcess,
        stop: threading.Event,
        retry_delay: int,
        on_batch: Callable[[str, int, Invocation], None],
    ) -> None:
        super().__init__(f"sqs:{function.spec.logical_id}", stop)
        self._sqs, self._source, self._function = sqs, source, function
        self._retry_delay, self._on_batch = retry_delay, on_batch
        self.concurrency = source.maximum_concurrency or DEFAULT_SQS_CONCURRENCY
        self._ready: queue.Queue[list[dict[str, Any]]] = queue.Queue(maxsize=1)
        self._waiting = 0  # delivering threads waiting for a batch
        self._waiting_lock = threading.Lock()
        self._throttle_wait: float | None = None  # read from the queue when first needed
        # The receives of `gather` (boto3 clients are thread-safe for calls; the sandbox's client has a connection
        # pool large enough for every poller's receives, see Sandbox.client).
        self._receivers = futures.ThreadPoolExecutor(RECEIVES_IN_FLIGHT, thread_name_prefix=f"{self.name}:receive")

    def run(self) -> None:
        threading.Thread(target=self._receive_ahead, name=f"{self.name}:receive", daemon=True).start()
        for n in range(1, self.concurrency):
            threading.Thread(target=self._deliver_ready, name=f"{self.name}:{n}", daemon=True).start()
        self._deliver_ready()

    def _deliver_ready(self) -> None:
        while not self._stop_event.is_set():
            with self._waiting_lock:
                self._waiting += 1
            try:
                batch = self._ready.get(timeout=0.5)
            except queue.Empty:
                continue
            finally:
                with self._waiting_lock:
                    self._waiting -= 1
            self._ready.task_done()  # the receiving thread may gather the next batch now
            try:
                self.deliver(batch)
            except Exception as exc:  # noqa: BLE001 - keep the sandbox alive, remember what went wrong
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def _receive_ahead(self) -> None:
        while not self._stop_event.is_set():
            try:
                batch = self.gather()
            except Exception as exc:  # noqa: BLE001 - keep the sandbox alive, remember what went wrong
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)
                continue
            if batch:
                self._ready.put(batch)
                self._ready.join()  # until its delivery has begun: one batch waits at most

    def _can_take(self) -> bool:
        """Whether an invocation slot of the mapping waits for a batch (always, without receiving ahead)."""
        if not self.is_alive():
            return True
        with self._waiting_lock:
            return self._waiting > 0

    def poll_once(self) -> None:
        """Gather one batch and deliver it (what `run` does, without receiving ahead)."""
        batch = self.gather()
        if batch:
            self.deliver(batch)

    def gather(self) -> list[dict[str, Any]]:
        """Receive until BatchSize messages or the batching window since the first one (and the function
        free to take them); [] if none came.

        Up to RECEIVES_IN_FLIGHT receives run at once, each asking min(10, what is left of BatchSize after
        the batch and what the other receives in flight asked), so the batch never exceeds BatchSize. A new
        receive starts while the batch has room, its window has not passed (or no invocation slot waits for
        it) and the mapping is not stopping; an empty queue (a receive back empty while the batch is empty)
        starts none either. What every receive already started returns is waited for and kept in the
        batch: a received message is in flight, and leaving it out would hide it until its visibility
        timeout. A message two receives both got (a standard queue may hand one out twice) is in the
        batch once: Lambda's pollers each fill their own batch, so it would never be in one batch twice.
        A receive that fails stops the gathering; the failure is raised if nothing was received, else it
        is recorded in `errors` and the batch returned."""
        size = self._source.batch_size
        batch: list[dict[str, Any]] = []
        ids: set[str] = set()
        first = 0.0
        asked: dict[futures.Future[dict[str, Any]], int] = {}  # receives in flight -> messages each may return
        came_back_empty = False
        failure: Exception | None = None

        def may_receive() -> bool:
            if self._stop_event.is_set() or failure is not None:
                return False
            if not batch:
                return not came_back_empty
            window_passed = time.monotonic() - first >= self._source.batching_window_seconds
            return not (window_passed and self._can_take())

        while True:
            while len(asked) < RECEIVES_IN_FLIGHT and may_receive():
                room = size - len(batch) - sum(asked.values())
                if room <= 0:
                    break
                request: dict[str, Any] = {
                    "QueueUrl": self._source.queue_url,
                    "MaxNumberOfMessages": min(10, room),
                    "WaitTimeSeconds": 1,
                    "AttributeNames": ["All"],
                    "MessageAttributeNames": ["All"],
                }
                self._function.record_lambda_call("sqs", "ReceiveMessage", request)
                asked[self._receivers.submit(self._sqs.receive_message, **request)] = request["MaxNumberOfMessages"]
            if not asked:
                break
            done, _ = futures.wait(asked, return_when=futures.FIRST_COMPLETED)
            for receive in done:
                del asked[receive]
                try:
                    got = receive.result().get("Messages", [])
                except Exception as exc:  # noqa: BLE001 - the other receives' messages are kept, see above
                    failure = failure or exc
                    continue
                if got and not batch:
                    first = time.monotonic()
                if not got and not batch:
                    came_back_empty = True
                for message in got:
                    if message["MessageId"] not in ids:
                        ids.add(message["MessageId"])
                        batch.append(message)
        if failure is not None:
            if not batch:
                raise failure
            self.errors.append(f"{type(failure).__name__}: {failure}")
        return batch

    def close(self) -> None:
        """Shut down the receiving threads (a receive still in flight ends within its WaitTimeSeconds)."""
        self._receivers.shutdown(wait=False, cancel_futures=True)

    def deliver(self, batch: list[dict[str, Any]]) -> None:
        """Invoke the function with the batch, then delete what succeeded and release what failed (all of it
        if the invocation was throttled)."""
        response = self._function.invoke(
            {"Records": [sqs_record(m, self._source.queue_arn) for m in batch]},
            wait=self._throttle_wait_seconds(),
            stop=self._stop_event,
        )
        failed = failed_messages(batch, response, self._source.report_batch_item_failures)
        self._settle([m for m in batch if m["MessageId"] not in failed], [m for m in batch if m["MessageId"] in failed])
        self._on_batch(self._function.spec.logical_id, len(batch), response)

    def _throttle_wait_seconds(self) -> float:
        """How long a throttled batch waits for the function: until its messages' visibility timeout is
        about to run out (the queue's VisibilityTimeout less the function's timeout, at least 1 s)."""
        if self._throttle_wait is None:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._source.queue_url, AttributeNames=["VisibilityTimeout"]
            )["Attributes"]
            visibility = float(attributes.get("VisibilityTimeout", 30))
            self._throttle_wait = max(1.0, visibility - self._function.spec.timeout)
        return self._throttle_wait

    def _settle(self, succeeded: list[dict[str, Any]], failed: list[dict[str, Any]]) -> None:
        """Delete what succeeded with DeleteMessageBatch, 10 per request, as Lambda's poller does; make what
        failed visible again after `retry_delay` (the shortcut, see the module docstring). An entry SQS
        refuses (e.g. a receipt handle that expired meanwhile) is recorded: its message comes back."""
        url = self._source.queue_url
        for start in range(0, len(succeeded), _SQS_BATCH_LIMIT):
            chunk = succeeded[start : start + _SQS_BATCH_LIMIT]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            self._function.record_lambda_call("sqs", "DeleteMessageBatch", {"QueueUrl": url})
            answer = self._sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            self._refused("DeleteMessageBatch", answer)
        for start in range(0, len(failed), _SQS_BATCH_LIMIT):
            chunk = failed[start : start + _SQS_BATCH_LIMIT]
            answer = self._sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self._retry_delay}
                    for i, m in enumerate(chunk)
                ],
            )
            self._refused("ChangeMessageVisibilityBatch", answer)

    def _refused(self, operation: str, answer: dict[str, Any]) -> None:
        for entry in answer.get("Failed", []):
            self.errors.append(f"{operation} refused an entry: {entry.get('Code')}: {entry.get('Message')}")


class AsyncRuleTarget(_Poller):
    """An EventBridge rule (or schedule) whose target is the function: each event taken from its delivery
    queue is handed to the function's asynchronous queue (`AsyncInvoker`), Lambda's from then on."""

    def __init__(self, sqs: Any, delivery: RuleDelivery, invoker: AsyncInvoker, stop: threading.Event) -> None:
        super().__init__(f"rule:{delivery.rule_name}", stop)
        self._sqs, self._delivery, self._invoker = sqs, delivery, invoker

    def poll_once(self) -> None:
        url = self._delivery.delivery_queue_url
        messages = self._sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        for message in messages:
            self._invoker.put(json.loads(message["Body"]))
            self._sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


class AsyncInvoker(_Poller):
    """A function's asynchronous event queue, as Lambda keeps it: events are invoked in the order they came,
    concurrently as far as the function's concurrency allows (a throttled event waits for it: Lambda keeps
    throttled events and retries them), a function error is retried `max_async_retries` times, then goes to
    the OnFailure destination."""

    def __init__(
        self,
        sqs: Any,
        stack: Stack,
        function: FunctionProcess,
        stop: threading.Event,
        retry_delay: int,
        on_invoke: Callable[[str, dict[str, Any], Invocation], None],
    ) -> None:
        super().__init__(f"async:{function.spec.logical_id}", stop)
        self._sqs, self._stack, self._function = sqs, stack, function
        self._retry_delay, self._on_invoke = retry_delay, on_invoke
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        # One worker per execution the function may run at once (none with a reservation of 0: its events wait).
        self.workers = min(function.pool.limit, MAX_ASYNC_WORKERS)

    def put(self, event: dict[str, Any]) -> None:
        self._events.put(event)

    def run(self) -> None:
        for n in range(1, self.workers):
            threading.Thread(target=super().run, name=f"{self.name}:{n}", daemon=True).start()
        if self.workers:
            super().run()

    def poll_once(self) -> None:
        try:
            event = self._events.get(timeout=0.5)
        except queue.Empty:
            return
        self._invoke_async(event)

    def _invoke_async(self, event: dict[str, Any]) -> None:
        spec = self._function.spec
        attempts = 1 + spec.max_async_retries
        response: Invocation = {}
        for attempt in range(1, attempts + 1):
            response = self._function.invoke(event, stop=self._stop_event)
            if response.get("throttled"):
                return  # only when the sandbox stops: a throttled event waits for the function
            self._on_invoke(spec.logical_id, event, response)
            if response.get("ok"):
                return
            if attempt < attempts and self._stop_event.wait(self._retry_delay):
                return
        if spec.on_failure_queue_arn:
            record = {
                "version": "1.0",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "requestContext": {
                    "requestId": str(uuid.uuid4()),
                    "functionArn": f"{spec.arn}:$LATEST",
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": attempts,
                },
                "requestPayload": event,
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "responsePayload": {k: response.get(k) for k in ("errorType", "errorMessage")},
            }
            destination = self._stack.queue_url_for_arn(spec.on_failure_queue_arn)
            self._function.record_lambda_call("sqs", "SendMessage", {"QueueUrl": destination})
            self._sqs.send_message(QueueUrl=destination, MessageBody=json.dumps(record))


def scheduled_event(rule_arn: str, account: str = ACCOUNT_ID, region: str = REGION) -> dict[str, Any]:
    """What an EventBridge scheduled rule sends its target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class ScheduleTicker(_Poller):
    """Fires one schedule every `interval` seconds while it is enabled (see the module docstring)."""

    def __init__(self, sqs: Any, clients: Any, delivery: RuleDelivery, stop: threading.Event, interval: float) -> None:
        super().__init__(f"schedule:{delivery.rule_name}", stop)
        self._sqs, self._clients, self._delivery, self._interval = sqs, clients, delivery, interval
        self.fired = 0

    def enabled(self) -> bool:
        if self._delivery.scheduler_group is not None:
            found = self._clients("scheduler").get_schedule(
                Name=self._delivery.rule_name, GroupName=self._delivery.scheduler_group
            )
        else:
            found = self._clients("events").describe_rule(Name=self._delivery.rule_name)
        return str(found.get("State")) == "ENABLED"

    def poll_once(self) -> None:
        if self._stop_event.wait(self._interval) or not self.enabled():
            return
        if self._delivery.input is not None:
            body = self._delivery.input
        else:
            body = json.dumps(scheduled_event(self._delivery.rule_arn))
        self._sqs.send_message(QueueUrl=self._delivery.delivery_queue_url, MessageBody=body)
        self.fired += 1


class LambdaService:
    """All of the stack's functions, running and wired to their event sources."""

    def __init__(
        self,
        stack: Stack,
        sqs: Any,
        endpoint_url: str,
        log_dir: Path,
        retry_delay: int = 2,
        *,
        clients: Callable[[str], Any] | None = None,
        schedule_seconds: float = 2.0,
        record_calls: bool = False,
        concurrency: int = DEFAULT_ACCOUNT_CONCURRENCY,
    ) -> None:
        self._stop = threading.Event()
        # The account's unreserved concurrency, shared by every function without ReservedConcurrentExecutions;
        # a function with it has a pool of its own (Lambda carves it out of the account's).
        self.unreserved = ConcurrencyPool("the account's unreserved concurrency", concurrency)
        self.functions = {
            fid: FunctionProcess(
                spec,
                endpoint_url,
                log_dir,
                record_calls=record_calls,
                pool=(
                    self.unreserved
                    if spec.reserved_concurrency is None
                    else ConcurrencyPool(f"{fid}'s reserved concurrency", spec.reserved_concurrency)
                ),
            )
            for fid, spec in stack.functions.items()
        }
        self.timeline: list[tuple[float, str, str]] = []
        self.pollers: list[_Poller] = []
        self.tickers: list[ScheduleTicker] = []
        for fid, spec in stack.functions.items():
            for source in spec.sqs_sources:
                self.pollers.append(
                    SqsEventSource(sqs, source, self.functions[fid], self._stop, retry_delay, self._batch_done)
                )
            if spec.rule_deliveries:
                invoker = AsyncInvoker(sqs, stack, self.functions[fid], self._stop, retry_delay, self._invoked)
                self.pollers.append(invoker)
            for delivery in spec.rule_deliveries:
                self.pollers.append(AsyncRuleTarget(sqs, delivery, invoker, self._stop))
                if delivery.schedule_expression is not None:
                    if clients is None:
                        raise ValueError(f"{fid} has a schedule: LambdaService needs `clients` to read its state")
                    ticker = ScheduleTicker(sqs, clients, delivery, self._stop, schedule_seconds)
                    self.tickers.append(ticker)
                    self.pollers.append(ticker)

    def start(self) -> None:
        for poller in self.pollers:
            poller.start()

    def stop(self) -> None:
        self._stop.set()
        for poller in self.pollers:
            poller.join(timeout=5)
            poller.close()
        for function in self.functions.values():
            function.stop()

    def _batch_done(self, function_id: str, size: int, response: Invocation) -> None:
        self.timeline.append((time.time(), function_id, f"batch of {size} -> {_summary(response)}"))

    def _invoked(self, function_id: str, event: dict[str, Any], response: Invocation) -> None:
        if not isinstance(event, dict):
            self.timeline.append((time.time(), function_id, f"input -> {_summary(response)}"))
            return
        detail = event.get("detail", {}) if isinstance(event.get("detail"), dict) else {}
        what = (
            detail.get("TransformJobName")
            or detail.get("EndpointName")
            or detail.get("ModelPackageArn")
            or detail.get("alarmName")
            or event.get("detail-type", "")
        )
        self.timeline.append((time.time(), function_id, f"{what} -> {_summary(response)}"))


def _summary(response: Invocation) -> str:
    if not response.get("ok"):
        return f"ERROR {response.get('errorType')}: {response.get('errorMessage')}"
    return json.dumps(response.get("result"), default=str)[:300]
