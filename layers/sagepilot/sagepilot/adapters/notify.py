"""Notifications to the stack's SNS topic."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import translates_unreachable
from sagepilot.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

_MAX_SUBJECT = 100


@translates_unreachable
class Notifier:
    def __init__(self, sns_client: SNSClient, topic_arn: str) -> None:
        self._sns = sns_client
        self._topic = topic_arn

    def publish(self, subject: str, message: dict[str, Any]) -> None:
        # SNS subjects: ASCII, no line breaks, at most 100 characters.
        clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in subject)[:_MAX_SUBJECT]
        try:
            self._sns.publish(
                TopicArn=self._topic,
                Subject=clean,
                Message=json.dumps(message, indent=2, sort_keys=True, default=str),
            )
        except ClientError as exc:
            raise TransientError(f"publishing to {self._topic} failed: {exc}") from exc
