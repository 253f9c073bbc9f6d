"""Launching transform jobs so that every input version ends up in exactly one of them.

launch(plan):  record the job (CLAIMING) and its candidate inputs, claim each input for it,
               keep the inputs it won (READY), then create the Model and the transform job
               (STARTED). Every step is safe to repeat; "already exists" is success.
               An input is only read if it is the newest version of its key that any job took (the
               state table's `latest#<bucket>/<key>`, a conditional write): an older version seen
               late is recorded as superseded by the newer one and its job, and not run. A held job's
               marks are made as its batches are held (services/holding.py): its release (start_held)
               reads them and writes only those missing or outdated.
A group may run at most MaxConcurrentJobsPerGroup jobs at once (0: no limit): a job beyond it waits,
READY, listed in the state table's index under `waiting#<group>`, and `start_waiting` (called when
one of the group's jobs finishes) starts it. Nothing is dropped and no message waits in the queue.
A job SageMaker refuses for lack of instances (ResourceLimitExceeded, the fallback type too) waits the
same way, READY under `waiting-capacity`; `start_parked` (called by every transform job completion and by
the periodic sweep) starts them in the scheduler's order (domain/scheduler.py: oldest first within a group,
then the oldest waiting head of a group other than the one served last) and stops at the first refusal,
until the next chance. A job about to start while an older job of its group waits for capacity does not ask
SageMaker: it waits behind it.

Coalescing (`_coalesce`, policy in domain/coalescing.py): when a waiting job gets its turn (start_parked,
start_waiting), the other waiting jobs of its group that would make the same transform job join it, oldest
first within MaxFilesPerJob, and one merged job (named from them) is started instead. The steps, each safe to
repeat or to race: (1) the merged record, CLAIMING, `mergedFrom` its candidates, listed as waiting for capacity;
(2) each candidate READY -> MERGED (`mergedInto`), in a transaction that checks the merged job is still
CLAIMING and not sealed, and only if no starter holds a lease on it; (3) the merged job sealed: its sources
are settled; (4) their claims moved to it (conditional on the source owning them), the job finalised READY,
the sources' reports `Merged`; then it starts (a refusal parks it like any job). A merge whose handler died
is finished from (3) on by `resume` once its claim timeout passed (the periodic sweep sees it listed).
Before CreateTransformJob every start takes a lease on the READY record (`startingToken`): a job is either
created alone or merged, never both; a refused start releases its lease.

resume(name):  finish a job another invocation left behind: READY ones are started, CLAIMING
               ones older than the claim timeout (their handler is certainly dead) are
               finalised from their stored candidates and claims, then started.

A job that starts late (it waited for a slot or for capacity, it is a retry, a piece of a split job, or
a redelivered batch's) first checks that its model package version is still Approved (one
DescribeModelPackage): if it was rejected meanwhile, the job is planned again on the group's newest
Approved version (a job named from it and the model, taking its claims over, reading the same copies),
or, with none left (or none accepting the content type), its files are rejected (NO_APPROVED_MODEL,
CONTENT_TYPE_NOT_SUPPORTED). The same check refuses a model whose inference image is outside the stack's
ImageRepositoriesAllowed (the allow-list may have changed since planning): a newest Approved version with
an allowed image takes the job over, otherwise its files are rejected (MODEL_IMAGE_NOT_ALLOWED). The new
job is launched before the old record moves (REPLANNED), so a handler that dies in between leaves the old
job waiting, and the next pass does the same again.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import GroupNotFound, ModelRegistry
from sagepilot.adapters.s3 import DataBucket
from sagepilot.adapters.sagemaker import SageMaker
from sagepilot.adapters.state import (
    CAPACITY_KIND,
    CLAIMING,
    EMPTY,
    FAILED,
    MERGED,
    READY,
    REPLANNED,
    STARTED,
    StateTable,
    waiting_kind,
)
from sagepilot.clock import timestamp
from sagepilot.domain.capacity import oldest_wait_seconds
from sagepilot.domain.coalescing import Candidate, combine, merge_set, mergeable, merged_plan
from sagepilot.domain.failures import group_deleted_rejection, image_not_allowed_rejection, withdrawn_model_rejection
from sagepilot.domain.hold import HELD_CLAIMS, HELD_KIND, recorded_claims
from sagepilot.domain.images import images_not_allowed
from sagepilot.domain.layout import Rejection, held_part_key, rejected_report_key
from sagepilot.domain.names import attempt_name, split_attempt
from sagepilot.domain.reports import job_summary, rejection_report, superseded_only_summary
from sagepilot.domain.scheduler import WaitingJob, group_key, may_try_now, start_order
from sagepilot.domain.statuses import JobStatus, carried_on
from sagepilot.domain.transform_plan import (
    InputFile,
    JobPlan,
    Newer,
    plan_from_record,
    replan,
    settle,
    transform_job_request,
)
from sagepilot.errors import CapacityError
from sagepilot.observability import logger
from sagepilot.settings import Settings

# Parked jobs one call of `start_parked` tries at most (each costs ~5 AWS calls): keeps a completion or a
# sweep well inside the function's timeout when a raised quota frees room for many; the rest go next time.
MAX_STARTS_PER_SWEEP = 100
# How many of the stack's latest transform jobs the scheduler's turn looks back on (domain/scheduler.py): with 1,
# every group waits at most one turn of each other waiting group, and the oldest head goes first.
SERVED_WINDOW = 1
# Waiting jobs one merge reads at most (a GetItem and the plan's GetObject each) besides the one whose turn it is.
MAX_MERGE_SOURCES = 200
_IO_THREADS = 16


@dataclass(frozen=True)
class Started:
    """What an attempt to start a READY job did."""

    created: bool  # this call created the SageMaker job (False: it existed, or the job waits)
    refused: CapacityError | None = None  # SageMaker had no capacity: the job now waits for it
    moved: str = ""  # its model is no longer Approved: "replanned as <job>" or "rejected: <code>"


@dataclass(frozen=True)
class LaunchResult:
    plan: JobPlan  # restricted to the inputs this job owns
    started: bool  # this call created the SageMaker job (False: it existed, or nothing to start)
    lost_to: frozenset[str]  # other jobs that already own some of the candidate inputs
    refused: CapacityError | None = None  # no capacity: the job waits in the state table (parked)
    # It was already waiting for capacity before this call (a redelivered batch): announced and counted then.
    already_waiting: bool = False
    # Inputs the state table refused to record (ValidationException: file id -> why); not in the job.
    invalid: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ParkedStarts:
    """What one pass over the oldest jobs waiting for capacity started, and the refusal that stopped it."""

    started: list[str]
    refused: str = ""


@dataclass(frozen=True)
class SweepResult:
    """What one pass over the jobs waiting for capacity did, and what still waits."""

    started: list[str]
    waiting: int  # jobs still waiting for capacity
    oldest_wait_seconds: int  # how long the one refused longest ago has waited (0: none)
    refused: str = ""  # SageMaker's answer that stopped the pass, if one did


class JobLauncher:
    def __init__(
        self,
        settings: Settings,
        bucket: DataBucket,
        sagemaker: SageMaker,
        state: StateTable,
        *,
        registry: ModelRegistry,
        notifier: Notifier,
    ) -> None:
        self._settings = settings
        self._bucket = bucket
        self._sagemaker = sagemaker
        self._state = state
        self._registry = registry
        self._notifier = notifier

    def launch(self, plan: JobPlan, *, take_from: str = "", fresh: bool = False, why: str = "split") -> LaunchResult:
        """Record, claim and start the job of `plan` (see the module docstring). `take_from`: the job whose
        inputs this one takes over (a split, a job planned again), claims moving from it one conditional write
        each. `fresh`: the plan's model was read from the registry just now (no need to check it again)."""
        record = self._state.create_job(
            plan.job_name,
            {
                "group": plan.group,
                "bucket": plan.bucket,
                "planKey": plan.plan_key,
                "modelPackageVersion": plan.model.version,
                "candidates": len(plan.all_files),
                **({f"{why}From": take_from} if take_from else {}),
            },
        )
        if record["status"] == EMPTY:
            return LaunchResult(replace(plan, inputs=(), superseded=()), False, frozenset())
        if record["status"] != CLAIMING:
            # Seen before (a redelivered batch): carry on from where the record stands.
            stored = self.load_plan(plan.bucket, plan.plan_key)
            again = self._start_if_ready(stored, record)
            waited = record["status"] == READY and record.get("kind") == CAPACITY_KIND
            return LaunchResult(stored, again.created, frozenset(), again.refused, already_waiting=waited)
        self._bucket.put_json(plan.plan_key, {"final": False, **plan.to_record()})
        invalid: dict[str, str] = {}
        owners = self._state.claim(
            plan.job_name, plan.group, [f.file_id for f in plan.all_files], take_from=take_from, invalid=invalid
        )
        if invalid:
            logger.error("the state table refused some inputs as invalid", extra={"job": plan.job_name, **invalid})
        lost_to = frozenset(owner for owner in owners.values() if owner != plan.job_name)
        for other in sorted(lost_to):
            self.resume(other)
        owned = self._finalise(plan, owners)
        if not owned.inputs:
            return LaunchResult(owned, False, lost_to, invalid=invalid)
        # A job taking over another's inputs (a split piece, a job planned again, one reading copies) holds work
        # that already had its turn: it does not queue behind its group's waiting jobs.
        first = self._start(owned, fresh=fresh, check_queue=not take_from)
        return LaunchResult(owned, first.created, lost_to, first.refused, invalid=invalid)

    def jobs_holding(self, file_ids: list[str]) -> dict[str, str]:
        """The job that claimed each of these input versions (those no job claimed are absent)."""
        return self._state.owners(file_ids)

    def carry_on(self, job_name: str) -> bool:
        """Make sure a job holding claims is on its way (`resume`: a READY job its starter left unstarted is
        started, a CLAIMING one past its claim timeout is finished and started), then say whether its inputs
        will reach an outcome without their messages coming again (domain.statuses.carried_on). False: nothing
        will move the job. TransientError (or PermanentError) if AWS fails meanwhile."""
        self.resume(job_name)
        record = self._state.get_job(job_name)
        if record is None:
            return False
        age = self._state.now() - int(record.get("claimingSince", record["createdAt"]))
        return carried_on(
            JobStatus(record["status"]),
            listed=bool(record.get("kind")),
            claimed_recently=age < self._settings.claim_timeout_seconds,
        )

    def resume(self, job_name: str) -> None:
        record = self._state.get_job(job_name)
        if record is None:
            logger.warning("input claimed by a job without a record", extra={"job": job_name})
            return
        if record["status"] == CLAIMING:
            age = self._state.now() - int(record.get("claimingSince", record["createdAt"]))
            if age < self._settings.claim_timeout_seconds:
                return  # its handler may still be running; its own redelivery will finish it
            logger.warning("taking over an abandoned job", extra={"job": job_name, "ageSeconds": age})
            if record.get("mergedFrom"):
                merged = self._finish_merge(job_name, record)
                if merged is not None and merged.inputs:
                    self._start(merged, check_queue=False)
                return
            if record.get("kind") == HELD_KIND:
                self.start_held(job_name, record)  # a released held job whose releaser died
                return
            candidates = self.load_plan(record["bucket"], record["planKey"])
            owners = self._state.owners([f.file_id for f in candidates.all_files])
            owned = self._finalise(candidates, owners)
            if owned.inputs:
                self._start(owned)
            return
        if record["status"] == READY:
            self._start_if_ready(self.load_plan(record["bucket"], record["planKey"]), record)

    def start_held(self, job_name: str, record: dict[str, Any]) -> Started | None:
        """Plan and start a released held job (CLAIMING, sealed: its `heldParts` fixed) from the plans of the
        batches it holds: every file claimed for it (a file a part lists but another job won is that job's),
        merged into one plan named `job_name` (coalescing.combine), then finalised and started like any job.
        What each batch found as it was held (its claims' owners, its versions' marks: domain/hold.py
        `recorded_claims`) is taken from its plan; only a batch without that record has its claims and marks read.
        Safe to repeat (by the releaser's redelivery, or `resume` once the releaser is certainly dead). None if
        it holds nothing."""
        parts = sorted(str(p) for p in record.get("heldParts") or ())
        if not parts:
            self._state.transition(job_name, expected=[CLAIMING], to=EMPTY, inputs=0, remove=("kind",))
            return None

        def load(part: str) -> dict[str, Any]:
            document: dict[str, Any] = self._bucket.get_json(held_part_key(record["group"], job_name, part))
            return document

        with ThreadPoolExecutor(max_workers=min(_IO_THREADS, len(parts))) as pool:
            documents = list(pool.map(load, parts))
        plans = [plan_from_record(d) for d in documents]
        known = recorded_claims(job_name, [(p, d.get(HELD_CLAIMS)) for p, d in zip(plans, documents, strict=True)])
        # One job of the batches' files (the batches' plans were never jobs: nothing to list as merged from).
        plan = replace(combine(job_name, plans, self._settings.transform), merged_from=())
        unread = [f.file_id for f in plan.all_files if f.file_id not in known.owners]
        owners = {**known.owners, **(self._state.owners(unread) if unread else {})}
        won = [f for f in plan.inputs if owners.get(f.file_id) == job_name and f.ordered]
        lost = {f.object_id: newer for f in won if (newer := known.marks.get(f.file_id)) is not None}
        unmarked = tuple(f for f in won if f.file_id not in known.marks)
        if unmarked:  # (marked as held unless their holder died first: read, and written if missing)
            lost.update(self.mark_newest(job_name, replace(plan, inputs=unmarked), owners, read_first=True))
        owned = self._finalise(plan, owners, lost=lost)
        if not owned.inputs:
            return None
        logger.info(
            "held job released",
            extra={"job": job_name, "group": plan.group, "batches": len(parts), "inputs": len(owned.inputs)},
        )
        return self._start(owned)

    def load_plan(self, bucket: str, plan_key: str) -> JobPlan:
        document: dict[str, Any] = self._bucket.get_json(plan_key)
        return plan_from_record(document)

    def start_attempt(self, plan: JobPlan, attempt: int) -> bool:
        """Create the transform job for an attempt, on the fallback instance type if capacity is short;
        CapacityError if neither type has capacity."""
        request = self._request(plan, attempt_name(plan.job_name, attempt), None)
        try:
            return self._sagemaker.start_transform_job(request)
        except CapacityError:
            fallback = self._settings.fallback_instance_type
            if not fallback or fallback == plan.instance_type:
                raise
            logger.warning(
                "no capacity; using the fallback instance type",
                extra={"job": request["TransformJobName"], "fallback": fallback},
            )
            return self._sagemaker.start_transform_job(self._request(plan, request["TransformJobName"], fallback))

    def mark_newest(
        self, job_name: str, plan: JobPlan, owners: dict[str, str], *, read_first: bool = False
    ) -> dict[str, tuple[str, str]]:
        """Record the versions of `plan` that `job_name` won (per `owners`) as their keys' newest taken by a job
        (StateTable.mark_latest); the keys whose newer version another job holds, as (version id, job)."""
        won = [f for f in plan.inputs if owners.get(f.file_id) == job_name and f.ordered]
        return self._state.mark_latest(
            job_name, [(f.object_id, f.recency, f.version_id) for f in won], read_first=read_first
        )

    # Steps ----------------------------------------------------------------------------------------
    def _finalise(
        self, plan: JobPlan, owners: dict[str, str], *, lost: dict[str, tuple[str, str]] | None = None
    ) -> JobPlan:
        """Keep what the job won: its claimed inputs, less those a newer version of their key already holds
        (recorded as the key's newest in the state table), plus the older versions it claimed. A job left
        with nothing to read but superseded versions runs nothing and says so in its report.

        `lost`: the keys whose newer version another job holds, when the caller has marked the job's versions
        already (a released held job: start_held); otherwise they are marked here (mark_newest)."""
        mine = plan.job_name
        claimed = [f for f in plan.inputs if owners.get(f.file_id) == mine and f.ordered]
        if lost is None:
            lost = self.mark_newest(mine, plan, owners)
        newer = {f.file_id: Newer(*self._version(lost[f.object_id])) for f in claimed if f.object_id in lost}
        owned = self._copy_inputs(settle(plan, owners, newer))
        for f in owned.superseded:
            if f.superseded_by is not None:
                logger.info(
                    "a newer version of the key is in another job",
                    extra={"job": mine, "key": f.key, "versionId": f.version_id, "newer": f.superseded_by.describe()},
                )
        if not owned.inputs:
            if owned.superseded or owned.deleted:
                self._bucket.put_json(owned.plan_key, {"final": True, **owned.to_record()})
                self._bucket.put_json(owned.report_key, superseded_only_summary(owned, at=self._at()))
            self._state.transition(
                mine,
                expected=[CLAIMING],
                to=EMPTY,
                inputs=0,
                superseded=len(owned.superseded),
                remove=("kind", "waitingSince"),  # a merged job is listed while it claims: not any more
            )
            logger.info("every input already belongs to other jobs or is superseded", extra={"job": mine})
            return owned
        self._bucket.put_json(owned.manifest_key, owned.manifest())
        self._bucket.put_json(owned.plan_key, {"final": True, **owned.to_record()})
        self._state.transition(mine, expected=[CLAIMING, READY], to=READY, inputs=len(owned.inputs))
        return owned

    def _copy_inputs(self, plan: JobPlan) -> JobPlan:
        """Copy each version the job reads into its own input folder (CopyObject with the VersionId, in
        parallel), so SageMaker reads exactly the versions claimed however late it starts; a version deleted
        for good since its event is not read, and is listed as such in the job's records."""
        if not plan.inputs or not plan.copies_inputs:
            return plan

        def copy(f: InputFile) -> bool:
            return self._bucket.copy_version(f.key, f.version_id, plan.input_copy_key(f))

        with ThreadPoolExecutor(max_workers=min(_IO_THREADS, len(plan.inputs))) as pool:
            copied = list(pool.map(copy, plan.inputs))
        gone = tuple(f for f, ok in zip(plan.inputs, copied, strict=True) if not ok)
        if not gone:
            return plan
        logger.warning(
            "claimed versions deleted before their job was planned",
            extra={"job": plan.job_name, "deleted": [f.file_id for f in gone]},
        )
        kept = tuple(f for f, ok in zip(plan.inputs, copied, strict=True) if ok)
        return replace(plan, inputs=kept, deleted=plan.deleted + gone)

    def _at(self) -> str:
        return timestamp(self._state.now())

    @staticmethod
    def _version(newer: tuple[str, str]) -> tuple[str | None, str]:
        version_id, job = newer
        return (None if version_id == "null" else version_id), job

    def _start_if_ready(self, plan: JobPlan, record: dict[str, Any]) -> Started:
        if record["status"] != READY:
            return Started(False)
        return self._start(plan, attempt=int(record.get("attempt", 0)))

    def _running(self, plan: JobPlan) -> int:
        """Transform jobs of the plan's group running now (its job names share `<prefix>-<group>-`)."""
        group_prefix = plan.job_name[: plan.job_name.rindex("-") + 1]
        return sum(
            1
            for name in self._sagemaker.running_transform_jobs(group_prefix)
            if split_attempt(name)[0].rsplit("-", 1)[0] + "-" == group_prefix
        )

    def _no_slot(self, plan: JobPlan) -> bool:
        """At MaxConcurrentJobsPerGroup: the job waits (READY, listed under waiting#<group>) for a
        running one of its group to finish; the completion starts it. Checked again after the job is
        listed, so a job that finished in between cannot leave it waiting for nothing."""
        limit = self._settings.max_concurrent_jobs_per_group
        if not limit or self._running(plan) < limit:
            return False
        self._state.transition(plan.job_name, expected=[READY], to=READY, kind=waiting_kind(plan.group))
        if self._running(plan) < limit:
            return False
        logger.info("waiting for a free slot of its group", extra={"job": plan.job_name, "group": plan.group})
        return True

    def start_waiting(self, group: str) -> list[str]:
        """Start jobs of `group` waiting for a slot, while slots are free; the names started."""
        limit = self._settings.max_concurrent_jobs_per_group
        started: list[str] = []
        listed = self._state.waiting_jobs(group) if limit else []
        for name in listed:
            record = self._state.get_job(name)
            if record is None or record["status"] != READY:
                continue
            plan = self.load_plan(record["bucket"], record["planKey"])
            if self._running(plan) >= limit:
                break
            turn = self._coalesce(plan, record, listed)
            if turn is None:
                continue
            plan, record = turn
            result = self._start(plan, attempt=int(record.get("attempt", 0)), check_slot=False)
            if result.created:
                started.append(plan.job_name)
            if result.refused:
                break  # no capacity: it now waits for capacity, and so would the next
        return started

    def start_parked(self, limit: int = MAX_STARTS_PER_SWEEP) -> ParkedStarts:
        """Start jobs waiting for capacity, oldest first, until SageMaker refuses one (then back off: the
        rest wait for the next completion or sweep). Safe to run concurrently and to repeat: the job names
        are deterministic (a second CreateTransformJob is ResourceInUse) and every move of the record is a
        conditional write."""
        # Every waiting job's name and age (not only the oldest `limit`): a group's head must be seen to get its
        # turn, however many older jobs another group has.
        listed = [WaitingJob(j["jobName"], j["createdAt"], j["waitingSince"]) for j in self._state.capacity_waiting()]
        if not listed:
            return ParkedStarts([])
        # The group served last (the stack's latest job, running or finished) goes after the others; among them
        # the oldest waiting head first (SERVED_WINDOW: a longer memory made a big group wait a whole round of
        # 200 groups per MaxFilesPerJob files, `make limits`).
        served = Counter(
            group_key(name)
            for name in self._sagemaker.recent_transform_jobs(
                f"{self._settings.transform.name_prefix}-", count=SERVED_WINDOW
            )
        )
        started: list[str] = []
        names = [w.name for w in listed]
        for job in start_order(listed, served)[:limit]:
            record = self._state.get_job(job.name)
            if record is not None and record["status"] == CLAIMING and record.get("kind") == CAPACITY_KIND:
                self.resume(job.name)  # a merge whose handler died: finished once it is certainly dead
                continue
            if record is None or record["status"] != READY or record.get("kind") != CAPACITY_KIND:
                continue  # started or moved on by someone else since the index listed it
            plan = self.load_plan(record["bucket"], record["planKey"])
            turn = self._coalesce(plan, record, names)
            if turn is None:
                continue
            plan, record = turn
            result = self._start(plan, attempt=int(record.get("attempt", 0)), check_queue=False)  # in its turn
            if result.refused:
                if started:
                    logger.info("jobs waiting for capacity started", extra={"started": started})
                return ParkedStarts(started, str(result.refused))
            if result.created:
                started.append(plan.job_name)
        if started:
            logger.info("jobs waiting for capacity started", extra={"started": started})
        return ParkedStarts(started)

    # Coalescing (domain/coalescing.py) -------------------------------------------------------------------
    def _coalesce(
        self, head: JobPlan, record: dict[str, Any], listed: Sequence[str]
    ) -> tuple[JobPlan, dict[str, Any]] | None:
        """The job to start now that `head` (READY, waiting) has its turn: `head` itself, or the job that
        merges it with the other waiting jobs of its group that can run with it (`listed`: the names in the
        waiting list being served), or None if nothing is left to start (the merge lost every input)."""
        attempt = int(record.get("attempt", 0))
        first = Candidate(head, int(record["createdAt"]), split_piece=bool(record.get("splitFrom")))
        group = group_key(head.job_name)
        others = [n for n in dict.fromkeys(listed) if n != head.job_name and group_key(n) == group]
        if not mergeable(first) or attempt or record.get("startingToken") or not others:
            return head, record  # the common case: nothing else of its group waits
        if record.get("kind") != CAPACITY_KIND:  # those waiting for capacity merge too, and back
            others += [j["jobName"] for j in self._state.capacity_waiting(name_prefix=f"{group}-")]
        elif self._settings.max_concurrent_jobs_per_group:
            others += self._state.waiting_jobs(head.group, limit=MAX_MERGE_SOURCES)
        same = (n for n in others if n != head.job_name and group_key(n) == group)
        waiting = self._merge_candidates(head, dict.fromkeys(same))
        chosen = merge_set(first, waiting, max_files=self._settings.transform.max_files_per_job)
        if len(chosen) < 2:
            return head, record
        merged = merged_plan([c.plan for c in chosen], self._settings.transform)
        created = self._state.create_job(
            merged.job_name,
            {
                "group": merged.group,
                "bucket": merged.bucket,
                "planKey": merged.plan_key,
                "modelPackageVersion": merged.model.version,
                "candidates": len(merged.all_files),
                "mergedFrom": ",".join(merged.merged_from),
                # Its work is as old as its oldest source's. Listed as waiting for capacity (whatever its head
                # waited for), where the periodic sweep sees it: a merge whose handler died is finished there.
                "createdAt": min(c.created_at for c in chosen),
                "claimingSince": self._state.now(),
                "kind": CAPACITY_KIND,
                "waitingSince": int(record.get("waitingSince", record["createdAt"])),
            },
        )
        if created["status"] != CLAIMING:
            # The same jobs were merged before, and `head` was not (it was being started then): the merged job
            # is in the list or done; `head` goes alone.
            return head, record
        for c in chosen:  # out of play: READY -> MERGED, unless started (or merged elsewhere) meanwhile
            self._state.merge_into(c.name, 0, merged.job_name)
        owned = self._finish_merge(merged.job_name, created)
        if owned is None or not owned.inputs:
            return None  # finished by another handler (it is in the list), or it won nothing
        return owned, self._state.get_job(merged.job_name) or created

    def _merge_candidates(self, head: JobPlan, names: Iterable[str]) -> list[Candidate]:
        """The waiting jobs among `names` that may still be merged (READY, listed, no start lease), oldest
        first, read until they hold more files than one job may (each one read costs a GetItem and a GetObject)."""
        records = []
        for name in list(names)[:MAX_MERGE_SOURCES]:
            other = self._state.get_job(name)
            if (
                other is None
                or other["status"] != READY
                or not other.get("kind")
                or other.get("startingToken")
                or other.get("splitFrom")
                or int(other.get("attempt", 0))
                or other.get("modelPackageVersion") != head.model.version
            ):
                continue
            records.append(other)
        found: list[Candidate] = []
        files = len(head.inputs)
        for other in sorted(records, key=lambda r: (int(r["createdAt"]), str(r["jobName"]))):
            if files > self._settings.transform.max_files_per_job:
                break
            plan = self.load_plan(other["bucket"], other["planKey"])
            found.append(Candidate(plan, int(other["createdAt"])))
            files += len(plan.inputs)
        return found

    def _finish_merge(self, name: str, record: dict[str, Any]) -> JobPlan | None:
        """Finish a merge from its record (CLAIMING, `mergedFrom` its candidate sources): seal it (no source
        joins it any more), move the claims of the sources merged into it (conditional: still the source's),
        keep what it won (READY, still in its waiting list) and say so in each source's report. Every step may
        be repeated, by the merging handler or by `resume` once that one is certainly dead, and all of them
        settle the same job: once sealed, its sources and so its claims are fixed. None if it is no longer
        CLAIMING (another handler finished it) or won nothing."""
        if not self._state.seal(name):
            return None
        won: list[tuple[str, JobPlan]] = []
        for source in (n for n in str(record.get("mergedFrom", "")).split(",") if n):
            state = self._state.get_job(source)
            if state is not None and state["status"] == MERGED and state.get("mergedInto") == name:
                won.append((source, self.load_plan(state["bucket"], state["planKey"])))
        if not won:
            self._state.transition(name, expected=[CLAIMING], to=EMPTY, inputs=0, remove=("kind", "waitingSince"))
            logger.info("every job of the merge started (or merged) elsewhere meanwhile", extra={"job": name})
            return None
        merged = combine(name, [plan for _, plan in won], self._settings.transform)
        take_from = {f.file_id: source for source, plan in won for f in plan.all_files}
        owners = self._state.claim(name, merged.group, list(take_from), take_from_each=take_from)
        owned = self._finalise(merged, owners)
        at = self._at()
        for source, plan in won:
            summary = job_summary(plan, job_name=source, status="Merged", attempts=0, timings={})
            summary["mergedInto"] = {
                "transformJobName": name,
                "report": f"s3://{merged.bucket}/{merged.report_key}",
                "mergedAt": at,
            }
            self._bucket.put_json(plan.report_key, summary)
        logger.info(
            "waiting jobs merged into one",
            extra={"job": name, "group": merged.group, "mergedFrom": [s for s, _ in won], "inputs": len(owned.inputs)},
        )
        return owned

    def sweep(self) -> SweepResult:
        """The periodic pass: start what it can, then measure what still waits (for the alarm)."""
        starts = self.start_parked()
        since = self._state.capacity_backlog()
        return SweepResult(starts.started, len(since), oldest_wait_seconds(since, self._state.now()), starts.refused)

    def park(self, plan: JobPlan, attempt: int, refusal: CapacityError, *, expected: JobStatus = READY) -> bool:
        """Keep a job SageMaker refused for capacity READY and list it under `waiting-capacity`; its inputs
        stay claimed and its plan and manifest stay in S3, so nothing needs the queue any more. False if the
        job moved on meanwhile (another invocation started it)."""
        parked = self._state.transition(
            plan.job_name,
            expected=[expected],
            to=READY,
            when_attempt=attempt,
            kind=CAPACITY_KIND,
            capacityRefusal=str(refusal)[:1000],
            set_once={"waitingSince": self._state.now()},
        )
        if parked:
            logger.warning(
                "no transform capacity; the job waits for it",
                extra={
                    "job": attempt_name(plan.job_name, attempt),
                    "group": plan.group,
                    "inputs": len(plan.inputs),
                    "instanceType": refusal.instance_type,
                    "refusal": str(refusal),
                },
            )
        return parked

    def _behind_older(self, plan: JobPlan) -> CapacityError | None:
        """A refusal when an older job of the plan's group waits for capacity (the new one waits behind it,
        without asking SageMaker: strictly oldest first within a group); None when none does."""
        group = group_key(plan.job_name)
        waiting = [
            WaitingJob(j["jobName"], j["createdAt"], j["waitingSince"])
            for j in self._state.capacity_waiting(name_prefix=f"{group}-")
        ]
        if not any(w.group == group and w.name != plan.job_name for w in waiting):
            return None  # the common case: one Query, nothing of its group waits
        record = self._state.get_job(plan.job_name) or {}
        created = int(record.get("createdAt", self._state.now()))
        if may_try_now(plan.job_name, created, waiting):
            return None
        older = min((w for w in waiting if w.group == group), key=lambda w: (w.created_at, w.name))
        return CapacityError(
            f"Older jobs of group {plan.group!r} wait for transform capacity (the oldest: {older.name}); this one "
            "waits behind them and starts in its turn.",
            instance_type=plan.instance_type,
        )

    def _start(
        self,
        plan: JobPlan,
        *,
        attempt: int = 0,
        check_slot: bool = True,
        fresh: bool = False,
        check_queue: bool = True,
    ) -> Started:
        if not fresh:
            moved = self.model_withdrawn(plan, attempt)
            if moved is not None:
                return moved
        if check_slot and self._no_slot(plan):
            return Started(False)
        if check_queue:
            behind = self._behind_older(plan)
            if behind is not None:
                self.park(plan, attempt, behind)
                return Started(False, behind)
        # The start lease: from here on no merge takes the job (and a job merged meanwhile is not created).
        lease = uuid.uuid4().hex
        if not self._state.lease_start(plan.job_name, attempt, lease):
            logger.info("the job moved on before it started (merged, or started)", extra={"job": plan.job_name})
            return Started(False)
        self._sagemaker.ensure_model(plan.model_name, plan.model.package_arn, self._settings.sagemaker_role_arn)
        try:
            created = self.start_attempt(plan, attempt)
        except CapacityError as exc:
            self.park(plan, attempt, exc)
            self._state.release_start(plan.job_name, lease)  # nothing was created: it may be merged
            return Started(False, exc)
        # Leaves whichever waiting list the job was in, in the same conditional write.
        self._state.transition(
            plan.job_name,
            expected=[READY],
            to=STARTED,
            when_attempt=attempt,
            remove=("kind", "waitingSince", "startingToken", "startingAt"),
        )
        logger.info(
            "transform job started" if created else "transform job already existed",
            extra={"job": attempt_name(plan.job_name, attempt), "inputs": len(plan.inputs), "group": plan.group},
        )
        return Started(created)

    def model_withdrawn(self, plan: JobPlan, attempt: int, *, expected: JobStatus = READY) -> Started | None:
        """None while the plan's model package version is still Approved and its inference image allowed.
        Otherwise the job is planned again on the group's newest Approved version (if its image is allowed),
        or its files are rejected, and what was done is returned."""
        allowed = self._settings.image_repositories
        status, images = self._registry.status_and_images(plan.model.package_arn)
        foreign = images_not_allowed(images, allowed)
        if status == "Approved" and not foreign:
            return None
        group_gone = False
        try:
            newest = self._registry.latest_approved(plan.group)
        except GroupNotFound:
            newest, group_gone = None, True
        newest_foreign = images_not_allowed(newest.images, allowed) if newest is not None else ()
        rejection: Rejection | None = None
        if newest is not None and newest_foreign:
            # The newest Approved version (maybe the plan's own) may not run here: nothing runs these files.
            rejection = image_not_allowed_rejection(newest, newest_foreign, allowed)
        elif newest is not None and foreign and newest.package_arn == plan.model.package_arn:
            # Still the newest Approved, but its images were refused above (read again just now).
            rejection = image_not_allowed_rejection(newest, foreign, allowed)
        elif newest is not None and newest.accepts(plan.content_type):
            again = replan(plan, newest, self._settings.transform)
            logger.warning(
                "the job's model is no longer approved; planned again on the newest approved version",
                extra={"job": plan.job_name, "was": plan.model.version, "now": newest.version, "as": again.job_name},
            )
            # The new job first: a handler that dies before the old record moves leaves it waiting, to do this
            # again; claims move to the new job, so the old one can never read them.
            result = self.launch(again, take_from=plan.job_name, fresh=True, why="replanned")
            if self._state.transition(
                plan.job_name,
                expected=[expected],
                to=REPLANNED,
                when_attempt=attempt,
                replannedAs=again.job_name,
                remove=("kind", "waitingSince"),
            ):
                summary = job_summary(plan, job_name=plan.job_name, status="Replanned", attempts=attempt, timings={})
                summary["replannedAs"] = {"transformJobName": again.job_name, "modelPackageVersion": newest.version}
                self._bucket.put_json(plan.report_key, summary)
            return Started(result.started, result.refused, moved=f"replanned as {again.job_name}")
        if rejection is None:
            rejection = group_deleted_rejection(plan) if group_gone else withdrawn_model_rejection(plan, newest)
        inputs = self._newest_only(plan)
        at = self._at()
        for f in inputs:
            self._bucket.put_json(
                rejected_report_key(f.key),
                rejection_report(
                    bucket=f.bucket,
                    key=f.key,
                    version_id=f.version_id,
                    rejection=rejection,
                    at=at,
                    job_name=plan.job_name,
                ),
            )
        if self._state.transition(
            plan.job_name,
            expected=[expected],
            to=FAILED,
            when_attempt=attempt,
            failureReason=rejection.reason[:1000],
            notified=True,
            remove=("kind", "waitingSince"),
        ):
            summary = job_summary(
                plan,
                job_name=plan.job_name,
                status="NotStarted",
                attempts=attempt,
                timings={},
                failure_reason=rejection.reason,
            )
            self._bucket.put_json(plan.report_key, summary)
            self._notifier.publish(
                f"sagepilot: {len(inputs)} file(s) rejected",
                {
                    "rejected": [
                        {
                            "key": f.key,
                            "versionId": f.version_id,
                            "code": rejection.code,
                            "reason": rejection.reason,
                            "report": f"s3://{f.bucket}/{rejected_report_key(f.key)}",
                        }
                        for f in inputs[:50]
                    ],
                    "countsByCode": {rejection.code: len(inputs)},
                    "transformJobName": plan.job_name,
                },
            )
        logger.warning(
            "the job's model may not run (no longer approved, or its image not allowed); its files are rejected",
            extra={"job": plan.job_name, "code": rejection.code},
        )
        return Started(False, moved=f"rejected: {rejection.code}")

    def _newest_only(self, plan: JobPlan) -> list[InputFile]:
        """The plan's inputs that are still the newest version any job took of their key (the rejection of an
        older one must not stand beside a newer version's outcome)."""
        ordered = [f for f in plan.inputs if f.ordered]
        latest = self._state.latest([f.object_id for f in ordered]) if ordered else {}
        return [
            f for f in plan.inputs if not (f.object_id in latest and str(latest[f.object_id]["recency"]) > f.recency)
        ]

    def _request(self, plan: JobPlan, name: str, instance_type: str | None) -> dict[str, Any]:
        return transform_job_request(
            plan,
            name,
            instance_type,
            max_payload_mb=self._settings.transform.max_payload_mb,
            max_concurrent_transforms=self._settings.transform.max_concurrent_transforms,
        )
