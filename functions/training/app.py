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
from sagepilot.events import ObjectCreated, is_sqs_batch, parse_training_trigger, queued_messages
from sagepilot.handling import CORRELATION_ID, Dropped, batch_answer, parse_or_drop
from sagepilot.metrics import EmfRecorder
from sagepilot.observability import logger
from sagepilot.settings import load_training_settings

settings = load_training_settings(os.environ)
service = wiring.training(settings, client, metrics=EmfRecorder(settings.name_prefix))


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID)  # none for a settle batch (no `id`)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_sqs_batch(event):
        return batch_answer(service.on_settle_batch(queued_messages(event)))
    trigger = parse_or_drop(parse_training_trigger, event)
    if isinstance(trigger, Dropped):
        return trigger.answer()
    outcome = service.on_upload(trigger) if isinstance(trigger, ObjectCreated) else service.on_job_change(trigger)
    logger.info("training event handled", extra=outcome.as_dict())
    return outcome.as_dict()
