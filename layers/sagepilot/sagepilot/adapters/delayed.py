"""A queue of delayed messages: something to look at again later (SQS DelaySeconds, at most 15 minutes)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import translates_unreachable
from sagepilot.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds


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
        """How many messages the queue holds, waiting or being processed (ApproximateNumberOfMessages plus
        ApproximateNumberOfMessagesNotVisible: SQS's estimates; delayed ones are not counted)."""
        try:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        except ClientError as exc:
            raise TransientError(f"GetQueueAttributes of {self._url} failed: {exc}") from exc
        waiting = attributes.get("ApproximateNumberOfMessages", "0")
        in_flight = attributes.get("ApproximateNumberOfMessagesNotVisible", "0")
        return int(waiting) + int(in_flight)
