"""Jobs waiting for transform capacity: which to try first, how long they have waited, what to tell people.

SageMaker refuses a transform job with ResourceLimitExceeded when the account's instances of its type are
all in use (the quota "<type> for transform job usage"). Such a job is not failed: it waits, READY, in the
state table, and is tried again when capacity may be free (a transform job finished, or the periodic sweep).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def oldest_wait_seconds(waiting_since: Iterable[int], now: int) -> int:
    """How long the job refused longest ago has been waiting (0 when none waits)."""
    return max((max(0, now - since) for since in waiting_since), default=0)


def quota_name(instance_type: str) -> str:
    """The Service Quotas entry that caps transform instances of a type."""
    return f"{instance_type} for transform job usage"


def capacity_wait_notice(jobs: list[dict[str, Any]], instance_type: str, refusal: str) -> dict[str, Any]:
    """The notification for jobs that wait for capacity: nothing is lost, and what would start them sooner."""
    return {
        "waitingForCapacity": jobs[:50],
        "jobs": len(jobs),
        "instanceType": instance_type,
        "quota": quota_name(instance_type) if instance_type else "",
        "refusal": refusal[:1000],
        "whatHappens": (
            "Nothing is lost: the jobs wait in the state table (READY) and start, oldest first, when a transform "
            "job finishes or at the next capacity sweep (the stack's CapacitySweepSchedule)."
        ),
        "whatToDo": (
            f"To start them sooner, ask Service Quotas for more '{quota_name(instance_type or '<instance type>')}', "
            "or set the stack's FallbackInstanceType to a type with free quota."
        ),
    }
