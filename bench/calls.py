"""AWS calls per event: what each handler asks of AWS to process one event, by service and operation.

Each scenario runs in a fresh embedded AWS (`moto.mock_aws`, in this process, with the sandbox's
faithful patches) holding the stack provisioned from template.yaml. Handlers are the real
`functions/<name>/app.py` modules, imported with the environment the template gives them (a cold
init per scenario); every boto3 client they create gets botocore event hooks:

- `before-call`  one per API call (what the code asked for),
- `before-send`  one per HTTP attempt (attempts - calls = retries by botocore's retry handler),
- `after-call`   the answer's error code, when AWS said no (e.g. ConditionalCheckFailed, by design).

Only what happens inside `with h.recording():` is counted; the set-up a scenario does with the bench's
own clients (uploads, queue reads, a preceding invocation) is not. `h.recording("label")` counts apart
(e.g. a baseline measured in the same scenario), and each invocation inside a recording is timed.

Add a scenario: write `def my_scenario(h: Harness) -> None` that prepares the state, then invokes the
handler inside `with h.recording():`, and append a `Scenario(...)` to SCENARIOS. Run in a child
process: `python -m bench.calls --out FILE` (`make bench` does it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.common import REGION, Figure, Sample, SectionResult, Target, approved_package

INTAKE = "BatchIntakeFunction"
COMPLETION = "BatchCompletionFunction"
ROLLOUT = "RolloutFunction"
CSV = b"age,tenure,spend\n34,12,56.1\n51,3,12.0\n"


# ---------------------------------------------------------------------------------------- counting
@dataclass
class CallLog:
    calls: Counter[str] = field(default_factory=Counter)  # "s3.HeadObject" -> API calls
    attempts: Counter[str] = field(default_factory=Counter)  # HTTP attempts (calls + retries)
    errors: Counter[str] = field(default_factory=Counter)  # "dynamodb.PutItem:ConditionalCheckFailedException"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, counter: Counter[str], key: str) -> None:
        with self._lock:
            counter[key] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def retries(self) -> int:
        return sum(self.attempts.values()) - self.total

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "retries": self.retries,
            "calls": dict(sorted(self.calls.items())),
            "attempts": dict(sorted(self.attempts.items())),
            "errors": dict(sorted(self.errors.items())),
        }


def _operation(event_name: str) -> str:
    """`before-call.s3.HeadObject` -> `s3.HeadObject`."""
    _, service, operation = event_name.split(".", 2)
    return f"{service}.{operation}"


# ---------------------------------------------------------------------------------------- harness
class LambdaContext:
    def __init__(self, function_name: str, timeout: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "bench"
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


_capturing: Harness | None = None  # the harness whose handler is running (its new clients get counted)


def _install_client_capture() -> None:
    import botocore.session

    original = botocore.session.Session.create_client
    if getattr(original, "_bench_capture", False):
        return

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        if _capturing is not None:
            _capturing.attach(client)
        return client

    create_client._bench_capture = True  # type: ignore[attr-defined]
    botocore.session.Session.create_client = create_client


class ScenarioFailed(Exception):
    pass


class Harness:
    """The stack in the embedded AWS, the real handlers, and the bench's own (uncounted) clients."""

    def __init__(self, root: Path, stack: Any, client: Callable[[str], Any]) -> None:
        self.root = root
        self.stack = stack
        self.client = client  # the bench's own clients: never counted
        self.bucket: str = stack.outputs["DataBucketName"]
        self.init = CallLog()  # calls made while importing handlers (Lambda's init phase)
        self.log = CallLog()  # calls made inside `recording()`
        self.logs: dict[str, CallLog] = {}  # calls made inside `recording(label)`, by label
        self.timings: dict[str, list[float]] = {}  # ms of each invocation inside a recording, by label ("" main)
        # Each recorded invocation's calls in order, with ms since the invocation started, by label.
        self.traces: dict[str, list[list[tuple[str, float]]]] = {}
        self._recording: str | None = None
        self._trace: list[tuple[str, float]] | None = None
        self._invoke_started = 0.0
        self._groups: set[str] = set()
        self._handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        self._modules: list[ModuleType] = []
        self._in_init = False

    # counting -------------------------------------------------------------------------------
    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-call", self._on_call)
        events.register("before-send", self._on_send)
        events.register("after-call", self._on_answer)

    def _current(self) -> CallLog | None:
        if self._in_init:
            return self.init
        if self._recording is None:
            return None
        return self.log if self._recording == "" else self.logs.setdefault(self._recording, CallLog())

    def _on_call(self, event_name: str, **_: Any) -> None:
        log = self._current()
        if log is not None:
            log.add(log.calls, _operation(event_name))
            trace = self._trace
            if trace is not None and not self._in_init:
                trace.append((_operation(event_name), (time.perf_counter() - self._invoke_started) * 1000))

    def _on_send(self, event_name: str, **_: Any) -> None:
        log = self._current()
        if log is not None:
            log.add(log.attempts, _operation(event_name))

    def _on_answer(self, event_name: str, http_response: Any = None, parsed: Any = None, **_: Any) -> None:
        log = self._current()
        if log is not None and http_response is not None and http_response.status_code >= 300:
            code = (parsed or {}).get("Error", {}).get("Code", str(http_response.status_code))
            log.add(log.errors, f"{_operation(event_name)}:{code}")

    @contextmanager
    def recording(self, label: str = "") -> Iterator[CallLog]:
        """Count the calls (and time the invocations) made inside; under `label` apart from the scenario's."""
        self._recording = label
        try:
            yield self.log if label == "" else self.logs.setdefault(label, CallLog())
        finally:
            self._recording = None

    # handlers -------------------------------------------------------------------------------
    @contextmanager
    def _function_env(self, spec: Any) -> Iterator[None]:
        saved = dict(os.environ)
        os.environ.update(spec.environment)
        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = spec.name
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def handler(self, logical_id: str) -> Callable[[dict[str, Any], Any], Any]:
        """The function's handler, imported (its init run) on first use, like a cold Lambda."""
        global _capturing
        if logical_id in self._handlers:
            return self._handlers[logical_id]
        spec = self.stack.functions[logical_id]
        module_name, _, function = spec.handler.rpartition(".")
        for path in reversed([spec.code_dir, *spec.layer_dirs]):
            if str(path) not in sys.path:
                sys.path.insert(0, str(path))
        loader = importlib.util.spec_from_file_location(
            f"bench_handler_{logical_id}", Path(spec.code_dir) / f"{module_name.replace('.', '/')}.py"
        )
        assert loader is not None and loader.loader is not None
        module = importlib.util.module_from_spec(loader)
        sys.modules[loader.name] = module
        _capturing, self._in_init = self, True
        try:
            with self._function_env(spec):
                loader.loader.exec_module(module)
        finally:
            _capturing, self._in_init = None, False
        self._modules.append(module)
        self._handlers[logical_id] = getattr(module, function)
        return self._handlers[logical_id]

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        """Invoke the function's handler with `event`, as Lambda would (a fresh context)."""
        global _capturing
        handler = self.handler(logical_id)
        spec = self.stack.functions[logical_id]
        label = self._recording
        _capturing = self
        self._trace = [] if label is not None else None
        self._invoke_started = started = time.perf_counter()
        try:
            with self._function_env(spec):
                return handler(event, LambdaContext(spec.name, spec.timeout))
        finally:
            _capturing = None
            if label is not None and self._trace is not None:
                self.timings.setdefault(label, []).append((time.perf_counter() - started) * 1000)
                self.traces.setdefault(label, []).append(self._trace)
            self._trace = None

    # the outside world ------------------------------------------------------------------------
    def check(self, ok: bool, what: str) -> None:
        if not ok:
            raise ScenarioFailed(what)

    def register_model(
        self, group: str, content_types: tuple[str, ...] = ("text/csv",), tags: dict[str, str] | None = None
    ) -> str:
        """An Approved version in a model package group (created with `tags` the first time); returns the
        package ARN. Its `Model Package State Change` event goes through the template's rules."""
        sm = self.client("sagemaker")
        if group not in self._groups:
            tagged = [{"Key": k, "Value": v} for k, v in (tags or {}).items()]
            sm.create_model_package_group(ModelPackageGroupName=group, **({"Tags": tagged} if tagged else {}))
            self._groups.add(group)
        return str(sm.create_model_package(**approved_package(self.bucket, group, content_types))["ModelPackageArn"])

    def drop(self, key: str, body: bytes = CSV) -> str:
        """Upload a file (its S3 event goes through the template's rule); returns its version id."""
        return str(self.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"])

    def receive(self, queue_url: str) -> dict[str, Any]:
        """Every visible message of a queue as one Lambda SQS event (deleted from the queue)."""
        from sagepilot_sandbox.lambda_runtime.runtime import sqs_record

        sqs = self.client("sqs")
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        records: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return {"Records": records}
            for message in messages:
                records.append(sqs_record(message, arn))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def intake_event(self) -> dict[str, Any]:
        return self.receive(self.stack.outputs["IntakeQueueUrl"])

    def route(self, event: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Put an event on the default bus; return what each function's EventBridge rules let through."""
        from sagepilot_sandbox import faithful

        faithful.deliver_event(event)
        return self.deliveries()

    def deliveries(self) -> dict[str, list[dict[str, Any]]]:
        """What each function's EventBridge rules let through since the last look (events AWS itself put
        on the bus: registry changes, endpoint state changes, alarm state changes)."""
        delivered: dict[str, list[dict[str, Any]]] = {}
        for logical_id, spec in self.stack.functions.items():
            for delivery in spec.rule_deliveries:
                records = self.receive(delivery.delivery_queue_url)["Records"]
                delivered.setdefault(logical_id, []).extend(json.loads(r["body"]) for r in records)
        return delivered

    def settle_endpoint(self, name: str) -> list[dict[str, Any]]:
        """SageMaker finishes the endpoint's pending change; its state-change events go on the bus."""
        from sagepilot_sandbox import faithful

        events = list(faithful.settle_endpoint(name))
        for event in events:
            faithful.deliver_event(event)
        return events

    def set_alarm(self, name: str, value: str) -> None:
        """CloudWatch moves an alarm (its state-change event goes on the bus)."""
        self.client("cloudwatch").set_alarm_state(AlarmName=name, StateValue=value, StateReason=f"bench: {value}")

    def scheduled_event(self, logical_id: str) -> dict[str, Any]:
        """What the function's Schedule rule sends it (a schedule has no pattern to route through)."""
        from sagepilot_sandbox.lambda_runtime.runtime import scheduled_event

        spec = self.stack.functions[logical_id]
        (rule,) = [d for d in spec.rule_deliveries if d.schedule_expression]
        return scheduled_event(rule.rule_arn)

    def transform_jobs(self) -> list[str]:
        pages = self.client("sagemaker").get_paginator("list_transform_jobs").paginate()
        return sorted(j["TransformJobName"] for page in pages for j in page["TransformJobSummaries"])

    def finish_transform_job(self, name: str, status: str, reason: str = "") -> dict[str, Any]:
        """SageMaker moves the job on; returns its `Transform Job State Change` event."""
        from sagepilot_sandbox import faithful

        return dict(faithful.finish_transform_job(name, status, reason))

    def close(self) -> None:
        for module in self._modules:
            sys.modules.pop(module.__name__, None)


# ---------------------------------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    run: Callable[[Harness], None]
    per: int = 1  # the calls are divided by this many...
    unit: str = "event"  # ...of these
    baseline: str | None = None  # another scenario whose calls per unit are this one's baseline
    max_ratio: float | None = None  # target on (calls per unit) / (baseline's calls per unit)
    # A baseline recorded in the same scenario (`h.recording(label)`), per invocation; with `timed`, the
    # invocations' handler times are compared too (median of the scenario's vs median of the baseline's).
    own_baseline: str | None = None
    timed: bool = False
    # With `timed`: the call that ends the reaction (e.g. the one moving traffic); calls and handler time
    # are then counted until it, the whole invocation's in the note.
    until_call: str | None = None


def _drop_files(h: Harness, n: int, group: str = "churn") -> list[str]:
    h.register_model(group)
    return [h.drop(f"incoming/{group}/2026-11/part-{i:05d}.csv") for i in range(n)]


def s3_drop(n: int) -> Callable[[Harness], None]:
    def scenario(h: Harness) -> None:
        _drop_files(h, n)
        event = h.intake_event()
        h.check(len(event["Records"]) == n, f"expected {n} queued events, got {len(event['Records'])}")
        with h.recording():
            response = h.invoke(INTAKE, event)
        h.check(response == {"batchItemFailures": []}, f"intake answered {response}")
        h.check(len(h.transform_jobs()) == 1, f"expected one transform job, got {h.transform_jobs()}")

    return scenario


def s3_drop_redelivered(h: Harness) -> None:
    """The same SQS message again after it was processed (at-least-once delivery)."""
    _drop_files(h, 1)
    event = h.intake_event()
    h.invoke(INTAKE, event)
    again = json.loads(json.dumps(event))
    for record in again["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = "2"
        record["receiptHandle"] = uuid.uuid4().hex
    with h.recording():
        response = h.invoke(INTAKE, again)
    h.check(response == {"batchItemFailures": []}, f"intake answered {response}")
    h.check(len(h.transform_jobs()) == 1, f"a duplicate made another job: {h.transform_jobs()}")


def job_completed(n: int) -> Callable[[Harness], None]:
    def scenario(h: Harness) -> None:
        _drop_files(h, n)
        h.invoke(INTAKE, h.intake_event())
        (job,) = h.transform_jobs()
        delivered = h.route(h.finish_transform_job(job, "Completed")).get(COMPLETION, [])
        h.check(len(delivered) == 1, f"the completion rule delivered {len(delivered)} events")
        with h.recording():
            outcome = h.invoke(COMPLETION, delivered[0])
        h.check(outcome.get("action") == "reported", f"completion answered {outcome}")

    return scenario


# ---------------------------------------------------------------------------------------- rollouts
GROUP = "churn"
BAKE_SECONDS = 2  # the group's sagepilot:bake-seconds: steps wait for it on the real clock
ROLLBACK_ROUNDS = 5  # canaries rolled back by an alarm in the rollback-reaction scenario
ENDPOINT_CHANGE = "SageMaker Endpoint State Change"
PACKAGE_CHANGE = "SageMaker Model Package State Change"


def _endpoint(h: Harness) -> str:
    return f"{h.stack.functions[ROLLOUT].environment['NAME_PREFIX']}-{GROUP}"


def _approve(h: Harness) -> str:
    """A new Approved version of the group (bake time shortened by the group's tag); its ARN."""
    return h.register_model(GROUP, tags={"sagepilot:bake-seconds": str(BAKE_SECONDS)})


def _rollout_events(h: Harness) -> list[dict[str, Any]]:
    return h.deliveries().get(ROLLOUT, [])


def _pump(h: Harness) -> list[dict[str, Any]]:
    """Deliver what the rules route to the rollout function and let SageMaker finish each endpoint change,
    until nothing moves; returns the events handled."""
    handled: list[dict[str, Any]] = []
    for _ in range(30):
        events = _rollout_events(h)
        for event in events:
            h.invoke(ROLLOUT, event)
        handled += events
        settled = h.settle_endpoint(_endpoint(h))
        if not events and not settled:
            return handled
    raise ScenarioFailed("the rollout did not settle")


def _serve(h: Harness, invocations: int = 1000) -> None:
    """Clients called the endpoint during the bake: each variant's share of `invocations`, put as SageMaker
    publishes them (AWS/SageMaker Invocations per variant), the evidence a canary step needs to move on."""
    for variant, share in _shares(h).items():
        count = int(invocations * share)
        if count:
            h.client("cloudwatch").put_metric_data(
                Namespace="AWS/SageMaker",
                MetricData=[
                    {
                        "MetricName": "Invocations",
                        "Dimensions": [
                            {"Name": "EndpointName", "Value": _endpoint(h)},
                            {"Name": "VariantName", "Value": variant},
                        ],
                        "StatisticValues": {"SampleCount": count, "Sum": count, "Minimum": 1, "Maximum": 1},
                    }
                ],
            )


def _tick(h: Harness) -> None:
    """The bake time passes (clients calling the endpoint); the schedule's reconcile fires."""
    time.sleep(BAKE_SECONDS + 0.2)
    _serve(h)
    h.invoke(ROLLOUT, h.scheduled_event(ROLLOUT))


def _shares(h: Harness) -> dict[str, float]:
    variants = h.client("sagemaker").describe_endpoint(EndpointName=_endpoint(h))["ProductionVariants"]
    total = sum(v["CurrentWeight"] for v in variants) or 1.0
    return {v["VariantName"]: round(v["CurrentWeight"] / total, 3) for v in variants}


def _instances(h: Harness, variant: str) -> int:
    variants = h.client("sagemaker").describe_endpoint(EndpointName=_endpoint(h))["ProductionVariants"]
    return int(next(v["CurrentInstanceCount"] for v in variants if v["VariantName"] == variant))


def _scaled_variants(h: Harness) -> set[str]:
    targets = h.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    prefix = f"endpoint/{_endpoint(h)}/variant/"
    return {t["ResourceId"][len(prefix) :] for t in targets["ScalableTargets"] if t["ResourceId"].startswith(prefix)}


def _alarms(h: Harness, variant: str) -> set[str]:
    prefix = f"{_endpoint(h)}-{variant}-"
    alarms = h.client("cloudwatch").describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
    return {a["AlarmName"].removeprefix(prefix) for a in alarms}


def _one_event(h: Harness, what: str) -> dict[str, Any]:
    events = _rollout_events(h)
    h.check(len(events) == 1, f"expected the rules to deliver one {what} to {ROLLOUT}, got {len(events)}")
    return events[0]


def _record_until_settled(h: Harness, first: dict[str, Any]) -> list[str]:
    """Inside a recording: the event, then every event the endpoint's changes bring, until nothing moves;
    returns the detail-types of the events handled, in order."""
    h.invoke(ROLLOUT, first)
    return [e["detail-type"] for e in [first, *_pump(h)]]


def _stable_v1(h: Harness) -> dict[str, Any]:
    """v1 approved and deployed; returns the InService event of the stable endpoint (a no-op trigger)."""
    _approve(h)
    handled = _pump(h)
    h.check(_shares(h) == {"v1": 1.0}, f"v1 not deployed: {_shares(h)}")
    return next(e for e in handled if e["detail-type"] == ENDPOINT_CHANGE)


def _canary(h: Harness) -> str:
    """v1 stable, v2 approved and at its first canary step; returns v2's package ARN."""
    _stable_v1(h)
    v2 = _approve(h)
    _pump(h)
    h.check(_shares(h) == {"v1": 0.9, "v2": 0.1}, f"canary not at 10%: {_shares(h)}")
    return v2


def first_approval(h: Harness) -> None:
    _approve(h)
    event = _one_event(h, "Model Package State Change")
    with h.recording():
        h.invoke(ROLLOUT, event)
    endpoint = h.client("sagemaker").describe_endpoint(EndpointName=_endpoint(h))
    h.check(endpoint["EndpointStatus"] == "Creating", f"endpoint is {endpoint['EndpointStatus']}, not Creating")


def endpoint_created(h: Harness) -> None:
    _approve(h)
    h.invoke(ROLLOUT, _one_event(h, "Model Package State Change"))
    h.settle_endpoint(_endpoint(h))
    event = _one_event(h, "Endpoint State Change (InService)")
    with h.recording():
        h.invoke(ROLLOUT, event)
    h.check(_scaled_variants(h) == {"v1"}, f"autoscaling not registered for v1: {_scaled_variants(h)}")
    h.check(_alarms(h, "v1") == {"5xx", "latency", "low-traffic"}, f"v1 alarms: {_alarms(h, 'v1')}")
    h.check(_rollout_events(h) == [], "the stable endpoint asked for more moves")


def second_approval(h: Harness) -> None:
    _stable_v1(h)
    _approve(h)
    event = _one_event(h, "Model Package State Change")
    with h.recording():
        h.invoke(ROLLOUT, event)
    h.settle_endpoint(_endpoint(h))
    h.check(_shares(h) == {"v1": 0.9, "v2": 0.1}, f"canary not added at 10%: {_shares(h)}")
    h.check({"5xx", "latency"} <= _alarms(h, "v2"), f"the canary's rollout alarms: {_alarms(h, 'v2')}")


def traffic_shift(steps_before: int, expected: dict[str, float]) -> Callable[[Harness], None]:
    def scenario(h: Harness) -> None:
        _canary(h)
        for _ in range(steps_before):
            _tick(h)
            _pump(h)
        time.sleep(BAKE_SECONDS + 0.2)
        _serve(h)
        with h.recording():
            h.invoke(ROLLOUT, h.scheduled_event(ROLLOUT))
        h.settle_endpoint(_endpoint(h))
        h.check(_shares(h) == expected, f"expected {expected} after the shift, got {_shares(h)}")
        _pump(h)  # the shift's InService event: baking, no move
        h.check(_shares(h) == expected, f"the shift did not hold: {_shares(h)}")

    return scenario


def promotion(h: Harness) -> None:
    _canary(h)
    for _ in range(2):
        _tick(h)
        _pump(h)
    h.check(_shares(h) == {"v1": 0.0, "v2": 1.0}, f"not at 100%: {_shares(h)}")
    time.sleep(BAKE_SECONDS + 0.2)
    _serve(h)
    with h.recording():
        invocations = _record_until_settled(h, h.scheduled_event(ROLLOUT))
    h.check(_shares(h) == {"v2": 1.0}, f"v1 not removed: {_shares(h)}")
    h.check(_scaled_variants(h) == {"v2"}, f"autoscaling: {_scaled_variants(h)}")
    h.check(_alarms(h, "v1") == set(), f"v1's alarms left: {_alarms(h, 'v1')}")
    h.check("low-traffic" in _alarms(h, "v2"), "v2 has no low-traffic alarm")
    expected = ["Scheduled Event", ENDPOINT_CHANGE]
    h.check(invocations == expected, f"the promotion took {invocations}, expected {expected}")


def alarm_rollback(h: Harness) -> None:
    v2 = _canary(h)
    h.set_alarm(f"{_endpoint(h)}-v2-5xx", "ALARM")
    event = _one_event(h, "CloudWatch Alarm State Change")
    with h.recording():
        invocations = _record_until_settled(h, event)
    h.check(_shares(h) == {"v1": 1.0}, f"not rolled back: {_shares(h)}")
    h.check(_scaled_variants(h) == {"v1"}, f"autoscaling: {_scaled_variants(h)}")
    status = h.client("sagemaker").describe_model_package(ModelPackageName=v2)["ModelApprovalStatus"]
    h.check(status == "Rejected", f"v2 is {status} in the registry, not Rejected")
    # The alarm, SageMaker's two endpoint changes, and the registry's event for the rejection (a no-op).
    expected = sorted(["CloudWatch Alarm State Change", ENDPOINT_CHANGE, ENDPOINT_CHANGE, PACKAGE_CHANGE])
    h.check(sorted(invocations) == expected, f"the rollback took {invocations}, expected {expected}")


def scale_in(h: Harness) -> None:
    _stable_v1(h)
    h.client("sagemaker").update_endpoint_weights_and_capacities(  # what target tracking does under load
        EndpointName=_endpoint(h), DesiredWeightsAndCapacities=[{"VariantName": "v1", "DesiredInstanceCount": 3}]
    )
    _pump(h)
    h.check(_instances(h, "v1") == 3, f"scale-out to 3 instances did not happen: {_instances(h, 'v1')}")
    h.set_alarm(f"{_endpoint(h)}-v1-low-traffic", "ALARM")
    event = _one_event(h, "CloudWatch Alarm State Change")
    with h.recording():
        h.invoke(ROLLOUT, event)
    h.settle_endpoint(_endpoint(h))
    h.check(_instances(h, "v1") == 1, f"not scaled in to the minimum 1: {_instances(h, 'v1')}")


def noop_reconcile(h: Harness) -> None:
    event = _stable_v1(h)
    with h.recording():
        outcome = h.invoke(ROLLOUT, event)
    h.check(outcome["outcomes"][0]["result"] == "waiting", f"a stable endpoint moved: {outcome}")


def rollback_reaction(h: Harness) -> None:
    """From a canary's ALARM event to all traffic on the stable variant, ROLLBACK_ROUNDS times, beside
    no-op reconciles of the stable endpoint (the baseline) in between."""
    noop = _stable_v1(h)
    for round_ in range(ROLLBACK_ROUNDS):
        for _ in range(2):
            with h.recording("no-op reconcile"):
                outcome = h.invoke(ROLLOUT, noop)
            h.check(outcome["outcomes"][0]["result"] == "waiting", f"a stable endpoint moved: {outcome}")
        _approve(h)
        _pump(h)
        candidate = f"v{round_ + 2}"
        h.check(_shares(h) == {"v1": 0.9, candidate: 0.1}, f"canary not at 10%: {_shares(h)}")
        h.set_alarm(f"{_endpoint(h)}-{candidate}-5xx", "ALARM")
        event = _one_event(h, "CloudWatch Alarm State Change")
        with h.recording():
            h.invoke(ROLLOUT, event)
        h.settle_endpoint(_endpoint(h))  # SageMaker applies the weights the handler set
        h.check(_shares(h) == {"v1": 1.0, candidate: 0.0}, f"traffic not all on v1 after one event: {_shares(h)}")
        _pump(h)  # the rest of the rollback (the candidate removed, rejected): not the reaction
        h.check(_shares(h) == {"v1": 1.0}, f"the rollback did not finish: {_shares(h)}")


SCENARIOS: list[Scenario] = [
    Scenario("s3 drop: 1 file", "one S3 event in an SQS batch -> one transform job", s3_drop(1), 1, "file"),
    Scenario(
        "s3 drop: 100 files, one batch",
        "100 S3 events in one SQS batch -> one transform job",
        s3_drop(100),
        100,
        "file",
        baseline="s3 drop: 1 file",
        max_ratio=0.25,
    ),
    Scenario(
        "s3 drop: redelivered",
        "the 1-file batch delivered again after it was processed",
        s3_drop_redelivered,
        1,
        "file",
        baseline="s3 drop: 1 file",
        max_ratio=1.0,
    ),
    Scenario("job completed: 1 file", "Transform Job State Change (Completed), 1 input", job_completed(1), 1, "file"),
    Scenario(
        "job completed: 100 files",
        "Transform Job State Change (Completed), 100 inputs",
        job_completed(100),
        100,
        "file",
        baseline="job completed: 1 file",
        max_ratio=0.25,
    ),
    Scenario(
        "rollout: first approval",
        "Model Package State Change (v1 Approved) -> endpoint created",
        first_approval,
        1,
        "step",
    ),
    Scenario(
        "rollout: endpoint in service",
        "Endpoint State Change (InService) -> autoscaling and alarms for v1, stable",
        endpoint_created,
        1,
        "step",
    ),
    Scenario("rollout: second approval", "v2 Approved -> canary variant added at 10%", second_approval, 1, "step"),
    Scenario(
        "rollout: traffic shift to 50%",
        "scheduled reconcile after the bake -> v2 at 50%",
        traffic_shift(0, {"v1": 0.5, "v2": 0.5}),
        1,
        "step",
    ),
    Scenario(
        "rollout: traffic shift to 100%",
        "scheduled reconcile after the bake -> v2 at 100%",
        traffic_shift(1, {"v1": 0.0, "v2": 1.0}),
        1,
        "step",
    ),
    Scenario(
        "rollout: promotion",
        "scheduled reconcile after the bake at 100% -> v1 removed; its InService -> v2 stable (2 events)",
        promotion,
        1,
        "step",
    ),
    Scenario(
        "rollout: rollback on alarm",
        "canary's 5xx ALARM -> all traffic to v1; InService -> v2 removed; InService -> v2 rejected, stable (3 events)",
        alarm_rollback,
        1,
        "step",
    ),
    Scenario(
        "rollout: scale-in on low traffic",
        "low-traffic ALARM on a stable variant at 3 instances -> its minimum, 1",
        scale_in,
        1,
        "step",
    ),
    Scenario(
        "rollout: no-op reconcile",
        "InService event again for a stable, up-to-date endpoint",
        noop_reconcile,
        1,
        "event",
    ),
    Scenario(
        "rollback reaction",
        f"a canary's ALARM event -> all traffic on the stable variant ({ROLLBACK_ROUNDS} canaries)",
        rollback_reaction,
        ROLLBACK_ROUNDS,
        "event",
        own_baseline="no-op reconcile",
        timed=True,
        until_call="sagemaker.UpdateEndpointWeightsAndCapacities",
    ),
]


# ---------------------------------------------------------------------------------------- running
def _purge_product_modules() -> None:
    """A fresh init per scenario: the product's module-level clients belong to the previous mock."""
    for name in list(sys.modules):
        if name == "sagepilot" or name.startswith(("sagepilot.", "bench_handler_")):
            del sys.modules[name]


def run_scenario(scenario: Scenario, root: Path, overrides: dict[str, str]) -> dict[str, Any]:
    import boto3
    from botocore.config import Config
    from moto import mock_aws

    from sagepilot_sandbox import faithful
    from sagepilot_sandbox.stack.provision import provision

    _purge_product_modules()
    started = time.monotonic()
    with mock_aws():
        faithful.install()
        cache: dict[str, Any] = {}

        def client(service: str) -> Any:
            if service not in cache:
                cache[service] = boto3.client(
                    service, region_name=REGION, config=Config(retries={"mode": "standard", "max_attempts": 3})
                )
            return cache[service]

        stack = provision(root, client, overrides=overrides)
        h = Harness(root, stack, client)
        try:
            scenario.run(h)
        finally:
            h.close()
    return {
        "name": scenario.name,
        "what": scenario.what,
        "per": scenario.per,
        "unit": scenario.unit,
        "seconds": round(time.monotonic() - started, 2),
        "recorded": h.log.to_json(),
        "labelled": {label: log.to_json() for label, log in h.logs.items()},
        "timingsMs": {label or "scenario": [round(ms, 3) for ms in values] for label, values in h.timings.items()},
        "traces": {
            label or "scenario": [[(op, round(ms, 3)) for op, ms in trace] for trace in traces]
            for label, traces in h.traces.items()
        },
        "init": h.init.to_json(),
    }


def figures(runs: dict[str, dict[str, Any]], errors: dict[str, str]) -> list[Figure]:
    out: list[Figure] = []
    by_name = {s.name: s for s in SCENARIOS}
    for scenario in SCENARIOS:
        unit = f"calls/{scenario.unit}"
        target = Target("ratio", "<=", scenario.max_ratio) if scenario.max_ratio is not None else None
        if scenario.name in errors:
            out.append(Figure("aws calls", scenario.name, None, unit, target=target, error=errors[scenario.name]))
            continue
        if scenario.name not in runs:  # left out with --only
            continue
        recorded = runs[scenario.name]["recorded"]
        baseline = label = None
        if scenario.baseline and scenario.baseline in runs:
            base = runs[scenario.baseline]["recorded"]
            baseline = base["total"] / by_name[scenario.baseline].per
            label = f"'{scenario.baseline}' per {by_name[scenario.baseline].unit}"
        run = runs[scenario.name]
        own = run["labelled"].get(scenario.own_baseline) if scenario.own_baseline else None
        own_times = run["timingsMs"].get(scenario.own_baseline or "", [])
        if own is not None and own_times:
            baseline = own["total"] / len(own_times)
            label = f"{scenario.own_baseline}, same scenario, per event"
        refused = sum(recorded["errors"].values())
        note = f"{recorded['total']} calls, {recorded['retries']} retries, {refused} refused by design"
        if scenario.timed and scenario.until_call:
            out += _reaction_figures(scenario, run, baseline, label or "", note)
            continue
        out.append(
            Figure(
                "aws calls",
                scenario.name,
                recorded["total"] / scenario.per,
                unit,
                baseline=baseline,
                baseline_label=label or "",
                target=target,
                note=note,
            )
        )
    retries = sum(
        r["recorded"]["retries"] + r["init"]["retries"] + sum(log["retries"] for log in r["labelled"].values())
        for r in runs.values()
    )
    out.append(
        Figure(
            "aws calls",
            "retries, all scenarios",
            retries,
            "calls",
            target=Target("value", "==", 0),
            note="nothing throttles in the embedded AWS: a retry here is a 5xx or a bug",
        )
    )
    return out


def _reaction_figures(
    scenario: Scenario, run: dict[str, Any], baseline_calls: float | None, baseline_label: str, note: str
) -> list[Figure]:
    """Calls and handler time from the event until `until_call` (median over the scenario's invocations),
    against the same-scenario baseline's calls and handler time per invocation."""
    until = scenario.until_call
    reached = [next((i, ms) for i, (op, ms) in enumerate(t) if op == until) for t in run["traces"]["scenario"]]
    calls = Sample(tuple(float(i + 1) for i, _ in reached))
    mine = Sample(tuple(ms for _, ms in reached))
    whole = Sample(tuple(run["timingsMs"]["scenario"]))
    theirs = Sample(tuple(run["timingsMs"].get(scenario.own_baseline or "", [])))
    unit = f"calls/{scenario.unit}"
    return [
        Figure(
            "aws calls",
            f"{scenario.name}: calls until {until}",
            calls.median,
            unit,
            baseline=baseline_calls,
            baseline_label=baseline_label,
            note=f"the whole invocation: {run['recorded']['total'] / scenario.per:g} calls; {note}",
        ),
        Figure(
            "aws calls",
            f"{scenario.name}: handler time until {until}",
            mine.median,
            "ms",
            baseline=theirs.median if theirs.n else None,
            baseline_label=f"{scenario.own_baseline}, whole invocation, same scenario" if theirs.n else "",
            spread=mine.spread("ms") + (f"; baseline {theirs.spread('ms')}" if theirs.n else ""),
            note=(
                f"the whole invocation {whole.median:.0f} ms (median); handler wall time in this process, the "
                "embedded AWS answering in the same process"
            ),
        ),
    ]


def breakdown(runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["AWS calls by operation (calls; +retries; refused answers):"]
    for name, run in runs.items():
        recorded = run["recorded"]
        parts = []
        for op, n in recorded["calls"].items():
            retried = recorded["attempts"].get(op, n) - n
            refused = sum(v for k, v in recorded["errors"].items() if k.startswith(f"{op}:"))
            extra = (f" +{retried}r" if retried else "") + (f" ({refused} refused)" if refused else "")
            parts.append(f"{op} {n}{extra}")
        init = run["init"]["total"]
        lines.append(f"  {name} [{recorded['total']}]: " + ", ".join(parts) + (f"; init {init}" if init else ""))
        for label, log in run["labelled"].items():
            ops = ", ".join(f"{op} {n}" for op, n in log["calls"].items())
            lines.append(f"    {label} [{log['total']}]: {ops}")
    return lines


def run(root: Path, overrides: dict[str, str], only: list[str] | None = None) -> SectionResult:
    started = time.monotonic()
    result = SectionResult("aws calls")
    runs: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    _install_client_capture()
    for scenario in SCENARIOS:
        if only and scenario.name not in only:
            continue
        print(f"  scenario: {scenario.name}", flush=True)
        try:
            runs[scenario.name] = run_scenario(scenario, root, overrides)
        except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others
            errors[scenario.name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
    result.figures = figures(runs, errors)
    result.text = breakdown(runs) + [f"{name}: FAILED {error}" for name, error in errors.items()]
    result.details = {"scenarios": runs, "errors": errors, "overrides": overrides}
    result.seconds = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--override", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--only", action="append", default=None, metavar="SCENARIO")
    args = parser.parse_args(argv)
    overrides = dict(o.split("=", 1) for o in args.override)
    run(args.root, overrides, args.only).write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
