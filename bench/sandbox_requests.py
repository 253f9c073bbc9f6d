"""Per-request CPU of the embedded AWS on a full table or bucket, the sandbox's patches against moto's own code.

`python -m bench.sandbox_requests [--items 20000] [--calls 50]` (about a minute): in process (`mock_aws` with
`faithful.install()`), a state table shaped as the template's (pk; ByKind, ByKindAge) filled with `--items`
claim items and 5 jobs waiting for capacity, then per call, in one run: GetItem (the floor: what any request
costs through boto3 and moto), and Query of ByKindAge's `waiting-capacity` partition (5 items) and of ByKind's
empty `waiting#g1`, each with the sandbox's patch (`moto_patches/dynamodb_query.py`) and with moto's walk of
the whole table (`dynamodb_query.moto_query()`). Not part of `make bench`: a figure for the patch's docstring.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

REGION = "us-east-1"
TABLE = "state"


def per_call_ms(calls: int, request: Callable[[], Any]) -> float:
    request()  # warm: the first Query of an attribute builds its map
    start = time.process_time()
    for _ in range(calls):
        request()
    return (time.process_time() - start) / calls * 1000


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000, help="claim items in the table besides the jobs")
    parser.add_argument("--calls", type=int, default=50, help="calls per figure")
    args = parser.parse_args(argv)
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(name, value)
    import boto3
    from moto import mock_aws

    from sagepilot_sandbox import faithful
    from sagepilot_sandbox.moto_patches import dynamodb_query

    with mock_aws():
        faithful.install()
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_state_table(ddb)
        for start in range(0, args.items, 25):
            claims = [
                {"PutRequest": {"Item": {"pk": {"S": f"claim#{i:06d}"}, "job": {"S": "j"}}}}
                for i in range(start, min(start + 25, args.items))
            ]
            ddb.batch_write_item(RequestItems={TABLE: claims})
        for i in range(5):
            job = {"pk": {"S": f"job#{i}"}, "kind": {"S": "waiting-capacity"}, "createdAt": {"N": str(i)}}
            ddb.put_item(TableName=TABLE, Item=job)
        queries = {
            "Query ByKindAge, 5 items": {"IndexName": "ByKindAge", "kind": "waiting-capacity"},
            "Query ByKind, empty": {"IndexName": "ByKind", "kind": "waiting#g1"},
        }
        print(f"{args.items:,} other items; CPU ms per call, mean of {args.calls}")
        floor = per_call_ms(args.calls, lambda: ddb.get_item(TableName=TABLE, Key={"pk": {"S": "job#1"}}))
        print(f"{'GetItem (floor)':<28}{floor:8.2f}")
        print(f"{'':<28}{'patched':>8}{'moto':>8}")
        for label, shape in queries.items():
            request = {
                "TableName": TABLE,
                "IndexName": shape["IndexName"],
                "KeyConditionExpression": "kind = :kind",
                "ExpressionAttributeValues": {":kind": {"S": shape["kind"]}},
            }
            patched = per_call_ms(args.calls, lambda r=request: ddb.query(**r))
            with dynamodb_query.moto_query():
                walked = per_call_ms(args.calls, lambda r=request: ddb.query(**r))
            print(f"{label:<28}{patched:8.2f}{walked:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
