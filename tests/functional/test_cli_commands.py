"""`sagepilot pause | resume | promote | rollback` against the stack in moto: what it says when EventBridge
refuses the `Rollout Command` event (PutEvents answers HTTP 200 with `FailedEntryCount`, per entry)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

import sagepilot_cli as cli
from sagepilot.events import OPERATOR_SOURCE
from sagepilot_cli import rollouts
from sagepilot_sandbox.stack.provision import Stack

from .conftest import _ANSWERED, FakeClock, _RawBody
from .test_rollout import ENDPOINT, Rollout, deploy_v1, make_rollout


@pytest.fixture
def rollout(stack: Stack, clients: Callable[[str], Any], clock: FakeClock) -> Rollout:
    return make_rollout(stack, clients, clock)


def put_events_answers(monkeypatch: pytest.MonkeyPatch, *codes: str) -> list[dict[str, Any]]:
    """The command's own EventBridge client gets these entry errors, one call each ("" takes the event:
    moto answers), then moto answers. Returns the PutEvents requests made."""
    requests: list[dict[str, Any]] = []
    answers = list(codes)
    made = boto3.client

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        requests.append(json.loads(request.body))
        code = answers.pop(0) if answers else ""
        if not code:
            return None
        setattr(request, _ANSWERED, True)
        payload = json.dumps(
            {"FailedEntryCount": 1, "Entries": [{"ErrorCode": code, "ErrorMessage": f"{code} (injected)"}]}
        ).encode()
        headers = {"x-amzn-RequestId": str(uuid.uuid4()), "Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, 200, headers, _RawBody(payload))

    def client(service: str, *args: Any, **kwargs: Any) -> Any:
        created = made(service, *args, **kwargs)
        if service == "events":
            created.meta.events.register_first("before-send.eventbridge.PutEvents", answer)
        return created

    monkeypatch.setattr(boto3, "client", client)
    monkeypatch.setattr(rollouts, "RETRY_DELAYS", (0.0, 0.0))
    return requests


def a_canary(rollout: Rollout, capsys: pytest.CaptureFixture[str]) -> None:
    """v1 serves, v2's canary runs at 10%; what was printed on the way is dropped."""
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    capsys.readouterr()


def operator_events(rollout: Rollout) -> list[dict[str, Any]]:
    return [e for e in rollout.delivered if e["source"] == OPERATOR_SOURCE]


def test_a_refused_event_is_said_and_the_recorded_command_waits_for_the_schedule(
    rollout: Rollout, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a_canary(rollout, capsys)
    requests = put_events_answers(monkeypatch, "AccessDeniedException")

    code = cli.main(["--table", rollout.store()._table, "promote", ENDPOINT])

    out, err = capsys.readouterr()
    assert code == 1
    assert "acts on it now" not in out
    assert out.strip() == f"promote recorded for {ENDPOINT}; the rollout function acts on it at its next reconcile"
    assert "EventBridge refused the Rollout Command event (AccessDeniedException:" in err
    assert len(requests) == 1  # a permanent refusal is not tried again
    assert "promote requested by" in rollout.state().history[-1].what  # recorded all the same
    rollout.pump()
    assert operator_events(rollout) == [] and rollout.shares() == {"v1": 0.9, "v2": 0.1}
    rollout.tick(1)  # the schedule's reconcile acts on the recorded command
    assert rollout.shares() == {"v2": 1.0}


def test_a_throttled_event_is_tried_again_and_then_acts_at_once(
    rollout: Rollout, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a_canary(rollout, capsys)
    requests = put_events_answers(monkeypatch, "ThrottlingException", "InternalFailure")

    assert cli.main(["--table", rollout.store()._table, "promote", ENDPOINT]) == 0

    assert capsys.readouterr().out.strip() == f"promote recorded for {ENDPOINT}; the rollout function acts on it now"
    assert len(requests) == 3 and requests[0] == requests[2]  # the same entry, the third time taken
    rollout.pump()
    assert len(operator_events(rollout)) == 1 and rollout.shares() == {"v2": 1.0}


def test_an_event_refused_at_every_try_is_said(
    rollout: Rollout, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a_canary(rollout, capsys)
    requests = put_events_answers(monkeypatch, *["ThrottlingException"] * 3)

    assert cli.main(["--table", rollout.store()._table, "pause", ENDPOINT]) == 1

    out, err = capsys.readouterr()
    assert out.strip() == f"pause recorded for {ENDPOINT}; the rollout function acts on it at its next reconcile"
    assert "(ThrottlingException: ThrottlingException (injected))" in err
    assert len(requests) == 3
    assert rollout.state().paused
