"""The start-up hold's policy (domain/hold.py): who is held, and when held work is released."""

from __future__ import annotations

import pytest

from sagepilot.domain.hold import Decision, HoldSettings, decide, release_due
from sagepilot.events import MalformedEvent, parse_held_release, release_held_job

ON = HoldSettings(hold_seconds=420, quiet_seconds=60)
OFF = HoldSettings(hold_seconds=0, quiet_seconds=0)


def test_a_quiet_group_starts_at_once_and_a_busy_one_holds():
    assert decide(files=1, max_files=5000, group_started_recently=False, settings=ON) is Decision.START
    assert decide(files=1, max_files=5000, group_started_recently=True, settings=ON) is Decision.HOLD


def test_work_that_fills_a_job_is_never_held():
    assert decide(files=5000, max_files=5000, group_started_recently=True, settings=ON) is Decision.START
    assert decide(files=4999, max_files=5000, group_started_recently=True, settings=ON) is Decision.HOLD


def test_without_a_hold_everything_starts():
    assert not OFF.enabled
    assert decide(files=1, max_files=5000, group_started_recently=True, settings=OFF) is Decision.START


@pytest.mark.parametrize(
    ("opened", "added", "started", "due"),
    [
        (100, 100, 90, 160),  # quiet for 60 s after the last addition
        (100, 300, 90, 360),  # files kept coming: quiet counts from the last one
        (100, 480, 90, 510),  # never quiet: the hold ends 420 s after the group's start
        (100, 480, 0, 520),  # the group's start unknown: at most the hold after the job opened
    ],
)
def test_held_work_is_released_when_the_group_is_quiet_or_the_hold_ends(opened, added, started, due):
    assert release_due(opened_at=opened, last_arrival_at=added, last_started_at=started, settings=ON) == due


def test_a_release_message_names_its_job_and_other_messages_are_not_releases():
    name = "sagepilot-churn-0123456789abcdef"
    assert parse_held_release(release_held_job(name)) == name
    assert parse_held_release({"source": "aws.s3", "detail-type": "Object Created"}) is None
    with pytest.raises(MalformedEvent, match="without its job"):
        parse_held_release({"sagepilot": "release-held-job"})
