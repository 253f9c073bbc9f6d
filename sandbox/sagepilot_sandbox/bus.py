"""What every faithful module shares: AWS-shaped events and their delivery through EventBridge's rules.

`deliver_event` routes an event through the default bus's enabled rules, with their patterns, as
EventBridge does (moto's own put_events refuses rules whose target is a Lambda function). A rule that
has a ScheduleExpression and no EventPattern matches no event, as in EventBridge (moto would let it
match every event): `install()` teaches moto's rules the same, so PutEvents agrees.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from moto.events import models as events_models
from moto.events.models import events_backends

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"

_installed = False
# Events too large for EventBridge, which `deliver_event` did not deliver.
undelivered: list[dict[str, Any]] = []


def iso_now() -> str:
    """EventBridge's `time`: ISO 8601 to the second, UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc(value: datetime) -> datetime:
    """moto keeps naive datetimes that mean UTC; the sandbox keeps aware ones."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_seconds(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(value: datetime) -> str:
    """CloudWatch's timestamps in alarm events: `2019-10-01T13:56:40.987+0000`."""
    value = utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def epoch_millis(value: Any) -> int | None:
    return int(utc(value).timestamp() * 1000) if isinstance(value, datetime) else None


def make_event(
    detail_type: str, source: str, account: str, region: str, resources: list[str], detail: dict[str, Any]
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": iso_now(),
        "region": region,
        "resources": resources,
        "detail": detail,
    }


def _is_schedule_only(rule: Any) -> bool:
    return bool(rule.scheduled_expression) and not rule.event_pattern.get_pattern()


def deliver_event(event: dict[str, Any], *, account: str = DEFAULT_ACCOUNT, region: str = DEFAULT_REGION) -> None:
    """Route an event through the default bus's rules, matching each rule's pattern. An event over
    EventBridge's 256 KB is not delivered (a service's event that large never reaches a rule): it is
    kept in `undelivered`, for tests and the sandbox's log to show."""
    from sagepilot_sandbox.moto_patches.api_rules import MAX_EVENT_BYTES, event_size

    if event_size(event) > MAX_EVENT_BYTES:
        undelivered.append(event)
        return
    backend = events_backends[account][region]
    bus = backend.event_buses.get("default")
    if bus is None:
        return
    # moto keeps an event's time as epoch seconds internally and writes it out as ISO 8601.
    internal = dict(event)
    internal["time"] = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    for rule in list(bus.rules.values()):
        if rule.state == "ENABLED" and not _is_schedule_only(rule):
            rule.send_to_targets(dict(internal), transform_input=False)  # type: ignore[arg-type]


def install() -> None:
    """Scheduled rules match no events (moto's Rule matches every event when it has no pattern)."""
    global _installed
    if _installed:
        return
    rule_cls: Any = events_models.Rule
    original = rule_cls.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if _is_schedule_only(self):
            return
        original(self, original_event, transform_input)

    rule_cls.send_to_targets = send_to_targets
    _installed = True
