"""`python -m sagepilot_sandbox serve|demo` (see the README)."""

from __future__ import annotations

import argparse
import sys
import time

from sagepilot_sandbox.server import Sandbox


def serve(port: int, copies: int) -> int:
    sandbox = Sandbox(port=port, s3_event_copies=copies)
    stack = sandbox.start()
    bucket = stack.outputs["DataBucketName"]
    print(f"sandbox: embedded AWS on {sandbox.endpoint_url}, stack {stack.name}")
    for name, value in stack.outputs.items():
        print(f"  {name:28} {value}")
    print(
        f"""
Try it (in another shell):
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
  aws --endpoint-url {sandbox.endpoint_url} sagemaker create-model-package-group --model-package-group-name churn
  aws --endpoint-url {sandbox.endpoint_url} sagemaker create-model-package --model-package-group-name churn \\
      --model-approval-status Approved --inference-specification \\
      '{{"Containers":[{{"Image":"123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:1","ModelDataUrl":"s3://{bucket}/models/churn/model.tar.gz"}}],"SupportedContentTypes":["text/csv"],"SupportedResponseMIMETypes":["text/csv"]}}'
  aws --endpoint-url {sandbox.endpoint_url} s3 cp customers.csv s3://{bucket}/incoming/churn/2026-11/customers.csv
  aws --endpoint-url {sandbox.endpoint_url} sagemaker list-transform-jobs
  aws --endpoint-url {sandbox.endpoint_url} s3 ls --recursive s3://{bucket}/

Function logs: {sandbox.log_dir}   Ctrl-C stops the sandbox.""",
        flush=True,
    )
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping")
    finally:
        sandbox.stop()
    return 0


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
    demo_p = sub.add_parser("demo", help="run the main scenario and check its outcome")
    demo_p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.port, args.duplicate_events)
    from sagepilot_sandbox.demo import run_demo

    return run_demo(args.port)


if __name__ == "__main__":
    sys.exit(main())
