"""Jobs waiting for transform capacity: the order they are tried in, their age, and what people are told."""

from __future__ import annotations

from sagepilot.domain.capacity import capacity_wait_notice, oldest_wait_seconds, quota_name
from sagepilot.domain.scheduler import WaitingJob, start_order


def test_the_oldest_work_of_each_group_is_tried_first_the_groups_taking_turns() -> None:
    jobs = [
        WaitingJob("sagepilot-aaa-1", created_at=300, waiting_since=300),
        WaitingJob("sagepilot-zzz-1", created_at=100, waiting_since=900),  # a retry: old work, refused late
        WaitingJob("sagepilot-mmm-2", created_at=200, waiting_since=200),
        WaitingJob("sagepilot-mmm-1", created_at=200, waiting_since=250),
    ]
    assert [j.name for j in start_order(jobs)] == ["sagepilot-zzz-1", "sagepilot-mmm-1", "sagepilot-aaa-1",
                                                    "sagepilot-mmm-2"]  # fmt: skip
    assert start_order([]) == []


def test_the_oldest_wait_counts_from_the_first_refusal() -> None:
    assert oldest_wait_seconds([900, 400], now=1000) == 600
    assert oldest_wait_seconds([], now=1000) == 0
    assert oldest_wait_seconds([2000], now=1000) == 0  # clocks a little apart: never negative


def test_the_notice_says_nothing_is_lost_and_names_the_quota_to_raise() -> None:
    jobs = [{"job": f"sagepilot-churn-{i}", "group": "churn", "inputs": 3} for i in range(60)]
    notice = capacity_wait_notice(jobs, "ml.m5.xlarge", "CreateTransformJob x: ResourceLimitExceeded" + "!" * 2000)
    assert notice["jobs"] == 60 and len(notice["waitingForCapacity"]) == 50  # one SNS message stays small
    assert notice["quota"] == quota_name("ml.m5.xlarge") == "ml.m5.xlarge for transform job usage"
    assert len(notice["refusal"]) == 1000
    assert "Nothing is lost" in notice["whatHappens"] and "oldest first" in notice["whatHappens"]
    assert (
        "'ml.m5.xlarge for transform job usage'" in notice["whatToDo"] and "FallbackInstanceType" in notice["whatToDo"]
    )
