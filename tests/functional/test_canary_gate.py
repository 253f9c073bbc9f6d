"""Issue 18 through the template's own rules: the `ab` canary's statistical gate reads both variants' counts
from CloudWatch (one GetMetricData call, with the percentile-rank statistic for latency) and rolls back a
candidate worse than stable, or moves a good one on before its bake.

Driven as in test_rollout.py; each variant's clients get 5xx answers and latencies over the objective at
set rates, published as SageMaker publishes them (counts per minute, latencies as raw values).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sagepilot.adapters.rollout_reports import RolloutReports
from sagepilot.errors import ConfigurationError
from sagepilot.settings import load_rollout_settings
from sagepilot_cli.report import show_report
from sagepilot_sandbox.stack.provision import Stack

from .conftest import FakeClock, Notifications
from .test_rollout import ENDPOINT, GROUP, ROLLOUT, Rollout, deploy_v1, make_rollout

RATE = 20  # requests a second
FAST_US, SLOW_US = 20_000.0, 900_000.0  # model latencies under and over the 500-ms objective


@pytest.fixture
def rollout(stack: Stack, clients: Callable[[str], Any], clock: FakeClock) -> Rollout:
    r = make_rollout(stack, clients, clock)
    r.rate = 0  # the test publishes the traffic itself (`serve`)
    return r


def gated_group(rollout: Rollout, **extra: str) -> None:
    tags = {  # no sagepilot:analysis: the gate is on by default
        "latency-objective-ms": "500",
        "error-margin": "0.01",
        "latency-margin": "0.05",
        "bake-seconds": "1800",
        **extra,
    }
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": f"sagepilot:{k}", "Value": v} for k, v in tags.items()]
    )


def serve(
    rollout: Rollout,
    seconds: int,
    errors: dict[str, float],
    slow: dict[str, float],
    refused: dict[str, float] | None = None,
) -> None:
    """`errors`: each variant's share of 5xx; `refused`: its share of 4xx (the model answered 4xx: ModelError)."""
    at = datetime.fromtimestamp(rollout.clock() + seconds - 0.5, UTC)
    for variant, share in rollout.shares().items():
        n = int(RATE * seconds * share)
        if not n:
            continue
        failed, late = round(n * errors.get(variant, 0.01)), round(n * slow.get(variant, 0.05))
        dimensions = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]
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
                    "MetricName": "Invocation4XXErrors",
                    "Dimensions": dimensions,
                    "Timestamp": at,
                    "StatisticValues": {
                        "SampleCount": n,
                        "Sum": round(n * (refused or {}).get(variant, 0.0)),
                        "Minimum": 0,
                        "Maximum": 1,
                    },
                },
                {
                    "MetricName": "ModelLatency",
                    "Dimensions": dimensions,
                    "Timestamp": at,
                    "Values": [FAST_US, SLOW_US],
                    "Counts": [n - late, late],
                    "Unit": "Microseconds",
                },
            ],
        )


def run(rollout: Rollout, minutes: int, errors: dict[str, float], slow: dict[str, float]) -> int:
    """Minute ticks until the canary leaves its first step; the minutes it took."""
    for minute in range(1, minutes + 1):
        serve(rollout, 60, errors, slow)
        rollout.tick(60)
        if rollout.shares() != {"v1": 0.9, "v2": 0.1}:
            return minute
    return minutes


def test_a_candidate_worse_than_stable_under_the_alarms_is_rolled_back_and_rejected(
    rollout: Rollout, notifications: Notifications, tmp_path: Path
) -> None:
    gated_group(rollout)
    deploy_v1(rollout)
    arn = rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    minutes = run(rollout, 30, errors={"v1": 0.01, "v2": 0.04}, slow={})
    assert minutes < 30  # long before the 1800-s bake
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}
    package = rollout.sm.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert "canary analysis: v2 is worse than v1 on errors" in package["ApprovalDescription"]
    # Its report, in the data bucket, as `sagepilot report` shows it.
    bucket = rollout.stack.functions[ROLLOUT].environment["REPORT_BUCKET"]
    reports = RolloutReports(rollout.clients("s3"), bucket)
    report = reports.newest(ENDPOINT)
    assert report is not None and report["endpoint"] == ENDPOINT and report["rollout"].startswith("v2-")
    looks = report["entries"]
    assert len(looks) == minutes + 1  # one per reconcile of the step: as it began, then every minute
    assert [e["decision"] for e in looks[:-1]] == [""] * minutes
    assert looks[-1]["verdict"] == "WORSE" and looks[-1]["decision"].startswith("rolling back: canary analysis")
    errors = looks[-1]["metrics"][0]
    assert errors["metric"] == "errors" and errors["verdict"] == "WORSE" and errors["lower"] > 0
    assert errors["candidate"]["rate"] == pytest.approx(0.04, abs=0.002)
    page = tmp_path / "report.html"
    lines = show_report(reports, ENDPOINT, str(page))
    assert any("WORSE" in line for line in lines) and any("rolling back" in line for line in lines)
    text = page.read_text()
    assert "<svg" in text and "<polyline" in text and "<script" not in text


def test_a_candidate_whose_model_refuses_the_requests_the_live_one_serves_is_rolled_back(rollout: Rollout) -> None:
    """Found by trying it: v2 expects 5 features where callers send 4, so its model answers 400 to every request
    (ModelError to the caller, counted in Invocation4XXErrors, not 5XX). The gate counted 5XX only and promoted it
    ("candidate 0/796 errors"); 4xx count as errors now."""
    gated_group(rollout)
    deploy_v1(rollout)
    arn = rollout.register()
    rollout.pump()
    for _ in range(30):
        serve(rollout, 60, errors={}, slow={}, refused={"v2": 1.0})
        rollout.tick(60)
        if rollout.shares() != {"v1": 0.9, "v2": 0.1}:
            break
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}
    package = rollout.sm.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert "worse than v1 on errors" in package["ApprovalDescription"]


def test_latency_misses_over_the_objective_roll_back_too(rollout: Rollout) -> None:
    gated_group(rollout)
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    run(rollout, 30, errors={}, slow={"v1": 0.05, "v2": 0.15})
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}
    assert any("worse than v1 on latency" in h.what for h in rollout.state().history)


def test_a_good_candidate_moves_on_before_its_bake(rollout: Rollout) -> None:
    gated_group(rollout)
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    calls: list[str] = []
    events = rollout.clients("cloudwatch").meta.events
    for operation in ("GetMetricData", "GetMetricStatistics"):
        events.register(f"before-call.cloudwatch.{operation}", lambda operation=operation, **_: calls.append(operation))
    serve(rollout, 60, errors={}, slow={})
    rollout.tick(60)
    assert calls == ["GetMetricData"]  # one call per reconcile reads both variants' counts (and the invocations)
    minutes = run(rollout, 30, errors={}, slow={})
    assert minutes < 30 and rollout.shares() == {"v1": 0.5, "v2": 0.5}
    assert any("not worse than stable" in h.what for h in rollout.state().history)


def test_without_the_gate_the_same_regression_serves_its_whole_bake(rollout: Rollout) -> None:
    """What the gate is for: with no alarm firing, alarm-only keeps the worse candidate serving for its whole bake
    (the gate rolls it back within minutes); only then does the plain comparison of the step's error rates roll it
    back (it used to move it on)."""
    gated_group(rollout, analysis="off")
    deploy_v1(rollout)
    arn = rollout.register()
    rollout.pump()
    minutes = run(rollout, 31, errors={"v1": 0.01, "v2": 0.04}, slow={})
    assert minutes == 30
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}
    description = rollout.sm.describe_model_package(ModelPackageName=arn)["ApprovalDescription"]
    assert "error rates compared: v2 is worse than v1 on errors (4xx+5xx: v2 150/3600 = 4.17%" in description
    assert "margin 1.00%" in description


def test_a_user_published_metric_rolls_a_candidate_back(rollout: Rollout) -> None:
    """The business KPI: conversions published per variant (0/1 per request); v2 converts less."""
    gated_group(rollout, metrics="Shop/Conversion:higher:0.01")
    deploy_v1(rollout)
    arn = rollout.register()
    rollout.pump()
    for _ in range(30):
        at = datetime.fromtimestamp(rollout.clock() + 59.5, UTC)
        for variant, share in rollout.shares().items():
            n = int(RATE * 60 * share)
            converted = round(n * (0.10 if variant == "v1" else 0.05))
            rollout.clients("cloudwatch").put_metric_data(
                Namespace="Shop",
                MetricData=[
                    {
                        "MetricName": "Conversion",
                        "Dimensions": [
                            {"Name": "EndpointName", "Value": ENDPOINT},
                            {"Name": "VariantName", "Value": variant},
                        ],
                        "Timestamp": at,
                        "StatisticValues": {"SampleCount": n, "Sum": converted, "Minimum": 0, "Maximum": 1},
                    }
                ],
            )
        serve(rollout, 60, errors={}, slow={})
        rollout.tick(60)
        if rollout.shares() != {"v1": 0.9, "v2": 0.1}:
            break
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}
    description = rollout.sm.describe_model_package(ModelPackageName=arn)["ApprovalDescription"]
    assert "worse than v1 on Shop/Conversion" in description


def test_the_gate_is_on_by_default_and_a_stack_may_choose_alarm_only(stack: Stack) -> None:
    env = stack.functions[ROLLOUT].environment
    assert env["CANARY_ANALYSIS"] == "sequential"  # the template's CanaryAnalysis default
    assert load_rollout_settings(env).defaults.rollout.gate.enabled
    assert not load_rollout_settings({**env, "CANARY_ANALYSIS": "off"}).defaults.rollout.gate.enabled
    with pytest.raises(ConfigurationError, match="CANARY_ANALYSIS"):
        load_rollout_settings({k: v for k, v in env.items() if k != "CANARY_ANALYSIS"})
