"""AWS calls per event: what each handler asks of AWS to process one event, by service and operation.

Each scenario runs in a fresh embedded AWS (`moto.mock_aws`, in this process, with the sandbox's
faithful patches) holding the stack provisioned from template.yaml. Handlers are the real
`functions/<name>/app.py` modules, imported with the environment the template gives them (a cold
init per scenario); every boto3 client they create gets botocore event hooks:

- `before-call`  one per API call (what the code asked for),
- `before-send`  one per HTTP attempt (attempts - calls = retries by botocore's retry handler),
- `after-call`   the answer's error code, when AWS said no (e.g. ConditionalCheckFailed, by design).

Only what happens inside `with h.recording():` is counted; the set-up a scenario does with the bench's
own clients (uploads, queue reads, a preceding invocation) is not.

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

from bench.common import REGION, Figure, SectionResult, Target

INTAKE = "BatchIntakeFunction"
COMPLETION = "BatchCompletionFunction"
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
        self._recording = False
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
        return self.log if self._recording else None

    def _on_call(self, event_name: str, **_: Any) -> None:
        log = self._current()
        if log is not None:
            log.add(log.calls, _operation(event_name))

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
    def recording(self) -> Iterator[CallLog]:
        self._recording = True
        try:
            yield self.log
        finally:
            self._recording = False

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
        _capturing = self
        try:
            with self._function_env(spec):
                return handler(event, LambdaContext(spec.name, spec.timeout))
        finally:
            _capturing = None

    # the outside world ------------------------------------------------------------------------
    def check(self, ok: bool, what: str) -> None:
        if not ok:
            raise ScenarioFailed(what)

    def register_model(self, group: str, content_types: tuple[str, ...] = ("text/csv",)) -> str:
        """A model package group with one Approved version; returns the package ARN."""
        sm = self.client("sagemaker")
        sm.create_model_package_group(ModelPackageGroupName=group)
        return str(
            sm.create_model_package(
                ModelPackageGroupName=group,
                ModelApprovalStatus="Approved",
                InferenceSpecification={
                    "Containers": [
                        {
                            "Image": f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{group}:1",
                            "ModelDataUrl": f"s3://{self.bucket}/models/{group}/model.tar.gz",
                        }
                    ],
                    "SupportedContentTypes": list(content_types),
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
            )["ModelPackageArn"]
        )

    def drop(self, key: str, body: bytes = CSV) -> str:
        """Upload a file (its S3 event goes through the template's rule); returns its version id."""
        return str(self.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body)["VersionId"])

    def receive(self, queue_url: str) -> dict[str, Any]:
        """Every visible message of a queue as one Lambda SQS event (deleted from the queue)."""
        from sagepilot_sandbox.runtime import sqs_record

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
        delivered: dict[str, list[dict[str, Any]]] = {}
        for logical_id, spec in self.stack.functions.items():
            for delivery in spec.rule_deliveries:
                records = self.receive(delivery.delivery_queue_url)["Records"]
                delivered.setdefault(logical_id, []).extend(json.loads(r["body"]) for r in records)
        return delivered

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


# Add rollout steps, the alarm-driven rollback and the scale-in here as they land.
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
    from sagepilot_sandbox.provision import provision

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
        recorded = runs[scenario.name]["recorded"]
        baseline = label = None
        if scenario.baseline and scenario.baseline in runs:
            base = runs[scenario.baseline]["recorded"]
            baseline = base["total"] / by_name[scenario.baseline].per
            label = f"'{scenario.baseline}' per {by_name[scenario.baseline].unit}"
        refused = sum(recorded["errors"].values())
        out.append(
            Figure(
                "aws calls",
                scenario.name,
                recorded["total"] / scenario.per,
                unit,
                baseline=baseline,
                baseline_label=label or "",
                target=target,
                note=f"{recorded['total']} calls, {recorded['retries']} retries, {refused} refused by design",
            )
        )
    retries = sum(r["recorded"]["retries"] + r["init"]["retries"] for r in runs.values())
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
