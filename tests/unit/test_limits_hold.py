"""The start-up hold considered for issue 19 (bench/limits.py, docs/limits.md "Considered: a start-up hold"):
simulated only. Its policy holds a busy group's new work while the group's latest job starts up, never a quiet
group's, and every planned file ends in exactly one started job."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from bench import limits

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
