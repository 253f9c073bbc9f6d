"""The sandbox's DynamoDB Query reads only its partition and answers exactly as moto's walk of the whole table
(sagepilot_sandbox/moto_patches/dynamodb_query.py).

moto 5.2.5 walks and sorts every item of the table for every Query, also of a global secondary index: beside
20,000 claim items, 22 ms of the embedded AWS's CPU per Query of ByKindAge's 5 waiting jobs; with the patch,
0.5 ms (`python -m bench.sandbox_requests` measures both in one run).

The equality tests apply random sequences of writes (PutItem, UpdateItem moving items between partitions or
out of the index with REMOVE, DeleteItem, BatchWriteItem, TransactWriteItems written, cancelled, or refused
half-way and restored, PartiQL updates), and after each one compare the patched Query with moto's own
(`dynamodb_query.moto_query()`), response for response: items, order, Count, ScannedCount, LastEvaluatedKey,
over every page, with Limit, ScanIndexForward, FilterExpression and ProjectionExpression, on a table with
a hash key only (the state table's indexes) and on one with a sort key, a local and two global indexes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models.dynamo_type import DynamoType

from sagepilot_sandbox.moto_patches import dynamodb_query

STATE = "state"  # the template's StateTable: pk; ByKind (kind, pk), ByKindAge (kind, createdAt) INCLUDE
SORTED = "sorted"  # pk + sk; local index BySize (pk, size); global ByColour (colour), ByColourSize (colour, size)
KINDS = ["waiting-capacity", "waiting#g1", "rollout"]
COLOURS = ["red", "blue"]


@pytest.fixture
def ddb(clients: Callable[[str], Any]) -> Any:
    client = clients("dynamodb")
    client.create_table(
        TableName=STATE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "kind", "AttributeType": "S"},
            {"AttributeName": "createdAt", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByKind",
                "KeySchema": [
                    {"AttributeName": "kind", "KeyType": "HASH"},
                    {"AttributeName": "pk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "ByKindAge",
                "KeySchema": [
                    {"AttributeName": "kind", "KeyType": "HASH"},
                    {"AttributeName": "createdAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["waitingSince"]},
            },
        ],
    )
    client.create_table(
        TableName=SORTED,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "colour", "AttributeType": "S"},
            {"AttributeName": "size", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        LocalSecondaryIndexes=[
            {
                "IndexName": "BySize",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "size", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByColour",
                "KeySchema": [{"AttributeName": "colour", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {
                "IndexName": "ByColourSize",
                "KeySchema": [
                    {"AttributeName": "colour", "KeyType": "HASH"},
                    {"AttributeName": "size", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
        ],
    )
    return client


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


# Writes --------------------------------------------------------------------------------------------------------
def state_key(rng: random.Random) -> dict[str, Any]:
    return {"pk": s(f"job#{rng.randrange(12)}")}


def state_item(rng: random.Random) -> dict[str, Any]:
    item: dict[str, Any] = {**state_key(rng), "note": s("x" * rng.randrange(1, 40))}
    if rng.random() < 0.7:
        item["kind"] = s(rng.choice(KINDS))
    if rng.random() < 0.8:
        item["createdAt"] = n(rng.randrange(6))  # collisions: the table's key orders equal createdAt
    if rng.random() < 0.5:
        item["waitingSince"] = n(rng.randrange(100))
    return item


def sorted_key(rng: random.Random) -> dict[str, Any]:
    return {"pk": s(f"p{rng.randrange(3)}"), "sk": s(f"s{rng.randrange(5)}")}


def sorted_item(rng: random.Random) -> dict[str, Any]:
    item: dict[str, Any] = {**sorted_key(rng), "note": s("y" * rng.randrange(1, 20))}
    if rng.random() < 0.7:
        item["colour"] = s(rng.choice(COLOURS))
    if rng.random() < 0.7:
        item["size"] = n(rng.randrange(5))
    return item


def key_in(item: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in item.items() if name in ("pk", "sk")}


def move(rng: random.Random, table: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """An update: (UpdateExpression, names, values) moving the item to another partition or out of the index."""
    if table == STATE:
        choice = rng.randrange(4)
        if choice == 0:
            return "REMOVE kind", {}, {}
        if choice == 1:
            return "REMOVE createdAt SET note = :note", {}, {":note": s("moved")}
        return "SET kind = :kind, createdAt = :at", {}, {":kind": s(rng.choice(KINDS)), ":at": n(rng.randrange(6))}
    if rng.random() < 0.3:
        return "REMOVE colour", {}, {}
    return "SET colour = :c, #size = :n", {"#size": "size"}, {":c": s(rng.choice(COLOURS)), ":n": n(rng.randrange(5))}


def write(ddb: Any, rng: random.Random) -> None:
    table = rng.choice([STATE, SORTED])
    key_of, item_of = (state_key, state_item) if table == STATE else (sorted_key, sorted_item)
    op = rng.randrange(10)
    if op <= 2:
        ddb.put_item(TableName=table, Item=item_of(rng))
    elif op <= 4:
        expression, names, values = move(rng, table)
        update: dict[str, Any] = {"TableName": table, "Key": key_of(rng), "UpdateExpression": expression}
        if names:
            update["ExpressionAttributeNames"] = names
        if values:
            update["ExpressionAttributeValues"] = values
        if rng.random() < 0.2:
            update["ConditionExpression"] = "attribute_exists(pk)"  # refused for an item that does not exist
        try:
            ddb.update_item(**update)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
    elif op == 5:
        ddb.delete_item(TableName=table, Key=key_of(rng))
    elif op == 6:
        requests: dict[str, dict[str, Any]] = {}  # one request per item: BatchWriteItem refuses duplicates
        for _ in range(rng.randrange(1, 4)):
            if rng.random() < 0.6:
                item = item_of(rng)
                requests[str(key_in(item))] = {"PutRequest": {"Item": item}}
            else:
                key = key_of(rng)
                requests[str(key)] = {"DeleteRequest": {"Key": key}}
        ddb.batch_write_item(RequestItems={table: list(requests.values())})
    elif op <= 8:
        transact(ddb, rng, table, key_of, item_of)
    else:
        key = key_of(rng)
        where = " AND ".join(f"\"{name}\" = '{value['S']}'" for name, value in key.items())
        column, value = ("kind", rng.choice(KINDS)) if table == STATE else ("colour", rng.choice(COLOURS))
        try:
            ddb.execute_statement(Statement=f"UPDATE \"{table}\" SET {column} = '{value}' WHERE {where}")
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"  # PartiQL: no such item


def transact(ddb: Any, rng: random.Random, table: str, key_of: Any, item_of: Any) -> None:
    """2-4 writes to distinct items; sometimes cancelled by a condition, or refused half-way by an update moto
    validates only when it applies it (the sandbox puts back the items written before it)."""
    entries: list[dict[str, Any]] = []
    keys: set[str] = set()
    while len(entries) < rng.randrange(2, 5):
        op = rng.randrange(3)
        if op == 0:
            item = item_of(rng)
            key = key_in(item)
            entry: dict[str, Any] = {"Put": {"TableName": table, "Item": item}}
        elif op == 1:
            key = key_of(rng)
            expression, names, values = move(rng, table)
            entry = {"Update": {"TableName": table, "Key": key, "UpdateExpression": expression}}
            if names:
                entry["Update"]["ExpressionAttributeNames"] = names
            if values:
                entry["Update"]["ExpressionAttributeValues"] = values
        else:
            key = key_of(rng)
            entry = {"Delete": {"TableName": table, "Key": key}}
        if str(key) in keys:
            continue
        keys.add(str(key))
        entries.append(entry)
    fate = rng.random()
    if fate < 0.2:
        entries[-1][next(iter(entries[-1]))]["ConditionExpression"] = "attribute_exists(nothing)"
    elif fate < 0.35:
        key = key_of(rng)
        if str(key) not in keys:
            # `counter` is never set: moto refuses this update when it applies it, after the writes before it
            entries.append(
                {
                    "Update": {
                        "TableName": table,
                        "Key": key,
                        "UpdateExpression": "SET counter = counter + :one",
                        "ExpressionAttributeValues": {":one": n(1)},
                    }
                }
            )
    try:
        ddb.transact_write_items(TransactItems=entries)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("TransactionCanceledException", "ValidationException")


# Queries -------------------------------------------------------------------------------------------------------
def query_shapes(rng: random.Random | None) -> Iterator[dict[str, Any]]:
    """Every query shape (rng None), or one random shape per table and index."""
    state_indexes = ["ByKind", "ByKindAge"]
    shapes: list[dict[str, Any]] = []
    for index in state_indexes:
        for kind in [*KINDS, "never"]:
            base = {
                "TableName": STATE,
                "IndexName": index,
                "KeyConditionExpression": "kind = :kind",
                "ExpressionAttributeValues": {":kind": s(kind)},
            }
            shapes.append(base)
            shapes.append(
                {
                    **base,
                    "FilterExpression": "attribute_exists(waitingSince)",
                    "ProjectionExpression": "pk, createdAt, waitingSince",
                }
            )
        shapes.append(
            {
                "TableName": STATE,
                "IndexName": "ByKindAge",
                "KeyConditionExpression": "kind = :kind AND createdAt BETWEEN :a AND :b",
                "ExpressionAttributeValues": {":kind": s(KINDS[0]), ":a": n(1), ":b": n(3)},
            }
        )
    for colour in [*COLOURS, "green"]:
        for index in ("ByColour", "ByColourSize"):
            shapes.append(
                {
                    "TableName": SORTED,
                    "IndexName": index,
                    "KeyConditionExpression": "colour = :c",
                    "ExpressionAttributeValues": {":c": s(colour)},
                }
            )
        shapes.append(
            {
                "TableName": SORTED,
                "IndexName": "ByColourSize",
                "KeyConditionExpression": "colour = :c AND #size >= :n",
                "ExpressionAttributeNames": {"#size": "size"},
                "ExpressionAttributeValues": {":c": s(colour), ":n": n(2)},
            }
        )
    for pk in ("p0", "p1", "p2", "p9"):
        shapes.append(
            {
                "TableName": SORTED,
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": s(pk)},
                "FilterExpression": "attribute_exists(colour)",
            }
        )
        shapes.append(
            {
                "TableName": SORTED,
                "KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
                "ExpressionAttributeValues": {":p": s(pk), ":s": s("s")},
            }
        )
        shapes.append(
            {
                "TableName": SORTED,
                "IndexName": "BySize",
                "KeyConditionExpression": "pk = :p AND #size < :n",
                "ExpressionAttributeNames": {"#size": "size"},
                "ExpressionAttributeValues": {":p": s(pk), ":n": n(3)},
            }
        )
    for pk in ("job#1", "job#7"):
        shapes.append(
            {"TableName": STATE, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": s(pk)}}
        )
    if rng is None:
        for shape in shapes:
            for forward in (True, False):
                for limit in (None, 1, 2):
                    yield variant(shape, forward, limit)
    else:
        for shape in rng.sample(shapes, 4):
            yield variant(shape, rng.random() < 0.5, rng.choice([None, 1, 2, 3]))


def variant(shape: dict[str, Any], forward: bool, limit: int | None) -> dict[str, Any]:
    request = {**shape, "ScanIndexForward": forward}
    if limit is not None:
        request["Limit"] = limit
    return request


def pages(ddb: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of the query, as answered (without the request metadata)."""
    answers: list[dict[str, Any]] = []
    request = dict(request)
    while True:
        page = ddb.query(**request)
        page.pop("ResponseMetadata")
        answers.append(page)
        if "LastEvaluatedKey" not in page or len(answers) > 40:
            return answers
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def assert_same_answers(ddb: Any, requests: Iterator[dict[str, Any]]) -> int:
    compared = 0
    for request in requests:
        patched = pages(ddb, request)
        with dynamodb_query.moto_query():
            walked = pages(ddb, request)
        assert patched == walked, request
        compared += sum(page["Count"] for page in walked)
    return compared


@pytest.mark.parametrize("seed", range(6))
def test_queries_answer_as_moto_after_any_writes(ddb: Any, seed: int) -> None:
    rng = random.Random(seed)
    assert_same_answers(ddb, query_shapes(None))  # the maps are built here, from empty tables
    for _ in range(60):
        write(ddb, rng)
        assert_same_answers(ddb, query_shapes(rng))
    assert assert_same_answers(ddb, query_shapes(None)) > 0  # the final sweep found items, not only empty pages


def test_the_maps_built_from_a_full_table_answer_as_moto(ddb: Any) -> None:
    """Items written before the first Query of an attribute are found (the map is built from the table)."""
    rng = random.Random(42)
    for _ in range(80):
        write(ddb, rng)
    assert assert_same_answers(ddb, query_shapes(None)) > 0


def test_an_item_moved_between_partitions_is_found_only_in_its_new_one(ddb: Any) -> None:
    """The answer itself, beside the comparison: UpdateItem, REMOVE and a transaction move items."""

    def pks(kind: str) -> list[str]:
        return [
            item["pk"]["S"]
            for page in pages(
                ddb,
                {
                    "TableName": STATE,
                    "IndexName": "ByKindAge",
                    "KeyConditionExpression": "kind = :k",
                    "ExpressionAttributeValues": {":k": s(kind)},
                    "Limit": 1,
                },
            )
            for item in page["Items"]
        ]

    for i in range(3):
        ddb.put_item(TableName=STATE, Item={"pk": s(f"job#{i}"), "kind": s("waiting-capacity"), "createdAt": n(10 - i)})
    assert pks("waiting-capacity") == ["job#2", "job#1", "job#0"]  # oldest first
    ddb.update_item(
        TableName=STATE,
        Key={"pk": s("job#2")},
        UpdateExpression="SET kind = :k",
        ExpressionAttributeValues={":k": s("rollout")},
    )
    ddb.update_item(TableName=STATE, Key={"pk": s("job#1")}, UpdateExpression="REMOVE kind")
    assert pks("waiting-capacity") == ["job#0"] and pks("rollout") == ["job#2"]
    ddb.transact_write_items(
        TransactItems=[
            {"Delete": {"TableName": STATE, "Key": {"pk": s("job#0")}}},
            {
                "Update": {
                    "TableName": STATE,
                    "Key": {"pk": s("job#1")},
                    "UpdateExpression": "SET kind = :k, createdAt = :at",
                    "ExpressionAttributeValues": {":k": s("waiting-capacity"), ":at": n(1)},
                }
            },
        ]
    )
    assert pks("waiting-capacity") == ["job#1"] and pks("rollout") == ["job#2"]


# Cost ----------------------------------------------------------------------------------------------------------
@contextmanager
def counting_comparisons() -> Iterator[list[int]]:
    """Counts comparisons of DynamoDB values: moto's walk sorts and compares every item of the table."""
    counter = [0]
    originals = {
        name: getattr(DynamoType, name) for name in ("__eq__", "__ne__", "__lt__", "__gt__", "__le__", "__ge__")
    }

    def counted(original: Any) -> Any:
        def compare(self: Any, other: Any) -> Any:
            counter[0] += 1
            return original(self, other)

        return compare

    for name, original in originals.items():
        setattr(DynamoType, name, counted(original))
    try:
        yield counter
    finally:
        for name, original in originals.items():
            setattr(DynamoType, name, original)


def test_a_query_costs_its_partition_not_the_table(ddb: Any) -> None:
    """The same Query, once the table also holds 2,000 items of no partition of the index (the state table's
    claims), does the same work: what DynamoDB charges for (the items read), not moto's walk."""
    for i in range(3):
        ddb.put_item(TableName=STATE, Item={"pk": s(f"job#{i}"), "kind": s("waiting-capacity"), "createdAt": n(i)})
    requests = [
        {
            "TableName": STATE,
            "IndexName": index,
            "KeyConditionExpression": "kind = :k",
            "ExpressionAttributeValues": {":k": s(kind)},
        }
        for index in ("ByKind", "ByKindAge")
        for kind in ("waiting-capacity", "waiting#g1")
    ] + [{"TableName": STATE, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": s("job#1")}}]

    def work() -> list[int]:
        counts = []
        for request in requests:
            with counting_comparisons() as counter:
                ddb.query(**request)
            counts.append(counter[0])
        return counts

    work()  # the first Query of `kind` builds its map from the table
    quiet = work()
    for start in range(0, 2000, 25):
        ddb.batch_write_item(
            RequestItems={
                STATE: [
                    {"PutRequest": {"Item": {"pk": s(f"claim#{i:05d}"), "job": s("j")}}}
                    for i in range(start, start + 25)
                ]
            }
        )
    busy = work()
    with dynamodb_query.moto_query():
        walked = work()
    assert busy == quiet, (quiet, busy)
    assert all(w > 2000 for w in walked), walked  # moto's own walk: the whole table, every time
