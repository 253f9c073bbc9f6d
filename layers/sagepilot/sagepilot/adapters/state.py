"""The state table: which job owns each input version, and where each job stands.

Items (one table, string key `pk`):
    input#<bucket>/<key>#<version>   {job, group, claimedAt, expiresAt}   claimed with a conditional put
    job#<job-name>                   {status, group, attempt, ...}         moved with conditional updates

    group#<group>                    {lastStartedAt, openJob}             the start-up hold's record of a group

Job statuses: CLAIMING -> READY -> STARTED -> COMPLETED | FAILED | SPLIT, or EMPTY when every input turned
out to belong to other jobs; a waiting READY job may instead be MERGED into a job of several (its claims
moved to it). SPLIT: the job failed for a reason one input can cause and its inputs were handed to two
smaller jobs (their claims moved to them, each a conditional write). A job's inputs are claimed before the
job is started, so an input version can only ever be in the job that won its claim.

A READY job that waits carries `kind` (the sparse indexes ByKind, and ByKindAge sorted by createdAt):
`waiting#<group>` for a slot of its group, `waiting-capacity` after SageMaker refused it for lack of
instances (with `waitingSince`). One
attribute, so a job is in at most one list; starting it removes it, in the same conditional write that
makes it STARTED, so a job is never both waiting and started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from sagepilot.adapters.clients import error_code, translates_unreachable
from sagepilot.clock import epoch
from sagepilot.domain.statuses import JobStatus, TrainingStatus
from sagepilot.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

# The job statuses (domain.statuses.JobStatus), by the names the services know them by.
CLAIMING, READY, STARTED, COMPLETED, FAILED, EMPTY = (
    JobStatus.CLAIMING,
    JobStatus.READY,
    JobStatus.STARTED,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.EMPTY,
)
# A job that failed for a reason one input can cause, whose inputs were handed to two smaller jobs
# (`children`); terminal for the job itself.
SPLIT = JobStatus.SPLIT
# A job whose model package version was no longer Approved when it was about to start, planned again on the
# group's newest Approved version (`replannedAs`); terminal for the job itself.
REPLANNED = JobStatus.REPLANNED
# A job that waited and was merged, before it started, into a job holding the inputs of several waiting jobs of
# its group (`mergedInto`, domain/coalescing.py); its claims moved to that job. Terminal for the job itself.
MERGED = JobStatus.MERGED
# A group's open held job (domain/hold.py): held files are claimed for it as they arrive (`heldParts`: the
# batches' plans it holds, `heldFiles`, `lastArrivalAt`); listed under kind `held` until it starts.
HELD = JobStatus.HELD
RETENTION_SECONDS = 90 * 24 * 3600
_BATCH_GET_LIMIT = 100
_CLAIM_THREADS = 16
_UNPROCESSED_BACKOFF_SECONDS = 0.05
_TRANSACTION_LIMIT = 100  # TransactWriteItems: at most 100 actions, each on a different item
_CLAIM_ROUNDS = 4  # transactions tried for one chunk of claims before the rest is left to a redelivery
_CONFLICT_BACKOFF_SECONDS = 0.05
# Cancellation reasons that say "not now" rather than "no": another transaction held the item, or throttling.
_TRANSIENT_CANCELLATIONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


class InvalidItem(PermanentError):
    """DynamoDB refused an item as invalid (ValidationException: e.g. a key over its size limit): writing it
    again can never succeed, and it concerns that item only."""


def failure(exc: ClientError, what: str) -> TransientError | PermanentError:
    """A DynamoDB error as the package's error: ValidationException is the request's fault (permanent);
    the rest (throttling, 5xx after botocore's retries, conflicts) may go away (transient)."""
    if error_code(exc) == "ValidationException":
        return InvalidItem(what)
    return TransientError(what)


_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def _decimals(value: Any) -> Any:
    """`value` with each float as the Decimal of its shortest repr (DynamoDB numbers are decimal, and boto3
    refuses floats: 0.1 is stored as 0.1, not as the binary float's 55 digits) and each str as a plain str."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        return str(value)  # a StrEnum member as its plain value
    if isinstance(value, dict):
        return {key: _decimals(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_decimals(item) for item in value]
    return value


def _plain(value: Any) -> Any:
    """A deserialized value with each Decimal as an int when whole, else a float (what was written)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, set):
        return {_plain(item) for item in value}
    return value


def _to_attr(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value (boto3's TypeSerializer): str S, int and float N, bool
    BOOL, None NULL, list and tuple L, dict M, a set of str SS. Anything else is a TypeError, not a string."""
    return dict(_SERIALIZER.serialize(_decimals(value)))


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item's attributes as Python values (boto3's TypeDeserializer; numbers as int or float). An item the
    earlier writer stored (S, N of whole numbers, BOOL only) reads as it did."""
    return {name: _plain(_DESERIALIZER.deserialize(attr)) for name, attr in item.items()}


def _owner_in(item: Any) -> str | None:
    """The claiming job in a claim's old image (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""
    if not isinstance(item, dict):
        return None
    owner = item.get("job", {}).get("S")
    return owner if isinstance(owner, str) and owner else None


def input_pk(file_id: str) -> str:
    return f"input#{file_id}"


def waiting_kind(group: str) -> str:
    return f"waiting#{group}"


CAPACITY_KIND = "waiting-capacity"  # READY jobs SageMaker refused for lack of instances (ResourceLimitExceeded)


def job_pk(job_name: str) -> str:
    return f"job#{job_name}"


@translates_unreachable
class StateTable:
    def __init__(self, dynamodb_client: DynamoDBClient, table: str, clock: Callable[[], float] = epoch) -> None:
        self._db = dynamodb_client
        self._table = table
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())

    # Jobs ---------------------------------------------------------------------------------------
    def create_job(self, job_name: str, attrs: dict[str, Any]) -> dict[str, Any]:
        """Create the job record in CLAIMING unless it exists; return the record as stored."""
        now = self.now()
        item = {
            "pk": job_pk(job_name),
            "status": CLAIMING,
            "attempt": 0,
            "createdAt": now,
            "updatedAt": now,
            "expiresAt": now + RETENTION_SECONDS,
            **attrs,
        }
        try:
            self._db.put_item(
                TableName=self._table,
                Item={k: _to_attr(v) for k, v in item.items()},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise failure(exc, f"creating job record {job_name} failed: {exc}") from exc
            existing = self.get_job(job_name)
            if existing is None:
                raise TransientError(f"job record {job_name} vanished while being created") from exc
            return existing
        return {k: v for k, v in item.items() if k != "pk"} | {"jobName": job_name}

    def get_job(self, job_name: str) -> dict[str, Any] | None:
        try:
            item = self._db.get_item(
                TableName=self._table, Key={"pk": {"S": job_pk(job_name)}}, ConsistentRead=True
            ).get("Item")
        except ClientError as exc:
            raise failure(exc, f"reading job record {job_name} failed: {exc}") from exc
        if not item:
            return None
        record = _from_item(item)
        record.pop("pk", None)
        record["jobName"] = job_name
        return record

    def get_jobs(self, job_names: list[str]) -> dict[str, dict[str, Any]]:
        """The records of these jobs that exist, read together (BatchGetItem, 100 a request), as `get_job` reads
        one."""
        records = {}
        for item in self._consistent_items([job_pk(n) for n in job_names], "reading job records"):
            record = _from_item(item)
            name = str(record.pop("pk"))[len("job#") :]
            records[name] = record | {"jobName": name}
        return records

    def transition(
        self,
        job_name: str,
        *,
        expected: Iterable[JobStatus | TrainingStatus],
        to: JobStatus | TrainingStatus,
        when_attempt: int | None = None,
        remove: tuple[str, ...] = (),
        set_once: dict[str, Any] | None = None,
        **attrs: Any,
    ) -> bool:
        """Move a job to `to` (setting `attrs`, and `set_once` where not set yet) if it is in one of
        `expected` and, when given, at attempt `when_attempt`; False if it is not."""
        values: dict[str, Any] = {":to": _to_attr(to), ":now": _to_attr(self.now())}
        names = {"#status": "status"}
        sets = ["#status = :to", "updatedAt = :now"]
        for i, (name, value) in enumerate(sorted(attrs.items())):
            names[f"#a{i}"] = name
            values[f":a{i}"] = _to_attr(value)
            sets.append(f"#a{i} = :a{i}")
        for i, (name, value) in enumerate(sorted((set_once or {}).items())):
            names[f"#o{i}"] = name
            values[f":o{i}"] = _to_attr(value)
            sets.append(f"#o{i} = if_not_exists(#o{i}, :o{i})")
        expected_list = sorted(set(expected))
        conditions = ["#status IN (" + ", ".join(f":e{i}" for i in range(len(expected_list))) + ")"]
        for i, status in enumerate(expected_list):
            values[f":e{i}"] = _to_attr(status)
        if when_attempt is not None:
            names["#attempt"] = "attempt"
            values[":when_attempt"] = _to_attr(when_attempt)
            conditions.append("#attempt = :when_attempt")
        removal = ""
        for i, name in enumerate(remove):
            names[f"#r{i}"] = name
        if remove:
            removal = " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": job_pk(job_name)}},
                UpdateExpression="SET " + ", ".join(sets) + removal,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise failure(exc, f"updating job record {job_name} failed: {exc}") from exc
        return True

    # Starting a job that may be merged ----------------------------------------------------------------
    # A waiting job is either started alone (CreateTransformJob with its name) or merged into another job
    # (MERGED, its claims moved), never both. The starter takes a lease on the READY record (conditional on
    # READY and the attempt) before it asks SageMaker, and a merge moves a job to MERGED only if it holds no
    # lease (and only while the merged job is CLAIMING and not sealed): whichever write comes first wins. A
    # refused starter releases its lease; one that died holding it leaves the job to be started alone in its
    # turn (never merged).
    def lease_start(self, job_name: str, attempt: int, token: str) -> bool:
        """Take a start lease on a READY job at `attempt` (several starters may hold it: starting is idempotent
        by name); False if the job is no longer READY at that attempt (started, merged or moved on)."""
        return self.transition(
            job_name, expected=[READY], to=READY, when_attempt=attempt, startingToken=token, startingAt=self.now()
        )

    def release_start(self, job_name: str, token: str) -> None:
        """Drop the lease `token` after SageMaker refused the job (it created nothing): the job may be merged.
        Nothing happens if another starter's lease replaced it (that one may still create the job)."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": job_pk(job_name)}},
                UpdateExpression="REMOVE startingToken, startingAt",
                ConditionExpression="startingToken = :token",
                ExpressionAttributeValues={":token": {"S": token}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise failure(exc, f"releasing the start lease of {job_name} failed: {exc}") from exc

    def merge_into(self, job_name: str, attempt: int, into: str) -> bool:
        """Move a waiting job (READY at `attempt`, listed in a waiting list, no start lease) to MERGED into
        `into`, while `into` still takes sources (CLAIMING, not sealed): one transaction (a ConditionCheck on
        `into`, the update of the job). True if the job is now merged into `into` (by this call or before)."""
        check = {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": {"pk": {"S": job_pk(into)}},
                "ConditionExpression": "#status = :claiming AND attribute_not_exists(sealed)",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":claiming": _to_attr(CLAIMING)},
            }
        }
        update = {
            "Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": job_pk(job_name)}},
                "UpdateExpression": "SET #status = :to, mergedInto = :into, updatedAt = :now REMOVE kind, waitingSince",
                "ConditionExpression": "#status = :ready AND #attempt = :attempt AND attribute_exists(kind) "
                "AND attribute_not_exists(startingToken)",
                "ExpressionAttributeNames": {"#status": "status", "#attempt": "attempt"},
                "ExpressionAttributeValues": {
                    ":to": _to_attr(MERGED),
                    ":into": _to_attr(into),
                    ":now": _to_attr(self.now()),
                    ":ready": _to_attr(READY),
                    ":attempt": _to_attr(attempt),
                },
            }
        }
        for round_ in range(_CLAIM_ROUNDS):
            try:
                self._db.transact_write_items(TransactItems=cast("list[TransactWriteItemTypeDef]", [check, update]))
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise failure(exc, f"merging job {job_name} into {into} failed: {exc}") from exc
                reasons = exc.response.get("CancellationReasons") or []
                codes = {str(r.get("Code") or "None") for r in reasons if isinstance(r, dict)}
                if codes & _TRANSIENT_CANCELLATIONS and "ConditionalCheckFailed" not in codes:
                    time.sleep(_CONFLICT_BACKOFF_SECONDS * 2**round_)
                    continue
                record = self.get_job(job_name) or {}
                return record.get("status") == MERGED and record.get("mergedInto") == into
            return True
        raise TransientError(f"merging job {job_name} into {into} kept conflicting with other writes")

    def seal(self, job_name: str) -> bool:
        """Close a merged job (CLAIMING) to new sources: from here on what it holds is settled. False if it is
        no longer CLAIMING (finished by another handler)."""
        return self.transition(job_name, expected=[CLAIMING], to=CLAIMING, sealed=True)

    # Input claims -------------------------------------------------------------------------------
    def claim(
        self,
        job_name: str,
        group: str,
        file_ids: list[str],
        *,
        take_from: str = "",
        invalid: dict[str, str] | None = None,
        take_from_each: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Claim each input version for `job_name`; return every input's owner (this job or another).

        Each claim is a conditional put (the input is free, or already this job's, or `take_from`'s: a job
        split into smaller ones hands its inputs to them, each move a conditional write), written by
        `_conditional_writes`: up to 100 in one TransactWriteItems, one request instead of one per input. A
        refused claim's old image names its owner; without one (never from DynamoDB with ALL_OLD, but
        cheap to cover) the owner is read. A claim DynamoDB refuses as invalid (ValidationException) is
        left out of the answer and, when `invalid` is given, recorded there with DynamoDB's message: it
        concerns that input only, the others are claimed. `take_from_each`: the job each input may be taken
        from (a merge takes the inputs of several jobs), instead of one `take_from` for all."""
        now = self.now()
        each = take_from_each or {}
        actions = {
            f: {"Put": self._claim_item(job_name, group, f, now, each.get(f, take_from))}
            for f in dict.fromkeys(file_ids)
        }
        refused = self._conditional_writes(actions, f"claiming inputs for {job_name}", invalid)
        bad = invalid or {}
        owners = {f: job_name for f in actions if f not in refused and f not in bad}
        owners.update({f: owner for f, image in refused.items() if (owner := _owner_in(image))})
        unknown = [f for f in actions if f not in owners and f not in bad]
        if unknown:
            stored = self.owners(unknown)
            missing = [f for f in unknown if f not in stored]
            if missing:
                raise TransientError(f"claim of {missing[0]} refused but no owner found")
            owners.update(stored)
        return owners

    def _claim_item(self, job_name: str, group: str, file_id: str, now: int, take_from: str = "") -> dict[str, Any]:
        """The conditional put of one claim (PutItem's parameters, and a transaction's `Put`)."""
        if take_from:
            return {
                **self._claim_item(job_name, group, file_id, now),
                "ConditionExpression": "attribute_not_exists(pk) OR #job = :job OR #job = :from",
                "ExpressionAttributeValues": {":job": {"S": job_name}, ":from": {"S": take_from}},
            }
        return {
            "TableName": self._table,
            "Item": {
                "pk": {"S": input_pk(file_id)},
                "job": {"S": job_name},
                "group": {"S": group},
                "claimedAt": {"N": str(now)},
                "expiresAt": {"N": str(now + RETENTION_SECONDS)},
            },
            "ConditionExpression": "attribute_not_exists(pk) OR #job = :job",
            "ExpressionAttributeNames": {"#job": "job"},
            "ExpressionAttributeValues": {":job": {"S": job_name}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _conditional_writes(
        self, actions: dict[str, dict[str, Any]], what: str, invalid: dict[str, str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Carry out conditional writes, each on its own item: `actions` maps an id to a TransactWriteItems
        action ({"Put": ...} or {"Update": ...}, with ReturnValuesOnConditionCheckFailure=ALL_OLD). Returns,
        for each action whose condition refused it, the item's old image ({} if none came back); the others
        are written.

        Up to 100 actions go in one TransactWriteItems (one request instead of one each; a transactional
        write costs DynamoDB two write units instead of one, and requests, not units, are what a burst
        waits on), in parallel chunks. A transaction is all or nothing, so a cancelled one says per item why
        (CancellationReasons, in request order): ConditionalCheckFailed items are refused, with their old
        image; `None` items were not written because of the others and go again, in a smaller transaction;
        TransactionConflict and throttling go again after a pause. A lone action is a plain PutItem or
        UpdateItem.

        A transaction DynamoDB refuses as invalid (ValidationException, e.g. one item's key over its size limit)
        is written again one action per request, so that only the invalid ones fail: with `invalid` given they
        are recorded there (id -> DynamoDB's message), otherwise InvalidItem is raised."""
        ids = list(actions)
        chunks = [ids[i : i + _TRANSACTION_LIMIT] for i in range(0, len(ids), _TRANSACTION_LIMIT)]
        bad: dict[str, str] = {} if invalid is None else invalid
        if len(chunks) <= 1:
            found = [self._write_chunk(actions, chunk, what, bad) for chunk in chunks]
        else:
            with ThreadPoolExecutor(max_workers=min(_CLAIM_THREADS, len(chunks))) as pool:
                found = list(pool.map(lambda chunk: self._write_chunk(actions, chunk, what, bad), chunks))
        if bad and invalid is None:
            first = next(iter(bad))
            raise InvalidItem(f"{what}: {first} refused as invalid: {bad[first]}")
        return {i: image for refused in found for i, image in refused.items()}

    def _each_alone(
        self, actions: dict[str, dict[str, Any]], ids: list[str], what: str, invalid: dict[str, str]
    ) -> dict[str, dict[str, Any]]:
        """One request per action: the refused ones' old images; invalid ones recorded in `invalid`."""
        refused: dict[str, dict[str, Any]] = {}
        for i in ids:
            try:
                image = self._write_one(actions[i], what)
            except InvalidItem as exc:
                invalid[i] = str(exc)
                continue
            if image is not None:
                refused[i] = image
        return refused

    def _write_chunk(
        self, actions: dict[str, dict[str, Any]], ids: list[str], what: str, invalid: dict[str, str]
    ) -> dict[str, dict[str, Any]]:
        refused: dict[str, dict[str, Any]] = {}
        pending = ids
        for round_ in range(_CLAIM_ROUNDS):
            if len(pending) <= 1:
                refused.update(self._each_alone(actions, pending, what, invalid))
                return refused
            try:
                # The actions are plain dicts (each also a PutItem or UpdateItem request, in _write_one).
                items = cast("list[TransactWriteItemTypeDef]", [actions[i] for i in pending])
                self._db.transact_write_items(TransactItems=items)
            except ClientError as exc:
                if error_code(exc) == "ValidationException":
                    # Some item is invalid, and the transaction does not say which: find it, one by one.
                    refused.update(self._each_alone(actions, pending, what, invalid))
                    return refused
                if error_code(exc) != "TransactionCanceledException":
                    raise failure(exc, f"{what} ({len(pending)} in one transaction) failed: {exc}") from exc
                reasons = exc.response.get("CancellationReasons")
                if not isinstance(reasons, list) or len(reasons) != len(pending):
                    # No per-item reasons (an SDK or endpoint that drops them): one request each says it all.
                    refused.update(self._each_alone(actions, pending, what, invalid))
                    return refused
                again, transient = [], False
                for i, reason in zip(pending, reasons, strict=True):
                    code = str(reason.get("Code") or "None")
                    if code == "ConditionalCheckFailed":
                        item: object = reason.get("Item")  # (botocore's stubs type it wrongly)
                        refused[i] = item if isinstance(item, dict) else {}
                    elif code == "ValidationError":  # this item alone is invalid: the others go again
                        invalid[i] = f"{code}: {reason.get('Message')}"
                    elif code == "None" or code in _TRANSIENT_CANCELLATIONS:
                        again.append(i)
                        transient = transient or code != "None"
                    else:
                        raise TransientError(f"{what}: {i} failed: {code}: {reason.get('Message')}") from exc
                pending = again
                if transient:  # another request held an item: back off before trying again
                    time.sleep(_CONFLICT_BACKOFF_SECONDS * 2**round_)
                continue
            return refused
        if pending:
            raise TransientError(
                f"{what}: {len(pending)} kept conflicting with other writes ({_CLAIM_ROUNDS} transactions), "
                f"e.g. {pending[0]}"
            )
        return refused

    def _write_one(self, action: dict[str, Any], what: str) -> dict[str, Any] | None:
        """One action as its own request (PutItem or UpdateItem): None if written, else the old image."""
        ((kind, params),) = action.items()
        call = getattr(self._db, {"Put": "put_item", "Update": "update_item"}[kind])
        try:
            call(**params)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise failure(exc, f"{what} failed: {exc}") from exc
            item = exc.response.get("Item")
            return item if isinstance(item, dict) else {}
        return None

    def owners(self, file_ids: list[str]) -> dict[str, str]:
        """The job that owns each claimed input version (unclaimed ones are absent)."""
        items = self._consistent_items([input_pk(f) for f in file_ids], "reading input claims")
        return {item["pk"]["S"][len("input#") :]: item["job"]["S"] for item in items}

    def _consistent_items(self, pks: list[str], what: str) -> list[dict[str, Any]]:
        """The items of these keys that exist, read consistently with BatchGetItem (100 keys per request,
        unprocessed keys asked again after a pause, as DynamoDB asks)."""
        unique = list(dict.fromkeys(pks))
        chunks = [unique[i : i + _BATCH_GET_LIMIT] for i in range(0, len(unique), _BATCH_GET_LIMIT)]
        if len(chunks) <= 1:
            return [item for chunk in chunks for item in self._read_chunk(chunk, what)]
        # In parallel, as the writes (a released held job reads the claims of up to MaxFilesPerJob files: 50
        # requests one after another were seconds of its release).
        with ThreadPoolExecutor(max_workers=min(_CLAIM_THREADS, len(chunks))) as pool:
            return [item for found in pool.map(lambda chunk: self._read_chunk(chunk, what), chunks) for item in found]

    def _read_chunk(self, pks: list[str], what: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        keys = [{"pk": {"S": pk}} for pk in pks]
        request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
        while request:
            try:
                response = self._db.batch_get_item(RequestItems=request)
            except ClientError as exc:
                raise failure(exc, f"{what} failed: {exc}") from exc
            found += response.get("Responses", {}).get(self._table, [])
            request = response.get("UnprocessedKeys") or {}
            if request:
                time.sleep(_UNPROCESSED_BACKOFF_SECONDS)  # DynamoDB asks to back off before retrying
        return found

    # Jobs waiting for a slot of their group ---------------------------------------------------------
    def waiting_jobs(self, group: str, limit: int = 10) -> list[str]:
        """Jobs of `group` that wait for a free slot (index ByKind, partition `waiting#<group>`)."""
        try:
            items = self._db.query(
                TableName=self._table,
                IndexName="ByKind",
                KeyConditionExpression="kind = :kind",
                ExpressionAttributeValues={":kind": {"S": waiting_kind(group)}},
                Limit=limit,
            ).get("Items", [])
        except ClientError as exc:
            raise failure(exc, f"listing the jobs waiting in {group}: {exc}") from exc
        return [item["pk"]["S"][len("job#") :] for item in items]

    def capacity_waiting(self, limit: int = 0, *, name_prefix: str = "") -> list[dict[str, Any]]:
        """Jobs waiting for capacity, oldest first, as {jobName, createdAt, waitingSince}: index ByKindAge,
        partition `waiting-capacity`, sorted by createdAt. `limit` > 0: the `limit` oldest (one small read);
        otherwise all of them (a few bytes a job, tens of thousands per 1 MB page), those whose name starts
        with `name_prefix` when given (one group's)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "ByKindAge",
            "KeyConditionExpression": "kind = :kind",
            "ExpressionAttributeValues": {":kind": {"S": CAPACITY_KIND}},
            "ScanIndexForward": True,
        }
        if limit > 0:
            request["Limit"] = limit
        if name_prefix:
            request["FilterExpression"] = "begins_with(pk, :name)"
            request["ExpressionAttributeValues"][":name"] = {"S": job_pk(name_prefix)}
        items: list[dict[str, Any]] = []
        while True:
            try:
                page = self._db.query(**request)
            except ClientError as exc:
                raise failure(exc, f"listing the jobs waiting for capacity: {exc}") from exc
            items += page.get("Items", [])
            if limit > 0 or not page.get("LastEvaluatedKey"):
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        found = []
        for item in items:
            record = _from_item(item)
            created = int(record.get("createdAt", 0))
            found.append(
                {
                    "jobName": str(record["pk"])[len("job#") :],
                    "createdAt": created,
                    "waitingSince": int(record.get("waitingSince", created)),
                }
            )
        return found

    def capacity_backlog(self) -> list[int]:
        """When each job waiting for capacity was first refused (`waitingSince`): the whole partition of
        ByKindAge, a few bytes a job (tens of thousands per 1 MB page); read by the periodic sweep only."""
        since: list[int] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "ByKindAge",
            "KeyConditionExpression": "kind = :kind",
            "ExpressionAttributeValues": {":kind": {"S": CAPACITY_KIND}},
            "ProjectionExpression": "createdAt, waitingSince",
        }
        while True:
            try:
                page = self._db.query(**request)
            except ClientError as exc:
                raise failure(exc, f"counting the jobs waiting for capacity: {exc}") from exc
            for item in page.get("Items", []):
                record = _from_item(item)
                since.append(int(record.get("waitingSince", record.get("createdAt", 0))))
            if not page.get("LastEvaluatedKey"):
                return since
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # The newest version of each key taken by a job -----------------------------------------------------
    # Items `latest#<bucket>/<key>` {recency, versionId, job}: `recency` is the domain's sortable string
    # (transform_plan.recency), so the condition below compares versions exactly as the planner does.
    def mark_latest(
        self, job_name: str, versions: list[tuple[str, str, str | None]], *, read_first: bool = False
    ) -> dict[str, tuple[str, str]]:
        """Record each (object id, recency, version id) as the newest version of its key taken by
        `job_name`, unless a newer one already is (a conditional write: two jobs cannot both win). Returns,
        for the versions that lost, the newer one as (version id, job); repeating a call changes nothing.

        `read_first`: the keys' marks are read first (consistently, in parallel chunks) and only those absent
        or older than the version (or the same version marked by another job) are written, as above; a newer
        mark is a loss without a write. The same answer, for versions whose marks were most likely made already: a
        released held job's batches whose holder died before recording what it marked (services/holding.py) are
        read rather than written again. Without it (a new job's keys are mostly unmarked) nothing is read."""
        now = self.now()
        newest: dict[str, tuple[str, str | None]] = {}
        for object_id, recency, version_id in versions:  # one write per key (a transaction needs distinct keys)
            if object_id not in newest or recency > newest[object_id][0]:
                newest[object_id] = (recency, version_id)
        lost: dict[str, tuple[str, str]] = {}
        if read_first and newest:
            marks = self.latest(list(newest))
            for object_id, (recency, _) in list(newest.items()):
                mark = marks.get(object_id)
                if mark is None or str(mark["recency"]) < recency:
                    continue  # to write
                if str(mark["recency"]) > recency:
                    lost[object_id] = (str(mark["versionId"]), str(mark["job"]))
                    del newest[object_id]
                elif str(mark["job"]) == job_name:
                    del newest[object_id]  # already marked by this job
                # The same version marked by another job (a job whose claims this one took over) is written: the
                # mark names the job that reads the version, as the write alone would make it.
        # A conditional Put, not an Update: the item holds nothing but what is written here, and a Put is the
        # cheaper write to evaluate (for DynamoDB and, by far, for the sandbox's moto).
        actions = {
            object_id: {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "pk": {"S": latest_pk(object_id)},
                        "recency": {"S": recency},
                        "versionId": {"S": version_id or "null"},
                        "job": {"S": job_name},
                        "updatedAt": {"N": str(now)},
                        "expiresAt": {"N": str(now + RETENTION_SECONDS)},
                    },
                    "ConditionExpression": "attribute_not_exists(pk) OR #recency <= :recency",
                    "ExpressionAttributeNames": {"#recency": "recency"},
                    "ExpressionAttributeValues": {":recency": {"S": recency}},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
            for object_id, (recency, version_id) in newest.items()
        }
        refused = self._conditional_writes(actions, "recording the newest versions")
        unknown = [object_id for object_id, image in refused.items() if not image]
        found = self.latest(unknown) if unknown else {}
        for object_id, image in refused.items():
            old = _from_item(image) if image else found.get(object_id)
            if not old:
                raise TransientError(f"newest version of {object_id} refused but not found")
            lost[object_id] = (str(old["versionId"]), str(old["job"]))
        return lost

    def latest(self, object_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The newest version taken by a job of each key ({recency, versionId, job}; unknown keys absent)."""
        found: dict[str, dict[str, Any]] = {}
        for item in self._consistent_items([latest_pk(o) for o in object_ids], "reading the newest versions"):
            record = _from_item(item)
            found[str(record.pop("pk"))[len("latest#") :]] = record
        return found

    # The start-up hold (domain/hold.py, services/holding.py) ------------------------------------------------
    def reserve_start(self, group: str, hold_seconds: int) -> tuple[bool, dict[str, Any]]:
        """Record that `group` starts a job now, unless it started one less than `hold_seconds` ago: one
        conditional write, so of several invocations holding the same group's files only one starts. (True,
        the record as written) when recorded (the caller starts); (False, the group's record) otherwise. The
        record: {lastStartedAt, openJob?}."""
        now = self.now()
        try:
            written = self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": group_pk(group)}},
                UpdateExpression="SET lastStartedAt = :now, expiresAt = :expires",
                ConditionExpression="attribute_not_exists(lastStartedAt) OR lastStartedAt <= :before",
                ExpressionAttributeValues={
                    ":now": _to_attr(now),
                    ":before": _to_attr(now - hold_seconds),
                    ":expires": _to_attr(now + RETENTION_SECONDS),
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise failure(exc, f"recording a start of group {group} failed: {exc}") from exc
            return False, self.group_record(group)
        return True, _from_item(written.get("Attributes", {}))

    def group_record(self, group: str) -> dict[str, Any]:
        """The hold's record of `group` ({} if it never started a job)."""
        return self.group_records([group]).get(group, {})

    def group_records(self, groups: list[str]) -> dict[str, dict[str, Any]]:
        """The hold's records of these groups, read together (BatchGetItem, 100 a request); absent: none yet."""
        items = self._consistent_items([group_pk(g) for g in groups], "reading the records of groups")
        return {str(r.pop("pk"))[len("group#") :]: r for r in (_from_item(i) for i in items)}

    def _update_if(self, pk: str, what: str, **params: Any) -> bool:
        """One UpdateItem of item `pk` (its expressions in `params`); False if its condition refused it."""
        try:
            self._db.update_item(TableName=self._table, Key={"pk": {"S": pk}}, **params)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise failure(exc, f"{what} failed: {exc}") from exc
        return True

    def started_now(self, group: str) -> None:
        """Record that `group` starts a job now (its released held job): the hold counts from here."""
        now = self.now()
        self._update_if(
            group_pk(group),
            f"recording a start of group {group}",
            UpdateExpression="SET lastStartedAt = :now, expiresAt = :expires",
            ExpressionAttributeValues={":now": _to_attr(now), ":expires": _to_attr(now + RETENTION_SECONDS)},
        )

    def open_held(self, group: str, job_name: str) -> str:
        """Make `job_name` (its record created HELD) the group's open held job, unless the group has one:
        the open job's name either way (a conditional write: concurrent invocations agree on one)."""
        if self._update_if(
            group_pk(group),
            f"opening a held job for group {group}",
            UpdateExpression="SET openJob = :job",
            ConditionExpression="attribute_not_exists(openJob) OR openJob = :job",
            ExpressionAttributeValues={":job": _to_attr(job_name)},
        ):
            return job_name
        other = self.group_record(group).get("openJob")
        if not other:
            raise TransientError(f"the held job of group {group} changed while one was being opened")
        return str(other)

    def close_held(self, group: str, job_name: str) -> None:
        """The group's open held job is `job_name` no more (nothing happens if another one is open by now)."""
        self._update_if(
            group_pk(group),
            f"closing the held job {job_name} of group {group}",
            UpdateExpression="REMOVE openJob",
            ConditionExpression="openJob = :job",
            ExpressionAttributeValues={":job": _to_attr(job_name)},
        )

    def add_held(self, job_name: str, part: str, files: int, *, hold_key: str, max_files: int, arrived_at: int) -> bool:
        """Add a batch's planned job `part` (`files` files, claimed for the held job next; its newest reached the
        intake queue at `arrived_at`) to the held job, if it is still open (HELD), holds the same kind of work
        (`hold_key`), has room and does not list it yet. False otherwise (the caller reads the record to tell
        which)."""
        return self._update_if(
            job_pk(job_name),
            f"adding {part} to the held job {job_name}",
            UpdateExpression="ADD heldParts :part, heldFiles :files SET lastArrivalAt = :arrived, updatedAt = :now",
            ConditionExpression="#status = :held AND holdKey = :key AND heldFiles <= :room "
            "AND (attribute_not_exists(heldParts) OR NOT contains(heldParts, :name))",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":part": {"SS": [part]},
                ":name": {"S": part},
                ":files": _to_attr(files),
                ":now": _to_attr(self.now()),
                ":arrived": _to_attr(arrived_at),
                ":held": _to_attr(HELD),
                ":key": _to_attr(hold_key),
                ":room": _to_attr(max_files - files),
            },
        )

    def claim_held(self, job_name: str, group: str, file_ids: list[str]) -> dict[str, str] | None:
        """Claim input versions for a held job while it is open: each transaction of claims carries a check that
        the job is still HELD, so no claim is ever made for a held job after it was sealed (it would never
        read the file). Every input's owner (this job or another), or None once the job is no longer open
        (claims written before stay: the job was open then, and holds the plan that lists them). An invalid
        claim also answers None: the batch's job started alone says which input and why."""
        now = self.now()
        check = {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": {"pk": {"S": job_pk(job_name)}},
                "ConditionExpression": "#status = :held",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":held": _to_attr(HELD)},
            }
        }
        owners: dict[str, str] = {}
        unknown: list[str] = []
        ids = list(dict.fromkeys(file_ids))
        for start in range(0, len(ids), _TRANSACTION_LIMIT - 1):
            pending = ids[start : start + _TRANSACTION_LIMIT - 1]
            for round_ in range(_CLAIM_ROUNDS + 1):
                if not pending:
                    break
                if round_ == _CLAIM_ROUNDS:
                    raise TransientError(f"claiming inputs for held job {job_name} kept conflicting with other writes")
                actions = [check] + [{"Put": self._claim_item(job_name, group, f, now)} for f in pending]
                try:
                    self._db.transact_write_items(TransactItems=cast("list[TransactWriteItemTypeDef]", actions))
                except ClientError as exc:
                    code = error_code(exc)
                    if code == "ValidationException":
                        return None
                    if code != "TransactionCanceledException":
                        raise failure(exc, f"claiming inputs for held job {job_name} failed: {exc}") from exc
                    reasons = exc.response.get("CancellationReasons")
                    if not isinstance(reasons, list) or len(reasons) != len(actions):
                        raise TransientError(f"claiming inputs for held job {job_name}: no reasons given") from exc
                    if str(reasons[0].get("Code") or "None") == "ConditionalCheckFailed":
                        return None  # sealed: released meanwhile
                    again, transient = [], False
                    for f, reason in zip(pending, reasons[1:], strict=True):
                        why = str(reason.get("Code") or "None")
                        if why == "ConditionalCheckFailed":
                            owner = _owner_in(reason.get("Item"))
                            if owner:
                                owners[f] = owner
                            else:
                                unknown.append(f)
                        elif why == "None" or why in _TRANSIENT_CANCELLATIONS:
                            again.append(f)
                            transient = transient or why != "None"
                        else:
                            return None  # this input is invalid: the job started alone says so
                    pending = again
                    if transient:
                        time.sleep(_CONFLICT_BACKOFF_SECONDS * 2**round_)
                    continue
                owners.update({f: job_name for f in pending})
                pending = []
        if unknown:
            stored = self.owners(unknown)
            missing = [f for f in unknown if f not in stored]
            if missing:
                raise TransientError(f"claim of {missing[0]} refused but no owner found")
            owners.update(stored)
        return owners

    def held_jobs(self) -> list[str]:
        """Held jobs not started yet (index ByKindAge, partition `held`), oldest first."""
        from sagepilot.domain.hold import HELD_KIND

        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "ByKindAge",
            "KeyConditionExpression": "kind = :kind",
            "ExpressionAttributeValues": {":kind": {"S": HELD_KIND}},
            "ProjectionExpression": "pk",
        }
        names: list[str] = []
        while True:
            try:
                page = self._db.query(**request)
            except ClientError as exc:
                raise failure(exc, f"listing the held jobs: {exc}") from exc
            names += [str(item["pk"]["S"])[len("job#") :] for item in page.get("Items", [])]
            if not page.get("LastEvaluatedKey"):
                return names
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def group_pk(group: str) -> str:
    return f"group#{group}"


def latest_pk(object_id: str) -> str:
    return f"latest#{object_id}"
