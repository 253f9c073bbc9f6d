"""Claims in transactions, in the embedded AWS with the sandbox's faithful patches.

- The sandbox's TransactWriteItems answers as DynamoDB does (CancellationReasons in request order, the
  old image of a refused item, nothing written) and, unlike moto's own, keeps a write that lands while a
  transaction is being cancelled, and copies no table.
- StateTable.claim against it: 100 claims per request, the owners of refused ones, the rest claimed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepilot.adapters.state import StateTable


def put(table: str, pk: str, job: str) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": {"pk": {"S": pk}, "job": {"S": job}},
            "ConditionExpression": "attribute_not_exists(pk) OR #job = :job",
            "ExpressionAttributeNames": {"#job": "job"},
            "ExpressionAttributeValues": {":job": {"S": job}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


@pytest.fixture
def table_name(stack: Any) -> str:
    return str(stack.outputs["StateTableName"])


@pytest.fixture
def db(clients: Callable[[str], Any]) -> Any:
    return clients("dynamodb")


def stored(db: Any, table: str) -> dict[str, str]:
    return {i["pk"]["S"]: i.get("job", {}).get("S", "") for i in db.scan(TableName=table)["Items"]}


def test_a_cancelled_transaction_says_why_per_item_and_writes_nothing(db, table_name):
    db.put_item(TableName=table_name, Item={"pk": {"S": "input#b"}, "job": {"S": "other"}})
    before = stored(db, table_name)
    with pytest.raises(ClientError) as refused:
        db.transact_write_items(TransactItems=[put(table_name, f"input#{k}", "mine") for k in "abc"])
    error = refused.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert error["CancellationReasons"] == [
        {"Code": "None"},
        {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed",
         "Item": {"pk": {"S": "input#b"}, "job": {"S": "other"}}},
        {"Code": "None"},
    ]  # fmt: skip
    assert stored(db, table_name) == before


def test_a_transaction_that_passes_writes_every_item(db, table_name):
    db.put_item(TableName=table_name, Item={"pk": {"S": "input#b"}, "job": {"S": "mine"}})
    db.transact_write_items(TransactItems=[put(table_name, f"input#{k}", "mine") for k in "abc"])
    assert {k: v for k, v in stored(db, table_name).items() if k.startswith("input#")} == {
        "input#a": "mine", "input#b": "mine", "input#c": "mine"}  # fmt: skip


def test_one_transaction_may_not_name_an_item_twice(db, table_name):
    with pytest.raises(ClientError) as refused:
        db.transact_write_items(TransactItems=[put(table_name, "input#a", "mine"), put(table_name, "input#a", "mine")])
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "input#a" not in stored(db, table_name)


def test_a_write_landing_while_a_transaction_is_cancelled_is_kept(db, table_name, monkeypatch):
    """moto's own transaction copies the table first and puts the copy back when it is cancelled, undoing
    whatever another request wrote meanwhile: here a claim lands while the transaction reads its items."""
    from moto.dynamodb.models import DynamoDBBackend

    db.put_item(TableName=table_name, Item={"pk": {"S": "input#c"}, "job": {"S": "other"}})
    original_get_item = DynamoDBBackend.get_item
    landed: list[str] = []

    def get_item(self: Any, name: str, keys: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not landed and keys.get("pk") == {"S": "input#b"}:  # another request's claim, mid-transaction
            landed.append("input#z")
            self.put_item(name, {"pk": {"S": "input#z"}, "job": {"S": "third"}})
        return original_get_item(self, name, keys, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "get_item", get_item)
    with pytest.raises(ClientError):
        db.transact_write_items(TransactItems=[put(table_name, f"input#{k}", "mine") for k in "abc"])
    assert landed == ["input#z"]
    assert stored(db, table_name).get("input#z") == "third", "the other request's claim was undone"
    assert "input#a" not in stored(db, table_name)


def test_a_transaction_copies_no_table(db, table_name, monkeypatch):
    """The cost of a transaction is its own items', not the table's (moto's own deep-copies the table)."""
    from moto.dynamodb.models import table as table_module

    copied: list[str] = []
    real_deepcopy = copy.deepcopy

    def deepcopy(value: Any, *args: Any) -> Any:
        copied.append(type(value).__name__)
        return real_deepcopy(value, *args)

    monkeypatch.setattr(copy, "deepcopy", deepcopy)
    with pytest.raises(ClientError):
        db.transact_write_items(
            TransactItems=[put(table_name, "input#a", "mine"), {"ConditionCheck": {
                "TableName": table_name, "Key": {"pk": {"S": "input#q"}},
                "ConditionExpression": "attribute_exists(pk)"}}]
        )  # fmt: skip
    db.transact_write_items(TransactItems=[put(table_name, "input#a", "mine"), put(table_name, "input#b", "mine")])
    assert table_module.Table.__name__ not in copied


def test_claims_of_many_inputs_find_every_owner(db, table_name, clients):
    ids = [f"b/incoming/churn/f{i:03d}.csv#v{i}" for i in range(230)]
    others = {ids[5]: "job-other", ids[150]: "job-other", ids[229]: "job-third"}
    for file_id, job in others.items():
        db.put_item(TableName=table_name, Item={"pk": {"S": f"input#{file_id}"}, "job": {"S": job}})
    calls: list[int] = []
    clients("dynamodb").meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params, **_: calls.append(len(params["TransactItems"])),
    )
    state = StateTable(clients("dynamodb"), table_name)
    owners = state.claim("job-mine", "churn", ids + ids[:10])
    assert owners == {f: others.get(f, "job-mine") for f in ids}
    # Three chunks; the two with a taken input are cancelled and claimed again without it.
    assert sorted(calls) == sorted([100, 100, 30, 99, 99, 29])
    assert state.owners(ids) == owners
    assert state.claim("job-mine", "churn", ids) == owners  # again: the same answer (a redelivered batch)


def test_reads_never_fail_beside_concurrent_writes(db, table_name):
    """DynamoDB serves every request atomically: a Query or Scan while other callers insert items answers, it
    does not fail. moto's iterate the table's dict while other threads grow it ("dictionary changed size during
    iteration", a 500); the sandbox serves one DynamoDB request at a time."""
    import threading

    failures: list[BaseException] = []
    writing = threading.Event()

    def write(worker: int) -> None:
        try:
            for i in range(250):
                db.put_item(TableName=table_name, Item={"pk": {"S": f"input#w{worker}-{i}"}, "job": {"S": "j"}})
        except BaseException as exc:  # collected, asserted on below
            failures.append(exc)

    def read() -> None:
        try:
            while writing.is_set():  # as the launcher lists the jobs waiting for capacity
                db.query(
                    TableName=table_name,
                    IndexName="ByKind",
                    KeyConditionExpression="kind = :kind",
                    ExpressionAttributeValues={":kind": {"S": "waiting-capacity"}},
                )
        except BaseException as exc:  # collected, asserted on below
            failures.append(exc)

    # A table the size of a 10,000-file drop's claims: moto's index Query walks all of it, long enough to meet a write.
    for start in range(0, 12_000, 25):
        db.batch_write_item(
            RequestItems={
                table_name: [
                    {"PutRequest": {"Item": {"pk": {"S": f"input#old{i}"}, "job": {"S": "j"}}}}
                    for i in range(start, start + 25)
                ]
            }
        )
    writing.set()
    writers = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in [*writers, *readers]:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    for t in readers:
        t.join()
    assert failures == []
    assert len(stored(db, table_name)) >= 6 * 250
