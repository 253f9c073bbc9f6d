"""The start-up hold: a busy group's files gather in one held job instead of a job per intake batch.

Every transform job pays SageMaker's start-up (minutes of instance time) however few files it reads, so a
group whose files arrive over several batches should not get a job per batch. The policy (pure, used by
services/holding.py; measured in `make limits`, docs/limits.md "A start-up hold"):

- **Who is held** (`decide`): a group that started a job less than `hold_seconds` ago (`HoldSeconds`, by
  default SageMaker's start-up time: a job started within it has not even begun to read) holds its new
  work; a group that has not (a quiet group) starts at once, so its latency stays the batching window.
  Work that fills a job (`MaxFilesPerJob`) is never held: it gains nothing from waiting.
- **Where held work goes**: into the group's one open held job (its files claimed for it at once, one
  write per file; no plan, manifest or start per batch), compatible work only (`hold_key`: the same
  model, content type, compression, instance type and input folder), while it has room.
- **When it is released** (`release_due`): once the group has been quiet for `quiet_seconds`
  (`HoldQuietSeconds`: no file of it reached the intake queue since the newest one held, and no other message is
  in the intake queue, waiting or in a batch being planned, where its next files may be), or when the hold ends
  (`hold_seconds` after the group's last start), whichever comes first. The quiet counts from when the newest
  held file reached the queue (SQS's SentTimestamp), not from when a batch was planned: after a burst, a group
  that went quiet while the intake was still reading its backlog is released as soon as the backlog is read (by the
  batch that read it last, services/holding.py `due_planned`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sagepilot.domain.coalescing import merge_key
from sagepilot.domain.names import digest
from sagepilot.domain.transform_plan import JobPlan

HELD_KIND = "held"  # the state table's ByKindAge partition of open (and releasing) held jobs


@dataclass(frozen=True)
class HoldSettings:
    hold_seconds: int  # 0: no hold (every batch starts its own jobs)
    quiet_seconds: int

    @property
    def enabled(self) -> bool:
        return self.hold_seconds > 0


class Decision(StrEnum):
    START = "start"  # start a job now (the group is quiet, or the work fills a job)
    HOLD = "hold"  # add the work to the group's open held job


def decide(*, files: int, max_files: int, group_started_recently: bool, settings: HoldSettings) -> Decision:
    """Whether one planned job's work starts now or waits in its group's held job."""
    if not settings.enabled or not group_started_recently or files >= max_files:
        return Decision.START
    return Decision.HOLD


def hold_key(plan: JobPlan) -> str:
    """What held work must share to be one transform job (coalescing.merge_key), as a short digest."""
    return digest(merge_key(plan))


def hold_over(*, opened_at: int, last_started_at: int, settings: HoldSettings) -> int:
    """When the hold ends: `hold_seconds` after the group's last start (after the job opened if unknown)."""
    return (last_started_at if last_started_at > 0 else opened_at) + settings.hold_seconds


def release_due(*, opened_at: int, last_arrival_at: int, last_started_at: int, settings: HoldSettings) -> int:
    """When (epoch seconds) a held job is released: the group quiet for `quiet_seconds` since the newest file
    held reached the intake queue (`last_arrival_at`), or the hold over, whichever comes first. (Files still
    queued are not quiet: while the intake queue holds other messages, waiting or in flight, the release waits,
    at most until the hold's end; see services/holding.py.)"""
    quiet = last_arrival_at + settings.quiet_seconds
    return min(quiet, hold_over(opened_at=opened_at, last_started_at=last_started_at, settings=settings))
