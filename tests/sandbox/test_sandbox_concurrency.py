"""Concurrency as Lambda has it, in a running Sandbox on a small stack of its own: a function's invocations
run at once (each in its own execution environment), bounded by its ReservedConcurrentExecutions, an SQS
event source's ScalingConfig.MaximumConcurrency, and the account's unreserved concurrency (the sandbox's
`lambda_concurrency`), which the functions without a reservation share. Overlaps are measured by the
handlers themselves (their own clock readings around a 1-s sleep), not by the sandbox's bookkeeping."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from sagepilot_sandbox.lambda_runtime.runtime import ConcurrencyPool, FunctionProcess
from sagepilot_sandbox.server import Sandbox, free_port
from sagepilot_sandbox.stack.provision import provision
from sagepilot_sandbox.stack.template import TemplateError

ACCOUNT_CONCURRENCY = 3
TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    CodeUri: fn/
    Handler: app.handler
    Runtime: python3.13
    Timeout: 20
Resources:
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
  SoloQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
  FreeFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Work:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [test.free]
  PolledFunction:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 1
            ScalingConfig:
              MaximumConcurrency: 2
  SoloFunction:
    Type: AWS::Serverless::Function
    Properties:
      ReservedConcurrentExecutions: 1
      Events:
        Work:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [test.solo]
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt SoloQueue.Arn
            BatchSize: 1
            ScalingConfig:
              MaximumConcurrency: 2
"""
HANDLER = """\
import os
import time


def handler(event, context):
    start = time.time()
    time.sleep(1.0)
    return {"pid": os.getpid(), "start": start, "end": time.time()}
"""


def write_stack(root: Path, template: str = TEMPLATE) -> Path:
    (root / "fn").mkdir(parents=True, exist_ok=True)
    (root / "fn" / "app.py").write_text(HANDLER)
    (root / "template.yaml").write_text(textwrap.dedent(template))
    return root


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = write_stack(tmp_path_factory.mktemp("stack"))
    running = Sandbox(
        port=free_port(), root=root, retry_delay=1, log_dir=root / "logs", lambda_concurrency=ACCOUNT_CONCURRENCY
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def function(sandbox: Sandbox, logical_id: str) -> FunctionProcess:
    assert sandbox.lambdas is not None
    return sandbox.lambdas.functions[logical_id]


def runs(sandbox: Sandbox, logical_id: str) -> list[dict[str, Any]]:
    """What the function's handler reported, one entry per successful invocation so far."""
    return [i["result"] for i in list(function(sandbox, logical_id).invocations) if i.get("ok")]


def peak(intervals: list[dict[str, Any]]) -> int:
    """The most handler runs in progress at one moment."""
    edges = sorted([(r["start"], 1) for r in intervals] + [(r["end"], -1) for r in intervals])  # an end first
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def put_events(sandbox: Sandbox, source: str, n: int) -> None:
    sandbox.client("events").put_events(
        Entries=[{"Source": source, "DetailType": "work", "Detail": json.dumps({"n": i})} for i in range(n)]
    )


def send(sandbox: Sandbox, queue: str, n: int) -> None:
    sqs = sandbox.client("sqs")
    url = sqs.get_queue_url(QueueName=f"sagepilot-sandbox-{queue}")["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(n)])


def wait_for_runs(sandbox: Sandbox, logical_id: str, before: int, n: int, timeout: float = 40) -> list[dict[str, Any]]:
    done: list[dict[str, Any]] = sandbox.wait_for(
        lambda: (got := runs(sandbox, logical_id)[before:]) and len(got) >= n and got, timeout=timeout
    )
    return done


def test_invocations_of_one_function_run_at_once_in_separate_environments(sandbox: Sandbox) -> None:
    before = len(runs(sandbox, "FreeFunction"))
    put_events(sandbox, "test.free", 6)

    done = wait_for_runs(sandbox, "FreeFunction", before, 6)

    assert len(done) == 6
    assert peak(done) >= 2, "events to one function were run one at a time"
    assert peak(done) <= ACCOUNT_CONCURRENCY  # the account's unreserved concurrency bounds it
    assert len({r["pid"] for r in done}) >= 2  # one execution environment per concurrent invocation


def test_an_sqs_event_source_invokes_at_most_its_maximum_concurrency(sandbox: Sandbox) -> None:
    before = len(runs(sandbox, "PolledFunction"))
    send(sandbox, "WorkQueue", 8)

    done = wait_for_runs(sandbox, "PolledFunction", before, 8)

    assert len(done) == 8
    assert peak(done) == 2  # MaximumConcurrency 2: two batches at once, never three


def test_a_function_with_reserved_concurrency_one_never_overlaps_and_loses_nothing(sandbox: Sandbox) -> None:
    solo = function(sandbox, "SoloFunction")
    before, throttles_before = len(runs(sandbox, "SoloFunction")), solo.throttles
    put_events(sandbox, "test.solo", 3)
    send(sandbox, "SoloQueue", 3)  # its event source would run two at once: the reservation throttles one

    done = wait_for_runs(sandbox, "SoloFunction", before, 6, timeout=60)

    assert len(done) == 6
    assert peak(done) == 1
    assert solo.throttles > throttles_before  # invocations found the reservation used up and waited for it
    assert solo.peak_concurrency == 1


def test_functions_without_a_reservation_share_the_accounts_concurrency(sandbox: Sandbox) -> None:
    free_before, polled_before = len(runs(sandbox, "FreeFunction")), len(runs(sandbox, "PolledFunction"))
    put_events(sandbox, "test.free", 4)
    send(sandbox, "WorkQueue", 4)

    done = wait_for_runs(sandbox, "FreeFunction", free_before, 4) + wait_for_runs(
        sandbox, "PolledFunction", polled_before, 4
    )

    assert peak(done) == ACCOUNT_CONCURRENCY  # 4 + 2 would run at once; the account allows 3


# Provisioning the settings ---------------------------------------------------------------------------------

SESSION = boto3.session.Session()  # parses the service models once (mock_aws resets the default session)


def client(service: str) -> Any:
    return SESSION.client(service, region_name="us-east-1")


def test_the_concurrency_settings_reach_the_function_specs(aws: None, tmp_path: Path) -> None:
    stack = provision(write_stack(tmp_path), client, overrides={})

    assert stack.functions["SoloFunction"].reserved_concurrency == 1
    assert stack.functions["FreeFunction"].reserved_concurrency is None
    assert [s.maximum_concurrency for s in stack.functions["PolledFunction"].sqs_sources] == [2]


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (lambda t: t.replace("MaximumConcurrency: 2", "MaximumConcurrency: 1", 1), "between 2 and 1000"),
        (lambda t: t.replace("MaximumConcurrency: 2", "MaximumConcurrency: 1001", 1), "between 2 and 1000"),
        (lambda t: t.replace("ReservedConcurrentExecutions: 1", "ReservedConcurrentExecutions: -1"), "0 or more"),
    ],
    ids=["maximum concurrency 1", "maximum concurrency 1001", "negative reservation"],
)
def test_concurrency_settings_lambda_refuses_are_refused(
    aws: None, tmp_path: Path, edit: Callable[[str], str], complaint: str
) -> None:
    with pytest.raises(TemplateError, match=complaint):
        provision(write_stack(tmp_path, edit(TEMPLATE)), client, overrides={})


def test_a_reservation_of_zero_throttles_every_invocation(tmp_path: Path) -> None:
    stack_root = write_stack(tmp_path)
    from sagepilot_sandbox.stack.provision import FunctionSpec

    spec = FunctionSpec("ZeroFunction", "zero", "arn", stack_root / "fn", "app.handler", 5, {}, [])
    zero = FunctionProcess(spec, "http://127.0.0.1:1", tmp_path / "logs", pool=ConcurrencyPool("zero", 0))
    try:
        answer = zero.invoke({}, wait=0.2)
    finally:
        zero.stop()

    assert (answer["ok"], answer["errorType"], answer.get("throttled")) == (False, "TooManyRequestsException", True)
    assert zero.invocations == [] and zero.throttles == 1
