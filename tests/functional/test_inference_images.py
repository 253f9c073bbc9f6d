"""Issue 16 point 9 for inference: an image runs with the stack's SageMaker execution role, which reads and
writes every group's data, so only repositories the stack's ImageRepositoriesAllowed allows may provide
one. An Approved model package version whose inference image is elsewhere (another account, or, with the
operator's own list, a repository outside it) never serves on an endpoint and never scores a batch:

- the rollout neither creates an endpoint with it nor starts a canary/shadow of it: the live version
  keeps serving, the version is marked Rejected (the registry says why) and the user is told once
  (IMAGE NOT ALLOWED), however often the approval event is delivered and the schedule reconciles;
- files whose group's newest Approved version has such an image are rejected MODEL_IMAGE_NOT_ALLOWED and
  stay where they are, at intake and when a waiting job is about to start.
Everything runs through the template's rules and the functions' environment, as deployed."""

from __future__ import annotations

from typing import Any

import pytest

from sagepilot.events import parse_transform_job_change, queued_messages

from .conftest import ACCOUNT, REGION, FakeClock, Notifications, transform_jobs
from .test_rollout import ENDPOINT, GROUP, Rollout, deploy_v1, make_rollout

FOREIGN = "999999999999.dkr.ecr.us-east-1.amazonaws.com/miner:1"  # another account's registry
ALLOWED_TEAM = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team-a-*"  # an operator's own list


@pytest.fixture
def rollout(stack: Any, clients: Any, clock: FakeClock) -> Rollout:
    return make_rollout(stack, clients, clock)


def register_image(rollout: Rollout, image: str) -> str:
    return str(
        rollout.sm.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [{"Image": image, "ModelDataUrl": "s3://m/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
        )["ModelPackageArn"]
    )


def image_notices(notifications: Notifications) -> list[dict[str, Any]]:
    return [n for n in notifications.drain() if n["subject"].startswith("IMAGE NOT ALLOWED")]


# ------------------------------------------------------------------------------------------------- rollout
@pytest.mark.parametrize("strategy", ["ab", "shadow", "canary"])
def test_an_approved_version_with_a_foreign_image_never_reaches_the_endpoint(
    strategy: str, rollout: Rollout, notifications: Notifications
) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": "sagepilot:strategy", "Value": strategy}]
    )
    deploy_v1(rollout)
    notifications.drain()
    v2 = register_image(rollout, FOREIGN)
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0} and "ShadowProductionVariants" not in rollout.endpoint()
    assert not any("-v2-" in m["ModelName"] for m in rollout.sm.list_models()["Models"])
    package = rollout.sm.describe_model_package(ModelPackageName=v2)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert FOREIGN in package["ApprovalDescription"] and "ImageRepositoriesAllowed" in package["ApprovalDescription"]
    (notice,) = image_notices(notifications)
    assert notice["subject"] == f"IMAGE NOT ALLOWED: {GROUP} v2"
    assert notice["message"]["imagesNotAllowed"] == [FOREIGN] and notice["message"]["stable"] == 1
    assert "v1 keeps serving" in notice["message"]["what"]
    assert any(FOREIGN in h.what for h in rollout.state().history)

    # The approval event delivered again, and the schedule: nothing deployed, nothing said again.
    approvals = [e for e in rollout.delivered if e.get("detail", {}).get("ModelPackageArn") == v2]
    assert approvals
    for event in approvals:
        rollout.handle(event)
    rollout.tick()
    rollout.tick()
    assert rollout.shares() == {"v1": 1.0}
    assert image_notices(notifications) == []
    # A later version with an allowed image rolls out as usual.
    rollout.register()
    rollout.pump()
    assert "v3" in rollout.shares() or "v3" in {
        v["VariantName"] for v in rollout.endpoint().get("ShadowProductionVariants", [])
    }


def test_a_first_approval_with_a_foreign_image_creates_no_endpoint(
    rollout: Rollout, notifications: Notifications
) -> None:
    rollout.sm.create_model_package_group(ModelPackageGroupName=GROUP)
    v1 = register_image(rollout, FOREIGN)
    rollout.pump()
    assert rollout.sm.list_endpoints()["Endpoints"] == []
    assert rollout.sm.describe_model_package(ModelPackageName=v1)["ModelApprovalStatus"] == "Rejected"
    (notice,) = image_notices(notifications)
    assert "nothing is deployed" in notice["message"]["what"] and notice["message"]["endpoint"] == ENDPOINT
    rollout.tick()
    assert rollout.sm.list_endpoints()["Endpoints"] == [] and image_notices(notifications) == []


@pytest.mark.parametrize("stack_overrides", [{"ImageRepositoriesAllowed": ALLOWED_TEAM}])
def test_the_operators_own_list_is_the_one_checked(rollout: Rollout, notifications: Notifications) -> None:
    """With the operator's list, an image of this very account outside it is refused too, and one in it
    deploys."""
    rollout.sm.create_model_package_group(ModelPackageGroupName=GROUP)
    outside = register_image(rollout, f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/churn:1")
    rollout.pump()
    assert rollout.sm.list_endpoints()["Endpoints"] == []
    assert rollout.sm.describe_model_package(ModelPackageName=outside)["ModelApprovalStatus"] == "Rejected"
    (notice,) = image_notices(notifications)
    assert notice["message"]["allowed"] == [ALLOWED_TEAM]
    register_image(rollout, f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team-a-churn:2")
    rollout.pump()
    assert rollout.shares() == {"v2": 1.0}


# --------------------------------------------------------------------------------------------------- batch
def test_files_of_a_group_whose_newest_approved_version_has_a_foreign_image_are_rejected(
    data, registry, intake_queue, intake, jobs, sagemaker
) -> None:
    registry.register("churn")  # v1, allowed: older, so not the one the group serves now
    registry.register("churn", image=FOREIGN)  # v2, the newest Approved
    version = data.drop("incoming/churn/a.csv")
    outcome = intake.handle(queued_messages(intake_queue.receive()))
    assert outcome.jobs_started == [] and outcome.rejected_codes == {"MODEL_IMAGE_NOT_ALLOWED": 1}
    assert jobs.names() == [] and sagemaker.list_models()["Models"] == []
    report = data.json("rejected/churn/a.csv.json")
    assert (report["code"], report["input"]["versionId"]) == ("MODEL_IMAGE_NOT_ALLOWED", version)
    assert FOREIGN in report["reason"] and "ImageRepositoriesAllowed" in report["whatToDo"]
    assert "incoming/churn/a.csv" in data.keys("incoming/")  # left where it is


@pytest.mark.parametrize("stack_overrides", [{"ImageRepositoriesAllowed": ALLOWED_TEAM}])
def test_batch_checks_the_operators_own_list(data, registry, intake_queue, intake, jobs) -> None:
    registry.register("churn")  # this account's churn repository: outside the operator's list
    data.drop("incoming/churn/a.csv")
    outcome = intake.handle(queued_messages(intake_queue.receive()))
    assert outcome.rejected_codes == {"MODEL_IMAGE_NOT_ALLOWED": 1} and jobs.names() == []
    registry.register("churn", image=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team-a-churn:1")
    data.drop("incoming/churn/b.csv")
    assert len(intake.handle(queued_messages(intake_queue.receive())).jobs_started) == 1


@pytest.mark.parametrize("stack_overrides", [{"MaxConcurrentJobsPerGroup": "1", "MaxFilesPerJob": "1"}])
def test_a_waiting_job_never_starts_on_a_newest_approved_version_with_a_foreign_image(
    data, registry, intake_queue, intake, completion, completions, jobs, sagemaker
) -> None:
    """Its own version rejected while it waits for its group's slot; the newest Approved one has a foreign
    image: the job's files are rejected MODEL_IMAGE_NOT_ALLOWED rather than planned again on it."""
    v1 = registry.register("churn")
    dropped = {key: data.drop(key) for key in ("incoming/churn/a.csv", "incoming/churn/b.csv")}
    intake.handle(queued_messages(intake_queue.receive()))
    running = [
        j["TransformJobName"] for j in transform_jobs(sagemaker, StatusEquals="InProgress")
    ]
    (first,) = running
    sagemaker.update_model_package(ModelPackageArn=v1, ModelApprovalStatus="Rejected")
    registry.register("churn", image=FOREIGN)
    for event in completions.finish(first, "Completed", ""):
        completion.handle(parse_transform_job_change(event))
    assert transform_jobs(sagemaker, StatusEquals="InProgress") == []
    first_keys = set(jobs.get(first).keys)
    (waiting,) = [key for key in dropped if key not in first_keys]
    report = data.json(f"rejected/{waiting.removeprefix('incoming/')}.json")
    assert (report["code"], report["input"]["versionId"]) == ("MODEL_IMAGE_NOT_ALLOWED", dropped[waiting])
    assert FOREIGN in report["reason"]
