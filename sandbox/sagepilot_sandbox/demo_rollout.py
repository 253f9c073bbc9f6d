"""The rollout half of the main scenario: approve in the registry, watch the endpoint follow.

First approval -> a new endpoint; a newer approval -> an A/B canary shifted 10 -> 50 -> 100 % after
each bake, then promoted; a third version approved and then Rejected mid-canary -> all traffic back
at once and the candidate removed. Every change of the endpoint's weights is printed as it happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

GROUP = "churn"
ENDPOINT = "sagepilot-churn"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-xgboost:1"


class WeightWatcher(threading.Thread):
    """Polls DescribeEndpoint and reports each new (status, weights) of the endpoint."""

    def __init__(self, sm: Any, say: Callable[[str], None]) -> None:
        super().__init__(daemon=True)
        self.sm, self.say = sm, say
        self.seen: list[tuple[str, tuple[tuple[str, float], ...]]] = []
        self._halt = threading.Event()

    def current(self) -> tuple[str, tuple[tuple[str, float], ...]] | None:
        try:
            found = self.sm.describe_endpoint(EndpointName=ENDPOINT)
        except self.sm.exceptions.ClientError:
            return None
        variants = found.get("ProductionVariants") or []
        total = sum(float(v.get("CurrentWeight") or 0) for v in variants) or 1.0
        shares = tuple(
            sorted((v["VariantName"], round(float(v.get("CurrentWeight") or 0) / total, 2)) for v in variants)
        )
        return found["EndpointStatus"], shares

    def run(self) -> None:
        while not self._halt.is_set():
            now = self.current()
            if now is not None and (not self.seen or self.seen[-1] != now):
                self.seen.append(now)
                weights = "  ".join(f"{name} {share:>4.0%}" for name, share in now[1])
                self.say(f"   endpoint {ENDPOINT}: {now[0]:<10} {weights}")
            time.sleep(0.2)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)

    def shares_seen(self, variant: str, *, in_service_only: bool = True) -> list[float]:
        """The distinct shares of `variant` the endpoint showed, in order."""
        out: list[float] = []
        for status, shares in self.seen:
            share = dict(shares).get(variant)
            if (status == "InService" or not in_service_only) and share is not None and (not out or out[-1] != share):
                out.append(share)
        return out


def _register(sm: Any, bucket: str, version: int) -> str:
    return str(
        sm.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/models/churn/v{version}/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv", "application/jsonlines"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
        )["ModelPackageArn"]
    )


def run_rollout_scenario(sandbox: Any, n: Any, *, first_step: int) -> None:
    """Steps `first_step`.. of the main scenario; `n` narrates and checks (see demo.Narrator)."""
    stack = sandbox.stack
    bucket = stack.outputs["DataBucketName"]
    sm = sandbox.client("sagemaker")
    table = stack.outputs["StateTableName"]
    state_of = _state_reader(sandbox.client("dynamodb"), table)
    watcher = WeightWatcher(sm, n.say)
    bake = stack.functions["RolloutFunction"].environment["BAKE_SECONDS"]
    step = first_step

    def approve(arn: str) -> None:
        n.say(f"   aws sagemaker update-model-package --model-package-arn {arn} --model-approval-status Approved")
        sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")

    n.say(
        f"{step}. real-time deployment: v1's approval in step 1 also created endpoint {ENDPOINT} "
        "(one approved version, one variant), and registered its autoscaling"
    )
    watcher.start()
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("STABLE", 1, None), timeout=60)
    targets = sandbox.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    scaled = [t["ResourceId"] for t in targets["ScalableTargets"]]
    n.say(f"   autoscaling registered: {scaled}")
    n.check(
        f"first approval -> endpoint {ENDPOINT} InService with one variant v1, autoscaled",
        watcher.current() == ("InService", (("v1", 1.0),)) and scaled == [f"endpoint/{ENDPOINT}/variant/v1"],
    )

    step += 1
    n.say(f"{step}. approve v2 (pending since step 1): an A/B canary beside v1, shifted after each {bake} s bake")
    v2 = sm.list_model_packages(ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval")[
        "ModelPackageSummaryList"
    ][0]["ModelPackageArn"]
    approve(v2)
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("STABLE", 2, None), timeout=120)
    n.check(
        "v2's share went 10% -> 50% -> 100%, then it was promoted alone",
        watcher.shares_seen("v2") == [0.1, 0.5, 1.0] and watcher.current() == ("InService", (("v2", 1.0),)),
    )

    step += 1
    n.say(f"{step}. approve v3, then reject it during its canary")
    v3 = _register(sm, bucket, 3)
    approve(v3)
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("CANARY", 2, 3), timeout=60)
    sandbox.wait_for(lambda: dict((watcher.current() or ("", ()))[1]).get("v3") == 0.1, timeout=30)
    n.say(f"   aws sagemaker update-model-package --model-package-arn {v3} --model-approval-status Rejected")
    sm.update_model_package(ModelPackageArn=v3, ModelApprovalStatus="Rejected", ApprovalDescription="fails QA")
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("STABLE", 2, None), timeout=60)
    n.check(
        "rejecting v3 sent all traffic back to v2 at once, then removed v3",
        watcher.shares_seen("v3", in_service_only=False)[-2:] == [0.1, 0.0]
        and watcher.current() == ("InService", (("v2", 1.0),)),
    )

    step += 1
    cw = sandbox.client("cloudwatch")
    n.say(f"{step}. approve v4; during its canary its server-error alarm fires")
    v4 = _register(sm, bucket, 4)
    approve(v4)
    sandbox.wait_for(lambda: dict((watcher.current() or ("", ()))[1]).get("v4") == 0.1, timeout=60)
    alarm = f"{ENDPOINT}-v4-5xx"
    n.say(f"   aws cloudwatch set-alarm-state --alarm-name {alarm} --state-value ALARM --state-reason '12 errors'")
    cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="Threshold Crossed: 12 errors in 1 minute")
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("STABLE", 2, None), timeout=60)
    package = sm.describe_model_package(ModelPackageName=v4)
    n.say(f"   v4 in the registry: {package['ModelApprovalStatus']}: {package.get('ApprovalDescription', '')}")
    n.check(
        "the alarm rolled v4 back at once and the registry says why",
        watcher.current() == ("InService", (("v2", 1.0),))
        and package["ModelApprovalStatus"] == "Rejected"
        and alarm in package.get("ApprovalDescription", ""),
    )

    step += 1
    n.say(f"{step}. traffic stops: v2 idles at 3 instances (as target tracking left it); its low-traffic alarm fires")
    sm.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT, DesiredWeightsAndCapacities=[{"VariantName": "v2", "DesiredInstanceCount": 3}]
    )
    sandbox.wait_for(lambda: _instances(sm, "v2") == 3, timeout=30)
    n.say("   v2 runs 3 instances")
    idle = f"{ENDPOINT}-v2-low-traffic"
    n.say(f"   aws cloudwatch set-alarm-state --alarm-name {idle} --state-value ALARM --state-reason 'no invocations'")
    cw.set_alarm_state(AlarmName=idle, StateValue="ALARM", StateReason="Threshold Crossed: no invocations for 60 min")
    sandbox.wait_for(lambda: _instances(sm, "v2") == 1, timeout=30)
    n.check("the low-traffic alarm scaled v2 in to its autoscaling minimum: 3 -> 1 instance", _instances(sm, "v2") == 1)
    watcher.stop()
    history = _history(sandbox.client("dynamodb"), table, ENDPOINT)
    n.say(f"   the endpoint's history (sagepilot --table {table} history {ENDPOINT}):")
    for line in history:
        n.say(f"     {line}")


def _instances(sm: Any, variant: str) -> int | None:
    found = sm.describe_endpoint(EndpointName=ENDPOINT)
    if found["EndpointStatus"] != "InService":
        return None
    return next(
        (v.get("CurrentInstanceCount") for v in found["ProductionVariants"] if v["VariantName"] == variant), None
    )


def _state_reader(ddb: Any, table: str) -> Callable[[str], tuple[str, int | None, int | None] | None]:
    from sagepilot.adapters.rollout_state import from_json

    def read(endpoint: str) -> tuple[str, int | None, int | None] | None:
        item = ddb.get_item(TableName=table, Key={"pk": {"S": f"endpoint#{endpoint}"}}, ConsistentRead=True)
        raw = item.get("Item", {}).get("state", {}).get("S")
        if not raw:
            return None
        state = from_json(raw)
        return (
            state.phase.value,
            state.stable.version if state.stable else None,
            state.candidate.version if state.candidate else None,
        )

    return read


def _history(ddb: Any, table: str, endpoint: str) -> list[str]:
    from sagepilot.adapters.rollout_state import from_json

    item = ddb.get_item(TableName=table, Key={"pk": {"S": f"endpoint#{endpoint}"}}, ConsistentRead=True)
    state = from_json(item["Item"]["state"]["S"])
    start = state.history[0].at if state.history else 0.0
    return [f"+{entry.at - start:5.1f}s  {entry.what}" for entry in state.history]
