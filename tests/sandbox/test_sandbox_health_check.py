"""SageMaker's start-up health check in the sandbox (simulator.py, modelservers.py, endpoints.py): a variant's
container must answer /ping 200, model loaded, within the start-up window. A model that cannot load (or loads
too late) fails a new endpoint (`Creating -> Failed` with SageMaker's FailureReason) and leaves an updated one
InService on its previous config with that reason, with the state-change events SageMaker emits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sagepilot_model_server.examples import build_example_model, feature_rows, to_csv
from sagepilot_sandbox import faithful
from sagepilot_sandbox.sagemaker.simulator import SageMakerSimulator

from .test_sandbox_endpoints import EventTap
from .test_sandbox_transform import BUCKET, ROLE, client

WINDOW = 4.0  # the start-up window of these tests, in sandbox seconds


def health_reason(variant: str) -> str:
    return (
        f"The primary container for production variant {variant} did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )


@dataclass(frozen=True)
class Models:
    good: Path
    fails_to_load: Path
    slow_within: Path  # healthy after 1 s: inside the window
    slow_beyond: Path  # healthy after 30 s: beyond it


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("health-models")
    return Models(
        good=build_example_model(root / "good", seed=1, version="good"),
        fails_to_load=build_example_model(root / "bad", seed=1, version="bad", fail_on_load=True),
        slow_within=build_example_model(root / "slow1", seed=1, version="slow1", load_delay_seconds=1.0),
        slow_beyond=build_example_model(root / "slow30", seed=1, version="slow30", load_delay_seconds=30.0),
    )


@pytest.fixture
def sm(aws: None) -> Iterator[Any]:
    client("s3").create_bucket(Bucket=BUCKET)
    simulator = SageMakerSimulator(endpoint_seconds=0.2, model_isolation="thread", health_check_seconds=WINDOW)
    simulator.attach()
    yield client("sagemaker")
    simulator.detach()
    faithful.clear_listeners()


@pytest.fixture
def tap(sm: Any) -> EventTap:
    return EventTap({"source": ["aws.sagemaker"], "detail-type": ["SageMaker Endpoint State Change"]})


def model(sm: Any, name: str, archive: Path) -> str:
    key = f"models/{name}/model.tar.gz"
    client("s3").put_object(Bucket=BUCKET, Key=key, Body=archive.read_bytes())
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/{key}"},
    )
    return name


def config(sm: Any, name: str, *variants: tuple[str, str]) -> str:
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": v, "ModelName": m, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
            for v, m in variants
        ],
    )
    return name


def settled(sm: Any, name: str, seconds: float = 45.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        found = sm.describe_endpoint(EndpointName=name)
        if found["EndpointStatus"] not in ("Creating", "Updating") or time.monotonic() > deadline:
            return dict(found)
        time.sleep(0.05)


def statuses(tap: EventTap) -> list[tuple[str, str]]:
    return [(e["detail"]["EndpointStatus"], e["detail"].get("FailureReason", "")) for e in tap.events()]


def test_a_model_that_cannot_load_fails_the_new_endpoint_with_sagemakers_reason(
    sm: Any, tap: EventTap, models: Models
) -> None:
    config(sm, "c-bad", ("AllTraffic", model(sm, "m-bad", models.fails_to_load)))
    sm.create_endpoint(EndpointName="ep-bad", EndpointConfigName="c-bad")

    found = settled(sm, "ep-bad")

    assert found["EndpointStatus"] == "Failed"
    assert found["FailureReason"] == health_reason("AllTraffic")
    assert statuses(tap) == [("Creating", ""), ("Failed", health_reason("AllTraffic"))]


def test_a_model_slower_than_the_window_fails_and_one_within_it_serves(sm: Any, models: Models) -> None:
    config(sm, "c-slow30", ("v1", model(sm, "m-slow30", models.slow_beyond)))
    config(sm, "c-slow1", ("v1", model(sm, "m-slow1", models.slow_within)))
    sm.create_endpoint(EndpointName="ep-slow30", EndpointConfigName="c-slow30")
    sm.create_endpoint(EndpointName="ep-slow1", EndpointConfigName="c-slow1")

    late, in_time = settled(sm, "ep-slow30"), settled(sm, "ep-slow1")

    assert (late["EndpointStatus"], late["FailureReason"]) == ("Failed", health_reason("v1"))
    assert in_time["EndpointStatus"] == "InService" and "FailureReason" not in in_time
    answer = client("sagemaker-runtime").invoke_endpoint(
        EndpointName="ep-slow1", Body=to_csv(feature_rows(2, seed=1)).encode(), ContentType="text/csv"
    )
    assert len(answer["Body"].read().decode().splitlines()) == 2


def test_an_update_whose_new_variant_cannot_start_leaves_the_old_config_in_service(
    sm: Any, tap: EventTap, models: Models
) -> None:
    good, bad = model(sm, "m-good", models.good), model(sm, "m-bad2", models.fails_to_load)
    config(sm, "c-1", ("v1", good))
    config(sm, "c-2", ("v1", good), ("v2", bad))
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c-1")
    assert settled(sm, "ep")["EndpointStatus"] == "InService"
    tap.events()

    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c-2")
    found = settled(sm, "ep")

    assert found["EndpointStatus"] == "InService"
    assert found["EndpointConfigName"] == "c-1"
    assert [v["VariantName"] for v in found["ProductionVariants"]] == ["v1"]
    assert found["FailureReason"] == health_reason("v2")
    assert "PendingDeploymentSummary" not in found
    assert statuses(tap) == [("Updating", ""), ("InService", health_reason("v2"))]
    answer = client("sagemaker-runtime").invoke_endpoint(
        EndpointName="ep", Body=to_csv(feature_rows(1, seed=1)).encode(), ContentType="text/csv"
    )
    assert answer["InvokedProductionVariant"] == "v1"

    # A later good update goes through and clears the reason.
    config(sm, "c-3", ("v1", good), ("v3", model(sm, "m-good3", models.good)))
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c-3")
    fixed = settled(sm, "ep")
    assert (fixed["EndpointStatus"], fixed["EndpointConfigName"]) == ("InService", "c-3")
    assert "FailureReason" not in fixed


def test_an_artifact_the_models_role_may_not_read_fails_the_new_endpoint_with_the_download_failure(
    sm: Any, models: Models
) -> None:
    """SageMaker downloads the artifact as the model's execution role: a role that may not read it fails the
    endpoint (not an InService endpoint whose requests fail)."""
    iam = client("iam")
    assume = {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
    read_models = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/models/*"}
    trust = {"Version": "2012-10-17", "Statement": [assume]}
    only_models = {"Version": "2012-10-17", "Statement": [read_models]}
    role = iam.create_role(RoleName="models-only", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="models-only", PolicyName="s3", PolicyDocument=json.dumps(only_models))
    for name, key in (("m-allowed", "models/ok/model.tar.gz"), ("m-denied", "data/model.tar.gz")):
        client("s3").put_object(Bucket=BUCKET, Key=key, Body=models.good.read_bytes())
        sm.create_model(
            ModelName=name,
            ExecutionRoleArn=role,
            PrimaryContainer={"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/{key}"},
        )
    config(sm, "c-allowed", ("v1", "m-allowed"))
    config(sm, "c-denied", ("v1", "m-denied"))
    sm.create_endpoint(EndpointName="ep-allowed", EndpointConfigName="c-allowed")
    sm.create_endpoint(EndpointName="ep-denied", EndpointConfigName="c-denied")

    allowed, denied = settled(sm, "ep-allowed"), settled(sm, "ep-denied")

    assert allowed["EndpointStatus"] == "InService"
    assert denied["EndpointStatus"] == "Failed"
    assert denied["FailureReason"].startswith(
        f'Failed to download model data for container "container_1" from URL: "s3://{BUCKET}/data/model.tar.gz".'
    )
