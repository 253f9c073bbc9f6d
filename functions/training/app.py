"""Lambda: a training set uploaded under training/ -> a training job (after its settle delay, for a file
with an ordinary name); a training job finished -> a registered model package version (or a retry, or a
rejection report).

Invoked asynchronously by EventBridge; an exception makes Lambda retry, then the event goes to the
on-failure destination. A malformed event is logged and dropped (retrying cannot fix it). Settle
messages come from its own delayed queue (SQS event source): the partial-batch response sends a message
whose handling failed back to the queue, and its redrive policy to TrainingFailureQueue at last.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepilot import wiring
from sagepilot.adapters.clients import client
from sagepilot.errors import MalformedEvent
from sagepilot.events import ObjectCreated, event_id, is_sqs_batch, parse_training_trigger, queued_messages
from sagepilot.metrics import EmfRecorder
from sagepilot.observability import logger
from sagepilot.settings import load_training_settings

settings = load_training_settings(os.environ)
service = wiring.training(settings, client, metrics=EmfRecorder(settings.name_prefix))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_batch(event):
        failed = service.on_settle_batch(queued_messages(event))
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}
    try:
        trigger = parse_training_trigger(event)
    except MalformedEvent as exc:
        logger.error(
            "dropping a malformed event",
            extra={"error": str(exc), "id": event_id(event)},
        )
        return {"action": "ignored", "detail": str(exc)}
    outcome = service.on_upload(trigger) if isinstance(trigger, ObjectCreated) else service.on_job_change(trigger)
    logger.info("training event handled", extra=outcome.as_dict())
    return outcome.as_dict()
