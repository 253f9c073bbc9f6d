"""moto's DynamoDB Query reads only the partition it asks for (installed by faithful.install()).

What DynamoDB does: a Query reads one partition, the items that carry the key condition's partition key
value (in the table, or in the index named), and costs what it reads. What moto 5.2.5 does: every Query,
on the table or on an index, walks and sorts every item of the table (`Table.all_items()`), then keeps the
items of the partition. The control plane's state table holds tens of thousands of claim and `latest#`
items and a few hundred job records, and its frequent Queries read the small partitions of index ByKind /
ByKindAge (`kind = waiting-capacity`, `kind = waiting#<group>`, `kind = rollout`), usually empty: with
20,000 claims, 22 ms of the embedded AWS's CPU per Query of 5 waiting jobs (40 ms in the loaded sandbox of the
groups bench, the most expensive request there); with this module, 0.5 ms (0.1 ms for an empty partition;
`python -m bench.sandbox_requests`).

This module keeps moto's Query code (key conditions, order by the index's sort key, ScanIndexForward,
Limit, ExclusiveStartKey / LastEvaluatedKey, size limit, FilterExpression, projections, items without the
index's key attributes left out) and hands it, in place of every item of the table, the candidates of
the partition, in the order `all_items()` would have given them:

- a Query of the table, or of a local secondary index (same partition key): the table's partition itself;
- a Query of a global secondary index: the items a per-table map `attribute -> value -> item keys` lists
  under the value of the key condition's first partition key attribute.

The map is a superset kept complete, never exact: it is built from the whole table the first time an
attribute is queried, and an item's key is added under its attribute value wherever moto stores or changes
an item (`Table.put_item`, which PutItem, BatchWriteItem, PartiQL, imports and TransactWriteItems' puts use;
the backend's `update_item`, which changes the stored item in place, for UpdateItem and TransactWriteItems'
updates; an update refused half-way, which moto leaves half-applied, drops the maps, rebuilt when next
queried). Nothing is removed on delete or update: the Query looks each candidate up in the table and drops
the keys whose item is gone or no longer carries the value. So an item put back by something else (the
sandbox's transactions restore a refused transaction's previous images directly) is still found. moto
checks every candidate again itself (all partition key conditions), so a stale candidate changes nothing.
Neither moto nor the sandbox expires items by TTL (DynamoDB would); an expiry added later that deletes
through `Table.delete_item`, or directly, needs nothing here.

The map and each Query's look-ups take one lock, beside the one-request-at-a-time lock of `transactions`.
`moto_query()` runs a Query through moto's own walk of the whole table, for tests comparing both.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.RLock()
_local = threading.local()
_KEY_TYPES = ("S", "N", "B")  # what a key attribute can be; any other value never equals a key condition's
ItemKey = tuple[Any, Any]  # (hash key, range key or None) as moto stores them: DynamoType values

# table -> attribute name -> attribute value (DynamoType) -> keys of the items that may carry it
_maps: weakref.WeakKeyDictionary[Any, dict[str, dict[Any, set[ItemKey]]]] = weakref.WeakKeyDictionary()


def _stored(table: Any, key: ItemKey) -> Any:
    """The item stored under `key`, or None; never inserts (`table.items` is a defaultdict)."""
    hash_value, range_value = key
    partition = table.items.get(hash_value)
    if partition is None:
        return None
    if table.range_key_attr is None:
        return partition
    return partition.get(range_value)


def _table_items(table: Any) -> Iterator[Any]:
    for partition in list(table.items.values()):
        if table.range_key_attr is None:
            yield partition
        else:
            yield from list(partition.values())


def _add(by_value: dict[Any, set[ItemKey]], attribute: str, item: Any) -> None:
    value = item.attrs.get(attribute)
    if value is not None and value.type in _KEY_TYPES:
        by_value.setdefault(value, set()).add((item.hash_key, item.range_key))


def _note(table: Any, item: Any) -> None:
    """`item` is now stored in `table` (new, replaced, or changed in place): list it under its values."""
    with _lock:
        for attribute, by_value in _maps.get(table, {}).items():
            _add(by_value, attribute, item)


def _forget(tables: Iterable[Any]) -> None:
    with _lock:
        for table in list(tables):
            _maps.pop(table, None)


def _candidates(table: Any, attribute: str, value: Any) -> list[Any]:
    """The stored items whose `attribute` is `value`: from the map (built on first use), pruned of stale keys."""
    with _lock:
        by_attribute = _maps.setdefault(table, {})
        by_value = by_attribute.get(attribute)
        if by_value is None:
            by_value = by_attribute[attribute] = {}
            for item in _table_items(table):
                _add(by_value, attribute, item)
        keys = by_value.get(value)
        if not keys:
            return []
        found: list[Any] = []
        for key in list(keys):
            item = _stored(table, key)
            current = None if item is None else item.attrs.get(attribute)
            if current is None or current != value:
                keys.discard(key)
            else:
                found.append(item)
        if not keys:
            del by_value[value]
        return found


def _partition(table: Any, hash_value: Any) -> list[Any]:
    partition = table.items.get(hash_value)
    if partition is None:
        return []
    return [partition] if table.range_key_attr is None else list(partition.values())


def _query_candidates(
    table: Any, hash_key: Any, index_name: str | None, hash_key_conditions: list[tuple[str, Any]] | None
) -> list[Any] | None:
    """The items moto's Query may keep (a superset), or None when it must see the whole table."""
    if getattr(_local, "bypass", False):
        return None
    if index_name is None:
        return None if hash_key is None else _partition(table, hash_key)
    if index_name not in {index.name for index in table.all_indexes()} or not hash_key_conditions:
        return None  # moto refuses the unknown index; without a partition key condition, it keeps everything
    attribute, value = hash_key_conditions[0]
    if value.type not in _KEY_TYPES:
        return None
    if attribute == table.hash_key_attr:
        return _partition(table, value)
    return _candidates(table, attribute, value)


def _all_items_order(items: Iterable[Any]) -> list[Any]:
    """The order of moto's `Table.all_items()` (its own sort key)."""
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


@contextmanager
def moto_query() -> Iterator[None]:
    """Within it, this thread's Queries walk the whole table as moto's do (for tests comparing both)."""
    _local.bypass = True
    try:
        yield
    finally:
        _local.bypass = False


def install() -> None:
    from moto.dynamodb.exceptions import ConditionalCheckFailed
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    table_cls: Any = Table
    backend_cls: Any = DynamoDBBackend
    if getattr(table_cls, "_sagepilot_partition_query", False):
        return
    original_query = table_cls.query
    original_all_items = table_cls.all_items
    original_put_item = table_cls.put_item
    original_update_item = backend_cls.update_item

    def all_items(self: Any) -> list[Any]:
        given = getattr(_local, "candidates", None)
        if given is not None and given[0] is self:
            return _all_items_order(given[1])
        return original_all_items(self)  # type: ignore[no-any-return]

    def query(
        self: Any,
        hash_key: Any,
        range_comparison: str | None,
        range_objs: list[Any],
        limit: int,
        exclusive_start_key: dict[str, Any],
        scan_index_forward: bool,
        projection_expressions: list[list[str]] | None,
        index_name: str | None = None,
        consistent_read: bool = False,
        filter_expression: Any = None,
        hash_key_conditions: list[tuple[str, Any]] | None = None,
        range_key_conditions: list[tuple[str, str, list[Any]]] | None = None,
        **filter_kwargs: Any,
    ) -> Any:
        candidates = _query_candidates(self, hash_key, index_name, hash_key_conditions)
        previous = getattr(_local, "candidates", None)
        _local.candidates = None if candidates is None else (self, candidates)
        try:
            return original_query(
                self,
                hash_key,
                range_comparison,
                range_objs,
                limit,
                exclusive_start_key,
                scan_index_forward,
                projection_expressions,
                index_name,
                consistent_read,
                filter_expression,
                hash_key_conditions=hash_key_conditions,
                range_key_conditions=range_key_conditions,
                **filter_kwargs,
            )
        finally:
            _local.candidates = previous

    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = original_put_item(self, *args, **kwargs)
        _note(self, item)
        return item

    def update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            item = original_update_item(self, *args, **kwargs)
        except ConditionalCheckFailed:
            raise  # refused before anything changed
        except Exception:
            # Refused half-way, moto keeps what it applied to the item in place: rebuild the maps when next used.
            _forget(self.tables.values())
            raise
        # The stored item, changed in place (or created): list it under its new values.
        table = self.get_table(args[0] if args else kwargs["table_name"])
        _note(table, item)
        return item

    table_cls.all_items = all_items
    table_cls.query = query
    table_cls.put_item = put_item
    backend_cls.update_item = update_item
    table_cls._sagepilot_partition_query = True
