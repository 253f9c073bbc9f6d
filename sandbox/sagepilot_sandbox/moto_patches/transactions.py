"""DynamoDB's TransactWriteItems in moto, atomic and in time proportional to the transaction (installed by
faithful.install()).

moto 5.2.5 makes a transaction all-or-nothing by deep-copying every table it names before writing, and
copying the copies back when an item fails. Both are unfaithful in ways the control plane meets:

- **Lost writes.** moto serves requests on many threads: a write that lands on a table between a
  transaction's copy and its cancellation is undone with it (the table is restored wholesale). The
  intake's claims are conditional puts, so a lost claim is an input version that two jobs can win.
- **Time proportional to the table.** Copying a table of 10,000 claims takes seconds of the embedded
  AWS's single process for every 100-input claim (measured: 2 s at 2,000 items, 7 s at 6,000), so a
  10,000-file drop would stall on its own bookkeeping.

DynamoDB checks every condition, writes nothing if one fails (CancellationReasons, in request order:
`ConditionalCheckFailed` with the old image when ReturnValuesOnConditionCheckFailure is ALL_OLD, `None`
for the others), and isolates the transaction from other writes. This does the same: under one lock,
every item's condition is read first; a failure cancels with moto's own TransactionCanceledException
before anything is written; otherwise the writes go through moto's own put / update / delete, and the
previous images of just those items are kept to put back if one of the writes is refused. moto's
request validation (`responses.py`) is untouched.

Every other DynamoDB request takes the same lock (`_serialise_requests`): in DynamoDB each request is atomic
and a read never fails because of a concurrent write, but moto's Query and Scan iterate the table's dict while
other threads insert into it ("RuntimeError: dictionary changed size during iteration", a 500 for the caller;
seen when the intake launched a batch's 100 groups side by side).
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

_lock = threading.RLock()
_OPS = ("ConditionCheck", "Put", "Delete", "Update")
Reason = tuple[str | None, str | None, dict[str, Any] | None]  # moto's (code, message, old image); None: fine


_PARSED_LIMIT = 4096


def _memoise_condition_parsing() -> None:
    """moto parses a condition expression again for every item it is checked on: two or three times per
    item of a transaction, 0.2 ms each, the larger part of a 100-input claim's cost in the embedded AWS.
    A parse depends only on the expression, its names and its values, and the tree it returns is only
    read, so identical ones (a claim's 100 puts share them) are parsed once. Failed parses are not kept:
    an invalid expression is refused every time, as before."""
    from moto.dynamodb.comparisons import ConditionExpressionParser

    parser_cls: Any = ConditionExpressionParser
    if getattr(parser_cls, "_sagepilot_memoised", False):
        return
    original = parser_cls.parse
    parsed: dict[str, tuple[Any, list[str], list[str]]] = {}

    def parse(self: Any) -> Any:
        key = json.dumps(
            [self.condition_expression, self.expression_attribute_names, self.expression_attribute_values],
            sort_keys=True,
        )
        hit = parsed.get(key)
        if hit is None:
            tree = original(self)
            if len(parsed) >= _PARSED_LIMIT:
                parsed.clear()
            parsed[key] = (tree, list(self.expr_attr_names_found), list(self.expr_attr_values_found))
            return tree
        tree, names_found, values_found = hit
        self.expr_attr_names_found = list(names_found)
        self.expr_attr_values_found = list(values_found)
        return tree

    parser_cls.parse = parse
    parser_cls._sagepilot_memoised = True


def _serialise_requests() -> None:
    """One DynamoDB request at a time (see the module docstring); the transactions' lock is re-entrant."""
    from moto.dynamodb.responses import DynamoHandler

    handler_cls: Any = DynamoHandler
    if getattr(handler_cls, "_sagepilot_serialised", False):
        return
    original = handler_cls.call_action

    def call_action(self: Any) -> Any:
        with _lock:
            return original(self)

    handler_cls.call_action = call_action
    handler_cls._sagepilot_serialised = True


def install() -> None:
    _memoise_condition_parsing()
    _serialise_requests()
    from moto.dynamodb import models
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    backend_cls: Any = models.DynamoDBBackend
    if getattr(backend_cls, "_sagepilot_transactions", False):
        return

    def key_of(table: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
        if op_type != "Put":
            return dict(op["Key"])
        attrs = op["Item"]
        key = {table.hash_key_attr: attrs[table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attrs[table.range_key_attr]
        return key

    def restore(self: Any, table: Any, key: dict[str, Any], previous: Any) -> None:
        hash_value, range_value = self.get_keys_value(table, key)
        if previous is not None:
            if range_value is not None:
                table.items[hash_value][range_value] = previous
            else:
                table.items[hash_value] = previous
        elif range_value is not None:
            table.items.get(hash_value, {}).pop(range_value, None)
        else:
            table.items.pop(hash_value, None)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        with _lock:
            planned: list[tuple[str, dict[str, Any], Any, dict[str, Any], Any]] = []
            targets: set[tuple[str, str]] = set()
            reasons: list[Reason] = []
            for entry in transact_items:
                if len(entry) > 1:
                    raise TransactWriteSingleOpException
                op_type, op = next(iter(entry.items()))
                try:
                    if op_type not in _OPS:
                        raise ValueError("Unsupported transaction operation")
                    table = self.get_table(op["TableName"])
                    key = key_of(table, op_type, op)
                    target = (str(op["TableName"]), str(dict(sorted(key.items()))))
                    if target in targets:
                        raise MultipleTransactionsException()
                    targets.add(target)
                    current = self.get_item(op["TableName"], key)
                    condition = op.get("ConditionExpression")
                    if condition is not None and not get_filter_expression(
                        condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
                    ).expr(current):
                        old = None
                        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current is not None:
                            old = current.to_json()["Attributes"]
                        reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
                        continue
                except (MultipleTransactionsException, MockValidationException):
                    raise
                except Exception as exc:  # noqa: BLE001 - moto reports any other failure as the item's reason
                    reasons.append((type(exc).__name__, str(exc), None))
                    continue
                # An update changes the stored item in place: keep a copy to put back (puts replace it).
                previous = copy.deepcopy(current) if op_type == "Update" else current
                planned.append((op_type, op, table, key, previous))
                reasons.append((None, None, None))
            if any(code is not None for code, _, _ in reasons):
                raise TransactionCanceledException(reasons)
            done: list[tuple[Any, dict[str, Any], Any]] = []
            try:
                for op_type, op, table, key, previous in planned:
                    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
                    if op_type == "Put":
                        self.put_item(
                            op["TableName"],
                            op["Item"],
                            expression_attribute_names=names,
                            expression_attribute_values=values,
                        )
                    elif op_type == "Delete":
                        self.delete_item(
                            op["TableName"], key, expression_attribute_names=names, expression_attribute_values=values
                        )
                    elif op_type == "Update":
                        self.update_item(
                            op["TableName"],
                            key,
                            update_expression=op["UpdateExpression"],
                            expression_attribute_names=names,
                            expression_attribute_values=values,
                        )
                    done.append((table, key, previous))
            except Exception as exc:
                failed = len(done)
                for table, key, previous in [*reversed(done), planned[failed][2:]]:
                    restore(self, table, key, previous)  # the refused one too: an update may have half-applied
                if isinstance(exc, MockValidationException):
                    raise
                written: list[Reason] = [(None, None, None)] * len(planned)
                written[failed] = (type(exc).__name__, str(exc), None)
                raise TransactionCanceledException(written) from exc

    backend_cls.transact_write_items = transact_write_items
    backend_cls._sagepilot_transactions = True
