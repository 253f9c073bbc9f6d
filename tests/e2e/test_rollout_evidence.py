"""Issue 15 through the running sandbox, driven by the real aws CLI: a canary nobody calls is held (NO
TRAFFIC), `sagepilot:deploy=false` stops what an approval would start, a rollback does not bring back the
version it superseded, and a new endpoint is not scaled in before it could have served.

The sandbox evaluates alarms here (every 0.5 s, a 60-s period lasting 3 s): the low-traffic alarm of a
group with `sagepilot:idle-minutes` 5 judges 15 s, and goes to ALARM at its first evaluation on a new
endpoint, as CloudWatch's does (missing data breaching)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from sagepilot_sandbox.server import Sandbox

from .conftest import started_sandbox
from .iam_calls import assert_calls_allowed
from .test_rollout_scenarios import sagepilot
from .test_sandbox_scenarios import aws, upload_example_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with started_sandbox(tmp_path_factory, alarm_evaluation_seconds=0.5, alarm_time_scale=0.05) as running:
        yield running


def create_group(sandbox: Sandbox, group: str, **tags: str) -> None:
    listed = [f"Key=sagepilot:{k},Value={v}" for k, v in tags.items()]
    aws(sandbox, "sagemaker", "create-model-package-group", "--model-package-group-name", group, *(
        ["--tags", *listed] if listed else []
    ))  # fmt: skip


def approve_new(sandbox: Sandbox, group: str, note: str) -> str:
    """A new Approved version of `group` whose model really runs (SageMaker's start-up health check passes)."""
    url = upload_example_model(sandbox, f"models/{group}/{note}/model.tar.gz", seed=int(note.lstrip("v")))
    spec = {
        "Containers": [
            {
                "Image": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{group}:1",
                "ModelDataUrl": url,
            }
        ],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    arn = str(
        aws(
            sandbox, "sagemaker", "create-model-package", "--model-package-group-name", group,
            "--inference-specification", json.dumps(spec), "--model-approval-status", "PendingManualApproval",
        )["ModelPackageArn"]
    )  # fmt: skip
    set_status(sandbox, arn, "Approved")
    return arn


def set_status(sandbox: Sandbox, arn: str, status: str) -> None:
    aws(sandbox, "sagemaker", "update-model-package", "--model-package-arn", arn, "--model-approval-status", status)


def status_of(sandbox: Sandbox, arn: str) -> str:
    return str(aws(sandbox, "sagemaker", "describe-model-package", "--model-package-name", arn)["ModelApprovalStatus"])


def endpoint(sandbox: Sandbox, name: str) -> dict[str, object] | None:
    names = [e["EndpointName"] for e in aws(sandbox, "sagemaker", "list-endpoints")["Endpoints"]]
    return aws(sandbox, "sagemaker", "describe-endpoint", "--endpoint-name", name) if name in names else None


def shares(sandbox: Sandbox, name: str) -> dict[str, float] | None:
    found = endpoint(sandbox, name)
    if found is None or found["EndpointStatus"] != "InService":
        return None
    variants = found["ProductionVariants"]
    assert isinstance(variants, list)
    total = sum(v["CurrentWeight"] for v in variants)
    return {v["VariantName"]: round(v["CurrentWeight"] / total, 2) for v in variants}


def instances(sandbox: Sandbox, name: str) -> int | None:
    found = endpoint(sandbox, name)
    if found is None or found["EndpointStatus"] != "InService":
        return None
    variants = found["ProductionVariants"]
    assert isinstance(variants, list)
    return int(variants[0]["CurrentInstanceCount"])


def history(sandbox: Sandbox, name: str) -> str:
    done = sagepilot(sandbox, "history", name)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("analysis", ["sequential", "off"])
def test_a_canary_nobody_calls_is_held_with_no_traffic(sandbox: Sandbox, analysis: str) -> None:
    # With the canary gate (the default) and alarm-only (sagepilot:analysis off): silence holds either way.
    group, name = f"quiet-{analysis}", f"sagepilot-quiet-{analysis}"
    create_group(sandbox, group, **{"min-invocations": "50", "max-bake-seconds": "6", "analysis": analysis})
    approve_new(sandbox, group, "v1")
    sandbox.wait_for(lambda: shares(sandbox, name) == {"v1": 1.0}, timeout=60)
    approve_new(sandbox, group, "v2")
    sandbox.wait_for(lambda: shares(sandbox, name) == {"v1": 0.9, "v2": 0.1}, timeout=60)
    sandbox.wait_for(lambda: "NO TRAFFIC: v2 served 0 of the 50" in history(sandbox, name), timeout=60)
    time.sleep(10)  # bake (4 s) after bake, with the schedule every 2 s: still held, announced once
    assert shares(sandbox, name) == {"v1": 0.9, "v2": 0.1}
    assert history(sandbox, name).count("NO TRAFFIC") == 1


def test_a_last_step_nobody_calls_is_held_too(sandbox: Sandbox) -> None:
    # At 100% nothing is left to compare against: the step's evidence is the candidate's Invocations alone
    # (GetMetricStatistics; below 100% the step's counts come with both variants', in GetMetricData).
    group, name = "quiet-last", "sagepilot-quiet-last"
    create_group(sandbox, group, **{"canary-steps": "100", "min-invocations": "50", "max-bake-seconds": "6"})
    approve_new(sandbox, group, "v1")
    sandbox.wait_for(lambda: shares(sandbox, name) == {"v1": 1.0}, timeout=60)
    approve_new(sandbox, group, "v2")
    sandbox.wait_for(lambda: shares(sandbox, name) == {"v1": 0.0, "v2": 1.0}, timeout=60)
    sandbox.wait_for(lambda: "NO TRAFFIC: v2 served 0 of the 50" in history(sandbox, name), timeout=60)
    assert shares(sandbox, name) == {"v1": 0.0, "v2": 1.0}  # held beside v1, not promoted on silence


def test_deploy_false_stops_the_next_approval_on_every_path(sandbox: Sandbox) -> None:
    group, name = "paused", "sagepilot-paused"
    create_group(sandbox, group, **{"min-invocations": "0"})
    approve_new(sandbox, group, "v1")
    sandbox.wait_for(lambda: shares(sandbox, name) == {"v1": 1.0}, timeout=60)
    arn = aws(sandbox, "sagemaker", "describe-model-package-group", "--model-package-group-name", group)[
        "ModelPackageGroupArn"
    ]
    aws(sandbox, "sagemaker", "add-tags", "--resource-arn", arn, "--tags", "Key=sagepilot:deploy,Value=false")
    approve_new(sandbox, group, "v2")  # right after the tag: the decision reads it
    sandbox.wait_for(lambda: "sagepilot:deploy tag is false" in history(sandbox, name), timeout=60)
    time.sleep(6)  # reconciles come and go
    assert shares(sandbox, name) == {"v1": 1.0}
    aws(sandbox, "sagemaker", "add-tags", "--resource-arn", arn, "--tags", "Key=sagepilot:deploy,Value=true")
    sandbox.wait_for(lambda: (shares(sandbox, name) or {}).get("v2", 0) > 0, timeout=60)


def test_one_rollback_is_enough_the_superseded_version_does_not_come_back(sandbox: Sandbox) -> None:
    group, name = "twice", "sagepilot-twice"
    create_group(sandbox, group, **{"bake-seconds": "600"})
    approve_new(sandbox, group, "v1")
    sandbox.wait_for(lambda: shares(sandbox, name) == {"v1": 1.0}, timeout=60)
    v2 = approve_new(sandbox, group, "v2")
    sandbox.wait_for(lambda: shares(sandbox, name) == {"v1": 0.9, "v2": 0.1}, timeout=60)
    v3 = approve_new(sandbox, group, "v3")
    sandbox.wait_for(lambda: shares(sandbox, name) == {"v1": 0.9, "v3": 0.1}, timeout=60)
    rolled = sagepilot(sandbox, "rollback", name)
    assert rolled.returncode == 0, rolled.stderr
    sandbox.wait_for(lambda: "rolled back to v1" in history(sandbox, name), timeout=60)
    time.sleep(6)
    assert shares(sandbox, name) == {"v1": 1.0}
    assert (status_of(sandbox, v3), status_of(sandbox, v2)) == ("Rejected", "PendingManualApproval")
    set_status(sandbox, v2, "Approved")  # approved again: a person's decision
    sandbox.wait_for(lambda: shares(sandbox, name) == {"v1": 0.9, "v2": 0.1}, timeout=60)


def test_a_new_endpoint_is_not_scaled_in_before_it_served_its_idle_minutes(sandbox: Sandbox) -> None:
    group, name = "fresh", "sagepilot-fresh"
    create_group(sandbox, group, **{"instance-count": "10", "idle-minutes": "5"})
    approve_new(sandbox, group, "v1")
    sandbox.wait_for(lambda: instances(sandbox, name) == 10, timeout=60)
    in_service = time.monotonic()
    alarm = f"{name}-v1-low-traffic"

    def judged_again() -> bool:
        [found] = aws(sandbox, "cloudwatch", "describe-alarms", "--alarm-names", alarm)["MetricAlarms"]
        return "not idle yet" in str(found["StateReason"])

    sandbox.wait_for(judged_again, timeout=30)  # its first evaluation (missing data breaching), then reset
    time.sleep(max(0.0, in_service + 8 - time.monotonic()))
    assert instances(sandbox, name) == 10  # not idle: 15 s (5 compressed minutes) have not passed in service
    sandbox.wait_for(lambda: instances(sandbox, name) == 1, timeout=90)  # then it is, measured: scaled in
    assert time.monotonic() - in_service >= 15 - 1


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    assert_calls_allowed(
        sandbox,
        min_pairs=20,
        expected=[
            ("RolloutFunction", "cloudwatch.GetMetricStatistics"),  # the evidence of a step at 100%
            ("RolloutFunction", "cloudwatch.GetMetricData"),  # the canary gate's, or alarm-only's baked comparison
            ("RolloutFunction", "cloudwatch.SetAlarmState"),
            ("RolloutFunction", "sagemaker.UpdateModelPackage"),
            ("RolloutFunction", "sagemaker.ListTags"),
        ],
    )
