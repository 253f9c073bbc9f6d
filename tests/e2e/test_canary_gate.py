"""Issue 18 through the running sandbox, driven by the real aws CLI and real invocations: the `ab` canary's
statistical gate rolls back a candidate whose few percent of failures no alarm sees, moves a good one on
before its bake, writes its report, and `sagepilot report` shows it; every call is allowed by the
template's IAM (GetMetricData, the report's S3 objects)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from sagepilot_sandbox.server import Sandbox

from .conftest import started_sandbox
from .iam_calls import assert_calls_allowed
from .test_rollout_evidence import shares, status_of
from .test_rollout_scenarios import sagepilot
from .test_sandbox_scenarios import aws, upload_example_model

pytestmark = pytest.mark.e2e
GROUP, ENDPOINT = "gated", "sagepilot-gated"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with started_sandbox(tmp_path_factory, alarm_evaluation_seconds=0.5, alarm_time_scale=0.05) as running:
        yield running


def approve(sandbox: Sandbox, key: str, **options: object) -> str:
    url = upload_example_model(sandbox, f"models/{GROUP}/{key}/model.tar.gz", version=key, **options)
    spec = {
        "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-sklearn:1", "ModelDataUrl": url}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    arn = str(
        aws(
            sandbox, "sagemaker", "create-model-package", "--model-package-group-name", GROUP,
            "--inference-specification", json.dumps(spec), "--model-approval-status", "Approved",
        )["ModelPackageArn"]
    )  # fmt: skip
    return arn


class Clients:
    """Four clients calling the endpoint (one customer a request) until stopped."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._runtime = sandbox.client("sagemaker-runtime")
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._call, daemon=True) for _ in range(4)]

    def _call(self) -> None:
        rows = ["0.1,0.9,0.5,0.3", "0.7,0.2,0.4,0.9", "0.5,0.5,0.5,0.5", "0.9,0.1,0.8,0.2"]
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                self._runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=rows[i % 4])
            except ClientError:
                continue  # a ModelError (the candidate's failures) or the endpoint updating: keep calling

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def test_the_gate_rolls_back_a_subtly_worse_candidate_and_moves_a_good_one_on(sandbox: Sandbox, tmp_path: Path) -> None:
    tags = {
        "canary-steps": "50,100", "bake-seconds": "4", "max-bake-seconds": "600",
        "min-invocations": "50", "error-margin": "0.05", "alarm-5xx-threshold": "1000000",
    }  # fmt: skip (no sagepilot:analysis: the gate is on by default)
    # (the aws CLI's shorthand would read "50,100" as a list: the tags go in as the SDK sends them)
    sandbox.client("sagemaker").create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": f"sagepilot:{k}", "Value": v} for k, v in tags.items()]
    )
    approve(sandbox, "v1", seed=1)
    sandbox.wait_for(lambda: shares(sandbox, ENDPOINT) == {"v1": 1.0}, timeout=60)
    with Clients(sandbox):
        subtle = approve(sandbox, "v2", seed=2, broken_share=0.25)
        sandbox.wait_for(lambda: status_of(sandbox, subtle) == "Rejected", timeout=90)
        sandbox.wait_for(lambda: shares(sandbox, ENDPOINT) == {"v1": 1.0}, timeout=60)
        description = aws(sandbox, "sagemaker", "describe-model-package", "--model-package-name", subtle)[
            "ApprovalDescription"
        ]
        assert "canary analysis: v2 is worse than v1 on errors" in description
        page = tmp_path / "report.html"
        bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
        report = sagepilot(sandbox, "report", ENDPOINT, "--bucket", bucket, "--html", str(page))
        assert report.returncode == 0, report.stderr
        assert "WORSE" in report.stdout and "rolling back: canary analysis" in report.stdout
        assert "<svg" in page.read_text()

        started = time.monotonic()
        approve(sandbox, "v3", seed=3)
        sandbox.wait_for(lambda: (shares(sandbox, ENDPOINT) or {}).get("v3") == 0.5, timeout=60)
        sandbox.wait_for(lambda: shares(sandbox, ENDPOINT) == {"v1": 0.0, "v3": 1.0}, timeout=90)
        assert time.monotonic() - started < 600  # moved on by the gate, not by the 600-s longest bake
        sandbox.wait_for(lambda: shares(sandbox, ENDPOINT) == {"v3": 1.0}, timeout=60)
    history = sagepilot(sandbox, "history", ENDPOINT).stdout
    assert "canary analysis: v3 not worse than stable" in history


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    assert_calls_allowed(
        sandbox,
        min_pairs=10,
        expected=[
            ("RolloutFunction", "cloudwatch.GetMetricData"),
            ("RolloutFunction", "s3.GetObject"),
            ("RolloutFunction", "s3.PutObject"),
        ],
    )
