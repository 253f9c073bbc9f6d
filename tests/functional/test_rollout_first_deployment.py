"""A first deployment held up until a newer version is Approved too (its approval's event lost or late, or its
handler dead with the lease held): the endpoint is created with the baseline, the newest Approved version below
the target, and the target gets its canary against it, as in-order delivery would have done. Through the
template's own rules (see test_rollout.py for the drivers).
"""

from __future__ import annotations

from typing import Any

import pytest

from sagepilot.domain.names import rollout_alarm_names
from sagepilot.domain.rollout import Phase

from .conftest import FakeClock, Notifications
from .test_inference_images import FOREIGN, register_image
from .test_rollout import ENDPOINT, GROUP, Rollout, make_rollout
from .test_rollout_failures import REASON, fail_pending


@pytest.fixture
def rollout(stack: Any, clients: Any, clock: FakeClock) -> Rollout:
    return make_rollout(stack, clients, clock)


def created_with(rollout: Rollout) -> list[str]:
    """The variants of the endpoint's first config (the one it was created with)."""
    state = rollout.state()
    first = rollout.sm.describe_endpoint_config(EndpointConfigName=state.configs[0])
    return [v["VariantName"] for v in first["ProductionVariants"]]


def test_two_versions_approved_before_the_first_trigger_deploy_the_older_then_canary_the_newer(
    rollout: Rollout, notifications: Notifications
) -> None:
    rollout.register()
    assert rollout._received()  # v1's approval: lost, never delivered
    v2 = rollout.register()
    rollout.pump()  # v2's approval: the first trigger, with v1 and v2 Approved

    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    assert rollout.state().phase is Phase.CANARY
    deployed, started = notifications.drain()
    assert deployed["subject"] == f"DEPLOYED: {ENDPOINT} v1"
    assert "v2 (newer, Approved) gets its canary against it next" in deployed["message"]["what"]
    assert started["subject"] == f"ROLLOUT STARTED: {ENDPOINT} v2"
    history = [h.what for h in rollout.state().history]
    assert any(h.startswith("v1 deployed first as the baseline: v2 (newer, Approved)") for h in history), history

    # v2 is the bad one: its alarm rolls it back to v1, which never stopped serving, and it is marked Rejected.
    errors_alarm, _ = rollout_alarm_names(ENDPOINT, "v2")
    rollout.clients("cloudwatch").set_alarm_state(
        AlarmName=errors_alarm, StateValue="ALARM", StateReason="Threshold Crossed: 12 errors"
    )
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0} and rollout.scaled_variants() == {"v1"}
    assert rollout.sm.describe_model_package(ModelPackageName=v2)["ModelApprovalStatus"] == "Rejected"
    assert rollout.state().phase is Phase.STABLE and rollout.state().stable.version == 1
    subjects = [n["subject"] for n in notifications.drain()]
    assert f"ROLLED BACK: {ENDPOINT} v2" in subjects


def test_the_schedule_finding_two_approved_versions_and_no_record_deploys_the_baseline_first(
    rollout: Rollout, notifications: Notifications
) -> None:
    """Both approvals' events lost: the schedule's look for groups approved but never deployed does the same."""
    rollout.register()
    rollout.register()
    assert len(rollout._received()) == 2  # lost
    rollout.tick()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    assert [n["subject"] for n in notifications.drain()] == [
        f"DEPLOYED: {ENDPOINT} v1",
        f"ROLLOUT STARTED: {ENDPOINT} v2",
    ]


def test_a_baseline_whose_image_is_not_allowed_is_skipped_and_the_target_deployed_directly(
    rollout: Rollout, notifications: Notifications
) -> None:
    rollout.sm.create_model_package_group(ModelPackageGroupName=GROUP)
    register_image(rollout, FOREIGN)
    rollout._received()  # v1's approval: lost
    rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v2": 1.0} and created_with(rollout) == ["v2"]
    assert [n["subject"] for n in notifications.drain()] == [f"DEPLOYED: {ENDPOINT} v2"]
    assert not any("-v1-" in m["ModelName"] for m in rollout.sm.list_models()["Models"])


def test_a_baseline_that_fails_to_start_is_rejected_and_the_target_deployed(
    rollout: Rollout, notifications: Notifications
) -> None:
    v1 = rollout.register()
    rollout._received()  # v1's approval: lost
    rollout.register()
    rollout.pump(settle=False)
    fail_pending(rollout, "v1")
    rollout.pump()  # FAILED: v1 rejected with SageMaker's reason; the failed endpoint is deleted
    found = rollout.sm.describe_model_package(ModelPackageName=v1)
    assert found["ModelApprovalStatus"] == "Rejected" and REASON.format("v1") in found["ApprovalDescription"]
    rollout.tick(60)  # and created again with v2
    assert rollout.endpoint()["EndpointStatus"] == "InService"
    assert rollout.shares() == {"v2": 1.0}
    assert [n["subject"] for n in notifications.drain()] == [
        f"FAILED: {ENDPOINT} v1",
        f"DEPLOYED: {ENDPOINT} v2",
    ]


def test_a_newest_version_refused_for_its_image_leaves_the_next_two_as_target_and_baseline(
    rollout: Rollout, notifications: Notifications
) -> None:
    """v3's image is not allowed: it is Rejected and announced as ever; v2 is then the target, and v1 (read again
    below it) the baseline."""
    rollout.register()
    rollout.register()
    v3 = register_image(rollout, FOREIGN)
    rollout._received()  # v1's and v2's approvals: lost
    rollout.tick()  # the schedule's look for groups approved but never deployed
    assert rollout.sm.describe_model_package(ModelPackageName=v3)["ModelApprovalStatus"] == "Rejected"
    assert created_with(rollout) == ["v1"]
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    assert [n["subject"] for n in notifications.drain()] == [
        f"IMAGE NOT ALLOWED: {GROUP} v3",
        f"DEPLOYED: {ENDPOINT} v1",
        f"ROLLOUT STARTED: {ENDPOINT} v2",
    ]
