"""The start-up hold's policy (domain/hold.py): who is held, and when held work is released."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sagepilot.domain.hold import Decision, HoldSettings, decide, held_claims_record, recorded_claims, release_due
from sagepilot.domain.transform_plan import InputFile, JobPlan, plan_jobs
from sagepilot.events import MalformedEvent, parse_held_release, release_held_job

from .test_coalescing import MODEL, SETTINGS, file

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


# What a held job's batches recorded as they were held (domain/hold.py held_claims_record, recorded_claims) --------
HELD = "sagepilot-churn-held"


def part(name: str, *files: InputFile) -> JobPlan:
    (plan,) = plan_jobs(list(files), MODEL, SETTINGS)
    return replace(plan, job_name=name)


def test_a_recorded_batch_gives_every_files_owner_and_whether_each_version_the_held_job_won_kept_its_mark():
    a, b, c = (
        file("a.csv", version="va", sequencer="01"),
        file("b.csv", version="vb", sequencer="02"),
        file("c.csv", version="vc", sequencer="03"),
    )
    plan = part("p1", a, b, c)
    record = held_claims_record(
        HELD, plan, {a.file_id: HELD, b.file_id: "other", c.file_id: HELD}, {c.object_id: ("vc2", "newer")}
    )
    assert record == {"job": HELD, "others": {b.file_id: "other"}, "lost": {c.object_id: ["vc2", "newer"]}}
    record = json.loads(json.dumps(record))  # (kept as JSON with the plan)
    claims = recorded_claims(HELD, [(plan, record)])
    assert claims.owners == {a.file_id: HELD, b.file_id: "other", c.file_id: HELD}
    assert claims.marks == {a.file_id: None, c.file_id: ("vc2", "newer")}  # (b is another job's: not marked)


def test_a_batch_without_a_record_or_with_another_jobs_is_left_to_be_read():
    a, b = file("a.csv", version="va", sequencer="01"), file("b.csv", version="vb", sequencer="02")
    first, second = part("p1", a), part("p2", b)
    record = held_claims_record("sagepilot-churn-other", second, {b.file_id: "sagepilot-churn-other"}, {})
    claims = recorded_claims(HELD, [(first, None), (second, record)])
    assert claims.owners == {} and claims.marks == {}


def test_a_version_recorded_by_two_batches_lost_if_either_saw_a_newer_one_and_unordered_versions_are_not_marked():
    a = file("a.csv", version="va", sequencer="01")
    unordered = file("u.csv", version="vu", sequencer="")
    kept = held_claims_record(HELD, part("p1", a, unordered), {a.file_id: HELD, unordered.file_id: HELD}, {})
    lost = held_claims_record(HELD, part("p2", a), {a.file_id: HELD}, {a.object_id: ("va2", "newer")})
    for parts in (
        [(part("p1", a, unordered), kept), (part("p2", a), lost)],
        [(part("p2", a), lost), (part("p1", a, unordered), kept)],
    ):
        claims = recorded_claims(HELD, parts)
        assert claims.marks == {a.file_id: ("va2", "newer")}
        assert claims.owners == {a.file_id: HELD, unordered.file_id: HELD}


def test_an_older_version_a_batch_held_is_settled_by_the_batch_that_holds_its_newer_version():
    """Two batches of the held job hold two versions of a key: the release reads the newer one (coalescing.combine),
    whose batch marked it; the older one's batch saw it lose to that very mark, which says nothing of the newer."""
    old, new = file("a.csv", version="v1", sequencer="01"), file("a.csv", version="v2", sequencer="02")
    first = held_claims_record(HELD, part("p1", new), {new.file_id: HELD}, {})
    second = held_claims_record(HELD, part("p2", old), {old.file_id: HELD}, {old.object_id: ("v2", HELD)})
    claims = recorded_claims(HELD, [(part("p1", new), first), (part("p2", old), second)])
    assert claims.marks[new.file_id] is None
    assert claims.marks[old.file_id] == ("v2", HELD)
