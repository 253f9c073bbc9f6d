"""The sample events in events/ parse into the control plane's typed views; malformed ones are refused."""

from __future__ import annotations

import copy
import hashlib
import json
from urllib.parse import quote_plus, unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sagepilot.errors import MalformedEvent
from sagepilot.events import (
    AlarmSignal,
    EndpointSignal,
    ObjectCreated,
    PackageChanged,
    QueuedMessage,
    Scheduled,
    TrainingJobChange,
    TransformJobChange,
    parse_completion_trigger,
    parse_object_created,
    parse_rollout_trigger,
    parse_training_trigger,
    parse_transform_job_change,
    queued_messages,
)

from .conftest import read_event

ODD_KEY = "incoming/churn/2026 11/a+b%c:ü.csv"


# ---------------------------------------------------------------- S3 Object Created


def test_object_created_sample():
    parsed = parse_object_created(read_event("s3-object-created.json"))
    assert parsed == ObjectCreated(
        bucket="sagepilot-sandbox-databucket",
        key="incoming/churn/2026-11/customers.csv",
        version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mppz",
        size=48213,
        etag="b1946ac92492d2347c6235b4d2611184",
        sequencer="00617F08299329D189",
        event_id="17793124-05d4-b198-2fde-7ededc63b103",
    )


def test_odd_key_is_kept_exactly_as_sent():
    assert parse_object_created(read_event("s3-object-created-odd-key.json")).key == ODD_KEY


def test_encoded_key_is_kept_encoded_and_decodes_to_the_odd_key():
    key = parse_object_created(read_event("s3-object-created-encoded-key.json")).key
    assert key == quote_plus(ODD_KEY, safe="/") == "incoming/churn/2026+11/a%2Bb%25c%3A%C3%BC.csv"
    assert unquote_plus(key) == ODD_KEY


def test_other_prefix_sample_is_still_a_well_formed_event():
    parsed = parse_object_created(read_event("s3-object-created-other-prefix.json"))
    assert parsed.key.startswith("predictions/")


def test_unversioned_bucket_event_has_no_version_id():
    raw = read_event("s3-object-created.json")
    del raw["detail"]["object"]["version-id"]
    assert parse_object_created(raw).version_id is None


def test_optional_object_fields_of_the_wrong_type_are_dropped_not_trusted():
    raw = read_event("s3-object-created.json")
    raw["detail"]["object"].update({"size": "48213", "etag": 7, "version-id": ""})
    parsed = parse_object_created(raw)
    assert (parsed.size, parsed.etag, parsed.version_id) == (None, None, None)


def test_a_boolean_size_is_not_a_size():
    raw = read_event("s3-object-created.json")
    raw["detail"]["object"]["size"] = True
    assert parse_object_created(raw).size is None


def test_unknown_extra_fields_are_accepted():
    raw = read_event("s3-object-created.json")
    raw["new-top-level-field"] = {"x": 1}
    raw["detail"]["new-detail-field"] = [1, 2]
    raw["detail"]["object"]["checksum-algorithm"] = "CRC64NVME"
    raw["detail"]["bucket"]["owner"] = "123456789012"
    assert parse_object_created(raw).key == "incoming/churn/2026-11/customers.csv"


def _without(raw, *path):
    *parents, last = path
    node = raw
    for part in parents:
        node = node[part]
    del node[last]
    return raw


def _with(raw, value, *path):
    *parents, last = path
    node = raw
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: _with(r, "aws.sagemaker", "source"), "aws.s3"),
        (lambda r: _with(r, "custom.s3", "source"), "aws.s3"),
        (lambda r: _without(r, "source"), "aws.s3"),
        (lambda r: _with(r, "Object Deleted", "detail-type"), "Object Created"),
        (lambda r: _with(r, "object created", "detail-type"), "Object Created"),
        (lambda r: _without(r, "detail"), "detail"),
        (lambda r: _with(r, "not a dict", "detail"), "detail"),
        (lambda r: _without(r, "detail", "bucket"), "bucket"),
        (lambda r: _without(r, "detail", "bucket", "name"), "name"),
        (lambda r: _with(r, 42, "detail", "bucket", "name"), "name"),
        (lambda r: _without(r, "detail", "object"), "object"),
        (lambda r: _with(r, ["incoming/churn/a.csv"], "detail", "object"), "object"),
        (lambda r: _without(r, "detail", "object", "key"), "key"),
        (lambda r: _with(r, 123, "detail", "object", "key"), "key"),
        (lambda r: _with(r, None, "detail", "object", "key"), "key"),
        (lambda r: _with(r, "", "detail", "object", "key"), "key"),
        (lambda r: _with(r, "", "detail", "bucket", "name"), "name"),
    ],
)
def test_malformed_object_created_events_are_refused(mutate, message):
    raw = mutate(read_event("s3-object-created.json"))
    with pytest.raises(MalformedEvent, match=message):
        parse_object_created(raw)


# ---------------------------------------------------------------- SQS batch


def test_sqs_sample_is_what_lambda_receives():
    raw = read_event("sqs-intake-batch.json")
    assert len(raw["Records"]) == 2
    for record in raw["Records"]:
        assert record["eventSource"] == "aws:sqs"
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
        assert isinstance(record["body"], str)


def test_queued_messages_unpack_s3_events():
    messages = queued_messages(read_event("sqs-intake-batch.json"))
    assert all(isinstance(m, QueuedMessage) for m in messages)
    assert [m.message_id for m in messages] == [
        "059f36b4-87a3-44ab-83d2-661975830a7d",
        "2e1424d4-f796-459a-8184-9c92662be6da",
    ]
    assert [m.receive_count for m in messages] == [1, 1]
    first, second = (parse_object_created(m.body) for m in messages)
    assert first == parse_object_created(read_event("s3-object-created.json"))
    assert second.key == "incoming/churn/2026-11/prospects.csv.gz"
    assert second.version_id == "pQ7rS9tU1vW3xY5zA2bC4dE6fG8hJ0kL"


def test_receive_count_is_read_from_the_attributes():
    raw = read_event("sqs-intake-batch.json")
    raw["Records"][1]["attributes"]["ApproximateReceiveCount"] = "4"
    assert [m.receive_count for m in queued_messages(raw)] == [1, 4]


def test_when_sqs_received_a_message_is_read_from_its_sent_timestamp():
    raw = read_event("sqs-intake-batch.json")
    sent = [int(r["attributes"]["SentTimestamp"]) / 1000 for r in raw["Records"]]
    assert [m.sent_at for m in queued_messages(raw)] == sent
    raw["Records"][0]["attributes"].pop("SentTimestamp")
    raw["Records"][1]["attributes"]["SentTimestamp"] = "soon"
    assert [m.sent_at for m in queued_messages(raw)] == [None, None]


@pytest.mark.parametrize(
    ("body", "message"),
    [("not json", "not JSON"), ("[1, 2]", "not a JSON object"), ('"a string"', "not a JSON object")],
)
def test_a_bad_body_is_returned_as_its_error_and_the_rest_still_parse(body, message):
    raw = read_event("sqs-intake-batch.json")
    raw["Records"][0]["body"] = body
    bad, good = queued_messages(raw)
    assert isinstance(bad, tuple)
    message_id, error = bad
    assert message_id == "059f36b4-87a3-44ab-83d2-661975830a7d"
    assert isinstance(error, MalformedEvent)
    assert message in str(error)
    assert isinstance(good, QueuedMessage)


def test_an_empty_batch_has_no_messages():
    assert queued_messages({"Records": []}) == []


# ---------------------------------------------------------------- SageMaker Transform Job State Change


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (
            "sagemaker-transform-job-completed.json",
            TransformJobChange("sagepilot-churn-0123456789abcdef", "Completed", ""),
        ),
        (
            "sagemaker-transform-job-failed.json",
            TransformJobChange(
                "sagepilot-churn-0123456789abcdef", "Failed", "ClientError: See job logs for more information"
            ),
        ),
        (
            "sagemaker-transform-job-inprogress.json",
            TransformJobChange("sagepilot-churn-0123456789abcdef", "InProgress", ""),
        ),
        ("sagemaker-transform-job-foreign.json", TransformJobChange("nightly-scoring-2026-11-03", "Completed", "")),
    ],
)
def test_transform_job_samples(sample, expected):
    assert parse_transform_job_change(read_event(sample)) == expected


def test_job_samples_are_consistent():
    for sample in ("completed", "failed", "inprogress", "foreign"):
        raw = read_event(f"sagemaker-transform-job-{sample}.json")
        detail = raw["detail"]
        assert raw["resources"] == [detail["TransformJobArn"]]
        assert detail["TransformJobArn"].endswith(f":transform-job/{detail['TransformJobName']}")
        assert isinstance(detail["CreationTime"], int)
        assert isinstance(detail["Tags"], dict)


def test_the_completion_function_takes_job_changes_and_its_capacity_sweep_schedule():
    job = read_event("sagemaker-transform-job-completed.json")
    assert parse_completion_trigger(job) == parse_transform_job_change(job)
    rule = "arn:aws:events:us-east-1:123456789012:rule/sagepilot-BatchCompletionFunctionCapacitySweep"
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "resources": [rule], "detail": {}}
    assert parse_completion_trigger(scheduled) == Scheduled(rule)
    with pytest.raises(MalformedEvent, match="SageMaker Transform Job State Change"):
        parse_completion_trigger({**scheduled, "source": "aws.s3"})
    with pytest.raises(MalformedEvent):
        parse_completion_trigger([scheduled])  # type: ignore[arg-type]


def test_a_non_string_failure_reason_is_ignored():
    raw = read_event("sagemaker-transform-job-failed.json")
    raw["detail"]["FailureReason"] = {"unexpected": True}
    assert parse_transform_job_change(raw).failure_reason == ""


def test_unknown_extra_job_fields_are_accepted():
    raw = read_event("sagemaker-transform-job-completed.json")
    raw["detail"]["DataCaptureConfig"] = {"DestinationS3Uri": "s3://x/y"}
    raw["detail"]["ExperimentConfig"] = {}
    raw["replay-name"] = "replay-1"
    assert parse_transform_job_change(raw).status == "Completed"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: _with(r, "aws.s3", "source"), "aws.sagemaker"),
        (lambda r: _with(r, "SageMaker Endpoint State Change", "detail-type"), "Transform Job State Change"),
        (lambda r: _without(r, "detail-type"), "Transform Job State Change"),
        (lambda r: _without(r, "detail", "TransformJobName"), "TransformJobName"),
        (lambda r: _with(r, 7, "detail", "TransformJobName"), "TransformJobName"),
        (lambda r: _without(r, "detail", "TransformJobStatus"), "TransformJobStatus"),
        (lambda r: _with(r, ["Completed"], "detail", "TransformJobStatus"), "TransformJobStatus"),
        (lambda r: _with(r, None, "detail"), "TransformJobName"),
        (lambda r: _without(r, "detail"), "TransformJobName"),
    ],
)
def test_malformed_transform_job_events_are_refused(mutate, message):
    raw = mutate(read_event("sagemaker-transform-job-completed.json"))
    with pytest.raises(MalformedEvent, match=message):
        parse_transform_job_change(raw)


def test_parsing_does_not_modify_the_event():
    raw = read_event("s3-object-created.json")
    before = copy.deepcopy(raw)
    parse_object_created(raw)
    assert raw == before
    assert json.dumps(raw)


# ---------------------------------------------------------------- rollout triggers


def test_rollout_trigger_from_an_approval():
    trigger = parse_rollout_trigger(read_event("sagemaker-model-package-approved.json"))
    assert trigger == PackageChanged(group="churn", version=2, approval="Approved")


def test_rollout_trigger_from_an_endpoint_change_accepts_the_documented_spelling():
    trigger = parse_rollout_trigger(read_event("sagemaker-endpoint-in-service.json"))
    assert trigger == EndpointSignal("sagepilot-churn", "endpoint IN_SERVICE")


def test_rollout_trigger_from_an_alarm_names_the_endpoint_of_its_metric():
    trigger = parse_rollout_trigger(read_event("cloudwatch-alarm-rollout.json"))
    assert trigger == AlarmSignal("sagepilot-churn", "sagepilot-churn-v2-5xx", "ALARM")


def test_rollout_trigger_from_the_schedule_and_the_operator():
    assert isinstance(parse_rollout_trigger(read_event("scheduled-reconcile.json")), Scheduled)
    assert parse_rollout_trigger(read_event("operator-rollout-command.json")) == EndpointSignal(
        "sagepilot-churn", "operator pause"
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("detail"),
        lambda e: e["detail"].pop("ModelPackageGroupName"),
        lambda e: e["detail"].update(ModelPackageGroupName=7),
        lambda e: e["detail"].update(ModelPackageGroupName=""),
        lambda e: e["detail"].pop("ModelApprovalStatus"),
        lambda e: e.update({"detail-type": "SageMaker Model State Change"}),
        lambda e: e.update(source="aws.s3"),
        lambda e: e.update(detail=[]),
    ],
)
def test_malformed_approvals_are_refused_with_a_reason(mutate):
    event = read_event("sagemaker-model-package-approved.json")
    mutate(event)
    with pytest.raises(MalformedEvent):
        parse_rollout_trigger(event)


def test_an_alarm_without_an_endpoint_dimension_is_not_an_endpoint_alarm():
    event = read_event("cloudwatch-alarm-rollout.json")
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"] = {"QueueName": "q"}
    with pytest.raises(MalformedEvent, match="EndpointName"):
        parse_rollout_trigger(event)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
        max_leaves=20,
    ),
    st.sampled_from(
        [
            "sagemaker-model-package-approved.json",
            "sagemaker-endpoint-in-service.json",
            "cloudwatch-alarm-rollout.json",
            "operator-rollout-command.json",
        ]
    ),
)
def test_rollout_parser_fuzzed_details_give_a_trigger_or_malformed_event(junk, sample):
    event = read_event(sample)
    event["detail"] = junk
    try:
        trigger = parse_rollout_trigger(event)
    except MalformedEvent:
        return
    assert isinstance(trigger, PackageChanged | EndpointSignal | AlarmSignal | Scheduled)


@pytest.mark.parametrize("metrics", [[5], [None], [{"metricStat": 3}], [{"metricStat": {"metric": []}}], []])
def test_alarm_metrics_of_odd_shapes_are_malformed_not_a_crash(metrics):
    event = read_event("cloudwatch-alarm-rollout.json")
    event["detail"]["configuration"]["metrics"] = metrics
    with pytest.raises(MalformedEvent):
        parse_rollout_trigger(event)


def test_training_triggers_from_the_samples():
    upload = parse_training_trigger(read_event("s3-object-created-training.json"))
    assert isinstance(upload, ObjectCreated) and upload.key == "training/churn/2026-11/train.csv"
    done = parse_training_trigger(read_event("sagemaker-training-job-failed.json"))
    assert isinstance(done, TrainingJobChange) and done.status == "Failed" and "AlgorithmError" in done.failure_reason
    with pytest.raises(MalformedEvent):
        parse_training_trigger(read_event("sagemaker-endpoint-in-service.json"))


def test_the_training_settle_batch_is_told_from_eventbridge_events_and_parsed():
    from sagepilot.events import TrainingSettled, is_sqs_batch, parse_settled

    raw = read_event("sqs-training-settled.json")
    assert is_sqs_batch(raw)
    assert not is_sqs_batch(read_event("s3-object-created-training.json"))
    assert not is_sqs_batch(read_event("sagemaker-training-job-completed.json"))
    [message] = queued_messages(raw)
    assert not isinstance(message, tuple)
    assert parse_settled(message) == TrainingSettled(
        "sagepilot-sandbox-databucket", "training/churn/2026-11/train.csv", "Xq7.2Ldc9TbQm1Rk4nPwYz0aB3sE5fG8"
    )
    for body in (
        {"key": "k", "versionId": None},
        {"bucket": "b", "key": 3},
        {"bucket": "b", "key": "k", "versionId": 7},
    ):
        with pytest.raises(MalformedEvent):
            parse_settled(type(message)(message.message_id, 1, body))
    assert parse_settled(type(message)("m", 1, {"bucket": "b", "key": "k", "versionId": None})).version_id is None


def test_a_control_alarm_through_the_endpoint_alarm_rule_is_unrelated_not_malformed() -> None:
    """The stack's own control alarms (`<prefix>-control-...`) share the endpoint alarms' name prefix, so the
    rollout's alarm rule lets their state changes through: they are about no endpoint, and are dropped as such
    (logged as information; before, every one was logged as an ERROR, 'dropping a malformed event')."""
    import logging

    from sagepilot.errors import UnrelatedEvent
    from sagepilot.handling import Dropped, parse_or_drop

    event = read_event("cloudwatch-alarm-rollout.json")
    event["detail"]["alarmName"] = "sagepilot-control-rollout-stuck"
    event["detail"]["configuration"]["metrics"] = [
        {
            "id": "m1",
            "metricStat": {
                "metric": {"namespace": "Sagepilot", "name": "RolloutOverdueSeconds", "dimensions": {"Stack": "sp"}},
                "period": 300,
                "stat": "Maximum",
            },
            "returnData": True,
        }
    ]
    with pytest.raises(UnrelatedEvent):
        parse_rollout_trigger(event)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    product = logging.getLogger("sagepilot")
    keep = Keep(level=logging.DEBUG)
    product.addHandler(keep)
    try:
        assert isinstance(parse_or_drop(parse_rollout_trigger, event), Dropped)
    finally:
        product.removeHandler(keep)
    assert seen and all(r.levelno < logging.WARNING for r in seen)
