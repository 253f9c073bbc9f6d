"""Issue 19 through the running sandbox with the real aws CLI: the start-up hold. A group's first file starts a
job at once; files dropped while that job is starting up gather in one held job, released by the intake's own
delayed message (on the hold release queue) once the group has been quiet (HoldQuietSeconds: 20 s here, for the
test's steps to fit in it; the sandbox's is 2 s), and run as ONE transform job; every function's AWS calls on that
path (the delayed SendMessage, the claims' condition check) are allowed by its IAM policy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepilot_sandbox.server import Sandbox

from .conftest import started_sandbox
from .iam_calls import assert_calls_allowed
from .test_sandbox_scenarios import _keys, approve_model, aws, jobs_of, read_json

pytestmark = pytest.mark.e2e
GROUP = "held"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with started_sandbox(tmp_path_factory, run_seconds=5.0, overrides={"HoldQuietSeconds": "20"}) as running:
        yield running


def held_jobs(sandbox: Sandbox) -> list[dict[str, object]]:
    table = sandbox.stack.outputs["StateTableName"]  # type: ignore[union-attr]
    found = aws(sandbox, "dynamodb", "scan", "--table-name", table, "--filter-expression", "#s = :s",
                "--expression-attribute-names", '{"#s": "status"}',
                "--expression-attribute-values", '{":s": {"S": "HELD"}}')  # fmt: skip
    return list(found["Items"])


def test_files_dropped_while_the_groups_job_starts_up_run_as_one_held_job(sandbox: Sandbox, tmp_path: Path) -> None:
    approve_model(sandbox, GROUP)
    bucket = sandbox.stack.outputs["DataBucketName"]  # type: ignore[union-attr]

    def drop(name: str) -> None:
        local = tmp_path / name
        local.write_text("34,80.5,2,10\n")
        aws(sandbox, "s3", "cp", str(local), f"s3://{bucket}/incoming/{GROUP}/day/{name}")

    drop("a.csv")
    sandbox.wait_for(lambda: len(jobs_of(sandbox, GROUP)) == 1, timeout=60)  # a quiet group: at once
    drop("b.csv")
    sandbox.wait_for(lambda: len(held_jobs(sandbox)) == 1, timeout=60)
    time.sleep(5)
    drop("c.csv")
    reports = [f"predictions/{GROUP}/day/{n}.report.json" for n in ("a.csv", "b.csv", "c.csv")]
    sandbox.wait_for(lambda: all(k in _keys(sandbox, f"predictions/{GROUP}/") for k in reports), timeout=150)
    [first, held] = [read_json(sandbox, k)["transformJobName"] for k in reports[:2]]
    assert read_json(sandbox, reports[2])["transformJobName"] == held != first
    assert len(jobs_of(sandbox, GROUP)) == 2  # a's job, then b's and c's together
    plan = read_json(sandbox, f"jobs/{GROUP}/{held}/plan.json")
    assert sorted(i["key"] for i in plan["inputs"]) == [f"incoming/{GROUP}/day/{n}" for n in ("b.csv", "c.csv")]
    assert held_jobs(sandbox) == []
    assert _keys(sandbox, f"rejected/{GROUP}/") == []


def test_every_aws_call_of_the_functions_is_allowed_by_their_iam_policy(sandbox: Sandbox) -> None:
    assert_calls_allowed(sandbox, min_pairs=5)
