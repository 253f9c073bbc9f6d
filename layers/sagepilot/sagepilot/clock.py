"""The clock: the one place that reads the time, and the one format of the timestamps we write.

Decisions (domain/) never read the time: services take it from here (or from a clock they are given, so
that tests can move it) and pass it down. Every timestamp in a report or record is ISO 8601 in UTC to
the second, with its offset: `2026-12-05T10:15:41+00:00`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def epoch() -> float:
    """Seconds since the epoch, now."""
    return time.time()


def timestamp(at: float) -> str:
    """`at` (seconds since the epoch) as our reports and records write it."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def utc_now() -> str:
    """Now, as our reports and records write it."""
    return timestamp(epoch())
