"""Fixtures of the functional tests: the whole stack of template.yaml in the embedded AWS (moto).

Each test gets a fresh `mock_aws()` with the sandbox's faithful patches, the stack provisioned from
template.yaml (parameters overridable with `@pytest.mark.parametrize("stack_overrides", [{...}])`),
the intake and completion services wired exactly as the handlers wire them, and helpers that drive
the stack from outside as AWS would: real S3 uploads whose events the template's IncomingObjectRule
routes to the IntakeQueue, SQS receives turned into Lambda's SQS event, SageMaker job state changes
routed through the completion function's rule, and error injection on the services' boto3 clients.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from sagepilot import wiring
from sagepilot.adapters.clients import client_config
from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import ModelRegistry
from sagepilot.adapters.s3 import DataBucket
from sagepilot.adapters.sagemaker import SageMaker
from sagepilot.adapters.state import StateTable
from sagepilot.services.batch_completion import BatchCompletion
from sagepilot.services.batch_intake import BatchIntake
from sagepilot.services.jobs import JobLauncher
from sagepilot.settings import Settings, load_settings
from sagepilot_sandbox import faithful
from sagepilot_sandbox.stack.provision import Stack, provision

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"
INTAKE = "BatchIntakeFunction"
COMPLETION = "BatchCompletionFunction"
BOTH_TYPES = ("text/csv", "application/jsonlines")
# The tests' clients: the batch completion's limits (its Timeout, 300 s), the most retries any function makes
# (5 after the first attempt: the suites count 6 HTTP attempts for a call that keeps failing).
CLIENT_CONFIG = client_config(300)


# ---------------------------------------------------------------------------------------- AWS itself
def transform_jobs(sm: Any, **filters: Any) -> list[dict[str, Any]]:
    """Every transform job matching `filters` (all pages: SageMaker answers 10 per page by default)."""
    return [
        j for page in sm.get_paginator("list_transform_jobs").paginate(**filters) for j in page["TransformJobSummaries"]
    ]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials in us-east-1, and nothing from the developer's own AWS set-up."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SAGEMAKER",
        "AWS_RETRY_MODE",
        "AWS_MAX_ATTEMPTS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


_ANSWERED = "_answered_by_test"


def _let_injected_answers_stand(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore calls every `before-send` handler and uses the first answer, so moto would still
    carry out a request the tests answered with an error (creating the job it "refused"). Requests
    a test answered are skipped by moto."""
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__

    def call(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        if getattr(request, _ANSWERED, False):
            return None
        return original(self, event_name, request, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", call)


@pytest.fixture
def aws(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with mock_aws():
        faithful.install()
        _let_injected_answers_stand(monkeypatch)
        yield


@pytest.fixture
def stack_overrides() -> dict[str, str]:
    """Template parameter values; override with @pytest.mark.parametrize("stack_overrides", [...])."""
    return {}


@pytest.fixture
def clients(aws: None) -> Callable[[str], Any]:
    """One client per service, configured like the product's (standard retries), shared by the
    provisioning, the services under test and the tests' error injection."""
    cache: dict[str, Any] = {}

    def factory(service: str) -> Any:
        if service not in cache:
            cache[service] = boto3.client(service, region_name=REGION, config=CLIENT_CONFIG)
        return cache[service]

    return factory


# The start-up hold (HoldSeconds, services/holding.py) is off unless a test's overrides set it: the other tests
# drop one batch after another into a group and check each batch's own job; the hold's tests turn it on.
NO_HOLD = {"HoldSeconds": "0"}


@pytest.fixture
def stack(clients: Callable[[str], Any], stack_overrides: dict[str, str]) -> Stack:
    return provision(ROOT, clients, overrides={**NO_HOLD, **stack_overrides})


@pytest.fixture
def s3(clients: Callable[[str], Any]) -> Any:
    return clients("s3")


@pytest.fixture
def sagemaker(clients: Callable[[str], Any]) -> Any:
    return clients("sagemaker")


# ---------------------------------------------------------------------------------------- the services
def function_settings(stack: Stack, logical_id: str) -> Settings:
    return load_settings(stack.functions[logical_id].environment)


@pytest.fixture
def intake_settings(stack: Stack) -> Settings:
    return function_settings(stack, INTAKE)


@pytest.fixture
def completion_settings(stack: Stack) -> Settings:
    return function_settings(stack, COMPLETION)


@pytest.fixture
def intake(intake_settings: Settings, clients: Callable[[str], Any]) -> BatchIntake:
    return wiring.batch_intake(intake_settings, clients)


@pytest.fixture
def completion(completion_settings: Settings, clients: Callable[[str], Any]) -> BatchCompletion:
    return wiring.batch_completion(completion_settings, clients)


class FakeClock:
    """A clock for the state table that tests move forward by hand."""

    def __init__(self, start: float = 1_900_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def intake_with_clock(
    intake_settings: Settings, clients: Callable[[str], Any]
) -> Callable[[Callable[[], float]], BatchIntake]:
    """The intake service as wiring builds it, except that its state table reads `clock`."""

    def build(clock: Callable[[], float]) -> BatchIntake:
        s = intake_settings
        launcher = JobLauncher(
            s,
            DataBucket(clients("s3"), s.data_bucket),
            SageMaker(clients("sagemaker")),
            StateTable(clients("dynamodb"), s.state_table, clock=clock),
            registry=ModelRegistry(clients("sagemaker")),
            notifier=Notifier(clients("sns"), s.notification_topic_arn),
        )
        return BatchIntake(
            s,
            DataBucket(clients("s3"), s.data_bucket),
            ModelRegistry(clients("sagemaker")),
            launcher,
            Notifier(clients("sns"), s.notification_topic_arn),
        )

    return build


# ---------------------------------------------------------------------------------------- the bucket
@dataclass
class Data:
    s3: Any
    name: str

    def drop(self, key: str, body: bytes = b"1,2,3\n4,5,6\n") -> str:
        """Upload a file; returns its version id (the bucket is versioned)."""
        return str(self.s3.put_object(Bucket=self.name, Key=key, Body=body)["VersionId"])

    def json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=self.name, Key=key)["Body"].read())

    def exists(self, key: str, version_id: str | None = None) -> bool:
        params = {"Bucket": self.name, "Key": key, **({"VersionId": version_id} if version_id else {})}
        try:
            self.s3.head_object(**params)
        except self.s3.exceptions.ClientError:
            return False
        return True

    def keys(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return sorted(keys)

    def versions(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.name):
            out += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
            out += [(d["Key"], d["VersionId"]) for d in page.get("DeleteMarkers", [])]
        return sorted(out)


@pytest.fixture
def data(stack: Stack, s3: Any) -> Data:
    return Data(s3, stack.outputs["DataBucketName"])


# ---------------------------------------------------------------------------------------- the registry
@dataclass
class Registry:
    sm: Any
    groups: set[str] = field(default_factory=set)

    def register(
        self, group: str, status: str = "Approved", content_types: tuple[str, ...] = BOTH_TYPES, image: str = ""
    ) -> str:
        """Add a model package version to `group` (created if needed), with inference `image` (default: the
        group's repository in this account and region); returns its ARN."""
        if group not in self.groups:
            self.sm.create_model_package_group(ModelPackageGroupName=group)
            self.groups.add(group)
        spec: dict[str, Any] = {
            "Containers": [
                {
                    "Image": image or f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{group}:latest",
                    "ModelDataUrl": f"s3://models-{ACCOUNT}/{group}/model.tar.gz",
                }
            ],
            "SupportedResponseMIMETypes": ["text/csv"],
        }
        if content_types:
            spec["SupportedContentTypes"] = list(content_types)
        return str(
            self.sm.create_model_package(
                ModelPackageGroupName=group,
                InferenceSpecification=spec,
                ModelApprovalStatus=status,
            )["ModelPackageArn"]
        )

    def approve(self, arn: str) -> None:
        self.sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")


@pytest.fixture
def registry(sagemaker: Any) -> Registry:
    return Registry(sagemaker)


# ---------------------------------------------------------------------------------------- SQS and Lambda
def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One received SQS message in the shape Lambda's SQS event source mapping hands to a function."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            name: attributes[name]
            for name in (
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
            )
        },
        "messageAttributes": {
            name: {
                "stringValue": a.get("StringValue"),
                "binaryValue": a.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": a["DataType"],
            }
            for name, a in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def sqs_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": [dict(r) for r in records]}


def with_body(record: dict[str, Any], body: str, *, new_message: bool = True) -> dict[str, Any]:
    """A copy of `record` carrying another body (a different message unless said otherwise)."""
    copy = json.loads(json.dumps(record))
    copy["body"] = body
    copy["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()
    if new_message:
        copy["messageId"] = str(uuid.uuid4())
        copy["receiptHandle"] = uuid.uuid4().hex
    return copy


def encoded_key_copy(record: dict[str, Any]) -> dict[str, Any]:
    """The same S3 event with its key URL-encoded the way classic S3 notifications encode it."""
    body = json.loads(record["body"])
    body["detail"]["object"]["key"] = quote_plus(body["detail"]["object"]["key"], safe="/")
    return with_body(record, json.dumps(body))


def redelivered(record: dict[str, Any], receive_count: int) -> dict[str, Any]:
    copy = json.loads(json.dumps(record))
    copy["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return copy


def event_key(record: dict[str, Any]) -> str:
    return str(json.loads(record["body"])["detail"]["object"]["key"])


@dataclass
class Queue:
    """A queue read the way Lambda's event source mapping reads it."""

    sqs: Any
    url: str
    arn: str
    # A test clock the handlers read: SQS's SentTimestamp then says when on it the message was first received
    # (moto stamps the real time, years before a FakeClock's).
    clock: Any = None
    _sent: dict[str, float] = field(default_factory=dict)

    def receive(self) -> dict[str, Any]:
        """Every message visible now, as one Lambda SQS event (possibly with no records)."""
        records: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not messages:
                if self.clock is not None:
                    for r in records:
                        sent = self._sent.setdefault(r["messageId"], self.clock())
                        r["attributes"]["SentTimestamp"] = str(int(sent * 1000))
                return sqs_event(records)
            records += [sqs_record(m, self.arn) for m in messages]

    def bodies(self) -> list[dict[str, Any]]:
        event = self.receive()
        self.delete(event["Records"])
        return [json.loads(r["body"]) for r in event["Records"]]

    def delete(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=r["receiptHandle"])

    def release(self, records: list[dict[str, Any]]) -> None:
        """Make messages visible again at once (as if their visibility timeout had passed)."""
        for r in records:
            self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=r["receiptHandle"], VisibilityTimeout=0)

    def settle(self, event: dict[str, Any], response: dict[str, Any]) -> None:
        """What the event source mapping does with a partial batch response."""
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        self.delete([r for r in event["Records"] if r["messageId"] not in failed])
        self.release([r for r in event["Records"] if r["messageId"] in failed])

    def depth(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _queue(stack: Stack, sqs: Any, url: str) -> Queue:
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Queue(sqs, url, arn)


@pytest.fixture
def intake_queue(stack: Stack, clients: Callable[[str], Any]) -> Queue:
    """The IntakeQueue, fed by the template's IncomingObjectRule."""
    return _queue(stack, clients("sqs"), stack.outputs["IntakeQueueUrl"])


@pytest.fixture
def intake_dlq(stack: Stack, clients: Callable[[str], Any]) -> Queue:
    return _queue(stack, clients("sqs"), stack.outputs["IntakeDeadLetterQueueUrl"])


def response_of(outcome: Any) -> dict[str, Any]:
    """The handler's partial batch response for an intake outcome."""
    return {"batchItemFailures": [{"itemIdentifier": m} for m in outcome.failed_message_ids]}


# ---------------------------------------------------------------------------------------- notifications
@dataclass
class Notifications:
    queue: Queue

    def drain(self) -> list[dict[str, Any]]:
        """Notifications published since the last drain: [{"subject": ..., "message": {...}}]."""
        out = []
        for envelope in self.queue.bodies():
            out.append({"subject": envelope.get("Subject"), "message": json.loads(envelope["Message"])})
        return out


@pytest.fixture
def notifications(stack: Stack, clients: Callable[[str], Any]) -> Notifications:
    """An SQS queue subscribed to the stack's NotificationTopic, as a user's mailbox would be."""
    sqs = clients("sqs")
    url = sqs.create_queue(QueueName="test-notification-inbox")["QueueUrl"]
    queue = _queue(stack, sqs, url)
    clients("sns").subscribe(TopicArn=stack.outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=queue.arn)
    return Notifications(queue)


# ---------------------------------------------------------------------------------------- SageMaker jobs
@dataclass
class Completions:
    """SageMaker job state changes, routed by EventBridge to the completion function's rule."""

    queue: Queue

    def finish(self, name: str, status: str, reason: str = "") -> list[dict[str, Any]]:
        """Move the job on; return the events the completion function's rule let through."""
        event = faithful.finish_transform_job(name, status, reason)
        return self.route(event)

    def route(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        faithful.deliver_event(event)
        return self.queue.bodies()


@pytest.fixture
def completions(stack: Stack, clients: Callable[[str], Any]) -> Completions:
    (delivery,) = [d for d in stack.functions[COMPLETION].rule_deliveries if not d.schedule_expression]
    return Completions(_queue(stack, clients("sqs"), delivery.delivery_queue_url))


@dataclass(frozen=True)
class Job:
    name: str
    description: dict[str, Any]
    manifest: list[Any]
    plan: dict[str, Any]
    tags: dict[str, str]

    @property
    def keys(self) -> list[str]:
        """The dropped keys the manifest's entries stand for: each entry is the path under incoming/<group>/,
        of the dropped key itself (a job the intake planned) or of a private copy of the claimed version in the
        input folder of the job (or of its parent) that reads copies."""
        prefix = self.manifest[0]["prefix"]
        bucket_and_key = prefix[len("s3://") :]
        _, _, key_prefix = bucket_and_key.partition("/")
        dropped = f"incoming/{self.plan['group']}/"
        assert key_prefix == dropped or (key_prefix.startswith("jobs/") and key_prefix.endswith("/input/")), key_prefix
        return [f"incoming/{self.plan['group']}/{rel}" for rel in self.manifest[1:]]

    @property
    def copies(self) -> list[str]:
        """The keys SageMaker reads: the manifest's entries as full keys."""
        prefix = self.manifest[0]["prefix"]
        _, _, key_prefix = prefix[len("s3://") :].partition("/")
        return [key_prefix + rel for rel in self.manifest[1:]]

    @property
    def versions(self) -> list[tuple[str, str]]:
        """The input versions the job owns: those it reads, older ones of the same keys, and deleted ones."""
        held = self.plan["inputs"] + self.plan["superseded"] + self.plan.get("deleted", [])
        return [(i["key"], i["versionId"]) for i in held]


@dataclass
class Jobs:
    sm: Any
    data: Data

    def names(self) -> list[str]:
        names: list[str] = []
        for page in self.sm.get_paginator("list_transform_jobs").paginate():
            names += [j["TransformJobName"] for j in page["TransformJobSummaries"]]
        return sorted(names)

    def get(self, name: str) -> Job:
        description = self.sm.describe_transform_job(TransformJobName=name)
        uri = description["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        bucket, _, manifest_key = uri[len("s3://") :].partition("/")
        assert bucket == self.data.name
        manifest = self.data.json(manifest_key)
        plan = self.data.json(manifest_key.rsplit("/", 1)[0] + "/plan.json")
        tags = {t["Key"]: t["Value"] for t in self.sm.list_tags(ResourceArn=description["TransformJobArn"])["Tags"]}
        return Job(name, description, manifest, plan, tags)

    def all(self) -> list[Job]:
        return [self.get(n) for n in self.names()]

    def handed_on(self, job: Job) -> bool:
        """Whether the job's inputs went to other jobs (its report says it was split or planned again)."""
        report = f"jobs/{job.plan['group']}/{job.name}/report.json"
        handed = ("Split", "Replanned", "ReadAgain")
        return report in self.data.keys(report) and self.data.json(report)["status"] in handed

    def read_again(self, job: Job) -> set[tuple[str, str]]:
        """The versions a completed job handed to a job reading copies (their key changed while it ran)."""
        report = f"jobs/{job.plan['group']}/{job.name}/report.json"
        if report not in self.data.keys(report):
            return set()
        again = self.data.json(report).get("readAgain", {}).get("inputs", [])
        return {(i["key"], i["versionId"]) for i in again}

    def assert_each_version_in_exactly_one_job(self, expected: set[tuple[str, str]]) -> list[Job]:
        """Every expected (key, version) is in exactly one job (retries of a job not counted twice),
        each job's manifest lists exactly its planned inputs, and no job holds anything else."""
        jobs = [j for j in self.all() if not j.name.endswith(tuple(f"-r{i}" for i in range(1, 10)))]
        seen: Counter[tuple[str, str]] = Counter()
        for job in jobs:
            assert sorted(job.keys) == sorted(i["key"] for i in job.plan["inputs"]), job.name
            assert job.plan["final"] is True
            if self.handed_on(job):  # split, or planned again: its pieces read its inputs
                seen.update((i["key"], i["versionId"]) for i in job.plan["superseded"] + job.plan.get("deleted", []))
                continue
            moved = self.read_again(job)
            seen.update(v for v in job.versions if v not in moved)
        assert dict(seen) == dict.fromkeys(expected, 1)
        return jobs


@pytest.fixture
def jobs(sagemaker: Any, data: Data) -> Jobs:
    return Jobs(sagemaker, data)


# ---------------------------------------------------------------------------------------- fault injection
class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class HandlerCrashed(Exception):
    """Raised from inside an AWS call to simulate the function dying half-way (timeout, OOM)."""


@dataclass
class Fault:
    """Counts the calls of one operation and answers the chosen ones with an error."""

    service: str
    operation: str
    calls: int = 0
    injected: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    active: bool = True

    def stop(self) -> None:
        self.active = False


def inject_error(
    client: Any,
    operation: str,
    code: str,
    message: str,
    *,
    status: int = 400,
    times: int | None = 1,
    when: Callable[[dict[str, Any]], bool] | None = None,
) -> Fault:
    """Answer `times` calls of `operation` (those for which `when(request)` holds) with an AWS error,
    at the HTTP layer (before-send), so botocore's retry handler sees it as it would see AWS's."""
    assert client.meta.service_model.protocol == "json", "error bodies below are for the JSON protocol"
    fault = Fault(client.meta.service_model.service_id.hyphenize(), operation)

    def handler(request: Any, **_: Any) -> AWSResponse | None:
        body = json.loads(request.body or b"{}")
        fault.calls += 1
        fault.requests.append(body)
        if not fault.active or (times is not None and fault.injected >= times) or (when and not when(body)):
            return None
        fault.injected += 1
        setattr(request, _ANSWERED, True)
        payload = json.dumps({"__type": code, "message": message}).encode()
        headers = {
            "x-amzn-RequestId": str(uuid.uuid4()),
            "Content-Type": "application/x-amz-json-1.1",
            "Content-Length": str(len(payload)),
        }
        return AWSResponse(request.url, status, headers, _RawBody(payload))

    client.meta.events.register_first(f"before-send.{fault.service}.{operation}", handler)
    return fault


def crash_on(client: Any, operation: str, *, nth: int = 1, when: Callable[[Any], bool] | None = None) -> Fault:
    """Make the `nth` matching call of `operation` raise HandlerCrashed (once)."""
    fault = Fault(client.meta.service_model.service_id.hyphenize(), operation)

    def handler(request: Any, **_: Any) -> None:
        if when is not None and not when(request):
            return
        fault.calls += 1
        if fault.active and fault.calls == nth:
            fault.injected += 1
            raise HandlerCrashed(f"{operation} call {nth}: the function died here")

    client.meta.events.register_first(f"before-send.{fault.service}.{operation}", handler)
    return fault


@pytest.fixture
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's standard retries, without their sleeps (only the timing changes)."""
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)


# ---------------------------------------------------------------------------------------- small helpers
def aws_snapshot(stack: Stack, clients: Callable[[str], Any], data: Data) -> dict[str, Any]:
    """What the control plane could have changed: objects, jobs, models, state items."""
    sm = clients("sagemaker")
    items = clients("dynamodb").scan(TableName=stack.outputs["StateTableName"]).get("Items", [])
    return {
        "objects": data.versions(),
        "jobs": sorted(j["TransformJobName"] for j in transform_jobs(sm)),
        "models": sorted(m["ModelName"] for m in sm.list_models()["Models"]),
        "state": sorted(json.dumps(i, sort_keys=True) for i in items),
    }


def chunks(items: list[Any], sizes: list[int]) -> list[list[Any]]:
    it = iter(items)
    return [list(itertools.islice(it, n)) for n in sizes]
