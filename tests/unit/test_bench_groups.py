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


def test_the_plain_drop_has_no_per_group_figure() -> None:
    plain = drop.Outcome(10_000, 10_000, 40.0, 10_000, 24, 0, 0, 8.0, 48.0, False)
    assert "transform jobs of the busiest group" not in {f.name for f in drop._figures(plain, budget=180)}


def test_the_groups_tail_ratio_stands_beside_the_drop_s() -> None:
    groups = SectionResult("groups", figures=drop._figures(_outcome(2), budget=180), details={"tailRatio": 0.2})
    same = SectionResult("drop", details={"tailRatio": 0.2, "files": 10_000, "groups": ["a", "b"]})
    better = run.tail_beside(groups, same)
    assert better.ratio == 1.0 and better.passed is True
    worse = run.tail_beside(groups, SectionResult("drop", details={"tailRatio": 0.1}))
    assert worse.ratio == 2.0 and worse.passed is False
    unfinished = run.tail_beside(groups, SectionResult("drop", details={"tailRatio": None}))
    assert unfinished.passed is False and "missing" in unfinished.error
