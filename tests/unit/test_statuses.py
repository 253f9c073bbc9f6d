"""Typed statuses are the very strings stored before they were typed: in DynamoDB requests, JSON and text."""

from __future__ import annotations

import json
from typing import get_args

import botocore.session
import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.serialize import create_serializer

from sagepilot.adapters import state
from sagepilot.domain.statuses import CompletionAction, JobStatus, RolloutResult, TrainingStatus
from sagepilot.metrics import _COMPLETION_METRIC
from sagepilot.services import training

# What the state table holds (and tests, reports and dashboards read): unchanged by the typing.
STORED_JOB = ["CLAIMING", "READY", "STARTED", "COMPLETED", "FAILED", "EMPTY", "SPLIT", "REPLANNED", "MERGED", "HELD"]
STORED_TRAINING = ["STARTED", "REGISTERING", "REGISTERED", "FAILED", "NEEDS_MARKER", "NOTICE_PENDING", "NOTICE_SENT"]


def test_the_stored_values_are_unchanged():
    assert [s.value for s in JobStatus] == STORED_JOB
    assert [s.value for s in TrainingStatus] == STORED_TRAINING
    assert [getattr(state, name) for name in STORED_JOB] == list(JobStatus)
    assert [getattr(training, name) for name in STORED_TRAINING] == list(TrainingStatus)


@pytest.mark.parametrize("status", [*JobStatus, *TrainingStatus])
def test_a_status_is_its_string_in_text_and_json(status):
    assert status == status.value and isinstance(status, str)
    assert f"{status}" == str(status) == status.value
    assert type(str(status)) is str
    assert json.dumps({"status": status}) == json.dumps({"status": status.value})
    assert TypeSerializer().serialize(status) == {"S": status.value}


def _update_item_body(value: object) -> bytes:
    model = botocore.session.get_session().get_service_model("dynamodb")
    request = create_serializer("json").serialize_to_request(
        {
            "TableName": "state",
            "Key": {"pk": {"S": "job#j"}},
            "UpdateExpression": "SET #status = :to",
            "ConditionExpression": "#status IN (:e0)",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":to": {"S": value}, ":e0": {"S": value}},
        },
        model.operation_model("UpdateItem"),
    )
    body = request["body"]
    return body if isinstance(body, bytes) else body.encode()


@pytest.mark.parametrize("status", [JobStatus.READY, JobStatus.REPLANNED, TrainingStatus.REGISTERING])
def test_boto3_sends_a_status_as_the_bytes_of_its_string(status):
    assert _update_item_body(status) == _update_item_body(status.value)
    assert f'"S": "{status.value}"'.encode() in _update_item_body(status)


def test_the_rollout_results_are_the_reported_words():
    # Logged, returned by the handlers and asserted by the functional tests as these exact strings.
    assert get_args(RolloutResult) == ("acted", "waiting", "deferred", "ignored", "invalid")


def test_every_completion_metric_counts_an_action_a_completion_reports():
    assert set(_COMPLETION_METRIC) <= set(get_args(CompletionAction))


def test_a_job_is_carried_on_unless_it_is_ready_in_no_waiting_list_or_claiming_past_the_timeout():
    """A READY job in no waiting list (its starter failed before creating it) and one CLAIMING past the claim
    timeout (its claimer is gone) move only when their messages come again: the intake's last delivery must
    not leave a file to them. One CLAIMING for less is still being claimed by a live invocation; a listed one (a
    merge, a released held job) is finished by the periodic sweep."""
    from sagepilot.domain.statuses import carried_on

    assert not carried_on(JobStatus.CLAIMING, listed=False)
    assert carried_on(JobStatus.CLAIMING, listed=True)
    assert carried_on(JobStatus.CLAIMING, listed=False, claimed_recently=True)
    assert not carried_on(JobStatus.READY, listed=False)
    assert not carried_on(JobStatus.READY, listed=False, claimed_recently=True)
    assert carried_on(JobStatus.READY, listed=True)  # waiting for a slot or for capacity: served by others
    for status in set(JobStatus) - {JobStatus.CLAIMING, JobStatus.READY}:
        assert carried_on(status, listed=False), status
