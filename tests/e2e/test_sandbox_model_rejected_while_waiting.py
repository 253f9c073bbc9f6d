"""Issue 16, point 3, through the running sandbox with the real aws CLI: the runbook says to reject a broken
model to stop its use. A job that waits for its group's slot (MaxConcurrentJobsPerGroup 1) while its model
version is rejected starts on the group's newest Approved version, never on the rejected one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepilot_sandbox.server import Sandbox

from .conftest import started_sandbox
from .iam_calls import assert_calls_allowed
from .test_sandbox_scenarios import _keys, approve_model, aws, jobs_of, read_json, upload_example_model

pytestmark = pytest.mark.e2e
GROUP = "slow"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Transform jobs take 12 s: long enough to reject a model while the second job waits for the slot."""
    overrides = {"MaxConcurrentJobsPerGroup": "1", "MaxFilesPerJob": "1"}
    with started_sandbox(tmp_path_factory, overrides=overrides, run_seconds=12.0) as running:
        yield running


def versions(sandbox: Sandbox) -> list[dict[str, object]]:
    listed = aws(sandbox, "sagemaker", "list-model-packages", "--model-package-group-name", GROUP)
    return sorted(listed["ModelPackageSummaryList"], key=lambda p: int(str(p["ModelPackageVersion"])))


def test_a_job_waiting_for_its_slot_starts_on_the_newest_approved_version(sandbox: Sandbox, tmp_path: Path) -> None:
    approve_model(sandbox, GROUP)
    [v1] = versions(sandbox)
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    for name in ("a.csv", "b.csv"):
        local = tmp_path / name
        local.write_text("34,80.5,2,10\n")
        aws(sandbox, "s3", "cp", str(local), f"s3://{bucket}/incoming/{GROUP}/day/{name}")
    sandbox.wait_for(lambda: len(jobs_of(sandbox, GROUP)) == 1, timeout=30)  # one runs, one waits for the slot
    aws(sandbox, "sagemaker", "update-model-package", "--model-package-arn", str(v1["ModelPackageArn"]),
        "--model-approval-status", "Rejected")  # fmt: skip
    artifact = upload_example_model(sandbox, f"models/{GROUP}/v2/model.tar.gz", seed=2)
    spec = {
        "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:2", "ModelDataUrl": artifact}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    aws(sandbox, "sagemaker", "create-model-package", "--model-package-group-name", GROUP,
        "--model-approval-status", "Approved", "--inference-specification", json.dumps(spec))  # fmt: skip
    reports = [f"predictions/{GROUP}/day/{n}.report.json" for n in ("a.csv", "b.csv")]
    sandbox.wait_for(lambda: all(k in _keys(sandbox, f"predictions/{GROUP}/") for k in reports), timeout=90)
    used = sorted(int(read_json(sandbox, k)["modelPackageVersion"]) for k in reports)
    assert used == [1, 2]  # the first ran before the rejection; the one that waited did not start on v1
    assert _keys(sandbox, f"rejected/{GROUP}/") == []


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    assert_calls_allowed(sandbox, min_pairs=5)
