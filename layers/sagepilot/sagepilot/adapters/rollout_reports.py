"""The canary gate's reports in the data bucket (`rollouts/<endpoint>/<rollout>/report.json`; see
domain.canary_report): read, append a look, and find an endpoint's newest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import error_code, translates_unreachable
from sagepilot.domain.canary_report import REPORT_PREFIX, appended, rollout_key
from sagepilot.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = {"NoSuchKey", "404", "NotFound"}


@translates_unreachable
class RolloutReports:
    def __init__(self, s3_client: S3Client, bucket: str) -> None:
        self._s3 = s3_client
        self._bucket = bucket

    def read(self, endpoint: str, rollout: str) -> dict[str, Any] | None:
        key = rollout_key(endpoint, rollout)
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if error_code(exc) in _MISSING:
                return None
            raise TransientError(f"reading s3://{self._bucket}/{key}: {exc}") from exc
        doc: dict[str, Any] = json.loads(body)
        return doc

    def append(self, endpoint: str, rollout: str, entry: Mapping[str, Any]) -> None:
        """Add one look to the rollout's report (read, add, write: the endpoint's lease makes it the only
        writer; a repeated look is not added twice)."""
        doc = appended(self.read(endpoint, rollout), endpoint, rollout, entry)
        key = rollout_key(endpoint, rollout)
        try:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=json.dumps(doc, separators=(",", ":")).encode(),
                ContentType="application/json",
            )
        except ClientError as exc:
            raise TransientError(f"writing s3://{self._bucket}/{key}: {exc}") from exc

    def newest(self, endpoint: str) -> dict[str, Any] | None:
        """The report of the endpoint's most recent judged rollout, or None."""
        prefix = f"{REPORT_PREFIX}/{endpoint}/"
        rollouts: list[tuple[int, str]] = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    name = str(item["Key"])[len(prefix) :].split("/", 1)[0]
                    started = name.rsplit("-", 1)[-1]
                    if started.isdigit():
                        rollouts.append((int(started), name))
        except ClientError as exc:
            raise TransientError(f"listing s3://{self._bucket}/{prefix}: {exc}") from exc
        return self.read(endpoint, max(rollouts)[1]) if rollouts else None
