"""The rollout commands: `rollouts`, `history`, and `pause | resume | promote | rollback`.

A command is recorded in the endpoint's state under its lease (the same conditional write the control
plane uses, so it never races a rollout move), then a `Rollout Command` event is put on the default bus
so the rollout function acts on it at once. If EventBridge refuses the event, the command stays recorded
and the scheduled reconcile acts on it (ReconcileSchedule, every minute by default).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from sagepilot.adapters.endpoints import Endpoints
from sagepilot.adapters.rollout_state import LeaseBusy, NotManaged, RolloutStore
from sagepilot.domain.rollout import Command, Phase, RolloutState
from sagepilot.events import OPERATOR_SOURCE, ROLLOUT_COMMAND
from sagepilot_cli.errors import CommandRefused
from sagepilot_cli.output import Column, table, when

LEASE_WAIT_SECONDS = 15.0
COMMANDS = ("pause", "resume", "promote", "rollback")


def weights(endpoints: Endpoints, name: str) -> str:
    view = endpoints.describe(name)
    if view is None:
        return "(no endpoint)"
    shares = ", ".join(f"{v}={s:.0%}" for v, s in sorted(view.shares().items()))
    return f"{view.status}: {shares}"


ROLLOUT_COLUMNS = (
    Column("ENDPOINT", 32),
    Column("GROUP", 20),
    Column("PHASE", 13),
    Column("STABLE", 7),
    Column("CANDIDATE", 10),
    Column("LIVE"),
)


def show_rollouts(store: RolloutStore, endpoints: Endpoints) -> list[str]:
    rows = []
    for state, _checked in sorted(store.all(), key=lambda pair: pair[0].endpoint):
        stable = f"v{state.stable.version}" if state.stable else "-"
        candidate = f"v{state.candidate.version}" if state.candidate else "-"
        phase = state.phase.value + (" (paused)" if state.paused else "")
        rows.append((state.endpoint, state.group, phase, stable, candidate, weights(endpoints, state.endpoint)))
    return table(ROLLOUT_COLUMNS, rows, gap=" ")


def show_history(state: RolloutState) -> list[str]:
    return [f"{when(entry.at)}  {entry.what}" for entry in state.history]


def apply_command(state: RolloutState, command: str, who: str, now: float) -> RolloutState:
    """The state with the operator's command recorded; CommandRefused if it does not apply now."""
    if state.phase not in (Phase.CANARY, Phase.SHADOW):
        raise CommandRefused(
            f"{state.endpoint} is {state.phase.value}, not in a canary or a shadow test: {command} applies to a "
            "running A/B rollout"
        )
    if command == "pause":
        return state.evolve(now, f"paused by {who}", paused=True)
    if command == "resume":
        return state.evolve(now, f"resumed by {who}", paused=False)
    return state.evolve(now, f"{command} requested by {who}", command=Command(command))


def record(store: RolloutStore, endpoint: str, command: str, who: str) -> RolloutState:
    """Record the command in the endpoint's state under its lease (waiting up to LEASE_WAIT_SECONDS for a
    rollout move that holds it); CommandRefused if it does not apply, or the endpoint stays busy."""
    # Unique per command: a lost response to the lease write is recognised as our own lease by its owner.
    owner = f"operator-{who}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    while True:
        try:
            lease = store.acquire(endpoint, owner, time.time(), existing=True)
            break
        except NotManaged:
            raise CommandRefused(f"{endpoint} is not an endpoint this stack manages") from None
        except LeaseBusy:
            if time.monotonic() > deadline:
                raise CommandRefused(f"{endpoint} is busy (a rollout move holds it); try again") from None
            time.sleep(0.5)
    try:
        if lease.state is None:
            raise CommandRefused(
                f"{endpoint} has no rollout recorded yet (its first deployment is still due): nothing to {command}"
            )
        state = apply_command(lease.state, command, who, time.time())
        store.save(lease, state, time.time())
        return state
    finally:
        store.release(lease, time.time(), force=True)


class EventRefused(Exception):
    """EventBridge did not take the `Rollout Command` event: its entry's `ErrorCode: ErrorMessage`."""


# PutEvents answers HTTP 200 and refuses entries one by one (FailedEntryCount); botocore retries none of them.
# These two are worth another try (AWS calls them retryable); any other code is permanent.
TRANSIENT_ENTRY_ERRORS = frozenset({"InternalFailure", "ThrottlingException"})
RETRY_DELAYS = (0.5, 1.0)  # seconds before the second and the third try


def announce(events: Any, endpoint: str, command: str, who: str) -> None:
    """Put the `Rollout Command` event on the default bus: the rollout function reconciles the endpoint at
    once. EventRefused if EventBridge refuses it for good (a permanent error, or a transient one every try)."""
    entry = {
        "Source": OPERATOR_SOURCE,
        "DetailType": ROLLOUT_COMMAND,
        "Detail": json.dumps({"endpoint": endpoint, "command": command, "requestedBy": who}),
    }
    for delay in (*RETRY_DELAYS, None):
        answer = events.put_events(Entries=[entry])
        if not answer.get("FailedEntryCount"):
            return
        [refused] = answer["Entries"]
        code = str(refused.get("ErrorCode", ""))
        if delay is None or code not in TRANSIENT_ENTRY_ERRORS:
            raise EventRefused(f"{code}: {refused.get('ErrorMessage', '')}")
        time.sleep(delay)
