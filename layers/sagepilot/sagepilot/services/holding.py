"""The start-up hold (policy in domain/hold.py): a busy group's files gather in one held job.

Each batch's planned jobs of a group are triaged: the first invocation to record a start for the group (one
conditional write on `group#<group>`, `lastStartedAt` older than HoldSeconds) starts them as they are; the
others hold them. Holding a planned job `P`, each step safe to repeat:
(1) the group's open held job `X` (`group#<group>.openJob`), or a new one: its record created HELD (listed
    under kind `held`, where the periodic sweep sees it) and made the open one by a conditional write (of
    concurrent openers one wins; the others' records are closed EMPTY); the opener sends itself a delayed
    message to release it (on the hold release queue, not the intake queue: see `release`);
(2) `P`'s plan kept in `X`'s folder (`held/<P>.json`);
(3) `P` added to `X`'s `heldParts`, conditional on `X` still HELD, holding the same kind of work, with room;
(4) `P`'s files claimed for `X`, each transaction of claims with a check that `X` is still HELD;
(5) the newest versions of the files `X` won in (4) marked as their keys' newest taken by a job
    (`latest#<bucket>/<key>`, as JobLauncher._finalise does): the writes (a transaction per 100 files, ~50 for a
    full job) are spread over the upload's batches instead of lengthening the release. A version that loses to a
    newer one is not acted on here: the release settles it;
(6) what (4) and (5) found (the files another job owns, the keys another job had a newer version of) kept with
    `P`'s plan (domain/hold.py `held_claims_record`), so that `X`'s release reads neither the claims nor the marks
    back (two reads per 100 files); a batch whose holder died before (6) has its files' claims and marks read.
By (4), a claim for `X` exists only if `P` was in `X` before `X` was sealed: `X` reads every file claimed for it
(a file of `P` that another job won is that job's), and a claim refused because `X` was sealed meanwhile leaves
the file to `P` started alone; so (5) marks only versions that `X`'s release will settle. (3) refused: `X` full
is released now and a new one holds `P`; `X` no longer open is replaced once; other work held in `X` (another
model or content type) sends `P` alone.

Releasing `X` (its delayed message, or the sweep): not before it is due (`release_due`: the group quiet, or
the hold over; the message is sent again for the rest); then sealed (HELD -> CLAIMING: `heldParts` is fixed),
closed as the group's open job, the group's start recorded, and `X` planned from its parts and started like
any job (JobLauncher.start_held: from the records of (6), reading only what a batch did not record). A
releaser that dies after sealing leaves `X` CLAIMING and listed: `resume` (the sweep) finishes it once the claim
timeout has passed, and closes it as the group's open job if it was not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sagepilot.adapters.delayed import MAX_DELAY_SECONDS, DelayedQueue
from sagepilot.adapters.s3 import DataBucket
from sagepilot.adapters.state import CLAIMING, EMPTY, HELD, READY, StateTable
from sagepilot.domain.hold import (
    HELD_CLAIMS,
    HELD_KIND,
    Decision,
    decide,
    held_claims_record,
    hold_key,
    hold_over,
    release_due,
)
from sagepilot.domain.layout import held_part_key, job_folder
from sagepilot.domain.names import transform_job_name
from sagepilot.domain.transform_plan import JobPlan
from sagepilot.events import release_held_job
from sagepilot.observability import logger
from sagepilot.services.jobs import JobLauncher
from sagepilot.settings import Settings

_HELD_TAG = "held"  # the first part of a held job's identity (its name's digest)


@dataclass
class Triage:
    """A group's planned jobs of one batch: those to start now, and those held (plan name -> held job)."""

    start: list[JobPlan] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    released: dict[str, str] = field(default_factory=dict)  # held jobs released now (the hold over), and how


class GroupHold:
    def __init__(
        self,
        settings: Settings,
        state: StateTable,
        bucket: DataBucket,
        launcher: JobLauncher,
        releases: DelayedQueue | None,
        intake: DelayedQueue | None,
    ) -> None:
        """`releases`: where the delayed release messages go; `intake`: the intake's queue of files, whose backlog
        a release waits for. Both None (the completion's sweep): releases only what is due, sends nothing."""
        self._settings = settings
        self._state = state
        self._bucket = bucket
        self._launcher = launcher
        self._releases = releases
        self._intake = intake

    @property
    def enabled(self) -> bool:
        return self._settings.hold.enabled

    # Holding -----------------------------------------------------------------------------------------
    def group_records(self, groups: list[str]) -> dict[str, dict[str, Any]]:
        """What the hold knows of these groups (one read for a batch's groups), for `triage`."""
        return self._state.group_records(groups) if self.enabled and groups else {}

    def triage(
        self, group: str, plans: list[JobPlan], known: dict[str, Any] | None = None, *, sent_at: float | None = None
    ) -> Triage:
        """Start or hold each of a group's planned jobs (domain/hold.py `decide`). `known`: the group's record
        as read for the batch (`group_records`); when it shows a recent start, no write is needed to hold.
        `sent_at`: when the newest of these files reached the intake queue (None: now), whence the quiet counts."""
        triage = Triage()
        hold = self._settings.hold
        if not plans or not hold.enabled:
            triage.start = list(plans)
            return triage
        recent = known is not None and int(known.get("lastStartedAt", 0)) > self._state.now() - hold.hold_seconds
        starts, record = (False, known or {}) if recent else self._state.reserve_start(group, hold.hold_seconds)
        open_job = str(record.get("openJob", ""))
        if starts and not open_job:
            triage.start = list(plans)  # a quiet group: at once
            return triage
        max_files = self._settings.transform.max_files_per_job
        now = self._state.now()
        arrived = now if sent_at is None else min(now, int(sent_at))  # (never later than now: clocks differ)
        for plan in plans:
            # The group started recently, or its hold is over while work is held (`starts`): then this batch
            # joins the held work, and it all goes now, as one job.
            decision = decide(files=len(plan.inputs), max_files=max_files, group_started_recently=True, settings=hold)
            held = self._hold(plan, open_job, arrived) if decision is Decision.HOLD else ""
            if held:
                triage.held[plan.job_name] = open_job = held
            else:
                triage.start.append(plan)
        if starts and open_job:
            triage.released[open_job] = self.release(open_job, force=True)
        return triage

    def _hold(self, plan: JobPlan, open_job: str, arrived: int) -> str:
        """Add `plan` to the group's open held job (opening one if there is none; one no longer open is
        replaced once, a full one released first): the held job, or "" when `plan` is to start alone (any of
        its files already claimed for a held job stay that job's, which lists them)."""
        key = hold_key(plan)
        max_files = self._settings.transform.max_files_per_job
        for _ in range(2):
            if not open_job:
                open_job = self._open(plan, arrived)
                if not open_job:
                    return ""
            part_key = held_part_key(plan.group, open_job, plan.job_name)
            document = plan.to_record()
            self._bucket.put_json(part_key, document)
            added = self._state.add_held(
                open_job, plan.job_name, len(plan.all_files), hold_key=key, max_files=max_files, arrived_at=arrived
            )
            record = {} if added else (self._state.get_job(open_job) or {})
            if added or (record.get("status") == HELD and plan.job_name in (record.get("heldParts") or ())):
                owners = self._state.claim_held(open_job, plan.group, [f.file_id for f in plan.all_files])
                if owners is None:
                    return ""  # released meanwhile: the files it did not claim go in a job of their own
                # (5) Marked now, while the upload goes on, not at the release. What loses to a newer version is
                # settled by the release's _finalise (from the record of (6)); a repeat changes nothing.
                lost = self._launcher.mark_newest(open_job, plan, owners)
                # (6) What (4) and (5) found, kept with the plan: the release need not read it back (a holder that
                # dies before this leaves the plan without it, and the release reads this batch's claims and marks).
                self._bucket.put_json(
                    part_key, {**document, HELD_CLAIMS: held_claims_record(open_job, plan, owners, lost)}
                )
                for other in sorted({o for o in owners.values() if o != open_job}):
                    self._launcher.resume(other)  # a job that won some files first: make sure it is on its way
                return open_job
            if record.get("status") == HELD and record.get("holdKey") != key:
                return ""  # other work (another model or content type) is held: this goes alone
            if record.get("status") == HELD:
                self.release(open_job, force=True)  # full: it goes now, and a new one holds this
            self._state.close_held(plan.group, open_job)
            open_job = ""
        return ""

    def _open(self, plan: JobPlan, arrived: int) -> str:
        """The group's open held job: a new one, unless another invocation opened one first. Its name is
        fixed when it opens (named from `plan` and the time: a group opens a new one after each release)."""
        now = self._state.now()
        name = transform_job_name(
            self._settings.transform.name_prefix, plan.group, [_HELD_TAG, plan.job_name, str(now)]
        )
        record = self._state.create_job(
            name,
            {
                "status": HELD,
                "kind": HELD_KIND,
                "group": plan.group,
                "bucket": plan.bucket,
                "planKey": f"{job_folder(plan.group, name)}plan.json",
                "modelPackageVersion": plan.model.version,
                "holdKey": hold_key(plan),
                "heldFiles": 0,
                "lastArrivalAt": arrived,
            },
        )
        if record["status"] != HELD:
            return ""  # (the same second's opener released it already: the caller opens again or goes alone)
        winner = self._state.open_held(plan.group, name)
        if winner != name:
            self._state.transition(name, expected=[HELD], to=EMPTY, remove=("kind",))  # lost the race: unused
            return winner
        if self._releases is not None:
            self._releases.send_later(release_held_job(name), self._settings.hold.quiet_seconds)
        logger.info("held job opened", extra={"job": name, "group": plan.group})
        return name

    # Releasing ---------------------------------------------------------------------------------------
    def release(
        self,
        job_name: str,
        *,
        force: bool = False,
        sweeping: bool = False,
        own_messages: int = 0,
        queue_seen_empty: bool = False,
        look_again: bool = True,
    ) -> str:
        """Release a held job when it is due (or now, `force`; `own_messages`: how many of the intake queue's
        messages are the caller's batch, in flight but planned already); what happened ("released": its transform
        job was created now), for the outcome and the log. Sent again (with a queue) when not due yet, unless
        `look_again` is False (the caller is not its release message: that one is still on its way);
        `queue_seen_empty`: the caller has just seen the intake queue hold nothing but its own batch. A job
        released before is left to `resume` (done, or its releaser's).

        The intake queue's backlog is files only: release messages have a queue of their own. Were they counted
        (as they were when they shared the intake queue), many groups held at once would each see the others'
        release messages as a backlog, and wait for one another until the hold's end."""
        record = self._state.get_job(job_name)
        if record is None:
            return "unknown"
        status = record["status"]
        if status in (CLAIMING, READY):
            self._state.close_held(str(record["group"]), job_name)  # (its releaser may have died before it did)
            self._launcher.resume(job_name)
            return "resumed"
        if status != HELD:
            return "done"
        group = str(record["group"])
        now = self._state.now()
        if not force:
            opened = int(record["createdAt"])
            started = int(self._state.group_record(group).get("lastStartedAt", 0))
            hold = self._settings.hold
            due = release_due(
                opened_at=opened,
                last_arrival_at=int(record.get("lastArrivalAt", opened)),
                last_started_at=started,
                settings=hold,
            )
            ends = hold_over(opened_at=opened, last_started_at=started, settings=hold)
            if sweeping:
                # The sweep cannot see the intake queue's backlog: it releases what its message did not, once
                # the hold is over (a lost or given-up message), never earlier than the message would.
                due = ends
            if now < due:
                if look_again:
                    self._later(job_name, due - now)
                return "not due"
            backlog = not queue_seen_empty and self._intake is not None and self._intake.messages() > own_messages
            if now < ends and backlog:
                if not look_again:
                    return "backlog"
                # Quiet only as far as the intake has planned: files still queued, or in a batch another
                # invocation is planning (in flight), may be the group's; `own_messages`, the caller's own batch
                # (this release among them), are done with. Looked at again soon (a quarter of the quiet time):
                # once the backlog is planned, the quiet time counts.
                self._later(job_name, min(max(1, hold.quiet_seconds // 4), ends - now))
                return "backlog"
        if not self._state.transition(job_name, expected=[HELD], to=CLAIMING, claimingSince=now):
            return "released elsewhere"
        self._state.close_held(group, job_name)
        self._state.started_now(group)
        sealed = self._state.get_job(job_name)
        if sealed is None or sealed["status"] != CLAIMING:
            return "released elsewhere"
        launched = self._launcher.start_held(job_name, sealed)
        if launched is None:
            return "released: nothing left to run"  # every file it held went to other jobs
        if launched.refused is not None:
            return "released: waiting for capacity"
        return "released" if launched.created else "released: not started yet"

    def due_after_batch(self, done: list[str], *, undeletable: int = 0) -> list[str]:
        """The held jobs to release now, of every group, as an intake batch ends: those due (their groups quiet) when
        the intake queue holds nothing but this batch's messages, all handled: `done` (their receipt handles) and
        `undeletable` more (messages that cannot be deleted here, left to Lambda). The batch that plans a burst's
        last files releases the quiet groups at once (`release(..., queue_seen_empty=True, look_again=False)`),
        rather than at their release messages' next look (up to a quarter of the quiet time later); otherwise they
        are left to their messages.

        Of batches ending side by side, each sees the others' messages in flight, planned or not: so a batch that
        sees messages in flight besides its own deletes its own first (they are done with: what Lambda does right
        after) and looks again. Whichever looks last then finds the others' messages gone, and releases the quiet
        groups of all of them (a batch that saw another in flight released nothing). A message still in flight
        after that is being planned, or failed: its batch looks when it ends, or its group waits for its release
        message."""
        own = len(done) + undeletable
        if not self.enabled or not own or self._intake is None:
            return []
        waiting, in_flight = self._intake.depth()
        if waiting:
            return []  # files queued: a batch to come reads them, and looks then
        if in_flight > own:
            if not done:
                return []
            self._intake.delete(done)
            waiting, in_flight = self._intake.depth()
            if waiting or in_flight > undeletable:
                return []
        names = self._state.held_jobs()
        if not names:
            return []
        records, groups = self._read_held(names)
        now = self._state.now()
        due = []
        for job in names:
            record = records.get(job)
            if record is None or record.get("status") != HELD:
                continue  # released meanwhile (by its message or another batch), or releasing
            opened = int(record["createdAt"])
            when = release_due(
                opened_at=opened,
                last_arrival_at=int(record.get("lastArrivalAt", opened)),
                last_started_at=int(groups.get(str(record.get("group")), {}).get("lastStartedAt", 0)),
                settings=self._settings.hold,
            )
            if now >= when:
                due.append(job)
        return due

    def _read_held(self, names: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Held jobs' records and their groups' records, read together: two requests however many there are."""
        records = self._state.get_jobs(names)
        groups = self._state.group_records(sorted({str(r["group"]) for r in records.values() if r.get("group")}))
        return records, groups

    def _later(self, job_name: str, seconds: int) -> None:
        if self._releases is not None:
            self._releases.send_later(release_held_job(job_name), max(1, min(seconds, MAX_DELAY_SECONDS)))

    def sweep(self) -> list[str]:
        """The periodic pass over held jobs: release those whose hold is over (their message lost, or given up),
        finish those whose releaser died. The names released."""
        names = self._state.held_jobs()
        if not names:
            return []
        # Every held job's record and its group's, read together (not two reads per held job: one is open per busy
        # group, and most are not due): one still HELD whose hold is not over is left to its message; only the
        # others go through `release`.
        records, groups = self._read_held(names)
        now = self._state.now()
        released = []
        for name in names:
            record = records.get(name)
            if record is not None and record.get("status") == HELD:
                group = groups.get(str(record.get("group")), {})
                ends = hold_over(
                    opened_at=int(record["createdAt"]),
                    last_started_at=int(group.get("lastStartedAt", 0)),
                    settings=self._settings.hold,
                )
                if now < ends:
                    continue
            if self.release(name, sweeping=True) == "released":
                released.append(name)
        return released
