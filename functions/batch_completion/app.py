"""Lambda: `SageMaker Transform Job State Change` -> reports, a bounded retry, or rejections; and the
capacity sweep's schedule -> jobs waiting for transform capacity started, oldest first.

Invoked asynchronously by EventBridge; an exception makes Lambda retry, then the event goes to the
on-failure destination. A malformed event is logged and dropped (retrying cannot fix it).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepilot import wiring
from sagepilot.adapters.clients import client
from sagepilot.events import Scheduled, parse_completion_trigger
from sagepilot.handling import CORRELATION_ID, Dropped, parse_or_drop
from sagepilot.metrics import EmfRecorder
from sagepilot.observability import logger
from sagepilot.settings import load_settings

settings = load_settings(os.environ)
service = wiring.batch_completion(settings, client, metrics=EmfRecorder(settings.transform.name_prefix))


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    trigger = parse_or_drop(parse_completion_trigger, event)
    if isinstance(trigger, Dropped):
        return trigger.answer()
    if isinstance(trigger, Scheduled):
        swept = service.sweep()
        logger.info(
            "capacity sweep",
            extra={"started": swept.started, "waiting": swept.waiting, "oldestWaitSeconds": swept.oldest_wait_seconds},
        )
        return {"action": "swept", "started": swept.started, "waiting": swept.waiting}
    outcome = service.handle(trigger)
    logger.info(
        "transform job handled",
        extra={"job": outcome.job_name, "action": outcome.action, "detail": outcome.detail, "started": outcome.started},
    )
    return {"job": outcome.job_name, "action": outcome.action, "detail": outcome.detail}
