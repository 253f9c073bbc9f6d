"""Coalescing in the product: jobs of a group that wait are merged into one job when the first gets its turn.

Real uploads go through the intake; SageMaker's transform-instance quota is enforced at the HTTP layer (as in
test_capacity_wait.py), so jobs wait for capacity, READY in the state table; the completion's capacity sweep
merges them. Handlers are killed at every step of a merge and raced against each other and against a
starter of one of the sources: every file version still ends in exactly one job that runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sagepilot.adapters.state import StateTable
from sagepilot.services.jobs import JobLauncher

from . import test_capacity_wait
from .test_capacity_wait import Quota, enforce, finish, intake_batch, record, running

world = test_capacity_wait.world  # the fixture: the intake and the completion on one clock
CLAIM_TIMEOUT = 181  # CLAIM_TIMEOUT_SECONDS (template.yaml) and a second


class Killed(BaseException):
    """The handler died here (a timeout, an out-of-memory kill): nothing after it runs."""


def parked_jobs(intake: Any, intake_queue: Any, data: Any, clock: Any, files: list[list[str]]) -> list[str]:
    """One intake batch per list of files (one job each), all waiting for capacity; their names, oldest first."""
    names = []
    for batch in files:
        for key in batch:
            data.drop(key)
        outcome = intake_batch(intake, intake_queue)
        (name,) = outcome.jobs_waiting_for_capacity
        names.append(name)
        clock.advance(60)
    return names


def finish_everything(completion: Any, completions: Any, sagemaker: Any, clock: Any) -> None:
    """Run every job to its end, the way the stack does: completions, then sweeps after the claim timeout."""
    for _ in range(20):
        for job in running(sagemaker):
            finish(completion, completions, job)
        clock.advance(CLAIM_TIMEOUT)
        completion.sweep()
        if not running(sagemaker):
            return
    raise AssertionError("jobs keep running")


def assert_every_file_in_exactly_one_job(stack: Any, clients: Any, data: Any, jobs: Any, completion: Any) -> None:
    assert completion.sweep().waiting == 0
    dropped = {(k, v) for k, v in data.versions() if k.startswith("incoming/")}
    jobs.assert_each_version_in_exactly_one_job(dropped)
    assert data.keys("rejected/") == []
    for key, _ in dropped:
        report = data.json(key.replace("incoming/", "predictions/", 1) + ".report.json")
        assert report["status"] == "Completed", report


@pytest.fixture
def waiting_world(world, clients, registry):
    registry.register("churn")
    quota = Quota(instances=0)
    enforce(clients("sagemaker"), quota)
    return quota, world


def test_waiting_jobs_of_a_group_start_as_one_job(
    stack, clients, data, intake_queue, waiting_world, completions, sagemaker, jobs
):
    quota, (clock, intake, completion, _) = waiting_world
    batches = [["a.csv"], ["b.csv", "c.csv"], ["d.jsonl"], ["e.csv"]]
    sources = parked_jobs(intake, intake_queue, data, clock, [[f"incoming/churn/{f}" for f in b] for b in batches])
    csv = [sources[0], sources[1], sources[3]]
    quota.instances = 2
    swept = completion.sweep()
    (merged, jsonl) = swept.started  # the csv jobs as one; the jsonl job cannot join them
    assert jsonl == sources[2] and sorted(running(sagemaker)) == sorted([merged, jsonl])
    assert merged not in sources and merged.startswith("sagepilot-churn-")
    assert (swept.waiting, swept.refused) == (0, "")

    plan = data.json(f"jobs/churn/{merged}/plan.json")
    assert sorted(i["key"] for i in plan["inputs"]) == [f"incoming/churn/{f}.csv" for f in "abce"]
    assert plan["final"] is True and plan["mergedFrom"] == sorted(csv)
    for source in csv:
        state = record(stack, clients, source)
        assert (state["status"], state["mergedInto"]) == ("MERGED", merged) and "kind" not in state
        report = data.json(f"jobs/churn/{source}/report.json")
        assert report["status"] == "Merged" and report["mergedInto"]["transformJobName"] == merged
    started = record(stack, clients, merged)
    assert started["status"] == "STARTED" and "kind" not in started and "startingToken" not in started

    for job in running(sagemaker):
        finish(completion, completions, job)
    report = data.json(f"jobs/churn/{merged}/report.json")
    assert [m["transformJobName"] for m in report["mergedFrom"]] == sorted(csv)
    assert data.json("predictions/churn/b.csv.report.json")["transformJobName"] == merged
    assert_every_file_in_exactly_one_job(stack, clients, data, jobs, completion)
    assert len(jobs.all()) == 2


@pytest.mark.parametrize("stack_overrides", [{"MaxFilesPerJob": "3"}])
def test_a_merge_keeps_within_max_files_per_job_oldest_first(
    stack, clients, data, intake_queue, waiting_world, completions, sagemaker, jobs
):
    quota, (clock, intake, completion, _) = waiting_world
    sources = parked_jobs(intake, intake_queue, data, clock, [[f"incoming/churn/{n}.csv"] for n in range(5)])
    quota.instances = 1
    (first,) = completion.sweep().started
    assert data.json(f"jobs/churn/{first}/plan.json")["mergedFrom"] == sorted(sources[:3])
    # The next head had its turn too: merged with what is left, refused, the merged job waits in its place.
    (second,) = {record(stack, clients, s)["mergedInto"] for s in sources[3:]}
    assert data.json(f"jobs/churn/{second}/plan.json")["mergedFrom"] == sorted(sources[3:])
    assert (record(stack, clients, second)["status"], record(stack, clients, second)["kind"]) == (
        "READY",
        "waiting-capacity",
    )
    finish_everything(completion, completions, sagemaker, clock)
    assert_every_file_in_exactly_one_job(stack, clients, data, jobs, completion)
    assert len(jobs.all()) == 2  # 3 files, then the 2 left


# Where a handler that merges can die: the call it dies in (the (n+1)-th of it), and what was done before.
KILL_POINTS = {
    "after the merged record": (StateTable, "merge_into", 0),  # nothing taken out of play yet
    "after one source is merged": (StateTable, "merge_into", 1),
    "after every source is merged": (StateTable, "seal", 0),
    "after sealing": (StateTable, "claim", 0),  # claims not moved
    "after the claims moved": (JobLauncher, "_finalise", 0),
    "after finalising": (StateTable, "lease_start", 0),  # READY, not started
    "after the transform job was created": (JobLauncher, "_state_started", 0),  # not recorded STARTED
}


def kill_on(monkeypatch: Any, owner: type, method: str, skip: int) -> Callable[[], None]:
    """Make the `skip`+1-th call of `owner.method` kill the handler; returns what revives it."""
    calls = {"n": 0, "armed": True}
    if method == "_state_started":  # the conditional write that records a job STARTED
        owner, method = StateTable, "transition"
        original = StateTable.transition

        def started(self: Any, job_name: str, **kwargs: Any) -> bool:
            if calls["armed"] and kwargs.get("to") == "STARTED":
                raise Killed(f"killed before recording {job_name} STARTED")
            return original(self, job_name, **kwargs)

        monkeypatch.setattr(owner, method, started)
        return lambda: monkeypatch.setattr(owner, method, original)
    original = getattr(owner, method)

    def dying(self: Any, *args: Any, **kwargs: Any) -> Any:
        if calls["armed"]:
            calls["n"] += 1
            if calls["n"] > skip:
                raise Killed(f"killed in {owner.__name__}.{method}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, method, dying)
    return lambda: monkeypatch.setattr(owner, method, original)


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_merge_killed_at_any_step_is_finished_and_every_file_runs_exactly_once(
    point, stack, clients, data, intake_queue, waiting_world, completions, sagemaker, jobs, monkeypatch
):
    quota, (clock, intake, completion, _) = waiting_world
    parked_jobs(intake, intake_queue, data, clock, [[f"incoming/churn/{n}.csv"] for n in range(4)])
    quota.instances = 4
    revive = kill_on(monkeypatch, *KILL_POINTS[point])
    with pytest.raises(Killed):
        completion.sweep()
    revive()
    completion.sweep()  # a sweep right after: the merge may still be under way, nothing is taken over yet
    finish_everything(completion, completions, sagemaker, clock)
    assert_every_file_in_exactly_one_job(stack, clients, data, jobs, completion)
    assert {r["status"] for r in map(lambda j: record(stack, clients, j.name), jobs.all())} == {"COMPLETED"}


def test_two_sweeps_racing_through_the_same_merge_start_one_job(
    stack, clients, data, intake_queue, waiting_world, completions, sagemaker, jobs, monkeypatch
):
    quota, (clock, intake, completion, build) = waiting_world
    parked_jobs(intake, intake_queue, data, clock, [[f"incoming/churn/{n}.csv"] for n in range(3)])
    quota.instances = 4
    _, other = build(completion._settings, clients)
    original = StateTable.merge_into
    seen: dict[str, Any] = {}

    def racing(self: Any, *args: Any, **kwargs: Any) -> bool:
        if "other" not in seen:  # sweeper B runs the whole merge while A is about to take its first source
            seen["other"] = None
            seen["other"] = other.sweep()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StateTable, "merge_into", racing)
    first = completion.sweep()
    monkeypatch.setattr(StateTable, "merge_into", original)
    assert len(seen["other"].started) == 1 and first.started == []  # B started the merged job, A found it done
    assert running(sagemaker) == seen["other"].started
    finish_everything(completion, completions, sagemaker, clock)
    assert_every_file_in_exactly_one_job(stack, clients, data, jobs, completion)
    assert len(jobs.all()) == 1


@pytest.mark.parametrize("first", ["starter", "merge"])
def test_a_source_started_while_it_is_merged_runs_in_exactly_one_job(
    first, stack, clients, data, intake_queue, waiting_world, completions, sagemaker, jobs, monkeypatch
):
    """A completion starting one waiting job (start_waiting, a redelivered batch) while a sweep merges it: the
    start lease and the merge's conditional write decide; whichever comes first has the job."""
    quota, (clock, intake, completion, build) = waiting_world
    sources = parked_jobs(intake, intake_queue, data, clock, [[f"incoming/churn/{n}.csv"] for n in range(3)])
    quota.instances = 4
    _, other = build(completion._settings, clients)
    launcher = other._launcher
    contested = sources[1]
    state = record(stack, clients, contested)
    plan = launcher.load_plan(state["bucket"], state["planKey"])
    original_merge, original_lease = StateTable.merge_into, StateTable.lease_start
    started: dict[str, Any] = {}

    if first == "starter":
        # The starter takes its lease, then the merge runs, then the starter creates its job.
        def lease(self: Any, job_name: str, *args: Any) -> bool:
            taken = original_lease(self, job_name, *args)
            if job_name == contested and "merge" not in started:
                started["merge"] = None
                started["merge"] = completion.sweep()
            return taken

        monkeypatch.setattr(StateTable, "lease_start", lease)
    else:
        # The merge takes the job out of play, then the starter tries it.
        def merge(self: Any, job_name: str, *args: Any) -> bool:
            merged = original_merge(self, job_name, *args)
            if job_name == contested and "start" not in started:
                started["start"] = launcher._start(plan, check_queue=False)  # in its turn
            return merged

        monkeypatch.setattr(StateTable, "merge_into", merge)
    if first == "starter":
        started["start"] = launcher._start(plan, check_queue=False)  # in its turn
    else:
        started["merge"] = completion.sweep()
    monkeypatch.setattr(StateTable, "merge_into", original_merge)
    monkeypatch.setattr(StateTable, "lease_start", original_lease)

    merged = started["merge"].started[0]
    names = sorted(j.name for j in jobs.all())
    if first == "starter":  # the contested job runs alone (whoever of the two created it)
        assert sorted([merged, contested]) == names and record(stack, clients, contested)["status"] == "STARTED"
        assert data.json(f"jobs/churn/{merged}/plan.json")["mergedFrom"] == sorted([sources[0], sources[2]])
    else:
        assert not started["start"].created and names == [merged]
        assert record(stack, clients, contested)["status"] == "MERGED"
    finish_everything(completion, completions, sagemaker, clock)
    assert_every_file_in_exactly_one_job(stack, clients, data, jobs, completion)


def test_a_late_merging_handler_cannot_add_a_source_to_a_merge_another_handler_finished(
    stack, clients, data, intake_queue, waiting_world, completions, sagemaker, jobs, monkeypatch
):
    """Handler A merges three jobs and stalls after taking the first out of play; past the claim timeout a
    sweep takes the merge over (seals it, finishes it with the one source it has, starts it). When A wakes up,
    the other two jobs must not join the merged job that already runs: they stay waiting, and run later."""
    quota, (clock, intake, completion, build) = waiting_world
    sources = parked_jobs(intake, intake_queue, data, clock, [[f"incoming/churn/{n}.csv"] for n in range(3)])
    quota.instances = 4
    _, other = build(completion._settings, clients)
    original = StateTable.merge_into
    seen: dict[str, Any] = {}

    def stalling(self: Any, job_name: str, attempt: int, into: str) -> bool:
        merged = original(self, job_name, attempt, into)
        if "takeover" not in seen:
            seen["takeover"] = into
            clock.advance(CLAIM_TIMEOUT)
            other._launcher.resume(into)  # A is "certainly dead": the merge is taken over
        return merged

    monkeypatch.setattr(StateTable, "merge_into", stalling)
    completion.sweep()
    monkeypatch.setattr(StateTable, "merge_into", original)
    merged = seen["takeover"]
    assert data.json(f"jobs/churn/{merged}/plan.json")["mergedFrom"] == [sources[0]]
    assert merged in running(sagemaker)
    assert {record(stack, clients, s).get("mergedInto") for s in sources[1:]} != {merged}
    finish_everything(completion, completions, sagemaker, clock)
    assert_every_file_in_exactly_one_job(stack, clients, data, jobs, completion)


@pytest.mark.parametrize("stack_overrides", [{"MaxConcurrentJobsPerGroup": "1"}])
def test_a_merge_of_jobs_waiting_for_a_slot_killed_half_way_is_finished_by_the_periodic_sweep(
    stack, clients, data, registry, intake_queue, world, completions, sagemaker, jobs, monkeypatch
):
    """The completion that frees the group's slot merges the jobs waiting for it and dies; no other job of the
    group runs, so no completion will come: the capacity sweep (every 5 minutes) sees the merge and finishes it."""
    clock, intake, completion, _ = world
    registry.register("churn")
    for n in range(3):
        data.drop(f"incoming/churn/{n}.csv")
        intake_batch(intake, intake_queue)
        clock.advance(60)
    [first] = running(sagemaker)
    revive = kill_on(monkeypatch, StateTable, "seal", 0)
    with pytest.raises(Killed):
        finish(completion, completions, first)
    revive()
    assert running(sagemaker) == []
    clock.advance(CLAIM_TIMEOUT)
    completion.sweep()
    [merged] = running(sagemaker)
    assert len(data.json(f"jobs/churn/{merged}/plan.json")["mergedFrom"]) == 2
    finish_everything(completion, completions, sagemaker, clock)
    assert_every_file_in_exactly_one_job(stack, clients, data, jobs, completion)
