"""S3 as SageMaker's side of the sandbox reads and writes it: straight through moto's backend.

SageMaker reads a job's inputs and model artifacts, and writes its outputs, with the job's role; the
sandbox does it in process, on moto's S3 backend, so that it works the same under the in-process
`mock_aws` and the threaded server. Writes go through the backend's PutObject, so the bucket's
versioning applies and S3 sends its `Object Created` event, as it would for SageMaker's own writes.

Given `role=` (the execution role's ARN), each call is first authorized as that role (`roles`):
`s3:GetObject` to read, `s3:ListBucket` to list, `s3:PutObject` to write; `AccessDenied` otherwise.
"""

from __future__ import annotations

from typing import Any

from moto.s3.models import s3_backends

from sagepilot_sandbox.bus import DEFAULT_ACCOUNT
from sagepilot_sandbox.sagemaker import roles


class NotFound(LookupError):
    """No such bucket or object."""


AccessDenied = roles.AccessDenied


class WriteRefused(Exception):
    """S3 refused the write (e.g. a key over 1,024 bytes); `reason` is S3's error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); ValueError if it is not an S3 URI."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not uri.startswith("s3://") or not bucket:
        raise ValueError(f"not an S3 URI: {uri!r}")
    return bucket, key


def _backend(account: str) -> Any:
    return s3_backends[account]["global"]


def read(bucket: str, key: str, *, account: str = DEFAULT_ACCOUNT, role: str | None = None) -> bytes:
    """The current version's bytes; NotFound if the bucket or the object does not exist."""
    return bytes(head(bucket, key, account=account, role=role).value)


def head(bucket: str, key: str, *, account: str = DEFAULT_ACCOUNT, role: str | None = None) -> Any:
    """moto's key object (value, etag, version_id); NotFound if missing."""
    if role is not None:
        roles.check_read(role, bucket, key, account=account)
    try:
        found = _backend(account).get_object(bucket, key)
    except Exception as exc:
        raise NotFound(f"s3://{bucket}/{key}") from exc
    if found is None or not hasattr(found, "value"):
        raise NotFound(f"s3://{bucket}/{key}")
    return found


def exists(bucket: str, key: str, *, account: str = DEFAULT_ACCOUNT) -> bool:
    try:
        head(bucket, key, account=account)
    except NotFound:
        return False
    return True


def list_keys(bucket: str, prefix: str, *, account: str = DEFAULT_ACCOUNT, role: str | None = None) -> list[str]:
    """Every key starting with `prefix` (as S3Prefix selects them), sorted; NotFound for a missing bucket."""
    if role is not None:
        roles.check_list(role, bucket, account=account)
    backend = _backend(account)
    try:
        bucket_object = backend.get_bucket(bucket)
    except Exception as exc:
        raise NotFound(f"s3://{bucket}") from exc
    keys, _prefixes, _truncated, _marker = backend.list_objects(bucket_object, prefix, None, None, 1_000_000)
    return sorted(k.name for k in keys if not k.name.endswith("/"))


def write(bucket: str, key: str, body: bytes, *, account: str = DEFAULT_ACCOUNT, role: str | None = None) -> None:
    if role is not None:
        roles.check_write(role, bucket, key, account=account)
    from moto.s3.exceptions import S3ClientError

    try:
        _backend(account).put_object(bucket, key, body)
    except S3ClientError as refused:
        raise WriteRefused(f"{refused.code}: {refused.message}") from refused
