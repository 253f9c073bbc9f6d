"""Job records keep the values they are given: numbers (whole or not), lists, maps, null, in DynamoDB's own types;
and a record the earlier writer stored (strings, whole numbers, booleans) reads as it did."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sagepilot.adapters.state import READY, STARTED, StateTable


@pytest.fixture
def table(stack: Any) -> str:
    return str(stack.outputs["StateTableName"])


@pytest.fixture
def state(table: str, clients: Callable[[str], Any]) -> StateTable:
    return StateTable(clients("dynamodb"), table, clock=lambda: 1_700_000_000.0)


def stored(table: str, clients: Callable[[str], Any], job: str) -> dict[str, Any]:
    """The raw item, as DynamoDB holds it."""
    item: dict[str, Any] = clients("dynamodb").get_item(TableName=table, Key={"pk": {"S": f"job#{job}"}})["Item"]
    return item


def test_a_list_a_map_a_float_and_null_round_trip_in_dynamodbs_own_types(state, table, clients):
    attrs = {
        "score": 0.91,
        "files": ["a.csv", "b.csv"],
        "metrics": {"validation:accuracy": 0.875, "epochs": 3, "tags": ["x"]},
        "missing": None,
        "inputs": 2,
        "notified": False,
        "group": "churn",
    }
    created = state.create_job("job-1", attrs)
    assert {k: created[k] for k in attrs} == attrs

    record = state.get_job("job-1")
    assert record is not None
    assert {k: record[k] for k in attrs} == attrs
    assert isinstance(record["inputs"], int) and isinstance(record["score"], float)
    item = stored(table, clients, "job-1")
    assert item["score"] == {"N": "0.91"}  # a number, not the string "0.91"
    assert item["files"] == {"L": [{"S": "a.csv"}, {"S": "b.csv"}]}
    assert item["metrics"]["M"]["validation:accuracy"] == {"N": "0.875"}
    assert item["missing"] == {"NULL": True}


def test_a_transition_writes_lists_maps_and_floats_too(state, table, clients):
    state.create_job("job-2", {"group": "churn"})
    state.transition("job-2", expected=["CLAIMING"], to=READY)
    assert state.transition(
        "job-2", expected=[READY], to=STARTED, timings={"seconds": 12.5}, children=["job-2-a", "job-2-b"], ratio=0.5
    )
    record = state.get_job("job-2")
    assert record is not None
    assert (record["timings"], record["children"], record["ratio"]) == ({"seconds": 12.5}, ["job-2-a", "job-2-b"], 0.5)
    assert stored(table, clients, "job-2")["ratio"] == {"N": "0.5"}


def test_a_record_the_earlier_writer_stored_reads_as_it_did(state, table, clients):
    """The earlier writer stored str as S, int as N, bool as BOOL, and anything else as its str (a float as
    S "0.91"): the same values come back, of the same types."""
    clients("dynamodb").put_item(
        TableName=table,
        Item={
            "pk": {"S": "job#job-old"},
            "status": {"S": "STARTED"},
            "attempt": {"N": "1"},
            "createdAt": {"N": "1699999000"},
            "notified": {"BOOL": True},
            "score": {"S": "0.91"},
            "dataVersion": {"S": "null"},
        },
    )
    assert state.get_job("job-old") == {
        "jobName": "job-old",
        "status": "STARTED",
        "attempt": 1,
        "createdAt": 1699999000,
        "notified": True,
        "score": "0.91",
        "dataVersion": "null",
    }
    assert state.transition("job-old", expected=[STARTED], to=STARTED, when_attempt=1, attempt=2)
