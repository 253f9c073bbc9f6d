"""Record every AWS call a function makes, inside the function's own process (see lambda_worker.py).

Why: the IAM check (iam_check.py) needs to know which actions on which resources each function really
asks for, and only calls made inside a function's process are the function's (the sandbox's own calls
and the tests' clients are not). One wrapper around `botocore.client.BaseClient._make_api_call` sees
every call of every client the function creates, whatever creates it (adapters, paginators, boto3's
managed transfers in their threads), once per API call (botocore's retries happen inside it).

What is kept of a call is what names its resource and its IAM context: top-level string parameters
(free text, payloads, tokens and pagination markers left out), `CopySource`, and for DynamoDB's
TransactWriteItems / TransactGetItems / BatchGetItem / BatchWriteItem the kind and table of each
item. Records are counted by identical content, so a long run costs memory per distinct call, not
per call. Recording is off unless the sandbox asks for it (SAGEPILOT_RECORD_CALLS=1).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

ENVIRONMENT_VARIABLE = "SAGEPILOT_RECORD_CALLS"
CallRecord = dict[str, Any]  # {"service", "operation", "params", "count"}

# Top-level string parameters that never name a resource or an IAM condition key: message bodies,
# expressions, descriptions, checksums, tokens and pagination markers.
_FREE_TEXT = frozenset(
    {
        "Message",
        "Subject",
        "MessageBody",
        "MessageStructure",
        "MessageDeduplicationId",
        "MessageGroupId",
        "UpdateExpression",
        "ConditionExpression",
        "KeyConditionExpression",
        "FilterExpression",
        "ProjectionExpression",
        "AlarmDescription",
        "Description",
        "ApprovalDescription",
        "ModelPackageDescription",
        "ModelPackageGroupDescription",
        "ContentMD5",
        "ChecksumCRC32",
        "ChecksumCRC32C",
        "ChecksumSHA1",
        "ChecksumSHA256",
        "ReceiptHandle",
        "UploadId",
        "ClientToken",
        "NextToken",
        "ContinuationToken",
        "StartAfter",
        "Marker",
        "KeyMarker",
        "VersionIdMarker",
        "UploadIdMarker",
        "PartNumberMarker",
        "IfMatch",
        "IfNoneMatch",
        "CopySourceIfMatch",
        "CopySourceIfNoneMatch",
    }
)
_MAX_VALUE_LENGTH = 2048


def _items_summary(operation: str, params: Mapping[str, Any]) -> list[dict[str, str]] | None:
    """Kind and table of each item of a DynamoDB transaction or batch (what IAM authorizes per item)."""
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return [
            {"kind": str(kind), "TableName": str(body.get("TableName", ""))}
            for item in params.get("TransactItems", [])
            for kind, body in item.items()
            if isinstance(body, Mapping)
        ]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        summary = []
        for table, body in params.get("RequestItems", {}).items():
            if operation == "BatchGetItem":
                summary.append({"kind": "Get", "TableName": str(table)})
            else:
                kinds = {kind for request in body for kind in request}
                summary += [{"kind": str(kind), "TableName": str(table)} for kind in sorted(kinds)]
        return summary
    return None


def summarize(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of a call that name its resources and IAM context (see the module docstring)."""
    kept: dict[str, Any] = {}
    for name, value in params.items():
        if name in _FREE_TEXT:
            continue
        if isinstance(value, str) and len(value) <= _MAX_VALUE_LENGTH:
            kept[name] = value
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            kept[name] = list(value)
        elif name == "CopySource" and isinstance(value, Mapping):
            kept[name] = {k: str(v) for k, v in value.items() if k in ("Bucket", "Key", "VersionId")}
        elif name == "Tags" and isinstance(value, list | Mapping):
            kept[name] = len(value)  # tagging on create needs its own permission; the tags themselves do not
    items = _items_summary(operation, params)
    if items is not None:
        kept["Items"] = items
    return kept


class Recorder:
    """Distinct calls since the last `take()`, with their counts; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, CallRecord] = {}

    def add(self, service: str, operation: str, params: Mapping[str, Any]) -> None:
        record: CallRecord = {"service": service, "operation": operation, "params": summarize(operation, params)}
        key = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            found = self._calls.setdefault(key, {**record, "count": 0})
            found["count"] += 1

    def take(self) -> list[CallRecord]:
        with self._lock:
            taken, self._calls = list(self._calls.values()), {}
        return taken


def install(recorder: Recorder) -> None:
    """Record every call of every botocore client of this process from now on."""
    from botocore.client import BaseClient

    original = BaseClient._make_api_call  # type: ignore[attr-defined]  # private: botocore's stubs omit it
    if getattr(original, "_sagepilot_recorder", None) is not None:
        raise RuntimeError("call recording is already installed in this process")

    def _make_api_call(self: Any, operation_name: str, api_params: Mapping[str, Any]) -> Any:
        recorder.add(self.meta.service_model.service_name, operation_name, api_params)
        return original(self, operation_name, api_params)

    _make_api_call._sagepilot_recorder = recorder  # type: ignore[attr-defined]
    BaseClient._make_api_call = _make_api_call  # type: ignore[attr-defined]


def merge(into: dict[str, CallRecord], records: list[CallRecord]) -> None:
    """Add `records` (from a worker's response) to the distinct calls in `into`, summing counts (a record's
    optional `source` is part of what makes it distinct)."""
    for record in records:
        body: dict[str, Any] = {k: record[k] for k in ("service", "operation", "params", "source") if k in record}
        key = json.dumps(body, sort_keys=True, default=str)
        found = into.setdefault(key, {**body, "count": 0})
        found["count"] += int(record.get("count", 1))
