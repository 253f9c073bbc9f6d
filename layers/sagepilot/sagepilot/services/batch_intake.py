"""Dropped files -> transform jobs.

One invocation receives a batch of queued S3 `Object Created` events (the queue's batching window lets
a burst coalesce). Each file is checked (layout, type, size, the group's approved model and where its
inference image comes from); the good ones are planned into as few jobs as the limits allow and
launched; the others get a rejection report beside them and stay where they are. Messages whose work
failed transiently are handed back to the queue; on their last delivery the files are rejected with
the reason instead, so nothing is lost.
A job SageMaker refuses for lack of transform instances is not a failure: it waits in the state table
(see services/jobs.py) and its messages are acknowledged; a notification says it waits and why.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.registry import GroupNotFound, ModelRegistry
from sagepilot.adapters.s3 import DataBucket, key_candidates
from sagepilot.clock import utc_now
from sagepilot.domain.capacity import capacity_wait_notice
from sagepilot.domain.failures import (
    GROUP_NOT_FOUND_ACTION,
    image_not_allowed_rejection,
    quota_rejection,
    transient_exhausted_rejection,
    unrecordable_rejection,
)
from sagepilot.domain.images import images_not_allowed
from sagepilot.domain.layout import (
    Rejection,
    is_folder_marker,
    parse_dropped_key,
    rejected_report_key,
    table_key_problem,
)
from sagepilot.domain.object_versions import VersionListing
from sagepilot.domain.reports import rejection_report
from sagepilot.domain.transform_plan import InputFile, JobPlan, ModelVersion, file_id_of, plan_jobs
from sagepilot.errors import CapacityError, MalformedEvent, ObjectGone, PermanentError, TransientError
from sagepilot.events import ObjectCreated, QueuedMessage, parse_held_release, parse_object_created
from sagepilot.metrics import NoRecorder, Recorder, intake_metrics
from sagepilot.observability import logger
from sagepilot.services.holding import GroupHold
from sagepilot.services.jobs import JobLauncher
from sagepilot.settings import Settings

_IO_THREADS = 16
_T = TypeVar("_T")
# A batch's groups (model read, planned, held or started) and the held jobs it releases are handled this many at
# once: each is a few calls that wait on AWS, and a batch may hold a hundred groups (a hundred quiet groups' first
# jobs started one after another took 160 s in the sandbox's groups bench). A group's own jobs start in order.
# (CreateTransformJob calls throttled beyond botocore's retries hand the group's messages back to the queue.)
_GROUP_THREADS = 8


@dataclass
class IntakeOutcome:
    """What one batch did; `failed_message_ids` go back to the queue."""

    jobs_started: list[str] = field(default_factory=list)
    jobs_existing: list[str] = field(default_factory=list)
    jobs_waiting_for_capacity: list[str] = field(default_factory=list)  # refused for capacity: held, not failed
    jobs_held: list[str] = field(default_factory=list)  # groups' held jobs this batch's files went into (hold.py)
    releases: dict[str, str] = field(default_factory=dict)  # held job -> what its release message did
    rejected: list[str] = field(default_factory=list)
    rejected_codes: dict[str, int] = field(default_factory=dict)  # rejection code -> files (for metrics)
    files_accepted: int = 0  # input versions in the jobs this batch started, held or left waiting for capacity
    ignored: int = 0
    failed_message_ids: list[str] = field(default_factory=list)

    def absorb(self, part: IntakeOutcome) -> None:
        """Add what one group's share of the batch did (prepared on its own thread) to the batch's outcome."""
        self.jobs_started += part.jobs_started
        self.jobs_existing += part.jobs_existing
        self.jobs_waiting_for_capacity += part.jobs_waiting_for_capacity
        self.jobs_held += [job for job in part.jobs_held if job not in self.jobs_held]
        self.releases.update(part.releases)
        self.rejected += part.rejected
        for code, count in part.rejected_codes.items():
            self.rejected_codes[code] = self.rejected_codes.get(code, 0) + count
        self.files_accepted += part.files_accepted
        self.ignored += part.ignored
        self.failed_message_ids += part.failed_message_ids


@dataclass(frozen=True)
class Refused:
    """An input version that will not be processed, and why."""

    bucket: str
    key: str
    version_id: str | None
    rejection: Rejection

    @classmethod
    def of(cls, f: InputFile, rejection: Rejection) -> Refused:
        return cls(f.bucket, f.key, f.version_id, rejection)


@dataclass(frozen=True)
class _Unavailable:
    """AWS failed transiently while a file was being looked at: what was being done, and the error."""

    what: str
    error: str


@dataclass
class _Arrival:
    """A file version and the messages (duplicates included) that announced it."""

    event: ObjectCreated
    message_ids: list[str]
    final_delivery: bool
    sent_at: float | None = None  # when SQS received its newest message (None: not said)

    def announced(self, message_ids: list[str], final_delivery: bool, sent_at: float | None) -> None:
        """Count more messages announcing this version (a duplicate, or the same key spelled otherwise)."""
        self.message_ids.extend(message_ids)
        self.final_delivery = self.final_delivery or final_delivery
        if sent_at is not None:
            self.sent_at = max(self.sent_at or 0.0, sent_at)


@dataclass
class _GroupWork:
    """One group's share of a batch, handled on its own (beside the batch's other groups): what it did (jobs held
    or started, rejections, messages to hand back, jobs left waiting for capacity), for the batch to gather."""

    arrivals: dict[str, _Arrival]
    files: dict[str, InputFile]
    outcome: IntakeOutcome = field(default_factory=IntakeOutcome)
    rejections: list[Refused] = field(default_factory=list)
    waiting: list[tuple[JobPlan, CapacityError]] = field(default_factory=list)


class BatchIntake:
    def __init__(
        self,
        settings: Settings,
        bucket: DataBucket,
        registry: ModelRegistry,
        launcher: JobLauncher,
        notifier: Notifier,
        now: Callable[[], str] = utc_now,
        metrics: Recorder | None = None,
        hold: GroupHold | None = None,
    ) -> None:
        self._settings = settings
        self._bucket = bucket
        self._registry = registry
        self._launcher = launcher
        self._notifier = notifier
        self._now = now
        self._metrics = metrics or NoRecorder()
        self._hold = hold

    def handle(self, messages: list[QueuedMessage | tuple[str, MalformedEvent]]) -> IntakeOutcome:
        outcome = IntakeOutcome()
        releases: list[tuple[str, QueuedMessage]] = []
        arrivals = self._arrivals(messages, outcome, releases)
        rejections: list[Refused] = []
        accepted: dict[str, list[tuple[InputFile, _Arrival]]] = defaultdict(list)
        unconfirmed: list[tuple[_Arrival, _Unavailable]] = []

        for arrival, result in zip(arrivals, self._inspect_all(arrivals), strict=True):
            if isinstance(result, Refused):
                rejections.append(result)
            elif isinstance(result, InputFile):
                accepted[result.group].append((result, arrival))
            elif isinstance(result, _Unavailable):
                if arrival.final_delivery:  # the last one: report it rather than let the event go to the DLQ
                    unconfirmed.append((arrival, result))
                else:
                    outcome.failed_message_ids += arrival.message_ids
            else:  # "gone"
                outcome.ignored += 1

        self._settle_unconfirmed(unconfirmed, outcome, rejections)
        waiting: list[tuple[JobPlan, CapacityError]] = []
        known = self._group_records(sorted(accepted))
        groups = sorted(accepted.items())
        for work in _each(lambda g: self._group(g[0], g[1], known.get(g[0])), groups):
            outcome.absorb(work.outcome)
            rejections += work.rejections
            waiting += work.waiting

        # The batch's own messages in the intake queue (in flight there, planned now): its files. Release messages
        # come from the hold release queue, in batches of their own.
        own = len(messages) - len(releases)
        self._release(releases, outcome, own_messages=own)
        self._reject(rejections, outcome)
        self._announce_waiting(waiting)
        # Last: the batch's messages are done with (planned, held, started, rejected), and may be deleted.
        self._release_quiet(outcome, *self._done(messages, releases, outcome))
        intake_metrics(
            self._metrics,
            outcome.files_accepted,
            len(outcome.jobs_started),
            outcome.rejected_codes,
            len(outcome.jobs_waiting_for_capacity),
        )
        return outcome

    # Steps ----------------------------------------------------------------------------------------
    def _arrivals(
        self,
        messages: list[QueuedMessage | tuple[str, MalformedEvent]],
        outcome: IntakeOutcome,
        releases: list[tuple[str, QueuedMessage]],
    ) -> list[_Arrival]:
        by_version: dict[tuple[str, str, str | None], _Arrival] = {}
        for message in messages:
            if isinstance(message, tuple):
                logger.error(
                    "dropping a message that is not an event", extra={"messageId": message[0], "error": str(message[1])}
                )
                outcome.ignored += 1
                continue
            try:
                release = parse_held_release(message.body)
                if release is not None:
                    releases.append((release, message))
                    continue
                event = parse_object_created(message.body)
            except MalformedEvent as exc:
                logger.error("dropping a malformed event", extra={"messageId": message.message_id, "error": str(exc)})
                outcome.ignored += 1
                continue
            if event.bucket != self._settings.data_bucket:
                logger.warning("ignoring an event of another bucket", extra={"bucket": event.bucket})
                outcome.ignored += 1
                continue
            if is_folder_marker(event.key):
                outcome.ignored += 1
                continue
            final = message.receive_count >= self._settings.intake_max_receive_count
            identity = (event.bucket, event.key, event.version_id)
            arrival = by_version.setdefault(identity, _Arrival(event, [], False))
            arrival.announced([message.message_id], final, message.sent_at)
        return list(by_version.values())

    def _exhausted(self, failure: _Unavailable, note: str = "") -> Rejection:
        return transient_exhausted_rejection(failure.what, failure.error, self._settings.intake_max_receive_count, note)

    def _settle_unconfirmed(
        self, unconfirmed: list[tuple[_Arrival, _Unavailable]], outcome: IntakeOutcome, rejections: list[Refused]
    ) -> None:
        """Files S3 would not confirm on their event's last delivery. One a job already took (an earlier
        delivery got that far; this one is a redelivery) is that job's: its report will say how it went, once
        the job is on its way (one its starter left unstarted, AWS failing, is started now: no later delivery
        will). The others, and those of a job that cannot be carried on, are rejected with the reason; if the
        claims cannot be read either, the report says so."""
        if not unconfirmed:
            return
        bucket = self._bucket.name
        forms = [
            [file_id_of(bucket, key, a.event.version_id) for key in key_candidates(a.event.key)] for a, _ in unconfirmed
        ]
        note = ""
        try:
            holders = self._launcher.jobs_holding(sorted({f for ids in forms for f in ids}))
        except TransientError as exc:
            holders = {}
            note = (
                f"(Whether the file was already taken into a transform job could not be checked either: {exc}. "
                "If it was, its predictions and report appear under predictions/ and this report can be ignored.)"
            )
        stalled: dict[str, str] = {}  # holding job -> "" when it is on its way, else why not (for the report)
        for (arrival, failure), ids in zip(unconfirmed, forms, strict=True):
            job = next((holders[f] for f in ids if f in holders), None)
            event = arrival.event
            if job is not None:
                if job not in stalled:
                    stalled[job] = self._stalled(job)
                if not stalled[job]:
                    logger.info(
                        "could not confirm the file again, but a transform job already holds it",
                        extra={"key": event.key, "job": job},
                    )
                    if job not in outcome.jobs_existing:
                        outcome.jobs_existing.append(job)
                    continue
                logger.warning(
                    "could not confirm the file again, and the transform job holding it is not on its way",
                    extra={"key": event.key, "job": job, "why": stalled[job]},
                )
                rejections.append(Refused(bucket, event.key, event.version_id, self._exhausted(failure, stalled[job])))
                continue
            rejections.append(Refused(bucket, event.key, event.version_id, self._exhausted(failure, note)))

    def _stalled(self, job: str) -> str:
        """An empty note when the job holding a file is on its way (carried on now if its starter left it
        unstarted); otherwise the note for the file's report, naming the job."""
        try:
            if self._launcher.carry_on(job):
                return ""
            why = "it has not started, and nothing else will start it"
        except (TransientError, PermanentError) as exc:
            why = f"starting it failed too: {exc}"
        return (
            f"(Transform job {job} holds the file but could not be carried on: {why}. Should SageMaker list "
            f"transform job {job} after all, its report will appear under predictions/.)"
        )

    def _inspect_all(self, arrivals: list[_Arrival]) -> list[InputFile | Refused | _Unavailable | str]:
        # A few ListObjectVersions pages confirm most files of a burst (domain/object_versions.py); the
        # files no listing covers get a HeadObject each, in parallel.
        listing = self._bucket.list_versions(a.event.key for a in arrivals)

        def inspect(arrival: _Arrival) -> InputFile | Refused | _Unavailable | str:
            return self._inspect(arrival.event, listing)

        headed = [i for i, a in enumerate(arrivals) if not self._bucket.listing_covers(a.event.key, listing)]
        by_head: dict[int, InputFile | Refused | _Unavailable | str] = {}
        if len(headed) > 1:
            with ThreadPoolExecutor(max_workers=min(_IO_THREADS, len(headed))) as pool:
                by_head = dict(zip(headed, pool.map(inspect, [arrivals[i] for i in headed]), strict=True))
        return [by_head[i] if i in by_head else inspect(a) for i, a in enumerate(arrivals)]

    def _inspect(self, event: ObjectCreated, listing: VersionListing) -> InputFile | Refused | _Unavailable | str:
        """An accepted file, a rejection, "gone" (deleted since) or _Unavailable (transient failure)."""
        # Confirmed even when the event carries version, size and ETag: that is what proves the version
        # still exists (an event can be stale or forged; a version deleted for good would fail the whole
        # job it joined) and which form of a `+`/`%xx` key names it.
        try:
            head = self._bucket.confirm_dropped(event.key, event.version_id, listing)
        except ObjectGone:
            logger.warning("object deleted before it could be processed", extra={"key": event.key})
            return "gone"
        except TransientError as exc:
            logger.warning("could not read the object; will retry", extra={"key": event.key, "error": str(exc)})
            return _Unavailable(f"HeadObject on s3://{self._bucket.name}/{event.key}", str(exc))
        dropped = parse_dropped_key(head.key)
        if isinstance(dropped, Rejection):
            return Refused(self._bucket.name, head.key, head.version_id, dropped)
        too_long = table_key_problem(dropped, self._bucket.name, head.version_id)
        if too_long is not None:
            return Refused(self._bucket.name, head.key, head.version_id, too_long)
        if head.size == 0:
            return Refused(
                self._bucket.name,
                head.key,
                head.version_id,
                Rejection("EMPTY_FILE", "The file is empty.", "Upload the file again with its data."),
            )
        return InputFile(self._bucket.name, dropped, head.version_id, head.size, head.etag, event.sequencer)

    def _model_for(self, group: str) -> ModelVersion | Rejection:
        try:
            model = self._registry.latest_approved(group)
        except GroupNotFound:
            return Rejection(
                "MODEL_GROUP_NOT_FOUND",
                f"There is no model package group named {group!r}.",
                GROUP_NOT_FOUND_ACTION,
            )
        if model is None:
            return Rejection(
                "NO_APPROVED_MODEL",
                f"Model package group {group!r} has no Approved model package.",
                "Approve a model package version in the SageMaker Model Registry, then upload the "
                "file again (or copy it onto itself).",
            )
        foreign = images_not_allowed(model.images, self._settings.image_repositories)
        if foreign:
            # Its image would run with the stack's execution role: never from where the operator does not allow.
            return image_not_allowed_rejection(model, foreign, self._settings.image_repositories)
        return model

    def _group(
        self, group: str, items: list[tuple[InputFile, _Arrival]], known: dict[str, Any] | None = None
    ) -> _GroupWork:
        """Read the group's model, plan its files, hold what the start-up hold holds (services/holding.py) and
        start the rest, in order. Touches nothing shared: the batch's groups are handled at once."""
        # One file version may arrive as several events (its key sent plain and URL-encoded).
        arrivals: dict[str, _Arrival] = {}
        for f, a in items:
            merged = arrivals.setdefault(f.file_id, _Arrival(a.event, [], False))
            merged.announced(a.message_ids, a.final_delivery, a.sent_at)
        files = {f.file_id: f for f, _ in items}
        work = _GroupWork(arrivals, files)
        outcome, rejections = work.outcome, work.rejections
        try:
            model = self._model_for(group)
        except TransientError as exc:
            logger.warning("model registry unavailable; will retry", extra={"group": group, "error": str(exc)})
            failure = _Unavailable(f"Reading model package group {group!r} in the registry", str(exc))
            for file_id, arrival in arrivals.items():
                if arrival.final_delivery:
                    rejections.append(Refused.of(files[file_id], self._exhausted(failure)))
                else:
                    outcome.failed_message_ids += arrival.message_ids
            return work
        if isinstance(model, Rejection):
            rejections += [Refused.of(f, model) for f in files.values()]
            return work
        usable = []
        for f, _ in items:
            if model.accepts(f.dropped.input_format.content_type):
                usable.append(f)
            else:
                rejections.append(
                    Refused.of(
                        f,
                        Rejection(
                            "CONTENT_TYPE_NOT_SUPPORTED",
                            f"Model package version {model.version} of {group!r} accepts "
                            f"{', '.join(model.supported_content_types)}, not {f.dropped.input_format.content_type}.",
                            "Convert the file to a content type the model accepts and upload it again.",
                        ),
                    )
                )
        plans = plan_jobs(usable, model, self._settings.transform)
        if self._hold is not None and not any(a.final_delivery for a in arrivals.values()):
            # (A last delivery takes no chance on the hold: its jobs start as they are.)
            sent = [a.sent_at for a in arrivals.values() if a.sent_at is not None]
            try:
                triage = self._hold.triage(group, plans, known, sent_at=max(sent) if sent else None)
            except (TransientError, PermanentError) as exc:
                for plan in plans:
                    self._launch_failed(plan, exc, [arrivals[f.file_id] for f in plan.all_files], outcome, rejections)
                return work
            outcome.releases.update(triage.released)
            outcome.jobs_started += [job for job, how in triage.released.items() if how == "released"]
            held = [p for p in plans if p.job_name in triage.held]
            for plan in held:
                outcome.files_accepted += len(plan.inputs)
                if triage.held[plan.job_name] not in outcome.jobs_held:
                    outcome.jobs_held.append(triage.held[plan.job_name])
            plans = triage.start
        self._launch(plans, work)
        return work

    def _launch(self, plans: list[JobPlan], work: _GroupWork) -> None:
        """Start the group's planned jobs that were not held, one after another."""
        outcome, rejections, waiting = work.outcome, work.rejections, work.waiting
        for plan in plans:
            try:
                result = self._launcher.launch(plan, fresh=True)  # its model was read just now
            except (TransientError, PermanentError) as exc:
                self._launch_failed(plan, exc, [work.arrivals[f.file_id] for f in plan.all_files], outcome, rejections)
                continue
            for file_id, why in sorted(result.invalid.items()):  # its own problem: the others go on
                rejections.append(Refused.of(work.files[file_id], unrecordable_rejection(why)))
            if result.refused is not None and result.already_waiting:
                # A redelivered batch whose job still waits: announced and counted by its first delivery.
                outcome.jobs_existing.append(plan.job_name)
            elif result.refused is not None:
                # Held in the state table (READY, plan and claims kept): the messages are done with.
                outcome.jobs_waiting_for_capacity.append(plan.job_name)
                outcome.files_accepted += len(result.plan.inputs)
                waiting.append((result.plan, result.refused))
            elif result.plan.inputs:
                (outcome.jobs_started if result.started else outcome.jobs_existing).append(plan.job_name)
                if result.started:
                    outcome.files_accepted += len(result.plan.inputs)

    def _group_records(self, groups: list[str]) -> dict[str, dict[str, Any]]:
        """The hold's records of the batch's groups, in one read; none (each group then records its start with
        a conditional write) if the hold is off or the read fails."""
        if self._hold is None:
            return {}
        try:
            return self._hold.group_records(groups)
        except TransientError as exc:
            logger.warning("could not read the groups' records; each is read on its own", extra={"error": str(exc)})
            return {}

    def _release(self, releases: list[tuple[str, QueuedMessage]], outcome: IntakeOutcome, *, own_messages: int) -> None:
        """The delayed messages that release groups' held jobs (services/holding.py), several at once (each is its
        own group's): released when due, else sent again for the rest. One whose work fails goes back to the queue;
        on its last delivery it is left to the periodic sweep, which releases every held job that is due."""
        if releases and self._hold is None:
            logger.error("held jobs' releases arrived, but this stack holds nothing", extra={"jobs": releases})
            return
        hold = self._hold

        def release(item: tuple[str, QueuedMessage]) -> tuple[str | None, str | None]:
            """What the release did, or the message to hand back to the queue."""
            job, message = item
            assert hold is not None
            try:
                return hold.release(job, own_messages=own_messages), None
            except (TransientError, PermanentError) as exc:
                if message.receive_count < self._settings.intake_max_receive_count:
                    return None, message.message_id
                logger.warning(
                    "could not release a held job; the periodic sweep will", extra={"job": job, "error": str(exc)}
                )
                return None, None

        for (job, _), (how, failed) in zip(releases, _each(release, releases), strict=True):
            if failed is not None:
                outcome.failed_message_ids.append(failed)
            if how is not None:
                outcome.releases[job] = how
                if how == "released":
                    outcome.jobs_started.append(job)

    @staticmethod
    def _done(
        messages: list[QueuedMessage | tuple[str, MalformedEvent]],
        releases: list[tuple[str, QueuedMessage]],
        outcome: IntakeOutcome,
    ) -> tuple[list[str], int]:
        """The batch's intake messages handled for good (not failed, not release messages): the receipt handles of
        those that can be deleted here, and how many cannot (a body that is not JSON: Lambda deletes it)."""
        release_ids = {m.message_id for _, m in releases}
        failed = set(outcome.failed_message_ids)
        handles, undeletable = [], 0
        for message in messages:
            message_id = message.message_id if isinstance(message, QueuedMessage) else message[0]
            if message_id in release_ids or message_id in failed:
                continue
            if isinstance(message, QueuedMessage) and message.receipt_handle:
                handles.append(message.receipt_handle)
            else:
                undeletable += 1
        return handles, undeletable

    def _release_quiet(self, outcome: IntakeOutcome, done: list[str], undeletable: int) -> None:
        """The held jobs of quiet groups, released at once (several at once, each its own group's) if this batch
        was the intake queue's last (services/holding.py `due_after_batch`), whichever batches held their files.
        What fails here is logged and left to the jobs' release messages, which are on their way."""
        hold = self._hold
        if hold is None or not (done or undeletable):
            return

        def release(job: str) -> str | None:
            assert hold is not None
            try:
                return hold.release(job, queue_seen_empty=True, look_again=False)
            except (TransientError, PermanentError) as exc:
                logger.warning(
                    "could not release a held job of a quiet group; its release message will",
                    extra={"job": job, "error": str(exc)},
                )
                return None

        try:
            due = [job for job in hold.due_after_batch(done, undeletable=undeletable) if job not in outcome.releases]
        except TransientError as exc:
            logger.warning(
                "could not look for quiet groups' held jobs; their release messages will release them",
                extra={"jobs": outcome.jobs_held, "error": str(exc)},
            )
            return
        for job, how in zip(due, _each(release, due), strict=True):
            if how is not None:
                outcome.releases[job] = how
                if how == "released":
                    outcome.jobs_started.append(job)

    def _launch_failed(
        self,
        plan: JobPlan,
        exc: Exception,
        arrivals: list[_Arrival],
        outcome: IntakeOutcome,
        rejections: list[Refused],
    ) -> None:
        final = isinstance(exc, PermanentError) or any(a.final_delivery for a in arrivals)
        job_name = plan.job_name
        logger.warning("could not start the transform job", extra={"job": job_name, "error": str(exc), "final": final})
        if not final:
            outcome.failed_message_ids += [m for a in arrivals for m in a.message_ids]
            return
        if isinstance(exc, CapacityError):
            rejection = quota_rejection(exc.instance_type, str(exc))
        elif not isinstance(exc, PermanentError):
            rejection = transient_exhausted_rejection(
                f"Starting transform job {job_name}",
                str(exc),
                self._settings.intake_max_receive_count,
                f"(Should SageMaker list transform job {job_name} after all, it was created before the errors "
                "and its report will appear under predictions/.)",
            )
        else:
            rejection = Rejection(
                "JOB_NOT_STARTED",
                f"Transform job {job_name} could not be started: {exc}",
                "Check the model package and the stack's settings, then upload the file again.",
            )
        rejections += [Refused.of(f, rejection) for f in plan.all_files]

    def _announce_waiting(self, waiting: list[tuple[JobPlan, CapacityError]]) -> None:
        """One notification per batch for its jobs that wait for capacity (none when nothing waits)."""
        if not waiting:
            return
        refusal = waiting[-1][1]
        jobs = [{"job": plan.job_name, "group": plan.group, "inputs": len(plan.inputs)} for plan, _ in waiting]
        self._notifier.publish(
            f"sagepilot: {len(waiting)} transform job(s) waiting for capacity",
            capacity_wait_notice(jobs, refusal.instance_type, str(refusal)),
        )

    def _reject(self, rejections: list[Refused], outcome: IntakeOutcome) -> None:
        if not rejections:
            return
        at = self._now()

        def write(refused: Refused) -> str:
            self._bucket.put_json(
                rejected_report_key(refused.key),
                rejection_report(
                    bucket=refused.bucket,
                    key=refused.key,
                    version_id=refused.version_id,
                    rejection=refused.rejection,
                    at=at,
                ),
            )
            return refused.key

        with ThreadPoolExecutor(max_workers=min(_IO_THREADS, len(rejections))) as pool:
            outcome.rejected += list(pool.map(write, rejections))
        counts: dict[str, int] = defaultdict(int)
        for refused in rejections:
            counts[refused.rejection.code] += 1
            outcome.rejected_codes[refused.rejection.code] = outcome.rejected_codes.get(refused.rejection.code, 0) + 1
        self._notifier.publish(
            f"sagepilot: {len(rejections)} file(s) rejected",
            {
                "rejected": [
                    {
                        "key": r.key,
                        "versionId": r.version_id,
                        "code": r.rejection.code,
                        "reason": r.rejection.reason,
                        "report": f"s3://{r.bucket}/{rejected_report_key(r.key)}",
                    }
                    for r in rejections[:50]
                ],
                "countsByCode": dict(counts),
            },
        )


def _each(work: Callable[[Any], _T], items: list[Any]) -> list[_T]:
    """`work` on each item, `_GROUP_THREADS` at once (inline for one), the results in the items' order; the
    first exception is raised once all have run."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(_GROUP_THREADS, len(items))) as pool:
        return list(pool.map(work, items))
