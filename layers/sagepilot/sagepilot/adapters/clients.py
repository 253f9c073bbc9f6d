"""boto3 clients, created once per process and shared by every adapter.

Standard retry mode retries throttling, 5xx and timeouts with backoff; what it does not retry
(ResourceLimitExceeded, ValidationException) is the adapters' own business. So is what botocore raises once its retries
are spent on a timeout or a refused or dropped connection: `translates_unreachable`.

One call's worst case (every attempt connects and reads as long as allowed, then fails; every backoff is at
its longest) stays within a third of the function's timeout (FUNCTION_TIMEOUT_SECONDS, the template's
`Timeout`): a call that cannot succeed then fails as the adapters' TransientError, which the function handles
(an SQS message handed back, an EventBridge event retried), instead of Lambda stopping the function mid-work.
The limits come from that timeout (`call_limits`): as many retries as fit (at most 5) with reads of at least
5 s, so a short function gets fewer retries, a long one longer reads (up to 30 s).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as ConnectionFailed

from sagepilot import tracing
from sagepilot.errors import ConfigurationError, TransientError
from sagepilot.settings import function_timeout_seconds

CALL_SHARE = 1 / 3  # of the function's timeout, for one call's worst case
MAX_RETRIES = 5  # after the first attempt (botocore's `retries.max_attempts` counts retries)
CONNECT_TIMEOUT = 2.0  # an AWS endpoint in the function's region answers a connect in milliseconds
MIN_READ_TIMEOUT = 5.0  # AWS APIs answer in well under a second; S3 keeps a long copy's connection alive
MAX_READ_TIMEOUT = 30.0
MAX_BACKOFF = 20.0  # botocore's standard mode: the wait after attempt n is rand(0, 1) * min(2 ** (n - 1), 20)
MAX_POOL_CONNECTIONS = 32


@dataclass(frozen=True)
class CallLimits:
    connect_timeout: float
    read_timeout: float
    retries: int

    @property
    def worst_case_seconds(self) -> float:
        """Every attempt times out after connecting and reading as long as allowed; every backoff is its longest."""
        return (self.retries + 1) * (self.connect_timeout + self.read_timeout) + backoff_seconds(self.retries)


def backoff_seconds(retries: int) -> float:
    """The longest botocore's standard mode waits in all before `retries` retries."""
    return sum(min(2.0**attempt, MAX_BACKOFF) for attempt in range(retries))


def call_limits(function_timeout: float) -> CallLimits:
    """The most retries (up to MAX_RETRIES) whose worst case fits in CALL_SHARE of `function_timeout` with reads
    of at least MIN_READ_TIMEOUT; reads as long as the rest allows (up to MAX_READ_TIMEOUT)."""
    budget = function_timeout * CALL_SHARE
    for retries in range(MAX_RETRIES, -1, -1):
        read = (budget - backoff_seconds(retries)) / (retries + 1) - CONNECT_TIMEOUT
        if read >= MIN_READ_TIMEOUT:
            return CallLimits(CONNECT_TIMEOUT, min(read, MAX_READ_TIMEOUT), retries)
    shortest = (CONNECT_TIMEOUT + MIN_READ_TIMEOUT) / CALL_SHARE
    raise ConfigurationError(
        f"a function timeout of {function_timeout:g} s leaves no room for an AWS call: give the function at least "
        f"{shortest:g} s"
    )


def client_config(function_timeout: float) -> Config:
    limits = call_limits(function_timeout)
    return Config(
        retries={"mode": "standard", "total_max_attempts": limits.retries + 1},
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
        max_pool_connections=MAX_POOL_CONNECTIONS,
    )


if TYPE_CHECKING:  # the typed stubs are development dependencies: never imported at run time
    from typing import Protocol, overload

    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    # For the type checker only (no class to build at cold start): what `client` is.
    class ClientFactory(Protocol):
        """Gives the client of a service, typed by the service's stub: `client("s3")` is an S3Client."""

        @overload
        def __call__(self, service: Literal["application-autoscaling"]) -> ApplicationAutoScalingClient: ...
        @overload
        def __call__(self, service: Literal["cloudwatch"]) -> CloudWatchClient: ...
        @overload
        def __call__(self, service: Literal["dynamodb"]) -> DynamoDBClient: ...
        @overload
        def __call__(self, service: Literal["s3"]) -> S3Client: ...
        @overload
        def __call__(self, service: Literal["sagemaker"]) -> SageMakerClient: ...
        @overload
        def __call__(self, service: Literal["sns"]) -> SNSClient: ...
        @overload
        def __call__(self, service: Literal["sqs"]) -> SQSClient: ...


# The services the Lambda functions call (each has its typed stub in requirements-dev.txt).
Service = Literal["application-autoscaling", "cloudwatch", "dynamodb", "s3", "sagemaker", "sns", "sqs"]


@cache
def _client(service: Service) -> Any:
    config = client_config(function_timeout_seconds(os.environ))
    return tracing.instrument(boto3.client(service, config=config))


# The process-wide client for a service (AWS_ENDPOINT_URL points it at the sandbox), created once with the
# limits of the function's timeout (FUNCTION_TIMEOUT_SECONDS); its calls become X-Ray subsegments when the
# invocation is traced (see sagepilot.tracing). `client.cache_clear()` forgets them (tests that change the
# endpoint). Typed as what boto3 returns for each name (its stubs).
client = cast("ClientFactory", _client)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def old_item(exc: ClientError) -> dict[str, Any] | None:
    """The item a refused DynamoDB condition returned (ReturnValuesOnConditionCheckFailure=ALL_OLD), in
    DynamoDB's attribute-value form; None when none came back (the item did not exist)."""
    item = exc.response.get("Item")
    return item if isinstance(item, dict) else None


# What botocore raises as it is once its retries are spent: AWS was not reached (timeouts, refused or dropped
# connections: ConnectionError and its subclasses) or its answer was lost (HTTPClientError). Either may go away.
UNREACHABLE = (ConnectionFailed, HTTPClientError)

_Adapter = TypeVar("_Adapter", bound=type)


def translates_unreachable(adapter: _Adapter) -> _Adapter:
    """Class decorator of an adapter: each of its public methods raises TransientError (with botocore's
    message, the original as its cause) where botocore raised one of UNREACHABLE, as its ClientErrors are
    translated, so that the services above catch the package's errors only."""
    for name, member in list(vars(adapter).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(adapter, name, _unreachable_is_transient(member))
    return adapter


def _unreachable_is_transient(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except UNREACHABLE as exc:
            raise TransientError(str(exc)) from exc

    return call
