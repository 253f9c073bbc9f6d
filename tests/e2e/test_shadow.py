"""Shadow tests (issue 18) through the running sandbox, driven by the real aws CLI and real invocations: a group
with `sagepilot:strategy` `shadow` gets each candidate first as the endpoint's shadow variant; a candidate failing
a quarter of its requests is rolled back by the gate on the copies it answered, and no caller ever gets one of
its failures; a good one passes its shadow test, then its canary, and serves alone. Every call the functions make
is allowed by the template's IAM."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepilot_sandbox.server import Sandbox

from .conftest import started_sandbox
from .iam_calls import assert_calls_allowed
from .test_rollout_evidence import shares, status_of
from .test_rollout_scenarios import sagepilot
from .test_sandbox_scenarios import aws, upload_example_model

pytestmark = pytest.mark.e2e
GROUP, ENDPOINT = "shadowed", "sagepilot-shadowed"


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
    return str(
        aws(
            sandbox, "sagemaker", "create-model-package", "--model-package-group-name", GROUP,
            "--inference-specification", json.dumps(spec), "--model-approval-status", "Approved",
        )["ModelPackageArn"]
    )  # fmt: skip


class Callers:
    """Four clients calling the endpoint until stopped, counting the answers they got from each variant and the
    model errors they saw."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._runtime = sandbox.client("sagemaker-runtime")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.answered: dict[str, int] = {}
        self.model_errors = 0
        self._threads = [threading.Thread(target=self._call, daemon=True) for _ in range(4)]

    def _call(self) -> None:
        rows = ["0.1,0.9,0.5,0.3", "0.7,0.2,0.4,0.9", "0.5,0.5,0.5,0.5", "0.9,0.1,0.8,0.2"]
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                answer = self._runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=rows[i % 4])
            except ClientError as exc:
                with self._lock:
                    self.model_errors += exc.response["Error"]["Code"] == "ModelError"
                continue
            with self._lock:
                variant = answer["InvokedProductionVariant"]
                self.answered[variant] = self.answered.get(variant, 0) + 1

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def described(sandbox: Sandbox) -> dict[str, Any]:
    return dict(aws(sandbox, "sagemaker", "describe-endpoint", "--endpoint-name", ENDPOINT))


def test_shadow_tests_roll_back_a_bad_candidate_unseen_and_promote_a_good_one(sandbox: Sandbox) -> None:
    tags = {
        "strategy": "shadow", "shadow-percent": "100", "canary-steps": "50,100", "bake-seconds": "4",
        "max-bake-seconds": "600", "min-invocations": "50", "error-margin": "0.05", "alarm-5xx-threshold": "1000000",
    }  # fmt: skip
    sandbox.client("sagemaker").create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": f"sagepilot:{k}", "Value": v} for k, v in tags.items()]
    )
    approve(sandbox, "v1", seed=1)
    sandbox.wait_for(lambda: shares(sandbox, ENDPOINT) == {"v1": 1.0}, timeout=60)
    with Callers(sandbox) as callers:
        bad = approve(sandbox, "v2", seed=2, broken_share=0.25)
        sandbox.wait_for(
            lambda: [v["VariantName"] for v in described(sandbox).get("ShadowProductionVariants", [])] == ["v2"],
            timeout=60,
        )
        found = described(sandbox)
        assert [v["VariantName"] for v in found["ProductionVariants"]] == ["v1"]
        sandbox.wait_for(lambda: status_of(sandbox, bad) == "Rejected", timeout=120)
        sandbox.wait_for(lambda: "ShadowProductionVariants" not in described(sandbox), timeout=60)
        assert shares(sandbox, ENDPOINT) == {"v1": 1.0}
        assert callers.model_errors == 0 and set(callers.answered) == {"v1"}  # no caller ever saw v2
        description = aws(sandbox, "sagemaker", "describe-model-package", "--model-package-name", bad)[
            "ApprovalDescription"
        ]
        assert "canary analysis: v2 is worse than v1 on errors" in description

        approve(sandbox, "v3", seed=3)
        # The gate moves a step on as soon as the evidence says "not worse" (before the bake): with four callers
        # the 50% step can last a second, too short to poll for. Its order is read from the history instead.
        sandbox.wait_for(lambda: shares(sandbox, ENDPOINT) == {"v3": 1.0}, timeout=240)
    history = sagepilot(sandbox, "history", ENDPOINT).stdout
    v3 = history[history.index("v3 approved") :]
    order = ["shadow test beside v1", "v3 not worse than stable", "canary at 50% beside v1", "shifting to 100%"]
    at = [v3.find(line) for line in order]
    assert -1 not in at and at == sorted(at), v3
    assert "v3 serves all traffic (was v1)" in v3


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    assert_calls_allowed(
        sandbox,
        min_pairs=10,
        expected=[
            ("RolloutFunction", "sagemaker.CreateEndpointConfig"),
            ("RolloutFunction", "cloudwatch.GetMetricData"),
        ],
    )
