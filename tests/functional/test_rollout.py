"""The rollout path under the embedded AWS: registry events, endpoint transitions and alarms routed by
the template's own rules to the rollout service, wired as its handler wires it.

`Rollout.pump` plays EventBridge and SageMaker: it delivers what the RolloutFunction's rules let
through (read from their delivery queues), and lets SageMaker finish each endpoint update, until
nothing moves. Bake times pass on a fake clock; the schedule is a `Scheduled Event` like the real one.
While time passes, clients call the endpoint (`RATE` invocations a second, split by the variants' weights):
SageMaker's per-variant `Invocations` metrics are put into CloudWatch at the fake clock's time, the evidence
a canary step needs before it moves on. `rollout.rate = 0` is an endpoint nobody calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

import sagepilot_cli as cli
from sagepilot import wiring
from sagepilot.adapters.rollout_state import RolloutStore
from sagepilot.domain.names import rollout_alarm_names
from sagepilot.domain.rollout import Phase
from sagepilot.events import parse_rollout_trigger
from sagepilot.metrics import MemoryRecorder
from sagepilot.services.rollout import Outcome, Rollouts
from sagepilot.settings import load_rollout_settings
from sagepilot_sandbox import faithful
from sagepilot_sandbox.stack.provision import Stack

from .conftest import ACCOUNT, REGION, FakeClock, Notifications

ROLLOUT = "RolloutFunction"
GROUP = "churn"
ENDPOINT = "sagepilot-churn"
BAKE = 600
# Invocations per second of the endpoint's clients while time passes: enough for the canary gate to decide a 10% step
# within a 600-s tick.
RATE = 40.0


@dataclass
class Rollout:
    service: Rollouts
    stack: Stack
    clients: Callable[[str], Any]
    clock: FakeClock
    outcomes: list[Outcome] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    rate: float = RATE

    @property
    def sm(self) -> Any:
        return self.clients("sagemaker")

    def _received(self) -> list[dict[str, Any]]:
        sqs = self.clients("sqs")
        events = []
        for delivery in self.stack.functions[ROLLOUT].rule_deliveries:
            while True:
                messages = sqs.receive_message(QueueUrl=delivery.delivery_queue_url, MaxNumberOfMessages=10).get(
                    "Messages", []
                )
                if not messages:
                    break
                for message in messages:
                    events.append(json.loads(message["Body"]))
                    sqs.delete_message(QueueUrl=delivery.delivery_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return events

    def handle(self, event: dict[str, Any]) -> list[Outcome]:
        self.delivered.append(event)
        outcomes = self.service.handle(parse_rollout_trigger(event))
        self.outcomes += outcomes
        return outcomes

    def pump(self, *, settle: bool = True, rounds: int = 30) -> None:
        """Deliver routed events and let SageMaker finish updates until nothing moves."""
        for _ in range(rounds):
            events = self._received()
            for event in events:
                self.handle(event)
            settled = faithful.settle_endpoint(ENDPOINT) if settle else []
            for event in settled:
                faithful.deliver_event(event)
            if not events and not settled:
                return
        raise AssertionError("the rollout did not settle")

    def serve(self, seconds: float) -> dict[str, int]:
        """`seconds` of the clients' calls (at `rate`), as SageMaker publishes them: each variant's share of
        the invocations, put as its `Invocations` datapoint at the end of the time that passes."""
        try:
            endpoint = self.endpoint()
        except self.sm.exceptions.ClientError:
            return {}
        if endpoint["EndpointStatus"] not in ("InService", "Updating") or self.rate <= 0:
            return {}
        served = {name: int(self.rate * seconds * share) for name, share in {**self.shares(), **self.copied()}.items()}
        at = datetime.fromtimestamp(self.clock() + seconds - 0.5, UTC)
        for variant, count in served.items():
            if count:
                self.put_invocations(variant, count, at)
        return served

    def put_invocations(self, variant: str, count: int, at: datetime) -> None:
        """`count` healthy invocations of `variant` as SageMaker publishes them: `Invocations`, no
        `Invocation5XXErrors`, and each request's `ModelLatency` (20 ms, far under the latency alarm)."""
        dimensions = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]
        self.clients("cloudwatch").put_metric_data(
            Namespace="AWS/SageMaker",
            MetricData=[
                {
                    "MetricName": "Invocations",
                    "Dimensions": dimensions,
                    "Timestamp": at,
                    "StatisticValues": {"SampleCount": count, "Sum": count, "Minimum": 1, "Maximum": 1},
                },
                {
                    "MetricName": "Invocation5XXErrors",
                    "Dimensions": dimensions,
                    "Timestamp": at,
                    "StatisticValues": {"SampleCount": count, "Sum": 0, "Minimum": 0, "Maximum": 0},
                },
                {
                    "MetricName": "ModelLatency",
                    "Dimensions": dimensions,
                    "Timestamp": at,
                    "Values": [20_000.0],
                    "Counts": [count],
                    "Unit": "Microseconds",
                },
            ],
        )

    def tick(self, seconds: float = BAKE) -> None:
        """Time passes (clients calling the endpoint meanwhile); the reconcile schedule fires."""
        self.serve(seconds)
        self.clock.advance(seconds)
        self.handle(
            {
                "version": "0", "id": "tick", "detail-type": "Scheduled Event", "source": "aws.events",
                "account": ACCOUNT, "time": "2026-11-25T10:00:00Z", "region": REGION,
                "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/reconcile"], "detail": {},
            }
        )  # fmt: skip
        self.pump()

    def register(self, status: str = "Approved") -> str:
        groups = self.sm.list_model_package_groups()["ModelPackageGroupSummaryList"]
        if not any(g["ModelPackageGroupName"] == GROUP for g in groups):
            self.sm.create_model_package_group(ModelPackageGroupName=GROUP)
        return str(
            self.sm.create_model_package(
                ModelPackageGroupName=GROUP,
                ModelApprovalStatus=status,
                InferenceSpecification={
                    "Containers": [
                        {
                            "Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/churn:1",
                            "ModelDataUrl": "s3://m/model.tar.gz",
                        }
                    ],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
            )["ModelPackageArn"]
        )

    def set_status(self, arn: str, status: str) -> None:
        self.sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status)

    def endpoint(self) -> dict[str, Any]:
        return dict(self.sm.describe_endpoint(EndpointName=ENDPOINT))

    def shares(self) -> dict[str, float]:
        variants = self.endpoint()["ProductionVariants"]
        total = sum(v["CurrentWeight"] for v in variants)
        return {v["VariantName"]: round(v["CurrentWeight"] / total, 3) for v in variants}

    def copied(self) -> dict[str, float]:
        """The endpoint's shadow variant (if any) and the share of requests SageMaker copies to it."""
        endpoint = self.endpoint()
        production = sum(v["CurrentWeight"] for v in endpoint["ProductionVariants"])
        return {v["VariantName"]: v["CurrentWeight"] / production for v in endpoint.get("ShadowProductionVariants", [])}

    def scaled_variants(self) -> set[str]:
        targets = self.clients("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
        prefix = f"endpoint/{ENDPOINT}/variant/"
        ids = [t["ResourceId"] for t in targets["ScalableTargets"]]
        return {rid[len(prefix) :] for rid in ids if rid.startswith(prefix)}

    def alarms(self) -> list[str]:
        return sorted(a["AlarmName"] for a in self.clients("cloudwatch").describe_alarms()["MetricAlarms"])

    def state(self) -> Any:
        return self.store().read(ENDPOINT)

    def store(self) -> RolloutStore:
        settings = load_rollout_settings(self.stack.functions[ROLLOUT].environment)
        return RolloutStore(self.clients("dynamodb"), settings.state_table, settings.lease_seconds)


def make_rollout(
    stack: Stack, clients: Callable[[str], Any], clock: FakeClock, metrics: MemoryRecorder | None = None
) -> Rollout:
    """The rollout service as its handler wires it (but on `clock`), with the test's drivers."""
    settings = load_rollout_settings(stack.functions[ROLLOUT].environment)
    return Rollout(wiring.rollouts(settings, clients, clock, metrics), stack, clients, clock)


@pytest.fixture
def rollout(stack: Stack, clients: Callable[[str], Any], clock: FakeClock) -> Rollout:
    return make_rollout(stack, clients, clock)


def alarm_only(rollout: Rollout, **tags: str) -> None:
    """The group opts out of the canary gate (`sagepilot:analysis` `off`, for teams that want alarm-only): its
    steps move on after their bake, as the tests calling this pin. The gate, on by default, has its own tests
    (test_canary_gate.py)."""
    every = {"analysis": "off", **tags}
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": f"sagepilot:{k}", "Value": v} for k, v in every.items()]
    )


def deploy_v1(rollout: Rollout) -> str:
    arn = rollout.register()
    rollout.pump()
    return arn


def test_first_approval_deploys_an_endpoint_with_autoscaling(rollout: Rollout, notifications: Notifications) -> None:
    deploy_v1(rollout)
    endpoint = rollout.endpoint()
    assert endpoint["EndpointStatus"] == "InService"
    assert rollout.shares() == {"v1": 1.0}
    assert rollout.scaled_variants() == {"v1"}
    policy = rollout.clients("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    [config] = [p["TargetTrackingScalingPolicyConfiguration"] for p in policy["ScalingPolicies"]]
    assert config["TargetValue"] == 1000 and config["ScaleInCooldown"] == 300 and config["ScaleOutCooldown"] == 60
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert [n["subject"] for n in notifications.drain()] == ["DEPLOYED: sagepilot-churn v1"]
    assert rollout.state().phase is Phase.STABLE


def test_a_pending_version_deploys_nothing(rollout: Rollout) -> None:
    rollout.register(status="PendingManualApproval")
    rollout.pump()
    assert rollout.outcomes == []  # the rule does not even deliver it
    assert rollout.sm.list_endpoints()["Endpoints"] == []


def test_canary_steps_after_each_bake_then_promotes_and_cleans_up(
    rollout: Rollout, notifications: Notifications
) -> None:
    alarm_only(rollout)  # the bake schedule (the gate would move a healthy step on before its bake)
    deploy_v1(rollout)
    configs_before = {c["EndpointConfigName"] for c in rollout.sm.list_endpoint_configs()["EndpointConfigs"]}
    rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    assert set(rollout_alarm_names(ENDPOINT, "v2")) <= set(rollout.alarms())
    rollout.tick(BAKE - 1)
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}  # not baked yet
    rollout.tick(1)
    assert rollout.shares() == {"v1": 0.5, "v2": 0.5}
    rollout.tick()
    assert rollout.shares() == {"v1": 0.0, "v2": 1.0}
    rollout.tick()
    assert rollout.shares() == {"v2": 1.0}
    assert rollout.scaled_variants() == {"v2"}
    # The promoted variant keeps its alarms (now its health alarms, plus low traffic); v1's are gone.
    assert [a for a in rollout.alarms() if a.startswith(ENDPOINT)] == [
        f"{ENDPOINT}-v2-5xx",
        f"{ENDPOINT}-v2-latency",
        f"{ENDPOINT}-v2-low-traffic",
    ]
    configs = {c["EndpointConfigName"] for c in rollout.sm.list_endpoint_configs()["EndpointConfigs"]}
    assert configs == {rollout.endpoint()["EndpointConfigName"]}
    assert not configs & configs_before
    models = [m["ModelName"] for m in rollout.sm.list_models()["Models"]]
    assert len(models) == 1 and "-v2-" in models[0]
    subjects = [n["subject"] for n in notifications.drain()]
    assert subjects[-1] == "PROMOTED: sagepilot-churn v2"
    history = [h.what for h in rollout.state().history]
    assert any("shifting to 50%" in h for h in history) and any("shifting to 100%" in h for h in history)


def test_an_alarm_rolls_back_at_once_and_records_it_in_the_registry(
    rollout: Rollout, notifications: Notifications
) -> None:
    deploy_v1(rollout)
    v2 = rollout.register()
    rollout.pump()
    errors_alarm, _ = rollout_alarm_names(ENDPOINT, "v2")
    rollout.clients("cloudwatch").set_alarm_state(
        AlarmName=errors_alarm, StateValue="ALARM", StateReason="Threshold Crossed: 12 errors"
    )
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}
    assert rollout.scaled_variants() == {"v1"}
    package = rollout.sm.describe_model_package(ModelPackageName=v2)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert "alarm" in package["ApprovalDescription"] and errors_alarm in package["ApprovalDescription"]
    subjects = [n["subject"] for n in notifications.drain()]
    assert "ROLLING BACK: sagepilot-churn v2" in subjects and "ROLLED BACK: sagepilot-churn v2" in subjects
    assert rollout.state().phase is Phase.STABLE
    # The rejection's own event arrives too: nothing more happens.
    rollout.tick()
    assert rollout.shares() == {"v1": 1.0}


def test_rejecting_the_candidate_rolls_back(rollout: Rollout) -> None:
    deploy_v1(rollout)
    v2 = rollout.register()
    rollout.pump()
    rollout.set_status(v2, "Rejected")
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}


def test_rejecting_the_live_version_reverts_to_the_previous_one(rollout: Rollout) -> None:
    deploy_v1(rollout)
    v2 = rollout.register()
    rollout.pump()
    for _ in range(3):
        rollout.tick()
    assert rollout.shares() == {"v2": 1.0}
    rollout.set_status(v2, "Rejected")
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}
    assert rollout.scaled_variants() == {"v1"}


def test_duplicated_and_late_events_change_nothing(rollout: Rollout) -> None:
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    config = rollout.endpoint()["EndpointConfigName"]
    for event in list(rollout.delivered):  # every event so far, again, in reverse order
        rollout.handle(event)
    for event in reversed(list(rollout.delivered)):
        rollout.handle(event)
    rollout.pump()
    assert rollout.endpoint()["EndpointConfigName"] == config
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}


def test_an_endpoint_that_is_updating_is_never_sent_another_update(rollout: Rollout) -> None:
    deploy_v1(rollout)
    rollout.register()
    rollout.pump(settle=False)
    assert rollout.endpoint()["EndpointStatus"] == "Updating"
    outcomes = rollout.service.on_endpoint_signal(ENDPOINT)
    assert outcomes.result == "waiting" and "Updating" in outcomes.note


def test_a_trigger_that_finds_the_lease_taken_leaves_it_to_the_holder(rollout: Rollout) -> None:
    deploy_v1(rollout)
    store = rollout.store()
    lease = store.acquire(ENDPOINT, "someone-else", rollout.clock())
    assert rollout.service.on_endpoint_signal(ENDPOINT).result == "deferred"
    assert store.release(lease, rollout.clock()) is False  # asked to rerun
    assert store.release(lease, rollout.clock()) is True


def test_invalid_group_settings_are_reported_and_nothing_is_deployed(
    rollout: Rollout, notifications: Notifications
) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": "sagepilot:canary-steps", "Value": "50,10"}]
    )
    rollout.register()
    rollout.pump()
    assert rollout.sm.list_endpoints()["Endpoints"] == []
    [note] = notifications.drain()
    assert note["subject"] == "INVALID SETTINGS: model package group churn"
    assert "sagepilot:canary-steps" in note["message"]["what"]
    assert "the reconcile schedule deploys the approved version within 15 minutes" in note["message"]["whatToDo"]


def test_an_unknown_sagepilot_tag_is_refused_as_invalid_settings_naming_the_closest_key(
    rollout: Rollout, notifications: Notifications
) -> None:
    """A typo (`sagepilot:bake-secs`) is not ignored, leaving the default bake in force without a word: the
    approval is refused as for any invalid tag, and a tag of another prefix still changes nothing."""
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP,
        Tags=[{"Key": "sagepilot:bake-secs", "Value": "60"}, {"Key": "team", "Value": "ml"}],
    )
    rollout.register()
    rollout.pump()
    assert rollout.sm.list_endpoints()["Endpoints"] == []
    [note] = notifications.drain()
    assert note["subject"] == "INVALID SETTINGS: model package group churn"
    assert "sagepilot:bake-secs (did you mean sagepilot:bake-seconds?)" in note["message"]["what"]
    assert "sagepilot:bake-seconds, sagepilot:canary-steps" in note["message"]["what"]  # the known keys, listed


def test_a_group_deleted_during_its_canary_rolls_back_and_the_endpoint_keeps_serving_the_live_version(
    rollout: Rollout, notifications: Notifications
) -> None:
    """SageMaker deletes only an empty group, so its versions go first: the canary's version is gone, the canary is
    rolled back, and the live version (its SageMaker model is the stack's) keeps serving, said once."""
    v1 = deploy_v1(rollout)
    v2 = rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    notifications.drain()
    for arn in (v1, v2):
        rollout.sm.delete_model_package(ModelPackageName=arn)
    rollout.sm.delete_model_package_group(ModelPackageGroupName=GROUP)
    for _ in range(3):
        rollout.tick()
    assert rollout.shares() == {"v1": 1.0} and rollout.endpoint()["EndpointStatus"] == "InService"
    assert rollout.state().phase is Phase.STABLE
    assert [n["subject"] for n in notifications.drain()] == [
        "ROLLING BACK: sagepilot-churn v2",
        "ROLLED BACK: sagepilot-churn v2",
        "NO APPROVED VERSION: sagepilot-churn",
    ]


def test_group_tags_choose_the_steps_and_the_bake(rollout: Rollout) -> None:
    alarm_only(rollout, **{"canary-steps": "25,100", "bake-seconds": "60"})  # the bake, not the gate, moves it
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.75, "v2": 0.25}
    rollout.tick(60)
    assert rollout.shares() == {"v1": 0.0, "v2": 1.0}


def test_operator_commands_through_the_cli(rollout: Rollout, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    table = ["--table", rollout.store()._table]
    assert cli.main([*table, "pause", ENDPOINT]) == 0
    rollout.pump()
    rollout.tick(10 * BAKE)
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}  # paused
    assert cli.main([*table, "rollouts"]) == 0
    listing = capsys.readouterr().out
    assert "CANARY (paused)" in listing and "v1=90%" in listing
    assert cli.main([*table, "promote", ENDPOINT]) == 0
    rollout.pump()
    assert rollout.shares() == {"v2": 1.0}
    assert cli.main([*table, "rollback", ENDPOINT]) == 2  # no canary any more
    assert "not in a canary" in capsys.readouterr().err
    assert cli.main([*table, "history", ENDPOINT]) == 0
    assert "promote requested by" in capsys.readouterr().out


@pytest.mark.parametrize("stack_overrides", [{"DeployStrategy": "canary"}])
def test_native_guardrails_strategy(rollout: Rollout) -> None:
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    update = rollout.endpoint()
    assert update["EndpointStatus"] == "InService"
    assert rollout.shares() == {"v2": 1.0}
    assert rollout.scaled_variants() == {"v2"}


@pytest.mark.parametrize("stack_overrides", [{"DeployStrategy": "canary"}])
def test_native_guardrails_roll_back_on_the_rollout_alarm(rollout: Rollout) -> None:
    deploy_v1(rollout)
    v2 = rollout.register()
    rollout.pump(settle=False)
    errors_alarm, _ = rollout_alarm_names(ENDPOINT, "v2")
    rollout.clients("cloudwatch").set_alarm_state(AlarmName=errors_alarm, StateValue="ALARM", StateReason="errors")
    rollout.pump()
    assert rollout.shares() == {"v1": 1.0}
    assert rollout.scaled_variants() == {"v1"}
    assert rollout.sm.describe_model_package(ModelPackageName=v2)["ModelApprovalStatus"] == "Rejected"


def test_every_rollout_decision_emits_its_metric(stack: Stack, clients: Callable[[str], Any], clock: FakeClock) -> None:
    metrics = MemoryRecorder()
    rollout = make_rollout(stack, clients, clock, metrics)
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    for _ in range(3):
        rollout.tick()
    assert rollout.shares() == {"v2": 1.0}
    rollout.register()
    rollout.pump()
    rollout.clients("cloudwatch").set_alarm_state(
        AlarmName=f"{ENDPOINT}-v3-5xx", StateValue="ALARM", StateReason="errors"
    )
    rollout.pump()
    assert metrics.total("EndpointsDeployed") == 1
    assert metrics.total("RolloutsStarted") == 2
    assert metrics.total("RolloutSteps") == 2
    assert metrics.total("Promotions") == 1
    assert metrics.total("Rollbacks", Cause="alarm") == 1
    [(_, elapsed, _)] = [m for m in metrics.emitted if m[0] == "ApprovalToFullTrafficSeconds"]
    assert elapsed >= 3 * BAKE
    assert metrics.total("ReconcileRuns") == 3
    assert {"Endpoint", "Variant"} <= set(next(d for n, _, d in metrics.emitted if n == "VariantWeight"))
    weights = [(d["Variant"], value) for n, value, d in metrics.emitted if n == "VariantWeight"]
    assert [value for variant, value in weights if variant == "v3"][:2] == [0.1, 0.0]  # as each move left it
    rollout.tick()  # the rollback finishes: v3 is removed, and its weight series still says it takes nothing
    assert rollout.shares() == {"v2": 1.0}
    weights = [(d["Variant"], value) for n, value, d in metrics.emitted if n == "VariantWeight"]
    assert [value for variant, value in weights if variant == "v3"][-1] == 0.0
    assert [value for variant, value in weights if variant == "v2"][-1] == 1.0


def test_a_newer_approval_during_a_canary_is_rolled_out_right_after_the_rollback(rollout: Rollout) -> None:
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    rollout.register()  # v3 supersedes the canary of v2
    rollout.pump()  # no schedule tick: the rollback's end starts v3 at once
    assert rollout.shares() == {"v1": 0.9, "v3": 0.1}


def test_an_operator_command_for_an_endpoint_the_stack_does_not_manage_is_refused_and_writes_nothing(
    rollout: Rollout, capsys: pytest.CaptureFixture[str]
) -> None:
    table = rollout.store()._table
    assert cli.main(["--table", table, "pause", "sagepilot-someone-else"]) == 2
    assert "not an endpoint this stack manages" in capsys.readouterr().err
    assert rollout.store()._ddb.scan(TableName=table)["Items"] == []


def test_a_first_approval_whose_event_was_lost_is_deployed_by_the_schedule(rollout: Rollout) -> None:
    """Found by trying it: with the approval rule disabled for a moment, a new group's first approval never
    reached the rollout function, and the schedule (which looked only at endpoints it records) never deployed it.
    It now looks, once per STABLE_CHECK_SECONDS, for groups approved but never deployed."""
    rollout.register()
    assert rollout._received()  # the approval's event, lost: never delivered
    assert rollout.sm.list_endpoints()["Endpoints"] == []
    rollout.tick()
    assert rollout.endpoint()["EndpointStatus"] == "InService"
    assert rollout.shares() == {"v1": 1.0}


def test_a_group_approved_with_invalid_tags_is_deployed_once_they_are_fixed(
    rollout: Rollout, notifications: Notifications, clock: FakeClock
) -> None:
    rollout.sm.create_model_package_group(
        ModelPackageGroupName=GROUP, Tags=[{"Key": "sagepilot:canary-steps", "Value": "50,10"}]
    )
    rollout.register()
    rollout.pump()
    assert [n["subject"] for n in notifications.drain()] == [f"INVALID SETTINGS: model package group {GROUP}"]
    rollout.tick()
    assert rollout.sm.list_endpoints()["Endpoints"] == []  # still invalid: nothing, and not said again
    assert notifications.drain() == []
    arn = rollout.sm.describe_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupArn"]
    rollout.sm.add_tags(ResourceArn=arn, Tags=[{"Key": "sagepilot:canary-steps", "Value": "10,100"}])
    for _ in range(3):  # the next look comes within STABLE_CHECK_SECONDS (900 s)
        rollout.tick()
    assert rollout.shares() == {"v1": 1.0}


@pytest.mark.parametrize("stack_overrides", [{"DeployableGroupPrefix": "team-a-"}])
def test_the_look_for_undeployed_groups_keeps_to_the_stacks_deployable_groups(rollout: Rollout) -> None:
    """A stack limited to groups named `team-a-*` (its approval rule's filter) does not deploy another team's
    approved group when its schedule looks for groups approved but never deployed."""
    rollout.register()  # group "churn": not this stack's
    rollout._received()
    rollout.tick()
    rollout.tick()
    assert rollout.sm.list_endpoints()["Endpoints"] == []


def test_a_canary_steps_edit_under_a_canary_is_said_and_its_new_share_gets_a_full_bake(
    rollout: Rollout, notifications: Notifications
) -> None:
    """The group's `sagepilot:canary-steps` edited from 10,50,100 to 100 while v2 has almost baked at 50%: v2 goes to
    100% with CANARY STEPS CHANGED (and a history line), and is promoted only after a full bake at 100% (before: in
    silence, and promoted by the endpoint event of that very weight change on the bake it had at 50%)."""
    alarm_only(rollout)
    deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    rollout.tick()
    assert rollout.shares() == {"v1": 0.5, "v2": 0.5}
    rollout.tick(BAKE - 1)
    notifications.drain()
    arn = rollout.sm.describe_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupArn"]
    rollout.sm.add_tags(ResourceArn=arn, Tags=[{"Key": "sagepilot:canary-steps", "Value": "100"}])
    rollout.tick(1)
    assert rollout.shares() == {"v1": 0.0, "v2": 1.0}
    [said] = notifications.drain()
    assert said["subject"] == "CANARY STEPS CHANGED: sagepilot-churn v2"
    assert said["message"]["previousSteps"] == [10, 50, 100] and said["message"]["share"] == 100
    assert rollout.state().phase is Phase.CANARY and rollout.state().steps == (100,)
    assert "the step's bake and evidence start again at 100%" in rollout.state().history[-1].what
    rollout.tick(BAKE - 1)
    assert rollout.shares() == {"v1": 0.0, "v2": 1.0}  # not promoted before a full bake at 100%
    rollout.tick(1)
    assert rollout.shares() == {"v2": 1.0}


def test_rejecting_the_live_version_during_a_canary_is_said_once_and_the_canary_goes_on(
    rollout: Rollout, notifications: Notifications
) -> None:
    v1 = deploy_v1(rollout)
    rollout.register()
    rollout.pump()
    notifications.drain()
    rollout.set_status(v1, "Rejected")
    rollout.pump()
    [said] = notifications.drain()
    assert said["subject"] == "LIVE VERSION REJECTED: sagepilot-churn v1"
    assert "not cut short" in said["message"]["what"] and "sagepilot promote" in said["message"]["what"]
    assert rollout.shares() == {"v1": 0.9, "v2": 0.1}
    assert rollout.state().live_rejected and rollout.state().history[-1].what == said["message"]["what"]
    for _ in range(4):
        rollout.tick()
    assert rollout.shares() == {"v2": 1.0}
    assert "LIVE VERSION REJECTED: sagepilot-churn v1" not in [n["subject"] for n in notifications.drain()]
