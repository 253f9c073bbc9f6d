"""Rollout state per endpoint in the state table, guarded by a lease so one handler acts at a time.

Item `endpoint#<name>`:
    state          the RolloutState as JSON (the desired shape of the endpoint and its history)
    kind, phase, grp, updatedAt   for listing (index `ByKind`) and for people reading the table
    leaseOwner, leaseExpires      who may act on the endpoint now; taken with a conditional write
    releasedBy     the last holder that let go (so that a release whose response was lost is known
                   for ours when botocore retries it)
    rerun          set by a handler that found the lease taken: the holder reconciles once more
                   before letting go, so that no trigger is lost while another one is handled

A crashed holder's lease expires after `lease_seconds` (longer than the function's timeout); the
next event or the periodic reconcile then takes over. A trigger that knows the endpoint's group (a
registry event) records `grp` and `kind` with the lease itself: if its handler dies before the first
save, the item is still listed (`survey`) and the periodic reconcile deploys it once the lease has
expired. A clean finish with nothing to record takes that marker away again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import error_code, old_item, translates_unreachable
from sagepilot.domain.rollout import Command, HistoryEntry, Phase, Release, RolloutState
from sagepilot.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KIND = "endpoint"
INDEX = "ByKind"


class LeaseBusy(Exception):
    """Another handler holds the endpoint's lease (and has been asked to reconcile once more)."""


class LeaseLost(TransientError):
    """This handler's lease expired and was taken over while it was working."""


class NotManaged(Exception):
    """No item for the endpoint: this stack never acted on it (and a trigger without a group must not
    create one)."""


def endpoint_pk(endpoint: str) -> str:
    return f"endpoint#{endpoint}"


def _release(value: dict[str, Any] | None) -> Release | None:
    return Release(int(value["version"]), str(value["package_arn"])) if value else None


def _release_doc(release: Release | None) -> dict[str, Any] | None:
    return {"version": release.version, "package_arn": release.package_arn} if release else None


def to_json(state: RolloutState) -> str:
    return json.dumps(
        {
            "endpoint": state.endpoint,
            "group": state.group,
            "phase": state.phase.value,
            "stable": _release_doc(state.stable),
            "candidate": _release_doc(state.candidate),
            "step": state.step,
            "step_started_at": state.step_started_at,
            "paused": state.paused,
            "command": state.command.value if state.command else None,
            "reason": state.reason,
            "reject_candidate": state.reject_candidate,
            "endpoint_modified_at": state.endpoint_modified_at,
            "incidents": list(state.incidents),
            "started_at": state.started_at,
            "cause": state.cause,
            "orphan_notified": state.orphan_notified,
            "missing_notified": state.missing_notified,
            "starved": state.starved,
            "inconclusive": state.inconclusive,
            "steps": list(state.steps),
            "live_rejected": state.live_rejected,
            "serving_since": state.serving_since,
            "repair": state.repair,
            "configs": list(state.configs),
            "models": list(state.models),
            "announcements": [list(a) for a in state.announcements],
            "history": [[h.at, h.what] for h in state.history],
        },
        sort_keys=True,
    )


def from_json(raw: str) -> RolloutState:
    doc = json.loads(raw)
    return RolloutState(
        endpoint=doc["endpoint"],
        group=doc["group"],
        phase=Phase(doc["phase"]),
        stable=_release(doc.get("stable")),
        candidate=_release(doc.get("candidate")),
        step=int(doc.get("step", 0)),
        step_started_at=float(doc.get("step_started_at", 0.0)),
        paused=bool(doc.get("paused", False)),
        command=Command(doc["command"]) if doc.get("command") else None,
        reason=str(doc.get("reason", "")),
        reject_candidate=bool(doc.get("reject_candidate", False)),
        endpoint_modified_at=float(doc.get("endpoint_modified_at", 0.0)),
        incidents=tuple(doc.get("incidents", ())),
        started_at=float(doc.get("started_at", 0.0)),
        cause=str(doc.get("cause", "")),
        orphan_notified=bool(doc.get("orphan_notified", False)),
        missing_notified=bool(doc.get("missing_notified", False)),
        starved=bool(doc.get("starved", False)),
        inconclusive=bool(doc.get("inconclusive", False)),
        steps=tuple(int(s) for s in doc.get("steps", ())),
        live_rejected=bool(doc.get("live_rejected", False)),
        serving_since=float(doc.get("serving_since", 0.0)),
        repair=str(doc.get("repair", "")),
        configs=tuple(doc.get("configs", ())),
        models=tuple(doc.get("models", ())),
        announcements=tuple((str(subject), str(detail)) for subject, detail in doc.get("announcements", ())),
        history=tuple(HistoryEntry(float(at), str(what)) for at, what in doc.get("history", ())),
    )


@dataclass(frozen=True)
class Lease:
    endpoint: str
    owner: str
    state: RolloutState | None
    group: str | None = None  # the group a trigger recorded with the lease before any state (see `survey`)
    # Alarm events that came while another handler held the lease, handed to the holder (see `acquire`): each
    # is judged by whoever holds the lease next, and they are dropped only by a release that finds no newer one.
    alarms: tuple[str, ...] = ()


def _lease_of(endpoint: str, owner: str, item: dict[str, Any]) -> Lease:
    raw = item.get("state", {}).get("S")
    group = item.get("grp", {}).get("S")
    alarms = tuple(sorted(item.get(PENDING_ALARMS, {}).get("SS", ())))
    return Lease(endpoint, owner, from_json(raw) if raw else None, group, alarms)


PENDING_ALARMS = "pendingAlarms"


_ACQUIRE_ATTEMPTS = 3


@translates_unreachable
class RolloutStore:
    def __init__(self, dynamodb_client: DynamoDBClient, table: str, lease_seconds: int) -> None:
        self._ddb = dynamodb_client
        self._table = table
        self._lease_seconds = lease_seconds

    def _key(self, endpoint: str) -> dict[str, Any]:
        return {"pk": {"S": endpoint_pk(endpoint)}}

    def acquire(
        self,
        endpoint: str,
        owner: str,
        now: float,
        *,
        group: str | None = None,
        existing: bool = False,
        alarm: str | None = None,
    ) -> Lease:
        """Take the endpoint's lease and read its state in one conditional write; LeaseBusy if taken.

        `owner` must be unique to this attempt: when the write's response is lost and botocore's retry
        is refused, the item DynamoDB returns with the refusal (ALL_OLD) says whether the lease is
        already ours. `group`: record it (and list the item) with the lease, so that a handler dying
        before its first save leaves something the periodic reconcile finds. `existing`: only an item
        that exists (NotManaged otherwise), so that triggers about foreign endpoints write nothing. `alarm`: the
        alarm event this trigger carries; if the lease is taken, it is handed to the holder with the rerun flag
        (the holder's rerun judges it: a rerun alone would not, it reads the alarms of a canary only)."""
        update = "SET leaseOwner = :owner, leaseExpires = :expires"
        values: dict[str, Any] = {
            ":owner": {"S": owner},
            ":expires": {"N": str(int(now) + self._lease_seconds)},
            ":now": {"N": str(int(now))},
        }
        if group is not None:
            update += ", grp = if_not_exists(grp, :grp), kind = :kind"
            values |= {":grp": {"S": group}, ":kind": {"S": KIND}}
        condition = "(attribute_not_exists(leaseOwner) OR leaseExpires < :now)"
        if existing:
            condition = f"attribute_exists(pk) AND {condition}"
        for _ in range(_ACQUIRE_ATTEMPTS):
            try:
                item = self._ddb.update_item(
                    TableName=self._table,
                    Key=self._key(endpoint),
                    UpdateExpression=f"{update} REMOVE rerun",
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )["Attributes"]
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise TransientError(f"taking the lease of {endpoint}: {exc}") from exc
                old = old_item(exc)
                if old is None:
                    if existing:
                        raise NotManaged(endpoint) from None
                    continue  # (a missing item passes the lease's condition: gone meanwhile, try again)
                if old.get("leaseOwner", {}).get("S") == owner:
                    # Our own write went through and its response was lost: the lease is ours.
                    return _lease_of(endpoint, owner, old)
                if self._ask_holder_to_rerun(endpoint, now, alarm):
                    raise LeaseBusy(endpoint) from None
                continue  # released (or expired) meanwhile: take it
            return _lease_of(endpoint, owner, item)
        raise TransientError(f"taking the lease of {endpoint}: it kept changing hands")

    def group_of(self, endpoint: str) -> str | None:
        """The group of the endpoint's rollout, or of a trigger that started on it before any state was
        recorded; None if this stack has no such endpoint (a read: nothing is written for strangers)."""
        try:
            item = self._ddb.get_item(TableName=self._table, Key=self._key(endpoint), ConsistentRead=True).get("Item")
        except ClientError as exc:
            raise TransientError(f"reading the state of {endpoint}: {exc}") from exc
        if not item:
            return None
        raw = item.get("state", {}).get("S")
        if raw:
            return from_json(raw).group
        group = item.get("grp", {}).get("S")
        return str(group) if group and "kind" in item else None

    def _ask_holder_to_rerun(self, endpoint: str, now: float, alarm: str | None = None) -> bool:
        """Flag the live lease's holder to reconcile once more (and to judge `alarm`, added to the item's pending
        alarms in the same write); False if the lease is gone already."""
        values: dict[str, Any] = {":yes": {"BOOL": True}, ":now": {"N": str(int(now))}}
        update = "SET rerun = :yes"
        if alarm is not None:
            update += f" ADD {PENDING_ALARMS} :alarm"
            values[":alarm"] = {"SS": [alarm]}
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(endpoint),
                UpdateExpression=update,
                ConditionExpression="attribute_exists(leaseOwner) AND leaseExpires >= :now",
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise TransientError(f"flagging {endpoint} for another reconcile: {exc}") from exc
        return True

    def save(self, lease: Lease, state: RolloutState, now: float) -> Lease:
        """Record the state while holding the lease (conditional on still holding it)."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(lease.endpoint),
                UpdateExpression="SET #state = :state, kind = :kind, phase = :phase, grp = :grp, updatedAt = :now",
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":state": {"S": to_json(state)},
                    ":kind": {"S": KIND},
                    ":phase": {"S": state.phase.value},
                    ":grp": {"S": state.group},
                    ":now": {"N": str(int(now))},
                    ":owner": {"S": lease.owner},
                },
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise LeaseLost(f"lost the lease of {lease.endpoint} before saving its state") from exc
            raise TransientError(f"saving the state of {lease.endpoint}: {exc}") from exc
        return Lease(lease.endpoint, lease.owner, state)

    def release(self, lease: Lease, now: float, *, force: bool = False, forget: bool = False) -> bool:
        """Let go of the lease. False if another handler asked for a rerun meanwhile: the lease is kept
        (its rerun flag cleared) and the caller reconciles once more. `force` lets go regardless (after
        an error, or for an operator's command: the rerun flag is left for the next holder).

        `forget`: the trigger is done and nothing was recorded under the lease (no rollout to run): the
        group it left with the lease goes too, so the schedule does not come back to it. Never with
        `force`, nor when a state is recorded (the item would drop out of the listing)."""
        condition = "leaseOwner = :owner" if force else "leaseOwner = :owner AND attribute_not_exists(rerun)"
        forgotten = forget and not force and lease.state is None
        remove = "leaseOwner, leaseExpires" + (", kind, grp" if forgotten else "")
        if not force:
            # No rerun asked for since the holder read them: every pending alarm was judged under this lease.
            remove += f", {PENDING_ALARMS}"
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(lease.endpoint),
                UpdateExpression=f"SET checkedAt = :now, releasedBy = :owner REMOVE {remove}",
                ConditionExpression=condition,
                ExpressionAttributeValues={":owner": {"S": lease.owner}, ":now": {"N": str(int(now))}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return True
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise TransientError(f"releasing the lease of {lease.endpoint}: {exc}") from exc
            old = old_item(exc) or {}
            if force or (old.get("releasedBy", {}).get("S") == lease.owner and "leaseOwner" not in old):
                # Not ours any more: nothing to let go of. Or ours already let go (the response to our own
                # release was lost and botocore's retry found the lease gone).
                return True
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(lease.endpoint),
                UpdateExpression="REMOVE rerun",
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeValues={":owner": {"S": lease.owner}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise LeaseLost(f"lost the lease of {lease.endpoint} while working") from exc
            raise TransientError(f"releasing the lease of {lease.endpoint}: {exc}") from exc
        return False

    def forget(self, lease: Lease, now: float) -> None:
        """Forget the endpoint (it was retired or is gone with its group) and let go of the lease, in one
        conditional write: its owner group is released, another group may now claim the name."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(lease.endpoint),
                UpdateExpression="SET checkedAt = :now, releasedBy = :owner "
                f"REMOVE #state, kind, phase, grp, leaseOwner, leaseExpires, rerun, {PENDING_ALARMS}",
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":owner": {"S": lease.owner}, ":now": {"N": str(int(now))}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                old = old_item(exc) or {}
                if old.get("releasedBy", {}).get("S") == lease.owner and "leaseOwner" not in old and "state" not in old:
                    return  # our own write went through and its response was lost (botocore's retry refused)
                raise LeaseLost(f"lost the lease of {lease.endpoint} before forgetting it") from exc
            raise TransientError(f"forgetting {lease.endpoint}: {exc}") from exc

    def reread(self, lease: Lease) -> Lease:
        """The lease with its endpoint's state and pending alarms read again (consistently), for a rerun."""
        again = _lease_of(lease.endpoint, lease.owner, self._item(lease.endpoint))
        return dataclasses.replace(lease, state=again.state, alarms=again.alarms)

    def read(self, endpoint: str) -> RolloutState | None:
        """The recorded state, read consistently (for reruns and for the operator command)."""
        raw = self._item(endpoint).get("state", {}).get("S")
        return from_json(raw) if raw else None

    def _item(self, endpoint: str) -> dict[str, Any]:
        """The endpoint's item, read consistently ({} if there is none)."""
        try:
            item = self._ddb.get_item(TableName=self._table, Key=self._key(endpoint), ConsistentRead=True).get("Item")
        except ClientError as exc:
            raise TransientError(f"reading the state of {endpoint}: {exc}") from exc
        return dict(item or {})

    def all(self) -> list[tuple[RolloutState, float]]:
        """Every endpoint this stack manages, with when it was last reconciled (the index holds only
        rollout items)."""
        return self.survey()[0]

    def survey(self) -> tuple[list[tuple[RolloutState, float]], list[tuple[str, str]]]:
        """`all()`, and the endpoints a trigger started on with no rollout recorded yet, as (endpoint,
        group): their handler died before its first save, and nobody else would come back to them."""
        states: list[tuple[RolloutState, float]] = []
        pending: list[tuple[str, str]] = []
        try:
            pages = self._ddb.get_paginator("query").paginate(
                TableName=self._table,
                IndexName=INDEX,
                KeyConditionExpression="kind = :kind",
                ExpressionAttributeValues={":kind": {"S": KIND}},
            )
            for page in pages:
                for item in page["Items"]:
                    if "state" in item:
                        states.append((from_json(item["state"]["S"]), float(item.get("checkedAt", {}).get("N", 0))))
                    elif "grp" in item:
                        pending.append((item["pk"]["S"].removeprefix(f"{KIND}#"), item["grp"]["S"]))
        except ClientError as exc:
            raise TransientError(f"listing managed endpoints: {exc}") from exc
        return states, pending
