"""A queue of delayed messages: something to look at again later (SQS DelaySeconds, at most 15 minutes)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import translates_unreachable
from sagepilot.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds
_DELETE_LIMIT = 10  # entries in one DeleteMessageBatch
_DELETE_THREADS = 8


@translates_unreachable
class DelayedQueue:
    def __init__(self, sqs_client: SQSClient, queue_url: str) -> None:
        self._sqs = sqs_client
        self._url = queue_url

    def send_later(self, body: dict[str, Any], delay_seconds: int) -> None:
        """Deliver `body` to the queue's consumer after `delay_seconds` (0-900)."""
        if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"SQS delays are 0-{MAX_DELAY_SECONDS} s, got {delay_seconds}")
        try:
            self._sqs.send_message(
                QueueUrl=self._url, MessageBody=json.dumps(body, sort_keys=True), DelaySeconds=delay_seconds
            )
        except ClientError as exc:
            raise TransientError(f"SendMessage to {self._url} failed: {exc}") from exc

    def messages(self) -> int:
        """How many messages the queue holds, waiting or being processed (`depth`, both counts together)."""
        waiting, in_flight = self.depth()
        return waiting + in_flight

    def depth(self) -> tuple[int, int]:
        """The queue's messages waiting to be received, and those received and being processed (in flight): SQS's
        estimates ApproximateNumberOfMessages and ApproximateNumberOfMessagesNotVisible; delayed ones are not
        counted."""
        try:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        except ClientError as exc:
            raise TransientError(f"GetQueueAttributes of {self._url} failed: {exc}") from exc
        waiting = attributes.get("ApproximateNumberOfMessages", "0")
        in_flight = attributes.get("ApproximateNumberOfMessagesNotVisible", "0")
        return int(waiting), int(in_flight)

    def delete(self, receipt_handles: list[str]) -> None:
        """Delete messages received from the queue (DeleteMessageBatch, 10 a request, in parallel), as Lambda does
        once their batch has succeeded. A message SQS does not delete (its receipt handle expired: it was handed out
        again) stays in the queue, as it would for Lambda."""
        chunks = [receipt_handles[i : i + _DELETE_LIMIT] for i in range(0, len(receipt_handles), _DELETE_LIMIT)]

        def delete(chunk: list[str]) -> None:
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(chunk)
            ]
            try:
                self._sqs.delete_message_batch(QueueUrl=self._url, Entries=entries)
            except ClientError as exc:
                raise TransientError(f"DeleteMessageBatch on {self._url} failed: {exc}") from exc

        if len(chunks) <= 1:
            for chunk in chunks:
                delete(chunk)
            return
        with ThreadPoolExecutor(max_workers=min(_DELETE_THREADS, len(chunks))) as pool:
            list(pool.map(delete, chunks))
