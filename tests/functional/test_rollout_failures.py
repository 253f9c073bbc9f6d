"""What SageMaker or a person does to a managed endpoint behind the control plane's back, through the
template's own rules (see test_rollout.py for the drivers): an update SageMaker cannot apply, a first
deployment that ends Failed, an endpoint deleted out of band, a change made by hand, a person's own scaling.

SageMaker's side of a failed start is the sandbox's own (`complete_endpoint_transition(failure=...)`, what its
health check does when a container does not pass `/ping`), so the events are the ones SageMaker sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import sagepilot_cli as cli
from sagepilot.domain.rollout import Phase
from sagepilot.metrics import MemoryRecorder
from sagepilot_sandbox import faithful
from sagepilot_sandbox.stack.provision import Stack

from .conftest import FakeClock, Notifications
from .test_rollout import ENDPOINT, Rollout, deploy_v1, make_rollout

REASON = (
    "The primary container for production variant {} did not pass the ping health check. "
    "Please check CloudWatch logs for this endpoint."
)
DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@pytest.fixture
def metrics() -> MemoryRecorder:
    return MemoryRecorder()


@pytest.fixture
def rollout(stack: Stack, clients: Callable[[str], Any], clock: FakeClock, metrics: MemoryRecorder) -> Rollout:
    return make_rollout(stack, clients, clock, metrics)


def fail_pending(rollout: Rollout, variant: str) -> None:
    """SageMaker finishes the pending create or update as one whose new container never became healthy."""
    assert faithful.pending_endpoint_transition(ENDPOINT) is not None
    faithful.complete_endpoint_transition(ENDPOINT, failure=REASON.format(variant), deliver=True)


def package(rollout: Rollout, arn: str) -> dict[str, Any]:
    return dict(rollout.sm.describe_model_package(ModelPackageName=arn))


def subjects(notifications: Notifications) -> list[str]:
    return [str(n["subject"]) for n in notifications.drain()]


def test_an_update_sagemaker_cannot_apply_is_a_verdict_not_a_loop(
    rollout: Rollout, notifications: Notifications, metrics: MemoryRecorder
) -> None:
    deploy_v1(rollout)
    notifications.drain()
    v2 = rollout.register()
    rollout.pump(settle=False)  # the canary's UpdateEndpoint is under way
    fail_pending(rollout, "v2")
    rollout.pump()

    assert rollout.endpoint()["EndpointStatus"] == "InService"
    assert rollout.shares() == {"v1": 1.0}
    assert faithful.pending_endpoint_transition(ENDPOINT) is None  # no second update for this attempt
    found = package(rollout, v2)
    assert found["ModelApprovalStatus"] == "Rejected"
    assert REASON.format("v2") in found["ApprovalDescription"]
    assert subjects(notifications) == ["ROLLOUT STARTED: sagepilot-churn v2", "FAILED: sagepilot-churn v2"]
    state = rollout.state()
    assert state.phase is Phase.STABLE and state.stable.version == 1 and state.candidate is None
    assert rollout.scaled_variants() == {"v1"}
    assert metrics.total("Rollbacks", Cause="failed-to-start") == 1

    # Later triggers change nothing and say nothing more.
    rollout.tick()
    rollout.tick(3600)
    assert faithful.pending_endpoint_transition(ENDPOINT) is None
    assert subjects(notifications) == []

    # A newer approval still rolls out.
    rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v3": 0.1}


def test_a_first_deployment_that_ends_failed_is_reported_and_a_newer_version_replaces_it(
    rollout: Rollout, notifications: Notifications
) -> None:
    v1 = rollout.register()
    rollout.pump(settle=False)
    fail_pending(rollout, "v1")
    rollout.pump()

    assert rollout.endpoint()["EndpointStatus"] == "Failed"
    assert rollout.state().phase is Phase.FAILED
    found = package(rollout, v1)
    assert found["ModelApprovalStatus"] == "Rejected"
    assert REASON.format("v1") in found["ApprovalDescription"]
    [failed] = notifications.drain()
    assert failed["subject"] == "FAILED: sagepilot-churn v1"
    assert REASON.format("v1") in failed["message"]["what"]
    rollout.tick()
    assert subjects(notifications) == []  # once

    rollout.register()
    rollout.pump()  # the failed endpoint is deleted
    rollout.tick(60)  # and created again with v2
    assert rollout.endpoint()["EndpointStatus"] == "InService"
    assert rollout.shares() == {"v2": 1.0}
    assert subjects(notifications) == ["DEPLOYED: sagepilot-churn v2"]


def test_an_endpoint_deleted_out_of_band_is_reported_and_recreated_within_one_period(
    rollout: Rollout, notifications: Notifications
) -> None:
    deploy_v1(rollout)
    notifications.drain()
    rollout.sm.delete_endpoint(EndpointName=ENDPOINT)
    rollout.pump()
    assert rollout.sm.list_endpoints()["Endpoints"] == []

    rollout.tick(60)  # one reconcile period, far less than STABLE_CHECK_SECONDS

    assert rollout.endpoint()["EndpointStatus"] == "InService"
    assert rollout.shares() == {"v1": 1.0}
    assert rollout.scaled_variants() == {"v1"}
    got = notifications.drain()
    assert [n["subject"] for n in got] == ["ENDPOINT MISSING: sagepilot-churn", "DEPLOYED: sagepilot-churn v1"]
    assert got[0]["message"]["recreating"] == 1


def test_a_change_made_by_hand_is_repaired_completely_and_visibly(
    rollout: Rollout, notifications: Notifications, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_v1(rollout)
    notifications.drain()
    aas = rollout.clients("application-autoscaling")
    # A person swaps the variant for one of their own (deregistering autoscaling first, as SageMaker demands).
    aas.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=f"endpoint/{ENDPOINT}/variant/v1", ScalableDimension=DIMENSION
    )
    live = rollout.sm.describe_endpoint_config(EndpointConfigName=rollout.endpoint()["EndpointConfigName"])
    [spec] = live["ProductionVariants"]
    rollout.sm.create_endpoint_config(
        EndpointConfigName="sagepilot-churn-by-hand",
        ProductionVariants=[{**{k: spec[k] for k in ("ModelName", "InstanceType")}, "VariantName": "manual",
                             "InitialInstanceCount": 1}],
    )  # fmt: skip
    rollout.sm.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="sagepilot-churn-by-hand")
    rollout.pump()

    assert rollout.shares() == {"v1": 1.0}
    assert rollout.scaled_variants() == {"v1"}  # autoscaling back too
    assert {f"sagepilot-churn-v1-{kind}" for kind in ("5xx", "latency", "low-traffic")} <= set(rollout.alarms())
    got = notifications.drain()
    assert [n["subject"] for n in got] == ["REPAIRED: sagepilot-churn"]
    assert "manual" in got[0]["message"]["changed"]
    assert cli.main(["--table", rollout.store()._table, "history", ENDPOINT]) == 0
    history = capsys.readouterr().out
    assert "drift: endpoint sagepilot-churn served manual" in history and "repaired:" in history
    rollout.tick(3600)
    assert subjects(notifications) == []  # announced once


def test_a_persons_own_scaling_on_the_live_variant_is_reported_when_it_is_replaced(
    rollout: Rollout, notifications: Notifications
) -> None:
    deploy_v1(rollout)
    aas = rollout.clients("application-autoscaling")
    rid = f"endpoint/{ENDPOINT}/variant/v1"
    aas.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION, MinCapacity=2, MaxCapacity=7
    )
    aas.put_scaling_policy(
        PolicyName="night-shift",
        ServiceNamespace="sagemaker",
        ResourceId=rid,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 50.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        },
    )
    notifications.drain()
    rollout.register()
    rollout.pump()
    for _ in range(4):
        rollout.tick()
    assert rollout.shares() == {"v2": 1.0}

    got = {n["subject"]: n["message"] for n in notifications.drain()}
    lost = got["SCALING NOT CARRIED OVER: sagepilot-churn v1"]
    assert "min/max capacity 2/7" in lost["lost"] and "night-shift" in lost["lost"]
    assert "PROMOTED: sagepilot-churn v2" in got
    assert any("not carried over" in h.what for h in rollout.state().history)


def test_an_endpoint_deleted_when_no_version_is_approved_is_reported_once_and_not_recreated(
    rollout: Rollout, notifications: Notifications
) -> None:
    v1 = deploy_v1(rollout)
    rollout.set_status(v1, "Rejected")
    rollout.pump()
    assert subjects(notifications) == ["DEPLOYED: sagepilot-churn v1", "NO APPROVED VERSION: sagepilot-churn"]
    rollout.sm.delete_endpoint(EndpointName=ENDPOINT)
    rollout.pump()

    rollout.tick(60)  # one reconcile period

    got = notifications.drain()
    assert [n["subject"] for n in got] == ["ENDPOINT MISSING: sagepilot-churn"]
    assert got[0]["message"]["recreating"] is None
    assert rollout.sm.list_endpoints()["Endpoints"] == []
    rollout.tick(60)
    assert subjects(notifications) == []  # once
    rollout.register()  # a version approved: the endpoint is created again with it, not with the rejected v1
    rollout.pump()
    assert rollout.shares() == {"v2": 1.0}
    assert subjects(notifications) == ["DEPLOYED: sagepilot-churn v2"]
