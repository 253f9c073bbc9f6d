"""Issue 16 point 9 for inference, through the running sandbox with the real aws CLI: a model package
version whose inference image is outside the stack's ImageRepositoriesAllowed (default: this account's
registry in this region and SageMaker's XGBoost repository) never serves and never scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagepilot_sandbox.server import Sandbox

from .iam_calls import assert_calls_allowed
from .test_sandbox_scenarios import _keys, aws, jobs_of, read_json

pytestmark = pytest.mark.e2e
FOREIGN = "999999999999.dkr.ecr.us-east-1.amazonaws.com/miner:1"  # another account's registry


def register_foreign(sandbox: Sandbox, group: str, *tags: str) -> str:
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", group, *tags)
    spec = {
        "Containers": [{"Image": FOREIGN, "ModelDataUrl": "s3://elsewhere/model.tar.gz"}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    created = aws(sandbox, "sagemaker", "create-model-package", "--model-package-group-name", group,
                  "--model-approval-status", "Approved", "--inference-specification", json.dumps(spec))  # fmt: skip
    return str(created["ModelPackageArn"])


def test_an_approval_with_a_foreign_image_deploys_nothing_and_is_marked_rejected(sandbox: Sandbox) -> None:
    arn = register_foreign(sandbox, "imgroll")

    def described() -> dict[str, object]:
        return dict(aws(sandbox, "sagemaker", "describe-model-package", "--model-package-name", arn))

    sandbox.wait_for(lambda: described()["ModelApprovalStatus"] == "Rejected", timeout=30)
    description = str(described()["ApprovalDescription"])
    assert FOREIGN in description and "ImageRepositoriesAllowed" in description
    endpoints = aws(sandbox, "sagemaker", "list-endpoints")["Endpoints"]
    assert not any(e["EndpointName"].endswith("-imgroll") for e in endpoints)


def test_a_file_for_a_group_whose_model_has_a_foreign_image_is_rejected_in_place(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # sagepilot:deploy false: the rollout leaves the version Approved, so the batch side is what refuses it.
    register_foreign(sandbox, "imgbatch", "--tags", "Key=sagepilot:deploy,Value=false")
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]
    local = tmp_path / "a.csv"
    local.write_text("34,80.5,2,10\n")
    aws(sandbox, "s3", "cp", str(local), f"s3://{bucket}/incoming/imgbatch/a.csv")
    rejected = "rejected/imgbatch/a.csv.json"
    sandbox.wait_for(lambda: rejected in _keys(sandbox, "rejected/imgbatch/"), timeout=30)
    report = read_json(sandbox, rejected)
    assert report["code"] == "MODEL_IMAGE_NOT_ALLOWED" and FOREIGN in report["reason"]
    assert "incoming/imgbatch/a.csv" in _keys(sandbox, "incoming/imgbatch/")
    assert jobs_of(sandbox, "imgbatch") == []


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    assert_calls_allowed(sandbox, min_pairs=5)
