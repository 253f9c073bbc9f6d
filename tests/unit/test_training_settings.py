"""The training function's settings: the stack's default recipe and the operator's ceilings, which the
defaults themselves must respect (a stack that contradicts itself does not start)."""

from __future__ import annotations

import pytest

from sagepilot.errors import ConfigurationError
from sagepilot.settings import load_training_settings

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
VALID = {
    "NAME_PREFIX": "sagepilot",
    "DATA_BUCKET": "sagepilot-sandbox-databucket",
    "STATE_TABLE": "sagepilot-StateTable-1ABC",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:sagepilot-NotificationTopic-1ABC",
    "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/sagepilot-SageMakerExecutionRole-1ABC",
    "TRAINING_IMAGE": IMAGE,
    "TRAINING_INFERENCE_IMAGE": IMAGE,
    "TRAINING_INSTANCE_TYPE": "ml.m5.xlarge",
    "TRAINING_INSTANCE_COUNT": "1",
    "TRAINING_VOLUME_GB": "30",
    "TRAINING_MAX_RUNTIME_SECONDS": "3600",
    "TRAINING_SPOT": "false",
    "TRAINING_MAX_WAIT_SECONDS": "7200",
    "TRAINING_MAX_RETRIES": "2",
    "IMAGE_REPOSITORIES_ALLOWED": (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/*,683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost"
    ),
    "TRAINING_INSTANCE_TYPES_ALLOWED": "ml.m5.*,ml.c5.*",
    "TRAINING_INSTANCE_COUNT_CEILING": "4",
    "TRAINING_RUNTIME_CEILING_SECONDS": "86400",
    "TRAINING_VOLUME_CEILING_GB": "100",
    "TRAINING_NETWORK_ACCESS_ALLOWED": "false",
    "TRAINING_SETTLE_SECONDS": "300",
    "TRAINING_SETTLE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/sagepilot-TrainingSettleQueue-1ABC",
}


def env(**changes: str) -> dict[str, str]:
    return {**VALID, **changes}


def test_the_ceilings_are_read():
    ceilings = load_training_settings(env()).ceilings
    assert ceilings.instance_types == ("ml.m5.*", "ml.c5.*")
    assert (ceilings.max_instance_count, ceilings.max_runtime_seconds, ceilings.max_volume_gb) == (4, 86400, 100)
    assert ceilings.image_repositories[1].endswith("/sagemaker-xgboost")
    assert ceilings.network_access_allowed is False


def test_the_template_sets_every_variable(template):
    variables = template["Resources"]["TrainingFunction"]["Properties"]["Environment"]["Variables"]
    globals_ = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(VALID) <= set(variables) | set(globals_)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"TRAINING_INSTANCE_TYPE": "ml.p5.48xlarge"}, "TrainingInstanceTypesAllowed"),
        ({"TRAINING_INSTANCE_COUNT": "5"}, "TrainingInstanceCountCeiling"),
        ({"TRAINING_VOLUME_GB": "200"}, "TrainingVolumeCeilingGB"),
        ({"TRAINING_MAX_RUNTIME_SECONDS": "90000"}, "TrainingRuntimeCeilingSeconds"),
        ({"TRAINING_IMAGE": "999999999999.dkr.ecr.us-east-1.amazonaws.com/x:1"}, "ImageRepositoriesAllowed"),
        ({"IMAGE_REPOSITORIES_ALLOWED": "docker.io/library/*"}, "IMAGE_REPOSITORIES_ALLOWED"),
        ({"TRAINING_INSTANCE_TYPES_ALLOWED": ""}, "TRAINING_INSTANCE_TYPES_ALLOWED"),
        ({"TRAINING_NETWORK_ACCESS_ALLOWED": "maybe"}, "TRAINING_NETWORK_ACCESS_ALLOWED"),
    ],
)
def test_a_stack_outside_its_own_ceilings_does_not_start(changes, named):
    with pytest.raises(ConfigurationError, match=named):
        load_training_settings(env(**changes))


@pytest.mark.parametrize("seconds", ["-1", "901", "soon"])
def test_the_settle_delay_is_what_sqs_can_delay(seconds):
    with pytest.raises(ConfigurationError, match="TRAINING_SETTLE_SECONDS"):
        load_training_settings(env(TRAINING_SETTLE_SECONDS=seconds))
    assert load_training_settings(env(TRAINING_SETTLE_SECONDS="0")).settle_seconds == 0


def test_the_settle_delay_defaults_to_five_minutes(template):
    parameter = template["Parameters"]["TrainingSettleSeconds"]
    assert (parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (300, 0, 900)
