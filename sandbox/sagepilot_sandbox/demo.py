"""The main scenario, step by step, on the sandbox; it checks its own outcome (exit status 0 or 1).

Register a model package group with an Approved version (and a newer one still pending), drop a few
files (some good, some bad), and watch the control plane: the intake batches them into transform
jobs with manifests, SageMaker runs them, the completion writes reports, the bad files get rejection
reports beside them; then a job that SageMaker fails, and its rejection reports.
"""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

from sagepilot_sandbox.demo_rollout import run_rollout_scenario
from sagepilot_sandbox.server import Sandbox, free_port

GROUP = "churn"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-xgboost:1"
GOOD = {
    "incoming/churn/2026-11/customers.csv": b"age,tenure,spend\n34,12,56.1\n51,3,12.0\n27,40,88.5\n",
    "incoming/churn/2026-11/customers east+west ü.csv": b"age,tenure,spend\n45,7,19.9\n",
    "incoming/churn/2026-11/events.jsonl.gz": gzip.compress(b'{"age": 30, "tenure": 5}\n{"age": 62, "tenure": 1}\n'),
}
BAD = {
    "incoming/churn/2026-11/notes.txt": (b"not data", "UNSUPPORTED_FILE_TYPE"),
    "incoming/churn/2026-11/empty.csv": (b"", "EMPTY_FILE"),
    "incoming/fraud/2026-11/transactions.csv": (b"amount\n12.5\n", "MODEL_GROUP_NOT_FOUND"),
}
FAILING = "incoming/churn/2026-12/bad rows.csv"
SAGEMAKER_FAILURE = "ClientError: See job logs for more information: row 2 has 4 columns, the model expects 3"


class Narrator:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.checks: list[tuple[str, bool]] = []

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def check(self, what: str, ok: bool) -> None:
        self.checks.append((what, ok))
        print(f"         {'ok  ' if ok else 'FAIL'} {what}", flush=True)


def _json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def run_demo(port: int = 0) -> int:
    n = Narrator()
    with Sandbox(port=port or free_port(), s3_event_copies=2, model_package_event_copies=2) as sandbox:
        stack = sandbox.stack
        assert stack is not None
        bucket = stack.outputs["DataBucketName"]
        s3, sm = sandbox.client("s3"), sandbox.client("sagemaker")
        n.say(f"sandbox up: embedded AWS on {sandbox.endpoint_url}; stack {stack.name} created from template.yaml")
        n.say(f"data bucket {bucket}; functions: {', '.join(stack.functions)}")
        n.say("every S3 event is delivered TWICE on purpose (at-least-once delivery); watch for duplicate jobs")

        n.say(f"1. register model package group {GROUP!r}: v1 Approved, v2 PendingManualApproval")
        sm.create_model_package_group(ModelPackageGroupName=GROUP, ModelPackageGroupDescription="churn classifier")
        for status in ("Approved", "PendingManualApproval"):
            sm.create_model_package(
                ModelPackageGroupName=GROUP,
                ModelApprovalStatus=status,
                InferenceSpecification={
                    "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/models/churn/model.tar.gz"}],
                    "SupportedContentTypes": ["text/csv", "application/jsonlines"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
            )

        n.say("2. drop files under incoming/ (3 good, 3 bad)")
        for key, body in GOOD.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            n.say(f"   put s3://{bucket}/{key}")
        for key, (body, _) in BAD.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            n.say(f"   put s3://{bucket}/{key}   (bad)")

        n.say("3. the intake gathers the burst for the batching window, then plans and starts jobs")
        jobs = sandbox.wait_for(
            lambda: (
                [
                    j
                    for j in sm.list_transform_jobs()["TransformJobSummaries"]
                    if j["TransformJobName"].startswith("sagepilot-") and len(sandbox.simulator.finished) >= 2
                ]
                or None
            ),
            timeout=60,
        )
        for summary in sorted(jobs, key=lambda j: j["TransformJobName"]):
            job = sm.describe_transform_job(TransformJobName=summary["TransformJobName"])
            manifest_uri = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
            manifest = _json(s3, bucket, manifest_uri.split("/", 3)[3])
            n.say(
                f"   job {job['TransformJobName']}: model {job['ModelName']}, "
                f"{job['TransformInput']['ContentType']} ({job['TransformInput']['CompressionType']}), "
                f"{job['TransformResources']['InstanceCount']} x {job['TransformResources']['InstanceType']}"
            )
            n.say(f"       manifest {manifest_uri}: {manifest[1:]}")
        n.check(
            "3 good files -> 2 jobs (CSV and gzipped JSON Lines), despite every event arriving twice", len(jobs) == 2
        )

        n.say(
            "4. SageMaker runs the jobs (simulated: state changes and events only, predictions are NOT "
            "computed locally yet) and the completion function writes reports"
        )
        reports = sandbox.wait_for(
            lambda: (
                [k for k in _keys(s3, bucket, "predictions/") if k.endswith(".report.json")]
                if len(_keys(s3, bucket, "predictions/")) >= 3
                else None
            ),
            timeout=60,
        )
        for key in reports:
            report = _json(s3, bucket, key)
            n.say(
                f"   {key}: {report['status']}, job {report['transformJobName']}, "
                f"model package v{report['modelPackageVersion']}, predictions -> {report['predictions']}"
            )
        n.check(
            "a report for each good file, naming model package version 1 (the Approved one)",
            len(reports) == 3 and all(_json(s3, bucket, k)["modelPackageVersion"] == 1 for k in reports),
        )

        n.say("5. the bad files stay where they are, with a reason beside them")
        rejected = sandbox.wait_for(lambda: (r := _keys(s3, bucket, "rejected/")) and len(r) >= 3 and r, timeout=30)
        for key in rejected:
            report = _json(s3, bucket, key)
            n.say(f"   {key}: {report['code']}: {report['reason']}")
        codes = {_json(s3, bucket, k)["input"]["key"]: _json(s3, bucket, k)["code"] for k in rejected}
        n.check(
            "each bad file has its rejection report with the right code",
            codes == {key: code for key, (_, code) in BAD.items()},
        )
        n.check("the bad files are still in incoming/", all(k in _keys(s3, bucket, "incoming/") for k in BAD))

        n.say(f"6. a job that SageMaker fails: drop {FAILING!r}; SageMaker will say {SAGEMAKER_FAILURE!r}")
        sandbox.simulator.fail_next(SAGEMAKER_FAILURE)
        s3.put_object(Bucket=bucket, Key=FAILING, Body=b"age,tenure,spend\n1,2,3,4\n")
        failed_key = "rejected/churn/2026-12/bad rows.csv.json"
        sandbox.wait_for(lambda: failed_key in _keys(s3, bucket, "rejected/churn/2026-12/"), timeout=60)
        report = _json(s3, bucket, failed_key)
        n.say(f"   {failed_key}: {report['code']}: {report['reason']}")
        n.check(
            "the failed job's input has a JOB_FAILED report with SageMaker's reason",
            report["code"] == "JOB_FAILED" and SAGEMAKER_FAILURE in report["reason"],
        )

        all_jobs = sm.list_transform_jobs()["TransformJobSummaries"]
        n.check("no file in two jobs: 3 jobs in all for 4 good drops delivered twice each", len(all_jobs) == 3)

        run_rollout_scenario(sandbox, n, first_step=7)
        assert sandbox.lambdas is not None
        n.say("what the functions did (one line per invocation):")
        for _, function, what in sandbox.lambdas.timeline:
            n.say(f"   {function}: {what[:150]}")
        n.say(f"function logs are in {sandbox.log_dir}")

    failed = [what for what, ok in n.checks if not ok]
    print(f"\n{len(n.checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
