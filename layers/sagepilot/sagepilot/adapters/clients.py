"""boto3 clients, created once per process and shared by every adapter.

Standard retry mode retries throttling and 5xx with backoff; what it does not retry
(ResourceLimitExceeded, ValidationException) is the adapters' own business.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from sagepilot import tracing

CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
)


@cache
def client(service: str) -> Any:
    """The process-wide client for a service (AWS_ENDPOINT_URL points it at the sandbox); its calls
    become X-Ray subsegments when the invocation is traced (see sagepilot.tracing)."""
    return tracing.instrument(boto3.client(service, config=CLIENT_CONFIG))


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
