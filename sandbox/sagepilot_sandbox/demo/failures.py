"""A step of the main scenario: a version whose container never passes SageMaker's health check.

Its model cannot load (`fail_on_load`). The sandbox starts its container for the canary's UpdateEndpoint,
runs SageMaker's start-up health check against it, and SageMaker keeps the old fleet: the endpoint is
InService again on the previous config with "The primary container for production variant v5 did not pass
the ping health check. ...". The control plane takes that as a verdict: v5 is Rejected in the registry with
that reason, FAILED is announced once, no update is sent again, and the live variant keeps serving every
request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sagepilot_sandbox.demo.traffic import Traffic

HEALTH = "did not pass the ping health check"


def failed_health_check_step(
    sandbox: Any,
    n: Any,
    *,
    step: int,
    endpoint: str,
    live: str,
    register: Callable[[str], str],
    upload: Callable[..., str],
    approve: Callable[[str], None],
    traffic: Traffic,
) -> None:
    """Step `step`: approve a v5 that cannot start; `live` (e.g. "v2") must keep all traffic."""
    sm = sandbox.client("sagemaker")
    n.say(f"{step}. a v5 whose model cannot load (its container never passes SageMaker's /ping check) is approved")
    bucket = sandbox.stack.outputs["DataBucketName"]
    v5 = register(upload(sandbox.client("s3"), bucket, "models/churn/v5-no-start/model.tar.gz", seed=5,
                         version="v5-no-start", fail_on_load=True))  # fmt: skip
    before = sm.describe_endpoint(EndpointName=endpoint)
    approve(v5)

    def verdict() -> dict[str, Any] | None:
        package = sm.describe_model_package(ModelPackageName=v5)
        return dict(package) if package["ModelApprovalStatus"] == "Rejected" else None

    # Clients keep calling while SageMaker tries to start v5's container and gives up.
    served = traffic.until(lambda: verdict() is not None, timeout=90)
    package = verdict() or {}
    after = sm.describe_endpoint(EndpointName=endpoint)
    reason = after.get("FailureReason", "")
    n.say(f"   the canary's UpdateEndpoint: {after['EndpointStatus']} on {after['EndpointConfigName']}: {reason}")
    n.say(f"   v5 in the registry: {package.get('ModelApprovalStatus')}: {package.get('ApprovalDescription', '')}")
    served += traffic.burst(20)
    good = sum(o.variant == live and not o.error for o in served)
    untouched = bool(served) and good == len(served)
    n.say(f"   {len(served)} requests meanwhile: {good} answered by {live}, {len(served) - good} otherwise")
    sandbox.wait_for(lambda: sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService", timeout=30)
    settled = sm.describe_endpoint(EndpointName=endpoint)
    ok = (
        HEALTH in reason
        and HEALTH in package.get("ApprovalDescription", "")
        and [v["VariantName"] for v in settled["ProductionVariants"]] == [live]
        and settled["EndpointConfigName"] == before["EndpointConfigName"]
        and untouched
    )
    n.check(
        f"v5 failed its health check: reported FAILED with SageMaker's reason, Rejected in the registry, not sent "
        f"again, and {live} kept serving every request",
        ok,
    )
    n.result("v5 cannot start", f"health check failed -> FAILED, Rejected; {live} untouched", ok)
    n.mark("v5 failed its health check")
