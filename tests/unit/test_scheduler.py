"""The capacity scheduler's policy (domain/scheduler.py): oldest first within a group, fair across groups,
sized to the capacity it gets."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from sagepilot.domain.names import attempt_name, transform_job_name
from sagepilot.domain.scheduler import WaitingJob, group_key, job_instances, may_try_now, start_order

GROUPS = ["churn", "fraud", "big-group", "a", "ltv-2026"]


def job(group: str, created: int, n: int = 0, instances: int = 1) -> WaitingJob:
    name = transform_job_name("sagepilot", group, [group, str(created), str(n)])
    return WaitingJob(name, created, created, instances)


waiting_jobs = st.lists(
    st.builds(
        job,
        st.sampled_from(GROUPS),
        st.integers(min_value=0, max_value=50),
        st.integers(min_value=0, max_value=3),
        st.integers(min_value=1, max_value=4),
    ),
    max_size=40,
    unique_by=lambda j: j.name,
)


def test_group_key_is_the_group_part_of_a_job_name_and_of_its_retries():
    name = transform_job_name("sagepilot", "ltv-2026", ["x"])
    assert group_key(name) == "sagepilot-ltv-2026"
    assert group_key(attempt_name(name, 3)) == "sagepilot-ltv-2026"
    assert group_key(transform_job_name("sagepilot", "ltv", ["x"])) != group_key(name)


def test_a_small_group_is_not_starved_behind_a_big_one():
    big = [job("big-group", t) for t in range(100)]
    small = job("churn", 500)  # much newer than every job of the big group
    order = start_order([*big, small])
    assert order.index(small) == 1  # one turn away, not 100
    assert [j for j in order if j.group == group_key(big[0].name)] == big  # the big group's own order kept


def test_the_group_holding_fewest_instances_goes_first_then_the_oldest_head():
    churn, fraud = job("churn", 10), job("fraud", 20)
    assert start_order([churn, fraud]) == [churn, fraud]  # nobody holds anything: the oldest head
    assert start_order([churn, fraud], running={churn.group: 3}) == [fraud, churn]  # churn already holds 3


def test_a_new_job_does_not_try_sagemaker_while_an_older_one_of_its_group_waits():
    older, other = job("churn", 10), job("fraud", 5)
    newer = job("churn", 20)
    assert not may_try_now(newer.name, newer.created_at, [older, other])
    assert may_try_now(newer.name, newer.created_at, [other])  # another group's wait is not its turn
    assert may_try_now(older.name, older.created_at, [older, newer])  # the oldest itself may


@given(waiting_jobs, st.dictionaries(st.sampled_from(GROUPS), st.integers(min_value=0, max_value=6)))
@settings(max_examples=300, deadline=None)
def test_start_order_is_every_job_once_oldest_first_within_each_group_and_max_min_fair(jobs, running_by_group):
    running = {group_key(job(g, 0).name): n for g, n in running_by_group.items()}
    order = start_order(jobs, running)
    assert sorted(j.name for j in order) == sorted(j.name for j in jobs)  # each once, none lost or added
    assert start_order(list(reversed(jobs)), running) == order  # deterministic whatever the listing order
    by_group: dict[str, list[WaitingJob]] = {}
    for j in order:
        by_group.setdefault(j.group, []).append(j)
    for group_jobs in by_group.values():  # strictly oldest first within a group
        assert group_jobs == sorted(group_jobs, key=lambda j: (j.created_at, j.name))
    # Max-min fair: each pick is the head of a group holding the fewest instances among those still waiting.
    held = Counter({g: running.get(g, 0) for g in by_group})
    left = Counter(j.group for j in jobs)
    for j in order:
        assert held[j.group] == min(held[g] for g in left if left[g] > 0)
        held[j.group] += j.instances
        left[j.group] -= 1


@given(waiting_jobs, st.sampled_from(GROUPS), st.integers(min_value=0, max_value=50))
def test_may_try_now_exactly_when_no_older_job_of_its_group_waits(jobs, group, created):
    new = job(group, created, 9)
    older_of_group = [j for j in jobs if j.group == new.group and (j.created_at, j.name) < (created, new.name)]
    assert may_try_now(new.name, created, jobs) == (not older_of_group)


@given(
    st.floats(min_value=0, max_value=1e6),
    st.integers(min_value=1, max_value=10_000),
    st.integers(min_value=1, max_value=10_000),
    st.integers(min_value=1, max_value=100),
    st.integers(min_value=0, max_value=2_000),
    st.integers(min_value=1, max_value=200),
)
def test_job_instances_follow_the_data_within_every_ceiling(megabytes, files, target, max_count, quota, groups):
    n = job_instances(
        megabytes, files, target_mb_per_instance=target, max_instance_count=max_count, quota=quota,
        groups_waiting=groups,
    )
    assert 1 <= n <= max(1, min(max_count, files))
    if quota:
        assert n <= max(1, quota // groups)  # never more than the fair share of the quota
    more = job_instances(
        megabytes * 2, files, target_mb_per_instance=target, max_instance_count=max_count, quota=quota,
        groups_waiting=groups,
    )
    assert more >= n  # a bigger backlog never gets fewer instances


def test_a_big_backlog_gets_a_multi_instance_job_and_a_trickle_a_small_one():
    sizing = {"target_mb_per_instance": 64, "max_instance_count": 10, "quota": 20}
    assert job_instances(5_000, 1_000, groups_waiting=1, **sizing) == 10
    assert job_instances(5_000, 1_000, groups_waiting=4, **sizing) == 5  # shared with three other groups
    assert job_instances(2, 1, groups_waiting=1, **sizing) == 1
