"""What every Lambda handler does alike: read its event or drop it with a reason, and answer in one shape.

A handler is thin: `parse_or_drop` reads the event, its service does the work (and emits the metrics: each
service takes a `Recorder`), the handler answers. An EventBridge event that cannot be read is logged and
dropped, not raised: retrying cannot fix it, and the on-failure destination is for events whose handling
failed. The answers:

    an EventBridge event   the outcome as a JSON object: what was done under the outcome's own word
                           (`action`; the rollout's outcomes say `result`) and why under `detail`
    a dropped event        the same: {"action" | "result": "ignored", "detail": what was wrong}
    an SQS batch           Lambda's partial-batch response, {"batchItemFailures": [{"itemIdentifier": id}]}:
                           only those messages go back to the queue (ReportBatchItemFailures)

Each handler's log lines carry the event's `id` as `correlation_id` (`CORRELATION_ID`, given to powertools'
`inject_lambda_context`). An SQS batch has no one id (its messages each have their own), so a batch's lines
carry none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools.logging import correlation_paths

from sagepilot.errors import MalformedEvent, UnrelatedEvent
from sagepilot.events import event_id
from sagepilot.observability import logger

T = TypeVar("T")

IGNORED = "ignored"
# Where an EventBridge event keeps its id (every event the functions take from EventBridge, S3's included).
CORRELATION_ID = correlation_paths.EVENT_BRIDGE


@dataclass(frozen=True)
class Dropped:
    """A malformed event, logged and dropped; `detail` says what was wrong with it."""

    detail: str

    def answer(self, word: str = "action") -> dict[str, str]:
        """The handler's answer, under the word its outcomes use for what was done."""
        return {word: IGNORED, "detail": self.detail}


def parse_or_drop(parse: Callable[[dict[str, Any]], T], event: dict[str, Any]) -> T | Dropped:
    """The event as `parse` reads it; a MalformedEvent is logged as an error (an UnrelatedEvent as information),
    with the event's id, and comes back as Dropped."""
    try:
        return parse(event)
    except UnrelatedEvent as exc:
        logger.info(
            "ignoring an event about nothing this function manages", extra={"why": str(exc), "id": event_id(event)}
        )
        return Dropped(str(exc))
    except MalformedEvent as exc:
        logger.error("dropping a malformed event", extra={"error": str(exc), "id": event_id(event)})
        return Dropped(str(exc))


def batch_answer(failed_message_ids: Iterable[str]) -> dict[str, list[dict[str, str]]]:
    """Lambda's SQS partial-batch response: these messages go back to the queue, the others are deleted."""
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed_message_ids]}
