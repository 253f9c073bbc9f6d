"""The handlers' shared plumbing: a malformed event is dropped with its reason; an SQS batch is answered with
Lambda's partial-batch response."""

from __future__ import annotations

from typing import Any

import pytest

from sagepilot.errors import MalformedEvent
from sagepilot.handling import Dropped, batch_answer, parse_or_drop


def test_a_readable_event_comes_back_as_parsed() -> None:
    assert parse_or_drop(lambda event: event["id"], {"id": "e-1"}) == "e-1"


def test_a_malformed_event_is_dropped_with_what_was_wrong() -> None:
    def parse(event: dict[str, Any]) -> str:
        raise MalformedEvent("detail has no 'EndpointName'")

    dropped = parse_or_drop(parse, {"id": "e-2"})
    assert dropped == Dropped("detail has no 'EndpointName'")
    assert dropped.answer() == {"action": "ignored", "detail": "detail has no 'EndpointName'"}
    assert dropped.answer("result") == {"result": "ignored", "detail": "detail has no 'EndpointName'"}


def test_other_errors_are_not_dropped() -> None:
    def parse(event: dict[str, Any]) -> str:
        raise KeyError("a bug, not a malformed event")

    with pytest.raises(KeyError):
        parse_or_drop(parse, {})


def test_the_partial_batch_response_names_exactly_the_messages_to_retry() -> None:
    assert batch_answer([]) == {"batchItemFailures": []}
    assert batch_answer(["m-1", "m-2"]) == {"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]}
