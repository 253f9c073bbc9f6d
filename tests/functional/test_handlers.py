"""The Lambda handlers themselves: loaded from functions/*/app.py with the environment the template
gives each function, invoked with Lambda's event shapes, answering in the shapes Lambda expects."""

from __future__ import annotations

import importlib.util
import io
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sagepilot.adapters import clients as product_clients
from sagepilot.errors import ConfigurationError

from .conftest import COMPLETION, INTAKE, encoded_key_copy, inject_error, transform_jobs, with_body


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str


def context_for(stack: Any, logical_id: str) -> FakeLambdaContext:
    spec = stack.functions[logical_id]
    return FakeLambdaContext(spec.name, 512, spec.arn, str(uuid.uuid4()))


@pytest.fixture
def load_handler(stack, monkeypatch) -> Iterator[Callable[[str], ModuleType]]:
    """Import functions/<dir>/app.py as Lambda would: a fresh module, the function's environment."""
    product_clients.client.cache_clear()

    def load(logical_id: str, env: dict[str, str] | None = None) -> ModuleType:
        spec = stack.functions[logical_id]
        for name, value in (env if env is not None else spec.environment).items():
            monkeypatch.setenv(name, value)
        path = spec.code_dir / f"{spec.handler.split('.')[0]}.py"
        module_spec = importlib.util.spec_from_file_location(f"handler_{logical_id}_{uuid.uuid4().hex}", path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module

    yield load
    product_clients.client.cache_clear()


def test_the_template_points_at_the_handlers(stack):
    for logical_id in (INTAKE, COMPLETION):
        spec = stack.functions[logical_id]
        assert spec.handler == "app.handler"
        assert (spec.code_dir / "app.py").is_file()


def test_intake_handler_answers_with_a_partial_batch_response(
    stack,
    load_handler,
    data,
    registry,
    intake_queue,
    jobs,
):
    registry.register("churn")
    dropped = {key: data.drop(key) for key in ["incoming/churn/a b.csv", "incoming/churn/c+d.csv"]}
    data.drop("incoming/churn/notes.txt")
    app = load_handler(INTAKE)
    event = intake_queue.receive()
    event["Records"].append(encoded_key_copy(event["Records"][0]))
    event["Records"].append(with_body(event["Records"][0], "not json"))

    response = app.handler(event, context_for(stack, INTAKE))
    assert response == {"batchItemFailures": []}
    json.dumps(response)  # Lambda serialises it
    jobs.assert_each_version_in_exactly_one_job(set(dropped.items()))
    assert data.keys("rejected/") == ["rejected/churn/notes.txt.json"]


@pytest.mark.usefixtures("no_retry_delay")
def test_intake_handler_hands_back_the_messages_it_could_not_finish(
    stack,
    load_handler,
    data,
    registry,
    intake_queue,
    jobs,
):
    registry.register("churn")
    registry.register("fraud")
    data.drop("incoming/churn/a.csv")
    data.drop("incoming/fraud/b.csv")
    app = load_handler(INTAKE)
    # The handler's own (process-wide) SageMaker client fails jobs of the fraud group only (a 5xx that
    # outlasts botocore's retries).
    inject_error(
        product_clients.client("sagemaker"),
        "CreateTransformJob",
        "ServiceUnavailable",
        "Service is unavailable",
        status=503,
        times=None,
        when=lambda body: body["ModelName"].startswith("sagepilot-fraud-"),
    )
    event = intake_queue.receive()
    fraud_ids = [r["messageId"] for r in event["Records"] if "/fraud/" in r["body"]]

    response = app.handler(event, context_for(stack, INTAKE))
    assert response == {"batchItemFailures": [{"itemIdentifier": m} for m in fraud_ids]}
    (name,) = jobs.names()
    assert name.startswith("sagepilot-churn-")


def test_completion_handler_reports_what_it_did(stack, load_handler, data, registry, intake_queue, completions):
    registry.register("churn")
    data.drop("incoming/churn/a.csv")
    data.drop("incoming/churn/b.csv")
    intake_app = load_handler(INTAKE)
    assert intake_app.handler(intake_queue.receive(), context_for(stack, INTAKE)) == {"batchItemFailures": []}
    (name,) = [
        j["TransformJobName"]
        for j in transform_jobs(product_clients.client("sagemaker"))
    ]

    app = load_handler(COMPLETION)
    (event,) = completions.finish(name, "Completed")
    context = context_for(stack, COMPLETION)
    assert app.handler(event, context) == {"job": name, "action": "reported", "detail": "2 input report(s)"}
    assert app.handler(event, context) == {"job": name, "action": "duplicate", "detail": "already COMPLETED"}
    assert data.json("predictions/churn/a.csv.report.json")["transformJobName"] == name

    malformed = app.handler({"source": "aws.s3", "detail-type": "Object Created", "id": "x"}, context)
    assert malformed["action"] == "ignored"
    assert "SageMaker Transform Job State Change" in malformed["detail"]


def test_the_capacity_sweep_schedule_runs_the_sweep_through_the_completion_handler(
    stack,
    load_handler,
    data,
    registry,
    intake_queue,
    jobs,
    capsys,
):
    from sagepilot_sandbox.lambda_runtime.runtime import scheduled_event

    registry.register("churn")
    data.drop("incoming/churn/a.csv")
    intake_app = load_handler(INTAKE)
    fault = inject_error(
        product_clients.client("sagemaker"),
        "CreateTransformJob",
        "ResourceLimitExceeded",
        "The account-level service limit is 0 Instances",
        times=None,
    )
    event = intake_queue.receive()
    response = intake_app.handler(event, context_for(stack, INTAKE))
    assert response == {"batchItemFailures": []}
    intake_queue.settle(event, response)
    assert jobs.names() == [] and intake_queue.depth() == 0
    (sweep,) = [d for d in stack.functions[COMPLETION].rule_deliveries if d.schedule_expression]
    assert sweep.schedule_expression == "rate(5 minutes)"
    app = load_handler(COMPLETION)
    context = context_for(stack, COMPLETION)

    assert app.handler(scheduled_event(sweep.rule_arn), context) == {"action": "swept", "started": [], "waiting": 1}
    fault.stop()
    capsys.readouterr()
    result = app.handler(scheduled_event(sweep.rule_arn), context)
    assert (len(result["started"]), result["waiting"]) == (1, 0)
    assert jobs.names() == result["started"]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    figures = {k: v for line in emf for k, v in line.items() if not k.startswith("_") and k != "Stack"}
    assert figures == {"JobsStarted": [1.0], "CapacityBacklogJobs": [0.0], "OldestJobWaitingForCapacitySeconds": [0.0]}


@pytest.mark.parametrize("logical_id", [INTAKE, COMPLETION])
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATA_BUCKET", "", "DATA_BUCKET is required"),
        ("MAX_PAYLOAD_MB", "lots", "MAX_PAYLOAD_MB must be a whole number"),
        ("FALLBACK_INSTANCE_TYPE", "m5.xlarge", "FALLBACK_INSTANCE_TYPE must be a SageMaker instance type"),
    ],
)
def test_a_handler_refuses_to_start_with_bad_settings(stack, load_handler, logical_id, variable, value, message):
    env: dict[str, Any] = {**stack.functions[logical_id].environment, variable: value}
    with pytest.raises(ConfigurationError, match=message):
        load_handler(logical_id, env)


# ---------------------------------------------------------------- the rollout function
ROLLOUT = "RolloutFunction"


def _sample(name: str) -> dict:
    return json.loads((Path(__file__).resolve().parents[2] / "events" / name).read_text())


def test_rollout_handler_deploys_on_an_approval_event(stack, load_handler, registry, sagemaker):
    module = load_handler(ROLLOUT)
    arn = registry.register("churn")
    event = _sample("sagemaker-model-package-approved.json")
    answer = module.handler(event, context_for(stack, ROLLOUT))
    [outcome] = answer["outcomes"]
    assert outcome["endpoint"] == "sagepilot-churn" and outcome["phase"] == "CREATING"
    assert outcome["actions"] == ["CreateEndpoint"]
    endpoint = sagemaker.describe_endpoint(EndpointName="sagepilot-churn")
    assert endpoint["EndpointStatus"] == "Creating"
    assert arn.endswith("/1")


@pytest.mark.parametrize(
    "sample", ["sagemaker-endpoint-foreign.json", "sagemaker-endpoint-in-service.json", "scheduled-reconcile.json"]
)
def test_rollout_handler_leaves_what_it_does_not_manage_alone(stack, load_handler, sagemaker, sample):
    module = load_handler(ROLLOUT)
    answer = module.handler(_sample(sample), context_for(stack, ROLLOUT))
    # The schedule finds no managed endpoint (no outcome); the endpoint events name one it does not manage.
    expected = 0 if sample == "scheduled-reconcile.json" else 1
    assert len(answer["outcomes"]) == expected
    assert all(o["result"] == "ignored" for o in answer["outcomes"])
    assert sagemaker.list_endpoints()["Endpoints"] == []


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {}},
        {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change", "detail": {"x": 1}},
        {"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change", "detail": {"alarmName": "a"}},
    ],
)
def test_rollout_handler_drops_malformed_events_with_a_reason(stack, load_handler, sagemaker, event):
    module = load_handler(ROLLOUT)
    answer = module.handler(event, context_for(stack, ROLLOUT))
    assert answer["result"] == "ignored" and answer["detail"]
    assert sagemaker.list_endpoints()["Endpoints"] == []


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CANARY_STEPS", "50,10", "CANARY_STEPS"),
        ("DEPLOY_STRATEGY", "yolo", "DEPLOY_STRATEGY"),
        ("BAKE_SECONDS", "", "BAKE_SECONDS"),
        ("AUTOSCALING_MIN", "20", "AUTOSCALING_MIN"),
    ],
)
def test_rollout_handler_refuses_to_start_with_bad_settings(stack, load_handler, variable, value, message):
    env = {**stack.functions[ROLLOUT].environment, variable: value}
    with pytest.raises(ConfigurationError, match=message):
        load_handler(ROLLOUT, env)


@pytest.mark.usefixtures("no_retry_delay")
def test_training_handler_takes_its_settle_queue_and_hands_back_what_failed(stack, load_handler, data, sagemaker):
    """The training function's SQS event (its own delayed settle messages), as the event source mapping sends
    it: a lone file's message starts its job; one that fails goes back (partial batch response); a malformed
    body is dropped."""
    from .conftest import _queue

    sagemaker.create_model_package_group(ModelPackageGroupName="churn")
    app = load_handler("TrainingFunction")
    sqs = product_clients.client("sqs")
    settle = _queue(stack, sqs, stack.functions["TrainingFunction"].environment["TRAINING_SETTLE_QUEUE_URL"])
    lone = data.drop("training/churn/2026-11/train.csv", b"1,2,3\n0,4,5\n")
    other = data.drop("training/churn/2026-12/train.csv", b"1,2,3\n0,4,5\n")
    for key, version in (("training/churn/2026-11/train.csv", lone), ("training/churn/2026-12/train.csv", other)):
        body = json.dumps({"bucket": data.name, "key": key, "versionId": version})
        sqs.send_message(QueueUrl=settle.url, MessageBody=body)  # the delay has passed
    event = settle.receive()
    event["Records"].append(with_body(event["Records"][0], "not json"))
    failing = [r["messageId"] for r in event["Records"] if "2026-12" in r["body"]]
    inject_error(
        product_clients.client("sagemaker"),
        "CreateTrainingJob",
        "ThrottlingException",
        "Rate exceeded",
        status=400,
        times=None,
        when=lambda body: "2026-12" in json.dumps(body),
    )
    response = app.handler(event, context_for(stack, "TrainingFunction"))
    assert response == {"batchItemFailures": [{"itemIdentifier": m} for m in failing]}
    [job] = sagemaker.list_training_jobs()["TrainingJobSummaries"]
    tags = sagemaker.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {"Key": "sagepilot:training-data-version", "Value": lone} in tags


@pytest.mark.parametrize(
    ("logical_id", "sample"),
    [
        (ROLLOUT, "sagemaker-model-package-approved.json"),
        (COMPLETION, "sagemaker-transform-job-foreign.json"),
        ("TrainingFunction", "sagemaker-training-job-foreign.json"),
    ],
)
def test_a_handlers_log_lines_carry_the_events_id_as_their_correlation_id(
    stack, load_handler, registry, logical_id, sample
):
    from sagepilot.observability import logger

    registry.register("churn")
    module = load_handler(logical_id)
    event = _sample(sample)
    out = io.StringIO()
    stream = logger.registered_handler.setStream(out)  # type: ignore[attr-defined]
    try:
        module.handler(event, context_for(stack, logical_id))
    finally:
        logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines, "the handler logged nothing"
    assert {line.get("correlation_id") for line in lines} == {event["id"]}


def test_the_batch_handlers_emit_what_their_services_decided(
    stack, load_handler, data, registry, intake_queue, completions, capsys
):
    def figures() -> dict[str, list[float]]:
        emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
        return {k: v for line in emf for k, v in line.items() if not k.startswith("_") and k not in ("Stack", "Reason")}

    registry.register("churn")
    data.drop("incoming/churn/a.csv")
    data.drop("incoming/churn/notes.txt")
    capsys.readouterr()
    load_handler(INTAKE).handler(intake_queue.receive(), context_for(stack, INTAKE))
    assert figures() == {"FilesAccepted": [1.0], "JobsStarted": [1.0], "FilesRejected": [1.0]}
    (name,) = [
        j["TransformJobName"]
        for j in transform_jobs(product_clients.client("sagemaker"))
    ]
    (event,) = completions.finish(name, "Completed")
    load_handler(COMPLETION).handler(event, context_for(stack, COMPLETION))
    assert figures() == {"JobsCompleted": [1.0]}
