"""Shadow variants in the sandbox (sandbox/endpoints.py, invocations.py), as SageMaker runs them: a config's
ShadowProductionVariants (one, beside exactly one production variant), shown by DescribeEndpoint once InService;
a copy of each request at the sampling share (the shadow's weight relative to the production variant's) goes to
the shadow, whose answer is discarded (the caller gets the production variant's) and whose invocations are
published under its own variant name (its errors included); an update to a config without it removes it."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepilot_model_server.examples import feature_rows, load_estimator
from sagepilot_sandbox.sagemaker import endpoints, invocations
from sagepilot_sandbox.sagemaker.metrics import InvocationMetrics

from . import test_sandbox_transform as shared
from .test_sandbox_invocations import ENDPOINT, invoke, runtime, statistic
from .test_sandbox_transform import World

archives, servers, world = shared.archives, shared.servers, shared.world
__all__ = ["archives", "runtime", "servers", "world"]


def spec(world: World, name: str, archive: Any, weight: float, model: str = "") -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": world.model(model or f"m-{name}", archive),
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": weight,
    }


def shadowed(world: World, shadow_archive: Any, share: float, config: str = "with-shadow") -> None:
    world.sm.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[spec(world, "live", world.archives.v1, 1.0)],
        ShadowProductionVariants=[spec(world, "candidate", shadow_archive, share)],
    )


def test_a_shadow_gets_a_copy_of_its_share_of_requests_and_the_caller_only_production_answers(
    world: World, runtime: InvocationMetrics
) -> None:
    shadowed(world, world.archives.broken, 0.5)  # the shadow fails half of its records: nobody sees it
    described = world.sm.describe_endpoint_config(EndpointConfigName="with-shadow")
    assert [v["VariantName"] for v in described["ShadowProductionVariants"]] == ["candidate"]
    world.sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="with-shadow")
    endpoints.settle_endpoint(ENDPOINT)
    found = world.sm.describe_endpoint(EndpointName=ENDPOINT)
    assert [v["VariantName"] for v in found["ProductionVariants"]] == ["live"]
    [shadow] = found["ShadowProductionVariants"]
    assert shadow["VariantName"] == "candidate" and shadow["CurrentWeight"] == 0.5
    live = load_estimator(world.archives.v1)
    rows = feature_rows(400, seed=5)
    for row in rows:
        answer = invoke([row], Accept="text/csv")
        assert answer["InvokedProductionVariant"] == "live"  # never the shadow's answer, nor its errors
        assert answer["Body"].decode().split() == [str(int(live.predict([row])[0]))]
    invocations.wait_for_shadows()
    runtime.flush()
    assert statistic("Invocations", "live") == 400
    copied = statistic("Invocations", "candidate")
    assert 400 * 0.5 - 4 * 10 <= copied <= 400 * 0.5 + 4 * 10  # the sampling share, within 4 sigma
    assert statistic("Invocation5XXErrors", "candidate") > 0 and statistic("Invocation5XXErrors", "live") == 0
    assert statistic("ModelLatency", "candidate", "SampleCount") == copied


def test_an_update_to_a_config_without_the_shadow_removes_it(world: World, runtime: InvocationMetrics) -> None:
    shadowed(world, world.archives.v2, 1.0)
    world.sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="with-shadow")
    endpoints.settle_endpoint(ENDPOINT)
    world.sm.create_endpoint_config(
        EndpointConfigName="split",
        ProductionVariants=[
            spec(world, "live", world.archives.v1, 0.9, "m-live-2"),
            spec(world, "candidate", world.archives.v2, 0.1, "m-candidate-2"),
        ],
    )
    world.sm.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="split")
    endpoints.settle_endpoint(ENDPOINT)
    found = world.sm.describe_endpoint(EndpointName=ENDPOINT)
    assert "ShadowProductionVariants" not in found
    assert sorted(v["VariantName"] for v in found["ProductionVariants"]) == ["candidate", "live"]


@pytest.mark.parametrize("production", [0, 2])
def test_a_shadow_needs_exactly_one_production_variant_and_only_one_shadow(world: World, production: int) -> None:
    variants = [spec(world, f"p{i}", world.archives.v1, 1.0) for i in range(production)]
    with pytest.raises(ClientError, match="exactly one ProductionVariant and one ShadowProductionVariant"):
        world.sm.create_endpoint_config(
            EndpointConfigName="bad",
            ProductionVariants=variants or [spec(world, "p", world.archives.v1, 1.0)],
            ShadowProductionVariants=[spec(world, "s", world.archives.v2, 1.0)] * (2 if not production else 1),
        )
