"""Shadow tests through the template's own rules (issue 18): a group with `sagepilot:strategy` `shadow` gets its
candidate first as the endpoint's shadow variant (ShadowProductionVariants, a copy of `sagepilot:shadow-percent`
of the requests, its answers discarded), judged by the canary gate on those copies, then a canary (or a
promotion). Driven as in test_rollout.py (`Rollout.serve` publishes the copies under the shadow's own variant
name, as SageMaker does); `serve` below gives each variant its own error rate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import sagepilot_cli as cli
from sagepilot.adapters.rollout_reports import RolloutReports
from sagepilot.domain.rollout import Phase
from sagepilot_sandbox.stack.provision import Stack

from .conftest import FakeClock, Notifications
from .test_rollout import ENDPOINT, GROUP, ROLLOUT, Rollout, deploy_v1, make_rollout

RATE = 20  # requests a second


@pytest.fixture
def rollout(stack: Stack, clients: Callable[[str], Any], clock: FakeClock) -> Rollout:
    return make_rollout(stack, clients, clock)


def shadow_group(rollout: Rollout, **extra: str) -> None:
    tags = {"strategy": "shadow", "shadow-percent": "50", "error-margin": "0.01", "bake-seconds": "1800", **extra}
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": f"sagepilot:{k}", "Value": v} for k, v in tags.items()]
    )


def serve(rollout: Rollout, seconds: int, errors: dict[str, float]) -> None:
    """A minute of requests: each variant's (and the shadow's copies') invocations, 5xx and latencies."""
    at = datetime.fromtimestamp(rollout.clock() + seconds - 0.5, UTC)
    for variant, share in {**rollout.shares(), **rollout.copied()}.items():
        n = int(RATE * seconds * share)
        dimensions = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]
        failed = round(n * errors.get(variant, 0.01))
        rollout.clients("cloudwatch").put_metric_data(
            Namespace="AWS/SageMaker",
            MetricData=[
                {
                    "MetricName": "Invocations",
                    "Dimensions": dimensions,
                    "Timestamp": at,
                    "StatisticValues": {"SampleCount": n, "Sum": n, "Minimum": 1, "Maximum": 1},
                },
                {
                    "MetricName": "Invocation5XXErrors",
                    "Dimensions": dimensions,
                    "Timestamp": at,
                    "StatisticValues": {"SampleCount": n, "Sum": failed, "Minimum": 0, "Maximum": 1},
                },
                {
                    "MetricName": "ModelLatency",
                    "Dimensions": dimensions,
                    "Timestamp": at,
                    "Values": [20_000.0],
                    "Counts": [n],
                    "Unit": "Microseconds",
                },
            ],
        )


def minutes_in_shadow(rollout: Rollout, errors: dict[str, float], limit: int = 30) -> int:
    for minute in range(1, limit + 1):
        assert rollout.shares() == {"v1": 1.0}  # no caller gets the candidate's answers during its test
        serve(rollout, 60, errors)
        rollout.tick(60)
        if rollout.state().phase is not Phase.SHADOW:
            return minute
    return limit


def test_a_good_candidate_is_shadow_tested_then_canaried_then_promoted(
    rollout: Rollout, notifications: Notifications
) -> None:
    rollout.rate = 0  # `serve` publishes the traffic
    shadow_group(rollout)
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    endpoint = rollout.endpoint()
    assert [v["VariantName"] for v in endpoint["ProductionVariants"]] == ["v1"]
    assert rollout.copied() == {"v2": 0.5}
    config = rollout.sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    [shadow] = config["ShadowProductionVariants"]
    assert shadow["VariantName"] == "v2" and shadow["ModelName"].startswith(f"{ENDPOINT}-v2")
    assert f"{ENDPOINT}-v2-5xx" in rollout.alarms()  # the shadow's alarms guard it (its own metrics)
    minutes = minutes_in_shadow(rollout, errors={})
    assert minutes < 30  # decided by the gate, long before the 1800-s bake
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1} and rollout.copied() == {}
    assert any("not worse than stable" in h.what and "canary at 10%" in h.what for h in rollout.state().history)
    for _ in range(60):
        serve(rollout, 60, errors={})
        rollout.tick(60)
        if rollout.shares() == {"v2": 1.0}:
            break
    rollout.rate = 40
    rollout.tick(1800)  # the last step (100%) bakes
    assert rollout.shares() == {"v2": 1.0} and rollout.state().phase is Phase.STABLE
    reports = RolloutReports(rollout.clients("s3"), rollout.stack.functions[ROLLOUT].environment["REPORT_BUCKET"])
    report = reports.newest(ENDPOINT)
    assert report is not None
    shadow_looks = [e for e in report["entries"] if e.get("shadow")]
    assert len(shadow_looks) == minutes + 1 and all(e["share"] == 0 for e in shadow_looks)
    assert shadow_looks[-1]["verdict"] == "NOT_WORSE"


def test_a_candidate_worse_on_its_copies_is_rolled_back_and_rejected_with_zero_user_impact(
    rollout: Rollout, notifications: Notifications
) -> None:
    rollout.rate = 0
    shadow_group(rollout)
    deploy_v1(rollout)
    arn = rollout.register()
    rollout.pump()
    notifications.drain()
    minutes_in_shadow(rollout, errors={"v1": 0.01, "v2": 0.05})
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0} and rollout.copied() == {}
    package = rollout.sm.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert "canary analysis: v2 is worse than v1 on errors" in package["ApprovalDescription"]
    subjects = [n["subject"] for n in notifications.drain()]
    assert subjects == [f"ROLLING BACK: {ENDPOINT} v2", f"ROLLED BACK: {ENDPOINT} v2"]
    assert not [a for a in rollout.alarms() if a.startswith(f"{ENDPOINT}-v2-")]


def test_shadow_then_promote_skips_the_canary(rollout: Rollout) -> None:
    rollout.rate = 0
    shadow_group(rollout, **{"shadow-then": "promote", "shadow-percent": "100"})
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    assert rollout.copied() == {"v2": 1.0}
    minutes_in_shadow(rollout, errors={})
    rollout.pump()
    assert rollout.shares() == {"v2": 1.0} and rollout.state().phase is Phase.STABLE
    assert rollout.scaled_variants() == {"v2"}


def test_the_operator_pauses_and_rolls_back_a_shadow_test_through_the_cli(
    rollout: Rollout, notifications: Notifications, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator's commands apply to a shadow test as to a canary: paused, the candidate keeps getting copies
    and is never moved on; rolled back, its shadow goes with no user impact."""
    rollout.rate = 0
    shadow_group(rollout)
    deploy_v1(rollout)
    arn = rollout.register()
    rollout.pump()
    table = ["--table", rollout.store()._table]
    assert cli.main([*table, "pause", ENDPOINT]) == 0
    rollout.pump()
    for _ in range(20):  # evidence enough to pass the test, but paused: it stays a shadow test
        serve(rollout, 60, errors={})
        rollout.tick(60)
    assert rollout.state().phase is Phase.SHADOW and rollout.copied() == {"v2": 0.5}
    assert cli.main([*table, "rollouts"]) == 0
    assert "SHADOW (paused)" in capsys.readouterr().out
    assert cli.main([*table, "rollback", ENDPOINT]) == 0
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0} and rollout.copied() == {}
    assert rollout.sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Rejected"
    assert cli.main([*table, "history", ENDPOINT]) == 0
    history = capsys.readouterr().out
    assert "paused by" in history and "rollback requested by" in history


def test_a_version_approved_with_new_tags_while_a_reconcile_holds_the_lease_gets_the_new_tags(
    rollout: Rollout, stack: Stack, clients: Callable[[str], Any], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator tags the group for a shadow test and approves v2 while a reconcile holds the endpoint's
    lease: the approval is handed to the holder's rerun, which must read the group's tags again (seen in CI:
    the rerun reused the tags read before, and v2 went out as a 50% canary to real callers)."""
    rollout.sm.create_model_package_group(ModelPackageGroupName=GROUP)
    deploy_v1(rollout)
    store = rollout.service._store
    release = store.release
    came: list[str] = []

    def release_after_the_operator_acted(lease: Any, now: float, **kwargs: Any) -> bool:
        if not came:
            came.append("v2")
            group_arn = rollout.sm.describe_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupArn"]
            tags = {"strategy": "shadow", "shadow-percent": "50"}
            rollout.sm.add_tags(
                ResourceArn=group_arn, Tags=[{"Key": f"sagepilot:{k}", "Value": v} for k, v in tags.items()]
            )
            other = make_rollout(stack, clients, clock)  # the approval's invocation: another Lambda process
            other.register()  # its approval event: deferred while the lease is held, then the holder's rerun
            other.pump()
        return release(lease, now, **kwargs)

    monkeypatch.setattr(store, "release", release_after_the_operator_acted)
    rollout.service.on_endpoint_signal(ENDPOINT)  # a reconcile of the endpoint holds the lease
    rollout.pump()
    assert came == ["v2"]
    assert rollout.state().phase == Phase.SHADOW
    assert rollout.shares() == {"v1": 1.0} and rollout.copied() == {"v2": 0.5}  # no caller sees v2
