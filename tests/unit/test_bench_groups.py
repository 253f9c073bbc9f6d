"""The groups drop of the bench (bench/drop.py, bench/run.py): its figures say what issue 19 asks."""

from __future__ import annotations

from bench import drop, run
from bench.common import SectionResult


def _outcome(most: int, *, lost: int = 0, trickled: int = 200) -> drop.Outcome:
    return drop.Outcome(
        files=10_000,
        uploaded=10_200,
        upload_s=40.0,
        in_jobs=10_200 - lost,
        jobs=150,
        lost=lost,
        doubled=0,
        tail_s=8.0,
        processing_s=48.0,
        out_of_time=False,
        groups=100,
        trickled=trickled,
        most_jobs_per_group=most,
    )


def test_the_busiest_group_s_jobs_are_held_to_two() -> None:
    figures = {f.name: f for f in drop._figures(_outcome(2), budget=180)}
    busiest = figures["transform jobs of the busiest group"]
    assert busiest.passed is True and busiest.section == "10k across 100 groups + trickle"
    assert {f.name: f for f in drop._figures(_outcome(3), budget=180)}[busiest.name].passed is False
    assert figures["uploaded file versions in no job"].passed is True
    assert figures["upload 10,000 files (client, threads)"].error == ""  # burst and trickle all uploaded
    # The plain drop's targets (jobs <= 1% of files, tail <= 0.5x) are not this section's: 2 jobs for each of 100
    # groups is 2% of 10,000 files, and a group's burst waits for the trickle that shares its held job.
    assert figures["transform jobs started"].target is None
    assert figures["tail: last upload -> last file in a started job"].target is None


def test_the_plain_drop_has_no_per_group_figure() -> None:
    plain = drop.Outcome(10_000, 10_000, 40.0, 10_000, 24, 0, 0, 8.0, 48.0, False)
    figures = {f.name: f for f in drop._figures(plain, budget=180)}
    assert "transform jobs of the busiest group" not in figures
    assert figures["transform jobs started"].passed is True and figures["transform jobs started"].target is not None
    assert figures["tail: last upload -> last file in a started job"].passed is True  # 8 s / 40 s <= 0.5


def test_the_groups_tail_ratio_stands_beside_the_drop_s_for_information() -> None:
    groups = SectionResult("groups", figures=drop._figures(_outcome(2), budget=180), details={"tailRatio": 0.4})
    plain = SectionResult("drop", details={"tailRatio": 0.2, "files": 10_000, "groups": ["a", "b"]})
    beside = run.groups_beside_drop(groups, plain)
    assert beside.ratio == 2.0 and beside.passed is None  # no target: its burst waits for the trickle by design
    unfinished = run.groups_beside_drop(groups, SectionResult("drop", details={"tailRatio": None}))
    assert unfinished.passed is None and "missing" in unfinished.note and unfinished.error == ""


def test_the_drop_s_tail_with_the_hold_is_held_to_the_same_drop_without_it() -> None:
    held = SectionResult("drop", figures=drop._figures(_outcome(0, trickled=0), budget=180), details={"tailRatio": 0.3})
    unheld = SectionResult("drop-unheld", details={"tailRatio": 0.3, "files": 10_000, "groups": ["a", "b"]})
    same = run.drop_beside_unheld(held, unheld)
    assert same.ratio == 1.0 and same.passed is True and "HoldSeconds=0" in same.baseline_label
    noise = run.drop_beside_unheld(held, SectionResult("drop-unheld", details={"tailRatio": 0.28}))
    assert noise.passed is True  # within the run-to-run spread
    worse = run.drop_beside_unheld(held, SectionResult("drop-unheld", details={"tailRatio": 0.2}))
    assert worse.ratio is not None and round(worse.ratio, 6) == 1.5 and worse.passed is False
    unfinished = run.drop_beside_unheld(held, SectionResult("drop-unheld", details={"tailRatio": None}))
    assert unfinished.passed is False and "missing" in unfinished.error
