"""The data bucket: confirm dropped objects, read and write the control plane's JSON documents."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import error_code, error_message, http_status
from sagepilot.errors import ObjectGone, TransientError

_MISSING = {"404", "NoSuchKey", "NoSuchVersion", "NotFound", "InvalidArgument", "400"}


@dataclass(frozen=True)
class HeadResult:
    key: str
    version_id: str | None
    size: int
    etag: str


def key_candidates(key: str) -> list[str]:
    """The key as sent, then URL-decoded: S3's EventBridge events are not documented either way."""
    decoded = unquote_plus(key)
    return [key] if decoded == key else [key, decoded]


class DataBucket:
    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self.name = bucket

    def head_dropped(self, key: str, version_id: str | None) -> HeadResult:
        """HeadObject on the version the event names, trying the key as sent and decoded."""
        for candidate in key_candidates(key):
            params: dict[str, Any] = {"Bucket": self.name, "Key": candidate}
            if version_id:
                params["VersionId"] = version_id
            try:
                head = self._s3.head_object(**params)
            except ClientError as exc:
                if error_code(exc) in _MISSING or http_status(exc) == 404:
                    continue
                raise TransientError(f"HeadObject s3://{self.name}/{candidate} failed: {exc}") from exc
            return HeadResult(
                key=candidate,
                version_id=head.get("VersionId") or version_id,
                size=int(head.get("ContentLength", 0)),
                etag=str(head.get("ETag", "")).strip('"'),
            )
        raise ObjectGone(f"s3://{self.name}/{key} (version {version_id}) no longer exists")

    def put_json(self, key: str, document: Any) -> None:
        try:
            self._s3.put_object(
                Bucket=self.name,
                Key=key,
                Body=json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
                ContentType="application/json",
            )
        except ClientError as exc:
            raise TransientError(f"PutObject s3://{self.name}/{key} failed: {exc}") from exc

    def copy(self, source_key: str, key: str) -> bool:
        """Copy an object of the bucket onto `key` (the same bytes each time: safe to repeat); False if the
        source does not exist. Over CopyObject's 5 GB limit, boto3's managed copy does it in parts."""
        source = {"Bucket": self.name, "Key": source_key}
        try:
            self._s3.copy_object(Bucket=self.name, Key=key, CopySource=source)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return False
            if error_code(exc) == "InvalidRequest" and "copy source is larger" in error_message(exc):
                return self._copy_in_parts(source, key)
            raise TransientError(f"CopyObject s3://{self.name}/{source_key} -> {key} failed: {exc}") from exc
        return True

    def _copy_in_parts(self, source: dict[str, str], key: str) -> bool:
        try:
            self._s3.copy(source, self.name, key)
        except ClientError as exc:
            raise TransientError(f"multipart copy s3://{self.name}/{source['Key']} -> {key} failed: {exc}") from exc
        return True

    def get_json(self, key: str) -> Any:
        try:
            body = self._s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        except ClientError as exc:
            raise TransientError(f"GetObject s3://{self.name}/{key} failed: {exc}") from exc
        return json.loads(body)
