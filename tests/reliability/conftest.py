"""Fixtures of the reliability suites.

Every fixture of the functional tests (the whole stack of template.yaml provisioned in moto, the services
wired as their handlers wire them, queues, notifications, `inject_error`, `crash_on`...) is re-exported
here, so these suites run exactly the same stack. What they add:

- `fresh_world`: a brand-new embedded AWS with the stack provisioned, as a context manager, for hypothesis
  examples (function-scoped fixtures are shared by all the examples of a test; a world is not).
- `record_calls`: a `before-call` hook on every client that logs each API call, to prove that something
  mutated nothing (`CallLog.mutations`).
- `inject_aws_error` (any protocol: JSON, REST-XML for S3, query for SNS) and `inject_transport_fault`
  (read timeouts, refused connections, closed connections, and a call whose response is lost after AWS
  carried it out), both at the HTTP layer (`before-send`), so botocore's standard retry handler runs.
- `kill_on`: the function dies at a given call and nothing it would still send reaches AWS (not even the
  clean-up of an `except` / `finally` block), as when Lambda kills it for a timeout or lack of memory.
- `log_records`: what the product logged (the powertools logger named `sagepilot`).
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from functional.conftest import *  # noqa: F403 - the functional fixtures, for the suites of this folder
from functional.conftest import (
    _ANSWERED,
    CLIENT_CONFIG,
    NO_HOLD,
    REGION,
    ROOT,
    Completions,
    Data,
    Fault,
    HandlerCrashed,
    Jobs,
    Notifications,
    Queue,
    Registry,
    _let_injected_answers_stand,
    _queue,
)
from hypothesis import Phase
from moto import mock_aws

from sagepilot_sandbox import faithful
from sagepilot_sandbox.stack import provision as provision_module
from sagepilot_sandbox.stack.provision import Stack, provision
from sagepilot_sandbox.stack.template import load_template

# Each example of the suites that run a whole stack takes about a second: shrinking a failure would take
# minutes. The failing example is printed step by step (every draw is labelled) and saved in hypothesis'
# database, which replays it first next time.
WITHOUT_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)

SERVICES = ("s3", "sagemaker", "dynamodb", "sns", "sqs", "cloudwatch", "application-autoscaling", "events")
READ_ONLY_PREFIXES = ("Describe", "List", "Get", "Head", "Query", "Scan", "BatchGet")
INTAKE = "BatchIntakeFunction"
COMPLETION = "BatchCompletionFunction"
ROLLOUT = "RolloutFunction"


# ---------------------------------------------------------------------------------------- hooks
# Every hook these helpers put on a client, so that a world can take them off the clients it lends out again.
_HOOKS: list[tuple[Any, str, Callable[..., Any]]] = []


def _hook(client: Any, event_name: str, handler: Callable[..., Any], *, first: bool = True) -> None:
    if first:
        client.meta.events.register_first(event_name, handler)
    else:
        client.meta.events.register(event_name, handler)
    _HOOKS.append((client, event_name, handler))


def _unhook_all() -> None:
    while _HOOKS:
        client, event_name, handler = _HOOKS.pop()
        client.meta.events.unregister(event_name, handler)


# ---------------------------------------------------------------------------------------- call logs
@dataclass
class CallLog:
    """Every API call made through the hooked clients: (service, operation, parameters)."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    active: bool = True

    def mutations(self) -> list[tuple[str, str]]:
        return [(s, op) for s, op, _ in self.calls if not op.startswith(READ_ONLY_PREFIXES)]

    def operations(self, operation: str) -> list[dict[str, Any]]:
        return [params for _, op, params in self.calls if op == operation]

    def clear(self) -> None:
        self.calls.clear()


def record_calls(clients: Callable[[str], Any], services: tuple[str, ...] = SERVICES) -> CallLog:
    """Log every call of the clients `clients(service)` returns (before-call: once per call, not per retry)."""
    log = CallLog()
    for service in services:
        client = clients(service)
        name = client.meta.service_model.service_id.hyphenize()

        def hook(model: Any, params: dict[str, Any], _service: str = name, **_: Any) -> None:
            if log.active:
                log.calls.append((_service, model.name, params))

        _hook(client, "before-call", hook, first=False)
    return log


# ---------------------------------------------------------------------------------------- faults
class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _error_response(client: Any, request: Any, code: str, message: str, status: int) -> AWSResponse:
    protocol = client.meta.service_model.resolved_protocol
    request_id = str(uuid.uuid4())
    if protocol == "json":
        payload = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/x-amz-json-1.1"
    elif protocol == "rest-xml":
        payload = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        content_type = "application/xml"
    elif protocol == "query":
        payload = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        content_type = "text/xml"
    else:  # pragma: no cover - every client of the product speaks one of the above
        raise AssertionError(f"no error body for protocol {protocol}")
    headers = {
        "x-amzn-RequestId": request_id,
        "x-amz-request-id": request_id,
        "Content-Type": content_type,
        "Content-Length": str(len(payload)),
    }
    return AWSResponse(request.url, status, headers, _RawBody(payload))


def _service_of(client: Any) -> str:
    return str(client.meta.service_model.service_id.hyphenize())


def inject_aws_error(
    client: Any,
    operation: str,
    code: str,
    message: str,
    *,
    status: int = 400,
    times: int | None = 1,
    when: Callable[[Any], bool] | None = None,
) -> Fault:
    """Answer `times` calls of `operation` (those whose request satisfies `when`) with an AWS error, at the
    HTTP layer, for any of the product's protocols. `fault.calls` counts HTTP attempts (retries included)."""
    fault = Fault(_service_of(client), operation)

    def handler(request: Any, **_: Any) -> AWSResponse | None:
        if when is not None and not when(request):
            return None
        fault.calls += 1
        if not fault.active or (times is not None and fault.injected >= times):
            return None
        fault.injected += 1
        setattr(request, _ANSWERED, True)
        return _error_response(client, request, code, message, status)

    _hook(client, f"before-send.{fault.service}.{operation}", handler)
    return fault


TRANSPORT_FAULTS = ("read-timeout", "connection-refused", "connection-closed", "response-lost")


def inject_transport_fault(
    client: Any,
    operation: str,
    kind: str,
    *,
    times: int | None = 1,
    when: Callable[[Any], bool] | None = None,
) -> Fault:
    """A call that never gets its answer: `read-timeout` (ReadTimeoutError), `connection-refused`
    (EndpointConnectionError), `connection-closed` (ConnectionClosedError): the request did not reach AWS;
    `response-lost`: AWS (moto) carries the request out, then the connection drops before the answer
    arrives (ReadTimeoutError). botocore's standard mode retries all of them."""
    assert kind in TRANSPORT_FAULTS, kind
    from moto.core.models import botocore_stubber

    fault = Fault(_service_of(client), operation)
    event_name = f"before-send.{fault.service}.{operation}"

    def handler(request: Any, **_: Any) -> None:
        if when is not None and not when(request):
            return
        fault.calls += 1
        if not fault.active or (times is not None and fault.injected >= times):
            return
        fault.injected += 1
        if kind == "response-lost":
            answer = botocore_stubber(event_name, request)
            assert answer is not None, "moto did not carry the request out"
            raise ReadTimeoutError(endpoint_url=request.url, error="response lost after the call succeeded")
        if kind == "read-timeout":
            raise ReadTimeoutError(endpoint_url=request.url, error="read timed out")
        if kind == "connection-refused":
            raise EndpointConnectionError(endpoint_url=request.url)
        raise ConnectionClosedError(endpoint_url=request.url)

    _hook(client, event_name, handler)
    return fault


@dataclass
class Kill:
    """The function is killed at one call; until `revive`, nothing else it sends reaches AWS."""

    trigger: str
    armed: bool = True
    dead: bool = False
    calls: int = 0
    blocked: list[str] = field(default_factory=list)
    body: str = ""  # the request the function was killed at (what it was about to do)

    def revive(self) -> None:
        """A new invocation (a new process as far as AWS is concerned)."""
        self.dead = False


def kill_on(
    clients: Callable[[str], Any],
    service: str,
    operation: str,
    *,
    nth: int = 1,
    when: Callable[[Any], bool] | None = None,
    services: tuple[str, ...] = SERVICES,
) -> Kill:
    """Kill the function at the `nth` matching call of `service.operation` (once): that call and every
    later call, on any client, raise HandlerCrashed before reaching AWS, until `kill.revive()`."""
    kill = Kill(f"{service}.{operation}#{nth}")
    target = clients(service)
    target_name = _service_of(target)

    def trigger(request: Any, **_: Any) -> None:
        if not kill.armed or (when is not None and not when(request)):
            return
        kill.calls += 1
        if kill.calls == nth:
            kill.armed, kill.dead = False, True
            raw = getattr(request, "body", b"") or b""
            kill.body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            raise HandlerCrashed(f"killed at {kill.trigger}")

    for name in services:
        client = clients(name)

        def dead(request: Any, event_name: str = "", **_: Any) -> None:
            if kill.dead:
                kill.blocked.append(event_name)
                raise HandlerCrashed(f"the function was killed at {kill.trigger}; {event_name} never sent")

        _hook(client, "before-send", dead)
    _hook(target, f"before-send.{target_name}.{operation}", trigger)
    return kill


# ---------------------------------------------------------------------------------------- a fresh world
@dataclass
class World:
    """One embedded AWS with the stack of template.yaml, and the functional tests' helpers on it."""

    stack: Stack
    clients: Callable[[str], Any]  # the product's clients (faults go on these)
    data: Data
    registry: Registry
    intake_queue: Queue
    intake_dlq: Queue
    jobs: Jobs
    notifications: Notifications
    completions: Completions
    observer: Callable[[str], Any] | None = None  # other clients, for the tests' own looks (no faults on them)


def _client_factory() -> Callable[[str], Any]:
    cache: dict[str, Any] = {}

    def factory(service: str) -> Any:
        if service not in cache:
            cache[service] = boto3.client(service, region_name=REGION, config=CLIENT_CONFIG)
        return cache[service]

    factory.made = cache.values  # type: ignore[attr-defined]
    return factory


def retry_quota(client: Any) -> Any:
    """The client's retry quota in botocore's standard mode (botocore.retries.quota.RetryQuota: 500 units; a
    retry takes 5, 10 after a timeout; a success gives back what its retries took, or 1). Once spent, a call
    fails at its first error, without retries."""
    service = client.meta.service_model.service_id.hyphenize()
    registered = client.meta.events._emitter._unique_id_handlers.get(f"retry-config-{service}")
    assert registered is not None, f"no standard-mode retry handler on the {service} client (botocore changed?)"
    return registered["handler"].__self__._retry_quota._quota


def _refill_retry_quotas(factory: Callable[[str], Any]) -> None:
    """Give every client a world lends out its whole retry quota again. The clients are shared by all the worlds
    of a session: without this, what one hypothesis example (or an earlier test) spent on retries would cut the
    retries of the next ones, so an example's outcome would depend on what ran before it, and a failure found in
    a full run would not replay alone. Each world starts as a fresh Lambda execution environment does."""
    for client in factory.made():  # type: ignore[attr-defined]
        quota = retry_quota(client)
        with quota._lock:
            quota._available_capacity = quota._max_capacity


# Worlds lend out the same clients (made once: ~40 ms each), stripped of the tests' hooks when a world ends;
# moto's own hook is on every client, and each world's `mock_aws` starts from an empty account.
_PRODUCT_CLIENTS = _client_factory()
_OBSERVER_CLIENTS = _client_factory()


@contextmanager
def world(overrides: dict[str, str] | None = None) -> Iterator[World]:
    """A fresh embedded AWS with the stack provisioned (needs the `aws_env` environment)."""
    with mock_aws():
        faithful.install()
        faithful.clear_listeners()
        clients = _PRODUCT_CLIENTS
        _refill_retry_quotas(_PRODUCT_CLIENTS)
        _refill_retry_quotas(_OBSERVER_CLIENTS)
        # The start-up hold off unless asked for (as in the functional tests: functional/conftest.py NO_HOLD).
        stack = provision(ROOT, clients, overrides={**NO_HOLD, **(overrides or {})})
        data = Data(clients("s3"), stack.outputs["DataBucketName"])
        sqs = clients("sqs")
        inbox = sqs.create_queue(QueueName="test-notification-inbox")["QueueUrl"]
        inbox_queue = _queue(stack, sqs, inbox)
        clients("sns").subscribe(
            TopicArn=stack.outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=inbox_queue.arn
        )
        (delivery,) = [d for d in stack.functions[COMPLETION].rule_deliveries if not d.schedule_expression]
        try:
            yield World(
                stack=stack,
                clients=clients,
                data=data,
                registry=Registry(clients("sagemaker")),
                intake_queue=_queue(stack, sqs, stack.outputs["IntakeQueueUrl"]),
                intake_dlq=_queue(stack, sqs, stack.outputs["IntakeDeadLetterQueueUrl"]),
                jobs=Jobs(clients("sagemaker"), data),
                notifications=Notifications(inbox_queue),
                completions=Completions(_queue(stack, sqs, delivery.delivery_queue_url)),
                observer=_OBSERVER_CLIENTS,
            )
        finally:
            _unhook_all()


_TEMPLATES: dict[Path, tuple[float, dict[str, Any]]] = {}


def _cached_template(path: Path) -> dict[str, Any]:
    """template.yaml parsed once per change (parsing is a third of provisioning); a copy each time."""
    mtime = path.stat().st_mtime
    if path not in _TEMPLATES or _TEMPLATES[path][0] != mtime:
        _TEMPLATES[path] = (mtime, load_template(path))
    return copy.deepcopy(_TEMPLATES[path][1])


@pytest.fixture
def fresh_world(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """`with fresh_world() as w:` a new embedded AWS and stack, one per hypothesis example."""
    _let_injected_answers_stand(monkeypatch)
    monkeypatch.setattr(provision_module, "load_template", _cached_template)
    return world


@pytest.fixture(autouse=True)
def _no_hooks_left_behind() -> Iterator[None]:
    yield
    _unhook_all()


# ---------------------------------------------------------------------------------------- logs
@dataclass
class LogRecords:
    records: list[logging.LogRecord] = field(default_factory=list)

    def at(self, level: int) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= level]

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.at(level)]

    def clear(self) -> None:
        self.records.clear()


class _Collector(logging.Handler):
    def __init__(self, sink: LogRecords) -> None:
        super().__init__(logging.DEBUG)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.records.append(record)


@pytest.fixture
def log_records() -> Iterator[LogRecords]:
    """What the product logs through its powertools logger (named `sagepilot`)."""
    sink = LogRecords()
    handler = _Collector(sink)
    product_logger = logging.getLogger("sagepilot")
    product_logger.addHandler(handler)
    try:
        yield sink
    finally:
        product_logger.removeHandler(handler)
