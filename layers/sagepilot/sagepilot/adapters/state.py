"""The state table: which job owns each input version, and where each job stands.

Items (one table, string key `pk`):
    input#<bucket>/<key>#<version>   {job, group, claimedAt, expiresAt}   claimed with a conditional put
    job#<job-name>                   {status, group, attempt, ...}         moved with conditional updates

Job statuses: CLAIMING -> READY -> STARTED -> COMPLETED | FAILED, or EMPTY when every input turned
out to belong to other jobs. A job's inputs are claimed before the job is started, so an input
version can only ever be in the job that won its claim.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from sagepilot.adapters.clients import error_code
from sagepilot.errors import TransientError

CLAIMING, READY, STARTED, COMPLETED, FAILED, EMPTY = (
    "CLAIMING",
    "READY",
    "STARTED",
    "COMPLETED",
    "FAILED",
    "EMPTY",
)
RETENTION_SECONDS = 90 * 24 * 3600
_BATCH_GET_LIMIT = 100
_CLAIM_THREADS = 16
_UNPROCESSED_BACKOFF_SECONDS = 0.05


def _to_attr(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    return {"S": str(value)}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, attr in item.items():
        if "N" in attr:
            out[name] = int(attr["N"])
        elif "BOOL" in attr:
            out[name] = attr["BOOL"]
        elif "S" in attr:
            out[name] = attr["S"]
    return out


def input_pk(file_id: str) -> str:
    return f"input#{file_id}"


def waiting_kind(group: str) -> str:
    return f"waiting#{group}"


def job_pk(job_name: str) -> str:
    return f"job#{job_name}"


class StateTable:
    def __init__(self, dynamodb_client: Any, table: str, clock: Callable[[], float] = time.time) -> None:
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
                raise TransientError(f"creating job record {job_name} failed: {exc}") from exc
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
            raise TransientError(f"reading job record {job_name} failed: {exc}") from exc
        if not item:
            return None
        record = _from_item(item)
        record.pop("pk", None)
        record["jobName"] = job_name
        return record

    def transition(
        self,
        job_name: str,
        *,
        expected: Iterable[str],
        to: str,
        when_attempt: int | None = None,
        remove: tuple[str, ...] = (),
        **attrs: Any,
    ) -> bool:
        """Move a job to `to` (setting `attrs`) if it is in one of `expected` and, when given, at
        attempt `when_attempt`; False if it is not."""
        values: dict[str, Any] = {":to": _to_attr(to), ":now": _to_attr(self.now())}
        names = {"#status": "status"}
        sets = ["#status = :to", "updatedAt = :now"]
        for i, (name, value) in enumerate(sorted(attrs.items())):
            names[f"#a{i}"] = name
            values[f":a{i}"] = _to_attr(value)
            sets.append(f"#a{i} = :a{i}")
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
            raise TransientError(f"updating job record {job_name} failed: {exc}") from exc
        return True

    # Input claims -------------------------------------------------------------------------------
    def claim(self, job_name: str, group: str, file_ids: list[str]) -> dict[str, str]:
        """Claim each input version for `job_name`; return every input's owner (this job or another)."""
        now = self.now()

        def claim_one(file_id: str) -> tuple[str, str]:
            try:
                self._db.put_item(
                    TableName=self._table,
                    Item={
                        "pk": {"S": input_pk(file_id)},
                        "job": {"S": job_name},
                        "group": {"S": group},
                        "claimedAt": {"N": str(now)},
                        "expiresAt": {"N": str(now + RETENTION_SECONDS)},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR #job = :job",
                    ExpressionAttributeNames={"#job": "job"},
                    ExpressionAttributeValues={":job": {"S": job_name}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise TransientError(f"claiming {file_id} failed: {exc}") from exc
                old = exc.response.get("Item") or {}
                owner = old.get("job", {}).get("S") or self.owners([file_id]).get(file_id)
                if not owner:
                    raise TransientError(f"claim of {file_id} refused but no owner found") from exc
                return file_id, owner
            return file_id, job_name

        if len(file_ids) == 1:
            return dict([claim_one(file_ids[0])])
        with ThreadPoolExecutor(max_workers=min(_CLAIM_THREADS, len(file_ids) or 1)) as pool:
            return dict(pool.map(claim_one, file_ids))

    def owners(self, file_ids: list[str]) -> dict[str, str]:
        """The job that owns each claimed input version (unclaimed ones are absent)."""
        found: dict[str, str] = {}
        for start in range(0, len(file_ids), _BATCH_GET_LIMIT):
            keys = [{"pk": {"S": input_pk(f)}} for f in file_ids[start : start + _BATCH_GET_LIMIT]]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                try:
                    response = self._db.batch_get_item(RequestItems=request)
                except ClientError as exc:
                    raise TransientError(f"reading input claims failed: {exc}") from exc
                for item in response.get("Responses", {}).get(self._table, []):
                    found[item["pk"]["S"][len("input#") :]] = item["job"]["S"]
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
            raise TransientError(f"listing the jobs waiting in {group}: {exc}") from exc
        return [item["pk"]["S"][len("job#") :] for item in items]
