"""The limits simulation (bench/limits.py): its inputs come from the template and the bench, it is
deterministic, and its model's pieces do what they say."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

from bench import limits
from sagepilot_sandbox.server import SANDBOX_PARAMETERS

ONE = {"s3.HeadObject": 1, "dynamodb.PutItem": 2, "sagemaker.CreateTransformJob": 1}
HUNDRED = {"s3.HeadObject": 100, "dynamodb.PutItem": 101, "sagemaker.CreateTransformJob": 1}
CALLS = {
    limits.INTAKE_1: ONE,
    limits.INTAKE_100: HUNDRED,
    limits.COMPLETION_1: {"s3.PutObject": 3, "dynamodb.UpdateItem": 1},
    limits.COMPLETION_100: {"s3.PutObject": 102, "dynamodb.UpdateItem": 1},
}


def test_the_defaults_are_the_template_s(template: dict[str, Any]) -> None:
    defaults = limits.read_defaults()
    parameters = {k: v.get("Default") for k, v in template["Parameters"].items()}

    assert defaults.batch_size == int(parameters["IntakeBatchSize"])
    assert defaults.window == int(parameters["BatchingWindowSeconds"])
    assert defaults.concurrency == int(parameters["IntakeMaxConcurrency"])
    assert defaults.max_files_per_job == int(parameters["MaxFilesPerJob"])
    assert defaults.bake_seconds == int(parameters["BakeSeconds"])
    assert ",".join(map(str, defaults.canary_steps)) == parameters["CanarySteps"]
    assert defaults.reconcile_seconds == 60 and parameters["ReconcileSchedule"] == "rate(1 minute)"
    assert defaults.backlog_alarm_seconds == template["Resources"]["IntakeBacklogAlarm"]["Properties"]["Threshold"]
    assert defaults.capacity_sweep_seconds == 300 and parameters["CapacitySweepSchedule"] == "rate(5 minutes)"
    capacity_alarm = template["Resources"]["CapacityBacklogAlarm"]["Properties"]
    assert defaults.capacity_alarm_seconds == capacity_alarm["Threshold"]
    assert defaults.hold_seconds == int(parameters["HoldSeconds"]) > 0  # the start-up hold, as built
    assert defaults.hold_quiet_seconds == int(parameters["HoldQuietSeconds"])
    sandbox = limits.sandbox_defaults(defaults)  # the bench's stack: the sandbox's short waits
    assert sandbox.hold_quiet_seconds == int(SANDBOX_PARAMETERS["HoldQuietSeconds"]) != defaults.hold_quiet_seconds
    assert sandbox.window == int(SANDBOX_PARAMETERS["BatchingWindowSeconds"])


def test_calls_split_into_per_file_and_per_job_parts() -> None:
    costs = limits.costs_from(CALLS)

    assert costs.intake_file == {"s3.HeadObject": 1.0, "dynamodb.PutItem": 1.0}
    assert costs.intake_job == {"dynamodb.PutItem": 1.0, "sagemaker.CreateTransformJob": 1.0}
    assert costs.completion_file == {"s3.PutObject": 1.0}
    assert costs.completion_job == {"s3.PutObject": 2.0, "dynamodb.UpdateItem": 1.0}
    assert costs.reconcile == limits.FALLBACK_RECONCILE_CALLS  # the bench has no reconcile scenario here


def test_the_bench_results_are_read_from_its_sections(tmp_path: Any) -> None:
    path = tmp_path / "results.json"
    scenarios = {name: {"recorded": {"calls": calls}} for name, calls in CALLS.items()}
    path.write_text(json.dumps({"sections": [{"section": "aws calls", "details": {"scenarios": scenarios}}]}))

    assert limits._scenarios_from(path) == CALLS


def test_ceiling_finds_the_largest_load_within_the_limit() -> None:
    found, how = limits.ceiling(lambda x: x <= 1234.0, 10, 1e6, steps=30)
    assert how == "swept" and math.isclose(found, 1234.0, rel_tol=1e-6)
    assert limits.ceiling(lambda x: True, 10, 100) == (100, "beyond the sweep")
    assert limits.ceiling(lambda x: False, 10, 100) == (10, "below the sweep")


@pytest.fixture(scope="module")
def small_day() -> tuple[limits.DayResult, limits.DayResult]:
    defaults = limits.read_defaults()
    costs = limits.costs_from(CALLS)
    day = limits.Day(files=20_000, groups=20, seed=3)
    return (
        limits.simulate_day(day, defaults, costs, 1300),
        limits.simulate_day(day, defaults, costs, 1300),
    )


def test_the_day_is_deterministic_and_every_file_arrives(small_day: tuple[limits.DayResult, ...]) -> None:
    first, again = small_day
    assert first == again
    assert abs(first.files - 20_000) < 200  # Poisson noise on the curve; the dumps are exact
    assert first.jobs_planned >= first.jobs_started > 0
    assert first.api_peaks["sagemaker.CreateTransformJob"] > 0


def test_a_batch_never_carries_more_than_6_mb() -> None:
    defaults = limits.read_defaults()
    result = limits.simulate_day(
        limits.Day(files=50_000, groups=5, seed=1), defaults, limits.costs_from(CALLS), record_bytes=4_000, jobs=False
    )
    assert result.largest_batch_bytes <= limits.LAMBDA_SYNC_PAYLOAD_BYTES
    assert result.largest_batch_bytes == min(defaults.batch_size, limits.LAMBDA_SYNC_PAYLOAD_BYTES // 4_000) * 4_000


def test_the_reconcile_tick_grows_with_the_endpoints() -> None:
    defaults = limits.read_defaults()
    costs = limits.costs_from(CALLS)
    small, large = (limits.simulate_week(n, defaults, costs) for n in (100, 5_000))

    assert small.longest_tick < large.longest_tick
    assert large.peak_tick_endpoints >= math.ceil(5_000 * defaults.reconcile_seconds / defaults.stable_check_seconds)
    assert large.limits_hit(defaults) and "reconcile tick" in large.limits_hit(defaults)[0]


def test_a_refused_job_waits_for_capacity_and_starts_when_instances_free() -> None:
    """No QUOTA_EXCEEDED any more: every planned job starts, some after waiting, and the quota is never passed."""
    defaults = limits.read_defaults()
    day = limits.Day(files=20_000, groups=20, seed=3, transform_quota=50)
    result = limits.simulate_day(day, defaults, limits.costs_from(CALLS), 1300)

    assert result.jobs_refused > 0 and result.jobs_parked > 0 and result.peak_parked > 0
    assert result.jobs_started == result.jobs_planned and result.still_parked == 0
    assert result.peak_instances <= 50
    assert 0 < result.longest_capacity_wait <= result.max_age
    unlimited = limits.simulate_day(
        limits.Day(files=20_000, groups=20, seed=3, transform_quota=10**9), defaults, limits.costs_from(CALLS), 1300
    )
    assert (unlimited.jobs_parked, unlimited.longest_capacity_wait) == (0, 0.0)
    assert unlimited.jobs_planned == result.jobs_planned


def test_what_the_quota_cannot_drain_within_the_horizon_still_waits_and_is_said() -> None:
    defaults = limits.read_defaults()
    day = limits.Day(files=20_000, groups=20, seed=3, transform_quota=1)
    result = limits.simulate_day(day, defaults, limits.costs_from(CALLS), 1300)

    assert result.still_parked > 0 and result.files_still_parked > 0
    assert result.jobs_started + result.still_parked == result.jobs_planned  # none rejected, none lost
    assert result.peak_instances == 1
    hit = " ".join(result.limits_hit())
    assert "capacity backlog" in hit and "still waiting after 3 days" in hit


# ---------------------------------------------------------------------------------------- merge at start
def _piece(seq: int, files: int, group: int) -> limits.Piece:
    return limits.Piece(float(seq), seq, files, float(seq), float(seq), 1, group)


def test_coalesce_takes_the_head_s_group_oldest_first_within_max_files() -> None:
    queue = [_piece(0, 400, 7), _piece(1, 500, 7), _piece(2, 200, 7), _piece(3, 50, 7)]
    assert limits.coalesce(queue, 1000) == 2  # 400 + 500; the third would pass 1,000: strictly oldest first
    assert limits.coalesce(queue, 1150) == 4
    assert limits.coalesce([_piece(0, 5000, 7), _piece(1, 1, 7)], 1000) == 1  # the head alone, however large
    assert limits.coalesce([], 1000) == 0


def test_coalesce_never_mixes_groups() -> None:
    queue = [_piece(0, 10, 1), _piece(1, 10, 1), _piece(2, 10, 2), _piece(3, 10, 1)]
    assert limits.coalesce(queue, 1000) == 2  # stops at the other group's job, whatever follows


@pytest.fixture(scope="module")
def scarce_day() -> tuple[limits.DayResult, limits.DayResult, limits.DayResult]:
    """A small day on a quota too small for it: merge at start twice, and today's design."""
    defaults = limits.read_defaults()
    costs = limits.costs_from(CALLS)
    day = limits.Day(files=20_000, groups=20, seed=3, transform_quota=2)
    return (
        limits.simulate_day(day, defaults, costs, 1300, merge=True),
        limits.simulate_day(day, defaults, costs, 1300, merge=True),
        limits.simulate_day(day, defaults, costs, 1300),
    )


def test_merge_at_start_is_deterministic(scarce_day: tuple[limits.DayResult, ...]) -> None:
    merged, again, _ = scarce_day
    assert merged == again and merged.design == "merge at start"


def test_merge_at_start_conserves_every_file(scarce_day: tuple[limits.DayResult, ...]) -> None:
    """Every planned job's files are started once or still wait (simulate_day raises otherwise); the same
    files are planned with and without merging."""
    merged, _, today = scarce_day
    assert merged.files_planned == today.files_planned > 0
    assert merged.files_started + merged.files_still_parked == merged.files_planned
    assert today.files_started + today.files_still_parked == today.files_planned


def test_merging_starts_fewer_larger_jobs_and_spends_less_on_start_up(
    scarce_day: tuple[limits.DayResult, ...],
) -> None:
    merged, _, today = scarce_day
    assert merged.merged_jobs > 0 and merged.merge_calls
    assert merged.jobs_planned == today.jobs_planned
    assert merged.files_per_job[1] > today.files_per_job[1]  # the median job is larger
    assert merged.files_per_job[3] <= limits.read_defaults().max_files_per_job
    assert merged.files_still_parked < today.files_still_parked
    assert merged.startup_instance_hours / max(1, merged.jobs_started) == pytest.approx(
        limits.JOB_STARTUP_SECONDS / 3600
    )  # one instance per job here (1 MB files): start-up per job is the same, the jobs are fewer
    assert merged.p99_age < today.p99_age


def test_with_capacity_to_spare_nothing_waits_so_nothing_merges() -> None:
    """A quiet group's file starts at once (after the batching window) as today: merging only takes in what waits."""
    defaults = limits.read_defaults()
    day = limits.Day(files=20_000, groups=20, seed=3, transform_quota=10**9)
    merged = limits.simulate_day(day, defaults, limits.costs_from(CALLS), 1300, merge=True)
    today = limits.simulate_day(day, defaults, limits.costs_from(CALLS), 1300)
    assert merged.merged_jobs == 0 and merged.jobs_started == today.jobs_started == today.jobs_planned
    assert (merged.p99_age, merged.max_age) == (today.p99_age, today.max_age)


def test_a_group_never_runs_more_than_its_slots() -> None:
    """MaxConcurrentJobsPerGroup: with one slot per group, each group's jobs run one at a time, so there are
    never more running jobs than groups, however many instances; what waits for a slot merges."""
    defaults = limits.read_defaults()
    day = limits.Day(files=20_000, groups=5, seed=3, transform_quota=10**9)
    one = limits.simulate_day(day, defaults, limits.costs_from(CALLS), 1300, merge=True, jobs_per_group=1)
    assert one.peak_jobs <= 5 and one.merged_jobs > 0 and one.jobs_refused == 0
    assert one.files_started == one.files_planned


def test_the_merge_cost_is_priced_from_the_measured_calls() -> None:
    costs = limits.costs_from(CALLS)
    calls = limits.merge_cost(costs, taken=3, files=100)
    # the merged job's record (the intake's per-job PutItem), three jobs read and marked, 100 claims moved
    assert calls["dynamodb.PutItem"] == pytest.approx(1.0 + 100 * 1.0)
    assert calls["dynamodb.GetItem"] == 3 and calls["dynamodb.UpdateItem"] == 3 and calls["s3.GetObject"] == 3


def test_the_targets_say_which_are_met(scarce_day: tuple[limits.DayResult, ...]) -> None:
    merged, _, today = scarce_day
    met = {name: ok for name, _, ok in limits.targets(merged, merged)}
    assert met["files in exactly one started job or still waiting"]
    assert met["transform jobs started (2 instances)"] == (merged.jobs_started <= limits.TARGET_JOBS_SCARCE)
    waiting = "files still waiting after 3 days (2 instances)"
    assert today.files_still_parked > 0 and not {name: ok for name, _, ok in limits.targets(today, today)}[waiting]
    with pytest.raises(ValueError, match="scheduler"):
        limits.simulate_day(merged.day, merged.defaults, limits.costs_from(CALLS), 1300, merge=True, scheduler=False)


def test_the_knobs_change_only_what_they_name() -> None:
    defaults = limits.read_defaults()
    tuned = limits.Knobs(max_files_per_job=5_000).apply(defaults)
    assert tuned == replace(defaults, max_files_per_job=5_000)
    assert limits.Knobs().apply(defaults) == defaults
    described = limits.KNOBS.describe(defaults)
    assert f"MaxFilesPerJob {limits.KNOBS.apply(defaults).max_files_per_job:,}" in described


def test_the_scheduler_s_memory_decides_how_often_a_big_group_gets_a_turn() -> None:
    """With more groups waiting than the scheduler remembers, groups take equal turns and a big group's backlog
    drains one job per turn; remembering only the last job lets the oldest head go first."""
    defaults = replace(limits.read_defaults(), max_files_per_job=300)
    day = limits.Day(files=20_000, groups=20, seed=3, transform_quota=2)
    costs = limits.costs_from(CALLS)
    equal = limits.simulate_day(day, defaults, costs, 1300, merge=True, served_window=100)
    oldest = limits.simulate_day(day, defaults, costs, 1300, merge=True, served_window=1)
    assert oldest.p99_age < equal.p99_age / 2 and oldest.max_age < equal.max_age / 2
    assert oldest.files_started + oldest.files_still_parked == oldest.files_planned


def test_the_main_scenario_is_the_design_as_built_beside_the_designs_before_it(tmp_path: Any) -> None:
    """`make limits` simulates the day with merge at start and the start-up hold (the template's settings), and
    measures merge at start without the hold and no merging in the same run; its targets include the groups
    bench's jobs per group, estimated with the hold as built."""
    results, out = tmp_path / "results.json", tmp_path / "limits.json"
    scenarios = {
        name: {"recorded": {"calls": CALLS.get(name, limits.FALLBACK_MOVE_CALLS)}} for name in limits.SCENARIOS
    }
    results.write_text(json.dumps({"section": "aws calls", "details": {"scenarios": scenarios}}))
    argv = ["--files", "5000", "--groups", "10", "--endpoints", "10", "--no-sweeps", "--hold", "built"]
    assert limits.main([*argv, "--results", str(results), "--json", str(out)]) == 0

    figures = json.loads(out.read_text())
    built = limits.StartupHold.of(limits.read_defaults()).label()
    assert figures["day"]["hold"] == figures["day_plenty"]["hold"] == built and figures["day"]["held_jobs"] > 0
    assert figures["day_merge_no_hold"]["hold"] == "" and figures["day_merge_no_hold"]["design"] == "merge at start"
    assert figures["day_today_no_merging"]["design"] == "scheduler"
    assert (
        figures["groups_bench"]["hold"]
        == limits.StartupHold.of(limits.sandbox_defaults(limits.read_defaults())).label()
    )
    names = [t["target"] for t in figures["targets"]]
    assert "groups bench (model): jobs per group, worst sweep phase" in names
    bench = next(t for t in figures["targets"] if t["target"].startswith("groups bench"))
    assert bench["met"] == (figures["groups_bench"]["jobs_per_group_max"] <= limits.TARGET_JOBS_PER_GROUP)
    variants = [h["day"]["hold"] for h in figures["hold"]]  # --hold built: the built hold's variants only
    assert variants == ["", built, f"{built} + (c) completions", f"{built} + visible backlog only"]
    assert figures["hold"][1]["day"] == figures["day"]  # the same simulation as the main scenario's
