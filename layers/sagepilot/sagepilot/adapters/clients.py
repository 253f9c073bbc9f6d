"""boto3 clients, created once per process and shared by every adapter.

Standard retry mode retries throttling and 5xx with backoff; what it does not retry
(ResourceLimitExceeded, ValidationException) is the adapters' own business.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, Literal, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from sagepilot import tracing

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

CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
)


@cache
def _client(service: Service) -> Any:
    return tracing.instrument(boto3.client(service, config=CLIENT_CONFIG))


# The process-wide client for a service (AWS_ENDPOINT_URL points it at the sandbox), created once; its calls
# become X-Ray subsegments when the invocation is traced (see sagepilot.tracing). `client.cache_clear()`
# forgets them (tests that change the endpoint). Typed as what boto3 returns for each name (its stubs).
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
