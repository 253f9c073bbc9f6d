"""Transform job finished -> reports, retries, rejections and notifications.

Acts on SageMaker's current view of the job (DescribeTransformJob), not on the event alone, so a late
or duplicated event changes nothing: the job record's conditional transitions decide who acts.

A job writes into its own folder; its outputs are copied to predictions/ (and its reports or rejections
written there) only for the inputs still the newest version of their key, so a job that holds an older
version and finishes last never overwrites what a newer version's job left.

A job the intake planned reads the dropped keys themselves (nothing is copied on the intake's path). When it
ends, its completion checks, with a few ListObjectVersions pages (a HeadObject for a lone file), that each
claimed version is still its key's current version: then the key held that version from the claim to the
job's end, and SageMaker read exactly it. The inputs whose key changed meanwhile (a newer version, a delete
marker, the version deleted for good) are not published from this job: they run again in a job of their own
that reads its own copies of the claimed versions (`exact_plan`; claims moved with conditional writes). A
failed job with such an input runs again the same way, whole, instead of being retried, split or rejected:
a change to one key never fails its batch-mates.

A finished job frees its instances: after acting on it, jobs waiting for capacity (any group) are tried,
oldest first (JobLauncher.start_parked). The periodic `Scheduled Event` (CapacitySweepSchedule) does the
same, for when no job finishes. A retry SageMaker refuses for capacity waits the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sagepilot.adapters.notify import Notifier
from sagepilot.adapters.s3 import DataBucket
from sagepilot.adapters.sagemaker import SageMaker
from sagepilot.adapters.state import COMPLETED, FAILED, MERGED, READY, REPLANNED, SPLIT, STARTED, StateTable
from sagepilot.clock import utc_now
from sagepilot.domain.capacity import capacity_wait_notice
from sagepilot.domain.failures import input_may_cause, is_retryable_failure, job_failure_rejection
from sagepilot.domain.layout import job_folder, rejected_report_key
from sagepilot.domain.names import attempt_name, split_attempt
from sagepilot.domain.reports import input_report, job_summary, rejection_report
from sagepilot.domain.statuses import CompletionAction
from sagepilot.domain.transform_plan import InputFile, JobPlan, Newer, exact_plan, split_plan
from sagepilot.errors import CapacityError
from sagepilot.events import TERMINAL_TRANSFORM_STATUSES, TransformJobChange
from sagepilot.metrics import NoRecorder, Recorder, completion_metrics, sweep_metrics
from sagepilot.observability import logger
from sagepilot.services.holding import GroupHold
from sagepilot.services.jobs import JobLauncher, SweepResult
from sagepilot.settings import Settings

_IO_THREADS = 16


@dataclass(frozen=True)
class CompletionOutcome:
    job_name: str
    action: CompletionAction
    detail: str = ""
    started: list[str] = field(default_factory=list)  # waiting jobs this completion started (freed instances)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value else None)


class BatchCompletion:
    def __init__(
        self,
        settings: Settings,
        bucket: DataBucket,
        sagemaker: SageMaker,
        state: StateTable,
        launcher: JobLauncher,
        notifier: Notifier,
        now: Callable[[], str] = utc_now,
        metrics: Recorder | None = None,
        hold: GroupHold | None = None,
    ) -> None:
        self._hold = hold
        self._settings = settings
        self._bucket = bucket
        self._sagemaker = sagemaker
        self._state = state
        self._launcher = launcher
        self._notifier = notifier
        self._now = now
        self._metrics = metrics or NoRecorder()

    def handle(self, change: TransformJobChange) -> CompletionOutcome:
        """Act on a transform job's state change, and emit what was decided (metrics.completion_metrics)."""
        outcome = self._act(change)
        completion_metrics(self._metrics, outcome.action, len(outcome.started))
        return outcome

    def _act(self, change: TransformJobChange) -> CompletionOutcome:
        name = change.job_name
        if change.status not in TERMINAL_TRANSFORM_STATUSES:
            return CompletionOutcome(name, "ignored", f"status {change.status} needs no action")
        base, attempt = split_attempt(name)
        record = self._state.get_job(base)
        if record is None:
            logger.warning("transform job not started by this stack", extra={"job": name})
            return CompletionOutcome(name, "ignored", "not a job of this stack")
        recorded = int(record.get("attempt", 0))
        if recorded == attempt + 1 and record["status"] == STARTED:
            # This attempt's failure was already turned into a retry, and the record moves before the retry
            # is created: a handler that died in between left none. Its event again makes sure the retry
            # exists (creating it again is refused as a duplicate name when it does).
            plan = self._launcher.load_plan(str(record["bucket"]), str(record["planKey"]))
            return self._start_retry(plan, recorded, str(record.get("lastFailure", "")))
        if recorded != attempt:
            return CompletionOutcome(name, "ignored", f"attempt {attempt} superseded by {record.get('attempt')}")
        if record["status"] == SPLIT:
            # Split already; the handler that split it may have died before starting every piece: again.
            plan = self._launcher.load_plan(str(record["bucket"]), str(record["planKey"]))
            self._launch_pieces(plan)
            return CompletionOutcome(name, "duplicate", "already split")
        if record["status"] == REPLANNED:
            return CompletionOutcome(name, "duplicate", f"already run again as {record.get('replannedAs')}")
        if record["status"] == MERGED:  # never started: its inputs run in the job it was merged into
            return CompletionOutcome(name, "duplicate", f"merged into {record.get('mergedInto')}")
        if record["status"] in (COMPLETED, FAILED):
            if record["status"] == FAILED and not record.get("notified"):
                self._notify_failure(base, record)
            return CompletionOutcome(name, "duplicate", f"already {record['status']}")

        job = self._sagemaker.describe_transform_job(name)
        status = str(job["TransformJobStatus"])
        if status not in TERMINAL_TRANSFORM_STATUSES:
            return CompletionOutcome(name, "ignored", f"SageMaker still says {status}")
        if record["status"] == READY:
            # Whoever created the job (the intake, a sweep) died before recording it, or recorded it as
            # waiting for capacity after all: SageMaker has it, so it started.
            self._state.transition(
                base, expected=[READY], to=STARTED, when_attempt=attempt, remove=("kind", "waitingSince")
            )
        plan = self._launcher.load_plan(str(record["bucket"]), str(record["planKey"]))
        timings = {
            "created": _iso(job.get("CreationTime")),
            "started": _iso(job.get("TransformStartTime")),
            "ended": _iso(job.get("TransformEndTime")),
        }
        reason = str(job.get("FailureReason") or "")
        changed = self._changed(plan) if plan.reads_dropped_keys and status != "Stopped" else ()
        if changed:  # a version whose newer one is in another job is that job's business: not run again
            outdated = self._outdated(plan)
            changed = tuple(f for f in changed if f.file_id not in outdated)
        if changed and status == "Failed":
            outcome = self._read_exact(plan, name, attempt, reason, timings, changed)
        elif status == "Failed" and is_retryable_failure(reason) and attempt < self._settings.max_job_retries:
            return self._retry(plan, attempt, reason, timings)
        elif status == "Completed":
            outcome = self._completed(plan, name, attempt, timings, changed)
        elif len(plan.inputs) > 1 and input_may_cause(status, reason):
            outcome = self._split(plan, name, attempt, reason, timings)
        else:
            # A piece of a split job holding one input: the failure is that file's own.
            isolated = bool(record.get("splitFrom")) and len(plan.inputs) == 1
            outcome = self._failed(plan, name, attempt, status, reason, timings, isolated=isolated)
        # A slot of the group is free: a job waiting for it (MaxConcurrentJobsPerGroup) starts now; and the
        # job's instances are free: jobs waiting for capacity (any group) start, oldest first.
        started = self._launcher.start_waiting(plan.group)
        started += self._launcher.start_parked().started
        return CompletionOutcome(outcome.job_name, outcome.action, outcome.detail, started)

    def sweep(self) -> SweepResult:
        """The periodic pass: start jobs waiting for capacity that no completion has started (a quota
        raised, instances freed by jobs of another stack). Idempotent, like everything it calls. Emits what
        it saw (metrics.sweep_metrics)."""
        # Held jobs whose hold is over that their release message did not release, and dead releasers.
        released = self._hold.sweep() if self._hold is not None else []
        swept = self._launcher.sweep()
        if released:
            swept = replace(swept, started=[*released, *swept.started])
        sweep_metrics(self._metrics, len(swept.started), swept.waiting, swept.oldest_wait_seconds)
        return swept

    def _completed(
        self,
        plan: JobPlan,
        name: str,
        attempt: int,
        timings: dict[str, str | None],
        changed: tuple[InputFile, ...] = (),
    ) -> CompletionOutcome:
        outdated = self._outdated(plan)
        summary = job_summary(
            plan, job_name=name, status="Completed", attempts=attempt + 1, timings=timings, outdated=outdated
        )
        again = tuple(f for f in changed if f.file_id not in outdated)
        if again:
            # Their key changed before the job ended: what SageMaker read may not be the version claimed. They
            # run again from copies of the claimed versions (launched before this job is recorded COMPLETED, so
            # a handler that dies in between does it again on the event's redelivery; "already exists" is fine).
            exact = exact_plan(plan, again, self._settings.transform)
            self._launch_exact(exact, plan)
            summary["readAgain"] = {
                "transformJobName": exact.job_name,
                "inputs": [f.describe() for f in again],
                "why": "Their key changed (a newer version or a delete) before this job ended: SageMaker may have "
                "read other bytes than the version claimed, so these versions run again from copies of themselves.",
            }
        self._bucket.put_json(plan.report_key, summary)
        skipped = set(outdated) | {f.file_id for f in again}
        superseded: dict[str, list[str]] = {}
        for old in plan.superseded:
            if old.superseded_by is None:  # superseded by the version this job read
                superseded.setdefault(old.key, []).append(old.version_id or "null")

        def publish(item: InputFile) -> None:
            """The key's predictions and report, from this job only while its version is the key's newest."""
            if not self._bucket.copy(plan.output_key(item), item.dropped.prediction_key):
                # A Completed job writes one output per input; say so loudly if it did not.
                logger.warning(
                    "SageMaker wrote no output for an input",
                    extra={"job": name, "key": item.key, "output": plan.output_key(item)},
                )
            report = input_report(summary, plan, item)
            if item.key in superseded:
                report["supersededVersionIds"] = superseded[item.key]
            self._bucket.put_json(item.dropped.report_key, report)

        self._parallel(publish, tuple(f for f in plan.inputs if f.file_id not in skipped))
        self._state.transition(plan.job_name, expected=[STARTED], to=COMPLETED, when_attempt=attempt)
        logger.info(
            "transform job completed",
            extra={"job": name, "inputs": len(plan.inputs), "outdated": len(outdated), "readAgain": len(again)},
        )
        return CompletionOutcome(name, "reported", f"{len(plan.inputs) - len(skipped)} input report(s)")

    def _changed(self, plan: JobPlan) -> tuple[InputFile, ...]:
        """The inputs of a job that read the dropped keys whose claimed version is no longer their key's current
        version (a newer one, a delete marker, or none). The others were their key's version from the claim to
        now, so SageMaker read exactly them. (A version without an id, from a bucket without versioning, cannot
        be told apart from a newer one: it is taken as read.)"""
        checked = [f for f in plan.inputs if f.version_id is not None]
        if not checked:
            return ()
        current = self._bucket.current_versions(f.key for f in checked)
        changed = tuple(f for f in checked if current.get(f.key) != f.version_id)
        if changed:
            logger.warning(
                "keys changed while their job read them; those versions run again from copies",
                extra={"job": plan.job_name, "changed": [f.file_id for f in changed[:50]]},
            )
        return changed

    def _read_exact(
        self,
        plan: JobPlan,
        name: str,
        attempt: int,
        reason: str,
        timings: dict[str, str | None],
        changed: tuple[InputFile, ...],
    ) -> CompletionOutcome:
        """A failed job that read the dropped keys, some of which changed before it ended (a delete marker makes
        SageMaker fail the whole job): neither retried, split nor rejected, it runs again whole from copies of
        the claimed versions (one job; a version deleted for good is listed as deleted there). The new job is
        launched first, then this one is recorded REPLANNED: a handler that dies in between does it again."""
        exact = exact_plan(plan, plan.inputs, self._settings.transform)
        self._launch_exact(exact, plan)
        if self._state.transition(
            plan.job_name,
            expected=[STARTED],
            to=REPLANNED,
            when_attempt=attempt,
            replannedAs=exact.job_name,
            failureReason=(reason or "Failed")[:1000],
        ):
            summary = job_summary(
                plan, job_name=name, status="ReadAgain", attempts=attempt + 1, timings=timings, failure_reason=reason
            )
            summary["readAgain"] = {
                "transformJobName": exact.job_name,
                "inputs": [f.describe() for f in plan.inputs],
                "changed": [f.describe() for f in changed],
                "why": "Some keys changed (a newer version or a delete) before this job ended, which can fail it: "
                "its inputs run again from copies of the versions claimed, instead of failing.",
            }
            self._bucket.put_json(plan.report_key, summary)
        return CompletionOutcome(name, "read again", f"as {exact.job_name}: {len(changed)} key(s) changed")

    def _launch_exact(self, exact: JobPlan, plan: JobPlan) -> None:
        result = self._launcher.launch(exact, take_from=plan.job_name, why="exact")
        if result.refused is not None and not result.already_waiting:
            self._notifier.publish(
                "sagepilot: 1 transform job(s) waiting for capacity",
                capacity_wait_notice(
                    [{"job": exact.job_name, "group": exact.group, "inputs": len(result.plan.inputs)}],
                    result.refused.instance_type,
                    str(result.refused),
                ),
            )

    def _outdated(self, plan: JobPlan) -> dict[str, Newer]:
        """Inputs whose key got a newer version in another job since this job was planned: the key's
        predictions, report and rejection are that version's, never overwritten by this older one."""
        ordered = [f for f in plan.inputs if f.ordered]  # without a sequencer, nothing says which is newer
        latest = self._state.latest([f.object_id for f in ordered]) if ordered else {}
        outdated: dict[str, Newer] = {}
        for f in ordered:
            newest = latest.get(f.object_id)
            if newest and str(newest["recency"]) > f.recency:
                version = str(newest["versionId"])
                outdated[f.file_id] = Newer(None if version == "null" else version, str(newest["job"]))
        if outdated:
            logger.info("newer versions are in other jobs", extra={"job": plan.job_name, "outdated": len(outdated)})
        return outdated

    def _retry(self, plan: JobPlan, attempt: int, reason: str, timings: dict[str, str | None]) -> CompletionOutcome:
        following = attempt + 1
        if not self._state.transition(
            plan.job_name,
            expected=[STARTED],
            to=STARTED,
            when_attempt=attempt,
            attempt=following,
            lastFailure=reason[:1000],
        ):
            return CompletionOutcome(attempt_name(plan.job_name, attempt), "duplicate", "retry already under way")
        return self._start_retry(plan, following, reason)

    def _start_retry(self, plan: JobPlan, following: int, reason: str) -> CompletionOutcome:
        """Create the retry recorded as attempt `following` (safe to repeat: its name is deterministic)."""
        new_name = attempt_name(plan.job_name, following)
        moved = self._launcher.model_withdrawn(plan, following, expected=STARTED)
        if moved is not None:  # its model was rejected since: the retry runs on the newest Approved one, or not
            return CompletionOutcome(
                new_name, "replanned" if moved.moved.startswith("replanned") else "rejected", moved.moved
            )
        try:
            created = self._launcher.start_attempt(plan, following)
        except CapacityError as exc:
            # No capacity for the retry now: it waits (READY at the next attempt) like any refused job, and
            # starts when instances free up; the inputs keep their claims.
            if self._launcher.park(plan, following, exc, expected=STARTED):
                self._notifier.publish(
                    f"sagepilot: transform job {new_name} waiting for capacity",
                    capacity_wait_notice(
                        [{"job": new_name, "group": plan.group, "inputs": len(plan.inputs), "retryOf": reason[:500]}],
                        exc.instance_type,
                        str(exc),
                    ),
                )
            return CompletionOutcome(new_name, "waiting", f"retry waits for capacity: {exc}")
        if not created:
            return CompletionOutcome(new_name, "duplicate", "retry already under way")
        logger.warning(
            "transform job failed; retrying", extra={"job": plan.job_name, "attempt": following, "reason": reason}
        )
        return CompletionOutcome(new_name, "retried", reason)

    def _split(
        self, plan: JobPlan, name: str, attempt: int, reason: str, timings: dict[str, str | None]
    ) -> CompletionOutcome:
        """The job failed for a reason one input can cause: its inputs go to two smaller jobs (named from this
        one and the half), so that the good ones are scored and each bad one ends alone, rejected with its own
        reason. The move is recorded first (SPLIT, a conditional write on this attempt), so a handler that dies
        half-way is finished by the event's redelivery; each piece takes its inputs' claims over from this job
        with conditional writes, and "already exists" is success throughout."""
        pieces = split_plan(plan, self._settings.transform)
        if not self._state.transition(
            plan.job_name,
            expected=[STARTED],
            to=SPLIT,
            when_attempt=attempt,
            failureReason=(reason or "Failed")[:1000],
            splitInto=",".join(p.job_name for p in pieces),
        ):
            return CompletionOutcome(name, "duplicate", "split already under way")
        summary = job_summary(
            plan, job_name=name, status="Split", attempts=attempt + 1, timings=timings, failure_reason=reason
        )
        summary["splitInto"] = [{"transformJobName": p.job_name, "inputs": [f.key for f in p.inputs]} for p in pieces]
        summary["note"] = (
            "The job failed for a reason one input can cause; its inputs were split into the jobs named here, "
            "so that the bad ones end alone (rejected with their own reason) and the others are scored."
        )
        self._bucket.put_json(plan.report_key, summary)
        self._launch_pieces(plan, pieces)
        logger.warning(
            "transform job failed for a reason one input can cause; split",
            extra={"job": name, "inputs": len(plan.inputs), "pieces": [p.job_name for p in pieces], "reason": reason},
        )
        return CompletionOutcome(name, "split", reason)

    def _launch_pieces(self, plan: JobPlan, pieces: list[JobPlan] | None = None) -> None:
        """Record, claim (taking over from `plan`'s job) and start each piece; idempotent."""
        waiting = []
        for piece in pieces if pieces is not None else split_plan(plan, self._settings.transform):
            result = self._launcher.launch(piece, take_from=plan.job_name)
            if result.refused is not None and not result.already_waiting:
                waiting.append((result.plan, result.refused))
        if waiting:
            refusal = waiting[-1][1]
            self._notifier.publish(
                f"sagepilot: {len(waiting)} transform job(s) waiting for capacity",
                capacity_wait_notice(
                    [{"job": p.job_name, "group": p.group, "inputs": len(p.inputs)} for p, _ in waiting],
                    refusal.instance_type,
                    str(refusal),
                ),
            )

    def _failed(
        self,
        plan: JobPlan,
        name: str,
        attempt: int,
        status: str,
        reason: str,
        timings: dict[str, str | None],
        *,
        isolated: bool = False,
    ) -> CompletionOutcome:
        outdated = self._outdated(plan)
        summary = job_summary(
            plan,
            job_name=name,
            status=status,
            attempts=attempt + 1,
            timings=timings,
            failure_reason=reason,
            outdated=outdated,
        )
        self._bucket.put_json(plan.report_key, summary)
        rejection = job_failure_rejection(name, status, plan.in_dropped_terms(reason), attempt + 1, isolated=isolated)
        at = self._now()

        def write(item: Any) -> None:
            self._bucket.put_json(
                rejected_report_key(item.key),
                rejection_report(
                    bucket=item.bucket,
                    key=item.key,
                    version_id=item.version_id,
                    rejection=rejection,
                    at=at,
                    job_name=name,
                ),
            )

        self._parallel(write, tuple(f for f in plan.inputs if f.file_id not in outdated))
        if self._state.transition(
            plan.job_name, expected=[STARTED], to=FAILED, when_attempt=attempt, failureReason=(reason or status)[:1000]
        ):
            record = self._state.get_job(plan.job_name) or {}
            self._notify_failure(plan.job_name, record)
        return CompletionOutcome(name, "rejected", reason or status)

    def _notify_failure(self, base: str, record: dict[str, Any]) -> None:
        attempt = int(record.get("attempt", 0))
        self._notifier.publish(
            f"sagepilot: transform job {attempt_name(base, attempt)} failed",
            {
                "transformJobName": attempt_name(base, attempt),
                "modelPackageGroup": record.get("group"),
                "failureReason": record.get("failureReason"),
                "inputs": record.get("inputs"),
                "jobReport": f"s3://{record.get('bucket')}/{job_folder(str(record.get('group')), base)}report.json",
                "whatToDo": "Each input has a report under rejected/; fix the cause and upload the files again.",
            },
        )
        self._state.transition(base, expected=[FAILED], to=FAILED, notified=True)

    @staticmethod
    def _parallel(fn: Callable[[Any], None], items: tuple[Any, ...]) -> None:
        if not items:
            return
        with ThreadPoolExecutor(max_workers=min(_IO_THREADS, len(items))) as pool:
            list(pool.map(fn, items))
