"""The start-up hold in the limits simulation (bench/limits.py, docs/limits.md "The start-up hold as built, and
the holds considered before it"): the hold as built (`StartupHold`, `HeldWork`, `start_as_built`) holds a busy
group's new work in one held job, never a quiet group's, and releases it as services/holding.py does; the holds
considered before it (`Hold`) are kept as simulated variants. Every planned file ends in exactly one started job."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from bench import limits
from sagepilot.domain.hold import HoldSettings
from sagepilot_sandbox.server import SANDBOX_PARAMETERS

CALLS = {
    limits.INTAKE_1: {"s3.HeadObject": 1, "dynamodb.PutItem": 2, "sagemaker.CreateTransformJob": 1},
    limits.INTAKE_100: {"s3.HeadObject": 100, "dynamodb.PutItem": 101, "sagemaker.CreateTransformJob": 1},
    limits.COMPLETION_1: {"s3.PutObject": 3, "dynamodb.UpdateItem": 1},
    limits.COMPLETION_100: {"s3.PutObject": 102, "dynamodb.UpdateItem": 1},
}
P = limits.Planned


def _starts(planned: list[limits.Planned], hold: limits.Hold, **kw: object) -> list[limits.Started]:
    options: dict[str, object] = {"sweep_seconds": 300, "max_files": 1_000, **kw}
    return limits.start_with_hold(planned, hold, **options)  # type: ignore[arg-type]


def test_a_group_is_held_only_within_the_hold_after_its_latest_job() -> None:
    hold = limits.Hold(420)
    assert not limits.holds(10.0, None, hold)  # no job yet: a quiet group is never held
    assert limits.holds(500.0, 100.0, hold) and not limits.holds(520.0, 100.0, hold)
    assert not limits.holds(101.0, 100.0, limits.Hold(0))
    full = limits.Hold(420, until_full=True)
    assert limits.holds(200.0, 100.0, full, waiting_files=999, max_files=1_000)
    assert not limits.holds(200.0, 100.0, full, waiting_files=1_000, max_files=1_000)


@pytest.mark.parametrize("hold", [*limits.hold_variants(), limits.Hold(0), limits.Hold(5_000, on_intake=False)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_planned_job_ends_in_exactly_one_started_job(hold: limits.Hold, seed: int) -> None:
    rng = random.Random(seed)
    planned = [P(rng.uniform(0, 3_000), rng.randrange(8), rng.randint(1, 400)) for _ in range(400)]
    completions = sorted(rng.uniform(0, 4_000) for _ in range(30))
    started = _starts(planned, hold, sweep_phase=rng.uniform(0, 300), completions=completions)

    every = Counter(i for job in started for i in job.sources)
    assert sorted(every) == list(range(len(planned))) and set(every.values()) == {1}  # never two, never none
    for job in started:
        assert {planned[i].group for i in job.sources} == {job.group}  # never across groups
        assert job.files == sum(planned[i].files for i in job.sources) <= 1_000
        assert job.at >= max(planned[i].at for i in job.sources)  # never before its files were planned
        assert list(job.sources) == sorted(job.sources, key=lambda i: (planned[i].at, i))  # oldest first


def test_a_quiet_group_s_single_file_starts_at_once() -> None:
    busy = [P(float(t), 0, 10) for t in range(0, 200, 10)]
    started = _starts([*busy, P(95.0, 1, 1)], limits.Hold(420))

    quiet = [job for job in started if job.group == 1]
    assert [(job.at, job.files) for job in quiet] == [(95.0, 1)]
    assert started[0].at == 0.0 and started[0].group == 0  # a busy group's first job is not held either


def test_the_hold_merges_a_busy_group_s_batches_until_it_expires() -> None:
    batches = [P(float(t), 0, 10) for t in range(0, 130, 10)]  # 0, 10, ..., 120

    with_intake = _starts(batches, limits.Hold(60))
    assert [(job.at, job.files) for job in with_intake] == [(0.0, 10), (60.0, 60), (120.0, 60)]  # (a) releases
    sweep_only = _starts(batches, limits.Hold(60, on_intake=False), sweep_phase=200)
    assert [(job.at, job.files) for job in sweep_only] == [(0.0, 10), (200.0, 120)]  # (b): the next sweep tick
    completion = _starts(batches, limits.Hold(60, on_intake=False), sweep_phase=200, completions=[65.0])
    assert [(job.at, job.files) for job in completion] == [(0.0, 10), (65.0, 60), (200.0, 60)]  # (c)
    assert [(job.at, job.files) for job in _starts(batches, limits.Hold(0))] == [(b.at, 10) for b in batches]


def test_work_that_fills_a_job_is_not_held_with_until_full() -> None:
    batches = [P(0.0, 0, 10), P(5.0, 0, 500), P(6.0, 0, 500)]
    held = _starts(batches, limits.Hold(420))  # sweep ticks at 0, 300, 600: the first after the hold releases
    assert [(job.at, job.files) for job in held] == [(0.0, 10), (600.0, 1_000)]
    full = _starts(batches, limits.Hold(420, until_full=True))
    assert [(job.at, job.files) for job in full] == [(0.0, 10), (6.0, 1_000)]  # a full job starts at once


@pytest.fixture(scope="module")
def days() -> dict[str, limits.DayResult]:
    defaults = limits.read_defaults()
    costs = limits.costs_from(CALLS)
    scarce, plenty = (limits.Day(files=20_000, groups=20, seed=3, transform_quota=q) for q in (2, 10**9))
    hold = limits.Hold(limits.JOB_STARTUP_SECONDS, until_full=True)
    return {
        "scarce": limits.simulate_day(scarce, defaults, costs, 1300, merge=True, hold=hold),
        "plenty": limits.simulate_day(plenty, defaults, costs, 1300, merge=True, hold=hold),
        "plenty no hold": limits.simulate_day(plenty, defaults, costs, 1300, merge=True),
        "plenty hold 0": limits.simulate_day(plenty, defaults, costs, 1300, merge=True, hold=limits.Hold(0)),
    }


def test_the_day_with_a_hold_conserves_every_file(days: dict[str, limits.DayResult]) -> None:
    """simulate_day raises if a planned job's files start twice, across groups, or never; the figures agree."""
    for result in days.values():
        assert result.files_started + result.files_still_parked == result.files_planned > 0
    assert days["plenty"].still_parked == 0 and days["plenty"].files_planned == days["plenty no hold"].files_planned


def test_with_capacity_to_spare_the_hold_makes_fewer_larger_jobs(days: dict[str, limits.DayResult]) -> None:
    held, today = days["plenty"], days["plenty no hold"]
    assert held.held_jobs > 0 and held.merged_jobs > 0 and today.merged_jobs == 0
    assert held.jobs_started < today.jobs_started / 2
    assert held.startup_instance_hours < today.startup_instance_hours / 2
    assert held.files_per_job[1] > today.files_per_job[1]
    assert held.max_age <= today.max_age + limits.JOB_STARTUP_SECONDS + 60  # at most a hold (and a batch) later
    no_hold = replace(days["plenty hold 0"], hold="")
    assert no_hold == today  # a hold of 0 s is today's merge at start
    with pytest.raises(ValueError, match="merge"):
        limits.simulate_day(held.day, held.defaults, limits.costs_from(CALLS), 1300, hold=limits.Hold(60))


def test_the_groups_bench_is_planned_batch_by_batch_and_the_hold_cuts_its_jobs_per_group() -> None:
    defaults = limits.sandbox_defaults(limits.read_defaults())
    assert defaults.window == 2  # the sandbox's BatchingWindowSeconds
    planned = limits.groups_bench_planned(defaults, limits.costs_from(CALLS))
    assert sum(p.files for p in planned) == 10_200 and {p.group for p in planned} == set(range(100))
    batches = Counter(p.at for p in planned)  # one job per group per batch, all planned at its end
    assert sum(batches.values()) == len(planned) and max(batches.values()) <= 100

    today = limits.groups_bench_estimate(planned, None, defaults)
    held = limits.groups_bench_estimate(planned, limits.Hold(limits.JOB_STARTUP_SECONDS), defaults)
    assert today.jobs == len(planned)  # nothing waits, nothing merges
    assert today.jobs_per_group_max == max(Counter(p.group for p in planned).values()) > 2
    assert held.jobs_per_group_max < today.jobs_per_group_max and held.jobs < today.jobs


# ---------------------------------------------------------------------------------------- the hold as built
BUILT = limits.StartupHold(420, 60)


def _work(
    backlog: Callable[[float], bool] = lambda at: False, max_files: int = 1_000, hold: limits.StartupHold = BUILT
) -> limits.HeldWork:
    return limits.HeldWork(hold, max_files, backlog)


def test_the_hold_as_built_takes_the_template_s_settings(template: dict[str, Any]) -> None:
    parameters = {k: v.get("Default") for k, v in template["Parameters"].items()}
    defaults = limits.read_defaults()
    built = limits.StartupHold.of(defaults)
    hold, quiet = int(parameters["HoldSeconds"]), int(parameters["HoldQuietSeconds"])
    assert (built.seconds, built.quiet_seconds, built.on_completion) == (hold, quiet, False)
    assert built.settings == HoldSettings(hold_seconds=hold, quiet_seconds=quiet)
    sandbox = limits.StartupHold.of(limits.sandbox_defaults(defaults))
    assert (sandbox.seconds, sandbox.quiet_seconds) == (hold, int(SANDBOX_PARAMETERS["HoldQuietSeconds"]))


def test_a_quiet_group_starts_at_once_and_a_busy_group_holds_its_work_in_one_held_job() -> None:
    work = _work()
    assert work.triage(100.0, 0, [(1, 10)]) == ([1], [])  # quiet: at once, its start recorded
    assert work.triage(130.0, 0, [(2, 10)]) == ([], [])  # it started 30 s ago: held
    assert work.triage(150.0, 0, [(3, 10), (4, 1_000)]) == ([4], [])  # a job that fills MaxFilesPerJob starts
    assert work.open[0].parts == [2, 3] and work.open[0].files == 20 and work.held == 2
    assert work.triage(150.0, 1, [(5, 1)]) == ([5], [])  # another group is quiet
    assert _work(hold=limits.StartupHold(0, 60)).triage(1.0, 0, [(1, 1), (2, 1)]) == ([1, 2], [])  # no hold


def test_a_held_job_is_released_once_its_group_is_quiet() -> None:
    work = _work()
    work.triage(0.0, 0, [(1, 10)])
    work.triage(10.0, 0, [(2, 10)])  # opens the held job: its message comes quiet_seconds later
    work.triage(50.0, 0, [(3, 10)])
    assert work.next_check() == 70.0
    assert work.due(70.0) == [] and work.next_check() == 110.0  # added to at 50: sent again for the rest
    [job] = work.due(110.0)
    assert job.parts == [2, 3] and work.open == {} and work.last_started[0] == 110.0  # its start recorded
    assert work.triage(200.0, 0, [(4, 1)]) == ([], [])  # held again, within the hold after the release


def test_a_backlog_in_the_intake_queue_delays_the_quiet_release_at_most_until_the_hold_ends() -> None:
    drains = _work(backlog=lambda at: at < 200.0)
    drains.triage(0.0, 0, [(1, 1)])
    drains.triage(10.0, 0, [(2, 1)])
    assert drains.due(199.0) == []  # quiet at 70, but files are still queued: checked again every quiet_seconds / 4
    [job] = drains.due(250.0)
    assert job.parts == [2] and drains.last_started[0] == 205.0  # 70, 85, ..., 190 had a backlog; 205 none

    never = _work(backlog=lambda at: True)
    never.triage(100.0, 0, [(1, 1)])
    never.triage(110.0, 0, [(2, 1)])
    assert never.due(519.0) == []
    [job] = never.due(520.0)  # the hold is over (420 s after the group's start): released, backlog or not
    assert never.last_started[0] == 520.0


def test_a_batch_after_the_hold_joins_the_held_work_and_a_full_held_job_goes_at_once() -> None:
    work = _work()
    work.triage(0.0, 0, [(1, 1)])
    work.triage(30.0, 0, [(2, 1)])
    start, [job] = work.triage(425.0, 0, [(3, 1)])  # the hold is over and the message not come (lost)
    assert start == [] and job.parts == [2, 3] and work.last_started[0] == 425.0 and not work.open

    small = _work(max_files=100)
    small.triage(0.0, 0, [(1, 1)])
    small.triage(10.0, 0, [(2, 60)])
    start, [full] = small.triage(20.0, 0, [(3, 60)])
    assert start == [] and full.parts == [2] and small.open[0].parts == [3]  # a new one holds the rest


def test_the_sweep_releases_a_held_job_only_once_its_hold_is_over_and_completions_not_at_all() -> None:
    work = _work(backlog=lambda at: True)
    work.triage(100.0, 0, [(1, 1)])
    work.triage(110.0, 0, [(2, 1)])
    assert work.sweep(400.0) == [] and work.completion(400.0) == []  # (c) is not built
    assert [job.parts for job in work.sweep(520.0)] == [[2]]

    variant = _work(backlog=lambda at: True, hold=limits.StartupHold(420, 60, on_completion=True))
    variant.triage(100.0, 0, [(1, 1)])
    variant.triage(110.0, 0, [(2, 1)])
    assert variant.completion(169.0) == [] and [job.parts for job in variant.completion(170.0)] == [[2]]


def test_the_intake_queue_has_a_backlog_when_an_uploaded_file_is_in_no_batch_begun() -> None:
    queue = limits.IntakeQueue(np.array([0.0, 1.0, 2.0, 5.0]), [0.0, 3.0], [2, 4], [2.5, 6.0])
    assert not queue.backlog(1.5)  # two uploaded, both in the first batch (it collects from 0)
    assert queue.backlog(2.0) and queue.backlog(2.9)  # the third waits for the next batch
    assert not queue.backlog(3.0) and not queue.backlog(9.0)
    # As built, files in flight count too (a batch begun, its invocation not over); the first version built read the
    # visible messages only.
    assert queue.backlog_or_in_flight(1.5) and queue.backlog_or_in_flight(5.9) and not queue.backlog_or_in_flight(6.0)
    assert queue.condition(BUILT) == queue.backlog_or_in_flight
    assert queue.condition(limits.StartupHold(420, 60, in_flight=False)) == queue.backlog


@pytest.mark.parametrize(
    "hold",
    [
        BUILT,
        limits.StartupHold(420, 60, on_completion=True),
        limits.StartupHold(420, 60, in_flight=False),
        limits.StartupHold(60, 20),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_planned_job_ends_in_exactly_one_started_job_as_built(hold: limits.StartupHold, seed: int) -> None:
    rng = random.Random(seed)
    planned = [P(float(rng.randrange(0, 3_000)), rng.randrange(8), rng.randint(1, 400)) for _ in range(400)]
    busy = {rng.randrange(0, 3_000) // 100 for _ in range(10)}
    started = limits.start_as_built(
        planned,
        hold,
        sweep_seconds=300,
        max_files=1_000,
        sweep_phase=rng.uniform(0, 300),
        backlog=lambda at: int(at) // 100 in busy,
        completions=sorted(rng.uniform(0, 4_000) for _ in range(30)),
    )

    every = Counter(i for job in started for i in job.sources)
    assert sorted(every) == list(range(len(planned))) and set(every.values()) == {1}  # never two, never none
    for job in started:
        assert {planned[i].group for i in job.sources} == {job.group}
        assert job.files == sum(planned[i].files for i in job.sources) <= 1_000
        assert job.at >= max(planned[i].at for i in job.sources)
        assert job.at <= min(planned[i].at for i in job.sources) + hold.seconds  # never held past the hold


@pytest.fixture(scope="module")
def built_days() -> dict[str, limits.DayResult]:
    defaults = limits.read_defaults()
    costs = limits.costs_from(CALLS)
    scarce, plenty = (limits.Day(files=20_000, groups=20, seed=3, transform_quota=q) for q in (2, 10**9))
    built = limits.StartupHold.of(defaults)
    return {
        "scarce": limits.simulate_day(scarce, defaults, costs, 1300, merge=True, startup_hold=built),
        "plenty": limits.simulate_day(plenty, defaults, costs, 1300, merge=True, startup_hold=built),
        "plenty no hold": limits.simulate_day(plenty, defaults, costs, 1300, merge=True),
        "plenty hold 0": limits.simulate_day(
            plenty, defaults, costs, 1300, merge=True, startup_hold=limits.StartupHold(0, 60)
        ),
    }


def test_the_day_as_built_conserves_every_file_and_holds_busy_groups(
    built_days: dict[str, limits.DayResult],
) -> None:
    """simulate_day raises if a planned job's files start twice, across groups, or never; the figures agree."""
    for result in built_days.values():
        assert result.files_started + result.files_still_parked == result.files_planned > 0
    held, today = built_days["plenty"], built_days["plenty no hold"]
    assert held.hold == limits.StartupHold.of(limits.read_defaults()).label()
    assert held.held_jobs > 0 and 0 < held.held_released < held.held_jobs  # some held jobs took several
    assert held.jobs_started < today.jobs_started and held.files_per_job[3] > today.files_per_job[3]
    assert held.max_age <= today.max_age + limits.read_defaults().hold_seconds + 1
    assert built_days["scarce"].still_parked == 0 and built_days["scarce"].held_jobs > 0
    assert replace(built_days["plenty hold 0"], hold="") == today  # a hold of 0 s is merge at start alone
    with pytest.raises(ValueError, match="merge"):
        limits.simulate_day(held.day, held.defaults, limits.costs_from(CALLS), 1300, startup_hold=BUILT)
    with pytest.raises(ValueError, match="one start-up hold"):
        limits.simulate_day(
            held.day,
            held.defaults,
            limits.costs_from(CALLS),
            1300,
            merge=True,
            hold=limits.Hold(60),
            startup_hold=BUILT,
        )


def test_the_groups_bench_as_built_is_estimated_with_the_sandbox_s_settings() -> None:
    defaults = limits.sandbox_defaults(limits.read_defaults())
    planned, intake = limits.groups_bench_intake(defaults, limits.costs_from(CALLS))
    assert planned == limits.groups_bench_planned(defaults, limits.costs_from(CALLS))
    assert not intake.backlog(max(p.at for p in planned))  # every file taken by the end
    none = limits.groups_bench_estimate(planned, None, defaults)
    built = limits.groups_bench_estimate(planned, limits.StartupHold.of(defaults), defaults, intake=intake)
    assert built.hold == limits.StartupHold.of(defaults).label()
    assert built.jobs_per_group_max < none.jobs_per_group_max and built.jobs < none.jobs
