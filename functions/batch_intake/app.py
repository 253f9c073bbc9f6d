"""Lambda: a batch of queued S3 `Object Created` events -> transform jobs or rejection reports.

Returns the SQS partial-batch response: only messages whose work failed transiently go back to the
queue (ReportBatchItemFailures).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepilot import wiring
from sagepilot.adapters.clients import client
from sagepilot.events import queued_messages
from sagepilot.handling import batch_answer
from sagepilot.metrics import EmfRecorder
from sagepilot.observability import logger
from sagepilot.settings import load_settings

settings = load_settings(os.environ)
service = wiring.batch_intake(settings, client, metrics=EmfRecorder(settings.transform.name_prefix))


@logger.inject_lambda_context  # an SQS batch: no one correlation id (see sagepilot.handling)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcome = service.handle(queued_messages(event))
    logger.info(
        "batch processed",
        extra={
            "jobsStarted": outcome.jobs_started,
            "jobsExisting": outcome.jobs_existing,
            "jobsWaitingForCapacity": outcome.jobs_waiting_for_capacity,
            "rejected": len(outcome.rejected),
            "ignored": outcome.ignored,
            "retrying": len(outcome.failed_message_ids),
        },
    )
    return batch_answer(outcome.failed_message_ids)
