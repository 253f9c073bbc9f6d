"""The operator's endpoint ceilings under the embedded AWS: a group's tags cannot ask for instance types or
counts beyond the stack's EndpointInstanceTypesAllowed / EndpointInstanceCountCeiling (INVALID SETTINGS,
nothing deployed), and a group within them deploys as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sagepilot.errors import ConfigurationError
from sagepilot.settings import load_rollout_settings, load_settings, load_training_settings
from sagepilot_sandbox.stack.provision import Stack

from .conftest import FakeClock, Notifications
from .test_rollout import ENDPOINT, GROUP, Rollout, make_rollout


@pytest.fixture
def rollout(stack: Stack, clients: Callable[[str], Any], clock: FakeClock) -> Rollout:
    return make_rollout(stack, clients, clock)


@pytest.mark.parametrize(
    ("tags", "ceiling"),
    [
        ({"sagepilot:instance-type": "ml.p5.48xlarge"}, "EndpointInstanceTypesAllowed"),
        ({"sagepilot:fallback-instance-type": "ml.g5.12xlarge"}, "EndpointInstanceTypesAllowed"),
        ({"sagepilot:autoscaling-max": "1000"}, "EndpointInstanceCountCeiling"),
        ({"sagepilot:autoscaling-min": "20", "sagepilot:autoscaling-max": "20"}, "EndpointInstanceCountCeiling"),
    ],
)
def test_tags_beyond_the_operators_ceilings_are_refused_and_nothing_is_deployed(
    rollout: Rollout, notifications: Notifications, tags: dict[str, str], ceiling: str
) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
    )
    rollout.register()
    rollout.pump()
    assert rollout.sm.list_endpoints()["Endpoints"] == []
    [note] = notifications.drain()
    assert note["subject"] == f"INVALID SETTINGS: model package group {GROUP}"
    assert ceiling in note["message"]["what"]


@pytest.mark.parametrize(
    "stack_overrides",
    [
        {
            "EndpointInstanceTypesAllowed": "ml.m5.*,ml.g4dn.xlarge",
            "EndpointInstanceCountCeiling": "3",
            "AutoscalingMaxCapacity": "3",
        }
    ],
)
def test_tags_within_the_ceilings_deploy(rollout: Rollout) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP,
        Tags=[
            {"Key": "sagepilot:instance-type", "Value": "ml.g4dn.xlarge"},
            {"Key": "sagepilot:autoscaling-max", "Value": "3"},
        ],
    )
    rollout.register()
    rollout.pump()
    endpoint = rollout.sm.describe_endpoint(EndpointName=ENDPOINT)
    config = rollout.sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.g4dn.xlarge"


def test_endpoint_models_run_network_isolated(rollout: Rollout) -> None:
    rollout.sm.create_model_package_group(ModelPackageGroupName=GROUP)
    rollout.register()
    rollout.pump()
    endpoint = rollout.sm.describe_endpoint(EndpointName=ENDPOINT)
    config = rollout.sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = rollout.sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["EnableNetworkIsolation"] is True


@pytest.mark.parametrize(
    ("stack_overrides", "function", "loader", "named"),
    [
        ({"TransformInstanceType": "ml.p3.2xlarge"}, "BatchIntakeFunction", load_settings, "TRANSFORM_INSTANCE_TYPE"),
        ({"EndpointInstanceType": "ml.p3.2xlarge"}, "RolloutFunction", load_rollout_settings, "EndpointInstanceTypes"),
        ({"TrainingInstanceCount": "5"}, "TrainingFunction", load_training_settings, "TrainingInstanceCountCeiling"),
    ],
)
def test_a_stack_whose_own_defaults_exceed_its_ceilings_does_not_start(
    stack: Stack, function: str, loader: Callable[[Any], Any], named: str
) -> None:
    """Transform types are only the operator's: their ceiling binds the stack's own parameters."""
    with pytest.raises(ConfigurationError, match=named):
        loader(stack.functions[function].environment)
