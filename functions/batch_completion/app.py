"""Lambda: `SageMaker Transform Job State Change` -> reports, a bounded retry, or rejections.

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
from sagepilot.events import parse_transform_job_change
from sagepilot.metrics import EmfRecorder, completion_metrics
from sagepilot.observability import logger
from sagepilot.settings import load_settings

settings = load_settings(os.environ)
service = wiring.batch_completion(settings, client)
metrics = EmfRecorder(settings.transform.name_prefix)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        change = parse_transform_job_change(event)
    except MalformedEvent as exc:
        event_id = event.get("id") if isinstance(event, dict) else None  # the event may not be an object at all
        logger.error("dropping a malformed event", extra={"error": str(exc), "id": event_id})
        return {"action": "ignored", "detail": str(exc)}
    outcome = service.handle(change)
    logger.info(
        "transform job handled", extra={"job": outcome.job_name, "action": outcome.action, "detail": outcome.detail}
    )
    completion_metrics(metrics, outcome.action)
    return {"job": outcome.job_name, "action": outcome.action, "detail": outcome.detail}
