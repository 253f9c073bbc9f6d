"""Lambda: model approvals, endpoint state changes, rollout alarms, operator commands and the periodic
schedule -> one reconcile move per endpoint (create, canary step, promote, roll back, or wait).

Invoked asynchronously by EventBridge; an exception makes Lambda retry, then the event goes to the
on-failure destination. A malformed event is logged and dropped (retrying cannot fix it).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sagepilot import wiring
from sagepilot.adapters.clients import client
from sagepilot.events import parse_rollout_trigger
from sagepilot.handling import CORRELATION_ID, Dropped, parse_or_drop
from sagepilot.metrics import EmfRecorder
from sagepilot.observability import logger
from sagepilot.settings import load_rollout_settings

settings = load_rollout_settings(os.environ)
service = wiring.rollouts(settings, client, metrics=EmfRecorder(settings.name_prefix))


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    trigger = parse_or_drop(parse_rollout_trigger, event)
    if isinstance(trigger, Dropped):
        return trigger.answer("result")
    return {"outcomes": [outcome.as_dict() for outcome in service.handle(trigger)]}
