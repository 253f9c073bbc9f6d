"""`sagepilot`: the operator's command for rollouts.

    sagepilot rollouts                       every managed endpoint: phase, versions, live weights
    sagepilot history ENDPOINT               what happened to it, oldest first
    sagepilot pause|resume ENDPOINT          hold a canary at its step / let it go on
    sagepilot promote ENDPOINT               finish a canary now (the old variant is removed)
    sagepilot rollback ENDPOINT              all traffic back to the stable version now

A command is recorded in the endpoint's state under its lease (the same conditional write the control
plane uses, so it never races a rollout move), then a `Rollout Command` event is put on the default bus
so the rollout function acts on it at once. The state table comes from --table or SAGEPILOT_STATE_TABLE;
AWS_ENDPOINT_URL points everything at the sandbox.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import boto3

from sagepilot.adapters.endpoints import Endpoints
from sagepilot.adapters.rollout_state import LeaseBusy, RolloutStore
from sagepilot.domain.rollout import Command, Phase, RolloutState
from sagepilot.events import OPERATOR_SOURCE, ROLLOUT_COMMAND

_LEASE_WAIT_SECONDS = 15.0


class CommandRefused(Exception):
    """The command does not apply to the endpoint's current state."""


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _weights(endpoints: Endpoints, name: str) -> str:
    view = endpoints.describe(name)
    if view is None:
        return "(no endpoint)"
    shares = ", ".join(f"{v}={s:.0%}" for v, s in sorted(view.shares().items()))
    return f"{view.status}: {shares}"


def show_rollouts(store: RolloutStore, endpoints: Endpoints) -> list[str]:
    lines = [f"{'ENDPOINT':<32} {'GROUP':<20} {'PHASE':<13} {'STABLE':<7} {'CANDIDATE':<10} LIVE"]
    for state, _checked in sorted(store.all(), key=lambda pair: pair[0].endpoint):
        stable = f"v{state.stable.version}" if state.stable else "-"
        candidate = f"v{state.candidate.version}" if state.candidate else "-"
        phase = state.phase.value + (" (paused)" if state.paused else "")
        lines.append(
            f"{state.endpoint:<32} {state.group:<20} {phase:<13} {stable:<7} {candidate:<10} "
            f"{_weights(endpoints, state.endpoint)}"
        )
    return lines


def show_history(state: RolloutState) -> list[str]:
    return [f"{_when(entry.at)}  {entry.what}" for entry in state.history]


def apply_command(state: RolloutState, command: str, who: str, now: float) -> RolloutState:
    """The state with the operator's command recorded; CommandRefused if it does not apply now."""
    if state.phase is not Phase.CANARY:
        raise CommandRefused(
            f"{state.endpoint} is {state.phase.value}, not in a canary: {command} applies to a running A/B rollout"
        )
    if command == "pause":
        return state.evolve(now, f"paused by {who}", paused=True)
    if command == "resume":
        return state.evolve(now, f"resumed by {who}", paused=False)
    return state.evolve(now, f"{command} requested by {who}", command=Command(command))


def _record(store: RolloutStore, endpoint: str, command: str, who: str) -> RolloutState:
    owner = f"operator-{who}-{os.getpid()}"
    deadline = time.monotonic() + _LEASE_WAIT_SECONDS
    while True:
        try:
            lease = store.acquire(endpoint, owner, time.time())
            break
        except LeaseBusy:
            if time.monotonic() > deadline:
                raise CommandRefused(f"{endpoint} is busy (a rollout move holds it); try again") from None
            time.sleep(0.5)
    try:
        if lease.state is None:
            raise CommandRefused(f"{endpoint} is not an endpoint this stack manages")
        state = apply_command(lease.state, command, who, time.time())
        store.save(lease, state, time.time())
        return state
    finally:
        store.release(lease, time.time(), force=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sagepilot", description="Operate sagepilot's rollouts.")
    parser.add_argument("--table", default=os.environ.get("SAGEPILOT_STATE_TABLE"), help="the stack's state table")
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("rollouts", help="every managed endpoint and its rollout")
    for verb in ("history", "pause", "resume", "promote", "rollback"):
        sub.add_parser(verb).add_argument("endpoint")
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("the state table is needed: --table NAME or SAGEPILOT_STATE_TABLE (stack output StateTableName)")
    store = RolloutStore(boto3.client("dynamodb"), args.table, lease_seconds=60)
    endpoints = Endpoints(boto3.client("sagemaker"), role_arn="")
    try:
        if args.verb == "rollouts":
            lines = show_rollouts(store, endpoints)
        elif args.verb == "history":
            state = store.read(args.endpoint)
            if state is None:
                raise CommandRefused(f"{args.endpoint} is not an endpoint this stack manages")
            lines = [*show_history(state), _weights(endpoints, args.endpoint)]
        else:
            who = os.environ.get("SAGEPILOT_OPERATOR") or getpass.getuser()
            _record(store, args.endpoint, args.verb, who)
            boto3.client("events").put_events(
                Entries=[
                    {
                        "Source": OPERATOR_SOURCE,
                        "DetailType": ROLLOUT_COMMAND,
                        "Detail": json.dumps({"endpoint": args.endpoint, "command": args.verb, "requestedBy": who}),
                    }
                ]
            )
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
