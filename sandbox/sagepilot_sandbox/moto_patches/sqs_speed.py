"""moto's SQS without its work proportional to queue depth (installed by faithful.install()).

Measured (bench/README.md): in moto 5.2.5 every SendMessage computes all queue attributes
(`queue.attributes.get("ContentBasedDeduplication")`), i.e. three scans of every queued message, each
message costing two datetime conversions; every message ReceiveMessage hands out calls
`get_queue_attributes` again (its retention check), so one receive of 10 is 30+ such scans; and
DeleteMessage scans the queue twice in Python (DeleteMessageBatch, twice per entry). With thousands of
S3 events queued, each upload and each receive costs tens to hundreds of milliseconds of the embedded
AWS's single Python process, and a 10,000-file drop slows down quadratically.

This module replaces those scans with equivalent ones (same answers, one clock reading per scan, a
receipt-handle index for deletes, one pass per DeleteMessageBatch), so that the sandbox keeps up with
a 10,000-file drop. Found and measured by the bench suite (bench/README.md). And a queue's attributes are each
computed when read (`queue.attributes` is a read-only mapping with moto's keys, in moto's order, and moto's
values): SendMessage reads only ContentBasedDeduplication, so it no longer scans the queue three times (1.3 ms
of a PUT's 10 ms with 4,000 S3 events queued, and in proportion to the queue), nor does a GetQueueAttributes that
asks for one count.

Deletes replace the queue's list of messages with a new one (as moto's own DeleteMessage does): they do it under
moto's lock of the queue, the one SendMessage appends under, so that a message sent, or another delete, between the
read and the write is not undone (a lost message, or deleted ones back in flight until their visibility timeout:
seen in the drop bench, where 10 such messages held every release of the hold).

It also keeps ReceiveMessage from failing beside other requests: moto reads the queue's set of received
(in-flight) messages while other threads' receives and deletes change it ("Set changed size during iteration",
a 500 that SQS never answers); the set is read from a snapshot.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterator, Mapping
from typing import Any


class _Attributes(Mapping[str, Any]):
    """moto's `Queue.attributes` (the same keys, order and values), each value computed when it is read: the
    message counts among them scan the whole queue."""

    __slots__ = ("_names", "_queue")

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        names = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            names += queue.KMS_ATTRIBUTES
        if queue.policy:
            names.append("Policy")
        if queue.redrive_policy:
            names.append("RedrivePolicy")
        self._names = list(dict.fromkeys(names))

    def __getitem__(self, name: str) -> Any:
        from moto.core.utils import camelcase_to_underscores

        if name not in self._names:
            raise KeyError(name)
        if name == "Policy":
            value = self._queue.policy
        elif name == "RedrivePolicy":
            value = json.dumps(self._queue.redrive_policy)
        else:
            value = getattr(self._queue, camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def install() -> None:
    from moto.core.utils import unix_time, unix_time_millis
    from moto.sqs import models
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    queue_cls: Any = models.Queue
    message_cls: Any = models.Message
    backend_cls: Any = models.SQSBackend
    if getattr(queue_cls, "_bench_fixed", False):
        return
    by_handle: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def messages(self: Any) -> list[Any]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def not_visible(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    def delayed(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def retention_ok(self: Any, queue_name: str, message: Any) -> bool:
        queue = self.get_queue(queue_name)
        return bool(int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time())

    original_mark_received = message_cls.mark_received

    def mark_received(self: Any, visibility_timeout: int | None = None) -> None:
        original_mark_received(self, visibility_timeout)
        by_handle[self.receipt_handle] = self

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:  # (see the module docstring: the list is read, then replaced)
            if receipt_handle in self.deleted_messages:
                return
            message = by_handle.get(receipt_handle)
            if _deleted_before(self, message):
                return
            if message is None or not any(m is message for m in self._messages):
                raise ReceiptHandleIsInvalid()
            self.pending_messages.discard(message)
            self.deleted_messages.update(message.all_receipt_handles)
            self._messages = [m for m in self._messages if m is not message]

    def delete_message_batch(
        self: Any, queue_name: str, receipts: list[dict[str, Any]]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """moto's answer (Successful ids, Failed entries), with one pass over the queue for the batch
        instead of two per entry."""
        queue = self.get_queue(queue_name)
        with queue._messages_lock:  # (see the module docstring: the list is read, then replaced)
            return _delete_batch(queue, receipts)

    def _delete_batch(queue: Any, receipts: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
        present = {id(m) for m in queue._messages}
        success: list[str] = []
        errors: list[dict[str, Any]] = []
        doomed: dict[int, Any] = {}
        for entry in receipts:
            handle = entry["ReceiptHandle"]
            message = by_handle.get(handle)
            if handle in queue.deleted_messages or id(message) in doomed or _deleted_before(queue, message):
                success.append(entry["Id"])
            elif message is not None and id(message) in present:
                doomed[id(message)] = message
                success.append(entry["Id"])
            else:
                errors.append(
                    {
                        "Id": entry["Id"],
                        "SenderFault": True,
                        "Code": "ReceiptHandleIsInvalid",
                        "Message": f'The input receipt handle "{handle}" is not a valid receipt handle.',
                    }
                )
        for message in doomed.values():
            queue.pending_messages.discard(message)
            queue.deleted_messages.update(message.all_receipt_handles)
        if doomed:
            queue._messages = [m for m in queue._messages if id(m) not in doomed]
        return success, errors

    def _deleted_before(queue: Any, message: Any) -> bool:
        """A message deleted, then handed out again by a receive that had read the queue before (a standard queue
        may hand a message out twice; "you may receive a message even after you have deleted it"): deleting it with
        its new receipt handle succeeds, as SQS answers, instead of moto's ReceiptHandleIsInvalid."""
        if message is None or not any(h and h in queue.deleted_messages for h in message.all_receipt_handles):
            return False
        queue.deleted_messages.update(message.all_receipt_handles)
        return True

    def pending_message_groups(self: Any) -> set[str]:
        # tuple() copies the set in one step of the interpreter: no other request's thread changes it meanwhile.
        return {m.group_id for m in tuple(self._pending_messages) if m.group_id is not None}

    queue_cls.moto_attributes = queue_cls.attributes  # (moto's own, for the test that compares)
    queue_cls.attributes = property(_Attributes)
    queue_cls.messages = property(messages)
    queue_cls.pending_message_groups = property(pending_message_groups)
    queue_cls.approximate_number_of_messages_not_visible = property(not_visible)
    queue_cls.approximate_number_of_messages_delayed = property(delayed)
    queue_cls.delete_message = delete_message
    message_cls.mark_received = mark_received
    backend_cls.is_message_valid_based_on_retention_period = retention_ok
    backend_cls.delete_message_batch = delete_message_batch
    queue_cls._bench_fixed = True
