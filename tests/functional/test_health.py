"""Alarms in charge, under the embedded AWS: incidents and recoveries, scale-in, capacity errors.

Alarms change state through CloudWatch's own SetAlarmState; the sandbox emits `CloudWatch Alarm State
Change` events and the template's rule routes them (ALARM and OK of `<prefix>-*` alarms only).
"""

from __future__ import annotations

from typing import Any

import pytest

from sagepilot.domain.rollout import Phase
from sagepilot.metrics import MemoryRecorder

from .conftest import FakeClock, Notifications, inject_error
from .test_rollout import ENDPOINT, GROUP, Rollout, deploy_v1, make_rollout

ERRORS = f"{ENDPOINT}-v1-5xx"
IDLE = f"{ENDPOINT}-v1-low-traffic"


@pytest.fixture
def rollout(stack: Any, clients: Any, clock: FakeClock) -> Rollout:
    return make_rollout(stack, clients, clock, MemoryRecorder())


def set_alarm(rollout: Rollout, name: str, value: str) -> None:
    rollout.clients("cloudwatch").set_alarm_state(AlarmName=name, StateValue=value, StateReason=f"test: {value}")


def scale_out(rollout: Rollout, instances: int) -> None:
    """What target tracking does under load: more instances for the variant."""
    rollout.sm.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT, DesiredWeightsAndCapacities=[{"VariantName": "v1", "DesiredInstanceCount": instances}]
    )
    rollout.pump()


def instances(rollout: Rollout) -> int:
    [variant] = rollout.endpoint()["ProductionVariants"]
    return int(variant["CurrentInstanceCount"])


def subjects(notifications: Notifications) -> list[str]:
    return [n["subject"] for n in notifications.drain()]


def test_a_deployed_variant_has_its_three_alarms(rollout: Rollout) -> None:
    deploy_v1(rollout)
    assert {ERRORS, f"{ENDPOINT}-v1-latency", IDLE} <= set(rollout.alarms())
    alarm = rollout.clients("cloudwatch").describe_alarms(AlarmNames=[IDLE])["MetricAlarms"][0]
    assert alarm["MetricName"] == "Invocations" and alarm["TreatMissingData"] == "breaching"
    assert alarm["EvaluationPeriods"] * alarm["Period"] == 3600  # IdleMinutes 60


def test_an_error_alarm_opens_an_incident_and_ok_closes_it_once(rollout: Rollout, notifications: Notifications) -> None:
    deploy_v1(rollout)
    notifications.drain()
    set_alarm(rollout, ERRORS, "ALARM")
    rollout.pump()
    [note] = notifications.drain()
    assert note["subject"] == f"UNHEALTHY: {ENDPOINT} v1"
    assert any("InService" in f for f in note["message"]["findings"])
    assert "/aws/sagemaker/Endpoints/" in note["message"]["whatToDo"]
    assert ERRORS in rollout.state().incidents
    set_alarm(rollout, ERRORS, "OK")
    rollout.pump()
    assert subjects(notifications) == [f"RECOVERED: {ENDPOINT} v1"]
    recorded = rollout.service._metrics  # type: ignore[attr-defined]
    assert recorded.total("Incidents") == 1 and recorded.total("Recoveries") == 1
    assert rollout.state().incidents == ()
    rollout.handle(rollout.delivered[-1])  # the OK event again
    assert subjects(notifications) == []


def test_a_late_alarm_event_for_an_alarm_that_is_ok_again_does_nothing(
    rollout: Rollout, notifications: Notifications
) -> None:
    deploy_v1(rollout)
    set_alarm(rollout, ERRORS, "ALARM")
    rollout.pump()
    set_alarm(rollout, ERRORS, "OK")
    rollout.pump()
    notifications.drain()
    late = next(e for e in rollout.delivered if e.get("detail", {}).get("state", {}).get("value") == "ALARM")
    rollout.handle(late)
    assert subjects(notifications) == [] and rollout.state().incidents == ()


def test_insufficient_data_is_not_routed_and_not_acted_on(rollout: Rollout, notifications: Notifications) -> None:
    deploy_v1(rollout)
    notifications.drain()
    set_alarm(rollout, ERRORS, "INSUFFICIENT_DATA")
    rollout.pump()
    outcome = rollout.service.on_alarm(ENDPOINT, ERRORS)  # even if it were delivered
    assert "INSUFFICIENT_DATA" in outcome.note
    assert subjects(notifications) == []


def test_alarms_of_endpoints_this_stack_does_not_manage_are_ignored(rollout: Rollout) -> None:
    outcome = rollout.service.on_alarm("sagepilot-someone-else", "sagepilot-someone-else-v1-5xx")
    assert outcome.result == "ignored"


def test_low_traffic_scales_in_to_the_minimum_and_records_the_saving(
    rollout: Rollout, notifications: Notifications
) -> None:
    deploy_v1(rollout)
    scale_out(rollout, 4)
    notifications.drain()
    set_alarm(rollout, IDLE, "ALARM")
    rollout.pump()
    assert instances(rollout) == 1
    [note] = notifications.drain()
    assert note["subject"] == f"SCALED IN: {ENDPOINT} v1" and note["message"]["savedInstances"] == 3
    assert rollout.service._metrics.total("InstancesSaved") == 3  # type: ignore[attr-defined]
    assert any("scaled in" in h.what and "saves 3" in h.what for h in rollout.state().history)
    rollout.handle(rollout.delivered[-1])  # duplicate: already at the minimum
    assert instances(rollout) == 1 and subjects(notifications) == []


def test_scale_in_respects_the_registered_minimum(rollout: Rollout) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": "sagepilot:autoscaling-min", "Value": "2"}]
    )
    deploy_v1(rollout)
    scale_out(rollout, 5)
    set_alarm(rollout, IDLE, "ALARM")
    rollout.pump()
    assert instances(rollout) == 2


def test_no_scale_in_during_a_rollout(rollout: Rollout) -> None:
    deploy_v1(rollout)
    scale_out(rollout, 3)
    rollout.register()
    rollout.pump()
    assert rollout.state().phase is Phase.CANARY
    set_alarm(rollout, IDLE, "ALARM")
    rollout.pump()
    v1 = next(v for v in rollout.endpoint()["ProductionVariants"] if v["VariantName"] == "v1")
    assert v1["CurrentInstanceCount"] == 3


def test_a_scale_in_missed_while_updating_happens_on_the_next_scheduled_reconcile(rollout: Rollout) -> None:
    deploy_v1(rollout)
    scale_out(rollout, 3)
    rollout.sm.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT, DesiredWeightsAndCapacities=[{"VariantName": "v1", "DesiredWeight": 1.0}]
    )  # Updating now
    set_alarm(rollout, IDLE, "ALARM")
    rollout.pump(settle=False)
    assert rollout.endpoint()["EndpointStatus"] == "Updating"
    rollout.pump()
    rollout.tick(1000)  # past STABLE_CHECK_SECONDS (900)
    assert instances(rollout) == 1


@pytest.mark.parametrize("stack_overrides", [{"EndpointFallbackInstanceType": "ml.c5.large"}])
def test_no_capacity_falls_back_to_the_fallback_instance_type(rollout: Rollout, notifications: Notifications) -> None:
    inject_error(
        rollout.sm,
        "CreateEndpoint",
        "ResourceLimitExceeded",
        "The account-level service limit 'ml.m5.large for endpoint usage' is 0 Instances",
    )
    deploy_v1(rollout)
    config = rollout.sm.describe_endpoint_config(EndpointConfigName=rollout.endpoint()["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.c5.large"
    quota = [n for n in notifications.drain() if n["subject"].startswith("QUOTA")]
    assert len(quota) == 1 and "ml.m5.large for endpoint usage" in quota[0]["message"]["what"]


def test_no_capacity_without_a_fallback_is_reported_once_and_retried(
    rollout: Rollout, notifications: Notifications
) -> None:
    fault = inject_error(
        rollout.sm,
        "CreateEndpoint",
        "ResourceLimitExceeded",
        "The account-level service limit 'ml.m5.large for endpoint usage' is 0 Instances",
        times=3,
    )
    rollout.register()
    rollout.pump()
    rollout.tick(60)
    rollout.tick(60)
    quota = [n for n in notifications.drain() if n["subject"].startswith("QUOTA")]
    assert len(quota) == 1 and "Raise the Service Quotas limit" in quota[0]["message"]["what"]
    assert fault.injected == 3
    rollout.tick(60)  # the quota was raised: the next reconcile creates it
    assert rollout.endpoint()["EndpointStatus"] == "InService"
