"""Malformed and unexpected events at each entry point: a clear logged error or a deliberate no-op, and no
AWS mutation.

The three Lambda handlers are loaded from functions/*/app.py with the environment the template gives each
function (as Lambda loads them), on a stack that already holds a deployed endpoint and a running transform
job, and fed events that are broken (not JSON, missing fields, wrong types), unexpected (other buckets,
other detail-types, foreign jobs, endpoints and alarms, unapproved statuses) or hostile (keys over S3's
1024 bytes, control characters, lone surrogates). For each one, a `before-call` hook on every client of the
handler proves that only reading calls were made, and the account (objects and their versions, jobs,
models, endpoints, alarms, scalable targets, registry, state table) is compared before and after.

Then hypothesis fuzzes each parser of `sagepilot.events` (beyond the fuzzing in tests/unit/test_events.py:
whole events, not only details; every entry point's parser; junk grafted anywhere into real samples): they
return a typed view or raise MalformedEvent, nothing else.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from functional.conftest import transform_jobs
from functional.test_rollout import make_rollout
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sagepilot.adapters import clients as product_clients
from sagepilot.errors import MalformedEvent
from sagepilot.events import (
    AlarmSignal,
    EndpointSignal,
    ObjectCreated,
    PackageChanged,
    QueuedMessage,
    Scheduled,
    TransformJobChange,
    parse_object_created,
    parse_rollout_trigger,
    parse_transform_job_change,
    queued_messages,
)
from sagepilot_sandbox import faithful

from .conftest import (
    COMPLETION,
    INTAKE,
    REGION,
    ROLLOUT,
    FakeClock,
    LogRecords,
    record_calls,
    sqs_event,
    sqs_record,
    with_body,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str


@pytest.fixture
def handlers(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], tuple[ModuleType, Any]]]:
    """functions/<dir>/app.py imported as Lambda imports it, with the function's environment; its context."""
    product_clients.client.cache_clear()

    def load(logical_id: str) -> tuple[ModuleType, Any]:
        spec = stack.functions[logical_id]
        for name, value in spec.environment.items():
            monkeypatch.setenv(name, value)
        path = spec.code_dir / f"{spec.handler.split('.')[0]}.py"
        module_spec = importlib.util.spec_from_file_location(f"handler_{logical_id}_{uuid.uuid4().hex}", path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module, FakeLambdaContext(spec.name, 512, spec.arn, str(uuid.uuid4()))

    yield load
    product_clients.client.cache_clear()


def account(stack: Any, clients: Callable[[str], Any], bucket: str) -> dict[str, Any]:
    """Everything the control plane could change, as data."""
    sm, s3 = clients("sagemaker"), clients("s3")
    versions = s3.list_object_versions(Bucket=bucket)
    items = clients("dynamodb").scan(TableName=stack.outputs["StateTableName"]).get("Items", [])
    targets = clients("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    packages = sm.list_model_packages(ModelPackageGroupName="churn")["ModelPackageSummaryList"]
    jobs = transform_jobs(sm)
    alarms = clients("cloudwatch").describe_alarms()["MetricAlarms"]
    return {
        "objects": sorted((v["Key"], v["VersionId"]) for v in versions.get("Versions", [])),
        "jobs": sorted((j["TransformJobName"], j["TransformJobStatus"]) for j in jobs),
        "models": sorted(m["ModelName"] for m in sm.list_models()["Models"]),
        "configs": sorted(c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]),
        "endpoints": sorted((e["EndpointName"], e["EndpointStatus"]) for e in sm.list_endpoints()["Endpoints"]),
        "alarms": sorted((a["AlarmName"], a["StateValue"]) for a in alarms),
        "targets": sorted(t["ResourceId"] for t in targets["ScalableTargets"]),
        "registry": sorted((p["ModelPackageArn"], p["ModelApprovalStatus"]) for p in packages),
        "state": sorted(json.dumps(i, sort_keys=True) for i in items),
    }  # fmt: skip


@pytest.fixture
def busy_stack(
    stack: Any, clients: Any, data: Any, registry: Any, intake_queue: Any, intake: Any, clock: FakeClock
) -> Any:
    """A stack with something to break: v1 of churn deployed on its endpoint, a transform job running, a
    rejected file, a pending version."""
    rollout = make_rollout(stack, clients, clock)
    rollout.register()
    rollout.pump()
    rollout.register(status="PendingManualApproval")
    rollout.pump()
    data.drop("incoming/churn/a.csv")
    data.drop("incoming/churn/notes.txt")
    intake.handle(queued_messages(intake_queue.receive()))
    assert rollout.endpoint()["EndpointStatus"] == "InService"
    return stack


def assert_no_mutation(log: Any, before: dict[str, Any], after: dict[str, Any], what: str) -> None:
    assert log.mutations() == [], f"{what}: mutating calls {log.mutations()}"
    assert after == before, f"{what}: the account changed"


# ---------------------------------------------------------------------------------------- the intake
def object_created(bucket: str, key: Any, **object_fields: Any) -> dict[str, Any]:
    event = sample("s3-object-created.json")
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"]["key"] = key
    event["detail"]["object"].update(object_fields)
    return event


def intake_bodies(bucket: str, real: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """name -> (message body, what the handler must log: an error, a warning, or nothing for a no-op)."""
    huge = "incoming/churn/" + "x" * 1100 + ".csv"

    def body(event: Any) -> str:
        return json.dumps(event)

    no_object = copy.deepcopy(real)
    del no_object["detail"]["object"]
    return {
        "not JSON": ("{not json", "error"),
        "a JSON array": ("[1, 2, 3]", "error"),
        "a JSON string": ('"incoming/churn/a.csv"', "error"),
        "JSON null": ("null", "error"),
        "an empty object": ("{}", "error"),
        "Object Deleted": (body({**real, "detail-type": "Object Deleted"}), "error"),
        "a SageMaker event": (body(sample("sagemaker-transform-job-completed.json")), "error"),
        "no detail.object": (body(no_object), "error"),
        "a key that is a number": (body(object_created(bucket, 42)), "error"),
        "an empty key": (body(object_created(bucket, "")), "error"),
        "another bucket": (body(object_created("someone-elses-bucket", "incoming/churn/a.csv")), "warning"),
        "a key over 1024 bytes": (body(object_created(bucket, huge)), "warning"),
        "a key with control characters": (body(object_created(bucket, "incoming/churn/a\u0000b\n\r\t.csv")), "warning"),
        "a key climbing out": (body(object_created(bucket, "incoming/churn/../../jobs/x/plan.json")), "warning"),
        "an object that never existed": (body(object_created(bucket, "incoming/churn/ghost.csv")), "warning"),
        "a version that does not exist": (
            body(object_created(bucket, "incoming/churn/a.csv", **{"version-id": "nosuchversion"})), "warning",
        ),
        "a folder": (body(object_created(bucket, "incoming/churn/new folder/")), ""),
    }  # fmt: skip


def test_the_intake_drops_malformed_messages_without_touching_aws(
    busy_stack, clients, data, intake_queue, handlers, log_records: LogRecords, subtests
):
    data.drop("incoming/churn/b.csv")
    (real_record,) = intake_queue.receive()["Records"]
    real = json.loads(real_record["body"])
    app, context = handlers(INTAKE)
    log = record_calls(product_clients.client)
    cases = intake_bodies(data.name, real)
    for name, (body, level) in cases.items():
        with subtests.test(name):
            before = account(busy_stack, clients, data.name)
            log.clear()
            log_records.clear()
            response = app.handler(sqs_event([with_body(real_record, body)]), context)
            assert response == {"batchItemFailures": []}
            assert_no_mutation(log, before, account(busy_stack, clients, data.name), name)
            logged = {logging.ERROR: "error", logging.WARNING: "warning"}
            levels = {logged[r.levelno] for r in log_records.at(logging.WARNING)}
            assert levels == ({level} if level else set()), f"{name}: {log_records.messages(logging.WARNING)}"
    with subtests.test("all of them in one batch, and an empty batch"):
        before = account(busy_stack, clients, data.name)
        log.clear()
        records = [with_body(real_record, body) for body, _ in cases.values()]
        assert app.handler(sqs_event(records), context) == {"batchItemFailures": []}
        assert app.handler({"Records": []}, context) == {"batchItemFailures": []}
        assert_no_mutation(log, before, account(busy_stack, clients, data.name), "one batch")
    assert len(cases) >= 12


def test_a_key_that_is_not_unicode_does_not_sink_its_batch(
    busy_stack, data, intake_queue, handlers, jobs, log_records: LogRecords
):
    """A lone surrogate (JSON allows it, UTF-8 cannot encode it, so no S3 object has that key): the record is
    malformed, logged as an error and acknowledged (no report: its key cannot be written either); the good
    file of the same batch goes to its job."""
    data.drop("incoming/churn/good.csv")
    (good,) = intake_queue.receive()["Records"]
    poison = with_body(good, json.dumps(object_created(data.name, "incoming/churn/\ud800.csv")))
    app, context = handlers(INTAKE)
    log_records.clear()
    assert app.handler(sqs_event([good, poison]), context) == {"batchItemFailures": []}
    assert any(j.keys == ["incoming/churn/good.csv"] for j in jobs.all())
    (error,) = log_records.at(logging.ERROR)
    assert error.getMessage() == "dropping a malformed event" and "not valid Unicode" in str(error.__dict__["error"])
    assert not any("\ud800" in key for key in data.keys("rejected/"))


def test_bad_files_mixed_with_good_ones_never_sink_them(busy_stack, data, intake_queue, handlers, jobs, notifications):
    """Files that must be refused, each for its own limit, in one batch with good files of the same group: a
    key whose reports fit S3 but whose job output would not (1,000 bytes: it also fails the state table's key
    limit), and a group name reserved by the training layout. Through the real handler, on the first delivery: each bad
    one rejected with its own reason, the good ones in their job, nothing handed back to the queue."""
    good = ["incoming/churn/mixed/g1.csv", "incoming/churn/mixed/g2.csv"]
    bad = {
        "incoming/churn/" + "k" * (1000 - len("incoming/churn/.csv")) + ".csv": "KEY_TOO_LONG",
        "incoming/training/churn/t.csv": "RESERVED_GROUP_NAME",
    }
    for key in [*good, *bad]:
        data.drop(key)
    event = intake_queue.receive()
    assert len(event["Records"]) == len(good) + len(bad)
    app, context = handlers(INTAKE)
    assert app.handler(event, context) == {"batchItemFailures": []}
    (job,) = [j for j in jobs.all() if any(k in good for k in j.keys)]
    assert sorted(job.keys) == good
    rejected = {data.json(k)["input"]["key"]: data.json(k)["code"] for k in data.keys("rejected/")}
    assert {k: rejected[k] for k in bad} == bad
    assert not any(k in rejected for k in good)


# ---------------------------------------------------------------------------------------- the completion
def completion_events(job: str) -> dict[str, tuple[dict[str, Any] | Any, str]]:
    """name -> (event, "error" for a malformed one, "info" for one about nothing the function manages (the
    stack's control alarms share the endpoint alarms' name prefix), "" for a deliberate no-op)."""
    good = faithful.transform_job_event(job)

    def with_detail(**changes: Any) -> dict[str, Any]:
        event = copy.deepcopy(good)
        event["detail"].update(changes)
        return event

    def without(*fields: str) -> dict[str, Any]:
        event = copy.deepcopy(good)
        for name in fields:
            event["detail"].pop(name, None)
        return event

    return {
        "an empty event": ({}, "error"),
        "an S3 event": (sample("s3-object-created.json"), "error"),
        "an endpoint event": (sample("sagemaker-endpoint-in-service.json"), "error"),
        "no detail": ({k: v for k, v in good.items() if k != "detail"}, "error"),
        "a null detail": ({**good, "detail": None}, "error"),
        "a list for detail": ({**good, "detail": [good["detail"]]}, "error"),
        "a job name that is a number": (with_detail(TransformJobName=7), "error"),
        "no status": (without("TransformJobStatus"), "error"),
        "a status that is a list": (with_detail(TransformJobStatus=["Completed"]), "error"),
        "a spoofed source": ({**good, "source": "custom.sagemaker"}, "error"),
        "a foreign job": (sample("sagemaker-transform-job-foreign.json"), ""),
        "a job of our prefix nobody started": (with_detail(TransformJobName="sagepilot-churn-0000000000000000"), ""),
        "a retry nobody started": (with_detail(TransformJobName=f"{job}-r7"), ""),
        "still in progress": (with_detail(TransformJobStatus="InProgress"), ""),
        "an unknown status": (with_detail(TransformJobStatus="Exploded"), ""),
        "a name over 63 characters": (with_detail(TransformJobName="sagepilot-" + "x" * 300), ""),
    }


def test_the_completion_drops_malformed_and_foreign_events_without_touching_aws(
    busy_stack, clients, data, handlers, log_records: LogRecords, subtests
):
    (job,) = [j["TransformJobName"] for j in transform_jobs(clients("sagemaker"))]
    app, context = handlers(COMPLETION)
    log = record_calls(product_clients.client)
    cases = completion_events(job)
    for name, (event, level) in cases.items():
        with subtests.test(name):
            before = account(busy_stack, clients, data.name)
            log.clear()
            log_records.clear()
            answer = app.handler(event, context)
            assert answer["action"] == "ignored" and answer["detail"], answer
            assert_no_mutation(log, before, account(busy_stack, clients, data.name), name)
            errors = log_records.messages(logging.ERROR)
            assert (errors == ["dropping a malformed event"]) if level == "error" else (errors == []), errors
    assert len(cases) >= 12


# ---------------------------------------------------------------------------------------- the rollout
def rollout_events() -> dict[str, tuple[Any, str]]:
    """name -> (event, "error" for a malformed one, "info" for one about nothing the function manages (the
    stack's control alarms share the endpoint alarms' name prefix), "" for a deliberate no-op)."""
    approved = sample("sagemaker-model-package-approved.json")
    alarm = sample("cloudwatch-alarm-rollout.json")
    command = sample("operator-rollout-command.json")

    def changed(event: dict[str, Any], **detail: Any) -> dict[str, Any]:
        out = copy.deepcopy(event)
        out["detail"].update(detail)
        return out

    def without(event: dict[str, Any], field: str) -> dict[str, Any]:
        return {**event, "detail": {k: v for k, v in event["detail"].items() if k != field}}

    no_dimension = copy.deepcopy(alarm)
    no_dimension["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {"QueueName": "q"}
    return {
        "an empty event": ({}, "error"),
        "an S3 event": (sample("s3-object-created.json"), "error"),
        "a transform job event": (sample("sagemaker-transform-job-completed.json"), "error"),
        "an unknown detail-type": ({**approved, "detail-type": "SageMaker Model State Change"}, "error"),
        "a spoofed source": ({**approved, "source": "custom.registry"}, "error"),
        "an approval without a group": (changed(approved, ModelPackageGroupName=""), "error"),
        "a group that is a number": (changed(approved, ModelPackageGroupName=12), "error"),
        "an approval without a status": (without(approved, "ModelApprovalStatus"), "error"),
        "a list for detail": ({**approved, "detail": [1, 2]}, "error"),
        "an alarm without an endpoint dimension": (no_dimension, "info"),
        "an alarm without a state": (without(alarm, "state"), "error"),
        "a command without an endpoint": ({**command, "detail": {"command": "promote"}}, "error"),
        "an approval of a group that does not exist": (changed(approved, ModelPackageGroupName="ghost"), ""),
        "an unapproved status of a group that does not exist": (
            changed(approved, ModelPackageGroupName="ghost", ModelApprovalStatus="PendingManualApproval"), "",
        ),
        "a duplicated approval of the live version": (changed(approved, ModelPackageVersion=1), ""),
        "an alarm in INSUFFICIENT_DATA": (changed(alarm, alarmName="sagepilot-churn-v1-5xx"), ""),
    }  # fmt: skip


def test_the_rollout_drops_malformed_events_without_touching_aws(
    busy_stack, clients, data, handlers, log_records: LogRecords, subtests
):
    app, context = handlers(ROLLOUT)
    log = record_calls(product_clients.client)
    cases = rollout_events()
    for name, (event, level) in cases.items():
        with subtests.test(name):
            before = account(busy_stack, clients, data.name)
            log.clear()
            log_records.clear()
            answer = app.handler(event, context)
            if level in ("error", "info"):
                assert answer["result"] == "ignored" and answer["detail"], answer
                expected = ["dropping a malformed event"] if level == "error" else []
                assert log_records.messages(logging.ERROR) == expected
                if level == "info":
                    assert "ignoring an event about nothing this function manages" in log_records.messages(logging.INFO)
                assert_no_mutation(log, before, account(busy_stack, clients, data.name), name)
            else:
                assert all(o["result"] in ("ignored", "waiting") for o in answer["outcomes"]), answer
                assert log_records.messages(logging.ERROR) == []
                # A deliberate no-op on a managed endpoint takes and lets go of its lease, nothing else.
                writes = [(s, op) for s, op in log.mutations() if (s, op) != ("dynamodb", "UpdateItem")]
                assert writes == [], f"{name}: {writes}"
                after = account(busy_stack, clients, data.name)
                assert {k: v for k, v in after.items() if k != "state"} == {
                    k: v for k, v in before.items() if k != "state"
                }, name
    assert len(cases) >= 12


@pytest.mark.parametrize("event", ["sagemaker-endpoint-foreign.json", "cloudwatch-alarm-foreign.json"])
def test_events_about_endpoints_the_stack_does_not_manage_leave_the_state_table_alone(
    busy_stack, clients, data, handlers, event
):
    """Whether an endpoint is managed is decided by reading the state table (Rollouts.reconcile) before any
    lease is taken: a trigger naming no group only ever takes the lease of an item that exists."""
    app, context = handlers(ROLLOUT)
    log = record_calls(product_clients.client)
    before = account(busy_stack, clients, data.name)
    raw = sample(event)
    if "alarm" in event:  # routed by the template only when named with the prefix
        raw["detail"]["alarmName"] = "sagepilot-someone-else-v1-5xx"
        raw["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {
            "EndpointName": "sagepilot-someone-else", "VariantName": "v1"}  # fmt: skip
    else:
        raw["detail"]["EndpointName"] = "sagepilot-someone-else"
    answer = app.handler(raw, context)
    assert [o["result"] for o in answer["outcomes"]] == ["ignored"]
    assert_no_mutation(log, before, account(busy_stack, clients, data.name), event)


# ---------------------------------------------------------------------------------------- fuzzing the parsers
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
SAMPLES = sorted(p.name for p in EVENTS.glob("*.json") if p.name != "sqs-intake-batch.json")
PARSERS: dict[str, Callable[[Any], Any]] = {
    "object created": parse_object_created,
    "transform job change": parse_transform_job_change,
    "rollout trigger": parse_rollout_trigger,
}
VIEWS = (ObjectCreated, TransformJobChange, PackageChanged, EndpointSignal, AlarmSignal, Scheduled)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def graft(event: Any, path: list[int], junk: Any) -> Any:
    """`event` with the node that `path` leads to (indices into each level's keys) replaced by `junk`."""
    if not path or not isinstance(event, dict | list) or not event:
        return junk
    out = copy.deepcopy(event)
    keys = list(out) if isinstance(out, dict) else list(range(len(out)))
    key = keys[path[0] % len(keys)]
    out[key] = graft(out[key], path[1:], junk)
    return out


def only_malformed(parse: Callable[[Any], Any], event: Any) -> None:
    try:
        view = parse(event)
    except MalformedEvent:
        return
    assert isinstance(view, VIEWS), view


@FUZZ
@given(
    parser=st.sampled_from(sorted(PARSERS)),
    sample_name=st.sampled_from(SAMPLES),
    path=st.lists(st.integers(0, 50), max_size=6),
    junk=JUNK,
)
def test_junk_grafted_anywhere_into_a_real_event_gives_a_view_or_malformed_event(parser, sample_name, path, junk):
    event = graft(sample(sample_name), path, junk)
    assume(isinstance(event, dict))  # EventBridge hands a function an object (see the known gap below)
    only_malformed(PARSERS[parser], event)


@FUZZ
@given(
    parser=st.sampled_from(sorted(PARSERS)),
    source=st.sampled_from(["aws.s3", "aws.sagemaker", "aws.cloudwatch", "aws.events", "sagepilot.operator", "x"]),
    kind=st.sampled_from(
        [
            "Object Created",
            "SageMaker Transform Job State Change",
            "SageMaker Model Package State Change",
            "SageMaker Endpoint State Change",
            "CloudWatch Alarm State Change",
            "Scheduled Event",
            "Rollout Command",
        ]
    ),
    rest=st.dictionaries(st.sampled_from(["detail", "resources", "id", "time", "region"]), JUNK, max_size=5),
)
def test_whole_events_of_junk_give_a_view_or_malformed_event(parser, source, kind, rest):
    only_malformed(PARSERS[parser], {"source": source, "detail-type": kind, **rest})


@FUZZ
@given(parser=st.sampled_from(sorted(PARSERS)), event=st.dictionaries(st.text(max_size=12), JUNK, max_size=8))
def test_any_object_at_all_gives_a_view_or_malformed_event(parser, event):
    only_malformed(PARSERS[parser], event)


@pytest.mark.parametrize("parser", ["object created", "transform job change", "rollout trigger"])
def test_an_event_that_is_not_an_object_is_malformed(parser):
    for event in ([], None, "Object Created", 42, 4.2, True, [{"source": "aws.s3"}]):
        with pytest.raises(MalformedEvent, match="expected an EventBridge event object"):
            PARSERS[parser](event)


@pytest.mark.parametrize("event", [[], None, "Object Created", 42])
def test_the_completion_handler_drops_an_event_that_is_not_an_object(busy_stack, handlers, event, log_records):
    """Its except clause must not call .get() on what is not an object."""
    app, context = handlers(COMPLETION)
    log_records.clear()
    answer = app.handler(event, context)
    assert answer["action"] == "ignored" and "expected an EventBridge event object" in answer["detail"]
    assert log_records.messages(logging.ERROR) == ["dropping a malformed event"]


@FUZZ
@given(
    bodies=st.lists(
        st.one_of(
            st.text(max_size=40),
            JUNK.map(json.dumps),
            st.builds(
                lambda p, j: json.dumps(graft(sample("s3-object-created.json"), p, j)),
                st.lists(st.integers(0, 20), max_size=4),
                JUNK,
            ),
        ),
        max_size=6,
    ),
    counts=st.lists(st.integers(1, 1000), min_size=6, max_size=6),
)
def test_sqs_batches_of_junk_bodies_give_messages_or_their_errors(bodies, counts):
    batch = sample("sqs-intake-batch.json")
    record = batch["Records"][0]
    records = []
    for body, count in zip(bodies, counts, strict=False):
        copy_ = with_body(record, body)
        copy_["attributes"]["ApproximateReceiveCount"] = str(count)
        records.append(copy_)
    found = queued_messages({"Records": records})
    assert len(found) == len(records)
    for item, source in zip(found, records, strict=True):
        if isinstance(item, QueuedMessage):
            assert isinstance(item.body, dict) and item.message_id == source["messageId"]
            only_malformed(parse_object_created, item.body)
        else:
            message_id, error = item
            assert message_id == source["messageId"] and isinstance(error, MalformedEvent)


# ---------------------------------------------------------------------------------------- the training settle queue
def test_the_training_function_drops_bad_settle_messages_without_touching_aws(
    busy_stack, clients, data, handlers, log_records: LogRecords, subtests
):
    """Its own delayed messages, but a queue is a door: whatever a body says, nothing is trained, written or
    sent, and no message comes back (retrying cannot fix it)."""
    assert clients("sagemaker").describe_model_package_group(ModelPackageGroupName="churn")  # busy_stack's group
    data.drop("training/churn/set/a.csv", b"1,2\n")
    data.drop("training/churn/set/_SUCCESS", b"")  # a.csv waits for its marker's job
    data.drop("training/churn/v/validation.csv", b"1,2\n")
    app, context = handlers("TrainingFunction")
    url = busy_stack.functions["TrainingFunction"].environment["TRAINING_SETTLE_QUEUE_URL"]
    arn = f"arn:aws:sqs:{REGION}:123456789012:{url.rsplit('/', 1)[1]}"
    sqs = clients("sqs")
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    [message] = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]
    real = sqs_record(message, arn)  # a real record of the settle queue, whose body each case replaces

    def body(key: Any, version: Any = None, bucket: Any = data.name) -> str:
        return json.dumps({"bucket": bucket, "key": key, "versionId": version})

    cases = {
        "not JSON": "{not json",
        "a JSON array": "[1, 2]",
        "JSON null": "null",
        "an empty object": "{}",
        "no key": json.dumps({"bucket": data.name}),
        "a key that is a number": body(42),
        "a version that is a number": body("training/churn/set/a.csv", 7),
        "another bucket": body("training/churn/set/a.csv", bucket="someone-elses-bucket"),
        "a key outside training/": body("incoming/churn/a.csv"),
        "a key with no group": body("training/a.csv"),
        "a file that never existed": body("training/churn/ghost.csv"),
        "a version that does not exist": body("training/churn/set/a.csv", "nosuchversion"),
        "a file whose folder has its marker": body("training/churn/set/a.csv"),
        "a validation set": body("training/churn/v/validation.csv"),
        "a marker": body("training/churn/set/_SUCCESS"),
        "a text file": body("training/churn/notes.txt"),
    }

    def training_jobs() -> list[str]:
        return sorted(j["TrainingJobName"] for j in clients("sagemaker").list_training_jobs()["TrainingJobSummaries"])

    log = record_calls(product_clients.client)
    for name, text in cases.items():
        with subtests.test(name):
            before = (account(busy_stack, clients, data.name), training_jobs())
            log.clear()
            response = app.handler({"Records": [with_body(real, text)]}, context)
            assert response == {"batchItemFailures": []}
            assert log.mutations() == [], f"{name}: mutating calls {log.mutations()}"
            assert (account(busy_stack, clients, data.name), training_jobs()) == before, name
    with subtests.test("all of them in one batch"):
        log.clear()
        response = app.handler({"Records": [with_body(real, text) for text in cases.values()]}, context)
        assert response == {"batchItemFailures": []} and log.mutations() == []
    assert len(cases) >= 12
