"""The role SageMaker runs every job and endpoint with (template.yaml's SageMakerExecutionRole), evaluated
as CloudFormation would with the default parameters: what a container of any group may write and pull.

All groups share this role, so its writes are scoped to where SageMaker itself writes for this stack's
jobs (never config/, training/, incoming/, predictions/ or reports), and its image pulls to the default
ImageRepositoriesAllowed: this account's registry in the region and SageMaker's XGBoost repository."""

from __future__ import annotations

from typing import Any

import pytest

from sagepilot_sandbox.stack.template import Resolver, load_template, parameter_values

from .conftest import ROOT

BUCKET_ARN = "arn:aws:s3:::sagepilot-databucket"


def role_statements(overrides: dict[str, str]) -> dict[str, dict[str, Any]]:
    template = load_template(ROOT / "template.yaml")
    resolver = Resolver(template, "sagepilot", parameter_values(template, overrides))
    resolver.attributes[("DataBucket", "Arn")] = BUCKET_ARN
    [policy] = template["Resources"]["SageMakerExecutionRole"]["Properties"]["Policies"]
    statements = resolver.resolve(policy["PolicyDocument"]["Statement"])
    return {s["Sid"]: s for s in statements}


def as_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def test_sagemaker_writes_only_this_stacks_job_outputs_models_and_checkpoints() -> None:
    writes = [s for s in role_statements({}).values() if any(a.startswith("s3:Put") for a in as_list(s["Action"]))]
    resources = sorted(r for s in writes for r in as_list(s["Resource"]))
    assert resources == [
        f"{BUCKET_ARN}/checkpoints/*/sagepilot-*/*",
        f"{BUCKET_ARN}/jobs/*/sagepilot-*/output/*",
        f"{BUCKET_ARN}/models/*/sagepilot-*/*",
    ]


def test_images_are_pulled_only_from_the_allowed_repositories_by_default() -> None:
    pulls = role_statements({})["PullImagesFromAllowedRepositories"]
    assert sorted(as_list(pulls["Resource"])) == [
        "arn:aws:ecr:us-east-1:123456789012:repository/*",
        "arn:aws:ecr:us-east-1:683313688378:repository/sagemaker-xgboost",
    ]


@pytest.mark.parametrize("repositories", ["123456789012.dkr.ecr.us-east-1.amazonaws.com/team-*"])
def test_an_operators_own_list_is_checked_by_the_functions(repositories: str) -> None:
    pulls = role_statements({"ImageRepositoriesAllowed": repositories})["PullImagesFromAllowedRepositories"]
    assert as_list(pulls["Resource"]) == ["arn:aws:ecr:*:*:repository/*"]
