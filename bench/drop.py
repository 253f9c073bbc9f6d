"""A burst of small files dropped into the running sandbox, end to end.

    python -m bench.drop run --out FILE --root ROOT [--files 10000] [--groups 2] [--threads 32]
                             [--trickle 0 --trickle-seconds 30]
    python -m bench.drop upload ...      (the client: started by `run` in a process of its own)

`run` starts the sandbox (embedded AWS on 127.0.0.1, the stack of template.yaml, its functions in
their own processes) and registers an Approved model per group; a separate client process then
uploads the files under `incoming/<group>/drop/` as fast as it can with a thread pool. Measured:

- upload time U: first upload started -> last upload answered (client's clock, wall time);
- T_last: when the last file was claimed into a started transform job (CreateTransformJob accepted:
  the sandbox's SageMaker hook, same machine clock);
- processing time = T_last - first upload; tail = T_last - last upload; tail ratio = tail / U;
- transform jobs started (the naive design: one per file) and, from every job's manifest and plan,
  that each uploaded file version is in exactly one job (none lost, none doubled).

Where the time goes: every request the embedded AWS serves is timed (wall and CPU of its thread) by
service and operation, each process's CPU is read from /proc, the intake queue's depth is sampled,
and the intake's invocations (batch size, duration) come from the sandbox's Lambda service.

With `--groups 100 --trickle 200` (the `groups` section of `python -m bench`): the burst spreads over 100
model groups, then a trickle of files (round the groups, evenly over `--trickle-seconds`) follows it under
`incoming/<group>/trickle/`. Measured besides: transform jobs per group (the most any group got; issue 19's
target is 2), and the tail of the burst's files (the trickle's are counted in lost and doubled).

Transform jobs are left InProgress for the whole measurement (the simulator's run time is an hour):
real jobs take minutes to start instances, so no completion competes with a burst's intake in AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    OUT_DIR,
    PYTHON,
    REGION,
    ROOT,
    Figure,
    SectionResult,
    Target,
    approved_package,
    proc_cpu_seconds,
)

INTAKE = "BatchIntakeFunction"
JOBS_TARGET = 0.01  # jobs <= 1% of files
JOBS_PER_GROUP_TARGET = 2  # the groups drop (issue 19): a group's burst and trickle in at most 2 jobs
TAIL_TARGET = 0.5  # (last file in a started job - last upload) / upload time


# ---------------------------------------------------------------------------------------- the client
def upload(
    endpoint: str,
    bucket: str,
    groups: list[str],
    files: int,
    threads: int,
    out: Path,
    deadline: float,
    trickle: int = 0,
    trickle_seconds: float = 30.0,
) -> None:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=threads),
    )

    def put(i: int, folder: str = "drop") -> tuple[str, str, float, int] | None:
        if time.time() > deadline:
            return None  # out of time: the run reports how far it got
        key = f"incoming/{groups[i % len(groups)]}/{folder}/part-{i:05d}.csv"
        answer = s3.put_object(Bucket=bucket, Key=key, Body=f"id,x\n{i},{i * 0.5}\n".encode())
        retries = int(answer["ResponseMetadata"].get("RetryAttempts", 0))
        return key, str(answer["VersionId"]), time.time(), retries

    s3.head_bucket(Bucket=bucket)  # connection and client warm before the clock starts
    started = time.time()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        done = [d for d in pool.map(put, range(files)) if d is not None]
    end = max((d[2] for d in done), default=started)
    trickled = []  # after the burst: one file at a time, evenly over trickle_seconds, round the groups
    for i in range(trickle):
        time.sleep(max(0.0, end + (i + 1) * trickle_seconds / trickle - time.time()))
        one = put(i, "trickle")
        if one is not None:
            trickled.append(one)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(
        json.dumps(
            {
                "start": started,
                "end": end,  # the burst's last upload answered
                "trickleEnd": max((d[2] for d in trickled), default=end),
                "files": [[k, v, t] for k, v, t, _ in done + trickled],
                "trickled": len(trickled),
                "retries": sum(d[3] for d in done),
                "cpuSeconds": usage.ru_utime + usage.ru_stime,
            }
        )
    )


# ---------------------------------------------------------------------------------------- instruments
class RequestLog:
    """Every request the embedded AWS serves: count, wall and thread-CPU seconds by service operation."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.wall: defaultdict[str, float] = defaultdict(float)
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @staticmethod
    def operation(environ: dict[str, Any]) -> str:
        service = "?"
        auth = environ.get("HTTP_AUTHORIZATION", "")
        try:
            service = auth.split(",")[0].split()[1].split("/")[3]
        except IndexError:
            service = "moto-api" if environ.get("PATH_INFO", "").startswith("/moto-api") else "?"
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            return f"{service}.{target.rsplit('.', 1)[-1]}"
        method = environ.get("REQUEST_METHOD", "?")
        if service == "s3":
            what = "object" if environ.get("PATH_INFO", "/").strip("/").count("/") >= 1 else "bucket"
            query = environ.get("QUERY_STRING", "")
            return f"s3.{method} {what}{'?' + query.split('=')[0] if query else ''}"
        return f"{service}.{method}"

    def install(self) -> None:
        """Wrap moto's WSGI application (the threaded server looks it up when it starts)."""
        from moto.moto_server import threaded_moto_server
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication

        log = self

        class TimedApplication(DomainDispatcherApplication):
            def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
                wall, cpu = time.perf_counter(), time.thread_time()
                try:
                    return super().__call__(environ, start_response)
                finally:
                    key = RequestLog.operation(environ)
                    with log._lock:
                        log.count[key] += 1
                        log.wall[key] += time.perf_counter() - wall
                        log.cpu[key] += time.thread_time() - cpu

        threaded_moto_server.DomainDispatcherApplication = TimedApplication  # type: ignore[attr-defined]

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {
                k: {"count": self.count[k], "wallSeconds": round(self.wall[k], 3), "cpuSeconds": round(self.cpu[k], 3)}
                for k in sorted(self.count, key=lambda k: -self.cpu[k])
            }


class QueueSampler(threading.Thread):
    def __init__(self, sqs: Any, url: str, every: float = 1.0) -> None:
        super().__init__(name="bench-queue-sampler", daemon=True)
        self._sqs, self._url, self._every = sqs, url, every
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self._every):
            try:
                a = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["All"])["Attributes"]
            except Exception:  # noqa: BLE001 - a missed sample is not a failure
                continue
            self.samples.append(
                (time.time(), int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"]))
            )


def _cpu(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: proc_cpu_seconds(pid) for name, pid in pids.items()}


# ---------------------------------------------------------------------------------------- the run
SHARED_MODEL_KEY = "models/bench-drop/model.tar.gz"


def _upload_model(s3: Any, bucket: str) -> str:
    """One real example model for every group: an Approved version is deployed to an endpoint (the sandbox
    checks its artifact and health like SageMaker; a missing artifact fails the endpoint, and the rollout then
    rejects the version, so the intake would reject the files NO_APPROVED_MODEL). One artifact URL: one model
    server for all the groups' health checks."""
    import tempfile

    from sagepilot_model_server.examples import build_example_model

    with tempfile.TemporaryDirectory() as folder:
        archive = build_example_model(folder, seed=1, version="bench")
        s3.put_object(Bucket=bucket, Key=SHARED_MODEL_KEY, Body=archive.read_bytes())
    return f"s3://{bucket}/{SHARED_MODEL_KEY}"


def _register(sm: Any, bucket: str, group: str, model_data_url: str) -> None:
    sm.create_model_package_group(ModelPackageGroupName=group)
    package = approved_package(bucket, group)
    package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] = model_data_url
    sm.create_model_package(**package)


def _deployments_settled(sm: Any, groups: int, rollout: Any, limit: float = 600.0, quiet: float = 10.0) -> float:
    """Seconds until every group's first approval is deployed (an endpoint each, none Creating or Updating) and
    the rollout function's event storm is over (at most one invocation in progress, the periodic reconcile, for
    `quiet` seconds: the endpoints' alarms and autoscaling set, their state-change events handled). The drop is
    measured on its own: in AWS a deployment runs in SageMaker and the rollout's invocations take none of the
    intake's concurrency; in the sandbox 100 first deployments share the account's 10 executions and the
    embedded AWS with the burst (the intake's first batch waited over a minute for an execution)."""
    began = time.monotonic()
    statuses: Counter[str] = Counter()
    quiet_since = time.monotonic()
    while time.monotonic() - began < limit:
        statuses = Counter(
            e["EndpointStatus"]
            for page in sm.get_paginator("list_endpoints").paginate(MaxResults=100)
            for e in page["Endpoints"]
        )
        deployed = sum(statuses.values()) >= groups and not statuses["Creating"] and not statuses["Updating"]
        if rollout is not None and rollout.running > 1:
            quiet_since = time.monotonic()
        if deployed and time.monotonic() - quiet_since >= quiet:
            return time.monotonic() - began
        time.sleep(1.0)
    raise RuntimeError(f"the groups' first deployments did not settle in {limit:.0f} s: {dict(statuses)}")


class JobWatcher:
    """Transform jobs as SageMaker accepts them, and the uploaded files each one holds."""

    def __init__(self) -> None:
        self.created: list[tuple[float, str]] = []
        self.files: dict[str, list[tuple[str, str]]] = {}  # job -> [(key, version)] from its plan
        self.group: dict[str, str] = {}  # job -> its model package group (from its plan)
        self.manifest_keys: dict[str, list[str]] = {}
        self.errors: list[str] = []

    def on_created(self, account: str, region: str, name: str) -> None:
        self.created.append((time.time(), name))

    def read_new(self, s3: Any, sm: Any, bucket: str) -> None:
        for _, name in list(self.created):
            if name in self.files:
                continue
            try:
                uri = sm.describe_transform_job(TransformJobName=name)["TransformInput"]["DataSource"]["S3DataSource"][
                    "S3Uri"
                ]
                manifest_key = uri.split("/", 3)[3]
                manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
                plan_key = manifest_key.rsplit("/", 1)[0] + "/plan.json"
                plan = json.loads(s3.get_object(Bucket=bucket, Key=plan_key)["Body"].read())
            except Exception as exc:  # noqa: BLE001 - reported, and the job is read again next time
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            # The manifest lists the dropped keys (incoming/<group>/<sub-path>; a job the intake planned) or the
            # job's copies of its versions (jobs/<group>/<job>/input/<sub-path>; a job that reads copies): the
            # dropped keys they stand for are incoming/<group>/<sub-path>.
            prefix = manifest[0]["prefix"].split("/", 3)[3]
            if prefix not in (f"incoming/{plan['group']}/", f"jobs/{plan['group']}/{name}/input/"):
                self.errors.append(f"{name}: the manifest reads neither the dropped keys nor its copies: {prefix}")
            self.manifest_keys[name] = [f"incoming/{plan['group']}/{relative}" for relative in manifest[1:]]
            self.files[name] = [(i["key"], i["versionId"]) for i in plan["inputs"] + plan.get("superseded", [])]
            self.group[name] = str(plan["group"])

    def claimed(self) -> int:
        return sum(len(v) for v in self.files.values())


@dataclass
class Outcome:
    files: int  # asked for
    uploaded: int
    upload_s: float
    in_jobs: int  # uploaded versions found in a started job
    jobs: int
    lost: int  # uploaded versions in no job when the run ended
    doubled: int
    tail_s: float | None  # None: not every uploaded file reached a job
    processing_s: float | None
    out_of_time: bool
    groups: int = 2
    trickled: int = 0
    most_jobs_per_group: int = 0  # the most transform jobs any one group got (retries not counted)

    @property
    def trickle_section(self) -> bool:
        return self.trickled > 0 or self.groups > 2


def _figures(o: Outcome, budget: float) -> list[Figure]:
    section = "10k drop" if o.files >= 10_000 else f"{o.files:,}-file drop"
    if o.trickle_section:
        section = f"{o.files // 1000}k across {o.groups} groups + trickle"
    unfinished = ""
    if o.out_of_time:
        unfinished = (
            f"out of time: after the {budget:.0f} s budget {o.uploaded:,} of {o.files + o.trickled:,} files were "
            "uploaded and "
            f"{o.in_jobs:,} were in started jobs"
        )
    elif o.tail_s is None:
        unfinished = f"{o.lost:,} uploaded files never reached a started job (stalled)"
    figures = [
        Figure(
            section,
            f"upload {o.uploaded:,} of {o.files:,} files (client, 32 threads)"
            if o.uploaded < o.files
            else f"upload {o.files:,} files (client, threads)",
            o.upload_s,
            "s",
            note=f"{o.uploaded / o.upload_s:,.0f} files/s" if o.upload_s > 0 else "",
            error="" if o.uploaded >= o.files + o.trickled else unfinished,
        ),
        Figure(
            section,
            "processing: first upload -> last file in a started job",
            o.processing_s,
            "s",
            baseline=o.upload_s,
            baseline_label="upload time",
            error=unfinished,
        ),
        Figure(
            section,
            "tail: last upload -> last file in a started job",
            o.tail_s,
            "s",
            baseline=o.upload_s,
            baseline_label="upload time (first upload -> last upload answered)",
            # The groups drop's burst shares its groups' held jobs with the trickle after it: its tail is printed,
            # its targets are per group (issue 19).
            target=None if o.trickle_section else Target("ratio", "<=", TAIL_TARGET),
            note="tail ratio = (last file claimed into a started job - last upload) / upload time",
            error=unfinished,
        ),
        Figure(
            section,
            "transform jobs started",
            o.jobs,
            "jobs",
            baseline=o.in_jobs or None,
            baseline_label="one job per file (the naive design), for the files in jobs",
            # (Across 100 groups the target is each group's: at most 2 jobs, so up to 2% of 10,000 files.)
            target=None if o.trickle_section else Target("ratio", "<=", JOBS_TARGET),
        ),
        Figure(
            section,
            "uploaded file versions in no job",
            o.lost,
            "files",
            target=Target("value", "==", 0),
            note="when the run ended" + (" (out of time)" if o.out_of_time else ""),
        ),
        Figure(section, "file versions in 2+ jobs", o.doubled, "files", target=Target("value", "==", 0)),
    ]
    if o.trickle_section:
        figures.append(
            Figure(
                section,
                "transform jobs of the busiest group",
                o.most_jobs_per_group,
                "jobs",
                target=Target("value", "<=", JOBS_PER_GROUP_TARGET),
                note=f"{o.files:,} files at once then {o.trickled:,} trickled, across {o.groups} groups",
                error=unfinished,
            )
        )
    return figures


def run(
    root: Path,
    files: int,
    groups: int,
    threads: int,
    overrides: dict[str, str],
    budget: float,
    stall_seconds: float = 60.0,
    trickle: int = 0,
    trickle_seconds: float = 30.0,
) -> SectionResult:
    from sagepilot_sandbox import faithful
    from sagepilot_sandbox.server import Sandbox, free_port

    result = SectionResult("groups" if trickle else "drop")
    started_section = time.monotonic()
    requests = RequestLog()
    requests.install()
    log_dir = OUT_DIR / "logs" / "drop"
    sandbox = Sandbox(port=free_port(), root=root, overrides=overrides, run_seconds=3600.0, log_dir=log_dir)
    stack = sandbox.start()
    try:
        bucket = stack.outputs["DataBucketName"]
        s3, sm = sandbox.client("s3"), sandbox.client("sagemaker")
        names = [f"drop{g}" for g in range(groups)]
        model_data_url = _upload_model(s3, bucket)
        for name in names:
            _register(sm, bucket, name, model_data_url)
        rollout = sandbox.lambdas.functions.get("RolloutFunction") if sandbox.lambdas else None
        settled = _deployments_settled(sm, len(names), rollout)
        print(f"  {len(names)} group(s) registered; their first deployments settled in {settled:.1f} s", flush=True)
        watcher = JobWatcher()
        faithful.on_transform_job_created(watcher.on_created)
        sampler = QueueSampler(sandbox.client("sqs"), stack.outputs["IntakeQueueUrl"])
        sampler.start()
        assert sandbox.lambdas is not None
        pids = {"sandbox (embedded AWS, pollers)": os.getpid()}
        for logical_id, fn in sandbox.lambdas.functions.items():
            proc = getattr(fn, "_proc", None)
            if proc is not None:
                pids[f"function {logical_id}"] = proc.pid
        cpu_before = _cpu(pids)
        requests_before = requests.snapshot()
        upload_out = OUT_DIR / "drop-upload.json"
        deadline = time.time() + budget
        print(f"  uploading {files:,} files in {groups} group(s) with {threads} threads", flush=True)
        subprocess.run(
            [
                PYTHON,
                "-m",
                "bench.drop",
                "upload",
                "--endpoint",
                sandbox.endpoint_url,
                "--bucket",
                bucket,
                "--groups",
                ",".join(names),
                "--files",
                str(files),
                "--threads",
                str(threads),
                "--deadline",
                str(deadline),
                "--out",
                str(upload_out),
                "--trickle",
                str(trickle),
                "--trickle-seconds",
                str(trickle_seconds),
            ],
            cwd=ROOT,
            check=True,
        )
        uploaded = json.loads(upload_out.read_text())
        up_start, up_end = float(uploaded["start"]), float(uploaded["end"])
        cpu_at_upload_end = _cpu(pids)
        requests_at_upload_end = requests.snapshot()
        expected = {(k, v) for k, v, _ in uploaded["files"]}
        burst = {(k, v) for k, v, _ in uploaded["files"] if "/trickle/" not in k}
        print(
            f"  uploaded {len(expected):,} in {up_end - up_start:.1f} s; waiting for every file to be in a started job",
            flush=True,
        )

        # Progress: files reaching started jobs, or the intake reading its queue. With the start-up hold a busy
        # group's files wait in its held job until the intake has read the backlog, so minutes may pass with no
        # job started while the intake works through it; a run stalls when neither moves for `stall_seconds`.
        progress_at, progress = time.time(), (-1, -1)
        out_of_time = len(burst) < files or int(uploaded.get("trickled", 0)) < trickle
        while True:
            watcher.read_new(s3, sm, bucket)
            claimed = watcher.claimed()
            queued = sum(sampler.samples[-1][1:]) if sampler.samples else -1
            if (claimed, queued) != progress:
                progress, progress_at = (claimed, queued), time.time()
            if claimed >= len(expected) or time.time() - progress_at > stall_seconds:
                break
            if time.time() > deadline:
                out_of_time = True
                break
            time.sleep(0.25)
        sampler.stop.set()
        cpu_after = _cpu(pids)
        requests_after = requests.snapshot()

        seen: Counter[tuple[str, str]] = Counter()
        manifest_mismatch = []
        for name, versions in watcher.files.items():
            seen.update(versions)
            if sorted(watcher.manifest_keys[name]) != sorted({k for k, _ in versions}):
                manifest_mismatch.append(name)
        jobs = [n for n in watcher.files if not n.rsplit("-", 1)[-1].startswith("r")]
        lost = len(expected - set(seen))
        doubled = sum(1 for v in expected if seen[v] > 1)
        foreign = sorted(set(seen) - expected)[:5]
        created_at = {name: t for t, name in watcher.created}
        # The tail is the burst's: when its last file was in a started job (the trickle comes after it).
        burst_claimed = [created_at[name] for name, versions in watcher.files.items() if burst & set(versions)]
        last_claimed = max(burst_claimed) if burst_claimed else None
        per_group = Counter(watcher.group[name] for name in jobs)
        complete = lost == 0 and not out_of_time and last_claimed is not None
        outcome = Outcome(
            files=files,
            uploaded=len(expected),
            upload_s=up_end - up_start,
            in_jobs=len(expected & set(seen)),
            jobs=len(jobs),
            lost=lost,
            doubled=doubled,
            tail_s=(last_claimed - up_end) if complete and last_claimed else None,
            processing_s=(last_claimed - up_start) if complete and last_claimed else None,
            out_of_time=out_of_time,
            groups=groups,
            trickled=int(uploaded.get("trickled", 0)),
            most_jobs_per_group=max(per_group.values(), default=0),
        )
        result.figures = _figures(outcome, budget)

        intake = sandbox.lambdas.functions.get(INTAKE)
        invocations = list(intake.invocations) if intake is not None else []
        durations = [float(i.get("durationMs", 0)) / 1000 for i in invocations]
        result.details = {
            "files": files,
            "uploaded": len(expected),
            "groups": names,
            "threads": threads,
            "budgetSeconds": budget,
            "outOfTime": out_of_time,
            "parameters": stack.parameters,
            "overrides": overrides,
            "upload": {
                "start": up_start,
                "end": up_end,
                "seconds": up_end - up_start,
                "retries": uploaded["retries"],
                "clientCpuSeconds": uploaded["cpuSeconds"],
            },
            "lastClaimedAt": last_claimed,
            "tailSeconds": outcome.tail_s,
            "processingSeconds": outcome.processing_s,
            "tailRatio": (outcome.tail_s / outcome.upload_s) if outcome.tail_s is not None else None,
            "trickled": outcome.trickled,
            "trickleEnd": uploaded.get("trickleEnd"),
            "jobsPerGroup": dict(sorted(per_group.items())),
            "jobs": [
                {
                    "name": n,
                    "files": len(watcher.files[n]),
                    "group": watcher.group.get(n),
                    "sinceFirstUpload": round(created_at.get(n, 0) - up_start, 2),
                }
                for n in sorted(watcher.files, key=lambda n: created_at.get(n, 0))
            ],
            "inJobs": outcome.in_jobs,
            "lost": lost,
            "doubled": doubled,
            "foreignVersionsInJobs": foreign,
            "manifestPlanMismatch": manifest_mismatch,
            "watcherErrors": watcher.errors[:20],
            "intakeInvocations": {
                "count": len(invocations),
                "seconds": round(sum(durations), 2),
                "durations": [round(d, 2) for d in durations],
                "timeline": [{"at": t, "what": w} for t, fid, w in list(sandbox.lambdas.timeline) if fid == INTAKE],
                "errors": [i.get("errorMessage") for i in invocations if not i.get("ok")][:5],
            },
            "pollerErrors": [e for p in sandbox.lambdas.pollers for e in p.errors][:10],
            "queueDepth": [(round(t - up_start, 1), v, nv) for t, v, nv in sampler.samples],
            "cpuSeconds": {
                "duringUpload": _diff(cpu_at_upload_end, cpu_before),
                "afterUpload": _diff(cpu_after, cpu_at_upload_end),
                "uploaderClient": uploaded["cpuSeconds"],
            },
            "requests": {
                "duringUpload": _diff_requests(requests_at_upload_end, requests_before),
                "afterUpload": _diff_requests(requests_after, requests_at_upload_end),
            },
        }
        result.text = _explain(result.details)
    finally:
        sandbox.stop()
    result.seconds = time.monotonic() - started_section
    return result


def _diff(after: dict[str, float | None], before: dict[str, float | None]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, value in after.items():
        was = before.get(name)
        out[name] = round(value - was, 2) if value is not None and was is not None else None
    return out


def _diff_requests(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, Any]:
    out = {}
    for op, now in after.items():
        was = before.get(op, {"count": 0, "wallSeconds": 0.0, "cpuSeconds": 0.0})
        count = now["count"] - was["count"]
        if count:
            out[op] = {
                "count": count,
                "wallSeconds": round(now["wallSeconds"] - was["wallSeconds"], 2),
                "cpuSeconds": round(now["cpuSeconds"] - was["cpuSeconds"], 2),
            }
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["cpuSeconds"]))


def _explain(d: dict[str, Any]) -> list[str]:
    """Where the time went, in a few lines (the numbers behind them are in the JSON details)."""
    up = d["upload"]
    sandbox = "sandbox (embedded AWS, pollers)"
    by_upload_end = sum(j["files"] for j in d["jobs"] if j["sinceFirstUpload"] <= up["seconds"])
    after = max(d["inJobs"] - by_upload_end, 0)
    peak = max((v + nv for _, v, nv in d["queueDepth"]), default=0)
    lines = [
        f"drop: {d['uploaded']:,}/{d['files']:,} files uploaded into {len(d['groups'])} group(s) by {d['threads']} "
        f"client threads in {up['seconds']:.1f} s ({up['retries']} client retries); stack parameters "
        f"IntakeBatchSize={d['parameters'].get('IntakeBatchSize')} "
        f"BatchingWindowSeconds={d['parameters'].get('BatchingWindowSeconds')} "
        f"MaxFilesPerJob={d['parameters'].get('MaxFilesPerJob')}",
        f"  files in started jobs: {by_upload_end:,} by the end of the upload, {after:,} after it; "
        f"{len(d['jobs'])} jobs of " + ", ".join(str(j["files"]) for j in d["jobs"][:30]) + f" files; "
        f"intake queue peaked at {peak:,} messages",
    ]
    inv = d["intakeInvocations"]
    if inv["count"]:
        lines.append(
            f"  intake: {inv['count']} invocations, {inv['seconds']:.1f} s inside the function; durations (s) "
            + ", ".join(f"{x:.1f}" for x in inv["durations"][:24])
        )
    for phase, files, label in (("duringUpload", d["uploaded"], "uploaded"), ("afterUpload", after, "processed")):
        cpu = d["cpuSeconds"][phase]
        reqs = d["requests"][phase]
        total = sum(r["count"] for r in reqs.values())
        app_cpu = sum(r["cpuSeconds"] for r in reqs.values())
        per_file = ""
        if files and cpu.get(sandbox):
            per_file = (
                f" = {total / files:.2f} requests and {1000 * (cpu[sandbox] or 0) / files:.1f} ms of embedded-AWS "
                f"CPU per {label} file"
            )
        lines.append(
            f"  {phase}: CPU s " + ", ".join(f"{k} {v}" for k, v in cpu.items()) + f"; {total:,} requests{per_file}"
        )
        lines.append(
            f"    by CPU inside moto ({app_cpu:.1f} s; the rest is HTTP serving): "
            + ", ".join(
                f"{op} {r['count']:,}x {1000 * r['cpuSeconds'] / r['count']:.2f} ms" for op, r in list(reqs.items())[:7]
            )
        )
        if files:
            by_count = sorted(reqs.items(), key=lambda kv: -kv[1]["count"])[:8]
            lines.append(
                f"    requests per {label} file, by operation: "
                + ", ".join(f"{op} {r['count'] / files:.2f}" for op, r in by_count)
            )
    if d["lost"] or d["doubled"] or d["manifestPlanMismatch"] or d["foreignVersionsInJobs"]:
        lines.append(
            f"  in no job {d['lost']}, in 2+ jobs {d['doubled']}, "
            f"manifest/plan mismatch {d['manifestPlanMismatch'][:5]}"
            f", foreign versions {d['foreignVersionsInJobs']}"
        )
    for key in ("pollerErrors", "watcherErrors"):
        if d.get(key):
            lines.append(f"  {key}: {d[key][:3]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drop", description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--root", type=Path, default=ROOT)
    r.add_argument("--files", type=int, default=10_000)
    r.add_argument("--groups", type=int, default=2)
    r.add_argument("--threads", type=int, default=32)
    r.add_argument("--budget", type=float, default=180.0, help="seconds from the first upload")
    r.add_argument("--override", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--trickle", type=int, default=0, help="files uploaded one by one after the burst")
    r.add_argument("--trickle-seconds", type=float, default=30.0, help="the trickle's duration")
    u = sub.add_parser("upload")
    u.add_argument("--endpoint", required=True)
    u.add_argument("--bucket", required=True)
    u.add_argument("--groups", required=True)
    u.add_argument("--files", type=int, required=True)
    u.add_argument("--threads", type=int, required=True)
    u.add_argument("--deadline", type=float, required=True, help="epoch seconds: no upload starts after it")
    u.add_argument("--out", type=Path, required=True)
    u.add_argument("--trickle", type=int, default=0)
    u.add_argument("--trickle-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.mode == "upload":
        upload(
            args.endpoint,
            args.bucket,
            args.groups.split(","),
            args.files,
            args.threads,
            args.out,
            args.deadline,
            args.trickle,
            args.trickle_seconds,
        )
        return 0
    overrides = dict(o.split("=", 1) for o in args.override)
    run(
        args.root,
        args.files,
        args.groups,
        args.threads,
        overrides,
        args.budget,
        trickle=args.trickle,
        trickle_seconds=args.trickle_seconds,
    ).write(args.out)
    sys.stdout.flush()
    # Timers of the SageMaker simulator (jobs left InProgress) must not keep this process alive.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
