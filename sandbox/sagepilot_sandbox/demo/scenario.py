"""The main scenario, step by step, on the sandbox; it checks its own outcome (exit status 0 or 1).

The whole loop, for real on one machine: a training set is uploaded -> a training job trains the
example classifier -> v1 is registered with its real metrics and approved by the group's recipe ->
its endpoint is created; files dropped under incoming/ are scored by transform jobs whose predictions
are the model's own (checked line by line against model.predict); bad files and a file the model
refuses are rejected with the reason; then the rollout half (`demo_rollout`): v2 trained and rolled
out as a canary whose measured traffic split follows the weights, a deliberately broken v3 rolled
back by its own 5xx alarm on the errors it really served, a v4 rejected during its canary, and an
endpoint left idle scaled in by its low-traffic alarm, and a v6 nobody calls held at its first canary
step (NO TRAFFIC), never promoted on silence. Every S3 event and model package event is
delivered twice on purpose (at-least-once delivery). It prints a timeline and a summary table.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from typing import Any

from sagepilot_model_server.examples import feature_rows, labeled_rows, load_estimator, to_csv, to_jsonl
from sagepilot_sandbox.demo.rollout import run_rollout_scenario
from sagepilot_sandbox.demo.traffic import Traffic
from sagepilot_sandbox.server import Sandbox, free_port

GROUP = "churn"
ENDPOINT = "sagepilot-churn"
# The demo's clock: a 60-s alarm period lasts 3 s; alarms are evaluated twice a second.
ALARM_TIME_SCALE = 0.05
RECIPE = {"autoApprove": [{"metric": "validation:accuracy", "min": 0.7}]}
GROUP_TAGS = {
    "sagepilot:bake-seconds": "6",  # each canary step bakes 6 s (the sandbox's default is 4)
    "sagepilot:idle-minutes": "5",  # the low-traffic alarm: one 5-minute period (15 s on the demo's clock)
    "sagepilot:min-invocations": "20",  # evidence: what the candidate must serve in a step before it moves on
    "sagepilot:max-bake-seconds": "15",  # a step still short of it this long is held: NO TRAFFIC
}
TRAIN_KEY = "training/churn/2026-11/customers.csv"
GOOD_ROWS = {
    "incoming/churn/2026-11/customers.csv": feature_rows(6, seed=11),
    "incoming/churn/2026-11/customers east+west ü.csv": feature_rows(2, seed=12),
    "incoming/churn/2026-11/events.jsonl.gz": feature_rows(3, seed=13),
}
BAD = {
    "incoming/churn/2026-11/notes.txt": (b"not data", "UNSUPPORTED_FILE_TYPE"),
    "incoming/churn/2026-11/empty.csv": (b"", "EMPTY_FILE"),
    "incoming/fraud/2026-11/transactions.csv": (b"12.5,1,0,3\n", "MODEL_GROUP_NOT_FOUND"),
}
REFUSED = "incoming/churn/2026-12/bad rows.csv"  # five columns: the model expects four
# Dropped with REFUSED, into the same job: its failure must not sink them (the job is split until the bad file
# is alone).
BATCH_MATES = {
    "incoming/churn/2026-12/north.csv": feature_rows(3, seed=14),
    "incoming/churn/2026-12/west.csv": feature_rows(4, seed=15),
}
BAD_TRAINING = "training/churn/2026-12/typo.csv"


def _body(key: str, rows: list[list[float]]) -> bytes:
    text = to_jsonl(rows) if ".jsonl" in key else to_csv(rows)
    return gzip.compress(text.encode(), mtime=0) if key.endswith(".gz") else text.encode()


class Narrator:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.checks: list[tuple[str, bool]] = []
        self.timeline: list[tuple[float, str]] = []
        self.summary: list[tuple[str, str, bool]] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        print(f"[{self.now():6.1f}s] {text}", flush=True)

    def mark(self, what: str) -> None:
        """A milestone for the timeline printed at the end."""
        self.timeline.append((self.now(), what))

    def check(self, what: str, ok: bool) -> None:
        self.checks.append((what, ok))
        print(f"         {'ok  ' if ok else 'FAIL'} {what}", flush=True)

    def result(self, step: str, outcome: str, ok: bool) -> None:
        """A row of the summary table printed at the end."""
        self.summary.append((step, outcome, ok))

    def print_summary(self) -> None:
        print("\ntimeline:")
        for at, what in self.timeline:
            print(f"  {at:6.1f}s  {what}")
        width = max((len(step) for step, _, _ in self.summary), default=4)
        print(f"\n{'step':<{width}}  {'':4}  outcome")
        print(f"{'-' * width}  ----  {'-' * 60}")
        for step, outcome, ok in self.summary:
            print(f"{step:<{width}}  {'ok' if ok else 'FAIL':4}  {outcome}")


def _json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def estimator_of(s3: Any, uri: str) -> Any:
    """The scikit-learn estimator inside a model artifact in the sandbox's S3."""
    import tempfile
    from pathlib import Path

    bucket, key = uri[len("s3://") :].split("/", 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tar.gz"
        path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return load_estimator(path)


def _versions_read(s3: Any, bucket: str, sm: Any) -> list[tuple[str, str]]:
    """(key, version) read by each transform job that was not split (a split job's files went to its pieces)."""
    read: list[tuple[str, str]] = []
    for summary in sm.list_transform_jobs(MaxResults=100)["TransformJobSummaries"]:
        name = summary["TransformJobName"]
        if name.rsplit("-", 1)[-1].startswith("r") and len(name.rsplit("-", 1)[-1]) == 2:
            continue  # a retry reads its job's plan
        folder = f"jobs/{GROUP}/{name}/"
        if _json(s3, bucket, folder + "report.json").get("status") == "Split":
            continue
        read += [(i["key"], i["versionId"]) for i in _json(s3, bucket, folder + "plan.json")["inputs"]]
    return read


def _packages(sm: Any) -> list[dict[str, Any]]:
    listed = sm.list_model_packages(ModelPackageGroupName=GROUP, SortBy="CreationTime", SortOrder="Ascending")
    return list(listed["ModelPackageSummaryList"])


def train_version(sandbox: Sandbox, n: Narrator, key: str, seed: int, version: int) -> dict[str, Any]:
    """Upload a training set (and its validation set first); wait for the registered version."""
    stack = sandbox.stack
    assert stack is not None
    bucket = stack.outputs["DataBucketName"]
    s3, sm = sandbox.client("s3"), sandbox.client("sagemaker")
    rows, labels = labeled_rows(500, seed=seed)
    validation_key = key.rsplit("/", 1)[0] + "/validation.csv"
    s3.put_object(Bucket=bucket, Key=validation_key, Body=to_csv(rows[400:], labels[400:]).encode())
    s3.put_object(Bucket=bucket, Key=key, Body=to_csv(rows[:400], labels[:400]).encode())
    n.say(f"   put s3://{bucket}/{validation_key} (100 rows), then s3://{bucket}/{key} (400 rows, label first)")
    packages = sandbox.wait_for(lambda: len(_packages(sm)) >= version and _packages(sm), timeout=60)
    package = sm.describe_model_package(ModelPackageName=packages[version - 1]["ModelPackageArn"])
    properties = package.get("CustomerMetadataProperties", {})
    job = sm.describe_training_job(TrainingJobName=properties["sagepilot:training-job"])
    status = package["ModelApprovalStatus"]
    n.mark(f"training job {job['TrainingJobName']} {job['TrainingJobStatus']} -> v{version} {status}")
    metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
    n.say(
        f"   training job {job['TrainingJobName']}: {job['TrainingJobStatus']}, metrics {metrics}, "
        f"artifact {job['ModelArtifacts']['S3ModelArtifacts']}"
    )
    n.say(f"   v{version} registered: {package['ModelApprovalStatus']}: {properties.get('sagepilot:approval', '')}")
    return {"package": package, "job": job, "metrics": metrics}


def _call_when_in_service(sm: Any, traffic: Traffic) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService":
                traffic.trickle()
                return
        except sm.exceptions.ClientError:
            pass
        time.sleep(0.25)


def run_demo(port: int = 0, *, record_calls: bool = False, used: list[Sandbox] | None = None) -> int:
    """The demo; with `record_calls` its sandbox records the functions' AWS calls, and `used` gets the
    sandbox (stopped when this returns, its recordings kept) for the caller's IAM check."""
    n = Narrator()
    with Sandbox(
        port=port or free_port(),
        s3_event_copies=2,
        model_package_event_copies=2,
        alarm_evaluation_seconds=0.5,
        alarm_time_scale=ALARM_TIME_SCALE,
        record_calls=record_calls,
    ) as sandbox:
        if used is not None:
            used.append(sandbox)
        stack = sandbox.stack
        assert stack is not None
        bucket = stack.outputs["DataBucketName"]
        s3, sm = sandbox.client("s3"), sandbox.client("sagemaker")
        n.say(f"sandbox up: embedded AWS on {sandbox.endpoint_url}; stack {stack.name} created from template.yaml")
        n.say(f"data bucket {bucket}; functions: {', '.join(stack.functions)}")
        n.say("every S3 and model package event is delivered TWICE on purpose (at-least-once delivery)")
        n.mark("sandbox up")

        n.say(f"1. model package group {GROUP!r}, its recipe config/{GROUP}/training.json {json.dumps(RECIPE)}")
        group_arn = sm.create_model_package_group(
            ModelPackageGroupName=GROUP, ModelPackageGroupDescription="churn classifier"
        )["ModelPackageGroupArn"]
        sm.add_tags(ResourceArn=group_arn, Tags=[{"Key": k, "Value": v} for k, v in GROUP_TAGS.items()])
        s3.put_object(Bucket=bucket, Key=f"config/{GROUP}/training.json", Body=json.dumps(RECIPE).encode())
        n.say(f"   group tags {GROUP_TAGS}")

        n.say("2. upload a training set: the upload starts a training job that really trains the example classifier")
        v1 = train_version(sandbox, n, TRAIN_KEY, seed=1, version=1)
        accuracy = v1["metrics"].get("validation:accuracy", 0.0)
        v1_url = v1["job"]["ModelArtifacts"]["S3ModelArtifacts"]
        n.check(
            "the training job completed with real metrics; v1 registered with them, its artifact, and Approved "
            "by the recipe's threshold",
            v1["job"]["TrainingJobStatus"] == "Completed"
            and accuracy >= 0.7
            and "train:accuracy" in v1["metrics"]
            and v1["package"]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == v1_url
            and v1["package"]["ModelApprovalStatus"] == "Approved"
            and v1["package"].get("CustomerMetadataProperties", {}).get("metric:validation:accuracy")
            == f"{accuracy:g}",
        )
        n.result(
            "training -> v1",
            f"validation:accuracy {accuracy:.3f}, train:accuracy {v1['metrics'].get('train:accuracy', 0):.3f}; "
            "Approved by the recipe (>= 0.7)",
            v1["package"]["ModelApprovalStatus"] == "Approved",
        )
        traffic = Traffic(lambda: sandbox.client("sagemaker-runtime"), ENDPOINT)
        threading.Thread(target=_call_when_in_service, args=(sm, traffic), daemon=True).start()
        n.say(f"   as soon as {ENDPOINT} is InService, a client calls it steadily (2-3 requests a second)")
        s3.put_object(Bucket=bucket, Key=BAD_TRAINING, Body=b"1,34,12,56.1,3\n0,51,three,12.0,40\n")
        n.say(f"   and a training set with a typo: s3://{bucket}/{BAD_TRAINING} (its job fails; checked in step 6)")

        n.say("3. drop files under incoming/ (3 good, 3 bad); v1's approval is also creating its endpoint")
        for key, rows in GOOD_ROWS.items():
            s3.put_object(Bucket=bucket, Key=key, Body=_body(key, rows))
            n.say(f"   put s3://{bucket}/{key} ({len(rows)} customers)")
        for key, (body, _) in BAD.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            n.say(f"   put s3://{bucket}/{key}   (bad)")
        n.mark("files dropped")
        jobs = sandbox.wait_for(
            lambda: (
                len(names := [j["TransformJobName"] for j in sm.list_transform_jobs()["TransformJobSummaries"]]) >= 2
                and names
            ),
            timeout=60,
        )
        time.sleep(0.5)  # a duplicate would show up now
        jobs = sorted(j["TransformJobName"] for j in sm.list_transform_jobs()["TransformJobSummaries"])
        for name in jobs:
            job = sm.describe_transform_job(TransformJobName=name)
            manifest_uri = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
            manifest = _json(s3, bucket, manifest_uri.split("/", 3)[3])
            n.say(
                f"   job {name}: model {job['ModelName']}, {job['TransformInput']['ContentType']} "
                f"({job['TransformInput']['CompressionType']}), {job['BatchStrategy']} <= {job['MaxPayloadInMB']} MB, "
                f"{job['TransformResources']['InstanceCount']} x {job['TransformResources']['InstanceType']}"
            )
            n.say(f"       manifest {manifest_uri}: {manifest[1:]}")
        n.check(
            "3 good files -> 2 jobs (CSV and gzipped JSON Lines), despite every event arriving twice", len(jobs) == 2
        )
        n.say(f"   and a file the model cannot read: {REFUSED!r} (five columns; it expects four), dropped with")
        n.say(f"   two good files: {', '.join(repr(k) for k in BATCH_MATES)}")
        s3.put_object(Bucket=bucket, Key=REFUSED, Body=b"34,12,56.1,3,1\n51,3,12.0,40,0\n")
        for key, rows in BATCH_MATES.items():
            s3.put_object(Bucket=bucket, Key=key, Body=_body(key, rows))

        n.say("4. SageMaker runs the jobs: every record goes through v1's model server; predictions land in S3")
        outputs = sandbox.wait_for(
            lambda: (
                len(found := [k for k in _keys(s3, bucket, "predictions/churn/2026-11/") if k.endswith(".report.json")])
                >= 3
                and found
            ),
            timeout=60,
        )
        n.mark("predictions written")
        estimator = estimator_of(s3, v1_url)
        all_equal, records = True, 0
        for key, rows in GOOD_ROWS.items():
            out_key = "predictions/" + key[len("incoming/") :] + ".out"
            lines = s3.get_object(Bucket=bucket, Key=out_key)["Body"].read().decode().splitlines()
            expected = [str(int(p)) for p in estimator.predict(rows)]
            records += len(rows)
            all_equal = all_equal and lines == expected
            report = _json(s3, bucket, out_key[: -len(".out")] + ".report.json")
            n.say(
                f"   {out_key}: {len(lines)} lines {lines[:4]}{' ...' if len(lines) > 4 else ''} "
                f"(model.predict: {expected[:4]}); report: {report['status']}, v{report['modelPackageVersion']}"
            )
        n.check(
            "one prediction per input record, in order, each equal to v1's own model.predict; reports name v1",
            all_equal and all(_json(s3, bucket, k)["modelPackageVersion"] == 1 for k in outputs) and len(outputs) == 3,
        )
        n.result("batch predictions", f"3 files, {records} records, every line = v1's model.predict", all_equal)

        n.say("5. the bad files stay where they are, with a reason beside them")
        rejected = sandbox.wait_for(
            lambda: (
                len(r := [k for k in _keys(s3, bucket, "rejected/") if "/2026-11/" in k and "training" not in k]) >= 3
                and r
            ),
            timeout=30,
        )
        for key in rejected:
            report = _json(s3, bucket, key)
            n.say(f"   {key}: {report['code']}: {report['reason']}")
        codes = {_json(s3, bucket, k)["input"]["key"]: _json(s3, bucket, k)["code"] for k in rejected}
        n.check(
            "each bad file has its rejection report with the right code",
            codes == {key: code for key, (_, code) in BAD.items()},
        )
        n.check("the bad files are still in incoming/", all(k in _keys(s3, bucket, "incoming/") for k in BAD))

        n.say("6. what the models refused: the five-column file (dropped with two good ones) and the training set")
        n.say("   with a typo")
        failed_key = "rejected/churn/2026-12/bad rows.csv.json"
        mates = ["predictions/" + k[len("incoming/") :] + ".report.json" for k in BATCH_MATES]
        sandbox.wait_for(
            lambda: (
                failed_key in _keys(s3, bucket, "rejected/churn/2026-12/")
                and all(m in _keys(s3, bucket, "predictions/churn/2026-12/") for m in mates)
            ),
            timeout=60,
        )
        report = _json(s3, bucket, failed_key)
        n.say(f"   {failed_key}: {report['code']}: {report['reason']}")
        refused_ok = (
            report["code"] == "JOB_FAILED"
            and "ClientError" in report["reason"]
            and "returned 400" in report["reason"]
            and "expects 4" in report["reason"]
            and not any(k.rsplit("/", 1)[1] in report["reason"] for k in BATCH_MATES)
        )
        n.check("the job the model refused failed with the model's own 400 message (JOB_FAILED)", refused_ok)
        mates_ok = True
        for key, rows in BATCH_MATES.items():
            out_key = "predictions/" + key[len("incoming/") :] + ".out"
            lines = s3.get_object(Bucket=bucket, Key=out_key)["Body"].read().decode().splitlines()
            mates_ok = mates_ok and lines == [str(int(p)) for p in estimator.predict(rows)]
            n.say(f"   {out_key}: {len(lines)} lines, = v1's model.predict: {mates_ok}")
        isolated = sorted(k for k in _keys(s3, bucket, "rejected/churn/2026-12/"))
        n.check(
            "the bad file was isolated: its job split until it ran alone, rejected with its own reason, while the "
            "two files dropped with it were predicted (every line = model.predict) and not rejected",
            refused_ok and mates_ok and isolated == [failed_key],
        )
        training_rejected = "rejected/" + BAD_TRAINING + ".json"
        sandbox.wait_for(lambda: training_rejected in _keys(s3, bucket, "rejected/training/"), timeout=60)
        report = _json(s3, bucket, training_rejected)
        n.say(f"   {training_rejected}: {report['code']}: {report['reason']}")
        reason = report["reason"]
        typo_ok = report["code"] == "TRAINING_FAILED" and "AlgorithmError" in reason and "three" in reason
        n.check("the training set with a typo was rejected with the trainer's AlgorithmError", typo_ok)
        n.result(
            "refusals",
            "5-column file: isolated, JOB_FAILED (model 400), its 2 batch-mates predicted; typo: TRAINING_FAILED "
            "(AlgorithmError)",
            refused_ok and mates_ok and typo_ok,
        )
        read = _versions_read(s3, bucket, sm)
        dropped = len(GOOD_ROWS) + 1 + len(BATCH_MATES)
        n.check(
            f"no file in two jobs: each of the {dropped} files dropped (every event delivered twice) read by exactly "
            "one job that ran to its end (a split job hands its files on)",
            sorted(set(read)) == sorted(read) and len(read) == dropped,
        )
        n.mark("batch half checked")

        run_rollout_scenario(sandbox, n, first_step=7, v1_url=v1_url, train_version=train_version, traffic=traffic)
        assert sandbox.lambdas is not None
        n.say("what the functions did (one line per invocation, the last 25):")
        for _, function, what in sandbox.lambdas.timeline[-25:]:
            n.say(f"   {function}: {what[:150]}")
        n.say(f"function and model server logs are in {sandbox.log_dir}")

    n.print_summary()
    failed = [what for what, ok in n.checks if not ok]
    print(f"\n{len(n.checks) - len(failed)} passed, {len(failed)} failed, in {n.now():.0f} s")
    return 1 if failed else 0
