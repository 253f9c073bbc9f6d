"""Embedded-AWS CPU per request on a full table and bucket: the sandbox's patches against moto's own code.

`python -m bench.sandbox_requests [--items 20000] [--objects 10000] [--calls 50]` (about a minute). In process
(`mock_aws` with `faithful.install()`), the CPU the embedded AWS spends answering (moto's request handler,
serialisation included; the client's side left out), per call, side by side in one run:

- DynamoDB, on a state table shaped as the template's (pk; ByKind, ByKindAge) holding `--items` claim items
  and 5 jobs waiting for capacity: GetItem (the floor), Query of ByKindAge's `waiting-capacity` partition
  (5 items) and of ByKind's empty `waiting#g1`, with `moto_patches/dynamodb_query.py` and with moto's walk
  of the whole table (`dynamodb_query.moto_query()`);
- S3, on a versioned bucket holding `--objects` files in 100 group folders as the groups bench drops them:
  HeadObject (the floor), ListObjectVersions of one folder (1% of the bucket) and of one key, with
  `moto_patches/s3_listing.py` and with moto's LastModified strings, which its serialiser parses back.

Not part of `make bench`: the figures quoted in those patches' docstrings and docs/sandbox.md.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

REGION = "us-east-1"
TABLE = "state"
BUCKET = "data"


class ServerClock:
    """CPU spent in a moto handler method (the embedded AWS's side of a request)."""

    def __init__(self, handler_cls: Any, method: str) -> None:
        self.spent = 0.0
        original = getattr(handler_cls, method)

        def timed(handler: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return original(handler, *args, **kwargs)
            finally:
                self.spent += time.process_time() - start

        setattr(handler_cls, method, timed)

    def per_call_ms(self, calls: int, request: Callable[[], Any]) -> float:
        request()  # warm: the first Query of an attribute builds its map
        self.spent = 0.0
        for _ in range(calls):
            request()
        return self.spent / calls * 1000


def create_state_table(ddb: Any) -> None:
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "kind", "AttributeType": "S"},
            {"AttributeName": "createdAt", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByKind",
                "KeySchema": [
                    {"AttributeName": "kind", "KeyType": "HASH"},
                    {"AttributeName": "pk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "ByKindAge",
                "KeySchema": [
                    {"AttributeName": "kind", "KeyType": "HASH"},
                    {"AttributeName": "createdAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["waitingSince"]},
            },
        ],
    )


@contextmanager
def moto_timestamps() -> Iterator[None]:
    """ListObjectVersions' LastModified as moto gives it: its ISO string."""
    from sagepilot_sandbox.moto_patches import s3_listing

    listed: Any = s3_listing._Listed
    patched = listed.__dict__["last_modified_ISO8601"]
    listed.last_modified_ISO8601 = property(lambda self: self._entry.last_modified_ISO8601)
    try:
        yield
    finally:
        listed.last_modified_ISO8601 = patched


def row(label: str, patched: float, moto: float | None = None) -> None:
    print(f"{label:<40}{patched:9.2f}" + ("" if moto is None else f"{moto:9.2f}"))


def dynamodb(items: int, calls: int) -> None:
    import boto3
    from moto.dynamodb.responses import DynamoHandler

    from sagepilot_sandbox.moto_patches import dynamodb_query

    ddb = boto3.client("dynamodb", region_name=REGION)
    create_state_table(ddb)
    for start in range(0, items, 25):
        claims = [
            {"PutRequest": {"Item": {"pk": {"S": f"claim#{i:06d}"}, "job": {"S": "j"}}}}
            for i in range(start, min(start + 25, items))
        ]
        ddb.batch_write_item(RequestItems={TABLE: claims})
    for i in range(5):
        job = {"pk": {"S": f"job#{i}"}, "kind": {"S": "waiting-capacity"}, "createdAt": {"N": str(i)}}
        ddb.put_item(TableName=TABLE, Item=job)
    print(f"\nDynamoDB, {items:,} other items in the table{'patched':>12}{'moto':>9}")
    floor = ServerClock(DynamoHandler, "get_item")
    row("GetItem (floor)", floor.per_call_ms(calls, lambda: ddb.get_item(TableName=TABLE, Key={"pk": {"S": "job#1"}})))
    clock = ServerClock(DynamoHandler, "query")
    for label, index, kind in (
        ("Query ByKindAge, 5 items", "ByKindAge", "waiting-capacity"),
        ("Query ByKind, empty", "ByKind", "waiting#g1"),
    ):
        request = {
            "TableName": TABLE,
            "IndexName": index,
            "KeyConditionExpression": "kind = :kind",
            "ExpressionAttributeValues": {":kind": {"S": kind}},
        }
        patched = clock.per_call_ms(calls, lambda r=request: ddb.query(**r))
        with dynamodb_query.moto_query():
            walked = clock.per_call_ms(calls, lambda r=request: ddb.query(**r))
        row(label, patched, walked)


def s3(objects: int, calls: int) -> None:
    import boto3
    from moto.s3.responses import S3Response

    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for i in range(objects):
        client.put_object(Bucket=BUCKET, Key=f"incoming/g{i % 100:02d}/2026-11/part-{i:05d}.csv", Body=b"id\n1\n")
    folder = "incoming/g07/2026-11/"
    print(f"\nS3, {objects:,} objects in the bucket{'patched':>20}{'moto':>9}")
    floor = ServerClock(S3Response, "key_response")
    key = f"{folder}part-00007.csv"
    row("HeadObject (floor)", floor.per_call_ms(calls, lambda: client.head_object(Bucket=BUCKET, Key=key)))
    clock = ServerClock(S3Response, "list_object_versions")
    for label, prefix in (
        (f"ListObjectVersions, {objects // 100} versions", folder),
        ("ListObjectVersions, one key", key),
    ):
        patched = clock.per_call_ms(calls, lambda p=prefix: client.list_object_versions(Bucket=BUCKET, Prefix=p))
        with moto_timestamps():
            moto = clock.per_call_ms(calls, lambda p=prefix: client.list_object_versions(Bucket=BUCKET, Prefix=p))
        row(label, patched, moto)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000, help="claim items in the table besides the jobs")
    parser.add_argument("--objects", type=int, default=10_000, help="objects in the bucket")
    parser.add_argument("--calls", type=int, default=50, help="calls per figure")
    args = parser.parse_args(argv)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(name, value)
    from moto import mock_aws

    from sagepilot_sandbox import faithful

    with mock_aws():
        faithful.install()
        print(f"the embedded AWS's CPU (its request handler) in ms per call, mean of {args.calls}")
        dynamodb(args.items, args.calls)
        s3(args.objects, args.calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
