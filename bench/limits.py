"""`make limits` / `python -m bench.limits`: where this design stops, simulated (docs/limits.md, "Limits and scaling").

Three inputs, none copied by hand:
- the AWS calls each handler makes per event, measured by the bench (`.bench/results.json`, section "aws
  calls"; scenarios it lacks are measured now by running `python -m bench.calls --only ...` in a child);
- the template's defaults (template.yaml: batching, concurrency, job size, bake time, timeouts, alarms);
- AWS quotas (named constants below, each with its source), and the few figures AWS does not publish
  (named as assumptions: replace them with your account's).

Two scenarios, deterministic (seeded), and sweeps that find the ceiling of each limit:
- a day of N files (1,000,000 by default) across G model groups (200): a diurnal arrival curve (an afternoon
  peak, a nightly export peak, a floor) plus each group's daily dump of 30% of its files within a minute;
  group sizes Zipf-distributed. The SQS event source mapping is simulated batch by batch (BatchSize,
  MaximumBatchingWindowInSeconds, MaximumConcurrency, the 6 MB payload), each intake invocation lasting
  its measured calls x their latency; each batch plans one job per group and MaxFilesPerJob files; jobs
  take instances from the transform-instance quota or are refused (ResourceLimitExceeded) and wait, parked
  in the state table, until instances free up: every job's completion, and every CapacitySweepSchedule tick,
  starts parked jobs in the scheduler's turn until one does not fit; each job's completion is one event. The
  jobs are followed for three days; what still waits then is reported. The day runs as built: merge at start
  (issue 19: the waiting job given the turn takes in its group's other waiting jobs, oldest first, up to
  MaxFilesPerJob, `coalesce`) and the start-up hold (`StartupHold`, `HeldWork`, on domain/hold.py's policy, with
  the template's HoldSeconds and HoldQuietSeconds: a busy group's planned jobs gather in its one held job,
  released when the group is quiet and the simulated intake queue has no backlog, or when the hold is over),
  beside merge at start without the hold and no merging (the scheduler alone), with the assumed quota (20
  instances) and with 2,000; and once more as built with KNOBS, the settings found to meet issue 19's targets.
  The sandbox bench's groups drop runs in the same model (`groups_bench_intake`, `start_as_built`, the sandbox's
  settings). The simulation raises if a planned job's files are started twice, merged across groups, or lost.
  With `--hold` (minutes more): the same day under merge at start with the hold as built, its variants (c) and
  visible backlog only (the first version built), and each start-up hold considered before it was built
  (`Hold`, `start_with_hold`).
- W endpoints (500) each rolling out once a week (approvals at seeded times in working hours): every
  reconcile tick (ReconcileSchedule) reconciles the endpoints in a rollout and the stable ones due
  (STABLE_CHECK_SECONDS), within the rollout function's timeout.

Reported: jobs started, peak concurrency (Lambda, transform jobs and instances, canaries), queue age, calls per
second per API against its rate limit, DynamoDB writes per second (table and hottest item), EventBridge
invocations per second, and where each limit is hit. Simplifications, said plainly: one content type per
group; the groups in a batch are drawn from the day's shares (a dump's files are its group's); calls within an
invocation run one after another; waiting jobs start in domain/scheduler.py's order (each group's oldest
first, the groups served least among the last 100 started first; a new job waits behind its group's waiting
jobs); the calls a merge adds are ESTIMATED from what the design does (`merge_cost`; merging is not measured
yet); the calls of the sweeps and of the parked jobs' later starts are not counted.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import json
import math
import subprocess
import sys
from collections import Counter, defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.common import clean_environment
from sagepilot.domain.hold import Decision, HoldSettings, decide, hold_over, release_due
from sagepilot.domain.scheduler import job_instances
from sagepilot.services.jobs import SERVED_WINDOW  # the scheduler's memory: the stack's last N jobs

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / ".bench"
SEED = 7
DAY = 86_400
WEEK = 7 * DAY

# ---------------------------------------------------------------------------------------- AWS quotas
# Lambda quotas (docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): 1,000 concurrent
# executions per Region by default; 6 MB request payload for synchronous invocation (the SQS event source
# mapping invokes synchronously; also /work/shared/reference/aws-facts.md).
LAMBDA_CONCURRENCY = 1_000
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
# SQS event source mapping (Lambda developer guide, "Using Lambda with Amazon SQS"): BatchSize up to 10,000
# for standard queues, MaximumBatchingWindowInSeconds up to 300.
SQS_MAX_BATCH = 10_000
SQS_MAX_WINDOW_SECONDS = 300
# DynamoDB ("On-demand capacity mode", "Initial throughput"; knowledge-center on-demand-table-throttling):
# a new on-demand table serves up to 4,000 write request units/s at once (then up to double its previous
# peak); each partition serves up to 1,000 WRU/s (so one item at most 1,000 writes/s); the table-level quota
# for on-demand tables is 40,000 WRU/s by default (adjustable).
DDB_NEW_TABLE_WRITES = 4_000
DDB_PARTITION_WRITES = 1_000
DDB_TABLE_WRITES = 40_000
# EventBridge quotas (docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html): "Invocations throttle
# limit" 18,750/s in us-east-1, us-west-2 and eu-west-1 (4,500 in us-east-2 and eu-central-1, 1,100 in most
# others); beyond it invocations are delayed, not lost. S3 and SageMaker events are AWS events: the
# PutEvents quota (10,000/s in us-east-1) does not apply to them, each rule match is one invocation.
EVENTBRIDGE_INVOCATIONS = 18_750
# S3 ("Best practices design patterns: optimizing Amazon S3 performance"): 3,500 PUT/COPY/POST/DELETE and
# 5,500 GET/HEAD requests per second per partitioned prefix.
S3_WRITES_PER_PREFIX = 3_500
S3_READS_PER_PREFIX = 5_500
S3_READS = ("s3.HeadObject", "s3.ListObjectVersions", "s3.GetObject")  # the GET-class requests counted
# SageMaker: AWS publishes no request rate for its control-plane APIs; they answer ThrottlingException
# ("Rate exceeded") under bursts (aws-facts.md; e.g. facebookresearch/dynabench#482 on CreateTransformJob,
# aws/sagemaker-python-sdk#645 on CreateTrainingJob). ASSUMPTION, per API: replace with what AWS Support
# tells you for your account.
SAGEMAKER_API_RATE = 5.0
# SageMaker instance quotas ("<type> for transform job usage", "<type> for endpoint usage") are per
# account and type in Service Quotas, and differ between accounts (new accounts often get less). ASSUMPTION:
# read yours with `aws service-quotas list-service-quotas --service-code sagemaker`.
TRANSFORM_INSTANCES_QUOTA = 20
ENDPOINT_INSTANCES_QUOTA = 20

# ---------------------------------------------------------------------------------------- assumptions
# Latency of one call inside a Region (the sandbox's are not AWS's); a handler's calls run one after another.
LATENCY_SECONDS = {"s3": 0.025, "dynamodb": 0.008, "sagemaker": 0.120, "sns": 0.030, "cloudwatch": 0.030}
LATENCY_DEFAULT = 0.030
INVOKE_OVERHEAD_SECONDS = 0.050  # per warm invocation
# Instances and image pull before a job's first record (aws-facts.md: minutes; about 8 for a large image).
JOB_STARTUP_SECONDS = 420
FILE_MEGABYTES = 1.0  # average dropped file
SECONDS_PER_MEGABYTE = 0.5  # scoring time per MB per instance (model dependent)
ENDPOINT_UPDATE_SECONDS = 480  # UpdateEndpoint that adds or removes a variant
WEIGHTS_UPDATE_SECONDS = 60  # UpdateEndpointWeightsAndCapacities
# When the bench has no rollout scenario yet: AWS calls of one endpoint's reconcile (lease, describe, registry,
# alarms, release), and of a reconcile that moves a rollout on.
FALLBACK_RECONCILE_CALLS = {
    "dynamodb.UpdateItem": 2,
    "sagemaker.DescribeEndpoint": 1,
    "sagemaker.ListModelPackages": 1,
    "cloudwatch.DescribeAlarms": 1,
}
FALLBACK_MOVE_CALLS = {**FALLBACK_RECONCILE_CALLS, "sagemaker.UpdateEndpointWeightsAndCapacities": 1}
# ESTIMATE (merge at start is not measured yet; see merge_cost): per waiting job a merge takes in, its record
# and its plan read, and the conditional write that marks it merged into the started job.
MERGE_CALLS_PER_TAKEN_JOB = {"dynamodb.GetItem": 1.0, "s3.GetObject": 1.0, "dynamodb.UpdateItem": 1.0}

# The bench scenarios this simulation reads (bench/calls.py).
INTAKE_1, INTAKE_100 = "s3 drop: 1 file", "s3 drop: 100 files, one batch"
COMPLETION_1, COMPLETION_100 = "job completed: 1 file", "job completed: 100 files"
RECONCILE_STABLE, RECONCILE_MOVE = "rollout: no-op reconcile", "rollout: traffic shift to 50%"
ROLLOUT_START, ROLLOUT_PROMOTE = "rollout: second approval", "rollout: promotion"
SCENARIOS = (
    INTAKE_1,
    INTAKE_100,
    COMPLETION_1,
    COMPLETION_100,
    RECONCILE_STABLE,
    RECONCILE_MOVE,
    ROLLOUT_START,
    ROLLOUT_PROMOTE,
)
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


# ---------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Defaults:
    """What the simulation takes from template.yaml."""

    batch_size: int
    window: int
    concurrency: int
    max_files_per_job: int
    max_instances: int
    target_mb_per_instance: float
    max_receive_count: int
    visibility_timeout: int
    retention: int
    intake_timeout: int
    rollout_timeout: int
    backlog_alarm_seconds: float
    canary_steps: tuple[int, ...]
    bake_seconds: int
    reconcile_seconds: int
    stable_check_seconds: int
    capacity_sweep_seconds: int
    capacity_alarm_seconds: float
    endpoint_instances: int
    transform_instance_type: str
    endpoint_instance_type: str
    hold_seconds: int  # HoldSeconds: the start-up hold (0: none), services/holding.py
    hold_quiet_seconds: int  # HoldQuietSeconds: a held job is released once its group is quiet this long
    max_jobs_per_group: int = 0  # MaxConcurrentJobsPerGroup (0: no limit)


def _rate_seconds(expression: str) -> int:
    amount, unit = expression.removeprefix("rate(").removesuffix(")").split()
    return int(amount) * {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": DAY, "days": DAY}[unit]


def read_defaults(root: Path = ROOT) -> Defaults:
    from sagepilot_sandbox.stack.template import load_template

    template = load_template(root / "template.yaml")
    p = {k: v.get("Default") for k, v in template["Parameters"].items()}
    resources = template["Resources"]
    globals_timeout = int(template["Globals"]["Function"]["Timeout"])

    def timeout(function: str) -> int:
        return int(resources[function]["Properties"].get("Timeout", globals_timeout))

    queue = resources["IntakeQueue"]["Properties"]
    rollout_env = resources["RolloutFunction"]["Properties"].get("Environment", {}).get("Variables", {})
    return Defaults(
        batch_size=int(p["IntakeBatchSize"]),
        window=int(p["BatchingWindowSeconds"]),
        concurrency=int(p["IntakeMaxConcurrency"]),
        max_files_per_job=int(p["MaxFilesPerJob"]),
        max_instances=int(p["MaxInstanceCount"]),
        target_mb_per_instance=float(p["TargetMegabytesPerInstance"]),
        max_receive_count=int(p["IntakeMaxReceiveCount"]),
        visibility_timeout=int(queue["VisibilityTimeout"]),
        retention=int(queue["MessageRetentionPeriod"]),
        intake_timeout=timeout("BatchIntakeFunction"),
        rollout_timeout=timeout("RolloutFunction"),
        backlog_alarm_seconds=float(resources["IntakeBacklogAlarm"]["Properties"]["Threshold"]),
        canary_steps=tuple(int(s) for s in str(p["CanarySteps"]).split(",")),
        bake_seconds=int(p["BakeSeconds"]),
        reconcile_seconds=_rate_seconds(str(p["ReconcileSchedule"])),
        stable_check_seconds=int(rollout_env.get("STABLE_CHECK_SECONDS", 60)),
        capacity_sweep_seconds=_rate_seconds(str(p["CapacitySweepSchedule"])),
        capacity_alarm_seconds=float(resources["CapacityBacklogAlarm"]["Properties"]["Threshold"]),
        endpoint_instances=int(p["EndpointInstanceCount"]),
        transform_instance_type=str(p["TransformInstanceType"]),
        endpoint_instance_type=str(p["EndpointInstanceType"]),
        hold_seconds=int(p["HoldSeconds"]),
        hold_quiet_seconds=int(p["HoldQuietSeconds"]),
        max_jobs_per_group=int(p["MaxConcurrentJobsPerGroup"]),
    )


def sqs_record_bytes(root: Path = ROOT) -> int:
    """The largest record of the sample SQS intake event (events/sqs-intake-batch.json): one S3 event as the
    intake receives it."""
    records = json.loads((root / "events" / "sqs-intake-batch.json").read_text())["Records"]
    return max(len(json.dumps(r)) for r in records)


def _scenarios_from(path: Path) -> dict[str, dict[str, int]]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    sections = data.get("sections", [data])
    found: dict[str, dict[str, int]] = {}
    for section in sections:
        for name, scenario in section.get("details", {}).get("scenarios", {}).items():
            calls = scenario.get("recorded", {}).get("calls")
            if calls:
                found[name] = {k: int(v) for k, v in calls.items()}
    return found


def measured_calls(results: Path, *, measure: bool) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Calls per scenario: from the bench's results, then (for what they lack) from running the scenarios."""
    found = {} if measure else _scenarios_from(results)
    notes = [f"calls per event from {results.relative_to(ROOT) if results.is_relative_to(ROOT) else results}"]
    missing = [s for s in SCENARIOS if s not in found]
    if missing:
        out = OUT_DIR / "limits-calls.json"
        command = [sys.executable, "-m", "bench.calls", "--out", str(out), "--root", str(ROOT)]
        for name in missing:
            command += ["--only", name]
        done = subprocess.run(
            command, cwd=ROOT, env=clean_environment(), capture_output=True, text=True, timeout=600, check=False
        )
        fresh = _scenarios_from(out) if done.returncode == 0 else {}
        found.update(fresh)
        measured = [s for s in missing if s in fresh]
        if measured:
            notes.append(f"measured now (python -m bench.calls --only ...): {', '.join(measured)}")
        elif done.returncode != 0:
            notes.append(f"python -m bench.calls failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    still = [s for s in SCENARIOS if s not in found]
    if still:
        notes.append(f"not measured by this bench (assumed, see FALLBACK_*): {', '.join(still)}")
    return found, notes


@dataclass(frozen=True)
class Costs:
    """AWS calls by operation ("service.Operation"): per file and per job, for intake and completion; per
    reconcile of an endpoint (stable, or moving a rollout on)."""

    intake_file: Mapping[str, float]
    intake_job: Mapping[str, float]
    completion_file: Mapping[str, float]
    completion_job: Mapping[str, float]
    reconcile: Mapping[str, float]
    move: Mapping[str, float]


def _split(one: Mapping[str, int], hundred: Mapping[str, int]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-file and per-job calls from a 1-file and a 100-file scenario (both one job): linear in files."""
    per_file = {op: (hundred.get(op, 0) - one.get(op, 0)) / 99 for op in set(one) | set(hundred)}
    per_job = {op: one.get(op, 0) - per_file[op] for op in per_file}
    return {k: v for k, v in per_file.items() if v > 1e-9}, {k: v for k, v in per_job.items() if v > 1e-9}


def costs_from(calls: Mapping[str, Mapping[str, int]]) -> Costs:
    intake_file, intake_job = _split(calls[INTAKE_1], calls[INTAKE_100])
    completion_file, completion_job = _split(calls[COMPLETION_1], calls[COMPLETION_100])
    reconcile = dict(calls.get(RECONCILE_STABLE, FALLBACK_RECONCILE_CALLS))
    move = dict(calls.get(RECONCILE_MOVE, FALLBACK_MOVE_CALLS))
    return Costs(intake_file, intake_job, completion_file, completion_job, reconcile, move)


def seconds_of(calls: Mapping[str, float]) -> float:
    return sum(n * LATENCY_SECONDS.get(op.split(".")[0], LATENCY_DEFAULT) for op, n in calls.items())


def _combine(*parts: tuple[Mapping[str, float], float]) -> dict[str, float]:
    out: Counter[str] = Counter()
    for calls, times in parts:
        for op, n in calls.items():
            out[op] += n * times
    return dict(out)


# ---------------------------------------------------------------------------------------- the batch day
@dataclass(frozen=True)
class Day:
    files: int = 1_000_000
    groups: int = 200
    dump_share: float = 0.3  # of each group's files, dropped at once in its daily export
    seed: int = SEED
    transform_quota: int = TRANSFORM_INSTANCES_QUOTA


def arrivals(day: Day) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per second: files of the diurnal curve, files of dumps, the dump's group (-1: none); and group shares."""
    rng = np.random.default_rng(day.seed)
    shares = 1.0 / np.arange(1, day.groups + 1) ** 1.0
    shares /= shares.sum()
    hours = np.arange(DAY) / 3600.0
    night = np.minimum(np.abs(hours - 2.0), 24.0 - np.abs(hours - 2.0))
    curve = 0.25 + np.exp(-(((hours - 14.0) / 3.0) ** 2)) + 0.6 * np.exp(-((night / 1.0) ** 2))
    base_total = day.files * (1.0 - day.dump_share)
    base = rng.poisson(curve / curve.sum() * base_total).astype(np.int64)
    dumps = np.zeros(DAY, dtype=np.int64)
    dump_group = np.full(DAY, -1, dtype=np.int64)
    starts = rng.integers(7 * 3600, 19 * 3600, size=day.groups)
    for group, start in enumerate(starts):
        size = round(day.files * day.dump_share * shares[group])
        while dump_group[start] not in (-1, group):  # one dump per second keeps each dump's files its own
            start += 60
        seconds = np.arange(start, min(start + 60, DAY))
        dumps[seconds] += np.diff(np.linspace(0, size, len(seconds) + 1).round().astype(np.int64))
        dump_group[seconds] = group
    return base, dumps, dump_group, shares


@dataclass
class Ledger:
    """What happened, per second: calls per operation, events, Lambda concurrency, transform instances."""

    horizon: int
    calls: dict[str, np.ndarray] = field(default_factory=dict)
    events: np.ndarray = field(init=False)
    lambdas: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.events = np.zeros(self.horizon)
        self.lambdas = np.zeros(self.horizon)

    def spend(self, calls: Mapping[str, float], start: float, seconds: float) -> None:
        """`calls` spread evenly over [start, start + seconds); the invocation counts as one concurrent."""
        a = min(self.horizon - 1, int(start))
        b = min(self.horizon, max(a + 1, math.ceil(start + seconds)))
        for op, n in calls.items():
            series = self.calls.setdefault(op, np.zeros(self.horizon))
            series[a:b] += n / (b - a)
        self.lambdas[a:b] += min(1.0, seconds)  # an invocation shorter than a second counts pro rata

    def peak(self, ops: Sequence[str]) -> float:
        series = [self.calls[op] for op in ops if op in self.calls]
        return float(np.max(np.sum(series, axis=0))) if series else 0.0


class Piece(NamedTuple):
    """A job the intake planned: one group's files of one batch (at most MaxFilesPerJob). Ordered by age."""

    created: float  # when the intake planned it
    seq: int
    files: int
    oldest: float  # its oldest file's upload
    since: float  # when it began to wait
    instances: int
    group: int


def coalesce(queue: Sequence[Piece], max_files: int) -> int:
    """Merge at start: how many of the waiting jobs at the front of `queue` (oldest first; `queue[0]` has the
    turn) become one job. The head, then the next ones while they are of the head's group and the merged job
    stays within `max_files`; it stops at the first that does not fit (strictly oldest first). At least 1
    for a non-empty queue, even if the head alone is larger."""
    if not queue:
        return 0
    head, files, taken = queue[0], queue[0].files, 1
    for piece in itertools.islice(queue, 1, None):
        if piece.group != head.group or files + piece.files > max_files:
            break
        files += piece.files
        taken += 1
    return taken


# ---------------------------------------------------------------------------------------- a start-up hold, considered
# Considered for issue 19 before the hold was built (docs/limits.md), simulated only: `StartupHold` is the one
# built, this the design space it came from. With
# instances to spare nothing waits, so merge at start merges nothing and every intake batch starts one job per
# group it holds. The hold makes a busy group's new work wait while the group's latest job is still starting up
# (SageMaker bills and waits JOB_STARTUP_SECONDS before the first record anyway), so it merges.
@dataclass(frozen=True)
class Hold:
    """A new job of a group does not start while the group has a job started less than `seconds` ago: it waits
    (READY, like a job refused for capacity) and merges with the group's other waiting work. Released, merged and
    started, by whichever comes first once the hold has expired: (a) the group's next intake batch
    (`on_intake`), (b) the capacity sweep (CapacitySweepSchedule), (c) any transform job's completion (both
    already call start_parked). `until_full`: work that fills a job (MaxFilesPerJob files) is never held (the
    intake starts it): without it a group's throughput is one job per `seconds`."""

    seconds: float
    on_intake: bool = True  # release (a); (b) and (c) always release
    until_full: bool = False

    def label(self) -> str:
        release = "(a)+(b)+(c)" if self.on_intake else "(b)+(c)"
        return f"hold {self.seconds:,.0f} s{' until a full job' if self.until_full else ''}, release {release}"


def holds(now: float, last_started: float | None, hold: Hold, *, waiting_files: int = 0, max_files: int = 0) -> bool:
    """Whether a group whose latest job started at `last_started` (None: never) holds its new work at `now`. A
    group with no job started in the last `hold.seconds` is never held: a quiet group's file starts at once.
    With `hold.until_full`, neither is one whose `waiting_files` (the new job's included) fill `max_files`."""
    if hold.until_full and max_files > 0 and waiting_files >= max_files:
        return False
    return hold.seconds > 0 and last_started is not None and now - last_started < hold.seconds


class Planned(NamedTuple):
    """A job the intake planned: when (the end of its batch's invocation), its group, its files."""

    at: float
    group: int
    files: int


class Started(NamedTuple):
    """A transform job started: when, its group, the planned jobs it holds (indexes), their files."""

    at: float
    group: int
    sources: tuple[int, ...]
    files: int


def start_with_hold(
    planned: Sequence[Planned],
    hold: Hold,
    *,
    sweep_seconds: float,
    max_files: int,
    sweep_phase: float = 0.0,
    completions: Sequence[float] = (),
) -> list[Started]:
    """The hold with instances to spare (pure; no capacity limit): the transform jobs that start for `planned`.

    A planned job of a group that holds nothing waiting starts at once unless the group is held (`holds`); one of
    a group with work waiting joins it. Held work is released (oldest first, merged up to `max_files`: one job,
    after which the group is held again) by (a) the group's next planned job once the hold expired (with
    `hold.on_intake`), (b) a sweep tick (`sweep_phase` + k * `sweep_seconds`) or (c) a completion (`completions`)
    after it expired. Every planned job ends in exactly one started job (the sweep keeps ticking while work
    waits); deterministic."""
    if sweep_seconds <= 0:
        raise ValueError("the capacity sweep needs a period")
    waiting: dict[int, list[int]] = {}
    last: dict[int, float] = {}
    started: list[Started] = []

    def held(at: float, group: int) -> bool:
        files = sum(planned[i].files for i in waiting.get(group, ()))
        return holds(at, last.get(group), hold, waiting_files=files, max_files=max_files)

    def full(group: int) -> bool:
        return hold.until_full and sum(planned[i].files for i in waiting.get(group, ())) >= max_files

    def release(at: float, group: int) -> None:
        queue = waiting[group]
        take, files = 1, planned[queue[0]].files
        while take < len(queue) and files + planned[queue[take]].files <= max_files:
            files += planned[queue[take]].files
            take += 1
        started.append(Started(at, group, tuple(queue[:take]), files))
        del queue[:take]
        if not queue:
            del waiting[group]
        last[group] = at

    def release_expired(at: float) -> None:
        for group in sorted(waiting):
            if not held(at, group):
                release(at, group)

    arrivals = deque(sorted(range(len(planned)), key=lambda i: (planned[i].at, i)))
    ends = deque(sorted(completions))
    tick = sweep_phase % sweep_seconds
    while arrivals or waiting:
        arrival_at = planned[arrivals[0]].at if arrivals else math.inf
        end_at = ends[0] if ends else math.inf
        while tick < arrival_at and tick < end_at and not waiting:
            tick += sweep_seconds  # the sweep finds nothing waiting
        at = min(arrival_at, end_at, tick)
        if arrival_at == at:
            index = arrivals.popleft()
            group = planned[index].group
            if group in waiting:
                waiting[group].append(index)
                if (hold.on_intake and not held(at, group)) or full(group):
                    release(at, group)  # (a), or a full job
            else:
                waiting[group] = [index]
                if not held(at, group):
                    release(at, group)  # not held: starts at once
        elif end_at == at:
            ends.popleft()
            release_expired(at)  # (c)
        else:
            release_expired(at)  # (b)
            tick += sweep_seconds
    return started


# ---------------------------------------------------------------------------------------- the start-up hold, as built
# domain/hold.py and services/holding.py (docs/batch.md "A busy group's batches wait for each other"), modelled
# here with the product's own policy functions (`decide`, `release_due`, `hold_over`).
@dataclass(frozen=True)
class StartupHold:
    """The start-up hold as built, with the template's HoldSeconds and HoldQuietSeconds (`of`).

    A group that started a job less than `seconds` ago (its start recorded when a quiet group's batch starts,
    or when its held job is released) holds each planned job, unless it alone fills MaxFilesPerJob, in its one
    open held job; a quiet group starts at once. The held job is released, to start like any job (merge at start,
    capacity waits), by whichever comes first: (1) its delayed message finds the group quiet (`quiet_seconds`
    since its last addition) and the intake queue without a backlog; (2) the hold is over (`seconds` after the
    group's last start): its message, or the capacity sweep; (a) the group's next batch once the hold is over,
    which joins the held work, all of it one job; a held job that would pass MaxFilesPerJob goes at once, a new
    one holds the rest. Not built, a variant: (c) `on_completion`, every transform job's completion also
    releases the held jobs that are due (quiet or over), even while the intake queue has a backlog. As built,
    `in_flight`: the backlog condition (1) counts the files in flight in a running intake invocation too (the
    queue's messages not visible, less the releasing batch's own); the variant `in_flight=False` reads the visible
    messages only (the first version built: a group's files in a batch being planned did not keep its held job
    from looking quiet, and the groups bench got 3 jobs per group)."""

    seconds: int
    quiet_seconds: int
    on_completion: bool = False  # (c): not built
    in_flight: bool = True  # as built; False: the visible messages only

    @classmethod
    def of(cls, defaults: Defaults, *, on_completion: bool = False, in_flight: bool = True) -> StartupHold:
        return cls(defaults.hold_seconds, defaults.hold_quiet_seconds, on_completion, in_flight)

    @property
    def settings(self) -> HoldSettings:
        return HoldSettings(hold_seconds=self.seconds, quiet_seconds=self.quiet_seconds)

    def label(self) -> str:
        variants = [
            *(["(c) completions"] if self.on_completion else []),
            *([] if self.in_flight else ["visible backlog only"]),
        ]
        built = "as built" + "".join(f" + {v}" for v in variants)
        return f"hold {self.seconds:,} s, quiet {self.quiet_seconds:,} s, {built}"


@dataclass(frozen=True)
class IntakeQueue:
    """The simulated intake queue, for the hold's backlog condition: a message is visible (a backlog) when its
    file was uploaded and no intake batch begun by then has taken it (a batch takes the files it collects from its
    start, they are in flight, not visible)."""

    uploads: np.ndarray  # every file's upload time, sorted
    batch_starts: Sequence[float]  # when each batch began to collect (non-decreasing)
    batch_taken: Sequence[int]  # files taken by that batch and every earlier one
    batch_ends: Sequence[float]  # when each batch's invocation ended (its jobs planned)
    _ends_so_far: list[float] = field(init=False, repr=False, compare=False)  # the latest end of a batch begun

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ends_so_far", list(itertools.accumulate(self.batch_ends, max)))

    def backlog(self, at: float) -> bool:
        arrived = int(np.searchsorted(self.uploads, at, side="right"))
        began = bisect.bisect_right(self.batch_starts, at) - 1
        return arrived > (self.batch_taken[began] if began >= 0 else 0)

    def backlog_or_in_flight(self, at: float) -> bool:
        """A backlog, or a batch begun and not yet planned (its files in flight): the `in_flight` variant."""
        began = bisect.bisect_right(self.batch_starts, at) - 1
        return self.backlog(at) or (began >= 0 and self._ends_so_far[began] > at)

    def condition(self, hold: StartupHold) -> Any:
        """The backlog condition of `hold`'s quiet release."""
        return self.backlog_or_in_flight if hold.in_flight else self.backlog


@dataclass
class HeldJob:
    """A group's open held job: the planned jobs (their keys) held in it, in order."""

    serial: int
    group: int
    opened: float
    # When the newest file held reached the intake queue (lastArrivalAt). The model's intake keeps up with its
    # queue, so a batch's newest file arrived within the batching window before it was planned: its planning
    # time stands for it.
    last_arrival: float
    parts: list[int] = field(default_factory=list)
    files: int = 0


class HeldWork:
    """The groups' held jobs (services/holding.py GroupHold), pure: `triage` a batch's planned jobs of a group,
    `due` its delayed messages, `sweep`, `completion` (the (c) variant only). Each returns the held jobs released
    then; what starts, and when, is the caller's (it has the capacity)."""

    def __init__(self, hold: StartupHold, max_files: int, backlog: Any) -> None:
        self.hold = hold
        self.max_files = max_files
        self.backlog = backlog  # (seconds) -> bool: the intake queue has a backlog then
        self.last_started: dict[int, float] = {}  # group -> its last recorded start (lastStartedAt)
        self.open: dict[int, HeldJob] = {}
        self.held = 0  # planned jobs held
        self.released = 0  # held jobs released
        self._checks: list[tuple[float, int, int]] = []  # (when, held job serial, group): its delayed message
        self._serial = 0

    def _over(self, job: HeldJob) -> float:
        return hold_over(
            opened_at=int(job.opened),
            last_started_at=int(self.last_started.get(job.group, 0)),
            settings=self.hold.settings,
        )

    def _due(self, job: HeldJob) -> float:
        return release_due(
            opened_at=int(job.opened),
            last_arrival_at=int(job.last_arrival),
            last_started_at=int(self.last_started.get(job.group, 0)),
            settings=self.hold.settings,
        )

    def triage(self, at: float, group: int, parts: Sequence[tuple[int, int]]) -> tuple[list[int], list[HeldJob]]:
        """A batch's planned jobs of `group` (key, files), as GroupHold.triage: the keys that start now (as they
        are), and the held jobs released now."""
        settings = self.hold.settings
        if not settings.enabled:
            return [key for key, _ in parts], []
        last = self.last_started.get(group)
        starts = last is None or last <= at - self.hold.seconds  # reserve_start: a quiet group records its start
        if starts:
            self.last_started[group] = at
            if group not in self.open:
                return [key for key, _ in parts], []  # a quiet group: at once
        start: list[int] = []
        released: list[HeldJob] = []
        for key, files in parts:
            decision = decide(files=files, max_files=self.max_files, group_started_recently=True, settings=settings)
            if decision is Decision.START:
                start.append(key)  # it fills a job alone
                continue
            job = self.open.get(group)
            if job is not None and job.files + files > self.max_files:
                released.append(self._release(at, job))  # full: it goes now, and a new one holds this
                job = None
            if job is None:
                job = self._open(at, group)
            job.parts.append(key)
            job.files += files
            job.last_arrival = at
            self.held += 1
        if starts and group in self.open:
            released.append(self._release(at, self.open[group]))  # (a): the hold is over, this batch joins it
        return start, released

    def _open(self, at: float, group: int) -> HeldJob:
        self._serial += 1
        job = HeldJob(self._serial, group, at, at)
        self.open[group] = job
        heapq.heappush(self._checks, (at + self.hold.quiet_seconds, job.serial, group))  # its delayed message
        return job

    def _release(self, at: float, job: HeldJob) -> HeldJob:
        del self.open[job.group]
        self.last_started[job.group] = at  # started_now
        self.released += 1
        return job

    def next_check(self) -> float:
        return self._checks[0][0] if self._checks else math.inf

    def due(self, at: float) -> list[HeldJob]:
        """The delayed messages up to `at`, in order (GroupHold.release): each releases its held job when it is
        due (`release_due`) and, before the hold is over, the intake queue has no backlog; else it is sent again
        (at the due time; with a backlog, a quarter of the quiet time later, at most at the hold's end)."""
        released = []
        while self._checks and self._checks[0][0] <= at:
            when, serial, group = heapq.heappop(self._checks)
            job = self.open.get(group)
            if job is None or job.serial != serial:
                continue  # released before: the message finds it done
            due, ends = self._due(job), self._over(job)
            if when < due:
                heapq.heappush(self._checks, (due, serial, group))
            elif when < ends and self.backlog(when):
                again = max(1, self.hold.quiet_seconds // 4)  # looked at again soon (services/holding.py)
                heapq.heappush(self._checks, (when + min(again, ends - when), serial, group))
            else:
                released.append(self._release(when, job))
        return released

    def sweep(self, at: float) -> list[HeldJob]:
        """The capacity sweep: releases the held jobs whose hold is over (their message lost or given up)."""
        return [self._release(at, job) for _, job in sorted(self.open.items()) if at >= self._over(job)]

    def completion(self, at: float) -> list[HeldJob]:
        """(c), not built: a completion releases the held jobs that are due, backlog or not."""
        if not self.hold.on_completion:
            return []
        return [self._release(at, job) for _, job in sorted(self.open.items()) if at >= self._due(job)]


def start_as_built(
    planned: Sequence[Planned],
    hold: StartupHold,
    *,
    sweep_seconds: float,
    max_files: int,
    sweep_phase: float = 0.0,
    backlog: Any = None,
    completions: Sequence[float] = (),
) -> list[Started]:
    """The hold as built with instances to spare (pure; no capacity limit): the transform jobs that start for
    `planned`. The planned jobs of one group planned at the same time are one batch's (`HeldWork.triage`); a
    planned job started as it is, or a held job released, starts at once. `backlog(seconds)`: whether the intake
    queue has a backlog then (None: never). The sweep ticks at `sweep_phase` + k * `sweep_seconds`. Every planned
    job ends in exactly one started job; deterministic."""
    if sweep_seconds <= 0:
        raise ValueError("the capacity sweep needs a period")
    work = HeldWork(hold, max_files, backlog or (lambda at: False))
    started: list[Started] = []

    def go(at: float, group: int, sources: Sequence[int]) -> None:
        started.append(Started(at, group, tuple(sources), sum(planned[i].files for i in sources)))

    def released(at: float, jobs: Sequence[HeldJob]) -> None:
        for job in jobs:
            go(at, job.group, job.parts)

    order = sorted(range(len(planned)), key=lambda i: (planned[i].at, planned[i].group, i))
    batches = [list(g) for _, g in itertools.groupby(order, key=lambda i: (planned[i].at, planned[i].group))]
    ends = deque(sorted(completions))
    tick = sweep_phase % sweep_seconds
    head = 0
    while head < len(batches) or work.open:
        arrival_at = planned[batches[head][0]].at if head < len(batches) else math.inf
        end_at = ends[0] if ends else math.inf
        check_at = work.next_check()
        while tick < min(arrival_at, end_at, check_at) and not work.open:
            tick += sweep_seconds  # the sweep finds nothing held
        at = min(arrival_at, end_at, check_at, tick)
        if arrival_at == at:
            batch = batches[head]
            head += 1
            group = planned[batch[0]].group
            now, jobs = work.triage(at, group, [(i, planned[i].files) for i in batch])
            for i in now:
                go(at, group, [i])
            released(at, jobs)
        elif end_at == at:
            ends.popleft()
            released(at, work.completion(at))
        elif check_at == at:
            released(at, work.due(at))
        else:
            released(at, work.sweep(at))
            tick += sweep_seconds
    return started


def groups_bench_planned(defaults: Defaults, costs: Costs, **drop: Any) -> list[Planned]:
    """The sandbox bench's groups drop as the intake plans it (`groups_bench_intake`)."""
    return groups_bench_intake(defaults, costs, **drop)[0]


def groups_bench_intake(
    defaults: Defaults,
    costs: Costs,
    *,
    files: int = 10_000,
    groups: int = 100,
    upload_seconds: float = 90.0,
    trickle: int = 200,
    trickle_seconds: float = 30.0,
) -> tuple[list[Planned], IntakeQueue]:
    """The sandbox bench's groups drop (`python -m bench --only groups`, bench/drop.py) as the intake plans it:
    the burst's file i uploaded at i * upload_seconds / files into group i % groups, then the trickle, one file
    every trickle_seconds / trickle, round the groups. The SQS event source mapping as in simulate_day (a batch
    closes when IntakeBatchSize messages are there or BatchingWindowSeconds after its first, at most
    IntakeMaxConcurrency invocations at once), each invocation lasting its measured calls x their latency; each
    batch plans one job per group (MaxFilesPerJob files), at the end of its invocation. Pass the defaults as the
    bench's stack sets them (`sandbox_defaults`). With the intake queue the batches leave (its backlog)."""
    times = [i * upload_seconds / files for i in range(files)]
    times += [upload_seconds + (i + 1) * trickle_seconds / trickle for i in range(trickle)]
    owners = [i % groups for i in range(files)] + [i % groups for i in range(trickle)]
    slots = [0.0] * defaults.concurrency
    planned: list[Planned] = []
    starts: list[float] = []
    taken: list[int] = []
    ends: list[float] = []
    head = 0
    while head < len(times):
        t0 = max(heapq.heappop(slots), times[head])
        starts.append(t0)
        full = head + defaults.batch_size - 1
        if full < len(times) and times[full] <= t0 + defaults.window:
            close, n = max(t0, times[full]), defaults.batch_size
        else:
            close = t0 + defaults.window
            n = max(1, min(defaults.batch_size, sum(1 for t in times[head:] if t <= close)))
        per_group = Counter(owners[head : head + n])
        jobs = [
            (group, min(defaults.max_files_per_job, count - i * defaults.max_files_per_job))
            for group, count in sorted(per_group.items())
            for i in range(math.ceil(count / defaults.max_files_per_job))
        ]
        seconds = INVOKE_OVERHEAD_SECONDS + seconds_of(_combine((costs.intake_file, n), (costs.intake_job, len(jobs))))
        planned += [Planned(close + seconds, group, count) for group, count in jobs]
        heapq.heappush(slots, close + seconds)
        head += n
        taken.append(head)
        ends.append(close + seconds)
    return planned, IntakeQueue(np.array(times), starts, taken, ends)


def sandbox_defaults(defaults: Defaults) -> Defaults:
    """The template's defaults with the sandbox's short waits (sagepilot_sandbox.server.SANDBOX_PARAMETERS), as the
    bench's stack runs them."""
    from sagepilot_sandbox.server import SANDBOX_PARAMETERS

    return replace(
        defaults,
        window=int(SANDBOX_PARAMETERS.get("BatchingWindowSeconds", defaults.window)),
        hold_seconds=int(SANDBOX_PARAMETERS.get("HoldSeconds", defaults.hold_seconds)),
        hold_quiet_seconds=int(SANDBOX_PARAMETERS.get("HoldQuietSeconds", defaults.hold_quiet_seconds)),
    )


@dataclass(frozen=True)
class GroupsEstimate:
    """Transform jobs per group in the bench's groups drop under a hold (or none), over the sweep's phases."""

    hold: str
    jobs_per_group_max: int  # the most any group got, at the worst phase of the sweep
    jobs_per_group_median: float  # at the worst phase
    jobs: int  # in all, at the worst phase
    last_start: float  # seconds after the first upload the last job started, at the worst phase


SWEEP_PHASES = (0.0, 60.0, 120.0, 180.0, 240.0)  # where the first sweep tick falls after the first upload


def groups_bench_estimate(
    planned: Sequence[Planned],
    hold: Hold | StartupHold | None,
    defaults: Defaults,
    phases: Sequence[float] = SWEEP_PHASES,
    *,
    intake: IntakeQueue | None = None,
) -> GroupsEstimate:
    """Jobs per group for `planned` (groups_bench_planned) with instances to spare and no completions (the bench
    leaves its jobs InProgress), under `hold` (None: merge at start without a hold, which merges nothing here; a
    StartupHold: the hold as built, `start_as_built`, with `intake`'s backlog), at the sweep phase that gives the
    most jobs to a group."""
    runs = []
    for phase in phases:
        if isinstance(hold, StartupHold):
            started = start_as_built(
                planned,
                hold,
                sweep_seconds=defaults.capacity_sweep_seconds,
                max_files=defaults.max_files_per_job,
                sweep_phase=phase,
                backlog=intake.condition(hold) if intake is not None else None,
            )
        else:
            started = start_with_hold(
                planned,
                hold or Hold(0.0),
                sweep_seconds=defaults.capacity_sweep_seconds,
                max_files=defaults.max_files_per_job,
                sweep_phase=phase,
            )
        per_group = Counter(job.group for job in started)
        runs.append((max(per_group.values()), started, per_group))
    worst, started, per_group = max(runs, key=lambda run: (run[0], len(run[1])))
    return GroupsEstimate(
        hold=hold.label() if hold else "none (merge at start)",
        jobs_per_group_max=worst,
        jobs_per_group_median=float(np.median(list(per_group.values()))),
        jobs=len(started),
        last_start=max(job.at for job in started),
    )


def merge_cost(costs: Costs, taken: int, files: int) -> dict[str, float]:
    """ESTIMATED calls of one merge at start that takes in `taken` waiting jobs holding `files` files (merging is
    not built on this branch: `bench.calls` measures it once it is, and this estimate goes). From what the design
    does, priced with the measured intake calls: the merged job's record, plan and manifest (the intake's
    per-job DynamoDB writes and S3 PutObjects); per job taken in, its record and plan read and a conditional
    write that marks it merged (MERGE_CALLS_PER_TAKEN_JOB); per file, its claim moved, one conditional write
    like the intake's claim (the intake's per-file DynamoDB writes)."""
    writes = [op for op in costs.intake_job if op.startswith("dynamodb.") and op.split(".")[1] in WRITES]
    per_merge = {op: costs.intake_job[op] for op in [*writes, "s3.PutObject"] if op in costs.intake_job}
    claims = {op: n for op, n in costs.intake_file.items() if op.startswith("dynamodb.") and op.split(".")[1] in WRITES}
    return _combine((per_merge, 1), (MERGE_CALLS_PER_TAKEN_JOB, taken), (claims, files))


@dataclass
class DayResult:
    day: Day
    defaults: Defaults
    files: int
    batches: int
    jobs_planned: int
    jobs_started: int
    jobs_refused: int  # ResourceLimitExceeded answers (a parked job may be refused again by later tries)
    jobs_parked: int  # jobs that waited for capacity
    peak_parked: int  # jobs waiting for capacity at once
    longest_capacity_wait: float  # from the first refusal to the start (or to the end of the horizon)
    still_parked: int  # jobs still waiting at the end of the horizon
    files_still_parked: int
    peak_jobs: int
    peak_instances: int
    peak_lambdas: float
    intake_age: float  # the oldest file's wait until an intake batch took it
    max_age: float  # the oldest file's wait until its job started (waits for capacity included)
    p99_age: float
    intake_timeouts: int
    longest_intake: float
    largest_batch_bytes: int
    finished_at: float
    api_peaks: dict[str, float]
    ddb_writes_peak: float
    ddb_hot_item_writes: float
    eventbridge_peak: float
    s3_writes_peak: float
    s3_reads_peak: float
    files_per_job: tuple[int, int, int, int] = (0, 0, 0, 0)  # jobs started: min, median, p90, max
    startup_instance_hours: float = 0.0
    scoring_instance_hours: float = 0.0
    design: str = "scheduler"  # "merge at start", "scheduler" (today's: no merging), "before the scheduler"
    files_planned: int = 0  # in the jobs the intake planned (= files_started + files_still_parked)
    files_started: int = 0  # in the transform jobs started
    merged_jobs: int = 0  # jobs started that took in other waiting jobs of their group
    merge_calls: dict[str, float] = field(default_factory=dict)  # ESTIMATED (merge_cost), not measured
    longest_completion: float = 0.0  # the largest job's completion invocation, its calls one after another
    hold: str = ""  # the start-up hold simulated (StartupHold.label, as built; Hold.label, considered), "" none
    held_jobs: int = 0  # planned jobs that waited for their group's hold (not for capacity or a slot)
    held_released: int = 0  # held jobs released (the hold as built), each started like one planned job

    def limits_hit(self) -> list[str]:
        d, hit = self.defaults, []
        if self.intake_age > d.backlog_alarm_seconds:
            waited = f"{self.intake_age:,.0f} s for the intake > {d.backlog_alarm_seconds:.0f} s"
            hit.append(f"intake backlog: a file waited {waited}")
        elif self.max_age > d.backlog_alarm_seconds:
            hit.append(f"backlog: a file waited {self.max_age:,.0f} s for its job > {d.backlog_alarm_seconds:.0f} s")
        if self.intake_timeouts:
            hit.append(f"intake timeout: {self.intake_timeouts} batches over {d.intake_timeout} s")
        if self.jobs_refused:
            hit.append(f"transform instance quota ({self.day.transform_quota}): {self.jobs_refused} refusals")
        if self.longest_capacity_wait > d.capacity_alarm_seconds:
            hit.append(
                f"capacity backlog: a job waited {self.longest_capacity_wait:,.0f} s for instances > "
                f"{d.capacity_alarm_seconds:.0f} s (peak {self.peak_parked:,} jobs waiting)"
            )
        if self.still_parked:
            hit.append(f"{self.still_parked:,} jobs ({self.files_still_parked:,} files) still waiting after 3 days")
        if self.peak_lambdas > LAMBDA_CONCURRENCY:
            hit.append(f"Lambda concurrency: {self.peak_lambdas:,.0f} > {LAMBDA_CONCURRENCY:,}")
        if self.ddb_writes_peak > DDB_NEW_TABLE_WRITES:
            hit.append(f"DynamoDB: {self.ddb_writes_peak:,.0f} writes/s > a new table's {DDB_NEW_TABLE_WRITES:,}")
        if self.eventbridge_peak > EVENTBRIDGE_INVOCATIONS:
            hit.append(f"EventBridge invocations {self.eventbridge_peak:,.0f}/s > {EVENTBRIDGE_INVOCATIONS:,}")
        for op, rate in self.api_peaks.items():
            if op.startswith("sagemaker.") and rate > SAGEMAKER_API_RATE:
                hit.append(f"{op} {rate:.1f}/s > {SAGEMAKER_API_RATE:g}/s (assumed)")
        return hit


def simulate_day(
    day: Day,
    defaults: Defaults,
    costs: Costs,
    record_bytes: int,
    *,
    jobs: bool = True,
    scheduler: bool = True,
    merge: bool = False,
    jobs_per_group: int | None = None,
    served_window: int = SERVED_WINDOW,
    hold: Hold | None = None,
    startup_hold: StartupHold | None = None,
) -> DayResult:
    """The day, batch by batch (see the module docstring); `jobs=False` stops at the intake (for sweeps).

    `scheduler`: waiting jobs start as domain/scheduler.py orders them (each group's oldest first, the groups
    served least among the last 100 jobs started first; a new job waits behind the older waiting jobs of its
    group without asking SageMaker); False: the design before it (oldest first across all groups, and every
    new job tries SageMaker at once).
    `merge` (with the scheduler): merge at start. The waiting job given the turn takes in the other waiting
    jobs of its group, oldest first, up to MaxFilesPerJob files (`coalesce`), and is started as one job of
    `job_instances` instances on the merged data, or, refused, keeps waiting (and may take in more next time).
    `jobs_per_group`: MaxConcurrentJobsPerGroup (None: the template's default; 0: no limit); a job of a group
    running that many waits, as for capacity, and its turn comes when one of them ends.
    `hold` (with merge at start; considered, not built): a group's new work waits while its latest job started
    less than `hold.seconds` ago, and is released, merged, by its next intake batch after that (`on_intake`), a
    sweep or a completion; the scheduler's turns skip a held group (`Hold`, `holds`).
    `startup_hold` (with merge at start): the hold as built (`StartupHold`, `HeldWork`): a batch's planned jobs of
    a busy group go into its open held job, which, released, starts like any job (it waits behind its group's
    waiting jobs, for a slot or for capacity, and merges at start). Its backlog condition: the simulated intake
    queue (`IntakeQueue`) holds a file no batch has begun to take."""
    if (hold is not None or startup_hold is not None) and not merge:
        raise ValueError("the start-up hold is simulated with merge at start (merge=True)")
    if hold is not None and startup_hold is not None:
        raise ValueError("one start-up hold at a time: the one considered (hold) or the one built (startup_hold)")
    if merge and not scheduler:
        raise ValueError("merge at start needs the scheduler's turns (scheduler=True)")
    if jobs_per_group and not scheduler:
        raise ValueError("MaxConcurrentJobsPerGroup is simulated with the scheduler's turns (scheduler=True)")
    d = defaults
    rng = np.random.default_rng(day.seed + 1)
    base, dumps, dump_group, shares = arrivals(day)
    per_second = base + dumps
    cumulative = np.concatenate([[0], np.cumsum(per_second)])  # files arrived before second t: cumulative[t]
    total = int(cumulative[-1])
    horizon = DAY * 3
    ledger = Ledger(horizon)
    ledger.events[:DAY] += per_second  # one S3 Object Created per file, routed to the intake queue
    batch_cap = min(d.batch_size, LAMBDA_SYNC_PAYLOAD_BYTES // max(1, record_bytes))
    slots = [0.0] * d.concurrency
    heapq.heapify(slots)
    head = 0
    batches = timeouts = 0
    longest = intake_age = 0.0
    ages: list[tuple[float, int]] = []  # (wait until taken into a started job, files)
    job_requests: list[tuple[float, int, int, float, int, int]] = []  # (time, seq, files, oldest, group, batch)
    seq = 0
    batch_starts: list[float] = []  # the intake queue: when each batch began to collect, files taken by then
    batch_taken: list[int] = []
    batch_ends: list[float] = []

    def arrival_of(index: float) -> float:
        return float(np.searchsorted(cumulative, index, side="right") - 1)

    while head < total:
        free = heapq.heappop(slots)
        t0 = max(free, arrival_of(head))
        batch_starts.append(t0)
        last = arrival_of(head + batch_cap - 1) if head + batch_cap <= total else math.inf
        if last <= t0 + d.window:
            close, n = max(t0, last) + 1.0, batch_cap
        else:
            close = t0 + d.window
            n = int(min(total, cumulative[min(DAY, int(close))])) - head
            n = max(1, min(n, batch_cap))
        first_second, last_second = int(arrival_of(head)), int(arrival_of(head + n - 1))
        window = slice(first_second, last_second + 1)
        in_dumps = dumps[window].sum()
        from_dumps = round(n * in_dumps / max(1, per_second[window].sum()))
        per_group = rng.multinomial(n - from_dumps, shares)
        if from_dumps:
            groups, counts = np.unique(dump_group[window][dumps[window] > 0], return_counts=True)
            for g, c in zip(groups, counts, strict=True):
                per_group[g] += round(from_dumps * c / counts.sum())
        files_per_job = [
            min(d.max_files_per_job, int(per_group[g]) - i * d.max_files_per_job)
            for g in np.flatnonzero(per_group)
            for i in range(math.ceil(int(per_group[g]) / d.max_files_per_job))
        ]
        job_groups = [
            int(g) for g in np.flatnonzero(per_group) for _ in range(math.ceil(int(per_group[g]) / d.max_files_per_job))
        ]
        calls = _combine((costs.intake_file, n), (costs.intake_job, len(files_per_job)))
        seconds = INVOKE_OVERHEAD_SECONDS + seconds_of(calls)
        ledger.spend(calls, close, seconds)
        if seconds > d.intake_timeout:
            timeouts += 1
        longest = max(longest, seconds)
        oldest = arrival_of(head)
        intake_age = max(intake_age, close - oldest)
        for files, group in zip(files_per_job, job_groups, strict=True) if jobs else ():
            job_requests.append((close + seconds, seq, files, oldest, group, batches))
            seq += 1
        heapq.heappush(slots, close + seconds)
        head += n
        batch_taken.append(head)
        batch_ends.append(close + seconds)
        batches += 1

    # Transform jobs: instances from the quota; a refused job is parked and started, in its turn, when a job
    # ends or at a sweep tick, as long as the next in turn fits (JobLauncher.start_parked stops at the first
    # refusal). With `merge`, the job given the turn first takes in its group's other waiting jobs, oldest first.
    planned = len(job_requests)
    planned_files = sum(r[2] for r in job_requests)
    heapq.heapify(job_requests)
    slots_per_group = d.max_jobs_per_group if jobs_per_group is None else jobs_per_group
    running: list[tuple[float, int, int]] = []  # (end, instances, group)
    running_in: Counter[int] = Counter()  # jobs running, per group (MaxConcurrentJobsPerGroup)
    parked: list[Piece] = []  # before the scheduler: one queue, oldest first across groups
    by_group: dict[int, deque[Piece]] = defaultdict(deque)  # the scheduler's: each group's, oldest first
    served: deque[int] = deque(maxlen=max(1, served_window))  # the groups of the last jobs started
    served_count: Counter[int] = Counter()
    waiting_now = 0  # jobs parked, in either arm
    in_use = started = refused = peak_jobs = peak_instances = peak_parked = 0
    parked_jobs = merged_jobs = 0
    longest_wait = finished_at = 0.0
    next_sweep = float(d.capacity_sweep_seconds)
    done: list[tuple[float, float, int]] = []  # (start, end, files) of every job started
    startup_hours = scoring_hours = 0.0  # instance-hours: SageMaker's start-up vs the scoring itself
    started_pieces: set[int] = set()  # the planned jobs (by seq) whose files went into a started job
    merge_calls: Counter[str] = Counter()
    last_start: dict[int, float] = {}  # each group's latest job start (the hold)
    held_groups: set[int] = set()  # groups whose waiting work waits for the hold only (never refused)
    held_jobs = 0
    waiting_files: Counter[int] = Counter()  # files waiting, per group (the scheduler's queues)
    held_work: HeldWork | None = None  # the hold as built
    if startup_hold is not None:
        uploads = np.repeat(np.arange(DAY, dtype=float), per_second)
        intake = IntakeQueue(uploads, batch_starts, batch_taken, batch_ends)
        held_work = HeldWork(startup_hold, d.max_files_per_job, intake.condition(startup_hold))
    held_pieces: dict[int, Piece] = {}  # planned jobs in a held job (by seq)
    held_parts: dict[int, list[Piece]] = {}  # a released held job's planned jobs (by its own seq)
    next_seq = planned

    def holding(group: int, at: float) -> bool:
        if hold is None:
            return False
        files = waiting_files[group]
        return holds(at, last_start.get(group), hold, waiting_files=files, max_files=d.max_files_per_job)

    def instances_for(files: int) -> int:
        return job_instances(
            files * FILE_MEGABYTES,
            files,
            target_mb_per_instance=max(1, int(d.target_mb_per_instance)),
            max_instance_count=d.max_instances,
        )

    def has_slot(group: int) -> bool:
        return slots_per_group <= 0 or running_in[group] < slots_per_group

    def start(at: float, pieces: Sequence[Piece], instances: int) -> None:
        nonlocal in_use, started, peak_jobs, peak_instances, finished_at, startup_hours, scoring_hours, merged_jobs
        group = pieces[0].group
        for part in (part for piece in pieces for part in held_parts.pop(piece.seq, [piece])):
            # conservation: each planned job's files start once, in a job of their own group
            if part.seq in started_pieces or part.group != group:
                raise RuntimeError(f"planned job {part.seq} started twice or merged across groups")
            started_pieces.add(part.seq)
            ages.append((at - part.oldest, part.files))
        files = sum(piece.files for piece in pieces)
        if len(pieces) > 1:
            merged_jobs += 1
            calls = merge_cost(costs, len(pieces) - 1, files)
            merge_calls.update(calls)
            ledger.spend(calls, at, INVOKE_OVERHEAD_SECONDS + seconds_of(calls))
        if len(served) == served.maxlen:
            served_count[served[0]] -= 1
        served.append(group)
        served_count[group] += 1
        runtime = JOB_STARTUP_SECONDS + files * FILE_MEGABYTES * SECONDS_PER_MEGABYTE / instances
        startup_hours += instances * JOB_STARTUP_SECONDS / 3600
        scoring_hours += files * FILE_MEGABYTES * SECONDS_PER_MEGABYTE / 3600
        heapq.heappush(running, (at + runtime, instances, group))
        last_start[group] = at
        running_in[group] += 1
        in_use += instances
        started += 1
        peak_jobs, peak_instances = max(peak_jobs, len(running)), max(peak_instances, in_use)
        done.append((at, at + runtime, files))
        finished_at = max(finished_at, at + runtime)

    def start_group(at: float, group: int) -> bool:
        """The scheduler's turn for `group`: its oldest waiting job (with merge: merged with the ones behind it)
        starts, or is refused (False) and keeps waiting."""
        nonlocal refused, longest_wait, waiting_now
        queue = by_group[group]
        pieces = list(itertools.islice(queue, coalesce(queue, d.max_files_per_job) if merge else 1))
        files = sum(piece.files for piece in pieces)
        instances = instances_for(files) if merge else pieces[0].instances
        if in_use + instances > day.transform_quota:
            refused += 1  # the next in turn is refused: back off until the next chance
            held_groups.discard(group)  # it now waits for capacity
            return False
        for piece in pieces:
            queue.popleft()
            waiting_files[group] -= piece.files
        if not queue:
            del by_group[group]
            held_groups.discard(group)
        waiting_now -= len(pieces)
        longest_wait = max([longest_wait] + [at - piece.since for piece in pieces])
        start(at, pieces, instances)
        return True

    def start_parked(at: float) -> None:
        nonlocal refused, longest_wait, waiting_now
        while parked or by_group:
            if scheduler:  # the group served least lately, then the longest-waiting head (start_order)
                turns = [g for g in by_group if has_slot(g) and not holding(g, at)]
                if not turns:
                    return  # every waiting group has its running jobs (or is held): each waits for a slot
                group = min(turns, key=lambda g: (served_count[g], by_group[g][0].created, by_group[g][0].seq, g))
                if not start_group(at, group):
                    return
                continue
            piece = parked[0]
            if in_use + piece.instances > day.transform_quota:
                refused += 1  # the next in turn is refused: back off until the next chance
                return
            heapq.heappop(parked)
            waiting_now -= 1
            longest_wait = max(longest_wait, at - piece.since)
            start(at, [piece], piece.instances)

    def enter(at: float, piece: Piece) -> None:
        """A job to start as the launcher starts it (the hold as built: one the triage starts, or a released held
        job): it waits behind its group's waiting jobs, for a slot or for capacity, or starts now."""
        nonlocal refused, parked_jobs, waiting_now, peak_parked
        group = piece.group
        behind, no_slot = group in by_group, not has_slot(group)
        if behind or no_slot or in_use + piece.instances > day.transform_quota:
            refused += 0 if behind or no_slot else 1
            parked_jobs += 1
            by_group[group].append(piece)
            waiting_files[group] += piece.files
            waiting_now += 1
            peak_parked = max(peak_parked, waiting_now)
        else:
            start(at, [piece], piece.instances)

    def released(at: float, jobs: Sequence[HeldJob]) -> None:
        nonlocal next_seq
        for job in jobs:
            parts = [held_pieces.pop(key) for key in job.parts]
            files = sum(part.files for part in parts)
            oldest = min(part.oldest for part in parts)
            piece = Piece(job.opened, next_seq, files, oldest, at, instances_for(files), job.group)
            held_parts[next_seq] = parts
            next_seq += 1
            enter(at, piece)

    def held_open() -> bool:
        return held_work is not None and bool(held_work.open)

    while job_requests or ((parked or by_group or held_open()) and next_sweep < horizon):
        request_at = job_requests[0][0] if job_requests else math.inf
        end_at = running[0][0] if running else math.inf
        sweep_at = next_sweep if (parked or by_group or held_open()) else math.inf
        check_at = held_work.next_check() if held_work is not None else math.inf
        at = min(request_at, end_at, sweep_at, check_at)
        if at >= horizon:
            break
        if end_at == at:  # a completion frees its instances (and its group's slot), then tries the parked jobs
            _, instances, group = heapq.heappop(running)
            in_use -= instances
            running_in[group] -= 1
            if held_work is not None:
                released(at, held_work.completion(at))  # (c), a variant: not built
            start_parked(at)
        elif request_at == at and held_work is not None:
            # The hold as built: the batch's planned jobs of one group, triaged together.
            at, created, files, oldest, group, batch = heapq.heappop(job_requests)
            pieces = [Piece(at, created, files, oldest, at, instances_for(files), group)]
            while job_requests and job_requests[0][0] == at and job_requests[0][4:] == (group, batch):
                _, created, files, oldest, *_ = heapq.heappop(job_requests)
                pieces.append(Piece(at, created, files, oldest, at, instances_for(files), group))
            now, freed = held_work.triage(at, group, [(piece.seq, piece.files) for piece in pieces])
            held_pieces.update((piece.seq, piece) for piece in pieces if piece.seq not in now)
            for piece in pieces:
                if piece.seq in now:
                    enter(at, piece)
            released(at, freed)
        elif check_at == at and held_work is not None:
            released(at, held_work.due(at))  # the held jobs' delayed messages
        elif request_at == at:
            at, created, files, oldest, group, _ = heapq.heappop(job_requests)
            piece = Piece(at, created, files, oldest, at, instances_for(files), group)
            behind = scheduler and group in by_group  # older jobs of its group wait: it waits behind them
            no_slot = not has_slot(group)  # its group runs MaxConcurrentJobsPerGroup jobs: it waits for a slot
            waiting_files[group] += files if scheduler else 0  # counted as waiting while it is decided
            held = not behind and not no_slot and holding(group, at)  # its group's latest job is starting up
            if hold is not None and behind and group in held_groups:  # it joins its group's held work
                by_group[group].append(piece)
                parked_jobs += 1
                held_jobs += 1
                waiting_now += 1
                peak_parked = max(peak_parked, waiting_now)
                full = hold.until_full and waiting_files[group] >= d.max_files_per_job
                if ((hold.on_intake and not holding(group, at)) or full) and has_slot(group):
                    start_group(at, group)  # (a): its first batch after the hold expired, or a full job
            elif behind or no_slot or held or in_use + piece.instances > day.transform_quota:
                refused += 0 if behind or no_slot or held else 1
                if held:
                    held_groups.add(group)
                    held_jobs += 1
                parked_jobs += 1
                if scheduler:
                    by_group[group].append(piece)
                else:
                    heapq.heappush(parked, piece)
                waiting_now += 1
                peak_parked = max(peak_parked, waiting_now)
            else:
                waiting_files[group] -= files if scheduler else 0
                start(at, [piece], piece.instances)
        else:
            if held_work is not None:
                released(at, held_work.sweep(at))  # held jobs whose hold is over (a lost message)
            start_parked(at)
        while next_sweep <= at:
            next_sweep += d.capacity_sweep_seconds
    still = parked + [job for q in by_group.values() for job in q]
    longest_wait = max([longest_wait] + [horizon - piece.since for piece in still])
    still = [part for piece in still for part in held_parts.get(piece.seq, [piece])] + list(held_pieces.values())
    waiting_pieces = {piece.seq for piece in still}
    files_started = sum(files for *_, files in done)
    files_still = sum(piece.files for piece in still)
    if (
        started_pieces & waiting_pieces
        or len(started_pieces) + len(waiting_pieces) != planned
        or files_started + files_still != planned_files
    ):  # every planned job's files in exactly one started job, or still waiting: never two, never none
        raise RuntimeError(
            f"conservation broken: {planned} jobs ({planned_files} files) planned, {len(started_pieces)} started "
            f"({files_started} files), {len(waiting_pieces)} waiting ({files_still} files)"
        )
    longest_completion = 0.0
    if done:
        # Each job's two state changes (InProgress, then Completed -> one completion invocation, under a second)
        starts, ends, sizes = (np.array(column) for column in zip(*done, strict=True))
        starts, ends = np.minimum(starts, horizon - 1).astype(int), np.minimum(ends, horizon - 1).astype(int)
        np.add.at(ledger.events, starts, 1)
        np.add.at(ledger.events, ends, 1)
        fixed = INVOKE_OVERHEAD_SECONDS + seconds_of(costs.completion_job)
        durations = fixed + sizes * seconds_of(costs.completion_file)
        longest_completion = float(durations.max())
        short = durations <= 1.0  # most: within the second they end in; the others spread over their duration
        for op in set(costs.completion_file) | set(costs.completion_job):
            series = ledger.calls.setdefault(op, np.zeros(horizon))
            per_job = costs.completion_file.get(op, 0) * sizes + costs.completion_job.get(op, 0)
            np.add.at(series, ends[short], per_job[short])
        np.add.at(ledger.lambdas, ends[short], durations[short])
        for end, files, seconds in zip(ends[~short], sizes[~short], durations[~short], strict=True):
            ledger.spend(_combine((costs.completion_file, int(files)), (costs.completion_job, 1)), end, seconds)
    ages.sort()
    waited = np.array([a for a, _ in ages]) if ages else np.zeros(1)
    weights = np.array([w for _, w in ages]) if ages else np.ones(1)
    cumulative_weights = np.cumsum(weights) / weights.sum()
    p99 = float(waited[min(len(waited) - 1, int(np.searchsorted(cumulative_weights, 0.99)))])
    writes = [op for op in ledger.calls if op.startswith("dynamodb.") and op.split(".")[1] in WRITES]
    job_item_writes = sum(n for op, n in costs.intake_job.items() if op in writes)
    return DayResult(
        day=day,
        defaults=d,
        files=total,
        batches=batches,
        jobs_planned=planned,
        jobs_started=started,
        jobs_refused=refused,
        jobs_parked=parked_jobs,
        peak_parked=peak_parked,
        longest_capacity_wait=longest_wait,
        still_parked=len(still),
        files_still_parked=files_still,
        peak_jobs=peak_jobs,
        peak_instances=peak_instances,
        peak_lambdas=float(ledger.lambdas.max()),
        intake_age=intake_age,
        max_age=float(waited.max()) if ages else intake_age,
        p99_age=p99,
        intake_timeouts=timeouts,
        longest_intake=longest,
        largest_batch_bytes=batch_cap * record_bytes,
        finished_at=finished_at,
        api_peaks={op: float(series.max()) for op, series in sorted(ledger.calls.items())},
        ddb_writes_peak=ledger.peak(writes),
        ddb_hot_item_writes=job_item_writes,
        eventbridge_peak=float(ledger.events.max()),
        s3_writes_peak=ledger.peak([op for op in ledger.calls if op in ("s3.PutObject", "s3.CopyObject")]),
        s3_reads_peak=ledger.peak([op for op in ledger.calls if op in S3_READS]),
        files_per_job=_spread([files for *_, files in done]),
        startup_instance_hours=startup_hours,
        scoring_instance_hours=scoring_hours,
        design=("merge at start" if merge else "scheduler") if scheduler else "before the scheduler",
        files_planned=planned_files,
        files_started=files_started,
        merged_jobs=merged_jobs,
        merge_calls=dict(sorted(merge_calls.items())),
        longest_completion=longest_completion,
        hold=hold.label() if hold is not None else startup_hold.label() if startup_hold is not None else "",
        held_jobs=held_work.held if held_work is not None else held_jobs,
        held_released=held_work.released if held_work is not None else 0,
    )


def _spread(values: Sequence[int]) -> tuple[int, int, int, int]:
    if not values:
        return (0, 0, 0, 0)
    ordered = sorted(values)

    def at(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return (ordered[0], at(0.5), at(0.9), ordered[-1])


# ---------------------------------------------------------------------------------------- the rollout week
@dataclass
class WeekResult:
    endpoints: int
    rollouts: int
    peak_canaries: int
    peak_instances: int
    approval_to_full: float
    longest_tick: float
    peak_tick_endpoints: int
    tick_calls_peak: int
    api_peaks: dict[str, float]
    lease_writes_per_minute: float

    def limits_hit(self, defaults: Defaults) -> list[str]:
        hit = []
        if self.longest_tick > defaults.rollout_timeout:
            hit.append(f"reconcile tick {self.longest_tick:.0f} s > the function's {defaults.rollout_timeout} s")
        if self.peak_instances > ENDPOINT_INSTANCES_QUOTA:
            hit.append(
                f"endpoint instances {self.peak_instances} > {ENDPOINT_INSTANCES_QUOTA} "
                f"({defaults.endpoint_instance_type} for endpoint usage, assumed quota)"
            )
        return hit


def simulate_week(endpoints: int, defaults: Defaults, costs: Costs, seed: int = SEED) -> WeekResult:
    """Each endpoint rolls out once in the week, approved at a seeded time in working hours (Mon-Fri 8-18 UTC)."""
    d = defaults
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 5, size=endpoints)
    approvals = days * DAY + rng.integers(8 * 3600, 18 * 3600, size=endpoints)
    steps = len(d.canary_steps)
    # Approval -> candidate variant InService, then each step bakes; the next step is a weights change; after
    # the last bake the old variant is removed (an endpoint update). Moves wait for the next tick.
    tick = d.reconcile_seconds
    to_full = ENDPOINT_UPDATE_SECONDS + (steps - 1) * (d.bake_seconds + tick / 2 + WEIGHTS_UPDATE_SECONDS)
    in_canary = to_full + d.bake_seconds + tick / 2 + ENDPOINT_UPDATE_SECONDS
    starts, ends = approvals.astype(float), approvals + in_canary
    ticks = np.arange(0, WEEK, tick)
    active = np.searchsorted(np.sort(starts), ticks, side="right") - np.searchsorted(np.sort(ends), ticks, "right")
    stable_per_tick = math.ceil(endpoints * tick / d.stable_check_seconds)
    reconciled = active + stable_per_tick
    per_reconcile = seconds_of(costs.reconcile)
    per_move = seconds_of(costs.move)
    moves_per_rollout = steps + 1
    tick_seconds = INVOKE_OVERHEAD_SECONDS + stable_per_tick * per_reconcile + active * per_move
    calls_per_tick = stable_per_tick * sum(costs.reconcile.values()) + active * sum(costs.move.values())
    busiest = int(np.argmax(tick_seconds))
    api: Counter[str] = Counter()
    for op, n in costs.reconcile.items():
        api[op] += n * stable_per_tick
    for op, n in costs.move.items():
        api[op] += n * int(active[busiest])
    duration = max(1.0, float(tick_seconds[busiest]))
    lease_ops = [op for op in costs.reconcile if op.startswith("dynamodb.") and op.split(".")[1] in WRITES]
    return WeekResult(
        endpoints=endpoints,
        rollouts=endpoints,
        peak_canaries=int(active.max()),
        peak_instances=endpoints * d.endpoint_instances + int(active.max()) * d.endpoint_instances,
        approval_to_full=to_full,
        longest_tick=float(tick_seconds.max()),
        peak_tick_endpoints=int(reconciled.max()),
        tick_calls_peak=int(calls_per_tick.max()),
        api_peaks={op: n / duration for op, n in sorted(api.items())},
        lease_writes_per_minute=sum(costs.move.get(op, 0) for op in lease_ops) * 60 / tick * moves_per_rollout / steps,
    )


# ---------------------------------------------------------------------------------------- sweeps
def ceiling(ok: Any, low: float, high: float, *, steps: int = 9) -> tuple[float, str]:
    """The largest x in [low, high] with ok(x) (assumed monotone, found within a factor (high/low)^(1/2^steps));
    (high, "beyond the sweep") when never exceeded, (low, "below the sweep") when always."""
    if ok(high):
        return high, "beyond the sweep"
    if not ok(low):
        return low, "below the sweep"
    for _ in range(steps):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if ok(middle) else (low, middle)
    return low, "swept"


@dataclass
class Ceiling:
    row: str
    limit: str
    at: str
    how: str  # "swept" (bisection found it), "beyond the sweep", "exact", "headroom" (at the intake's ceiling)
    moves_it: str


def sweeps(defaults: Defaults, costs: Costs, record_bytes: int, day: Day) -> list[Ceiling]:
    """For each row of the ceilings table in docs/limits.md: the largest load that stays within its limit, the
    design as built (merge at start and the start-up hold)."""
    unlimited = replace(day, transform_quota=10**9)
    cache: dict[tuple[int, int, int, bool, int], DayResult] = {}

    def run(
        files: float,
        quota: int = unlimited.transform_quota,
        concurrency: int = defaults.concurrency,
        jobs: bool = True,
        window: int = defaults.window,
    ) -> DayResult:
        key = (int(files), quota, concurrency, jobs, window)
        if key not in cache:
            cache[key] = simulate_day(
                replace(day, files=int(files), transform_quota=quota),
                replace(defaults, concurrency=concurrency, window=window),
                costs,
                record_bytes,
                jobs=jobs,
                merge=True,  # the design as built: merge at start and the start-up hold
                startup_hold=StartupHold.of(defaults) if jobs else None,
            )
        return cache[key]

    def intake_keeps_up(files: float, concurrency: int = defaults.concurrency) -> bool:
        result = run(files, concurrency=concurrency, jobs=False)
        return result.intake_age <= defaults.backlog_alarm_seconds and result.intake_timeouts == 0

    out: list[Ceiling] = []
    files, how = ceiling(intake_keeps_up, 1e4, 5e7)
    out.append(
        Ceiling(
            "intake throughput",
            f"no file waits > {defaults.backlog_alarm_seconds:.0f} s for the intake "
            f"(intake-backlog alarm), no batch over {defaults.intake_timeout} s",
            f"{files:,.0f} files/day on this curve",
            how,
            "IntakeMaxConcurrency; fewer per-job calls",
        )
    )
    for concurrency in (5, 20):
        more, more_how = ceiling(lambda f, c=concurrency: intake_keeps_up(f, c), files, files * concurrency * 5)
        out.append(
            Ceiling(f"  with IntakeMaxConcurrency={concurrency}", "the same", f"{more:,.0f} files/day", more_how, "")
        )
    max_batch = min(SQS_MAX_BATCH, LAMBDA_SYNC_PAYLOAD_BYTES // record_bytes)
    out.append(
        Ceiling(
            "6 MB synchronous payload",
            f"{record_bytes:,} bytes per SQS record",
            f"IntakeBatchSize <= {max_batch:,}",
            "exact",
            "smaller event bodies (an EventBridge input transformer)",
        )
    )
    quota_files, quota_how = ceiling(lambda f: run(f, quota=day.transform_quota).jobs_refused == 0, 1e2, files)
    out.append(
        Ceiling(
            "transform instances",
            f"{day.transform_quota} x {defaults.transform_instance_type} (assumed quota)",
            f"{quota_files:,.0f} files/day before ResourceLimitExceeded",
            quota_how,
            "the quota; MaxConcurrentJobsPerGroup; fewer groups",
        )
    )
    widest = SQS_MAX_WINDOW_SECONDS
    wide_files, wide_how = ceiling(
        lambda f: run(f, quota=day.transform_quota, window=widest).jobs_refused == 0, 1e2, files
    )
    out.append(
        Ceiling(f"  with BatchingWindowSeconds={widest}", "the same", f"{wide_files:,.0f} files/day", wide_how, "")
    )
    alarm = defaults.capacity_alarm_seconds
    waits_files, waits_how = ceiling(
        lambda f: run(f, quota=day.transform_quota).longest_capacity_wait <= alarm, quota_files, files
    )
    out.append(
        Ceiling(
            "  waits for capacity",
            f"no job waits > {alarm:.0f} s for instances (capacity-backlog alarm)",
            f"{waits_files:,.0f} files/day",
            waits_how,
            "the quota; FallbackInstanceType",
        )
    )
    needed = run(day.files)
    out.append(
        Ceiling(
            f"  instances needed for {day.files:,} files/day",
            "no quota",
            f"{needed.peak_instances:,} at the peak ({needed.jobs_started:,} jobs started, "
            f"{day.files / max(1, needed.jobs_started):.1f} files each)",
            "exact",
            "",
        )
    )
    at_ceiling = run(files)
    scale = DDB_NEW_TABLE_WRITES / max(1e-9, at_ceiling.ddb_writes_peak)
    out.append(
        Ceiling(
            "DynamoDB writes",
            f"{DDB_NEW_TABLE_WRITES:,}/s (new on-demand table)",
            f"{at_ceiling.ddb_writes_peak:,.0f}/s at the intake's ceiling ({scale:,.0f}x headroom)",
            "headroom",
            "nothing: the intake binds first",
        )
    )
    events = EVENTBRIDGE_INVOCATIONS / max(1e-9, at_ceiling.eventbridge_peak)
    out.append(
        Ceiling(
            "EventBridge invocations",
            f"{EVENTBRIDGE_INVOCATIONS:,}/s (us-east-1)",
            f"peak {at_ceiling.eventbridge_peak:,.0f}/s at the intake's ceiling ({events:,.0f}x headroom)",
            "headroom",
            "the uploads' own burstiness; the quota",
        )
    )
    creates = at_ceiling.api_peaks.get("sagemaker.CreateTransformJob", 0.0)
    out.append(
        Ceiling(
            "SageMaker CreateTransformJob",
            f"{SAGEMAKER_API_RATE:g}/s (assumed; unpublished)",
            f"peak {creates:.2f}/s at the intake's ceiling",
            "headroom",
            "IntakeMaxConcurrency bounds the rate",
        )
    )
    endpoints, endpoints_how = ceiling(
        lambda n: simulate_week(int(n), defaults, costs).longest_tick <= defaults.rollout_timeout, 100, 1e6
    )
    out.append(
        Ceiling(
            "rollouts (reconcile tick)",
            f"the rollout function's {defaults.rollout_timeout} s",
            f"{endpoints:,.0f} endpoints, each rolling out weekly",
            endpoints_how,
            "the function's timeout, STABLE_CHECK_SECONDS, ReconcileSchedule",
        )
    )
    return out


# ---------------------------------------------------------------------------------------- output
def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def report(
    defaults: Defaults,
    costs: Costs,
    notes: Sequence[str],
    day: DayResult,
    week: WeekResult,
    ceilings: list[Ceiling],
    beside: Sequence[tuple[str, DayResult]] = (),
) -> list[str]:
    d = defaults
    lines = ["inputs", *(f"  {n}" for n in notes)]
    lines.append(
        f"  template defaults: IntakeBatchSize {d.batch_size}, BatchingWindowSeconds {d.window}, "
        f"IntakeMaxConcurrency {d.concurrency}, MaxFilesPerJob {d.max_files_per_job}, MaxInstanceCount "
        f"{d.max_instances}, visibility {d.visibility_timeout} s x {d.max_receive_count} deliveries, intake timeout "
        f"{d.intake_timeout} s, rollout timeout {d.rollout_timeout} s, steps {list(d.canary_steps)} bake "
        f"{d.bake_seconds} s, reconcile every {d.reconcile_seconds} s, "
        f"stable endpoints every {d.stable_check_seconds} s, capacity sweep every {d.capacity_sweep_seconds} s"
    )
    lines.append(
        "  calls per file (intake): "
        + ", ".join(f"{op} {n:g}" for op, n in sorted(costs.intake_file.items()))
        + "; per job: "
        + ", ".join(f"{op} {n:g}" for op, n in sorted(costs.intake_job.items()))
    )
    lines.append(
        f"  per reconcile of an endpoint: {sum(costs.reconcile.values()):g} calls; moving a rollout on: "
        f"{sum(costs.move.values()):g}"
    )
    r = day
    lines += [
        "",
        f"a day of {r.files:,} files across {r.day.groups} groups (seed {r.day.seed})",
        *_table(
            [
                ("figure", "value", "limit"),
                ("intake batches", f"{r.batches:,}", ""),
                (
                    "transform jobs planned / started",
                    f"{r.jobs_planned:,} / {r.jobs_started:,}",
                    f"{r.files / max(1, r.jobs_planned):,.1f} files per job",
                ),
                (
                    "peak transform jobs / instances",
                    f"{r.peak_jobs} / {r.peak_instances}",
                    f"{r.day.transform_quota} instances (assumed quota)",
                ),
                ("ResourceLimitExceeded answers", f"{r.jobs_refused:,}", ""),
                (
                    "jobs that waited for capacity / peak waiting at once",
                    f"{r.jobs_parked:,} / {r.peak_parked:,}",
                    "(parked in the state table; none rejected)",
                ),
                (
                    "longest wait for capacity",
                    f"{r.longest_capacity_wait:,.0f} s" + (" (still waiting)" if r.still_parked else ""),
                    f"{d.capacity_alarm_seconds:.0f} s (capacity-backlog alarm)",
                ),
                (
                    "still waiting after 3 days: jobs / files",
                    f"{r.still_parked:,} / {r.files_still_parked:,}",
                    "",
                ),
                (
                    "wait for the intake (oldest file)",
                    f"{r.intake_age:,.0f} s",
                    f"{d.backlog_alarm_seconds:.0f} s (intake-backlog alarm)",
                ),
                (
                    "wait until its job started: oldest / p99",
                    f"{r.max_age:,.0f} s / {r.p99_age:,.0f} s",
                    "(waits for capacity included)",
                ),
                ("longest intake invocation", f"{r.longest_intake:,.1f} s", f"{d.intake_timeout} s timeout"),
                ("largest batch payload", f"{r.largest_batch_bytes / 1e6:.2f} MB", "6 MB"),
                ("peak concurrent Lambda invocations", f"{r.peak_lambdas:,.1f}", f"{LAMBDA_CONCURRENCY:,}"),
                (
                    "DynamoDB writes/s: table / hottest item",
                    f"{r.ddb_writes_peak:,.0f} / {r.ddb_hot_item_writes:g}",
                    f"{DDB_NEW_TABLE_WRITES:,} (new table), {DDB_PARTITION_WRITES:,} per partition",
                ),
                ("EventBridge invocations/s", f"{r.eventbridge_peak:,.0f}", f"{EVENTBRIDGE_INVOCATIONS:,}"),
                (
                    "S3 writes / reads per second",
                    f"{r.s3_writes_peak:,.0f} / {r.s3_reads_peak:,.0f}",
                    f"{S3_WRITES_PER_PREFIX:,} / {S3_READS_PER_PREFIX:,} per prefix",
                ),
                ("last job done", f"{r.finished_at / 3600:,.1f} h after midnight", ""),
            ]
        ),
        "  peak calls per second by API: "
        + ", ".join(f"{op} {rate:.2f}" for op, rate in r.api_peaks.items() if rate >= 0.005),
        "  limits hit: " + ("; ".join(r.limits_hit()) or "none"),
        *(_beside(beside) if beside else []),
        "",
        f"{week.endpoints} endpoints, each rolling out once a week",
        *_table(
            [
                ("figure", "value", "limit"),
                ("rollouts", f"{week.rollouts}", ""),
                ("approval to full traffic", f"{week.approval_to_full / 60:,.0f} min", ""),
                ("peak canaries at once", f"{week.peak_canaries}", ""),
                ("peak endpoint instances", f"{week.peak_instances}", f"{ENDPOINT_INSTANCES_QUOTA} (assumed quota)"),
                (
                    "busiest reconcile tick",
                    f"{week.peak_tick_endpoints} endpoints, {week.tick_calls_peak} calls, {week.longest_tick:.1f} s",
                    f"{d.rollout_timeout} s timeout",
                ),
            ]
        ),
        "  calls per second in the busiest tick: "
        + ", ".join(f"{op} {rate:.2f}" for op, rate in week.api_peaks.items()),
        "  limits hit: " + ("; ".join(week.limits_hit(d)) or "none"),
        "",
        "ceilings (sweeps; same curve and seed)",
        *_table(
            [("row", "limit", "ceiling", "how", "what moves it")]
            + [(c.row, c.limit, c.at, c.how, c.moves_it) for c in ceilings]
        ),
    ]
    return lines


# Issue 19's targets for the day of 1M files across 200 groups.
TARGET_WAITING_AFTER_3_DAYS = 0
TARGET_P99_SCARCE_SECONDS = 4 * 3600  # with 20 instances
TARGET_JOBS_SCARCE = 5_000  # transform jobs started, with 20 instances
TARGET_P99_PLENTY_SECONDS = 600  # with 2,000 instances
PLENTY_INSTANCES = 2_000
TARGET_JOBS_PER_GROUP = 2  # the sandbox bench's groups drop (10,000 files across 100 groups, then a trickle)


@dataclass(frozen=True)
class Knobs:
    """Settings, beside the template's defaults, under which the simulation meets issue 19's targets (found by
    simulation, see docs/limits.md; not defaults: the lead decides). None: the template's default."""

    intake_concurrency: int | None = None  # IntakeMaxConcurrency
    max_files_per_job: int | None = None  # MaxFilesPerJob
    target_mb_per_instance: float | None = None  # TargetMegabytesPerInstance
    served_window: int = SERVED_WINDOW  # the scheduler's memory: its groups of the stack's last N jobs

    def apply(self, defaults: Defaults) -> Defaults:
        return replace(
            defaults,
            concurrency=self.intake_concurrency or defaults.concurrency,
            max_files_per_job=self.max_files_per_job or defaults.max_files_per_job,
            target_mb_per_instance=self.target_mb_per_instance or defaults.target_mb_per_instance,
        )

    def describe(self, defaults: Defaults) -> str:
        tuned = self.apply(defaults)
        parts = [
            f"IntakeMaxConcurrency {tuned.concurrency}",
            f"MaxFilesPerJob {tuned.max_files_per_job:,}",
            f"TargetMegabytesPerInstance {tuned.target_mb_per_instance:,.0f}",
            f"the scheduler's memory {self.served_window} job{'s' if self.served_window != 1 else ''} "
            f"(services/jobs.py: {SERVED_WINDOW})",
        ]
        return ", ".join(parts)


# Found by `simulate_day` sweeps on the day of 1M files / 200 groups (docs/limits.md, "What meets the targets").
KNOBS = Knobs(intake_concurrency=3, max_files_per_job=5_000, target_mb_per_instance=10_240, served_window=1)


def targets(scarce: DayResult, plenty: DayResult, bench: GroupsEstimate | None = None) -> list[tuple[str, str, bool]]:
    """Issue 19's targets, each with the figure and whether it is met: `scarce` is the day on the assumed quota
    (20 instances), `plenty` the same day with 2,000, `bench` the sandbox bench's groups drop in the same model
    (`groups_bench_estimate`; its target: at most TARGET_JOBS_PER_GROUP jobs per group). Conservation (no file
    in two jobs, none in none) is checked by simulate_day itself, which raises if it is broken; its figures are
    repeated here."""
    conserved = scarce.files_started + scarce.files_still_parked == scarce.files_planned
    groups = (
        [
            (
                "groups bench (model): jobs per group, worst sweep phase",
                f"{bench.jobs_per_group_max} (target <= {TARGET_JOBS_PER_GROUP})",
                bench.jobs_per_group_max <= TARGET_JOBS_PER_GROUP,
            )
        ]
        if bench is not None
        else []
    )
    return [
        (
            f"files still waiting after 3 days ({scarce.day.transform_quota} instances)",
            f"{scarce.files_still_parked:,} (target {TARGET_WAITING_AFTER_3_DAYS})",
            scarce.files_still_parked <= TARGET_WAITING_AFTER_3_DAYS,
        ),
        (
            f"p99 upload -> job start ({scarce.day.transform_quota} instances)",
            f"{scarce.p99_age:,.0f} s (target <= {TARGET_P99_SCARCE_SECONDS:,} s)",
            scarce.p99_age <= TARGET_P99_SCARCE_SECONDS,
        ),
        (
            f"transform jobs started ({scarce.day.transform_quota} instances)",
            f"{scarce.jobs_started:,} (target <= {TARGET_JOBS_SCARCE:,})",
            scarce.jobs_started <= TARGET_JOBS_SCARCE,
        ),
        (
            "files in exactly one started job or still waiting",
            f"{scarce.files_started:,} + {scarce.files_still_parked:,} of {scarce.files_planned:,}",
            conserved,
        ),
        (
            f"p99 upload -> job start ({plenty.day.transform_quota:,} instances)",
            f"{plenty.p99_age:,.0f} s (target <= {TARGET_P99_PLENTY_SECONDS:,} s)",
            plenty.p99_age <= TARGET_P99_PLENTY_SECONDS,
        ),
        *groups,
    ]


AS_BUILT = "as built"  # merge at start and the start-up hold (the main scenario)
NO_HOLD = "merge at start, no hold"  # the design before the hold was built
NO_MERGING = "no merging"  # the scheduler alone, one job per group per intake batch (before issue 19)
DESIGNS = (AS_BUILT, NO_HOLD, NO_MERGING)


def _beside(columns: Sequence[tuple[str, DayResult]]) -> list[str]:
    """The same day under each design (label, result; the first is the design as built), measured in the same
    run."""
    spread = "min / median / p90 / max"
    (_, now), quota = columns[0], columns[0][1].day.transform_quota

    def row(label: str, of: Any) -> tuple[str, ...]:
        return (label, *(of(r) for _, r in columns))

    merges = ", ".join(f"{op} {n:,.0f}" for op, n in now.merge_calls.items()) or "none"
    return [
        "",
        f"the same day with {quota:,} transform instances, measured in the same run: "
        + ", ".join(f"{label} ({r.design}{', ' + r.hold if r.hold else ''})" for label, r in columns),
        *_table(
            [
                ("figure", *(label for label, _ in columns)),
                row(
                    "jobs planned by the intake / transform jobs started",
                    lambda r: f"{r.jobs_planned:,} / {r.jobs_started:,}",
                ),
                row("planned jobs held / held jobs released", lambda r: f"{r.held_jobs:,} / {r.held_released:,}"),
                row("jobs started that merged waiting jobs", lambda r: f"{r.merged_jobs:,}"),
                row(f"files per started job, {spread}", lambda r: " / ".join(f"{v:,}" for v in r.files_per_job)),
                row("ResourceLimitExceeded answers", lambda r: f"{r.jobs_refused:,}"),
                row(
                    "still waiting after 3 days: jobs / files",
                    lambda r: f"{r.still_parked:,} / {r.files_still_parked:,}",
                ),
                row("upload -> job start: p99 / max", lambda r: f"{r.p99_age:,.0f} s / {r.max_age:,.0f} s"),
                row(
                    "instance-hours: start-up / scoring",
                    lambda r: f"{r.startup_instance_hours:,.0f} / {r.scoring_instance_hours:,.0f}",
                ),
                row("peak transform jobs / instances", lambda r: f"{r.peak_jobs:,} / {r.peak_instances:,}"),
                row("last job done", lambda r: f"{r.finished_at / 3600:,.1f} h after midnight"),
            ]
        ),
        f"  merge calls, {columns[0][0]} (ESTIMATED from the design, see merge_cost; not measured yet): {merges}",
    ]


def _knobs(scarce: DayResult, plenty: DayResult, settings: str) -> list[str]:
    def figures(r: DayResult) -> str:
        return (
            f"{r.jobs_started:,} jobs, files per job {' / '.join(f'{v:,}' for v in r.files_per_job)}, "
            f"{r.files_still_parked:,} files waiting after 3 days, p99 / max {r.p99_age:,.0f} s / {r.max_age:,.0f} s, "
            f"instance-hours {r.startup_instance_hours:,.0f} start-up / {r.scoring_instance_hours:,.0f} scoring, "
            f"{r.jobs_refused:,} ResourceLimitExceeded, longest completion {r.longest_completion:,.0f} s "
            "(calls one after another)"
        )

    return [
        "",
        f"as built (merge at start and the start-up hold) with {settings}",
        f"  {scarce.day.transform_quota:,} instances: {figures(scarce)}",
        f"  {plenty.day.transform_quota:,} instances: {figures(plenty)}",
        *_targets(scarce, plenty, "  its targets")[1:],
    ]


def _targets(
    scarce: DayResult,
    plenty: DayResult,
    title: str = "issue 19's targets, as built (merge at start and the start-up hold)",
    bench: GroupsEstimate | None = None,
) -> list[str]:
    return [
        "",
        title,
        *_table(
            [("target", "figure", "met")]
            + [(t, f, "yes" if ok else "NO") for t, f, ok in targets(scarce, plenty, bench)]
        ),
    ]


def hold_variants() -> tuple[Hold, ...]:
    """The start-up holds considered before the hold was built, `--hold all` simulates them (docs/limits.md, "The
    start-up hold as built, and the holds considered before it")."""
    spec = tuple(Hold(h, on_intake) for h in (JOB_STARTUP_SECONDS, 120, 60) for on_intake in (True, False))
    return spec + tuple(Hold(h, True, until_full=True) for h in (JOB_STARTUP_SECONDS, 120, 60))


def simulate_holds(
    day: Day, defaults: Defaults, costs: Costs, record_bytes: int, *, considered: bool = True
) -> tuple[list[tuple[DayResult, DayResult]], list[GroupsEstimate]]:
    """Merge at start without a hold, with the hold as built and its variant (c), and with each hold considered
    before it was built (`hold_variants`), the day on the assumed quota and on PLENTY_INSTANCES (same seed, same
    measured calls); and the sandbox bench's groups drop in the same model (the built hold with the sandbox's
    settings, `sandbox_defaults`). `considered=False`: the holds considered before are left out."""
    holds_: list[Hold | StartupHold | None] = [
        None,
        StartupHold.of(defaults),
        StartupHold.of(defaults, on_completion=True),
        StartupHold.of(defaults, in_flight=False),
        *(hold_variants() if considered else ()),
    ]
    plenty = replace(day, transform_quota=PLENTY_INSTANCES)

    def run(on: Day, hold: Hold | StartupHold | None) -> DayResult:
        if isinstance(hold, StartupHold):
            return simulate_day(on, defaults, costs, record_bytes, merge=True, startup_hold=hold)
        return simulate_day(on, defaults, costs, record_bytes, merge=True, hold=hold)

    days = [(run(day, hold), run(plenty, hold)) for hold in holds_]
    bench = sandbox_defaults(defaults)
    planned, intake = groups_bench_intake(bench, costs)

    def in_bench(hold: Hold | StartupHold | None) -> Hold | StartupHold | None:
        if isinstance(hold, StartupHold):
            return StartupHold.of(bench, on_completion=hold.on_completion, in_flight=hold.in_flight)
        return hold

    return days, [groups_bench_estimate(planned, in_bench(hold), bench, intake=intake) for hold in holds_]


def _holds(days: Sequence[tuple[DayResult, DayResult]], bench: Sequence[GroupsEstimate]) -> list[str]:
    def figures(r: DayResult) -> str:
        spread = "/".join(f"{v:,}" for v in r.files_per_job)
        return (
            f"{r.jobs_started:,} jobs; p99/max {r.p99_age:,.0f}/{r.max_age:,.0f} s; files/job {spread}; "
            f"start-up/scoring {r.startup_instance_hours:,.0f}/{r.scoring_instance_hours:,.0f} h; "
            f"{r.files_still_parked:,} waiting"
        )

    scarce, plenty = days[0]
    return [
        "",
        "start-up holds: as built, its variants (c) and visible backlog only (the first version built), and with "
        f"--hold all those considered before (merge at start; "
        f"{scarce.day.transform_quota:,} and {plenty.day.transform_quota:,} instances; the groups bench in the same "
        "model, the sandbox's settings, worst sweep phase)",
        *_table(
            [
                (
                    "design",
                    f"{scarce.day.transform_quota:,} instances",
                    f"{plenty.day.transform_quota:,} instances",
                    "groups bench",
                )
            ]
            + [
                (
                    a.hold or "merge at start (no hold)",
                    figures(a),
                    figures(b),
                    f"{g.jobs_per_group_max} jobs/group (median {g.jobs_per_group_median:g}), last start "
                    f"{g.last_start:,.0f} s",
                )
                for (a, b), g in zip(days, bench, strict=True)
            ]
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000, help="files dropped in the day")
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--endpoints", type=int, default=500, help="endpoints rolling out once a week")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--results", type=Path, default=OUT_DIR / "results.json", help="the bench's results")
    parser.add_argument("--measure", action="store_true", help="measure the calls now instead of reading them")
    parser.add_argument("--no-sweeps", action="store_true", help="the two scenarios only")
    parser.add_argument(
        "--hold",
        nargs="?",
        const="all",
        choices=("all", "built"),
        help="also simulate the hold's variants (built: the built one's only; all: and those considered before it; "
        "docs/limits.md; minutes)",
    )
    parser.add_argument("--json", type=Path, default=OUT_DIR / "limits.json", help="where to write the figures")
    args = parser.parse_args(argv)
    defaults = read_defaults()
    calls, notes = measured_calls(args.results, measure=args.measure)
    costs = costs_from(calls)
    record = sqs_record_bytes()
    day = Day(files=args.files, groups=args.groups, seed=args.seed)
    built = StartupHold.of(defaults)  # the design as built: merge at start and the start-up hold
    plenty = replace(day, transform_quota=PLENTY_INSTANCES)

    def design(on: Day, label: str) -> DayResult:
        if label == NO_MERGING:
            return simulate_day(on, defaults, costs, record)
        return simulate_day(on, defaults, costs, record, merge=True, startup_hold=built if label == AS_BUILT else None)

    runs = {(on.transform_quota, label): design(on, label) for on in (day, plenty) for label in DESIGNS}
    day_result, plenty_built = runs[day.transform_quota, AS_BUILT], runs[plenty.transform_quota, AS_BUILT]
    tuned = KNOBS.apply(defaults)
    knob_runs = [
        simulate_day(
            on, tuned, costs, record, merge=True, served_window=KNOBS.served_window, startup_hold=StartupHold.of(tuned)
        )
        for on in (day, plenty)
    ]
    bench_defaults = sandbox_defaults(defaults)
    bench_planned, bench_intake = groups_bench_intake(bench_defaults, costs)
    bench = groups_bench_estimate(bench_planned, StartupHold.of(bench_defaults), bench_defaults, intake=bench_intake)
    week = simulate_week(args.endpoints, defaults, costs, args.seed)
    ceilings = [] if args.no_sweeps else sweeps(defaults, costs, record, day)

    def columns(quota: int) -> list[tuple[str, DayResult]]:
        return [(label, runs[quota, label]) for label in DESIGNS]

    lines = report(defaults, costs, notes, day_result, week, ceilings, columns(day.transform_quota))
    week_at = next(i for i, line in enumerate(lines) if line.startswith(f"{week.endpoints} endpoints"))
    hold_days, hold_bench = (
        simulate_holds(day, defaults, costs, record, considered=args.hold == "all") if args.hold else ([], [])
    )
    lines[week_at - 1 : week_at - 1] = [
        *_beside(columns(plenty.transform_quota)),
        *_targets(day_result, plenty_built, bench=bench),
        *_knobs(knob_runs[0], knob_runs[1], KNOBS.describe(defaults)),
        *(_holds(hold_days, hold_bench) if args.hold else []),
    ]
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)

    def figures_of(result: DayResult) -> dict[str, Any]:
        return {k: v for k, v in asdict(result).items() if k not in ("defaults",)}

    figures = {
        "defaults": asdict(defaults),
        "day": figures_of(day_result),  # as built: merge at start and the start-up hold
        "day_merge_no_hold": figures_of(runs[day.transform_quota, NO_HOLD]),
        "day_today_no_merging": figures_of(runs[day.transform_quota, NO_MERGING]),
        "day_plenty": figures_of(plenty_built),
        "day_plenty_merge_no_hold": figures_of(runs[plenty.transform_quota, NO_HOLD]),
        "day_plenty_today_no_merging": figures_of(runs[plenty.transform_quota, NO_MERGING]),
        "groups_bench": asdict(bench),
        "targets": [{"target": t, "figure": f, "met": ok} for t, f, ok in targets(day_result, plenty_built, bench)],
        "knobs": {
            "settings": KNOBS.describe(defaults),
            "day": figures_of(knob_runs[0]),
            "day_plenty": figures_of(knob_runs[1]),
            "targets": [{"target": t, "figure": f, "met": ok} for t, f, ok in targets(*knob_runs)],
        },
        "hold": [
            {"day": figures_of(a), "day_plenty": figures_of(b), "groups_bench": asdict(g)}
            for (a, b), g in zip(hold_days, hold_bench, strict=True)
        ],
        "week": asdict(week),
        "ceilings": [asdict(c) for c in ceilings],
        "notes": list(notes),
    }
    args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
