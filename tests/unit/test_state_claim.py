"""StateTable.claim: up to 100 conditional puts per TransactWriteItems, and what a cancelled one says.

A scripted DynamoDB client answers each call as the test says (no moto): the cases are DynamoDB's own
answers, including those moto never gives (TransactionConflict, throttling, a cancellation without
reasons). The moto end of the same code is in tests/functional/test_claims_transactions.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepilot.adapters import state as state_module
from sagepilot.adapters.state import StateTable
from sagepilot.errors import TransientError

JOB = "sagepilot-churn-aaaa"
OTHER = "sagepilot-churn-bbbb"
TABLE = "state"

Answer = Callable[[dict[str, Any]], dict[str, Any]]


def cancelled(reasons: list[dict[str, Any]] | None) -> ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled, please refer ..."}
    }
    if reasons is not None:
        response["CancellationReasons"] = reasons
    return ClientError(response, "TransactWriteItems")


def owned_by(job: str) -> dict[str, Any]:
    return {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed",
            "Item": {"pk": {"S": "input#x"}, "job": {"S": job}}}  # fmt: skip


NONE = {"Code": "None"}
CONFLICT = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}


class ScriptedDynamoDB:
    """Records every call; each TransactWriteItems / PutItem answer comes from the test's script (a
    function of the request), by default success."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.transact: list[Answer] = []
        self.put: Answer | None = None
        self.stored_owners: dict[str, str] = {}

    def transact_write_items(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("TransactWriteItems", request))
        if self.transact:
            return self.transact.pop(0)(request)
        return {}

    def put_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("PutItem", request))
        return self.put(request) if self.put else {}

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("UpdateItem", request))
        return {}

    def batch_get_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(("BatchGetItem", request))
        keys = request["RequestItems"][TABLE]["Keys"]
        items = [{"pk": k["pk"], "job": {"S": self.stored_owners[k["pk"]["S"]]}}
                 for k in keys if k["pk"]["S"] in self.stored_owners]  # fmt: skip
        return {"Responses": {TABLE: items}}

    def ops(self) -> list[str]:
        return [name for name, _ in self.calls]

    def transaction_sizes(self) -> list[int]:
        return [len(r["TransactItems"]) for name, r in self.calls if name == "TransactWriteItems"]


def ids_in(request: dict[str, Any]) -> list[str]:
    return [t["Put"]["Item"]["pk"]["S"].removeprefix("input#") for t in request["TransactItems"]]


def raise_(error: ClientError) -> Answer:
    def answer(request: dict[str, Any]) -> dict[str, Any]:
        raise error

    return answer


@pytest.fixture
def db() -> ScriptedDynamoDB:
    return ScriptedDynamoDB()


@pytest.fixture
def table(db: ScriptedDynamoDB, monkeypatch: pytest.MonkeyPatch) -> StateTable:
    monkeypatch.setattr(state_module.time, "sleep", lambda seconds: None)  # backoffs without the wait
    return StateTable(db, TABLE, clock=lambda: 1_900_000_000.0)


def files(n: int) -> list[str]:
    return [f"bucket/incoming/churn/f{i:04d}.csv#v{i}" for i in range(n)]


def test_up_to_100_claims_per_transaction_each_a_conditional_put(db, table):
    owners = table.claim(JOB, "churn", files(250))
    assert owners == dict.fromkeys(files(250), JOB)
    assert sorted(db.transaction_sizes()) == [50, 100, 100]
    assert set(db.ops()) == {"TransactWriteItems"}
    put = db.calls[0][1]["TransactItems"][0]["Put"]
    assert put["TableName"] == TABLE
    assert put["ConditionExpression"] == "attribute_not_exists(pk) OR #job = :job"
    assert put["ExpressionAttributeValues"] == {":job": {"S": JOB}}
    assert put["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    assert put["Item"]["job"] == {"S": JOB} and put["Item"]["group"] == {"S": "churn"}


def test_the_same_input_twice_is_claimed_once(db, table):
    """A transaction may not name an item twice (DynamoDB refuses the whole request)."""
    twice = files(3) + files(3)[:2]
    assert table.claim(JOB, "churn", twice) == dict.fromkeys(files(3), JOB)
    (request,) = [r for _, r in db.calls]
    assert ids_in(request) == files(3)


def test_a_lone_input_is_claimed_with_put_item(db, table):
    assert table.claim(JOB, "churn", files(1)) == {files(1)[0]: JOB}
    assert db.ops() == ["PutItem"]


def test_nothing_to_claim_makes_no_call(db, table):
    assert table.claim(JOB, "churn", []) == {}
    assert db.calls == []


def test_a_cancelled_transaction_gives_the_owners_it_names_and_claims_the_rest_again(db, table):
    """ConditionalCheckFailed: the item's old image names its owner; None: not written because of the
    others, so claimed again, in a transaction without the taken ones."""
    ids = files(5)
    db.transact.append(raise_(cancelled([NONE, owned_by(OTHER), NONE, owned_by(OTHER), NONE])))
    owners = table.claim(JOB, "churn", ids)
    assert owners == {ids[0]: JOB, ids[1]: OTHER, ids[2]: JOB, ids[3]: OTHER, ids[4]: JOB}
    assert db.ops() == ["TransactWriteItems", "TransactWriteItems"]
    assert ids_in(db.calls[1][1]) == [ids[0], ids[2], ids[4]]


def test_a_refusal_without_the_old_image_reads_the_owner(db, table):
    ids = files(3)
    db.stored_owners = {f"input#{ids[1]}": OTHER}
    db.transact.append(raise_(cancelled([NONE, {"Code": "ConditionalCheckFailed"}, NONE])))
    assert table.claim(JOB, "churn", ids) == {ids[0]: JOB, ids[1]: OTHER, ids[2]: JOB}
    assert db.ops() == ["TransactWriteItems", "TransactWriteItems", "BatchGetItem"]


def test_a_conflict_is_tried_again_after_a_pause(db, table, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(state_module.time, "sleep", slept.append)
    ids = files(3)
    db.transact.append(raise_(cancelled([NONE, CONFLICT, owned_by(OTHER)])))
    assert table.claim(JOB, "churn", ids) == {ids[0]: JOB, ids[1]: JOB, ids[2]: OTHER}
    assert ids_in(db.calls[1][1]) == [ids[0], ids[1]]
    assert len(slept) == 1 and slept[0] > 0


def test_conflicts_that_do_not_stop_are_transient(db, table):
    ids = files(2)
    db.transact = [raise_(cancelled([CONFLICT, NONE])) for _ in range(10)]
    with pytest.raises(TransientError, match="kept conflicting"):
        table.claim(JOB, "churn", ids)
    assert db.ops() == ["TransactWriteItems"] * state_module._CLAIM_ROUNDS


def test_a_cancellation_without_reasons_falls_back_to_one_put_each(db, table):
    ids = files(3)
    db.transact.append(raise_(cancelled(None)))

    def put(request: dict[str, Any]) -> dict[str, Any]:
        if request["Item"]["pk"]["S"] == f"input#{ids[2]}":
            raise ClientError(
                {"Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"},
                 "Item": {"pk": {"S": f"input#{ids[2]}"}, "job": {"S": OTHER}}},
                "PutItem",
            )  # fmt: skip
        return {}

    db.put = put
    assert table.claim(JOB, "churn", ids) == {ids[0]: JOB, ids[1]: JOB, ids[2]: OTHER}
    assert db.ops() == ["TransactWriteItems", "PutItem", "PutItem", "PutItem"]


def test_an_item_refused_as_invalid_is_permanent_and_concerns_only_itself(db, table):
    """A ValidationError for one item is that item's alone (DynamoDB will never take it): the others are
    claimed, and the invalid one is reported, not retried as if it were transient."""
    db.transact.append(raise_(cancelled([NONE, {"Code": "ValidationError", "Message": "Item size too large"}])))
    invalid: dict[str, str] = {}
    assert table.claim(JOB, "churn", files(2), invalid=invalid) == {files(2)[0]: JOB}
    assert invalid == {files(2)[1]: "ValidationError: Item size too large"}


def test_a_transaction_refused_as_invalid_is_written_one_by_one_to_find_the_invalid_item(db, table):
    """DynamoDB answers a transaction holding an over-long key with ValidationException, not saying which:
    each claim then goes alone, and only the invalid one fails (permanently)."""
    from sagepilot.adapters.state import InvalidItem
    from sagepilot.errors import PermanentError

    invalid_error = ClientError(
        {"Error": {"Code": "ValidationException", "Message": "Aggregated size of all range keys has exceeded"}},
        "PutItem",
    )
    db.transact.append(raise_(ClientError(invalid_error.response, "TransactWriteItems")))
    bad_pk = f"input#{files(3)[1]}"

    def put(request: dict[str, Any]) -> dict[str, Any]:
        if request["Item"]["pk"]["S"] == bad_pk:
            raise invalid_error
        return {}

    db.put = put
    invalid: dict[str, str] = {}
    owners = table.claim(JOB, "churn", files(3), invalid=invalid)
    assert owners == {files(3)[0]: JOB, files(3)[2]: JOB}
    assert list(invalid) == [files(3)[1]] and "Aggregated size" in invalid[files(3)[1]]
    assert issubclass(InvalidItem, PermanentError) and not issubclass(InvalidItem, TransientError)


def test_other_errors_of_the_transaction_are_transient(db, table):
    db.transact.append(
        raise_(ClientError({"Error": {"Code": "InternalServerError", "Message": "x"}}, "TransactWriteItems"))
    )
    with pytest.raises(TransientError, match="InternalServerError"):
        table.claim(JOB, "churn", files(2))


def test_the_same_conditional_writes_take_updates(db, table):
    """_conditional_writes is not claim-specific: conditional updates (e.g. recording the newest version of
    each key) get the same batching and the same reading of a cancellation."""
    update = {
        "TableName": TABLE,
        "UpdateExpression": "SET v = :v",
        "ConditionExpression": "v <= :v",
        "ExpressionAttributeValues": {":v": {"S": "2"}},
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    actions = {k: {"Update": {**update, "Key": {"pk": {"S": k}}}} for k in ("a", "b", "c")}
    newer = {"pk": {"S": "b"}, "v": {"S": "3"}}
    db.transact.append(raise_(cancelled([NONE, {"Code": "ConditionalCheckFailed", "Item": newer}, NONE])))
    assert table._conditional_writes(actions, "recording versions") == {"b": newer}
    assert [r["TransactItems"] for _, r in db.calls] == [list(actions.values()), [actions["a"], actions["c"]]]
    db.calls.clear()
    assert table._conditional_writes({"a": actions["a"]}, "recording versions") == {}
    assert db.ops() == ["UpdateItem"]


def test_the_owners_of_many_inputs_are_read_100_at_a_time_in_parallel_and_unprocessed_keys_asked_again(db, table):
    """BatchGetItem takes 100 keys; a released held job reads thousands of claims, so the requests go out
    together (as the claims' transactions do), and the keys DynamoDB leaves unprocessed are asked again."""
    import threading

    ids = files(1000)
    db.stored_owners = {f"input#{f}": (JOB if i % 3 else OTHER) for i, f in enumerate(ids)}
    answer = db.batch_get_item
    inside, peak, lock, first = [0], [0], threading.Lock(), threading.Event()
    unprocessed_once: list[dict[str, Any]] = []

    def slow_batch_get_item(**request: Any) -> dict[str, Any]:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        try:
            first.wait(0.5)  # the first request waits until another has arrived (or half a second)
            first.set()
            keys = request["RequestItems"][TABLE]["Keys"]
            if len(keys) == 100 and not unprocessed_once:  # the first full request: DynamoDB leaves 10 keys out
                unprocessed_once.append(request)
                done = answer(RequestItems={TABLE: {"Keys": keys[:90], "ConsistentRead": True}})
                return {**done, "UnprocessedKeys": {TABLE: {"Keys": keys[90:], "ConsistentRead": True}}}
            return answer(**request)
        finally:
            with lock:
                inside[0] -= 1

    db.batch_get_item = slow_batch_get_item  # type: ignore[method-assign]
    owners = table.owners(ids)
    assert owners == {f: (JOB if i % 3 else OTHER) for i, f in enumerate(ids)}
    assert peak[0] > 1  # requests in flight together
    sizes = [len(r["RequestItems"][TABLE]["Keys"]) for name, r in db.calls if name == "BatchGetItem"]
    assert all(r["RequestItems"][TABLE]["ConsistentRead"] for name, r in db.calls if name == "BatchGetItem")
    assert sorted(sizes) == [10, 90] + [100] * 9  # (the left-out 10 asked again on their own)
