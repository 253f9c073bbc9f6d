"""The rollout half of the main scenario: real traffic on the endpoint, and the control plane following it.

v1's approval created the endpoint; clients call it (a steady trickle, and bursts to measure). v2 is
trained from a second upload and approved by the recipe -> an A/B canary 10 -> 50 -> 100 %: at 10 and
50 % the canary is held with `sagepilot pause` while 400 requests measure the split (each variant's
share must be within 4 binomial standard deviations of its weight, and every answer must be the
serving variant's own prediction), then let go with `sagepilot resume`. A deliberately broken v3 (half
of its records fail) is approved: its 5xx alarm goes to ALARM on the errors it really served and rolls
it back, no set-alarm-state involved. A v4 is approved then Rejected during its canary (all traffic
back at once). A second group naming the endpoint is refused (one endpoint, one owner). A v5 whose model
cannot load fails SageMaker's health check: reported FAILED, Rejected, v2 untouched (`demo_failures`).
Traffic stops: v2 idles at 3 instances until its low-traffic alarm fires on the missing
invocations and scales it in to its autoscaling minimum. Still nobody calls when v6 is approved: its canary
has no evidence, so it is held at 10% and reported once (NO TRAFFIC), never promoted on silence, until the
operator rolls it back. Then the canary's statistical gate (`gate_scenario`): v7, failing a few percent of its
requests far under every alarm's threshold, is rolled back by the gate with its report (`sagepilot report`),
and v8, as good as v2, is moved on long before its bake and promoted. Then shadow tests (`shadow_scenario`): v9,
as subtly bad as v7, runs as the endpoint's shadow variant on a copy of every request and is rolled back by the
gate with no caller ever getting one of its answers; v10 passes its shadow test and is promoted. Every change
of the endpoint's weights is printed as it happens. What an operator sees (`operator_view`, between v6 and the
gate): `sagepilot alarms` shows the idle
alarm in ALARM, then OK once traffic is back; `sagepilot metrics` the dashboard's figures of the whole
scenario, from the metrics the functions' EMF lines and the endpoint's invocations put into CloudWatch;
`sagepilot status` the control plane's own alarms and queues.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sagepilot_model_server.examples import build_example_model
from sagepilot_sandbox.demo.failures import failed_health_check_step
from sagepilot_sandbox.demo.traffic import Outcome, Traffic, predictions_match, split_within_bound

GROUP = "churn"
ENDPOINT = "sagepilot-churn"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn-sklearn:1"
MEASURE_REQUESTS = 400
HELD_BAKE_SECONDS = 6  # the demo group's sagepilot:bake-seconds
GATE_BAKE_SECONDS = 60  # its bake (and longest bake) once the canary's statistical gate is on


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

    def share(self, variant: str) -> float | None:
        now = self.current()
        return dict(now[1]).get(variant) if now is not None and now[0] == "InService" else None

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


def _register(sm: Any, model_data_url: str, group: str = GROUP) -> str:
    return str(
        sm.create_model_package(
            ModelPackageGroupName=group,
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": model_data_url}],
                "SupportedContentTypes": ["text/csv", "application/jsonlines"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
        )["ModelPackageArn"]
    )


def _upload_example(s3: Any, bucket: str, key: str, **options: Any) -> str:
    with tempfile.TemporaryDirectory() as folder:
        archive = build_example_model(folder, **options)
        s3.put_object(Bucket=bucket, Key=key, Body=archive.read_bytes())
    return f"s3://{bucket}/{key}"


def operator(sandbox: Any, *args: str) -> str:
    """The `sagepilot` operator command, as a person would run it against the sandbox."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "SAGEPILOT_STATE_TABLE": sandbox.stack.outputs["StateTableName"],
        "SAGEPILOT_OPERATOR": "demo",
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "sagepilot_cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return (done.stdout + done.stderr).strip()


def run_rollout_scenario(
    sandbox: Any,
    n: Any,
    *,
    first_step: int,
    v1_url: str,
    train_version: Callable[..., dict[str, Any]],
    traffic: Traffic,
) -> None:
    """Steps `first_step`.. of the main scenario; `n` narrates and checks (see demo.Narrator)."""
    from sagepilot_sandbox.demo.scenario import estimator_of

    stack = sandbox.stack
    bucket = stack.outputs["DataBucketName"]
    sm, s3 = sandbox.client("sagemaker"), sandbox.client("s3")
    table = stack.outputs["StateTableName"]
    state_of = _state_reader(sandbox.client("dynamodb"), table)
    watcher = WeightWatcher(sm, n.say)
    estimators: dict[str, Any] = {"v1": estimator_of(s3, v1_url)}
    step = first_step

    def approve(arn: str) -> None:
        n.say(f"   aws sagemaker update-model-package --model-package-arn {arn} --model-approval-status Approved")
        sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")

    n.say(f"{step}. real-time: v1's approval created endpoint {ENDPOINT} (one variant) and registered its autoscaling")
    watcher.start()
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("STABLE", 1, None), timeout=60)
    targets = sandbox.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    scaled = [t["ResourceId"] for t in targets["ScalableTargets"]]
    n.say(f"   autoscaling registered: {scaled}")
    n.check(
        f"first approval -> endpoint {ENDPOINT} InService with one variant v1, autoscaled",
        watcher.current() == ("InService", (("v1", 1.0),)) and scaled == [f"endpoint/{ENDPOINT}/variant/v1"],
    )
    n.mark("endpoint InService with v1")
    first = traffic.burst(20)
    agreed, checked = predictions_match(first, estimators)
    sample = first[0]
    n.say(
        f"   aws sagemaker-runtime invoke-endpoint --endpoint-name {ENDPOINT} --content-type text/csv ...: "
        f"{len(sample.rows)} customers -> {list(sample.predictions or ())} from {sample.variant}"
    )
    n.check(
        "invoke-endpoint answers with v1's own predictions (20 requests)",
        checked == 20 and agreed == 20 and all(o.variant == "v1" for o in first),
    )

    # The canary's statistical gate is on by default; these first rollouts show the alarms, the measured split,
    # an operator's hold and the evidence rule (whose tiny traffic the gate could not decide on): alarm-only.
    group_arn = sm.describe_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupArn"]
    n.say(f"   aws sagemaker add-tags --resource-arn {group_arn} --tags Key=sagepilot:analysis,Value=off  (alarm-only)")
    sm.add_tags(ResourceArn=group_arn, Tags=[{"Key": "sagepilot:analysis", "Value": "off"}])

    step += 1
    n.say(f"{step}. upload a second training set: v2 is trained, approved by the recipe, and rolled out as a canary")
    v2 = train_version(sandbox, n, "training/churn/2027-01/customers.csv", seed=2, version=2)
    estimators["v2"] = estimator_of(s3, v2["job"]["ModelArtifacts"]["S3ModelArtifacts"])
    split_ok = True
    for share in (0.1, 0.5):
        sandbox.wait_for(lambda share=share: watcher.share("v2") == share, timeout=60)
        n.say(f"   v2 at {share:.0%}: the operator holds the step while {MEASURE_REQUESTS} requests measure it")
        n.say(f"   $ sagepilot pause {ENDPOINT}: {operator(sandbox, 'pause', ENDPOINT)}")
        measured = traffic.burst(MEASURE_REQUESTS)
        still = watcher.share("v2")
        k, total, bound, within = split_within_bound(measured, "v2", share)
        agreed, checked = predictions_match(measured, estimators)
        ok = within and still == share and agreed == checked == total == MEASURE_REQUESTS
        split_ok = split_ok and ok
        n.say(
            f"   {total} answers: v2 served {k} ({k / max(total, 1):.1%}), weight {share:.0%} +- {bound:.1%} "
            f"(4 sigma); {agreed}/{checked} equal to the serving variant's model.predict"
        )
        observed = f"v2 served {k}/{total} = {k / max(total, 1):.1%} (weight {share:.0%} +-{bound:.1%})"
        n.result(f"canary v2 at {share:.0%}", observed, ok)
        n.mark(f"v2 at {share:.0%}: {k}/{total} requests to v2")
        n.say(f"   $ sagepilot resume {ENDPOINT}: {operator(sandbox, 'resume', ENDPOINT)}")
    sandbox.wait_for(lambda: watcher.share("v2") == 1.0, timeout=60)
    at_full = traffic.burst(100)
    agreed, checked = predictions_match(at_full, estimators)
    full_ok = all(o.variant == "v2" for o in at_full) and agreed == checked == 100
    n.say(f"   v2 at 100%: {sum(o.variant == 'v2' for o in at_full)}/100 requests served by v2")
    n.result("canary v2 at 100%", f"v2 served {sum(o.variant == 'v2' for o in at_full)}/100", full_ok)
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("STABLE", 2, None), timeout=60)
    n.mark("v2 promoted")
    n.check(
        "the measured split followed the weights at 10% and 50% (4-sigma binomial bound), 100% at 100%, and every "
        "answer was the serving variant's own prediction",
        split_ok and full_ok,
    )
    n.check(
        "v2's share went 10% -> 50% -> 100%, then it was promoted alone",
        watcher.shares_seen("v2")[-3:] == [0.1, 0.5, 1.0] and watcher.current() == ("InService", (("v2", 1.0),)),
    )

    step += 1
    cw = sandbox.client("cloudwatch")
    alarm = f"{ENDPOINT}-v3-5xx"
    n.say(f"{step}. a deliberately broken v3 (half of its records make its model fail) is approved")
    v3_url = _upload_example(
        s3, bucket, "models/churn/v3-broken/model.tar.gz", seed=3, version="v3-broken", broken_share=0.5
    )
    v3 = _register(sm, v3_url)
    approve(v3)
    sandbox.wait_for(lambda: (watcher.share("v3") or 0) > 0, timeout=60)
    n.say("   clients keep calling: v3's share of them fails with ModelError (the model's 500)")
    fired: list[str] = []

    def rolled_back_yet() -> bool:
        if not fired:
            found = cw.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
            if found and found[0]["StateValue"] == "ALARM":
                fired.append(found[0]["StateReason"])
                n.mark(f"{alarm} ALARM")
        return state_of(ENDPOINT) == ("STABLE", 2, None)

    outcomes = traffic.until(rolled_back_yet, timeout=60)
    errors = [o for o in outcomes if o.error == "ModelError"]
    package = sm.describe_model_package(ModelPackageName=v3)
    statuses = sorted({o.original_status or 0 for o in errors})
    n.say(
        f"   {len(outcomes)} requests, {len(errors)} ModelError (OriginalStatusCode {statuses}); "
        f"v3 served {sum(o.variant == 'v3' for o in outcomes)} answers"
    )
    n.say(f"   {alarm} went to ALARM: {fired[0] if fired else '(not seen)'}")
    n.say(f"   v3 in the registry: {package['ModelApprovalStatus']}: {package.get('ApprovalDescription', '')}")
    rolled_back = (
        watcher.current() == ("InService", (("v2", 1.0),))
        and package["ModelApprovalStatus"] == "Rejected"
        and alarm in package.get("ApprovalDescription", "")
    )
    n.check(
        "v3's real errors put its 5xx alarm in ALARM on the published metrics, which rolled it back at once; "
        "the registry says why",
        rolled_back and len(errors) >= 5 and bool(fired),
    )
    n.result("broken v3", f"{len(errors)} ModelErrors -> {alarm} ALARM -> rolled back, Rejected", rolled_back)
    n.mark(f"v3 rolled back by {alarm}")

    step += 1
    n.say(f"{step}. approve v4, then reject it during its canary")
    v4 = _register(sm, _upload_example(s3, bucket, "models/churn/v4/model.tar.gz", seed=4, version="v4"))
    approve(v4)
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("CANARY", 2, 4), timeout=60)
    sandbox.wait_for(lambda: watcher.share("v4") == 0.1, timeout=30)
    n.say(f"   aws sagemaker update-model-package --model-package-arn {v4} --model-approval-status Rejected")
    sm.update_model_package(ModelPackageArn=v4, ModelApprovalStatus="Rejected", ApprovalDescription="fails QA")
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("STABLE", 2, None), timeout=60)
    rejected_ok = watcher.shares_seen("v4", in_service_only=False)[-2:] == [0.1, 0.0] and watcher.current() == (
        "InService",
        (("v2", 1.0),),
    )
    n.check("rejecting v4 sent all traffic back to v2 at once, then removed v4", rejected_ok)
    n.result("v4 rejected in canary", "all traffic back to v2, v4 removed", rejected_ok)
    n.mark("v4 rejected and removed")

    step += 1
    other = "churn-shadow"
    n.say(f"{step}. a second group, {other}, names {ENDPOINT} (its sagepilot:endpoint-name tag) and approves a version")
    config = sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    inbox = _inbox(sandbox)
    n.say(f"   aws sagemaker create-model-package-group --model-package-group-name {other} --tags "
          f"Key=sagepilot:endpoint-name,Value={ENDPOINT}")  # fmt: skip
    sm.create_model_package_group(
        ModelPackageGroupName=other, Tags=[{"Key": "sagepilot:endpoint-name", "Value": ENDPOINT}]
    )
    shadow = _register(sm, v1_url, group=other)
    approve(shadow)
    subject = f"INVALID SETTINGS: model package group {other}"
    notice = sandbox.wait_for(lambda: inbox(subject), timeout=60)
    n.say(f"   notified: {subject}: {notice.get('what', '')}")
    refusal = f"refused group {other} (v1 approved): it names {ENDPOINT}, which belongs to group {GROUP}"
    if any(refusal in line for line in _history(sandbox.client("dynamodb"), table, ENDPOINT)):
        n.say(f"   {ENDPOINT}'s history: {refusal}")
    untouched = (
        notice.get("owner") == GROUP
        and sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == config
        and watcher.current() == ("InService", (("v2", 1.0),))
        and state_of(ENDPOINT) == ("STABLE", 2, None)
        and [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == [ENDPOINT]
    )
    n.check(
        f"a second group naming {ENDPOINT}, which {GROUP} owns, is refused: nothing deployed, v2 untouched", untouched
    )
    n.result(
        "second group naming an owned endpoint", f"{other} refused (INVALID SETTINGS), {ENDPOINT} untouched", untouched
    )
    n.mark(f"{other} refused")

    step += 1
    failed_health_check_step(
        sandbox, n, step=step, endpoint=ENDPOINT, live="v2", register=lambda url: _register(sm, url),
        upload=_upload_example, approve=approve, traffic=traffic,
    )  # fmt: skip

    step += 1
    idle = f"{ENDPOINT}-v2-low-traffic"
    n.say(f"{step}. v2 runs 3 instances (as target tracking left it after the bursts); then traffic stops")
    sm.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT, DesiredWeightsAndCapacities=[{"VariantName": "v2", "DesiredInstanceCount": 3}]
    )
    sandbox.wait_for(lambda: _instances(sm, "v2") == 3, timeout=30)
    traffic.stop_trickle()
    stopped = time.monotonic()
    n.say(f"   v2 runs 3 instances; the client stopped; {idle} counts the invocations per (compressed) 5 minutes")
    n.mark("traffic stopped")
    sandbox.wait_for(lambda: _instances(sm, "v2") == 1, timeout=60)
    waited = time.monotonic() - stopped
    alarm_state = cw.describe_alarms(AlarmNames=[idle])["MetricAlarms"]
    reason = alarm_state[0]["StateReason"] if alarm_state else ""
    n.say(f"   {idle}: {alarm_state[0]['StateValue'] if alarm_state else '?'}: {reason}")
    scaled_in = _instances(sm, "v2") == 1
    n.check("the low-traffic alarm fired on the missing invocations and scaled v2 in to its minimum: 3 -> 1", scaled_in)
    n.result("idle endpoint", f"{idle} ALARM after {waited:.0f} s without traffic -> v2 scaled in 3 -> 1", scaled_in)
    n.mark("v2 scaled in 3 -> 1")

    step += 1
    n.say(f"{step}. v6 is approved while nobody calls the endpoint: its canary gets no traffic, so no evidence")
    v6 = _register(sm, _upload_example(s3, bucket, "models/churn/v6/model.tar.gz", seed=6, version="v6"))
    approve(v6)
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("CANARY", 2, 6), timeout=60)
    sandbox.wait_for(lambda: watcher.share("v6") == 0.1, timeout=30)
    ddb = sandbox.client("dynamodb")

    def reported() -> list[str]:
        return [line for line in _history(ddb, table, ENDPOINT) if "NO TRAFFIC" in line]

    started = time.monotonic()
    sandbox.wait_for(lambda: bool(reported()), timeout=90)
    n.say(f"   after {time.monotonic() - started:.0f} s: {reported()[0].split('  ', 1)[-1]}")
    time.sleep(3 * HELD_BAKE_SECONDS)  # bake after bake: it stays where it is
    held_ok = (
        watcher.current() == ("InService", (("v2", 0.9), ("v6", 0.1)))
        and state_of(ENDPOINT) == ("CANARY", 2, 6)
        and len(reported()) == 1
    )
    n.check(
        "v6's canary got no traffic: held at 10% and reported once (NO TRAFFIC), never promoted on silence", held_ok
    )
    n.result("v6 without traffic", "held at 10%, NO TRAFFIC announced once, not promoted", held_ok)
    n.mark("v6 held: NO TRAFFIC")
    n.say(f"   $ sagepilot rollback {ENDPOINT}: {operator(sandbox, 'rollback', ENDPOINT)}")
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("STABLE", 2, None), timeout=60)
    watcher.stop()
    trickled = traffic.trickled
    n.say(
        f"   the steady client made {len(trickled)} requests: {_tally(trickled)}; "
        f"{sum(1 for o in trickled if o.error == 'ModelError')} of them ModelError (v3's)"
    )
    history = _history(sandbox.client("dynamodb"), table, ENDPOINT)
    n.say(f"   the endpoint's history (sagepilot --table {table} history {ENDPOINT}):")
    for line in history:
        n.say(f"     {line}")
    operator_view(sandbox, n, step=step + 1, traffic=traffic, idle_alarm=idle)
    gate_scenario(sandbox, n, step=step + 2, traffic=traffic, state_of=state_of)
    shadow_scenario(sandbox, n, step=step + 3, traffic=traffic, state_of=state_of)


def gate_scenario(
    sandbox: Any,
    n: Any,
    *,
    step: int,
    traffic: Traffic,
    state_of: Callable[[str], tuple[str, int | None, int | None] | None],
) -> None:
    """The canary's statistical gate (issue 18) on real traffic: v7 fails a few percent of its requests, far
    under every alarm's threshold, and is rolled back by the gate, with its report; v8, as good as v2, is moved
    on by the gate long before its bake and promoted."""
    sm, s3 = sandbox.client("sagemaker"), sandbox.client("s3")
    bucket = sandbox.stack.outputs["DataBucketName"]
    group_arn = sm.describe_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupArn"]
    tags = {
        "canary-steps": "50,100",
        "bake-seconds": str(GATE_BAKE_SECONDS),
        "max-bake-seconds": str(GATE_BAKE_SECONDS),
        "error-margin": "0.02",
        "alarm-5xx-threshold": "1000000",  # no alarm can see v7: only the comparison with v2 can
    }
    n.say(
        f"{step}. the canary's statistical gate (on by default): remove the group's sagepilot:analysis=off, tag it "
        + " ".join(f"sagepilot:{k}={v}" for k, v in tags.items())
    )
    sm.delete_tags(ResourceArn=group_arn, TagKeys=["sagepilot:analysis"])
    sm.add_tags(ResourceArn=group_arn, Tags=[{"Key": f"sagepilot:{k}", "Value": v} for k, v in tags.items()])

    def approve(arn: str) -> None:
        sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")

    v7_url = _upload_example(
        s3, bucket, "models/churn/v7-subtle/model.tar.gz", seed=7, version="v7-subtle", broken_share=0.08
    )
    v7 = _register(sm, v7_url)
    approve(v7)
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("CANARY", 2, 7), timeout=60)
    n.say("   v7 (a few percent of its answers fail) is approved: canary at 50% beside v2; clients call")
    started = time.monotonic()
    served = traffic.until(lambda: state_of(ENDPOINT) != ("CANARY", 2, 7), timeout=120, records=1)
    decided = time.monotonic() - started
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("STABLE", 2, None), timeout=60)
    failed = sum(1 for o in served if o.error == "ModelError")  # v7's (v2 fails none); an error names no variant
    answered = sum(1 for o in served if o.variant == "v7") + failed
    package = sm.describe_model_package(ModelPackageName=v7)
    description = str(package.get("ApprovalDescription", ""))
    n.say(f"   v7 served {answered} requests, {failed} failed; after {decided:.0f} s: {package['ModelApprovalStatus']}")
    n.say(f"   {description}")
    gate_ok = package["ModelApprovalStatus"] == "Rejected" and "canary analysis: v7 is worse than v2" in description
    page = os.path.join(tempfile.gettempdir(), f"{ENDPOINT}-report.html")
    report = operator(sandbox, "report", ENDPOINT, "--bucket", bucket, "--html", page)
    _show(n, f"report {ENDPOINT}", report)
    report_ok = "WORSE" in report and os.path.exists(page) and "<svg" in Path(page).read_text(encoding="utf-8")
    n.check(
        f"v7, worse than v2 but under every alarm's threshold, was rolled back by the gate after {decided:.0f} s "
        f"(bake {GATE_BAKE_SECONDS} s) and Rejected naming the metric; its report printed and written to {page}",
        gate_ok and report_ok and decided < GATE_BAKE_SECONDS,
    )
    n.result("gate: subtle v7", f"{failed}/{answered} failed -> WORSE -> rolled back in {decided:.0f} s", gate_ok)
    n.mark("v7 rolled back by the canary analysis")

    v8 = _register(sm, _upload_example(s3, bucket, "models/churn/v8/model.tar.gz", seed=8, version="v8"))
    approve(v8)
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("CANARY", 2, 8), timeout=60)
    n.say("   v8, as good as v2, is approved: canary at 50%; clients call")
    started = time.monotonic()

    def at_full() -> bool:
        found = sm.describe_endpoint(EndpointName=ENDPOINT).get("ProductionVariants") or []
        weights = {v["VariantName"]: float(v.get("CurrentWeight") or 0) for v in found}
        return weights.get("v8", 0) > 0 and weights.get("v2", 0) == 0

    traffic.until(at_full, timeout=120, records=1)
    moved = time.monotonic() - started
    traffic.until(lambda: state_of(ENDPOINT) == ("STABLE", 8, None), timeout=GATE_BAKE_SECONDS + 60, records=1)
    promoted = time.monotonic() - started
    early = state_of(ENDPOINT) == ("STABLE", 8, None) and moved < GATE_BAKE_SECONDS
    n.check(
        f"v8 was shown not worse and moved to 100% after {moved:.0f} s (its bake: {GATE_BAKE_SECONDS} s), then "
        f"promoted after {promoted:.0f} s (today's fixed schedule: {2 * GATE_BAKE_SECONDS} s)",
        early,
    )
    n.result("gate: good v8", f"100% after {moved:.0f} s, promoted after {promoted:.0f} s", early)
    n.mark("v8 promoted early by the canary analysis")


def _state_in(listing: str, alarm: str) -> str | None:
    """The STATE column of `alarm`'s row in `sagepilot alarms` output."""
    row = next((line.split() for line in listing.splitlines() if line.split()[:1] == [alarm]), None)
    return row[1] if row and len(row) > 1 else None


def figure(listing: str, label: str) -> float:
    """The number after `label` in `sagepilot metrics` output (0 when the row is missing)."""
    for line in listing.splitlines():
        if line.strip().startswith(label + "  "):
            rest = line.strip()[len(label) :].split()
            try:
                return float(rest[0].replace(",", ""))
            except (IndexError, ValueError):
                return 0.0
    return 0.0


def _show(n: Any, command: str, output: str) -> None:
    n.say(f"   $ sagepilot {command}")
    for line in output.splitlines():
        n.say(f"     {line}")


def operator_view(sandbox: Any, n: Any, *, step: int, traffic: Traffic, idle_alarm: str) -> None:
    """The operator's CLI on the figures the scenario left in CloudWatch (see the module docstring)."""
    cw = sandbox.client("cloudwatch")
    n.say(f"{step}. what an operator sees: the functions' EMF lines became CloudWatch metrics, as in Lambda")
    firing = operator(sandbox, "alarms", ENDPOINT)
    _show(n, f"alarms {ENDPOINT}", firing)
    n.say("   traffic comes back: the idle alarm sees invocations again")
    traffic.trickle()
    try:
        sandbox.wait_for(
            lambda: cw.describe_alarms(AlarmNames=[idle_alarm])["MetricAlarms"][0]["StateValue"] == "OK", timeout=60
        )
        recovered = operator(sandbox, "alarms", ENDPOINT)
    finally:
        traffic.stop_trickle()
    _show(n, f"alarms {ENDPOINT}", recovered)
    states = (_state_in(firing, idle_alarm), _state_in(recovered, idle_alarm))
    n.check(
        f"`sagepilot alarms` showed {idle_alarm} in ALARM, then OK once traffic was back", states == ("ALARM", "OK")
    )
    figures = operator(sandbox, "metrics", "--since", "1h")
    _show(n, "metrics --since 1h", figures)
    wanted = {
        "files accepted": 4,  # the 3 good files and the one the model refused
        "files rejected": 3,  # the 3 bad files, then the refused one's JOB_FAILED
        "transform jobs started": 3,
        "transform jobs completed": 2,
        "transform jobs failed": 1,
        "endpoints deployed": 1,
        "rollouts started": 3,
        "rollout steps": 2,
        "promotions": 1,
        "rollbacks": 2,  # v3 by its alarm, v4 rejected
        "scale-ins": 1,
        "training jobs started": 2,
        "models registered": 2,
        "reconcile runs": 1,
    }
    short = {label: figure(figures, label) for label, least in wanted.items() if figure(figures, label) < least}
    v2_row = next((line.split() for line in figures.splitlines() if line.split()[:2] == [ENDPOINT, "v2"]), [])
    invocations = float(v2_row[2].replace(",", "")) if len(v2_row) > 2 else 0.0
    causes = "(alarm 1" in figures and "rejected 1" in figures and "EMPTY_FILE 1" in figures
    n.check(
        "`sagepilot metrics` shows the scenario's real figures: invocations per variant, files and jobs, rollout "
        "steps, rollbacks by cause, the scale-in" + (f" (short: {short})" if short else ""),
        not short and invocations > 0 and causes,
    )
    status = operator(sandbox, "status")
    _show(n, "status", status)
    healthy = status.startswith("control plane sagepilot: healthy")
    n.check("`sagepilot status`: the control plane's own alarms, none in ALARM, and its queues", healthy)
    n.result(
        "operator view",
        f"{idle_alarm} {states[0]} -> {states[1]}; metrics: {invocations:.0f} v2 invocations, "
        f"{figure(figures, 'files accepted'):.0f} files accepted, {figure(figures, 'rollbacks'):.0f} rollbacks",
        states == ("ALARM", "OK") and not short and invocations > 0 and causes and healthy,
    )


def _tally(outcomes: list[Outcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        key = outcome.variant or outcome.error or "?"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _instances(sm: Any, variant: str) -> int | None:
    found = sm.describe_endpoint(EndpointName=ENDPOINT)
    if found["EndpointStatus"] != "InService":
        return None
    return next(
        (v.get("CurrentInstanceCount") for v in found["ProductionVariants"] if v["VariantName"] == variant), None
    )


def _inbox(sandbox: Any) -> Callable[[str], dict[str, Any] | None]:
    """A queue subscribed to the stack's notification topic, as a person's mailbox; the returned function
    answers the detail of the first notification with that subject received so far (None if none yet)."""
    sqs = sandbox.client("sqs")
    url = sqs.create_queue(QueueName="demo-notification-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sandbox.client("sns").subscribe(
        TopicArn=sandbox.stack.outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=arn
    )
    seen: dict[str, dict[str, Any]] = {}

    def find(subject: str) -> dict[str, Any] | None:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            envelope = json.loads(message["Body"])
            seen.setdefault(str(envelope.get("Subject")), json.loads(envelope["Message"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return seen.get(subject)

    return find


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


def shadow_scenario(
    sandbox: Any,
    n: Any,
    *,
    step: int,
    traffic: Traffic,
    state_of: Callable[[str], tuple[str, int | None, int | None] | None],
) -> None:
    """Shadow tests (issue 18): the candidate first runs as the endpoint's shadow variant, answering a copy of
    every request that no caller sees, judged by the gate on those copies; v9 (as bad as v7) is rolled back with
    zero user impact, v10 passes and is promoted."""
    sm, s3 = sandbox.client("sagemaker"), sandbox.client("s3")
    bucket = sandbox.stack.outputs["DataBucketName"]
    group_arn = sm.describe_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupArn"]
    tags = {"strategy": "shadow", "shadow-percent": "100", "shadow-then": "promote"}
    n.say(f"{step}. shadow tests: tag the group " + " ".join(f"sagepilot:{k}={v}" for k, v in tags.items()))
    sm.add_tags(ResourceArn=group_arn, Tags=[{"Key": f"sagepilot:{k}", "Value": v} for k, v in tags.items()])

    def approve(arn: str) -> None:
        sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")

    v9_url = _upload_example(
        s3, bucket, "models/churn/v9-subtle/model.tar.gz", seed=9, version="v9-subtle", broken_share=0.08
    )
    v9 = _register(sm, v9_url)
    approve(v9)
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("SHADOW", 8, 9), timeout=60)
    sandbox.wait_for(
        lambda: bool(sm.describe_endpoint(EndpointName=ENDPOINT).get("ShadowProductionVariants")), timeout=60
    )
    found = sm.describe_endpoint(EndpointName=ENDPOINT)
    production = [v["VariantName"] for v in found["ProductionVariants"]]
    shadows = [v["VariantName"] for v in found["ShadowProductionVariants"]]
    n.say(f"   v9 approved: production variants {production}, shadow variants {shadows}; clients call")
    started = time.monotonic()
    served = traffic.until(lambda: state_of(ENDPOINT) != ("SHADOW", 8, 9), timeout=120, records=1)
    decided = time.monotonic() - started
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("STABLE", 8, None), timeout=60)
    seen_errors = sum(1 for o in served if o.error == "ModelError")
    answered_by = sorted({o.variant for o in served if o.variant})
    package = sm.describe_model_package(ModelPackageName=v9)
    description = str(package.get("ApprovalDescription", ""))
    n.say(f"   {len(served)} requests answered by {answered_by}, {seen_errors} ModelError; after {decided:.0f} s:")
    n.say(f"   v9 {package['ModelApprovalStatus']}: {description}")
    unseen = (
        package["ModelApprovalStatus"] == "Rejected"
        and "canary analysis: v9 is worse than v8" in description
        and seen_errors == 0
        and answered_by == ["v8"]
        and "ShadowProductionVariants" not in sm.describe_endpoint(EndpointName=ENDPOINT)
    )
    n.check(
        "v9, as a shadow, was judged worse on the copies it answered and rolled back; no caller got one of its "
        "answers or failures (zero user impact)",
        unseen,
    )
    n.result("shadow: subtle v9", f"WORSE on its copies -> rolled back in {decided:.0f} s, 0 callers affected", unseen)
    n.mark("v9 rolled back from its shadow test")

    v10 = _register(sm, _upload_example(s3, bucket, "models/churn/v10/model.tar.gz", seed=10, version="v10"))
    approve(v10)
    sandbox.wait_for(lambda: state_of(ENDPOINT) == ("SHADOW", 8, 10), timeout=60)
    n.say("   v10, as good as v8, is approved: shadow test; clients call")
    started = time.monotonic()
    during = traffic.until(lambda: state_of(ENDPOINT) != ("SHADOW", 8, 10), timeout=120, records=1)
    traffic.until(lambda: state_of(ENDPOINT) == ("STABLE", 10, None), timeout=60, records=1)
    promoted = time.monotonic() - started
    passed = state_of(ENDPOINT) == ("STABLE", 10, None) and {o.variant for o in during if o.variant} == {"v8"}
    n.check(
        f"v10 passed its shadow test (callers served by v8 meanwhile) and was promoted after {promoted:.0f} s", passed
    )
    n.result("shadow: good v10", f"passed its shadow test, promoted after {promoted:.0f} s", passed)
    n.mark("v10 promoted after its shadow test")
