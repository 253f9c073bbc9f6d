"""Inference images and the stack's ImageRepositoriesAllowed (issue 16 point 9): the pure checks and what
the rollout and the batch side say when they refuse a version (domain/images.py, domain/rollout.py,
domain/failures.py)."""

from __future__ import annotations

import pytest

from sagepilot.domain import training
from sagepilot.domain.failures import image_not_allowed_rejection
from sagepilot.domain.images import image_allowed, images_not_allowed
from sagepilot.domain.rollout import Phase, Release, RolloutState, needs_image_check, refuse_image
from sagepilot.domain.transform_plan import ModelVersion

OWN = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost"
DEFAULT = (f"{OWN}/*", XGBOOST)
FOREIGN = "999999999999.dkr.ecr.us-east-1.amazonaws.com/miner:1"
V1 = Release(1, "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/1")
V2 = Release(2, "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2")


def test_training_still_exports_the_moved_check() -> None:
    assert training.image_allowed is image_allowed


@pytest.mark.parametrize(
    ("images", "foreign"),
    [
        ((f"{OWN}/churn:1",), ()),
        ((f"{XGBOOST}:1.7-1",), ()),
        ((f"{OWN}/churn:1", FOREIGN), (FOREIGN,)),  # every container counts
        (
            ("683313688378.dkr.ecr.us-east-1.amazonaws.com/other:1",),
            ("683313688378.dkr.ecr.us-east-1.amazonaws.com/other:1",),
        ),
        ((f"{OWN.replace('us-east-1', 'eu-west-1')}/churn:1",), (f"{OWN.replace('us-east-1', 'eu-west-1')}/churn:1",)),
        (("docker.io/library/python:3",), ("docker.io/library/python:3",)),  # not ECR at all
        ((), ("(none)",)),  # nothing to check: refused
    ],
)
def test_images_not_allowed(images: tuple[str, ...], foreign: tuple[str, ...]) -> None:
    assert images_not_allowed(images, DEFAULT) == foreign


def test_only_a_version_not_already_on_the_endpoint_is_checked() -> None:
    stable = RolloutState(endpoint="sagepilot-churn", group="churn", phase=Phase.STABLE, stable=V1)
    canary = RolloutState(endpoint="sagepilot-churn", group="churn", phase=Phase.CANARY, stable=V1, candidate=V2)
    assert needs_image_check(None, V1)  # a first deployment
    assert needs_image_check(stable, V2)  # a new version
    assert needs_image_check(stable, Release(0, "arn:old"))  # a revert to an older one
    assert not needs_image_check(stable, V1) and not needs_image_check(canary, V2)
    assert not needs_image_check(stable, None)


def test_the_rollout_refusal_names_the_image_the_allow_list_and_the_parameter() -> None:
    state = RolloutState(endpoint="sagepilot-churn", group="churn", phase=Phase.STABLE, stable=V1)
    assert refuse_image(V2, (f"{OWN}/churn:2",), DEFAULT, state, endpoint="sagepilot-churn", group="churn") is None
    refusal = refuse_image(V2, (FOREIGN,), DEFAULT, state, endpoint="sagepilot-churn", group="churn")
    assert refusal is not None
    assert refusal.release == V2 and refusal.images == (FOREIGN,)
    assert refusal.subject == "IMAGE NOT ALLOWED: churn v2"
    assert refusal.description.startswith("Not deployed (sagepilot): inference image " + FOREIGN)
    assert "ImageRepositoriesAllowed" in refusal.description and XGBOOST in refusal.description
    assert "v1 keeps serving" in refusal.what and "ImageRepositoriesAllowed" in refusal.what
    assert refusal.detail["imagesNotAllowed"] == [FOREIGN] and refusal.detail["stable"] == 1
    first = refuse_image(V1, (FOREIGN,), DEFAULT, None, endpoint="sagepilot-churn", group="churn")
    assert first is not None and "nothing is deployed" in first.what
    # Deterministic: the same refusal twice reads the same (the history line is what stops a repeat).
    assert first == refuse_image(V1, (FOREIGN,), DEFAULT, None, endpoint="sagepilot-churn", group="churn")


def test_the_batch_rejection_says_what_and_what_to_do() -> None:
    model = ModelVersion("churn", V2.package_arn, 2, ("text/csv",), images=(FOREIGN,))
    rejection = image_not_allowed_rejection(model, (FOREIGN,), DEFAULT)
    assert rejection.code == "MODEL_IMAGE_NOT_ALLOWED"
    assert "version 2 of 'churn'" in rejection.reason and FOREIGN in rejection.reason
    assert f"{OWN}/*" in rejection.reason
    assert "ImageRepositoriesAllowed" in rejection.action
