"""A model's container Environment honoured (sandbox/containers.py, modelservers): SAGEMAKER_PROGRAM from a
SAGEMAKER_SUBMIT_DIRECTORY sourcedir.tar.gz in S3, as the scikit-learn container runs an SDK model's
`entry_point` / `source_dir`, instead of the artifact's own code/inference.py."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from sagepilot_model_server.examples import feature_rows, to_csv
from sagepilot_sandbox.sagemaker import transform
from sagepilot_sandbox.sagemaker.containers import resolve_container
from sagepilot_sandbox.sagemaker.modelservers import ModelServers

from . import test_sandbox_transform as base
from .test_sandbox_transform import BUCKET, ROLE, World, predicted

archives, servers, world = base.archives, base.servers, base.world  # the same fixtures

ENTRY = b"""
import joblib, os
from entry_point_helpers_for_sagepilot_test import flip


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(data, model):
    return [flip(int(p)) for p in model.predict(data)]
"""


def sourcedir() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in (
            ("entry.py", ENTRY),
            ("entry_point_helpers_for_sagepilot_test.py", b"def flip(x):\n    return 1 - x\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def model_with_entry_point(world: World, name: str, environment: dict[str, str]) -> str:
    url = world.put(f"models/{name}/model.tar.gz", world.archives.v1.read_bytes())
    world.sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "img", "ModelDataUrl": url, "Environment": environment},
    )
    return name


def transform_job(world: World, model: str) -> str:
    world.sm.create_transform_job(
        TransformJobName="j1",
        ModelName=model,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in/a.csv"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/out/", "AssembleWith": "Line", "Accept": "text/csv"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    return "j1"


ENVIRONMENT = {"SAGEMAKER_PROGRAM": "entry.py", "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/code/sourcedir.tar.gz"}


def test_a_transform_job_runs_the_entry_point_from_the_submitted_sources(world: World, servers: ModelServers) -> None:
    rows = feature_rows(6, seed=2)
    world.put("in/a.csv", to_csv(rows).encode())
    world.put("code/sourcedir.tar.gz", sourcedir())

    result = transform.run_transform_job(
        transform_job(world, model_with_entry_point(world, "m1", ENVIRONMENT)), servers
    )

    assert (result.status, result.failure_reason) == ("Completed", "")
    flipped = [str(1 - int(p)) for p in predicted(world.archives.v1, rows)]
    assert world.lines("out/a.csv.out") == flipped  # the user's predict_fn, not the artifact's code/inference.py


def test_missing_sources_fail_the_job_instead_of_falling_back(world: World, servers: ModelServers) -> None:
    world.put("in/a.csv", to_csv(feature_rows(2, seed=2)).encode())
    result = transform.run_transform_job(
        transform_job(world, model_with_entry_point(world, "m1", ENVIRONMENT)), servers
    )
    assert result.status == "Failed"
    assert f"s3://{BUCKET}/code/sourcedir.tar.gz (SAGEMAKER_SUBMIT_DIRECTORY)" in result.failure_reason


@pytest.mark.parametrize("isolation", ["process"])
def test_a_model_server_process_gets_the_containers_environment(world: World, isolation: Any) -> None:
    rows = feature_rows(4, seed=3)
    world.put("code/sourcedir.tar.gz", sourcedir())
    container = resolve_container(model_with_entry_point(world, "m1", ENVIRONMENT))
    plain = resolve_container(model_with_entry_point(world, "m2", {}))
    running = ModelServers(isolation=isolation)
    try:
        custom = running.invoke(
            container.model_data_url, to_csv(rows).encode(), "text/csv", "text/csv", environment=container.environment
        )
        default = running.invoke(
            plain.model_data_url, to_csv(rows).encode(), "text/csv", "text/csv", environment=plain.environment
        )
    finally:
        running.stop()
    expected = predicted(world.archives.v1, rows)
    assert default.body.decode().splitlines() == expected
    assert custom.body.decode().splitlines() == [str(1 - int(p)) for p in expected]
