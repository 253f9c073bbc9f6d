"""The command line: its arguments, and which module answers each command.

The stack's state table comes from --table or SAGEPILOT_STATE_TABLE, its name prefix from --prefix or
SAGEPILOT_PREFIX (the template's NamePrefix, `sagepilot` by default), its data bucket from --bucket or
SAGEPILOT_DATA_BUCKET; AWS_ENDPOINT_URL points everything at the sandbox. A refused command prints why on
stderr and exits 2; a rollout command recorded whose event EventBridge refused says so and exits 1.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import boto3

from sagepilot.adapters.endpoints import Endpoints
from sagepilot.adapters.rollout_reports import RolloutReports
from sagepilot.adapters.rollout_state import RolloutStore
from sagepilot_cli import metrics, rollouts, status
from sagepilot_cli.errors import CommandRefused
from sagepilot_cli.report import show_report


def monitor(verb: str, prefix: str, endpoint: str | None, since: str) -> list[str]:
    """`status`, `alarms` and `metrics`: read CloudWatch (and SQS for status), then the plain functions decide."""
    cloudwatch = boto3.client("cloudwatch")
    now = datetime.now(UTC)
    if verb == "metrics":
        try:
            window = metrics.parse_since(since)
        except ValueError as exc:
            raise CommandRefused(str(exc)) from None
        return metrics.show_metrics(metrics.fetch_figures(cloudwatch, prefix, window, now), prefix, since)
    if verb == "alarms":
        found = status.alarm_views(status.describe_alarms(cloudwatch, f"{endpoint or prefix}-"))
        return status.show_alarms(status.alarms_of(found, prefix, endpoint), now)
    control = status.control_alarms(status.describe_alarms(cloudwatch, f"{prefix}-control-"))
    queues = status.queue_depths(boto3.client("sqs"), status.watched_queues(control))
    return status.show_status(prefix, status.alarm_views(control), queues, now)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagepilot", description="Operate sagepilot's rollouts; see its health.")
    parser.add_argument("--table", default=os.environ.get("SAGEPILOT_STATE_TABLE"), help="the stack's state table")
    parser.add_argument(
        "--prefix", default=os.environ.get("SAGEPILOT_PREFIX") or "sagepilot", help="the stack's NamePrefix"
    )
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("rollouts", help="every managed endpoint and its rollout")
    for verb in ("history", *rollouts.COMMANDS):
        sub.add_parser(verb).add_argument("endpoint")
    sub.add_parser("status", help="the control plane's own alarms and queues")
    sub.add_parser("alarms", help="every alarm of the stack, or of one endpoint").add_argument("endpoint", nargs="?")
    sub.add_parser("metrics", help="the dashboard's figures as tables").add_argument(
        "--since", default="1h", help="the window: 30m, 1h, 2d (default 1h)"
    )
    report = sub.add_parser("report", help="the canary analysis of the endpoint's newest judged rollout")
    report.add_argument("endpoint")
    report.add_argument(
        "--bucket", default=os.environ.get("SAGEPILOT_DATA_BUCKET"), help="the stack's data bucket (DataBucketName)"
    )
    report.add_argument("--html", help="where to write the page (default: <endpoint>-report.html)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.verb == "report":
        if not args.bucket:
            parser.error("the data bucket is needed: --bucket NAME or SAGEPILOT_DATA_BUCKET (stack output)")
        try:
            lines = show_report(RolloutReports(boto3.client("s3"), args.bucket), args.endpoint, args.html)
        except CommandRefused as exc:
            print(f"sagepilot: {exc}", file=sys.stderr)
            return 2
        print("\n".join(lines))
        return 0
    if args.verb in ("status", "alarms", "metrics"):
        try:
            lines = monitor(args.verb, args.prefix, getattr(args, "endpoint", None), getattr(args, "since", "1h"))
        except CommandRefused as exc:
            print(f"sagepilot: {exc}", file=sys.stderr)
            return 2
        print("\n".join(lines))
        return 0
    if not args.table:
        parser.error("the state table is needed: --table NAME or SAGEPILOT_STATE_TABLE (stack output StateTableName)")
    store = RolloutStore(boto3.client("dynamodb"), args.table, lease_seconds=60)
    endpoints = Endpoints(boto3.client("sagemaker"), role_arn="")
    try:
        if args.verb == "rollouts":
            lines = rollouts.show_rollouts(store, endpoints)
        elif args.verb == "history":
            state = store.read(args.endpoint)
            if state is None:
                raise CommandRefused(f"{args.endpoint} is not an endpoint this stack manages")
            lines = [*rollouts.show_history(state), rollouts.weights(endpoints, args.endpoint)]
        else:
            who = os.environ.get("SAGEPILOT_OPERATOR") or getpass.getuser()
            rollouts.record(store, args.endpoint, args.verb, who)
            try:
                rollouts.announce(boto3.client("events"), args.endpoint, args.verb, who)
            except rollouts.EventRefused as exc:
                print(
                    f"{args.verb} recorded for {args.endpoint}; the rollout function acts on it at its next reconcile"
                )
                print(
                    f"sagepilot: EventBridge refused the Rollout Command event ({exc}): the scheduled reconcile "
                    "(ReconcileSchedule, every minute by default) acts on the recorded command instead",
                    file=sys.stderr,
                )
                return 1
            lines = [f"{args.verb} recorded for {args.endpoint}; the rollout function acts on it now"]
    except CommandRefused as exc:
        print(f"sagepilot: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def run() -> Any:  # console-script entry point
    sys.exit(main())


if __name__ == "__main__":
    run()
