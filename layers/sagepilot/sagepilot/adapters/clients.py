"""boto3 clients, created once per process and shared by every adapter.

Standard retry mode retries throttling and 5xx with backoff; what it does not retry
(ResourceLimitExceeded, ValidationException) is the adapters' own business. So is what botocore raises
once its retries are spent on a timeout or a refused or dropped connection: `translates_unreachable`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as ConnectionFailed

from sagepilot import tracing
from sagepilot.errors import TransientError

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
