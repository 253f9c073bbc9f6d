"""Typed views of the events the control plane accepts, built on powertools' event data classes.

Anything else raises MalformedEvent with a message that says what was expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, SQSEvent

from sagepilot.errors import MalformedEvent, UnrelatedEvent

OBJECT_CREATED = "Object Created"
TRANSFORM_JOB_STATE_CHANGE = "SageMaker Transform Job State Change"
TERMINAL_TRANSFORM_STATUSES = frozenset({"Completed", "Failed", "Stopped"})


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str  # as the event carries it: maybe URL-encoded, see adapters.s3.head_dropped_object
    version_id: str | None
    size: int | None
    etag: str | None
    sequencer: str
    event_id: str


@dataclass(frozen=True)
class QueuedMessage:
    message_id: str
    receive_count: int
    body: dict[str, Any]
    sent_at: float | None = None  # when SQS received it (SentTimestamp, epoch seconds); None if not given
    receipt_handle: str = ""  # this delivery's, to delete it (what Lambda does once the batch succeeds)


@dataclass(frozen=True)
class TransformJobChange:
    job_name: str
    status: str
    failure_reason: str


def _field(mapping: Any, name: str, kind: type, where: str) -> Any:
    if not isinstance(mapping, dict) or name not in mapping:
        raise MalformedEvent(f"{where} has no {name!r}")
    value = mapping[name]
    if not isinstance(value, kind):
        raise MalformedEvent(f"{where}.{name} should be {kind.__name__}, got {type(value).__name__}")
    return value


def queued_messages(event: dict[str, Any]) -> list[QueuedMessage | tuple[str, MalformedEvent]]:
    """Unpack an SQS batch; a body that is not JSON is returned as its error, not raised."""
    out: list[QueuedMessage | tuple[str, MalformedEvent]] = []
    for record in SQSEvent(event).records:
        try:
            body = json.loads(record.body)
        except (TypeError, ValueError) as exc:
            out.append((record.message_id, MalformedEvent(f"message body is not JSON: {exc}")))
            continue
        count = int(record.attributes.approximate_receive_count or 1)
        if not isinstance(body, dict):
            out.append((record.message_id, MalformedEvent("message body is not a JSON object")))
            continue
        sent_at = _sent_at(record.attributes.get("SentTimestamp"))
        out.append(QueuedMessage(record.message_id, count, body, sent_at, record.receipt_handle or ""))
    return out


def _sent_at(sent_timestamp: str | None) -> float | None:
    """SQS's SentTimestamp (epoch milliseconds, as a string) in seconds; None if absent or not a number."""
    try:
        return int(sent_timestamp) / 1000 if sent_timestamp else None
    except ValueError:
        return None


def _event_object(raw: Any) -> dict[str, Any]:
    """The event itself must be a JSON object: a list, string, number or null is MalformedEvent."""
    if not isinstance(raw, dict):
        raise MalformedEvent(f"expected an EventBridge event object, got {type(raw).__name__}")
    return raw


def _utf8(value: str, where: str) -> str:
    """S3 keys and version ids are UTF-8: a string JSON allows but UTF-8 cannot encode (a lone surrogate)
    names no object, and would break every AWS call that sends it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedEvent(f"{where} is not valid Unicode ({exc.reason} at position {exc.start})") from exc
    return value


# The intake queue carries, besides S3's events, the intake's own delayed messages that release a group's held
# job (services/holding.py): {"sagepilot": "release-held-job", "job": <held job name>}.
RELEASE_HELD_JOB = "release-held-job"


def release_held_job(job_name: str) -> dict[str, str]:
    return {"sagepilot": RELEASE_HELD_JOB, "job": job_name}


def parse_held_release(raw: dict[str, Any]) -> str | None:
    """The held job a release message names; None for any other message (an S3 event). MalformedEvent for a
    message that says it is a release but names no job."""
    if raw.get("sagepilot") != RELEASE_HELD_JOB:
        return None
    job = raw.get("job")
    if not isinstance(job, str) or not job:
        raise MalformedEvent("a release-held-job message without its job")
    return job


def parse_object_created(raw: dict[str, Any]) -> ObjectCreated:
    raw = _event_object(raw)
    event = EventBridgeEvent(raw)
    if raw.get("source") != "aws.s3" or raw.get("detail-type") != OBJECT_CREATED:
        raise MalformedEvent(
            f"expected an aws.s3 {OBJECT_CREATED!r} event, got source={raw.get('source')!r} "
            f"detail-type={raw.get('detail-type')!r}"
        )
    detail = raw.get("detail")
    bucket = _field(_field(detail, "bucket", dict, "detail"), "name", str, "detail.bucket")
    obj = _field(detail, "object", dict, "detail")
    key = _utf8(_field(obj, "key", str, "detail.object"), "detail.object.key")
    bucket = _utf8(bucket, "detail.bucket.name")
    if not key or not bucket:
        raise MalformedEvent("detail.bucket.name and detail.object.key must not be empty")
    size = obj.get("size")
    version_id = obj.get("version-id")
    if isinstance(version_id, str):
        _utf8(version_id, "detail.object.version-id")
    etag = obj.get("etag")
    return ObjectCreated(
        bucket=bucket,
        key=key,
        version_id=version_id if isinstance(version_id, str) and version_id else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        etag=etag if isinstance(etag, str) else None,
        sequencer=str(obj.get("sequencer", "")),
        event_id=event.get_id if isinstance(raw.get("id"), str) else "",
    )


def parse_transform_job_change(raw: dict[str, Any]) -> TransformJobChange:
    raw = _event_object(raw)
    if raw.get("source") != "aws.sagemaker" or raw.get("detail-type") != TRANSFORM_JOB_STATE_CHANGE:
        raise MalformedEvent(
            f"expected an aws.sagemaker {TRANSFORM_JOB_STATE_CHANGE!r} event, got "
            f"source={raw.get('source')!r} detail-type={raw.get('detail-type')!r}"
        )
    detail = raw.get("detail")  # not EventBridgeEvent.detail: a missing detail must be MalformedEvent, not KeyError
    name = _field(detail, "TransformJobName", str, "detail")
    status = _field(detail, "TransformJobStatus", str, "detail")
    reason = detail.get("FailureReason", "") if isinstance(detail, dict) else ""
    return TransformJobChange(name, status, reason if isinstance(reason, str) else "")


def parse_completion_trigger(raw: dict[str, Any]) -> TransformJobChange | Scheduled:
    """The completion function's events: a transform job state change, or its capacity sweep's schedule."""
    raw = _event_object(raw)
    if raw.get("source") == "aws.events" and raw.get("detail-type") == SCHEDULED_EVENT:
        resources = raw.get("resources")
        return Scheduled(str(resources[0]) if isinstance(resources, list) and resources else "")
    return parse_transform_job_change(raw)


# Rollout triggers -----------------------------------------------------------------------------------
MODEL_PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
SCHEDULED_EVENT = "Scheduled Event"
OPERATOR_SOURCE = "sagepilot.operator"
ROLLOUT_COMMAND = "Rollout Command"


@dataclass(frozen=True)
class PackageChanged:
    group: str
    version: int | None
    approval: str


@dataclass(frozen=True)
class EndpointSignal:
    """Something happened to a managed endpoint: a state change, an alarm, an operator's command."""

    endpoint: str
    why: str


@dataclass(frozen=True)
class AlarmSignal:
    """One of our alarms changed state; `state` is what the event says (decisions re-read it)."""

    endpoint: str
    alarm: str
    state: str


@dataclass(frozen=True)
class Scheduled:
    rule: str


RolloutTrigger = PackageChanged | EndpointSignal | AlarmSignal | Scheduled


def _alarm_endpoint(detail: Any) -> str:
    """The EndpointName dimension of the alarm's metric (`configuration.metrics[].metricStat.metric`)."""
    configuration = _field(detail, "configuration", dict, "detail")
    metrics = _field(configuration, "metrics", list, "detail.configuration")
    for metric in metrics:
        found: Any = metric
        for key in ("metricStat", "metric", "dimensions"):
            found = found.get(key) if isinstance(found, dict) else None
        if isinstance(found, dict) and isinstance(found.get("EndpointName"), str) and found["EndpointName"]:
            return str(found["EndpointName"])
    raise UnrelatedEvent("the alarm's metrics have no EndpointName dimension: not an endpoint alarm")


def parse_rollout_trigger(raw: dict[str, Any]) -> RolloutTrigger:
    """The rollout function's events, as the template routes them; anything else is MalformedEvent."""
    raw = _event_object(raw)
    source, kind, detail = raw.get("source"), raw.get("detail-type"), raw.get("detail")
    if source == "aws.sagemaker" and kind == MODEL_PACKAGE_STATE_CHANGE:
        group = _field(detail, "ModelPackageGroupName", str, "detail")
        approval = _field(detail, "ModelApprovalStatus", str, "detail")
        version = (detail or {}).get("ModelPackageVersion")
        if not group:
            raise MalformedEvent("detail.ModelPackageGroupName must not be empty")
        return PackageChanged(
            group, version if isinstance(version, int) and not isinstance(version, bool) else None, approval
        )
    if source == "aws.sagemaker" and kind == ENDPOINT_STATE_CHANGE:
        name = _field(detail, "EndpointName", str, "detail")
        status = (detail or {}).get("EndpointStatus", "")
        return EndpointSignal(name, f"endpoint {status}")
    if source == "aws.cloudwatch" and kind == ALARM_STATE_CHANGE:
        alarm = _field(detail, "alarmName", str, "detail")
        state = _field(_field(detail, "state", dict, "detail"), "value", str, "detail.state")
        return AlarmSignal(_alarm_endpoint(detail), alarm, state)
    if source == "aws.events" and kind == SCHEDULED_EVENT:
        resources = raw.get("resources")
        return Scheduled(str(resources[0]) if isinstance(resources, list) and resources else "")
    if source == OPERATOR_SOURCE and kind == ROLLOUT_COMMAND:
        name = _field(detail, "endpoint", str, "detail")
        command = _field(detail, "command", str, "detail")
        return EndpointSignal(name, f"operator {command}")
    raise MalformedEvent(f"the rollout function does not handle source={source!r} detail-type={kind!r}")


TRAINING_JOB_STATE_CHANGE = "SageMaker Training Job State Change"


@dataclass(frozen=True)
class TrainingJobChange:
    job_name: str
    status: str
    failure_reason: str


TrainingTrigger = ObjectCreated | TrainingJobChange


@dataclass(frozen=True)
class TrainingSettled:
    """A training file's settle delay has passed (the training function's own delayed message)."""

    bucket: str
    key: str
    version_id: str | None


def settled_request(bucket: str, key: str, version_id: str | None) -> dict[str, Any]:
    """The body of the delayed message that `parse_settled` reads back."""
    return {"bucket": bucket, "key": key, "versionId": version_id}


def is_sqs_batch(raw: Any) -> bool:
    """Lambda's SQS event (a batch of records from an event source mapping), not an EventBridge event."""
    records = raw.get("Records") if isinstance(raw, dict) else None
    return isinstance(records, list) and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)


def parse_settled(message: QueuedMessage) -> TrainingSettled:
    body = message.body
    version = body.get("versionId")
    if version is not None and not isinstance(version, str):
        raise MalformedEvent(f"message {message.message_id}: versionId should be a string or null")
    return TrainingSettled(
        _field(body, "bucket", str, "message body"), _field(body, "key", str, "message body"), version or None
    )


def parse_training_trigger(raw: dict[str, Any]) -> TrainingTrigger:
    """The training function's events: a training set uploaded, or a training job that finished."""
    raw = _event_object(raw)
    if raw.get("source") == "aws.s3":
        return parse_object_created(raw)
    if raw.get("source") == "aws.sagemaker" and raw.get("detail-type") == TRAINING_JOB_STATE_CHANGE:
        detail = raw.get("detail")
        name = _field(detail, "TrainingJobName", str, "detail")
        status = _field(detail, "TrainingJobStatus", str, "detail")
        reason = detail.get("FailureReason", "") if isinstance(detail, dict) else ""
        return TrainingJobChange(name, status, reason if isinstance(reason, str) else "")
    raise MalformedEvent(
        f"the training function does not handle source={raw.get('source')!r} detail-type={raw.get('detail-type')!r}"
    )


def event_id(event: Any) -> str | None:
    """The event's `id` for the logs, when the event is an object at all (a malformed one may not be)."""
    return event.get("id") if isinstance(event, dict) else None
