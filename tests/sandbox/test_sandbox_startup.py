"""Start-up takes time (SageMakerSimulator.startup_seconds / SAGEPILOT_SANDBOX_STARTUP_SECONDS): a transform
job reads its inputs when its instances have started, not when it was created, so an overwrite or a
deletion during start-up is seen by the job, as in AWS."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sagepilot_model_server.examples import feature_rows, to_csv
from sagepilot_sandbox import faithful
from sagepilot_sandbox.sagemaker.simulator import STARTUP_ENV, SageMakerSimulator

from . import test_sandbox_transform as base
from .test_sandbox_transform import BUCKET, World, predicted

archives, world = base.archives, base.world  # the same fixtures
STARTUP = 1.0


@pytest.fixture
def simulator(world: World) -> Iterator[SageMakerSimulator]:
    simulator = SageMakerSimulator(run_seconds=0.1, model_isolation="thread", startup_seconds=STARTUP)
    simulator.attach()
    yield simulator
    simulator.detach()
    faithful.clear_listeners()


def run(world: World, simulator: SageMakerSimulator, during_startup: object) -> dict[str, str]:
    model = world.model("m1", world.archives.v1)
    source = world.manifest("jobs/m.json", "incoming/", ["a.csv"])
    created = time.monotonic()
    world.job("j1", model, source)
    assert world.sm.describe_transform_job(TransformJobName="j1")["TransformJobStatus"] == "InProgress"
    during_startup()  # type: ignore[operator]
    assert time.monotonic() - created < STARTUP, "the test's change came after the start-up"
    deadline = time.monotonic() + 30
    while "j1" not in simulator.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert time.monotonic() - created >= STARTUP
    return world.sm.describe_transform_job(TransformJobName="j1")


def test_a_job_reads_the_content_its_keys_hold_when_it_starts(world: World, simulator: SageMakerSimulator) -> None:
    at_creation, at_start = feature_rows(3, seed=1), feature_rows(5, seed=2)
    world.put("incoming/a.csv", to_csv(at_creation).encode())

    job = run(world, simulator, lambda: world.put("incoming/a.csv", to_csv(at_start).encode()))

    assert job["TransformJobStatus"] == "Completed"
    assert world.lines("out/a.csv.out") == predicted(world.archives.v1, at_start)


def test_a_key_deleted_during_start_up_fails_the_job(world: World, simulator: SageMakerSimulator) -> None:
    world.put("incoming/a.csv", to_csv(feature_rows(3, seed=1)).encode())

    job = run(world, simulator, lambda: world.s3.delete_object(Bucket=BUCKET, Key="incoming/a.csv"))

    assert job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"] == f"ClientError: Failed to download data. s3://{BUCKET}/incoming/a.csv does not exist."


def test_the_delay_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STARTUP_ENV, "2.5")
    assert SageMakerSimulator().startup_seconds == 2.5
    monkeypatch.delenv(STARTUP_ENV)
    assert SageMakerSimulator().startup_seconds == 0.0
