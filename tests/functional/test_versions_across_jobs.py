"""Two versions of one key in two transform jobs: whatever order the batches and the jobs finish in, the key's
predictions, report and rejection are the newer version's, and the older version is accounted for once.

Each job writes into its own folder (`jobs/<group>/<job>/output/`); the completion copies an output to
`predictions/` only while its version is the newest of its key that a job took (the state table's
`latest#<bucket>/<key>` item, written with a conditional update when the job is planned)."""

from __future__ import annotations

import json
from itertools import permutations
from typing import Any

import pytest

from sagepilot.adapters.state import StateTable
from sagepilot.events import parse_transform_job_change, queued_messages

from .conftest import sqs_event, with_body

KEY = "incoming/churn/t.csv"


def two_versions(data: Any, registry: Any, intake_queue: Any) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    registry.register("churn")
    old = data.drop(KEY, b"old\n")
    new = data.drop(KEY, b"new\n")
    first, second = intake_queue.receive()["Records"]
    return old, new, first, second


def sagemaker_writes_output(s3: Any, data: Any, jobs: Any, name: str) -> None:
    """What the transform job writes before it completes: `<S3OutputPath><relative path>.out` per input."""
    job = jobs.get(name)
    output = job.description["TransformOutput"]["S3OutputPath"]
    prefix = output.removeprefix(f"s3://{data.name}/")
    for item in job.plan["inputs"]:
        body = s3.get_object(Bucket=data.name, Key=item["key"], VersionId=item["versionId"])["Body"].read()
        s3.put_object(Bucket=data.name, Key=f"{prefix}t.csv.out", Body=b"predicted from " + body)


def finish(s3, data, jobs, completions, completion, name: str, status: str = "Completed") -> None:
    if status == "Completed":
        sagemaker_writes_output(s3, data, jobs, name)
    for event in completions.finish(name, status, "ClientError: bad data" if status == "Failed" else ""):
        completion.handle(parse_transform_job_change(event))


def versions_of(s3: Any, data: Any, key: str) -> int:
    listed = s3.list_object_versions(Bucket=data.name, Prefix=key).get("Versions", [])
    return sum(1 for v in listed if v["Key"] == key)


@pytest.mark.parametrize("finishing", ["older job last", "newer job last"])
def test_both_versions_in_running_jobs_leave_the_newer_versions_predictions(
    s3, data, registry, intake_queue, intake, completion, completions, jobs, finishing
):
    """The older version's job started before the newer version's event arrived: both jobs run. Whichever
    finishes last, predictions/ holds the newer version's output and report, each written once; the older
    job's report keeps its own output in its folder and names the version that superseded it."""
    old, new, first, second = two_versions(data, registry, intake_queue)
    (older,) = intake.handle(queued_messages(sqs_event([first]))).jobs_started
    (newer,) = intake.handle(queued_messages(sqs_event([second]))).jobs_started
    order = [older, newer] if finishing == "newer job last" else [newer, older]
    for name in order:
        finish(s3, data, jobs, completions, completion, name)

    body = s3.get_object(Bucket=data.name, Key="predictions/churn/t.csv.out")["Body"].read()
    assert body == b"predicted from new\n"
    assert data.json("predictions/churn/t.csv.report.json")["input"]["versionId"] == new
    if finishing == "older job last":  # the newer one published first, and nothing came after it
        assert versions_of(s3, data, "predictions/churn/t.csv.out") == 1
        assert versions_of(s3, data, "predictions/churn/t.csv.report.json") == 1
    report = data.json(f"jobs/churn/{older}/report.json")
    (item,) = report["inputs"]
    assert (item["versionId"], report["status"]) == (old, "Completed")
    if finishing == "older job last":
        assert item["supersededBy"] == {"versionId": new, "transformJobName": newer}
        assert item["predictions"] == f"s3://{data.name}/jobs/churn/{older}/output/t.csv.out"
    jobs.assert_each_version_in_exactly_one_job({(KEY, old), (KEY, new)})
    assert data.keys("rejected/") == []


def test_an_older_versions_failed_job_does_not_reject_the_key_after_the_newer_one_succeeded(
    s3, data, registry, intake_queue, intake, completion, completions, jobs
):
    _, new, first, second = two_versions(data, registry, intake_queue)
    (older,) = intake.handle(queued_messages(sqs_event([first]))).jobs_started
    (newer,) = intake.handle(queued_messages(sqs_event([second]))).jobs_started
    finish(s3, data, jobs, completions, completion, newer)
    finish(s3, data, jobs, completions, completion, older, "Failed")
    assert data.keys("rejected/") == []
    assert data.json("predictions/churn/t.csv.report.json")["input"]["versionId"] == new
    failed = data.json(f"jobs/churn/{older}/report.json")
    assert failed["status"] == "Failed" and failed["inputs"][0]["supersededBy"]["versionId"] == new


@pytest.mark.parametrize("arrival", list(permutations(["old", "new"])), ids=lambda a: " then ".join(a))
def test_any_arrival_order_ends_with_the_newer_version(
    s3, data, registry, intake_queue, intake, completion, completions, jobs, arrival
):
    """Each version's event in its own batch, in either order; jobs finished in the order they started."""
    old, new, first, second = two_versions(data, registry, intake_queue)
    records = {"old": first, "new": second}
    started = []
    for which in arrival:
        started += intake.handle(queued_messages(sqs_event([records[which]]))).jobs_started
    for name in started:
        finish(s3, data, jobs, completions, completion, name)
    assert data.json("predictions/churn/t.csv.report.json")["input"]["versionId"] == new
    body = s3.get_object(Bucket=data.name, Key="predictions/churn/t.csv.out")["Body"].read()
    assert body == b"predicted from new\n"
    # The older version is in a job (it started first) or recorded as superseded (it came late); once.
    in_jobs = [v for j in jobs.all() for v in j.versions]
    recorded = [
        (i["key"], i["versionId"])
        for k in data.keys("jobs/")
        if k.endswith("/report.json") and data.json(k)["status"] == "Superseded"
        for i in data.json(k)["superseded"]
    ]
    assert sorted(in_jobs + recorded) == sorted([(KEY, old), (KEY, new)])


def test_the_newest_version_record_is_conditional_and_idempotent(stack, clients):
    state = StateTable(clients("dynamodb"), stack.outputs["StateTableName"])
    key = f"bucket/{KEY}"
    assert state.mark_latest("job-1", [(key, "1 2", "v2")]) == {}
    assert state.mark_latest("job-1", [(key, "1 2", "v2")]) == {}  # the same call again
    assert state.mark_latest("job-0", [(key, "1 1", "v1")]) == {key: ("v2", "job-1")}  # older: refused
    assert state.mark_latest("job-3", [(key, "1 3", None), ("bucket/other", "0", "x")]) == {}
    latest = state.latest([key, "bucket/other", "bucket/unknown"])
    assert {k: (v["recency"], v["versionId"], v["job"]) for k, v in latest.items()} == {
        key: ("1 3", "null", "job-3"),
        "bucket/other": ("0", "x", "job-3"),
    }


def latest_writes(clients: Any) -> list[str]:
    """The `latest#` items written from now on (by TransactWriteItems or PutItem, on the shared client)."""
    written: list[str] = []

    def transaction(params: dict[str, Any], **_: Any) -> None:
        written.extend(a["Put"]["Item"]["pk"]["S"] for a in params["TransactItems"] if "Put" in a)

    db = clients("dynamodb")
    db.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", transaction)
    db.meta.events.register(
        "before-parameter-build.dynamodb.PutItem", lambda params, **_: written.append(params["Item"]["pk"]["S"])
    )
    return written


# Each key's mark before the call, and the version the call marks for "job-1" (recency, version id): a key
# unmarked, marked with the same version by job-1 (a repeat), by another job (whose claims job-1 took over),
# with an older version, with a newer one.
BEFORE = {"absent": None, "same": ("1 5", "v5", "job-1"), "same, other job": ("1 5", "v5", "job-9"),
          "older": ("1 4", "v4", "job-0"), "newer": ("1 6", "v6", "job-2")}  # fmt: skip


@pytest.mark.parametrize("read_first", [False, True], ids=["write only", "read first"])
def test_the_newest_version_record_read_first_answers_as_the_write_alone(stack, clients, read_first):
    """StateTable.mark_latest(read_first=True) (a released held job, whose marks were made as it was held): the
    same answer and the same marks as the write alone, for each kind of mark; and repeat-safe."""
    state = StateTable(clients("dynamodb"), stack.outputs["StateTableName"])
    ids = {case: f"bucket/incoming/churn/{case}.csv" for case in BEFORE}
    for case, mark in BEFORE.items():
        if mark is not None:
            assert state.mark_latest(mark[2], [(ids[case], mark[0], mark[1])]) == {}
    written = latest_writes(clients)
    versions = [(ids[case], "1 5", "v5") for case in BEFORE] + [(ids["absent"], "1 3", "v3")]  # (and an older one)
    lost = state.mark_latest("job-1", versions, read_first=read_first)
    assert lost == {ids["newer"]: ("v6", "job-2")}
    marks = {case: (m["recency"], m["versionId"], m["job"]) for case, m in state.latest(list(ids.values())).items()}
    assert {case: marks[ids[case]] for case in BEFORE} == {
        "absent": ("1 5", "v5", "job-1"),
        "same": ("1 5", "v5", "job-1"),
        "same, other job": ("1 5", "v5", "job-1"),  # the job that reads the version now
        "older": ("1 5", "v5", "job-1"),
        "newer": ("1 6", "v6", "job-2"),
    }
    if read_first:  # only the marks that change are written
        assert sorted(written) == sorted(f"latest#{ids[c]}" for c in ("absent", "same, other job", "older"))
    else:
        assert set(written) == {f"latest#{ids[c]}" for c in BEFORE}  # (the refused one's transaction goes again)
    written.clear()
    assert state.mark_latest("job-1", versions, read_first=read_first) == lost  # again: the same answer
    assert (written == []) is read_first  # read first, a repeat writes nothing


def test_the_newest_version_record_read_first_writes_nothing_when_every_mark_is_made(stack, clients):
    state = StateTable(clients("dynamodb"), stack.outputs["StateTableName"])
    versions = [(f"bucket/incoming/churn/f{i:03d}.csv", f"1 {i:03d}", f"v{i}") for i in range(250)]
    assert state.mark_latest("job-1", versions) == {}
    calls: list[str] = []
    clients("dynamodb").meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    assert state.mark_latest("job-1", versions, read_first=True) == {}
    assert sorted(calls) == ["BatchGetItem"] * 3  # 100 keys a request; no write
    assert state.mark_latest("job-1", [], read_first=True) == {} and len(calls) == 3  # nothing to mark: no call


def test_a_version_whose_event_has_no_sequencer_is_never_skipped(data, registry, intake_queue, intake, jobs):
    """Without S3's sequencer nothing says which version is newer: the late one is read, not dropped."""
    old, new, first, second = two_versions(data, registry, intake_queue)
    intake.handle(queued_messages(sqs_event([second])))
    body = json.loads(first["body"])
    del body["detail"]["object"]["sequencer"]
    late = intake.handle(queued_messages(sqs_event([with_body(first, json.dumps(body))])))
    assert len(late.jobs_started) == 1
    jobs.assert_each_version_in_exactly_one_job({(KEY, old), (KEY, new)})
