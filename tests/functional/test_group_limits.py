"""MaxConcurrentJobsPerGroup: a group's jobs beyond the limit wait in the state table (nothing dropped,
nothing left in the queue) and start as the group's running jobs finish."""

from __future__ import annotations

import pytest

from sagepilot.events import parse_transform_job_change, queued_messages

from .conftest import transform_jobs

LIMIT = [{"MaxConcurrentJobsPerGroup": "1", "MaxFilesPerJob": "1"}]


def in_progress(sagemaker) -> list[str]:
    return sorted(
        j["TransformJobName"] for j in transform_jobs(sagemaker, StatusEquals="InProgress")
    )


@pytest.mark.parametrize("stack_overrides", LIMIT)
def test_jobs_beyond_the_limit_wait_and_start_when_a_slot_frees(
    data, registry, intake_queue, intake, completion, completions, jobs, sagemaker
):
    registry.register("churn")
    registry.register("fraud")
    for key in ["incoming/churn/a.csv", "incoming/churn/b.csv", "incoming/churn/c.csv", "incoming/fraud/x.csv"]:
        data.drop(key)
    event = intake_queue.receive()
    outcome = intake.handle(queued_messages(event))
    intake_queue.settle(event, {"batchItemFailures": [{"itemIdentifier": m} for m in outcome.failed_message_ids]})
    assert intake_queue.depth() == 0  # nothing waits in the queue
    running = in_progress(sagemaker)
    assert len([n for n in running if n.startswith("sagepilot-churn-")]) == 1  # the limit, per group
    assert len([n for n in running if n.startswith("sagepilot-fraud-")]) == 1  # other groups unaffected
    finished: list[str] = []
    for _ in range(3):
        [current] = [n for n in in_progress(sagemaker) if n.startswith("sagepilot-churn-")]
        (event,) = completions.finish(current, "Completed")
        completion.handle(parse_transform_job_change(event))
        finished.append(current)
        assert len([n for n in in_progress(sagemaker) if n.startswith("sagepilot-churn-")]) <= 1
    assert len(set(finished)) == 3  # a, b and c each ran, one after the other
    jobs.assert_each_version_in_exactly_one_job({(k, v) for k, v in data.versions() if k.startswith("incoming/")})


@pytest.mark.parametrize("stack_overrides", [[{}][0]])
def test_without_a_limit_every_job_starts_at_once(data, registry, intake_queue, intake, sagemaker):
    registry.register("churn")
    for key in ["incoming/churn/a.csv", "incoming/churn/b.jsonl"]:
        data.drop(key)
    intake.handle(queued_messages(intake_queue.receive()))
    assert len(in_progress(sagemaker)) == 2


@pytest.mark.parametrize("stack_overrides", [{"MaxConcurrentJobsPerGroup": "1"}])
def test_jobs_waiting_for_a_slot_start_as_one_job_when_the_slot_frees(
    stack, clients, data, registry, intake_queue, intake, completion, completions, jobs, sagemaker
):
    """Coalescing (domain/coalescing.py): the group's jobs that waited for its slot run as one job."""
    registry.register("churn")
    for n in range(4):  # one batch each: the first runs, the three others wait for the group's slot
        data.drop(f"incoming/churn/{n}.csv")
        event = intake_queue.receive()
        outcome = intake.handle(queued_messages(event))
        intake_queue.settle(event, {"batchItemFailures": [{"itemIdentifier": m} for m in outcome.failed_message_ids]})
    [first] = in_progress(sagemaker)
    (event,) = completions.finish(first, "Completed")
    done = completion.handle(parse_transform_job_change(event))
    [merged] = in_progress(sagemaker)
    assert done.started == [merged] and merged != first
    plan = data.json(f"jobs/churn/{merged}/plan.json")
    assert sorted(i["key"] for i in plan["inputs"]) == [f"incoming/churn/{n}.csv" for n in (1, 2, 3)]
    table = stack.outputs["StateTableName"]
    for source in plan["mergedFrom"]:
        item = clients("dynamodb").get_item(TableName=table, Key={"pk": {"S": f"job#{source}"}})["Item"]
        assert item["status"]["S"] == "MERGED" and item["mergedInto"]["S"] == merged and "kind" not in item
    (event,) = completions.finish(merged, "Completed")
    completion.handle(parse_transform_job_change(event))
    assert in_progress(sagemaker) == []
    jobs.assert_each_version_in_exactly_one_job({(k, v) for k, v in data.versions() if k.startswith("incoming/")})
