"""Adapters translate what botocore raises once its retries are spent on a timeout or a lost connection
into TransientError, as they translate ClientErrors: services catch the package's errors only."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from sagepilot.adapters.clients import translates_unreachable
from sagepilot.adapters.s3 import DataBucket
from sagepilot.errors import TransientError

URL = "https://s3.us-east-1.amazonaws.com/data/incoming/g/a.csv"


class _Client:
    """An S3 client whose every call fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def head_object(self, **_: object) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [EndpointConnectionError(endpoint_url=URL), ReadTimeoutError(endpoint_url=URL, error="read timed out")],
)
def test_a_lost_connection_is_a_transient_error_with_botocores_message_and_cause(error):
    bucket = DataBucket(_Client(error), "data")
    with pytest.raises(TransientError) as raised:
        bucket.head_dropped("incoming/g/a.csv", None)
    assert str(raised.value) == str(error) and raised.value.__cause__ is error


def test_other_errors_pass_unchanged_and_private_methods_are_left_alone():
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "Op")

    @translates_unreachable
    class Adapter:
        def public(self, error: Exception) -> None:
            raise error

        def _private(self, error: Exception) -> None:
            raise error

    with pytest.raises(ClientError):
        Adapter().public(denied)
    with pytest.raises(EndpointConnectionError):
        Adapter()._private(EndpointConnectionError(endpoint_url=URL))
    with pytest.raises(TransientError):
        Adapter().public(EndpointConnectionError(endpoint_url=URL))
