"""Issue 16, points 1, 4 and 5 as a user meets them through the running sandbox with the real aws CLI
(test_sandbox_scenarios.py has the header row, the long line, the corrupt gzip and the deleted file):

- a binary file named `.csv` dropped with good ones: only it is rejected, its batch-mates are predicted;
- a 1,000-byte key (it fits S3 but not the state table's index, nor its job's output key) dropped with good
  files: refused at intake (KEY_TOO_LONG) on the first delivery, the others predicted;
- a batch group named `training`: refused (RESERVED_GROUP_NAME), its report outside both layouts, nothing
  written over the training side's reports or under jobs/training/.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sagepilot_sandbox.server import Sandbox

from .iam_calls import assert_calls_allowed
from .test_sandbox_scenarios import _keys, approve_model, aws, jobs_of, read_json

pytestmark = pytest.mark.e2e
GOOD = {"a.csv": b"34,80.5,2,10\n3,120,7,2\n", "b.csv": b"1,2,3,4\n", "c.csv": b"5,6,7,8\n9,1,2,3\n"}


def bucket_of(sandbox: Sandbox) -> str:
    return str(sandbox.stack.outputs["DataBucketName"])  # type: ignore[union-attr]


def drop(sandbox: Sandbox, tmp_path: Path, key: str, body: bytes) -> None:
    local = tmp_path / f"{len(list(tmp_path.iterdir()))}.bin"
    local.write_bytes(body)
    assert "upload:" in aws(sandbox, "s3", "cp", str(local), f"s3://{bucket_of(sandbox)}/{key}")


def predicted(sandbox: Sandbox, folder: str, names: list[str]) -> bool:
    present = set(_keys(sandbox, f"predictions/{folder}"))
    return all(f"predictions/{folder}{n}.report.json" in present for n in names)


def test_a_binary_csv_is_rejected_alone_and_its_batch_mates_are_predicted(sandbox: Sandbox, tmp_path: Path) -> None:
    approve_model(sandbox, "binary")
    folder = "binary/day/"
    for name, body in GOOD.items():
        drop(sandbox, tmp_path, f"incoming/{folder}{name}", body)
    drop(sandbox, tmp_path, f"incoming/{folder}photo.csv", random.Random(7).randbytes(4096))
    sandbox.wait_for(lambda: predicted(sandbox, folder, list(GOOD)), timeout=90)
    rejected = sandbox.wait_for(lambda: _keys(sandbox, f"rejected/{folder}"), timeout=60)
    assert rejected == [f"rejected/{folder}photo.csv.json"]
    report = read_json(sandbox, f"rejected/{folder}photo.csv.json")
    assert report["code"] == "JOB_FAILED" and not any(n in report["reason"] for n in GOOD), report
    for name in GOOD:
        assert read_json(sandbox, f"predictions/{folder}{name}.report.json")["status"] == "Completed"


def test_a_key_too_long_for_its_derived_keys_is_refused_and_never_sinks_its_batch_mates(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    approve_model(sandbox, "long")
    folder = "long/day/"
    long_key = f"incoming/{folder}" + "k" * (1000 - len(f"incoming/{folder}.csv")) + ".csv"
    assert len(long_key.encode()) == 1000  # within S3's 1,024 bytes: the upload itself succeeds
    for name, body in GOOD.items():
        drop(sandbox, tmp_path, f"incoming/{folder}{name}", body)
    drop(sandbox, tmp_path, long_key, b"1,2,3,4\n")
    sandbox.wait_for(lambda: predicted(sandbox, folder, list(GOOD)), timeout=90)
    [report_key] = sandbox.wait_for(
        lambda: [k for k in _keys(sandbox, "rejected/") if "kkkk" in k or "long" in k], timeout=60
    )
    report = read_json(sandbox, report_key)
    assert report["code"] == "KEY_TOO_LONG" and report["input"]["key"] == long_key
    assert not any("kkkk" in k for k in _keys(sandbox, "predictions/") + _keys(sandbox, "jobs/long/"))  # no job read it
    assert [k for k in _keys(sandbox, "rejected/") if "/long/" in k] == [report_key]  # no batch-mate rejected


def test_a_batch_group_named_training_never_writes_into_the_training_layout(sandbox: Sandbox, tmp_path: Path) -> None:
    approve_model(sandbox, "training")
    training_report = "rejected/training/churn/2026/train.csv.json"
    drop(sandbox, tmp_path, training_report, b'{"code": "TRAINING_FAILED"}')  # the training side's own report
    drop(sandbox, tmp_path, "incoming/training/churn/2026/train.csv", b"1,2,3,4\n")
    reserved = "rejected/_reserved/training/churn/2026/train.csv.json"
    report = sandbox.wait_for(lambda: reserved in _keys(sandbox, "rejected/") and read_json(sandbox, reserved))
    assert report["code"] == "RESERVED_GROUP_NAME"
    assert read_json(sandbox, training_report) == {"code": "TRAINING_FAILED"}  # untouched
    assert _keys(sandbox, "jobs/training/") == [] and jobs_of(sandbox, "training") == []


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    assert_calls_allowed(sandbox, min_pairs=5, expected=[("BatchIntakeFunction", "s3.PutObject")])
