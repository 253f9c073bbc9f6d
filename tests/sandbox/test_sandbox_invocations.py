"""InvokeEndpoint against the sandbox (sandbox/invocations.py, metrics.py, alarms.py), through boto3's
sagemaker-runtime client and moto.mock_aws with the faithful patches: routing among InService variants by
weight or TargetVariant to real model servers, SageMaker's ModelError and refusals, the AWS/SageMaker
metrics every invocation publishes, and the stack's kind of alarms judging them on a compressed clock."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagepilot_model_server.examples import feature_rows, load_estimator, to_csv
from sagepilot_sandbox.cloudwatch import alarms
from sagepilot_sandbox.sagemaker import endpoints, invocations
from sagepilot_sandbox.sagemaker.metrics import InvocationMetrics
from sagepilot_sandbox.sagemaker.modelservers import ModelServers

from . import test_sandbox_transform as shared
from .test_sandbox_transform import ACCOUNT, World, client

# The transform tests' fixtures: example model archives, model servers in this process, a bucket.
archives, servers, world = shared.archives, shared.servers, shared.world

ENDPOINT = "ep"
SCALE = 0.05  # a 60-s period lasts 3 s


@pytest.fixture
def runtime(world: World, servers: ModelServers) -> Iterator[InvocationMetrics]:
    metrics = InvocationMetrics(flush_seconds=0)  # published at once
    invocations.configure(servers, metrics)
    invocations.seed_routing(7)
    yield metrics
    invocations.clear()
    invocations.seed_routing(None)


def endpoint(world: World, variants: list[tuple[str, Any, float]]) -> None:
    """An InService endpoint with (variant, archive, initial weight) variants."""
    specs = []
    for name, archive, weight in variants:
        model = world.model(f"m-{name}", archive)
        specs.append(
            {
                "VariantName": name,
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
        )
    world.sm.create_endpoint_config(EndpointConfigName="config", ProductionVariants=specs)
    world.sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config")
    endpoints.settle_endpoint(ENDPOINT)


def invoke(rows: list[list[float]], **kwargs: Any) -> dict[str, Any]:
    answer = client("sagemaker-runtime").invoke_endpoint(
        EndpointName=kwargs.pop("name", ENDPOINT), Body=to_csv(rows).encode(), ContentType="text/csv", **kwargs
    )
    return {**answer, "Body": answer["Body"].read()}


def test_traffic_is_split_by_weight_and_answered_by_each_variants_model(
    world: World, runtime: InvocationMetrics
) -> None:
    endpoint(world, [("blue", world.archives.v1, 4.0), ("green", world.archives.v2, 1.0)])  # 80 / 20
    expected = {"blue": load_estimator(world.archives.v1), "green": load_estimator(world.archives.v2)}
    rows = feature_rows(400, seed=9)
    served: Counter[str] = Counter()
    for i in range(0, 400, 1):
        answer = invoke([rows[i]], Accept="text/csv")
        variant = answer["InvokedProductionVariant"]
        served[variant] += 1
        assert answer["ContentType"] == "text/csv"
        assert answer["Body"].decode().split() == [str(int(expected[variant].predict([rows[i]])[0]))]
    share = served["green"] / 400
    assert abs(share - 0.2) <= 4 * math.sqrt(0.2 * 0.8 / 400), served  # a binomial 4-sigma bound
    assert set(served) == {"blue", "green"}


def test_target_variant_routes_every_request_and_must_exist(world: World, runtime: InvocationMetrics) -> None:
    endpoint(world, [("blue", world.archives.v1, 1.0), ("green", world.archives.v2, 0.0)])
    assert {invoke([[1, 2, 3, 4]])["InvokedProductionVariant"] for _ in range(20)} == {"blue"}  # weight 0: none
    targeted = {invoke([[1, 2, 3, 4]], TargetVariant="green")["InvokedProductionVariant"] for _ in range(10)}
    assert targeted == {"green"}
    with pytest.raises(ClientError) as unknown:
        invoke([[1, 2, 3, 4]], TargetVariant="purple")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    assert "purple" in unknown.value.response["Error"]["Message"]


def test_a_model_error_is_sagemakers_model_error(world: World, runtime: InvocationMetrics) -> None:
    endpoint(world, [("only", world.archives.v1, 1.0)])
    with pytest.raises(ClientError) as refused:
        invoke([[1, 2, 3]])  # three features: the model expects four
    response = refused.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 400
    assert "record 1 has 3 features; this model expects 4" in response["OriginalMessage"]
    assert response["LogStreamArn"] == f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{ENDPOINT}"
    assert response["Error"]["Message"].startswith('Received client error (400) from primary with message "{')
    assert response["Error"]["Message"].endswith(
        f"#logEventViewer:group=/aws/sagemaker/Endpoints/{ENDPOINT} in account {ACCOUNT} for more information."
    )


def test_a_failing_model_is_a_model_error_with_its_500(world: World, runtime: InvocationMetrics) -> None:
    endpoint(world, [("broken", world.archives.broken, 1.0)])
    rows = feature_rows(40, seed=10)
    with pytest.raises(ClientError) as failed:
        invoke(rows)  # half the records fail: forty certainly do
    response = failed.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 500
    assert response["Error"]["Message"].startswith("Received server error (500) from primary with message")


def test_refusals_before_any_model(world: World, runtime: InvocationMetrics) -> None:
    with pytest.raises(ClientError) as missing:
        invoke([[1, 2, 3, 4]], name="nowhere")
    assert missing.value.response["Error"] == {
        "Code": "ValidationError",
        "Message": f"Endpoint nowhere of account {ACCOUNT} not found.",
    }
    world.sm.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {
                "VariantName": "a",
                "ModelName": world.model("m", world.archives.v1),
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    world.sm.create_endpoint(EndpointName="creating", EndpointConfigName="c")  # Creating: serves nothing yet
    with pytest.raises(ClientError) as creating:
        invoke([[1, 2, 3, 4]], name="creating")
    assert creating.value.response["Error"]["Message"] == f"Endpoint creating of account {ACCOUNT} not found."

    endpoints.settle_endpoint("creating")
    runtime_client = client("sagemaker-runtime")
    with pytest.raises(ClientError) as too_large:
        runtime_client.invoke_endpoint(
            EndpointName="creating", Body=b"1" * (6 * 1024 * 1024 + 1), ContentType="text/csv"
        )
    assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert too_large.value.response["Error"] == {
        "Code": "413",
        "Message": "HTTP content length exceeded 6291456 bytes.",
    }
    with pytest.raises(ClientError) as at_limit:  # exactly 6 MB passes the front end; the model refuses it
        runtime_client.invoke_endpoint(EndpointName="creating", Body=b"x" * (6 * 1024 * 1024), ContentType="text/csv")
    assert at_limit.value.response["Error"]["Code"] == "ModelError"
    assert runtime.published == 1  # only the request that reached a variant counts


def statistic(name: str, variant: str, stat: str = "Sum") -> float:
    found = client("cloudwatch").get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName=name,
        Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}],
        StartTime=datetime.now(UTC) - timedelta(minutes=5),
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=3600,
        Statistics=[stat],
    )["Datapoints"]
    return float(sum(d[stat] for d in found))


def test_every_invocation_publishes_sagemakers_metrics(world: World, runtime: InvocationMetrics) -> None:
    endpoint(world, [("good", world.archives.v1, 1.0), ("bad", world.archives.broken, 1.0)])
    rows = feature_rows(12, seed=11)
    for _ in range(6):
        invoke(rows[:4], TargetVariant="good")
    with pytest.raises(ClientError):
        invoke(rows, TargetVariant="bad")
    with pytest.raises(ClientError):
        invoke([[1, 2]], TargetVariant="good")

    assert (statistic("Invocations", "good"), statistic("Invocations", "bad")) == (7.0, 1.0)
    assert (statistic("Invocation4XXErrors", "good"), statistic("Invocation5XXErrors", "good")) == (1.0, 0.0)
    assert (statistic("Invocation4XXErrors", "bad"), statistic("Invocation5XXErrors", "bad")) == (0.0, 1.0)
    assert statistic("InvocationsPerInstance", "good") == 7.0
    assert statistic("ModelLatency", "good", "SampleCount") == 7.0
    assert 0 < statistic("ModelLatency", "good", "Maximum") < 5_000_000  # microseconds
    assert statistic("OverheadLatency", "good", "SampleCount") == 7.0


def put_stack_alarms(variant: str) -> tuple[str, str]:
    """The stack's 5xx and low-traffic alarms for a variant (as adapters/alarms.py defines them)."""
    cw = client("cloudwatch")
    dimensions = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]
    errors, idle = f"{ENDPOINT}-{variant}-5xx", f"{ENDPOINT}-{variant}-low-traffic"
    cw.put_metric_alarm(
        AlarmName=errors,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=dimensions,
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    cw.put_metric_alarm(
        AlarmName=idle,
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Dimensions=dimensions,
        Statistic="Sum",
        Period=300,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="LessThanThreshold",
        TreatMissingData="breaching",
    )
    return errors, idle


def test_real_errors_put_the_5xx_alarm_in_alarm_and_it_recovers_when_they_stop(
    world: World, runtime: InvocationMetrics
) -> None:
    endpoint(world, [("canary", world.archives.broken, 1.0)])
    errors, idle = put_stack_alarms("canary")
    assert alarms.evaluate_alarm(errors, time_scale=SCALE) == "OK"  # no data: not breaching
    assert alarms.evaluate_alarm(idle, time_scale=SCALE) == "ALARM"  # no traffic at all: breaching
    rows = feature_rows(40, seed=12)
    for attempt in range(4):
        with pytest.raises(ClientError):
            invoke(rows[attempt * 10 : attempt * 10 + 10])
    assert alarms.evaluate_alarm(errors, time_scale=SCALE) == "OK"  # 4 errors < 5
    assert alarms.evaluate_alarm(idle, time_scale=SCALE) == "OK"  # traffic again
    with pytest.raises(ClientError):
        invoke(rows)

    assert alarms.evaluate_alarm(errors, time_scale=SCALE) == "ALARM"  # 5 errors in the last (compressed) minute
    state = client("cloudwatch").describe_alarms(AlarmNames=[errors])["MetricAlarms"][0]
    assert state["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [5.0")
    later = datetime.now(UTC) + timedelta(seconds=60 * SCALE + 0.5)  # one compressed minute without errors
    assert alarms.evaluate_alarm(errors, time_scale=SCALE, now=later) == "OK"
    assert alarms.evaluate_alarm(idle, time_scale=SCALE, now=later + timedelta(seconds=300 * SCALE)) == "ALARM"
    assert alarms.evaluate_alarm(errors, now=later) == "ALARM"  # on the real clock the errors are recent


def test_set_alarm_state_holds_for_one_period(world: World, runtime: InvocationMetrics) -> None:
    errors, _ = put_stack_alarms("v")
    client("cloudwatch").set_alarm_state(AlarmName=errors, StateValue="ALARM", StateReason="by hand")
    assert alarms.evaluate_alarm(errors, time_scale=SCALE) == "ALARM"  # held until the next period
    later = datetime.now(UTC) + timedelta(seconds=60 * SCALE + 0.1)
    assert alarms.evaluate_alarm(errors, time_scale=SCALE, now=later) == "OK"
