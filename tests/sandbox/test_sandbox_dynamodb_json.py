"""The sandbox's DynamoDB answers carry items in wire form as they are, byte for byte as moto's generic walk of
AttributeValue's shape would write them (sagepilot_sandbox/moto_patches/dynamodb_json.py).

Each operation that returns items runs twice on the same state, once with moto's own
`BaseJSONSerializer._serialize_type_structure` and once with the patch, and the raw HTTP bodies must be
equal; the items cover every AttributeValue type (nested M and L, empty M and L, sets, NULL, BOOL, empty
and non-ASCII strings) and binary (B and BS, also nested), which takes moto's path. A spy checks the
patched runs really took the short path for the values without binary.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.core.serialize import BaseJSONSerializer

from sagepilot_sandbox.moto_patches import dynamodb_json

TABLE = "typed"
EVERY_TYPE: dict[str, Any] = {
    "pk": {"S": "every"},
    "sk": {"N": "1"},
    "s": {"S": 'héllo "quoted" \u2603'},
    "empty_s": {"S": ""},
    "n": {"N": "-12.5E3"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "null": {"NULL": True},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
    "empty_m": {"M": {}},
    "empty_l": {"L": []},
    "m": {"M": {"inner": {"S": "x"}, "list": {"L": [{"N": "1"}, {"M": {"deep": {"BOOL": False}}}, {"L": []}]}}},
    "l": {"L": [{"S": "a"}, {"NULL": True}, {"SS": ["z"]}, {"M": {}}, {"L": [{"N": "7"}]}]},
}
BINARY: dict[str, Any] = {
    "pk": {"S": "every"},
    "sk": {"N": "2"},
    "s": {"S": "beside binary"},
    "b": {"B": b"\x00\x01binary"},
    "bs": {"BS": [b"one", b"\xff"]},
    "m": {"M": {"plain": {"S": "p"}, "nested": {"L": [{"B": b"deep"}]}}},
}


@pytest.fixture
def ddb(clients: Callable[[str], Any]) -> Any:
    client = clients("dynamodb")
    client.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    client.put_item(TableName=TABLE, Item=EVERY_TYPE)
    client.put_item(TableName=TABLE, Item=BINARY)
    return client


@pytest.fixture
def bodies(ddb: Any) -> Iterator[list[bytes]]:
    """The raw HTTP body of each DynamoDB answer the client receives, in order."""
    seen: list[bytes] = []

    def record(http_response: Any, **_: Any) -> None:
        seen.append(http_response.content)

    ddb.meta.events.register("after-call.dynamodb", record)
    yield seen
    ddb.meta.events.unregister("after-call.dynamodb", record)


@pytest.fixture
def short_paths(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The AttributeValues the patch took as they are."""
    taken: list[Any] = []
    original = dynamodb_json.is_wire_value

    def spy(value: Any) -> bool:
        wire = original(value)
        if wire:
            taken.append(value)
        return wire

    monkeypatch.setattr(dynamodb_json, "is_wire_value", spy)
    return taken


@pytest.fixture
def use_patch(aws: None) -> Iterator[Callable[[bool], None]]:
    """Switches DynamoDB's serializer between moto's walk (False) and the patch (True); the patch after."""
    cls: Any = BaseJSONSerializer
    assert getattr(cls, "_sagepilot_wire_attribute_values", False)
    patched_method = cls._serialize_type_structure
    moto_method = cls._sagepilot_original_serialize_type_structure

    def use(patched: bool) -> None:
        cls._serialize_type_structure = patched_method if patched else moto_method

    yield use
    use(True)


@pytest.fixture
def same_body(use_patch: Callable[[bool], None], bodies: list[bytes]) -> Callable[[Callable[[], Any]], bytes]:
    """Runs a call with moto's serializer, then with the patch: the raw answers must be equal."""

    def run(call: Callable[[], Any]) -> bytes:
        return _same_body(use_patch, bodies, call)

    return run


def _same_body(use_patch: Callable[[bool], None], bodies: list[bytes], call: Callable[[], Any]) -> bytes:
    answers = []
    for patched in (False, True):
        use_patch(patched)
        del bodies[:]
        with contextlib.suppress(ClientError):  # an error's body is recorded all the same
            call()
        assert len(bodies) == 1
        answers.append(bodies[0])
    assert answers[0] == answers[1]
    return answers[1]


KEY_EVERY = {"pk": {"S": "every"}, "sk": {"N": "1"}}
KEY_BINARY = {"pk": {"S": "every"}, "sk": {"N": "2"}}


def test_get_item_answers_every_type_as_moto(ddb: Any, same_body: Any, short_paths: list[Any]) -> None:
    body = same_body(lambda: ddb.get_item(TableName=TABLE, Key=KEY_EVERY, ConsistentRead=True))
    assert b'"empty_m": {"M": {}}' in body and b'"empty_l": {"L": []}' in body
    assert {"M": {}} in short_paths and EVERY_TYPE["m"] in short_paths and EVERY_TYPE["l"] in short_paths
    assert ddb.get_item(TableName=TABLE, Key=KEY_EVERY)["Item"] == EVERY_TYPE


def test_binary_takes_motos_path(ddb: Any, same_body: Any, short_paths: list[Any]) -> None:
    body = same_body(lambda: ddb.get_item(TableName=TABLE, Key=KEY_BINARY))
    assert b'"b": {"B": "AAFiaW5hcnk="}' in body  # base64, as moto writes it
    assert not any("B" in value or "BS" in value for value in short_paths)
    assert {"S": "beside binary"} in short_paths  # the item's other attributes still go the short way
    assert ddb.get_item(TableName=TABLE, Key=KEY_BINARY)["Item"] == BINARY


def test_batch_get_item_query_and_scan_answer_as_moto(ddb: Any, same_body: Any, short_paths: list[Any]) -> None:
    same_body(
        lambda: ddb.batch_get_item(RequestItems={TABLE: {"Keys": [KEY_EVERY, KEY_BINARY], "ConsistentRead": True}}),
    )
    same_body(
        lambda: ddb.batch_get_item(
            RequestItems={TABLE: {"Keys": [KEY_EVERY], "ProjectionExpression": "m.list, l[1], ss"}}
        ),
    )
    same_body(
        lambda: ddb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "every"}},
        ),
    )
    same_body(lambda: ddb.scan(TableName=TABLE))
    same_body(lambda: ddb.scan(TableName=TABLE, Limit=1))  # LastEvaluatedKey, an AttributeMap too
    same_body(lambda: ddb.transact_get_items(TransactItems=[{"Get": {"TableName": TABLE, "Key": KEY_EVERY}}]))
    assert short_paths


def test_writes_returning_items_answer_as_moto(ddb: Any, same_body: Any, short_paths: list[Any]) -> None:
    # each call runs twice on the same state: only writes that leave it as it was
    same_body(lambda: ddb.put_item(TableName=TABLE, Item=EVERY_TYPE, ReturnValues="ALL_OLD"))
    body = same_body(
        lambda: ddb.update_item(
            TableName=TABLE,
            Key=KEY_EVERY,
            UpdateExpression="SET added = :v",
            ExpressionAttributeValues={":v": {"M": {"k": {"L": [{"S": "v"}]}}}},
            ReturnValues="ALL_NEW",
        ),
    )
    assert b'"added": {"M": {"k": {"L": [{"S": "v"}]}}}' in body
    same_body(
        lambda: ddb.put_item(
            TableName=TABLE,
            Item=EVERY_TYPE,
            ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        ),
    )
    cancelled = same_body(
        lambda: ddb.transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": KEY_EVERY,
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": KEY_BINARY,
                        "UpdateExpression": "SET touched = :t",
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ExpressionAttributeValues": {":t": {"BOOL": True}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        ),
    )
    assert b"TransactionCanceledException" in cancelled and b'"empty_l": {"L": []}' in cancelled
    assert short_paths


@pytest.mark.parametrize(
    "value",
    [
        {"S": "x"},
        {"N": "1"},
        {"SS": []},
        {"NS": ["1"]},
        {"NULL": True},
        {"BOOL": False},
        {"M": {}},
        {"L": []},
        {"M": {"a": {"L": [{"M": {"b": {"S": ""}}}]}}},
    ],
)
def test_wire_values_are_taken_as_they_are(value: Any) -> None:
    assert dynamodb_json.is_wire_value(value)


@pytest.mark.parametrize(
    "value",
    [
        {"B": b"x"},
        {"BS": [b"x"]},
        {"M": {"a": {"B": b"x"}}},
        {"L": [{"S": "a"}, {"BS": []}]},
        {"S": "x", "N": "1"},  # several members: moto writes them in the shape's order
        {},
        {"s": "x"},  # moto also finds a member under its snake_case name
        {"N": 1},
        {"BOOL": 1},
        {"NULL": None},
        {"SS": ["a", 1]},
        {"M": {1: {"S": "x"}}},
        {"M": {"a": None}},
        {"L": [None]},
        {"L": ({"S": "a"},)},
        None,
        "S",
    ],
)
def test_anything_else_takes_motos_path(value: Any) -> None:
    assert not dynamodb_json.is_wire_value(value)


def test_batch_get_of_100_items_timed(ddb: Any, use_patch: Callable[[bool], None]) -> None:
    """Prints what a BatchGetItem of 100 consistent reads costs beside 10,000 small items, with moto's
    serializer and with the patch (no assertion on time: the machine is shared)."""
    ddb.create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    for start in range(0, 10_000, 25):
        ddb.batch_write_item(
            RequestItems={
                "t": [
                    {
                        "PutRequest": {
                            "Item": {
                                "pk": {"S": f"input#{i}"},
                                "job": {"S": "j"},
                                "group": {"S": "g"},
                                "createdAt": {"N": "1"},
                            }
                        }
                    }
                    for i in range(start, start + 25)
                ]
            }
        )
    keys = [{"pk": {"S": f"input#{i}"}} for i in range(100)]
    timings = {}
    answers = {}
    for patched in (False, True):
        use_patch(patched)
        answers[patched] = ddb.batch_get_item(RequestItems={"t": {"Keys": keys, "ConsistentRead": True}})
        started = time.perf_counter()
        for _ in range(10):
            ddb.batch_get_item(RequestItems={"t": {"Keys": keys, "ConsistentRead": True}})
        timings[patched] = (time.perf_counter() - started) / 10 * 1000
    print(f"BatchGetItem of 100 items: moto's serializer {timings[False]:.1f} ms, patched {timings[True]:.1f} ms")
    assert len(answers[True]["Responses"]["t"]) == 100
    assert answers[False]["Responses"] == answers[True]["Responses"]
