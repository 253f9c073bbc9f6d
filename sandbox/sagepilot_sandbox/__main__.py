"""`python -m sagepilot_sandbox serve|demo|traffic` (see docs/sandbox.md)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from sagepilot_sandbox.server import Sandbox


def serve(port: int, copies: int, health_check_seconds: float = 60.0) -> int:
    # Alarms judge real traffic on the demo's compressed clock: a 60-s alarm period lasts 3 s.
    sandbox = Sandbox(
        port=port,
        s3_event_copies=copies,
        alarm_evaluation_seconds=0.5,
        alarm_time_scale=0.05,
        health_check_seconds=health_check_seconds,
    )
    stack = sandbox.start()
    bucket = stack.outputs["DataBucketName"]
    url = sandbox.endpoint_url
    print(f"sandbox: embedded AWS on {url}, stack {stack.name}")
    for name, value in stack.outputs.items():
        print(f"  {name:28} {value}")
    print(
        f"""
Try it (in another shell; docs/sandbox.md's "Drive the sandbox yourself" goes on from here):
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
  alias awsl='.venv/bin/aws --endpoint-url {url}'
  awsl sagemaker create-model-package-group --model-package-group-name churn
  .venv/bin/python -c 'import sagepilot_model_server.examples as e; e.write_training_data("train.csv", 400)'
  awsl s3 cp train.csv s3://{bucket}/training/churn/2026-11/train.csv      # a training job trains v1
  awsl sagemaker list-model-packages --model-package-group-name churn      # v1, with its metrics
  awsl sagemaker update-model-package --model-package-arn <its ARN> --model-approval-status Approved
  awsl sagemaker-runtime invoke-endpoint --endpoint-name sagepilot-churn --content-type text/csv \\
      --body fileb://customers.csv out.csv                                  # once the endpoint is InService
  awsl s3 cp customers.csv s3://{bucket}/incoming/churn/2026-11/customers.csv  # -> predictions/churn/...

Function and model server logs: {sandbox.log_dir}   Ctrl-C stops the sandbox.""",
        flush=True,
    )

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping")
    finally:
        sandbox.stop()
    return 0


def traffic(endpoint: str, endpoint_url: str, seconds: float, clients: int, records: int) -> int:
    """Synthetic customers sent to `endpoint` by `clients` concurrent callers for `seconds`; prints a tally
    per second of which variant answered and which requests failed (e.g. ModelError from a broken model)."""
    import boto3
    from botocore.config import Config

    from sagepilot_sandbox.demo.traffic import Outcome, Traffic

    def client() -> Any:
        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the sandbox accepts any key
            config=Config(retries={"mode": "standard", "max_attempts": 1}),
        )

    calls = Traffic(client, endpoint)
    total: list[Outcome] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        second_end = min(deadline, time.monotonic() + 1.0)
        batch = calls.until(lambda: False, timeout=second_end - time.monotonic(), records=records, threads=clients)
        total += batch
        print(f"{len(total):6d} requests  {_tally(batch)}", flush=True)
    print(f"total: {_tally(total)}")
    return 0


def _tally(outcomes: Sequence[Any]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        key = getattr(outcome, "variant", None) or getattr(outcome, "error", None) or "?"
        counts[key] = counts.get(key, 0) + 1
    return "  ".join(f"{key} {count}" for key, count in sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sagepilot_sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="start the sandbox and keep it running")
    serve_p.add_argument("--port", type=int, default=4566)
    serve_p.add_argument(
        "--duplicate-events",
        type=int,
        default=1,
        metavar="N",
        help="deliver every S3 event N times, to watch idempotency at work",
    )
    serve_p.add_argument(
        "--health-check-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="SageMaker's start-up window: a variant's /ping must answer 200 within S seconds of its start",
    )
    demo_p = sub.add_parser("demo", help="run the main scenario and check its outcome")
    demo_p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    traffic_p = sub.add_parser("traffic", help="call an endpoint of a running sandbox for a while; tally the answers")
    traffic_p.add_argument("endpoint")
    traffic_p.add_argument("--seconds", type=float, default=20.0)
    traffic_p.add_argument("--clients", type=int, default=4, help="concurrent clients")
    traffic_p.add_argument("--records", type=int, default=4, help="customers per request")
    traffic_p.add_argument("--endpoint-url", default="http://127.0.0.1:4566")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.port, args.duplicate_events, args.health_check_seconds)
    if args.command == "traffic":
        return traffic(args.endpoint, args.endpoint_url, args.seconds, args.clients, args.records)
    from sagepilot_sandbox.demo.scenario import run_demo

    return run_demo(args.port)


if __name__ == "__main__":
    sys.exit(main())
