"""SageMaker Runtime's InvokeEndpoint as SageMaker answers it: real predictions from the variant's model.

moto answers InvokeEndpoint with static data whatever the endpoint (a queue of canned results, or
`"body"`). `install()` replaces its `sagemaker-runtime` response (so the threaded server and the
in-process `mock_aws` both answer this way; the body is kept as bytes, as SageMaker passes it on):

- a body over 6 MB (6,291,456 bytes, the API's documented limit) is refused by the front end before
  anything else: HTTP 413 with a plain-text `HTTP content length exceeded 6291456 bytes.` (the shape
  SageMaker's front end answers with; botocore reports it as error code `413`);
- an endpoint that does not exist, or that serves no traffic (Creating, Failed, Deleting,
  OutOfService), is `ValidationError`: `Endpoint <name> of account <account> not found.` An endpoint
  that is Updating, SystemUpdating or RollingBack keeps serving its current variants, as SageMaker's do;
- the variant: `X-Amzn-SageMaker-Target-Variant` when given (a ValidationError if the endpoint has no
  such variant), otherwise a random choice weighted by each variant's CurrentWeight;
- the request goes to a model server for the variant's model (`modelservers`: the model's
  `ModelPackageName` -> the package's `ModelDataUrl`, or its own `ModelDataUrl`) with the request's
  Content-Type and Accept; a 2xx answer is returned as it is with its Content-Type and
  `x-Amzn-Invoked-Production-Variant`;
- a 4xx or 5xx from the model becomes SageMaker's `ModelError` (HTTP 424, `x-amzn-ErrorType`
  ModelError) with `OriginalStatusCode`, `OriginalMessage` (the container's body),
  `LogStreamArn` (the endpoint's log group) and the message `Received client error (400) from
  primary with message "...". See https://<region>.console.aws.amazon.com/cloudwatch/home?...
  in account <account> for more information.` (`server error` for 5xx). A model that cannot be
  served at all (its artifact is missing, its server died) is a ModelError with OriginalStatusCode 500;
- every invocation that reached a variant is recorded for CloudWatch (`metrics.InvocationMetrics`);
- an endpoint with a shadow variant (`ShadowProductionVariants`): each request the production variant
  answered is copied to the shadow with probability `endpoints.shadow_share` (its weight relative to the
  production variant's: the sampling percentage). The copy runs after the caller has its answer (in the
  background, as SageMaker's replication does not delay the caller; `wait_for_shadows` waits for the copies
  in flight); the shadow's answer is discarded, and its invocation is recorded under its own variant name
  (its errors and model latency included), as SageMaker publishes a shadow variant's metrics.

`configure(servers, metrics)` (the simulator does it) says where models run and where metrics go;
without it, invocations are answered `ServiceUnavailable`. `seed_routing(n)` makes the weighted choice
reproducible. `invoke_endpoint(...)` is the same logic without HTTP, for tests.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from moto.sagemaker.models import sagemaker_backends
from moto.sagemakerruntime import responses as runtime_responses

from sagepilot_sandbox.bus import DEFAULT_ACCOUNT, DEFAULT_REGION
from sagepilot_sandbox.sagemaker import endpoints
from sagepilot_sandbox.sagemaker.containers import resolve_container
from sagepilot_sandbox.sagemaker.metrics import InvocationMetrics
from sagepilot_sandbox.sagemaker.modelservers import ModelServers, ModelUnavailable

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
SERVING = ("InService", "Updating", "SystemUpdating", "RollingBack")
VARIANT_HEADER = "x-Amzn-Invoked-Production-Variant"

_lock = threading.Lock()
_random = random.Random()  # noqa: S311 - traffic routing, not security
_installed = False
_shadow_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-shadow")
_shadow_copies: set[Future[None]] = set()


@dataclass
class _Runtime:
    servers: ModelServers | None = None
    metrics: InvocationMetrics | None = None


_runtime = _Runtime()


@dataclass
class Answer:
    """An HTTP answer of SageMaker Runtime."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    variant: str | None = None

    @property
    def error_code(self) -> str | None:
        return self.headers.get("x-amzn-ErrorType") if self.status >= 300 else None


def configure(servers: ModelServers, metrics: InvocationMetrics | None = None) -> None:
    with _lock:
        _runtime.servers, _runtime.metrics = servers, metrics


def clear() -> None:
    with _lock:
        _runtime.servers, _runtime.metrics = None, None


def seed_routing(seed: int | None) -> None:
    """Make the weighted choice of variants reproducible (None: from the system's randomness)."""
    with _lock:
        _random.seed(seed)


def _error(status: int, code: str, message: str, **members: Any) -> Answer:
    body = {"Message": message, **members}
    return Answer(status, json.dumps(body).encode(), {"x-amzn-ErrorType": code, "Content-Type": "application/json"})


def _not_found(name: str, account: str) -> Answer:
    return _error(400, "ValidationError", f"Endpoint {name} of account {account} not found.")


def _choose(variants: list[tuple[str, float]]) -> str | None:
    total = sum(weight for _, weight in variants if weight > 0)
    if total <= 0:
        return None
    with _lock:
        point = _random.random() * total
    for name, weight in variants:
        if weight <= 0:
            continue
        point -= weight
        if point < 0:
            return name
    return next(name for name, weight in reversed(variants) if weight > 0)


def _serving_variants(endpoint: Any, backend: Any) -> list[tuple[str, float, str, int]]:
    """(variant, current weight, model name, current instances) of what the endpoint serves now."""
    with endpoints._lock:
        variants = [dict(v) for v in endpoint.production_variants or []]
        specs = list(getattr(endpoint, "sp_specs", None) or [])
        if not specs:
            config = backend.endpoint_configs.get(endpoint.endpoint_config_name)
            specs = list(config.production_variants) if config is not None else []
    models = {s["VariantName"]: s.get("ModelName", "") for s in specs}
    return [
        (
            v["VariantName"],
            float(v.get("CurrentWeight") or 0.0),
            str(models.get(v["VariantName"], "")),
            int(v.get("CurrentInstanceCount") or 1),
        )
        for v in variants
        if "CurrentWeight" in v
    ]


def _shadow_variants(endpoint: Any) -> list[tuple[str, float, str, int]]:
    """(variant, share of requests copied to it, model name, current instances) of the endpoint's shadows."""
    with endpoints._lock:
        production = [dict(v) for v in endpoint.production_variants or []]
        shadows = [dict(v) for v in getattr(endpoint, "sp_shadow_variants", None) or []]
        specs = list(getattr(endpoint, "sp_shadow_specs", None) or [])
    models = {s["VariantName"]: s.get("ModelName", "") for s in specs}
    return [
        (
            str(v["VariantName"]),
            endpoints.shadow_share(production, v),
            str(models.get(v["VariantName"], "")),
            int(v.get("CurrentInstanceCount") or 1),
        )
        for v in shadows
    ]


def _copy_to_shadow(
    name: str,
    variant: str,
    model_name: str,
    instances: int,
    body: bytes,
    content_type: str | None,
    accept: str | None,
    account: str,
    region: str,
) -> None:
    """One copied request, answered by the shadow's model and recorded under its name; the answer is dropped."""
    with _lock:
        servers, metrics = _runtime.servers, _runtime.metrics
    if servers is None or metrics is None:
        return
    started = time.perf_counter()
    model_seconds: float | None = None
    try:
        container = resolve_container(model_name, account=account, region=region)
        response = servers.invoke(
            container.model_data_url, body, content_type, accept, account=account, environment=container.environment
        )
    except ModelUnavailable:
        status = 500
    else:
        status, model_seconds = response.status, response.seconds
    total = time.perf_counter() - started
    metrics.record(
        name,
        variant,
        status=status,
        model_seconds=model_seconds,
        overhead_seconds=total - (model_seconds or 0.0),
        instances=instances,
        account=account,
        region=region,
    )


def _mirror(
    endpoint: Any, name: str, body: bytes, content_type: str | None, accept: str | None, account: str, region: str
) -> None:
    """Copy the request to the endpoint's shadow at its sampling share (in the background)."""
    for variant, share, model_name, instances in _shadow_variants(endpoint):
        with _lock:
            copied = _random.random() < share
        if not copied:
            continue
        future = _shadow_pool.submit(
            _copy_to_shadow, name, variant, model_name, instances, body, content_type, accept, account, region
        )
        with _lock:
            _shadow_copies.add(future)
        future.add_done_callback(_forget_copy)


def _forget_copy(future: Future[None]) -> None:
    with _lock:
        _shadow_copies.discard(future)


def wait_for_shadows(timeout: float = 30.0) -> None:
    """Wait for the copies of requests still being answered by shadow variants (for tests)."""
    with _lock:
        pending = set(_shadow_copies)
    wait(pending, timeout=timeout)


def model_error(
    endpoint: str, status: int, original: str, *, account: str, region: str, variant: str | None = None
) -> Answer:
    kind = "client" if 400 <= status < 500 else "server"
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    message = (
        f'Received {kind} error ({status}) from primary with message "{original}". See '
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:group={group} "
        f"in account {account} for more information."
    )
    answer = _error(
        424,
        "ModelError",
        message,
        OriginalStatusCode=status,
        OriginalMessage=original,
        LogStreamArn=f"arn:aws:logs:{region}:{account}:log-group:{group}",
    )
    answer.variant = variant
    return answer


def invoke_endpoint(
    name: str,
    body: bytes,
    *,
    content_type: str | None = None,
    accept: str | None = None,
    target_variant: str | None = None,
    account: str = DEFAULT_ACCOUNT,
    region: str = DEFAULT_REGION,
) -> Answer:
    """What SageMaker Runtime answers to InvokeEndpoint (see the module docstring)."""
    started = time.perf_counter()
    if len(body) > MAX_PAYLOAD_BYTES:
        return Answer(
            413,
            f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes.".encode(),
            {"Content-Type": "text/plain; charset=utf-8"},
        )
    backend = sagemaker_backends[account][region]
    endpoint = backend.endpoints.get(name)
    if endpoint is None or endpoint.endpoint_status not in SERVING:
        return _not_found(name, account)
    variants = _serving_variants(endpoint, backend)
    if not variants:
        return _not_found(name, account)
    if target_variant:
        if target_variant not in {v[0] for v in variants}:
            return _error(
                400,
                "ValidationError",
                f'The variant name "{target_variant}" is not present within endpoint "{endpoint.arn}".',
            )
        chosen: str | None = target_variant
    else:
        chosen = _choose([(v[0], v[1]) for v in variants])
        if chosen is None:
            return _error(400, "ValidationError", f'Endpoint "{endpoint.arn}" has no variant with a positive weight.')
    _, _, model_name, instances = next(v for v in variants if v[0] == chosen)
    with _lock:
        servers, metrics = _runtime.servers, _runtime.metrics
    if servers is None:
        return _error(503, "ServiceUnavailable", "The sandbox runs no model servers (no SageMakerSimulator attached).")
    model_seconds: float | None = None
    try:
        container = resolve_container(model_name, account=account, region=region)
        response = servers.invoke(
            container.model_data_url, body, content_type, accept, account=account, environment=container.environment
        )
    except ModelUnavailable as exc:
        status, answer = 500, model_error(name, 500, exc.reason, account=account, region=region, variant=chosen)
    else:
        status, model_seconds = response.status, response.seconds
        if 200 <= status < 300:
            answer = Answer(status, response.body, {"Content-Type": response.content_type, VARIANT_HEADER: str(chosen)})
            answer.variant = chosen
        else:
            original = response.body.decode("utf-8", "replace").rstrip()
            answer = model_error(name, status, original, account=account, region=region, variant=chosen)
    if metrics is not None:
        total = time.perf_counter() - started
        metrics.record(
            name,
            str(chosen),
            status=status,
            model_seconds=model_seconds,
            overhead_seconds=total - (model_seconds or 0.0),
            instances=instances,
            account=account,
            region=region,
        )
    _mirror(endpoint, name, body, content_type, accept, account, region)
    return answer


def _response_invoke_endpoint(self: Any) -> tuple[int, dict[str, str], bytes]:
    name = unquote(self.path.split("?")[0].split("/")[2])
    headers = self.headers
    body = self.raw_body if isinstance(self.raw_body, bytes) else (self.raw_body or "").encode()
    answer = invoke_endpoint(
        name,
        body,
        content_type=headers.get("Content-Type"),
        accept=headers.get("Accept"),
        target_variant=headers.get("X-Amzn-SageMaker-Target-Variant"),
        account=self.current_account,
        region=self.region,
    )
    # moto takes the status from the headers (the tuple's own status is ignored)
    return answer.status, {**answer.headers, "status": str(answer.status)}, answer.body


def install() -> None:
    global _installed
    if _installed:
        return
    response_cls: Any = runtime_responses.SageMakerRuntimeResponse
    response_cls.use_raw_body = True
    response_cls.invoke_endpoint = _response_invoke_endpoint
    _installed = True
