"""The sandbox's SageMaker real-time endpoints, driven through boto3 against moto.mock_aws with the
faithful patches: states that take time (moved on with complete_endpoint_transition), SageMaker's
refusals, weights, deployment guardrails with auto-rollback alarms, and the state-change events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sagepilot_sandbox import faithful
from sagepilot_sandbox.sagemaker import endpoints

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker"
EP_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/ep"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# moto.mock_aws resets boto3's default session, which then parses SageMaker's large service model again
# for every test; a session of our own parses it once.
SESSION = boto3.session.Session()


def client(service: str) -> Any:
    return SESSION.client(service, region_name=REGION)


class EventTap:
    """A queue behind an EventBridge rule: what a rule with `pattern` would hand its target."""

    def __init__(self, pattern: dict[str, Any]) -> None:
        self.sqs = client("sqs")
        events = client("events")
        name = f"tap-{abs(hash(json.dumps(pattern, sort_keys=True))) % 10**8}"
        self.url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, Targets=[{"Id": "tap", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"}])

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for message in got:
                out.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def sm(aws: None) -> Iterator[Any]:
    sagemaker = client("sagemaker")
    sagemaker.create_model(ModelName="m1", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img:1"})
    sagemaker.create_model(ModelName="m2", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img:2"})
    yield sagemaker
    faithful.clear_listeners()


@pytest.fixture
def tap(sm: Any) -> EventTap:
    return EventTap({"source": ["aws.sagemaker"], "detail-type": ["SageMaker Endpoint State Change"]})


def variant(
    name: str, model: str = "m1", count: int = 1, weight: float | None = 1.0, kind: str = "ml.m5.large"
) -> dict:
    spec: dict[str, Any] = {
        "VariantName": name,
        "ModelName": model,
        "InstanceType": kind,
        "InitialInstanceCount": count,
    }
    if weight is not None:
        spec["InitialVariantWeight"] = weight
    return spec


def config(sm: Any, name: str, *variants: dict) -> str:
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=list(variants))
    return name


def in_service(sm: Any, name: str = "ep", cfg: str = "c1", tags: dict[str, str] | None = None) -> dict:
    sm.create_endpoint(
        EndpointName=name, EndpointConfigName=cfg, Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()]
    )
    event = faithful.complete_endpoint_transition(name)
    assert event is not None
    return event


def error_of(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def weights(description: dict) -> dict[str, tuple[Any, ...]]:
    return {
        v["VariantName"]: (
            v.get("CurrentWeight"),
            v.get("DesiredWeight"),
            v.get("CurrentInstanceCount"),
            v.get("DesiredInstanceCount"),
        )
        for v in description["ProductionVariants"]
    }


# Creation -------------------------------------------------------------------------------------------
def test_a_new_endpoint_is_creating_then_in_service_with_the_configs_variants(sm: Any, tap: EventTap) -> None:
    config(sm, "c1", variant("a", count=2, weight=3.0), variant("b", weight=None))
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1", Tags=[{"Key": "team", "Value": "ml"}])

    creating = sm.describe_endpoint(EndpointName="ep")
    assert creating["EndpointStatus"] == "Creating"
    a, b = creating["ProductionVariants"]
    assert (a["DesiredWeight"], a["DesiredInstanceCount"], b["DesiredWeight"]) == (3.0, 2, 1.0)
    assert "CurrentWeight" not in a and "CurrentInstanceCount" not in a
    assert a["VariantStatus"][0]["Status"] == "Creating"
    assert a["VariantStatus"][0]["StatusMessage"] == "Launching 2 instance(s)."
    (created,) = tap.events()
    assert created["detail-type"] == "SageMaker Endpoint State Change"
    assert created["source"] == "aws.sagemaker" and created["resources"] == [EP_ARN]
    assert created["detail"]["EndpointStatus"] == "Creating"
    assert created["detail"]["Tags"] == {"team": "ml"}

    event = faithful.complete_endpoint_transition("ep")

    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "InService"
    assert weights(described) == {"a": (3.0, 3.0, 2, 2), "b": (1.0, 1.0, 1, 1)}
    assert all("VariantStatus" not in v for v in described["ProductionVariants"])
    assert event is not None
    detail = event["detail"]
    assert detail["EndpointName"] == "ep" and detail["EndpointArn"] == EP_ARN
    assert detail["EndpointConfigName"] == "c1"
    assert detail["EndpointStatus"] == "InService"
    assert detail["ProductionVariants"] == [
        {
            "VariantName": "a",
            "CurrentWeight": 3.0,
            "DesiredWeight": 3.0,
            "CurrentInstanceCount": 2,
            "DesiredInstanceCount": 2,
        },
        {
            "VariantName": "b",
            "CurrentWeight": 1.0,
            "DesiredWeight": 1.0,
            "CurrentInstanceCount": 1,
            "DesiredInstanceCount": 1,
        },
    ]
    assert detail["Tags"] == {"team": "ml"}
    assert isinstance(detail["CreationTime"], int) and detail["LastModifiedTime"] >= detail["CreationTime"]
    assert "FailureReason" not in detail
    assert faithful.complete_endpoint_transition("ep") is None  # nothing more to do


def test_creating_twice_and_missing_configs_are_refused_as_sagemaker_does(sm: Any) -> None:
    config(sm, "c1", variant("a"))
    assert error_of(sm.create_endpoint_config, EndpointConfigName="c1", ProductionVariants=[variant("a")]) == (
        "ValidationException",
        f'Cannot create already existing endpoint configuration "arn:aws:sagemaker:{REGION}:{ACCOUNT}:'
        'endpoint-config/c1".',
    )
    assert error_of(sm.create_endpoint, EndpointName="ep", EndpointConfigName="nope") == (
        "ValidationException",
        f'Could not find endpoint configuration "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/nope".',
    )
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    assert error_of(sm.create_endpoint, EndpointName="ep", EndpointConfigName="c1") == (
        "ValidationException",
        f'Cannot create already existing endpoint "{EP_ARN}".',
    )
    assert error_of(sm.describe_endpoint, EndpointName="other") == (
        "ValidationException",
        f'Could not find endpoint "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/other".',
    )


def test_an_injected_failure_leaves_the_endpoint_failed_and_only_deletable(sm: Any, tap: EventTap) -> None:
    config(sm, "c1", variant("AllTraffic"))
    config(sm, "c2", variant("AllTraffic", model="m2"))
    faithful.fail_next_endpoint(name_contains="ep")
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")

    event = faithful.complete_endpoint_transition("ep")

    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "Failed"
    reason = (
        "The primary container for production variant AllTraffic did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint."
    )
    assert described["FailureReason"] == reason
    assert event is not None and event["detail"]["EndpointStatus"] == "Failed"
    assert event["detail"]["FailureReason"] == reason
    assert error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="c2") == (
        "ValidationException",
        f'Cannot update failed endpoint "{EP_ARN}".',
    )
    sm.delete_endpoint(EndpointName="ep")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Deleting"
    assert [e["detail"]["EndpointStatus"] for e in tap.events()] == ["Creating", "Deleting"]


def test_an_injected_reason_and_name_filter_are_honoured(sm: Any) -> None:
    config(sm, "c1", variant("a"))
    faithful.fail_next_endpoint("ResourceLimitExceeded: no capacity", name_contains="blue")
    sm.create_endpoint(EndpointName="green", EndpointConfigName="c1")
    sm.create_endpoint(EndpointName="blue", EndpointConfigName="c1")
    faithful.complete_endpoint_transition("green")
    faithful.complete_endpoint_transition("blue")
    assert sm.describe_endpoint(EndpointName="green")["EndpointStatus"] == "InService"
    blue = sm.describe_endpoint(EndpointName="blue")
    assert (blue["EndpointStatus"], blue["FailureReason"]) == ("Failed", "ResourceLimitExceeded: no capacity")


# Updates ---------------------------------------------------------------------------------------------
def test_update_endpoint_switches_config_and_variants_when_its_transition_completes(sm: Any, tap: EventTap) -> None:
    config(sm, "c1", variant("a", count=2))
    config(sm, "c2", variant("a", count=2, weight=9.0), variant("b", model="m2", weight=1.0))
    in_service(sm)
    tap.events()

    assert sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")["EndpointArn"] == EP_ARN

    updating = sm.describe_endpoint(EndpointName="ep")
    assert updating["EndpointStatus"] == "Updating"
    assert updating["EndpointConfigName"] == "c1"  # the old fleet serves until the new one is ready
    assert weights(updating) == {"a": (1.0, 1.0, 2, 2)}
    pending = updating["PendingDeploymentSummary"]
    assert pending["EndpointConfigName"] == "c2"
    assert [v["VariantName"] for v in pending["ProductionVariants"]] == ["a", "b"]
    assert error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="c1") == (
        "ValidationException",
        f'Cannot update in-progress endpoint "{EP_ARN}".',
    )
    assert error_of(sm.delete_endpoint, EndpointName="ep") == (
        "ValidationException",
        f'Cannot update in-progress endpoint "{EP_ARN}".',
    )

    event = faithful.complete_endpoint_transition("ep")

    done = sm.describe_endpoint(EndpointName="ep")
    assert (done["EndpointStatus"], done["EndpointConfigName"]) == ("InService", "c2")
    assert weights(done) == {"a": (9.0, 9.0, 2, 2), "b": (1.0, 1.0, 1, 1)}
    assert "PendingDeploymentSummary" not in done and "LastDeploymentConfig" not in done
    assert event is not None and event["detail"]["EndpointConfigName"] == "c2"
    assert [e["detail"]["EndpointStatus"] for e in tap.events()] == ["Updating"]  # the API call's own event


def test_updates_are_refused_for_missing_endpoints_and_configs(sm: Any) -> None:
    config(sm, "c1", variant("a"))
    assert error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="c1") == (
        "ValidationException",
        f'Could not find endpoint "{EP_ARN}".',
    )
    in_service(sm)
    assert error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="c9") == (
        "ValidationException",
        f'Could not find endpoint configuration "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/c9".',
    )
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"


def test_registered_scalable_targets_block_removing_a_variant_or_changing_its_instance_type(sm: Any) -> None:
    aas = client("application-autoscaling")
    config(sm, "c1", variant("a"), variant("b"))
    config(sm, "without-b", variant("a"))
    config(sm, "b-bigger", variant("a"), variant("b", kind="ml.m5.xlarge"))
    config(sm, "b-new-model", variant("a"), variant("b", model="m2"))
    in_service(sm)
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/ep/variant/b",
        ScalableDimension=DIMENSION,
        MinCapacity=1,
        MaxCapacity=4,
    )
    message = (
        'The variant(s) "[b]" must be deregistered as scalable targets with AWS Application Auto Scaling '
        "before they can be removed or have their instance type updated."
    )

    assert error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="without-b") == (
        "ValidationException",
        message,
    )
    assert error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="b-bigger") == (
        "ValidationException",
        message,
    )
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="b-new-model")  # a new model is allowed
    faithful.complete_endpoint_transition("ep")

    aas.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId="endpoint/ep/variant/b", ScalableDimension=DIMENSION
    )
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="without-b")
    faithful.complete_endpoint_transition("ep")
    assert weights(sm.describe_endpoint(EndpointName="ep")) == {"a": (1.0, 1.0, 1, 1)}


def test_retain_all_variant_properties_keeps_the_live_weights_and_counts(sm: Any) -> None:
    config(sm, "c1", variant("a", count=1), variant("b", count=1))
    config(sm, "c2", variant("a", model="m2", count=1), variant("b", model="m2", count=1))
    in_service(sm)
    sm.update_endpoint_weights_and_capacities(
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": "a", "DesiredWeight": 4, "DesiredInstanceCount": 3}],
    )
    faithful.complete_endpoint_transition("ep")

    sm.update_endpoint(
        EndpointName="ep",
        EndpointConfigName="c2",
        RetainAllVariantProperties=True,
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredInstanceCount"}],
    )
    faithful.complete_endpoint_transition("ep")

    assert weights(sm.describe_endpoint(EndpointName="ep")) == {"a": (4.0, 4.0, 1, 1), "b": (1.0, 1.0, 1, 1)}


# Weights and capacities ------------------------------------------------------------------------------
def test_weights_change_desired_at_once_and_current_when_the_update_completes(sm: Any, tap: EventTap) -> None:
    config(sm, "c1", variant("blue", count=2, weight=9.0), variant("green", weight=1.0))
    in_service(sm)
    tap.events()

    sm.update_endpoint_weights_and_capacities(
        EndpointName="ep", DesiredWeightsAndCapacities=[{"VariantName": "green", "DesiredWeight": 5.0}]
    )

    updating = sm.describe_endpoint(EndpointName="ep")
    assert updating["EndpointStatus"] == "Updating"
    assert weights(updating) == {"blue": (9.0, 9.0, 2, 2), "green": (1.0, 5.0, 1, 1)}  # blue kept its values
    assert error_of(
        sm.update_endpoint_weights_and_capacities,
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": "blue", "DesiredWeight": 1.0}],
    ) == ("ValidationException", f'Cannot update in-progress endpoint "{EP_ARN}".')
    (updating_event,) = tap.events()
    assert updating_event["detail"]["EndpointStatus"] == "Updating"

    event = faithful.complete_endpoint_transition("ep")

    done = sm.describe_endpoint(EndpointName="ep")
    assert done["EndpointStatus"] == "InService"
    assert weights(done) == {"blue": (9.0, 9.0, 2, 2), "green": (5.0, 5.0, 1, 1)}
    assert event is not None
    assert [v["CurrentWeight"] for v in event["detail"]["ProductionVariants"]] == [9.0, 5.0]

    sm.update_endpoint_weights_and_capacities(
        EndpointName="ep", DesiredWeightsAndCapacities=[{"VariantName": "blue", "DesiredInstanceCount": 4}]
    )
    scaling = sm.describe_endpoint(EndpointName="ep")["ProductionVariants"][0]
    assert (scaling["CurrentInstanceCount"], scaling["DesiredInstanceCount"]) == (2, 4)
    assert scaling["VariantStatus"][0]["StatusMessage"] == "Scaling out desired instance count to 4."
    faithful.complete_endpoint_transition("ep")
    assert weights(sm.describe_endpoint(EndpointName="ep")) == {"blue": (9.0, 9.0, 4, 4), "green": (5.0, 5.0, 1, 1)}


def test_weights_of_unknown_or_repeated_variants_are_refused(sm: Any) -> None:
    config(sm, "c1", variant("a"))
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    assert error_of(
        sm.update_endpoint_weights_and_capacities,
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": "a", "DesiredWeight": 1.0}],
    ) == ("ValidationException", f'Cannot update in-progress endpoint "{EP_ARN}".')
    faithful.complete_endpoint_transition("ep")
    code, message = error_of(
        sm.update_endpoint_weights_and_capacities,
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": "zz", "DesiredWeight": 1.0}],
    )
    assert code == "ValidationException" and '"zz"' in message
    code, message = error_of(
        sm.update_endpoint_weights_and_capacities,
        EndpointName="ep",
        DesiredWeightsAndCapacities=[
            {"VariantName": "a", "DesiredWeight": 1.0},
            {"VariantName": "a", "DesiredWeight": 2.0},
        ],
    )
    assert code == "ValidationException" and "non-unique" in message
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"


# Deployment guardrails -------------------------------------------------------------------------------
def guarded(kind: str = "CANARY", alarms: tuple[str, ...] = ("ep-5xx",)) -> dict[str, Any]:
    routing: dict[str, Any] = {"Type": kind, "WaitIntervalInSeconds": 300}
    if kind == "CANARY":
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": 10}
    if kind == "LINEAR":
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": 25}
    return {
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": 120},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in alarms]},
    }


def alarm(name: str = "ep-5xx") -> Any:
    cw = client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": "ep"}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    return cw


@pytest.mark.parametrize(("kind", "bake"), [("ALL_AT_ONCE", 420.0), ("CANARY", 720.0), ("LINEAR", 1320.0)])
def test_a_guarded_update_knows_how_long_it_shifts_and_bakes(sm: Any, kind: str, bake: float) -> None:
    config(sm, "c1", variant("a"))
    config(sm, "c2", variant("a", model="m2", count=4))
    in_service(sm)
    alarm()

    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2", DeploymentConfig=guarded(kind))

    transition = faithful.pending_endpoint_transition("ep")
    assert transition is not None and transition.kind == "update"
    assert (transition.bake_seconds, transition.alarms) == (bake, ("ep-5xx",))
    assert sm.describe_endpoint(EndpointName="ep")["LastDeploymentConfig"] == guarded(kind)


def test_a_guarded_update_whose_alarm_fires_rolls_back_to_the_old_config(sm: Any, tap: EventTap) -> None:
    config(sm, "c1", variant("a"))
    config(sm, "c2", variant("a", model="m2"))
    in_service(sm)
    cw = alarm()
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2", DeploymentConfig=guarded())
    assert faithful.endpoint_alarms_tripped("ep") == []
    cw.set_alarm_state(AlarmName="ep-5xx", StateValue="ALARM", StateReason="5xx on the canary")
    assert faithful.endpoint_alarms_tripped("ep") == ["ep-5xx"]

    events = faithful.settle_endpoint("ep")

    assert [e["detail"]["EndpointStatus"] for e in events] == ["RollingBack", "InService"]
    described = sm.describe_endpoint(EndpointName="ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "c1")
    assert "ep-5xx" in described["FailureReason"] and "c2" in described["FailureReason"]
    assert described["LastDeploymentConfig"] == guarded()
    assert "PendingDeploymentSummary" not in described
    assert events[-1]["detail"]["FailureReason"] == described["FailureReason"]
    assert [e["detail"]["EndpointStatus"] for e in tap.events()] == ["Creating", "Updating"]


def test_a_guarded_update_without_alarms_in_alarm_completes(sm: Any) -> None:
    config(sm, "c1", variant("a"))
    config(sm, "c2", variant("a", model="m2"))
    in_service(sm)
    cw = alarm()
    cw.set_alarm_state(AlarmName="ep-5xx", StateValue="OK", StateReason="quiet")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2", DeploymentConfig=guarded("LINEAR"))

    assert [e["detail"]["EndpointStatus"] for e in faithful.settle_endpoint("ep")] == ["InService"]
    described = sm.describe_endpoint(EndpointName="ep")
    assert (described["EndpointConfigName"], described.get("FailureReason")) == ("c2", None)

    # RetainDeploymentConfig reuses the guardrails (and their alarms); a plain update drops them.
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c1", RetainDeploymentConfig=True)
    transition = faithful.pending_endpoint_transition("ep")
    assert transition is not None and transition.alarms == ("ep-5xx",)
    faithful.complete_endpoint_transition("ep")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
    assert "LastDeploymentConfig" not in sm.describe_endpoint(EndpointName="ep")


def test_an_invalid_deployment_config_is_refused(sm: Any) -> None:
    config(sm, "c1", variant("a"))
    config(sm, "c2", variant("a", model="m2"))
    in_service(sm)
    broken = guarded("CANARY")
    del broken["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["CanarySize"]
    code, message = error_of(sm.update_endpoint, EndpointName="ep", EndpointConfigName="c2", DeploymentConfig=broken)
    assert code == "ValidationException" and "CanarySize" in message
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"


def test_an_injected_update_failure_can_roll_back_or_fail(sm: Any) -> None:
    config(sm, "c1", variant("a"))
    config(sm, "c2", variant("a", model="m2"))
    in_service(sm)
    faithful.fail_next_endpoint("ClientError: the model crashed at start-up", rollback=True)
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
    assert [e["detail"]["EndpointStatus"] for e in faithful.settle_endpoint("ep")] == ["RollingBack", "InService"]
    described = sm.describe_endpoint(EndpointName="ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "c1")
    assert described["FailureReason"] == "ClientError: the model crashed at start-up"

    faithful.fail_next_endpoint("ClientError: again")
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
    assert sm.describe_endpoint(EndpointName="ep").get("FailureReason") is None  # a new update clears it
    faithful.complete_endpoint_transition("ep")
    failed = sm.describe_endpoint(EndpointName="ep")
    assert (failed["EndpointStatus"], failed["FailureReason"]) == ("Failed", "ClientError: again")


# Deletion and the rest -------------------------------------------------------------------------------
def test_deleting_an_endpoint_deregisters_its_variants_then_removes_it(sm: Any, tap: EventTap) -> None:
    aas = client("application-autoscaling")
    config(sm, "c1", variant("a"))
    in_service(sm)
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/ep/variant/a",
        ScalableDimension=DIMENSION,
        MinCapacity=1,
        MaxCapacity=2,
    )
    tap.events()

    sm.delete_endpoint(EndpointName="ep")

    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Deleting"
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert [e["detail"]["EndpointStatus"] for e in tap.events()] == ["Deleting"]
    assert faithful.complete_endpoint_transition("ep") is None
    assert error_of(sm.describe_endpoint, EndpointName="ep") == (
        "ValidationException",
        f'Could not find endpoint "{EP_ARN}".',
    )
    assert error_of(sm.delete_endpoint, EndpointName="ep")[1] == f'Could not find endpoint "{EP_ARN}".'
    in_service(sm)  # the name is free again


def test_allow_delete_in_progress_deletes_a_creating_endpoint(sm: Any) -> None:
    config(sm, "c1", variant("a"))
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    endpoints.allow_delete_in_progress = True
    sm.delete_endpoint(EndpointName="ep")
    assert faithful.complete_endpoint_transition("ep") is None
    assert sm.list_endpoints()["Endpoints"] == []


def test_a_stale_transition_token_changes_nothing(sm: Any) -> None:
    config(sm, "c1", variant("a"))
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    transition = faithful.pending_endpoint_transition("ep")
    assert transition is not None
    assert faithful.complete_endpoint_transition("ep", token=transition.token + 1000) is None
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Creating"
    assert faithful.complete_endpoint_transition("ep", token=transition.token) is not None


def test_listeners_hear_of_every_new_transition(sm: Any) -> None:
    heard: list[tuple[str, str, str]] = []
    faithful.on_endpoint_transition(lambda account, region, name: heard.append((account, region, name)))
    config(sm, "c1", variant("a"))
    in_service(sm)
    sm.update_endpoint_weights_and_capacities(
        EndpointName="ep", DesiredWeightsAndCapacities=[{"VariantName": "a", "DesiredWeight": 2.0}]
    )
    assert heard == [(ACCOUNT, REGION, "ep"), (ACCOUNT, REGION, "ep")]


def test_the_event_spelling_of_the_status_can_be_asked_for(sm: Any, tap: EventTap) -> None:
    endpoints.status_spelling = "event"
    config(sm, "c1", variant("a"))
    event = in_service(sm)
    assert event["detail"]["EndpointStatus"] == "IN_SERVICE"
    assert [e["detail"]["EndpointStatus"] for e in tap.events()] == ["CREATING"]
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"  # the API is unchanged


def test_endpoint_events_reach_only_rules_whose_pattern_matches(sm: Any) -> None:
    failed_only = EventTap(
        {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Endpoint State Change"],
            "detail": {"EndpointStatus": ["Failed"]},
        }
    )
    config(sm, "c1", variant("a"))
    faithful.fail_next_endpoint("boom")
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    assert failed_only.events() == []  # the Creating event did not match
    event = faithful.complete_endpoint_transition("ep")
    assert event is not None
    faithful.deliver_event(event)
    (delivered,) = failed_only.events()
    assert delivered["detail"]["FailureReason"] == "boom"
