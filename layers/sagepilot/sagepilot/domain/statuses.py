"""The statuses the state table records for a job, and the results the services report for an event.

Each status is a `StrEnum` member, so it *is* the string stored in DynamoDB, compared with what a read
returns, written into reports and logs: `JobStatus.READY == "READY"`, `f"{JobStatus.READY}"` and
`json.dumps(JobStatus.READY)` give exactly the text stored before they were typed. What a service reports
for one event (its outcome's `result`) is a `Literal` type: plain strings, and mypy refuses any other word.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class JobStatus(StrEnum):
    """A batch transform job's record: CLAIMING -> READY -> STARTED -> COMPLETED | FAILED | SPLIT | REPLANNED,
    a waiting READY job MERGED into another, a group's HELD job (then CLAIMING when released), or EMPTY when
    every input turned out to belong to other jobs
    (adapters/state.py tells the whole story)."""

    CLAIMING = "CLAIMING"
    READY = "READY"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EMPTY = "EMPTY"
    # Failed for a reason one input can cause; its inputs were handed to two smaller jobs (`children`).
    SPLIT = "SPLIT"
    # Its model package version was no longer Approved when it was about to start; planned again on the
    # group's newest Approved version (`replannedAs`).
    REPLANNED = "REPLANNED"
    # It waited and was merged, before it started, into a job holding the inputs of several waiting jobs of
    # its group (`mergedInto`, domain/coalescing.py); its claims moved to that job.
    MERGED = "MERGED"
    # A group's open held job (domain/hold.py): its group's held files are claimed for it as they arrive;
    # released (sealed: CLAIMING, then READY like any job) when the group has been quiet a while.
    HELD = "HELD"


def carried_on(status: JobStatus, *, listed: bool, claimed_recently: bool = False) -> bool:
    """Whether a job's inputs reach an outcome without their messages coming again: the job started or ended,
    handed its inputs on (split, planned again, merged), waits READY in a list that completions and the
    capacity sweep serve (`listed`: it carries a waiting `kind`), or is CLAIMING for less than the claim timeout
    (`claimed_recently`: the invocation claiming it is still at work, and its own messages finish it). A READY
    job in no list, or one CLAIMING for longer, moves only when its starter's messages come again; a listed
    CLAIMING job (a merge, a released held job) is finished by the sweep. A HELD job is released by its delayed
    message or the sweep."""
    if status is JobStatus.READY:
        return listed
    if status is JobStatus.CLAIMING:
        return claimed_recently or listed
    return True


class TrainingStatus(StrEnum):
    """A training job's record (STARTED -> REGISTERING -> REGISTERED, or FAILED), a data version waiting
    for its folder's marker (NEEDS_MARKER), and a folder's "upload the marker" notice (NOTICE_*)."""

    STARTED = "STARTED"
    REGISTERING = "REGISTERING"
    REGISTERED = "REGISTERED"
    FAILED = "FAILED"
    NEEDS_MARKER = "NEEDS_MARKER"
    NOTICE_PENDING = "NOTICE_PENDING"
    NOTICE_SENT = "NOTICE_SENT"


# What a rollout event did: changed the endpoint (acted), found nothing to do yet (waiting), left it to the
# handler that holds the endpoint's lease (deferred), was not ours (ignored), or could not be used (invalid).
RolloutResult = Literal["acted", "waiting", "deferred", "ignored", "invalid"]

# What a training event did (services.training.TrainingOutcome.action).
TrainingAction = Literal[
    "started", "exists", "ignored", "settling", "waiting", "rejected", "registered", "retried", "failed"
]

# What a batch transform job's completion did (services.batch_completion.CompletionOutcome.action): "waiting",
# its retry waits for capacity; "replanned", its retry runs on the group's newest Approved version; "read
# again", keys changed under the job and its inputs run again from the claimed versions.
CompletionAction = Literal[
    "ignored", "duplicate", "reported", "retried", "waiting", "rejected", "split", "replanned", "read again"
]
