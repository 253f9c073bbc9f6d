"""Lambda: `SageMaker Transform Job State Change` -> reports, a bounded retry, or rejections; and the
capacity sweep's schedule -> jobs waiting for transform capacity started, oldest first.

Invoked asynchronously by EventBridge; an exception makes Lambda retry, then the event goes to the
on-failure destination.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepilot import wiring
from sagepilot.adapters.clients import client
from sagepilot.errors import MalformedEvent
from sagepilot.events import Scheduled, event_id, parse_completion_trigger
from sagepilot.metrics import EmfRecorder, completion_metrics, sweep_metrics
from sagepilot.observability import logger
from sagepilot.settings import load_settings

settings = load_settings(os.environ)
service = wiring.batch_completion(settings, client)
metrics = EmfRecorder(settings.transform.name_prefix)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        trigger = parse_completion_trigger(event)
    except MalformedEvent as exc:
        logger.error("dropping a malformed event", extra={"error": str(exc), "id": event_id(event)})
        return {"action": "ignored", "detail": str(exc)}
    if isinstance(trigger, Scheduled):
        swept = service.sweep()
        logger.info(
            "capacity sweep",
            extra={"started": swept.started, "waiting": swept.waiting, "oldestWaitSeconds": swept.oldest_wait_seconds},
        )
        sweep_metrics(metrics, len(swept.started), swept.waiting, swept.oldest_wait_seconds)
        return {"action": "swept", "started": swept.started, "waiting": swept.waiting}
    outcome = service.handle(trigger)
    logger.info(
        "transform job handled",
        extra={"job": outcome.job_name, "action": outcome.action, "detail": outcome.detail, "started": outcome.started},
    )
    completion_metrics(metrics, outcome.action, len(outcome.started))
    return {"job": outcome.job_name, "action": outcome.action, "detail": outcome.detail}
