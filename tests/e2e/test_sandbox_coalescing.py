"""Issue 19 through the running sandbox with the real aws CLI: files of a group dropped while its slot is
taken (MaxConcurrentJobsPerGroup 1) wait in jobs of their own, and run as ONE transform job when the slot
frees (coalescing); every function's AWS calls on that path are allowed by its IAM policy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepilot_sandbox.server import Sandbox

from .conftest import started_sandbox
from .iam_calls import assert_calls_allowed
from .test_sandbox_scenarios import _keys, approve_model, aws, jobs_of, read_json

pytestmark = pytest.mark.e2e
GROUP = "merged"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Transform jobs take 15 s: long enough for two more drops to wait for the group's slot. Without the
    start-up hold (it would gather b and c before they wait for the slot: test_sandbox_hold.py)."""
    overrides = {"MaxConcurrentJobsPerGroup": "1", "HoldSeconds": "0"}
    with started_sandbox(tmp_path_factory, overrides=overrides, run_seconds=15.0) as running:
        yield running


def waiting(sandbox: Sandbox) -> int:
    """Jobs of the group READY in the state table, waiting for its slot."""
    table = sandbox.stack.outputs["StateTableName"]  # type: ignore[union-attr]
    found = aws(sandbox, "dynamodb", "scan", "--table-name", table, "--filter-expression", "kind = :k",
                "--expression-attribute-values", f'{{":k": {{"S": "waiting#{GROUP}"}}}}')  # fmt: skip
    return int(found["Count"])


def test_files_that_wait_for_the_groups_slot_run_as_one_job(sandbox: Sandbox, tmp_path: Path) -> None:
    approve_model(sandbox, GROUP)
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]

    def drop(name: str) -> None:
        local = tmp_path / name
        local.write_text("34,80.5,2,10\n")
        aws(sandbox, "s3", "cp", str(local), f"s3://{bucket}/incoming/{GROUP}/day/{name}")

    drop("a.csv")
    sandbox.wait_for(lambda: len(jobs_of(sandbox, GROUP)) == 1, timeout=60)
    drop("b.csv")
    sandbox.wait_for(lambda: waiting(sandbox) == 1, timeout=60)
    drop("c.csv")
    sandbox.wait_for(lambda: waiting(sandbox) == 2, timeout=60)
    reports = [f"predictions/{GROUP}/day/{n}.report.json" for n in ("a.csv", "b.csv", "c.csv")]
    sandbox.wait_for(lambda: all(k in _keys(sandbox, f"predictions/{GROUP}/") for k in reports), timeout=120)
    [first, merged] = [read_json(sandbox, k)["transformJobName"] for k in reports[:2]]
    assert read_json(sandbox, reports[2])["transformJobName"] == merged != first
    assert len(jobs_of(sandbox, GROUP)) == 2  # a's job, then b's and c's together
    job_report = read_json(sandbox, f"jobs/{GROUP}/{merged}/report.json")
    assert job_report["status"] == "Completed" and len(job_report["mergedFrom"]) == 2
    for source in job_report["mergedFrom"]:
        assert read_json(sandbox, f"jobs/{GROUP}/{source['transformJobName']}/report.json")["status"] == "Merged"
    assert _keys(sandbox, f"rejected/{GROUP}/") == []


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    assert_calls_allowed(sandbox, min_pairs=5)
