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
  batch that read it last, services/holding.py `due_after_batch`, whichever batches held their files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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


# What a held job's batches found as they were held ----------------------------------------------------------
HELD_CLAIMS = "heldClaims"  # the key of a held batch's plan document (held/<part>.json) that records them


def held_claims_record(
    job: str, plan: JobPlan, owners: Mapping[str, str], lost: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """What holding `plan` in the held job `job` found, to keep with the batch's plan once its files are claimed
    (`owners`: each file's owner, this job or another) and the versions it won marked (`lost`: the keys whose
    newer version another job had marked, as (version id, job)). Only what is not `job`'s is listed."""
    return {
        "job": job,
        "others": {f.file_id: owners[f.file_id] for f in plan.all_files if owners.get(f.file_id, job) != job},
        "lost": {key: list(newer) for key, newer in lost.items()},
    }


@dataclass(frozen=True)
class HeldClaims:
    """A released held job's claims and marks as its batches recorded them when they were held (services/holding.py
    steps 4 and 5), so that the release reads none of them back from the state table.

    A claim made for a held job stays its own (no job takes over the claims of a held or releasing job), and a
    claim refused names a job that keeps it: `owners` is what reading the claims at the release would say. A mark
    can move on after it was made, to a newer version of the key in another job (one started alone meanwhile): the
    held job then reads its version, and the completion finds it outdated and publishes the newer one (as for a
    newer version that arrives while a job runs). `marks`: for each version the job won and marked, None, or the
    newer version (and job) that had its key already. Files of batches without a record (their holder died first)
    are absent from both: the release reads their claims and marks."""

    owners: dict[str, str] = field(default_factory=dict)
    marks: dict[str, tuple[str, str] | None] = field(default_factory=dict)


def recorded_claims(job: str, parts: Sequence[tuple[JobPlan, Mapping[str, Any] | None]]) -> HeldClaims:
    """The claims and marks recorded by the held batches `parts` (each plan with its `held_claims_record`, or None)."""
    claims = HeldClaims()
    for plan, record in parts:
        if not record or record.get("job") != job:
            continue
        others: Mapping[str, str] = record.get("others") or {}
        lost: Mapping[str, list[str]] = record.get("lost") or {}
        for f in plan.all_files:
            claims.owners[f.file_id] = str(others.get(f.file_id, job))
        for f in plan.inputs:
            if claims.owners[f.file_id] != job or not f.ordered:
                continue
            newer = lost.get(f.object_id)
            if newer is not None:
                claims.marks[f.file_id] = (str(newer[0]), str(newer[1]))  # (a loss, once seen, stays one)
            else:
                claims.marks.setdefault(f.file_id, None)
    return claims
